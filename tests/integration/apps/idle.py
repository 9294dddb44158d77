"""Connections that go idle between requests (test_idle.py): one route per
feature that gives an idle connection something to hand back (see conn_trim
in conn.c), and /trims to watch the server do it.  The access log is on so
that every connection also fetches its peer; a short header timeout makes
the sweep, and so the trimming, run twice a second."""
import asyncio
import hashlib

from fulmen import Application

app = Application(header_timeout=2.0, keep_alive_timeout=30.0)
app.access_log = True
r = app.router


def hello(request):
    return request.Response(text="hi")


async def suspends(request):
    # answers from a Task: the response waits in the connection's queue
    await asyncio.sleep(0)
    return request.Response(text="async " + request.match_dict["n"])


def streamed(request):
    n = int(request.match_dict["n"])

    async def gen():
        for i in range(n):
            await asyncio.sleep(0)
            yield b"%d;" % i
    return request.Response(stream=gen())


def paused_stream(request):
    # a streamed response that stays open across a few sweeps
    async def gen():
        yield b"first;"
        await asyncio.sleep(2.5)
        yield b"second;"
    return request.Response(stream=gen())


def body(request):
    return request.Response(json={"len": len(request.body),
                                  "sha": hashlib.sha256(request.body).hexdigest()})


async def streamed_body(request):
    h = hashlib.sha256()
    n = 0
    async for chunk in request.stream():
        h.update(chunk)
        n += len(chunk)
    return request.Response(json={"len": n, "sha": h.hexdigest()})


def trims(request):
    srv = app._server
    return request.Response(json={"trims": srv.idle_trims, "connections": srv.connections})


async def echo(ws):
    async for message in ws:
        await ws.send(message)


r.add_route("/", hello)
r.add_route("/a/{n}", suspends)
r.add_route("/s/{n}", streamed)
r.add_route("/paused", paused_stream)
r.add_route("/body", body, method="POST")
r.add_route("/sbody", streamed_body, method="POST", stream=True)
r.add_route("/trims", trims)
r.add_websocket("/ws", echo)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
