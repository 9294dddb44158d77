"""Allocation failures on purpose (test_nomem.py): GET /arm/K makes the K-th
allocation of the interpreter's allocators after it fail (n in a row with
?n=), through _testcapi.set_nomemory; GET /disarm ends that.  The other
routes are ordinary work for the failure to land in."""
import asyncio

import _testcapi

from fulmen import Application


def arm(request):
    _testcapi.remove_mem_hooks()
    start = int(request.match_dict["start"])
    _testcapi.set_nomemory(start, start + int(request.query.get("n", "1")))
    return request.Response(text="armed")


def disarm(request):
    _testcapi.remove_mem_hooks()
    return request.Response(text="ok")


def hello(request):
    return request.Response(text="Hello world!")


def params(request):
    return request.Response(text="%s %s %s" % (request.match_dict["x"], request.query.get("q"),
                                               request.headers.get("X-A")))


def echo(request):
    return request.Response(json=request.json)


async def aview(request):
    return request.Response(text="a")


async def asleep(request):
    await asyncio.sleep(0)
    return request.Response(text="slept")


def upload(request):
    return request.Response(text=str(len(request.body)))


async def chunks():
    for i in range(3):
        yield b"chunk%d " % i


async def stream(request):
    # (a generator function made per request would fail in MAKE_FUNCTION,
    # which CPython 3.12.1 does not survive: a crash of the interpreter's,
    # not of the server's)
    return request.Response(stream=chunks())


def quiet_destroyed_pending(loop, context):
    # A Task whose constructor runs out of memory scheduling its first step
    # (CPython's Task.__init__ counts it pending before that) is destroyed
    # pending, and asyncio says so; the engine answers the view's
    # MemoryError with a 500 all the same.  Anything else is reported.
    if context.get("message") != "Task was destroyed but it is pending!":
        loop.default_exception_handler(context)


app = Application()
app.on_startup(lambda app: app.loop.set_exception_handler(quiet_destroyed_pending))
r = app.router
r.add_route("/arm/{start}", arm)
r.add_route("/disarm", disarm)
r.add_route("/", hello)
r.add_route("/p/{x}", params)
r.add_route("/echo", echo, methods=["POST"])
r.add_route("/a", aview)
r.add_route("/sleep", asleep)
r.add_route("/upload", upload, methods=["POST"])
r.add_route("/stream", stream)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
