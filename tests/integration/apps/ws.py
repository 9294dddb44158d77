"""WebSocket test app: one route per behaviour test_websocket.py checks that
the plain echo example cannot show.  HTTP routes under /events give the tests
a side channel into what the handlers saw.

`python ws.py CERTFILE KEYFILE` serves it over TLS (test_websocket_tls.py);
WS_APP_BODY_TIMEOUT in the environment sets body_timeout."""
import asyncio
import json
import os
import socket
import sys

from fulmen import Application, WebSocketClosed

app = Application(body_timeout=float(os.environ.get("WS_APP_BODY_TIMEOUT", 30.0)))
r = app.router
events = {}   # tag -> list of strings the handlers recorded


def record(tag, what):
    events.setdefault(tag, []).append(what)


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def sizeof(ws):
    """Answers each message with what the socket holds (sys.getsizeof)."""
    async for message in ws:
        await ws.send(str(sys.getsizeof(ws)))


async def cancelled_receive(ws):
    """A receive() given up (wait_for's timeout): the next message still
    comes to the next receive(), and so does a close() given up."""
    try:
        await asyncio.wait_for(ws.receive(), 0.01)
    except asyncio.TimeoutError:
        await ws.send("timed out")
    await ws.send("got " + await ws.receive())
    await ws.send("got " + await ws.receive())


async def cancelled_close(ws):
    """close() given up before the client answered: a second close() waits
    for the answer, as the first would have."""
    tag = ws.request.match_dict["tag"]
    try:
        await asyncio.wait_for(ws.close(), 0.01)
    except asyncio.TimeoutError:
        record(tag, "given up")
    await ws.close()
    record(tag, "closed %s" % ws.close_code)


async def proto(ws):
    await ws.send(repr(ws.subprotocol))


async def info(ws):
    req = ws.request
    await ws.send(json.dumps({
        "path": req.path, "query": dict(req.query), "match": dict(req.match_dict),
        "method": req.method, "x_test": req.headers.get("X-Test"),
        "closed": ws.closed, "close_code": ws.close_code}))
    msg = await ws.receive()
    await ws.send("got " + msg)


async def boom(ws):
    msg = await ws.receive()
    await asyncio.sleep(0.01)
    raise RuntimeError("boom after " + msg)


async def relay(ws):
    """Sends each message to a socket that is gone, as a relay to a peer
    that left: that socket's WebSocketClosed escapes the handler."""
    async for message in ws:
        raise WebSocketClosed(1006, "relay peer gone with " + message)


async def boom_base(ws):
    """The message names a BaseException the handler raises."""
    msg = await ws.receive()
    await asyncio.sleep(0.01)
    raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
           "GeneratorExit": GeneratorExit,
           "CancelledError": asyncio.CancelledError}[msg]("boom-base " + msg)


async def wait_recv(ws):
    tag = ws.request.match_dict["tag"]
    record(tag, "started")
    await ws.send("ready")
    try:
        while True:
            msg = await ws.receive()
            record(tag, "message " + msg)
    except WebSocketClosed as e:
        record(tag, "closed %r %s %s" % (e.args[0], ws.closed, ws.close_code))
        raise


async def server_close(ws):
    """The handler closes with 4000 'bye' and waits for the client's answer."""
    tag = ws.request.match_dict["tag"]
    await ws.send("closing")
    await ws.close(4000, "bye")
    record(tag, "close done %s %s %r" % (ws.closed, ws.close_code, ws.close_reason))


async def send_big(ws):
    """One 8 MiB send, awaited; records how the await ended."""
    tag = ws.request.match_dict["tag"]
    record(tag, "sending")
    try:
        await ws.send(b"x" * (8 << 20))
        record(tag, "send returned")
    except WebSocketClosed as e:
        record(tag, "send raised %r" % e.args[0])
        raise


