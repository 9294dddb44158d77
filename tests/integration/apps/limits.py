"""The app for the hostile-input tests: small limits and short timeouts, so
that every limit can be hit over a real socket in a fraction of a second.

FULMEN_LIMITS_PROFILE=roomy serves the same routes with the default settings
(no connection limit, long timeouts); the leak test uses that.
"""
import asyncio
import os
import socket
import sys

from fulmen import Application, Response

PROFILE = os.environ.get("FULMEN_LIMITS_PROFILE", "small")

SMALL = dict(header_timeout=0.5, body_timeout=0.5, keep_alive_timeout=0.7,
             max_connections=3, max_header_size=2048, max_headers=20,
             max_body_size=1000)

# Objects that every request touches: their reference counts must not move.
MARKER = object()
BODY = b"static-body-" + os.urandom(8).hex().encode()
HEADER_VALUE = "hv-" + os.urandom(4).hex()

hits = {}


def hello(request):
    return request.Response(text="ok")


def body_len(request):
    return request.Response(json={"len": len(request.body),
                                  "sum": sum(request.body) % 65521})


async def abody_len(request):
    await asyncio.sleep(0)
    return body_len(request)


async def stream_len(request):
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return request.Response(json={"len": n})


async def stream_then(request):
    """request.<what> on a stream=True route, before and after its body was
    read with stream(): what each gave (or raised)."""
    what = request.match_dict["what"]

    def attempt():
        try:
            v = getattr(request, what)
            return "value %r" % (v if not isinstance(v, dict) else dict(v),)
        except Exception as e:
            return "%s: %s" % (type(e).__name__, e)
    before = attempt()
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return request.Response(json={"before": before, "after": attempt(), "len": n})


async def own_timeout(request):
    # the view's own timeout, nothing to do with the request: a 500
    await asyncio.wait_for(asyncio.sleep(10), 0.001)


async def sleep_ms(request):
    await asyncio.sleep(int(request.match_dict["ms"]) / 1000)
    return request.Response(text="slept")


def hit(request):
    name = request.match_dict["name"]
    hits[name] = hits.get(name, 0) + 1
    return request.Response(text="hit %s" % name)


def count(request):
    return request.Response(text=str(hits.get(request.match_dict["name"], 0)))


def boom(request):
    raise RuntimeError("boom (expected by the tests)")


async def aboom(request):
    await asyncio.sleep(0)
    raise ValueError("aboom (expected by the tests)")


def static(request):
    request.extra["marker"] = MARKER
    return request.Response(body=BODY, headers={"X-Static": HEADER_VALUE})


async def astatic(request):
    request.extra["marker"] = MARKER
    if "now" not in request.query:  # ?now: its Task ends in its first step
        await asyncio.sleep(0)
    return request.Response(body=BODY, headers={"X-Static": HEADER_VALUE})


def refcounts(request):
    return request.Response(json={"marker": sys.getrefcount(MARKER),
                                  "body": sys.getrefcount(BODY),
                                  "header": sys.getrefcount(HEADER_VALUE)})


def big(request):
    return request.Response(body=b"b" * int(request.match_dict["n"]))


def big_text(request):
    return request.Response(text="t" * int(request.match_dict["n"]))


def big_json(request):
    return request.Response(json={"j": "j" * int(request.match_dict["n"])})


tight_buffered = []


def big_tight(request):
    """/big/<n> through a 4 KB socket send buffer: most of a response of a
    few ten KB waits in the transport.  What waits there, once the response
    is written, goes to tight_buffered (shown by /tight-buffered)."""
    t = request.transport
    t.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    asyncio.get_running_loop().call_soon(
        lambda: tight_buffered.append(t.get_write_buffer_size()))
    return big(request)


def tight(request):
    return request.Response(json=tight_buffered)


def pid(request):
    return request.Response(text=str(os.getpid()))


