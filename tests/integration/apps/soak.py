"""The app for the soak tests (test_soak.py): WebSockets, streamed and file
responses, streamed and multipart request bodies, served plain or over TLS.

Every handler, generator and upload counts itself in when it starts and out
in a `finally`, so /state can say how many are still alive once their
clients have gone, together with the tasks the loop holds and the live
objects of the server's own types.

    FULMEN_SOAK_FILES   directory served by add_static('/static', ...), and
                        home of big.bin, which /file sends
    FULMEN_SOAK_CERT, FULMEN_SOAK_KEY   (optional) serve over TLS
"""
import asyncio
import collections
import gc
import os

from fulmen import Application, Response, WebSocketClosed

FILES = os.environ["FULMEN_SOAK_FILES"]
BIG = os.path.join(FILES, "big.bin")

app = Application(max_body_size=16 << 20, gc_threshold=None)
r = app.router
live = collections.Counter()     # kind -> started minus finished
done = collections.Counter()     # kind -> finished


class Alive:
    """`with Alive(kind):` counts a handler or generator while it runs."""

    __slots__ = ("kind",)

    def __init__(self, kind):
        self.kind = kind

    def __enter__(self):
        live[self.kind] += 1

    def __exit__(self, *exc):
        live[self.kind] -= 1
        done[self.kind] += 1


# ---- WebSockets ----------------------------------------------------------------

async def ws_echo(ws):
    with Alive("ws"):
        async for message in ws:
            await ws.send(message)


# ---- streamed responses ----------------------------------------------------------

def _sizes(request):
    return int(request.match_dict["n"]), int(request.match_dict["size"])


def stream_sync(request):
    n, size = _sizes(request)
    chunk = b"s" * size

    def gen():
        with Alive("stream"):
            for _ in range(n):
                yield chunk
    headers = {"Content-Length": str(n * size)} if "cl" in request.query else None
    return Response(stream=gen(), headers=headers)


def stream_async(request):
    n, size = _sizes(request)
    chunk = b"a" * size

    async def gen():
        with Alive("stream"):
            for i in range(n):
                if i % 4 == 0:
                    await asyncio.sleep(0)
                yield chunk
    headers = {"Content-Length": str(n * size)} if "cl" in request.query else None
    return Response(stream=gen(), headers=headers)


class Chunks:
    """An iterable that is not a generator, with a close() the server must call."""

    def __init__(self, n, size):
        self.left, self.chunk = n, b"c" * size
        live["stream"] += 1

    def __iter__(self):
        return self

    def __next__(self):
        if self.left <= 0:
            raise StopIteration
        self.left -= 1
        return self.chunk

    def close(self):
        live["stream"] -= 1
        done["stream"] += 1


def stream_iter(request):
    return Response(stream=Chunks(*_sizes(request)))


# ---- files -----------------------------------------------------------------------

def file_view(request):
    return Response(file=BIG)


# ---- request bodies --------------------------------------------------------------

async def upload(request):
    with Alive("upload"):
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
        return Response(text=str(n))


def form(request):
    files = request.files
    return Response(json={k: len(files[k].body) for k in files})


# ---- what is still alive ---------------------------------------------------------

TYPES = ("Request", "Connection", "WebSocket", "BodyStream", "Response",
         "Task", "Future", "generator", "async_generator", "coroutine",
         "BufferedReader", "FileIO", "SSLObject", "SSLProtocol", "TCPTransport")


def state(request):
    """What is alive, and what only the cyclic collector could free (the
    collector is off: see below, so every cycle since the last call is
    still there)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    cycles = collections.Counter(type(o).__name__ for o in gc.garbage)
    gc.set_debug(0)
    gc.garbage.clear()
    gc.collect()
    names = collections.Counter(type(o).__name__ for o in gc.get_objects())
    return Response(json={
        "live": dict(live), "done": dict(done),
        "tasks": len(asyncio.all_tasks()),
        "connections": app._server.connections,
        "objects": {t: names.get(t, 0) for t in TYPES},
        "cycles": dict(cycles),
    })


@app.on_startup
def no_collector(app):
    # Objects of the server's own types must be freed as soon as they are
    # done with, by reference counting: with the cyclic collector off, one
    # left in a reference cycle stays until /state finds it.
    gc.disable()


r.add_websocket("/ws", ws_echo)
r.add_websocket("/ws-plain", ws_echo, compression=False)
r.add_route("/s/sync/{n:int}/{size:int}", stream_sync)
r.add_route("/s/async/{n:int}/{size:int}", stream_async)
r.add_route("/s/iter/{n:int}/{size:int}", stream_iter)
r.add_route("/file", file_view)
r.add_static("/static", FILES)
r.add_route("/upload", upload, method="POST", stream=True, max_body_size=1 << 30)
r.add_route("/form", form, method="POST")
r.add_route("/state", state)
r.add_route("/", lambda request: Response(text="hi"))

if __name__ == "__main__":
    cert, key = os.environ.get("FULMEN_SOAK_CERT"), os.environ.get("FULMEN_SOAK_KEY")
    app.run(host="127.0.0.1", port=0, ssl=(cert, key) if cert else None)