async def close_with(ws):
    """The handler closes with the code in the path (ValueError recorded)."""
    code = ws.request.match_dict["code"]
    try:
        await ws.close(code, "closing with %d" % code)
    except ValueError as e:
        record("close-with-%d" % code, "ValueError %s" % e)
        raise
    record("close-with-%d" % code, "close done %s %s %r" % (ws.closed, ws.close_code,
                                                              ws.close_reason))


async def send_close(ws):
    """Queue a 2 MB message without waiting for the client to take it,
    then close with 4000: the close frame waits behind the message (the
    socket's send buffer made small, so that most of it waits in the
    transport)."""
    tag = ws.request.match_dict["tag"]
    sock = ws.request.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    ws.send(b"x" * (2 << 20))
    await ws.close(4000, "bye")
    record(tag, "close done %s %s" % (ws.closed, ws.close_code))


async def returns(ws):
    await ws.send("bye")   # then returns: the server closes with 1000


async def flood(ws):
    """Send n MB in 1 MB binary messages, awaiting each send (backpressure)."""
    tag = ws.request.match_dict["tag"]
    n = int(ws.request.match_dict["mb"])
    chunk = b"x" * (1 << 20)
    try:
        for i in range(n):
            await ws.send(chunk)
            events[tag] = [str(i + 1)]
        await ws.receive()
    except BaseException as e:
        record(tag, "stopped by %s" % type(e).__name__)
        raise


async def pile(ws):
    """Send mb MB in 64 KB messages without awaiting a send (never yielding);
    records how that ended."""
    tag = ws.request.match_dict["tag"]
    chunk = b"p" * (64 << 10)
    try:
        for i in range(int(ws.request.match_dict["mb"]) * 16):
            ws.send(chunk)
    except WebSocketClosed as e:
        record(tag, "closed %r %s after %d KB" % (e.args[0], e.args[1], i * 64))
        raise
    record(tag, "sent all")


async def two_waiters(ws):
    """Task a gives up its wait after 0.2 s (asyncio.wait_for), task b
    waits on: for send() (the client does not read) or close() (the client
    does not answer yet).  Records how each ended; b must not be cancelled
    by a's timeout."""
    tag = ws.request.match_dict["tag"]
    what = ws.request.match_dict["what"]
    chunk = b"t" * (64 << 10)
    gave_up = []

    async def a():
        try:
            while True:
                await asyncio.wait_for(ws.send(chunk) if what == "send" else ws.close(), 0.2)
        except asyncio.TimeoutError:
            gave_up.append(True)
            record(tag, "a timeout")

    async def b():
        try:
            if what == "send":
                while not gave_up:          # (waiting too when a gives up)
                    await ws.send(chunk)
                await ws.send("end")
            else:
                await ws.close()
            record(tag, "b done")
        except asyncio.CancelledError:
            record(tag, "b cancelled")
        except WebSocketClosed as e:
            record(tag, "b closed %r" % (e.args[0],))

    await asyncio.gather(a(), b())


async def push(ws):
    """Send size-byte messages in a loop, awaiting each; records how that
    ended."""
    tag = ws.request.match_dict["tag"]
    chunk = b"p" * ws.request.match_dict["size"]
    n = 0
    try:
        while True:
            await ws.send(chunk)
            n += 1
    except WebSocketClosed as e:
        record(tag, "closed %r after %d" % (e.args[0], n))
        raise


async def send_wait(ws):
    """Send n bytes, then wait for the client's close (recorded)."""
    tag = ws.request.match_dict["tag"]
    try:
        await ws.send(b"s" * int(ws.request.match_dict["n"]))
        await ws.receive()
    except WebSocketClosed as e:
        record(tag, "closed %r" % e.args[0])
        raise


async def ping_me(ws):
    await ws.ping(b"server-ping")
    await ws.ping(data=b"by keyword")
    bad = []
    for args, kw in (((b"a", b"b"), {}), ((), {"payload": b"x"}), ((b"a",), {"data": b"b"})):
        try:
            ws.ping(*args, **kw)
        except TypeError:
            bad.append("TypeError")
    await ws.send("pinged " + ",".join(bad))
    async for message in ws:
        await ws.send(message)


