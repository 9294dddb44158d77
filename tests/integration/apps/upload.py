"""Request bodies read as they arrive (add_route(..., stream=True))."""
import asyncio
import hashlib
import sys

from fulmen import Application

app = Application(max_body_size=4096, body_timeout=5.0)


async def digest(request):
    h = hashlib.sha256()
    n = chunks = 0
    async for chunk in request.stream():
        h.update(chunk)
        n += len(chunk)
        chunks += 1
        await asyncio.sleep(0)   # a slow consumer: the server must wait for it
    return request.Response(json={"n": n, "sha256": h.hexdigest(), "chunks": chunks})


async def noted(request):
    """digest, and a line on stderr once its answer is written or dropped"""
    request.add_done_callback(lambda r: print("noted done", file=sys.stderr, flush=True))
    return await digest(request)


async def cancelled_read(request):
    """A read given up (wait_for's timeout) before the body came: the body
    still comes whole to the reads after it."""
    it = request.stream().__aiter__()
    try:
        await asyncio.wait_for(it.__anext__(), 0.01)
    except asyncio.TimeoutError:
        print("read given up", file=sys.stderr, flush=True)
    parts = [c async for c in it]
    return request.Response(body=b"".join(parts))


async def early(request):
    return request.Response(text="early")


async def whole(request):
    parts = [c async for c in request.stream()]
    return request.Response(json={"parts": len(parts), "body": b"".join(parts).decode()})


async def twice(request):
    """Read request.stream() to its end, then call it again."""
    first = b"".join([c async for c in request.stream()])
    try:
        second = b"".join([c async for c in request.stream()]).decode()
    except RuntimeError as e:
        second = "RuntimeError: %s" % e
    return request.Response(json={"first": first.decode(), "second": second})


def hello(request):
    return request.Response(text="hi")


r = app.router
r.add_route("/digest", digest, method="POST", stream=True, max_body_size=1 << 34)
r.add_route("/limited", digest, method="POST", stream=True)      # 4096 bytes
r.add_route("/cancelled-read", cancelled_read, method="POST", stream=True)
r.add_route("/noted", noted, method="POST", stream=True, max_body_size=1 << 20)
r.add_route("/early", early, method="POST", stream=True, max_body_size=1 << 20)
r.add_route("/whole", whole, method="POST")                       # not streamed
r.add_route("/twice", twice, method="POST")
r.add_route("/twice-streamed", twice, method="POST", stream=True)
r.add_route("/", hello)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