# Views that try to put CR, LF or NUL into a response head.
UNSAFE = {
    "value-cr": lambda: Response(text="x", headers={"X-Bad": "a\rInjected: 1"}),
    "value-lf-end": lambda: Response(text="x", headers={"X-Bad": "a\n"}),
    "value-crlf-end": lambda: Response(text="x", headers={"X-Bad": "a\r\n"}),
    "value-crlfcrlf": lambda: Response(text="x", headers={"X-Bad": "a\r\n\r\nInjected: 1"}),
    "value-nul-end": lambda: Response(text="x", headers={"X-Bad": "a\x00"}),
    "value-list-crlf": lambda: Response(text="x", headers=[("X-Ok", "1"),
                                                           ("X-Bad", "a\r\nInjected: 1")]),
    "name-lf": lambda: Response(text="x", headers={"X-Bad\nInjected": "1"}),
    "name-cr": lambda: Response(text="x", headers={"X-Bad\rInjected": "1"}),
    "name-nul": lambda: Response(text="x", headers={"X-Bad\x00": "1"}),
    "name-colon": lambda: Response(text="x", headers={"X-Bad: Injected": "1"}),
    "name-space": lambda: Response(text="x", headers={"X-Bad Injected": "1"}),
    "name-empty": lambda: Response(text="x", headers={"": "Injected"}),
    "mime-crlf": lambda: Response(text="x", mime_type="text/plain\r\nInjected: 1"),
    "mime-nul": lambda: Response(text="x", mime_type="text/plain\x00"),
    "encoding-crlf": lambda: Response(text="x", encoding="utf-8\r\nInjected: 1"),
    "cookie-crlf": lambda: Response(text="x", cookies={"c": "v\r\nInjected: 1"}),
    "cookie-name-crlf": lambda: Response(text="x", cookies={"c\r\nInjected": "v"}),
}


def unsafe(request):
    return UNSAFE[request.match_dict["kind"]]()


def unsafe_set_after(request):
    # Headers mutated after construction are checked too.
    r = request.Response(text="x")
    r.headers["X-Bad"] = "a\r\nInjected: 1"
    return r


def unsafe_set_cookie(request):
    r = request.Response(text="x")
    r.set_cookie("c", "v", path="/\r\nInjected: 1")
    return r


def location(request):
    # A header echoing the request target: a target cannot carry CR/LF, but
    # percent-decoded paths can.
    return request.Response(code=302, text="", headers={"Location": request.path})


app = Application(debug=False, **(SMALL if PROFILE == "small" else {}))
r = app.router
r.add_route("/", hello)
r.add_route("/len", body_len)
r.add_route("/alen", abody_len)
r.add_route("/len5000", body_len, max_body_size=5000)
r.add_route("/len10", body_len, max_body_size=10)
r.add_route("/len-huge", body_len, max_body_size=1 << 40)
r.add_route("/sleep/{ms}", sleep_ms)
r.add_route("/stream-len", stream_len, method="POST", stream=True)
r.add_route("/stream-then/{what}", stream_then, method="POST", stream=True)
r.add_route("/own-timeout", own_timeout)
r.add_route("/hit/{name}", hit)
r.add_route("/count/{name}", count)
r.add_route("/boom", boom)
r.add_route("/aboom", aboom)
r.add_route("/static", static)
r.add_route("/astatic", astatic)
r.add_route("/refcounts", refcounts)
r.add_route("/pid", pid)
r.add_route("/big/{n}", big)
r.add_route("/big-text/{n}", big_text)
r.add_route("/big-json/{n}", big_json)
r.add_route("/big-tight/{n}", big_tight)
r.add_route("/tight-buffered", tight)
r.add_route("/unsafe/{kind}", unsafe)
r.add_route("/unsafe-set-after", unsafe_set_after)
r.add_route("/unsafe-set-cookie", unsafe_set_cookie)
r.add_route("/location/{rest:path}", location)

if __name__ == "__main__":
    # CERTFILE KEYFILE: serve TLS (the leak test's TLS case)
    app.run(host="127.0.0.1", port=0, ssl=tuple(sys.argv[1:3]) if len(sys.argv) > 2 else None)