released = {}  # tag -> asyncio.Event


def release_event(tag):
    if tag not in released:
        released[tag] = asyncio.Event()
    return released[tag]


async def sink(ws):
    """Receives nothing until /release/<tag> is asked for, then everything:
    what the client sent meanwhile waits in the server."""
    tag = ws.request.match_dict["tag"]
    # a fixed, small kernel receive buffer (Linux would grow it to tens of
    # MB), so that what the client gets in is what the server holds
    ws.request.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    await ws.send("ready")
    await release_event(tag).wait()
    n = 0
    try:
        while True:
            await ws.receive()
            n += 1
    except WebSocketClosed:
        record(tag, "received %d" % n)
        raise


async def busy_keepalive(ws):
    """Echoes, but only once /release/<tag> is asked for: until then the
    client's messages pile up and the server stops reading (keep-alive
    pings at 0.3 s / 0.3 s)."""
    await ws.send("ready")
    await release_event(ws.request.match_dict["tag"]).wait()
    async for message in ws:
        await ws.send(message)


async def echo_then_wait(ws):
    """Echoes one message, then waits (not in receive) until
    /release/<tag>: a message that came with the first is still queued."""
    await ws.send(await ws.receive())
    await release_event(ws.request.match_dict["tag"]).wait()


async def echo_then_close(ws):
    """Echoes one message, then closes with 4000 while others wait."""
    await ws.send(await ws.receive())
    await ws.close(4000)


async def close_behind(ws):
    """Receives nothing; once /release/<tag> is asked for, closes while what
    the client sent meanwhile still waits, and records the code the client
    answered with."""
    tag = ws.request.match_dict["tag"]
    await ws.send("ready")
    await release_event(tag).wait()
    await ws.close()
    record(tag, "closed %s" % ws.close_code)


def release(request):
    release_event(request.match_dict["tag"]).set()
    return request.Response(text="released")


def get_events(request):
    return request.Response(json=events.get(request.match_dict["tag"], []))


r.add_websocket("/echo", echo)
r.add_websocket("/small", echo, max_message_size=1000)
r.add_websocket("/cancelled-receive", cancelled_receive)
r.add_websocket("/cancelled-close/{tag}", cancelled_close)
r.add_websocket("/big-echo", echo, max_message_size=16 << 20)
r.add_websocket("/sizeof", sizeof, max_message_size=16 << 20, compression=False)
r.add_websocket("/nocomp", echo, compression=False)
r.add_websocket("/proto", proto, subprotocols=["chat.v2", "chat.v1", "superchat"])
r.add_websocket("/info/{name}", info)
r.add_websocket("/boom", boom)
r.add_websocket("/boom-base", boom_base)
r.add_websocket("/relay", relay)
r.add_websocket("/wait/{tag}", wait_recv)
r.add_websocket("/server-close/{tag}", server_close)
r.add_websocket("/returns", returns)
r.add_websocket("/send-close/{tag}", send_close, compression=False)
r.add_websocket("/flood/{mb:int}/{tag}", flood)
r.add_websocket("/send-wait/{n:int}/{tag}", send_wait, compression=False)
r.add_websocket("/pile/{mb:int}/{tag}", pile, compression=False)
r.add_websocket("/two-waiters/{what}/{tag}", two_waiters, compression=False)
r.add_websocket("/push/{size:int}/{tag}", push, compression=False)
r.add_websocket("/close-with/{code:int}", close_with)
r.add_websocket("/send-big/{tag}", send_big, compression=False)
r.add_websocket("/ping", ping_me)
r.add_websocket("/keepalive", echo, ping_interval=0.3, ping_timeout=0.3)
r.add_websocket("/busy-keepalive/{tag}", busy_keepalive, ping_interval=0.3, ping_timeout=0.3)
r.add_websocket("/sink/{tag}", sink, compression=False)
r.add_websocket("/sink-deflate/{tag}", sink)
r.add_websocket("/echo-then-wait/{tag}", echo_then_wait, compression=False)
r.add_websocket("/echo-then-close", echo_then_close, compression=False)
r.add_websocket("/close-behind/{tag}", close_behind, compression=False)
r.add_route("/events/{tag}", get_events)


