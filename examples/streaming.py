"""Streamed responses: a large body produced piece by piece.

``Response(stream=iterable)`` takes a generator (or any iterable, or an async
iterable) of bytes or str.  The body goes out chunked as it is produced, and
the server pauses the generator while the client is slow to read, so memory
stays flat however large the body is.  Give a ``Content-Length`` header when
the size is known in advance: the body is then sent with that length instead
of chunked.

    python examples/streaming.py [--host H] [--port P]

    curl -o /dev/null localhost:8080/download?mb=100
    curl localhost:8080/csv?rows=5
    curl -N localhost:8080/countdown
"""
import argparse
import asyncio
import hashlib

from fulmen import Application

CHUNK = 64 * 1024


def blocks(size):
    """size bytes of a repeating pattern, CHUNK at a time."""
    pattern = bytes(range(256)) * (CHUNK // 256)
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield pattern[:n]
        left -= n


def download(request):
    size = int(float(request.query.get("mb", "10")) * 1024 * 1024)
    return request.Response(
        stream=blocks(size),
        headers={"Content-Length": str(size),
                 "Content-Disposition": 'attachment; filename="blob.bin"'})


def rows(n):
    yield "id,square,sha1\n"
    for i in range(n):
        yield "%d,%d,%s\n" % (i, i * i, hashlib.sha1(str(i).encode()).hexdigest())


def csv(request):
    # no Content-Length: sent with Transfer-Encoding: chunked
    n = min(int(request.query.get("rows", "100000")), 10_000_000)
    return request.Response(stream=rows(n), mime_type="text/csv")


async def countdown_gen(n):
    for i in range(n, 0, -1):
        yield "%d...\n" % i
        await asyncio.sleep(0.05)
    yield "liftoff!\n"


async def countdown(request):
    return request.Response(stream=countdown_gen(int(request.query.get("from", "5"))))


app = Application()
app.router.add_route("/download", download)
app.router.add_route("/csv", csv)
app.router.add_route("/countdown", countdown)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
