"""The file of the `static` scenario: 16 KiB of JavaScript, the size of a
typical script or stylesheet.  Its content is fixed (every server sends the
same bytes) and it is written into bench/out/static/ when it is not there
already, so the repository holds no copy of it."""
import os

DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "out", "static")
NAME = "app.js"
PATH = "/static/" + NAME
SIZE = 16384


def content():
    out = bytearray()
    i = 0
    while len(out) < SIZE:
        out += b"function f%05d(a, b) { return a * %d + b; }\n" % (i, i)
        i += 1
    return bytes(out[:SIZE])


def directory():
    """The directory holding NAME, written first if it is missing or stale."""
    path = os.path.join(DIR, NAME)
    data = content()
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return DIR
    except OSError:
        pass
    os.makedirs(DIR, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return DIR