async def async_http(request):
    await asyncio.sleep(0)
    return request.Response(text="async answer")


async def _two_chunks():
    for part in (b"streamed ", b"answer"):
        await asyncio.sleep(0)
        yield part


r.add_route("/async-http", async_http)
r.add_route("/stream-http", lambda request: request.Response(stream=_two_chunks()))
r.add_route("/writes", lambda request: request.Response(text=str(app._server.writes)))
r.add_route("/release/{tag}", release)

# ---- another connection's views write to a WebSocket, or read a body ----------

listeners = {}   # tag -> the WebSockets at /listen/<tag>
kept = {}        # tag -> request.stream() of a /keep-body/<tag> upload


async def listen(ws):
    """Waits (in receive) while HTTP views of other connections send to it."""
    listeners.setdefault(ws.request.match_dict["tag"], []).append(ws)
    release_event(ws.request.match_dict["tag"]).set()   # for /slow-done, /header-sends
    await ws.send("ready")
    async for message in ws:
        pass


def broadcast(request):
    # a sync view: frames are written when send() is called
    for ws in listeners.get(request.match_dict["tag"], []):
        ws.send("hello from " + request.path)
    return request.Response(text="sent")


async def upload_broadcast(request):
    # before the body is read, so before this view first waits
    for ws in listeners.get(request.match_dict["tag"], []):
        await ws.send("upload started")
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return request.Response(text="%d" % n)


async def keep_body(request):
    """Hands its body to /read-kept/<tag>, a view of another connection,
    and answers once that has read it all."""
    tag = request.match_dict["tag"]
    done = asyncio.get_running_loop().create_future()
    kept[tag] = (request.stream(), done)
    return request.Response(text="kept read %d" % await done)


async def read_kept(request):
    stream, done = kept.pop(request.match_dict["tag"])
    n = 0
    async for chunk in stream:
        n += len(chunk)
    done.set_result(n)
    return request.Response(text="read %d" % n)


async def slow_done(request):
    """Answered once the loop has turned (the drain path, not the read's),
    with a done callback that sends to the listeners meanwhile."""
    tag = request.match_dict["tag"]

    def done(req):
        for ws in listeners.get(tag, []):
            ws.send("done " + req.path)

    request.add_done_callback(done)
    await release_event(tag).wait()     # a listener has come (its read was the last)
    return request.Response(text="slow answer")


class _Notify:
    """A header value whose str() sends to the listeners of tag."""
    def __init__(self, tag):
        self.tag = tag

    def __str__(self):
        for ws in listeners.get(self.tag, []):
            ws.send("from a header")
        return "notified"


async def header_sends(request):
    await release_event(request.match_dict["tag"]).wait()
    return request.Response(text="header answer", headers={
        "X-N": _Notify(request.match_dict["tag"]), "Server": "mine"})


r.add_websocket("/listen/{tag}", listen, compression=False)


async def hello(ws):
    await ws.send("hello")


r.add_websocket("/origins", hello, origins=["https://App.example", "http://127.0.0.1:8080"])
r.add_route("/slow-done/{tag}", slow_done)
r.add_route("/header-sends/{tag}", header_sends)
r.add_route("/broadcast/{tag}", broadcast)
r.add_route("/upload-broadcast/{tag}", upload_broadcast, method="POST", stream=True)
r.add_route("/keep-body/{tag}", keep_body, method="POST", stream=True)
r.add_route("/read-kept/{tag}", read_kept)
r.add_route("/kept/{tag}", lambda request: request.Response(
    text="yes" if request.match_dict["tag"] in kept else "no"))

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0, ssl=tuple(sys.argv[1:3]) if len(sys.argv) > 2 else None)
