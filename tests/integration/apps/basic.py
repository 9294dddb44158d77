"""The main test app: one route per behaviour the integration tests check."""
import asyncio
import base64
import random

from fulmen import Application, MethodNotAllowed, Response, RouteNotFoundException
from task_views import add_task_routes


def hello(request):
    return request.Response(text="Hello world!")


async def ajson(request):
    return request.Response(json={"a": 1, "s": "\u00e9"})


def raw_body(request):
    return request.Response(body=b"\x00\x01\xffbin")


def mime(request):
    return request.Response(text="<b>x</b>", mime_type="text/html")


def extra_headers(request):
    return request.Response(text="h", headers={"X-One": "1", "X-Two": "two words"})


class ClearsOnStr:
    """A header value whose str() empties the headers it is in."""

    def __init__(self, headers):
        self.headers = headers

    def __str__(self):
        self.headers.clear()
        return "v"


def mutated_headers(request):
    # names made at run time (not interned constants): freed with the dict
    first, second = "".join(["X-Mut-", "m" * 300]), "".join(["X-Mut2-", "m" * 300])
    if request.match_dict["how"] == "dict":
        h = {first: "1"}
        h[second] = ClearsOnStr(h)
    else:
        h = [(first, "1")]
        h.append((second, ClearsOnStr(h)))
    return request.Response(text="m", headers=h)


def code(request):
    return request.Response(text="code", code=int(request.match_dict["n"]))


def latin1(request):
    return request.Response(text="caf\u00e9", encoding="latin-1")


def module_response(request):
    # request.Response(...) makes a fulmen.Response, with the same arguments.
    made = request.Response(201, "x")
    return Response(text=str(type(made) is Response and made.code == 201 and made.text == "x"))


def japronto_positional(request):
    # Japronto's positional order is (text, code, ...)
    if request.query.get("code"):
        return request.Response("made", int(request.query["code"]))
    return request.Response("made")


# Content-Type labels as Japronto's: the encoding given, or UTF-8 for text/
CHARSETS = {
    "text-html-latin1": lambda: dict(text="caf\u00e9", mime_type="text/html",
                                     encoding="iso-8859-1"),
    "text-xml-utf8": lambda: dict(text="<a/>", mime_type="application/xml",
                                  encoding="utf-8"),
    "text-params-kept": lambda: dict(text="x", mime_type="text/html; charset=ascii",
                                     encoding="utf-8"),
    # a charset in mime_type alone: the text goes out in it
    "text-mime-latin1": lambda: dict(text="caf\u00e9", mime_type="text/html; charset=iso-8859-1"),
    "body-html": lambda: dict(body=b"<b>x</b>", mime_type="text/html"),
    "body-html-latin1": lambda: dict(body=b"<b>x</b>", mime_type="text/html",
                                     encoding="iso-8859-1"),
    "body-png": lambda: dict(body=b"\x89PNG", mime_type="image/png"),
    "body-encoding": lambda: dict(body=b"x", encoding="utf-8"),
    # the mime_type attribute set after the Response was made
    "text-latin1-later": lambda: dict(text="caf\u00e9", encoding="iso-8859-1",
                                      later="text/html"),
    "text-utf8-later": lambda: dict(text="caf\u00e9", later="text/html"),
}


def charset(request):
    kw = CHARSETS[request.match_dict["case"]]()
    later = kw.pop("later", None)
    response = request.Response(**kw)
    if later:
        response.mime_type = later
    return response


def charset_text(request):
    """The text of a response made as /charset/{case}, after it is set to
    ?set= when given: .text reads and writes in the charset of its label"""
    kw = CHARSETS[request.match_dict["case"]]()
    kw.pop("later", None)
    response = request.Response(**kw)
    if "set" in request.query:
        response.text = request.query["set"]
    response.headers["X-Text"] = ascii(response.text)
    return response


def transport_write(request):
    """raw bytes written to the transport, then an answer; or the transport
    closed (?close): either after the answers before this one"""
    t = request.transport
    if "close" in request.query:
        t.close()
    else:
        t.write(b"RAW")
    return request.Response(text="after")


def json_or_none(request):
    return request.Response(text=repr(request.json))


def big(request):
    n = int(request.match_dict["n"])
    return request.Response(body=bytes(range(256)) * (n // 256) + b"x" * (n % 256))


def big_header(request):
    n = int(request.match_dict["n"])
    return request.Response(text="h", headers={"X-Big": "h" * n, "X-After": "after"})


def user(request):
    return request.Response(json=request.match_dict)


def two(request):
    return request.Response(json=request.match_dict)


def only_get(request):
    return request.Response(text="get only")


def get_or_post(request):
    return request.Response(text=request.method)


def echo(request):
    h = request.headers
    return request.Response(json={
        "method": request.method,
        "path": request.path,
        "query_string": request.query_string,
        "version": request.version,
        "keep_alive": request.keep_alive,
        "headers": [[k, h[k]] for k in h],
        "content_type": h.get("content-type"),
        "has_host": "host" in h,
        "match_dict": request.match_dict,
        "body": base64.b64encode(request.body).decode(),
    })


async def aecho(request):
    await asyncio.sleep(0)
    return echo(request)


def sync_idx(request):
    return request.Response(text=request.match_dict["i"],
                            headers={"X-Idx": request.match_dict["i"]})


async def async_idx(request):
    await asyncio.sleep(random.random() * 0.005)
    return sync_idx(request)


async def async_now(request):
    return sync_idx(request)


def boom(request):
    raise RuntimeError("boom from a sync view")


async def aboom(request):
    await asyncio.sleep(0)
    raise ValueError("boom from an async view")


def not_a_response(request):
    return 42


APP_CLOSE_HEADERS = {
    "dict": {"Connection": "close"},
    "list": [("X-A", "1"), ("connection", "keep-alive, Close")],
    "other": {"Connection": "closed, x-close"},      # no "close" option: ignored
}


def app_close(request):
    return Response(text="bye", headers=APP_CLOSE_HEADERS[request.match_dict["how"]])


async def app_close_async(request):
    await asyncio.sleep(0)
    return app_close(request)


def app_close_stream(request):
    return Response(stream=iter([b"by", b"e"]), headers={"Connection": "close"})


class _StrRunsCode:
    """A header value whose str() replaces the body of the response being
    written, or asks for the request's transport (which sends the answers
    made before it): the head being written must stay whole."""
    def __init__(self, request, resp):
        self.request, self.resp = request, resp

    def __str__(self):
        how = self.request.match_dict["how"]
        if how == "transport":
            return str(self.request.transport.get_extra_info("peername")[0])
        if how == "no-headers":
            self.resp.headers = None        # the dict being written goes
            return "v"
        if how in ("204", "304"):
            self.resp.code = int(how)
            return "v"
        if how == "text":
            self.resp.text = "z" * 7
        else:
            self.resp.body = b"y" * 10
        return "v"


def str_runs_code(request):
    how = request.match_dict["how"]
    resp = Response(text="t" * 5000) if how == "text" else Response(
        body=b"x" * (200000 if how == "big" else 3000))
    resp.headers = {"Server": "mine", "X-A": _StrRunsCode(request, resp), "X-Z": "z"}
    return resp


async def close_own_task(request):
    """An async view that, in its first step, closes (or throws into) its
    task's coroutine, which is running it: that raises in the view, which
    goes on."""
    how = request.match_dict["how"]
    if how.endswith("-later"):
        await asyncio.sleep(0)      # past the first step: the Task is parked
    coro = asyncio.current_task().get_coro()
    try:
        if how.startswith("close"):
            coro.close()
        elif how.startswith("throw"):
            coro.throw(RuntimeError("thrown in"))
        else:
            coro.send(None)
    except BaseException as e:
        raised = type(e).__name__
    else:
        raised = "nothing"
    await asyncio.sleep(0)
    return request.Response(text="raised " + raised)


_parked = {}


class _ClosesParked:
    """A header value whose str() closes the coroutine of a view parked on
    the same connection (its 503 is then ready, while this answer's head
    is being written)."""
    def __init__(self, tag):
        self.tag = tag

    def __str__(self):
        task = _parked.pop(self.tag, None)
        if task is not None:
            task.get_coro().close()
            # (the Task, its coroutine closed under it, stays pending for
            # good: asyncio would say so when it is destroyed)
            task._log_destroy_pending = False
        return "v"


async def closes_parked(request):
    await asyncio.sleep(0.05)           # the parked view is parked by then
    return request.Response(text="A", headers={"X-A": _ClosesParked(request.match_dict["tag"]),
                                               "Server": "mine"})


async def parked(request):
    _parked[request.match_dict["tag"]] = asyncio.current_task()
    await asyncio.sleep(30)
    return request.Response(text="B")


def raise_not_found(request):
    # a view may raise what the router raises: MethodNotAllowed naming
    # the methods it takes, or RouteNotFoundException
    if request.match_dict["how"] == "405":
        raise MethodNotAllowed("GET, HEAD")
    if request.match_dict["how"] == "405-bad":
        raise MethodNotAllowed("GET\r\nX-Injected: 1")
    raise RouteNotFoundException()


def header_crlf(request):
    return request.Response(text="x", headers={"X-Bad": "a\r\nInjected: 1"})


def header_lf(request):
    return request.Response(text="x", headers={"X-Bad": "a\nInjected: 1"})


def header_nul(request):
    return request.Response(text="x", headers={"X-Bad": "a\x00b"})


def header_name_crlf(request):
    return request.Response(text="x", headers={"X-Bad\r\nInjected": "1"})


def returns_generator(request):
    # a mistake: not a generator view (add_route refuses those), a plain
    # function that returns a generator
    return (part for part in [b"a", b"b"])


class _NoStr:
    def __str__(self):
        raise ValueError("no str for this header value")


def header_str_raises(request):
    return request.Response(text="x", headers={"X-Bad": _NoStr()})


def header_char(request):
    """X-Char: "a", the character numbered by the path, "b"."""
    ch = chr(int(request.match_dict["code"]))
    return request.Response(text="x", headers={"X-Char": "a" + ch + "b"})


def header_padded(request):
    """Header values with spaces and tabs around them."""
    return request.Response(text="x", headers={"X-Pad": " \t a b \t ", "X-Blank": " \t "})


async def sleepy(request):
    await asyncio.sleep(0.05)
    return request.Response(text="slept")


def body_len(request):
    return request.Response(json={"len": len(request.body),
                                  "sum": sum(request.body) % 65521})


app = Application(debug=False)
r = app.router
r.add_route("/", hello)
r.add_route("/json", ajson)
r.add_route("/bytes", raw_body)
r.add_route("/mime", mime)
r.add_route("/headers", extra_headers)
r.add_route("/headers-mutated/{how}", mutated_headers)
r.add_route("/code/{n}", code)
r.add_route("/latin1", latin1)
r.add_route("/module-response", module_response)
r.add_route("/japronto-positional", japronto_positional)
r.add_route("/charset/{case}", charset)
r.add_route("/charset-text/{case}", charset_text)
r.add_route("/transport-write", transport_write)
r.add_route("/json-or-none", json_or_none)
r.add_route("/big/{n}", big)
r.add_route("/bigheader/{n}", big_header)
r.add_route("/u/{id}", user)
r.add_route("/two/{a}/x/{b}", two)
r.add_route("/only-get", only_get, method="GET")
r.add_route("/get-or-post", get_or_post, methods=["GET", "POST"])
r.add_route("/echo", echo)
r.add_route("/echo/{rest}", echo)
r.add_route("/aecho", aecho)
r.add_route("/p/{i}", sync_idx)
r.add_route("/ap/{i}", async_idx)
r.add_route("/an/{i}", async_now)
r.add_route("/boom", boom)
r.add_route("/raise-not-found/{how}", raise_not_found)
r.add_route("/str-runs-code/{how}", str_runs_code)
r.add_route("/closes-parked/{tag}", closes_parked)
r.add_route("/parked/{tag}", parked)
r.add_route("/close-own-task/{how}", close_own_task)
r.add_route("/app-close/{how}", app_close)
r.add_route("/app-close-async/{how}", app_close_async)
r.add_route("/app-close-stream", app_close_stream)
r.add_route("/aboom", aboom)
r.add_route("/not-a-response", not_a_response)
r.add_route("/header-crlf", header_crlf)
r.add_route("/header-lf", header_lf)
r.add_route("/header-nul", header_nul)
r.add_route("/header-name-crlf", header_name_crlf)
r.add_route("/header-char/{code}", header_char)
r.add_route("/header-str-raises", header_str_raises)
r.add_route("/header-padded", header_padded)
r.add_route("/returns-generator", returns_generator)
r.add_route("/sleepy", sleepy)
r.add_route("/len", body_len)

STASH = []


def stash(request):
    # keeps the request beyond its answer: its bytes must stay its own
    STASH[:] = [request]
    return request.Response(text="kept")


def stashed(request):
    old = STASH[0]
    return request.Response(json={"path": old.path, "qs": old.query_string,
                                  "x": old.headers.get("X-Mark"), "body": old.text})


HOLD = {"event": None, "waiting": 0}


async def wait_for_release():
    if HOLD["event"] is None:
        HOLD["event"] = asyncio.Event()
    ev = HOLD["event"]
    HOLD["waiting"] += 1
    try:
        await ev.wait()
    finally:
        HOLD["waiting"] -= 1


async def hold(request):
    # waits until /release: a request that outlives its read
    await wait_for_release()
    return request.Response(text=request.path)


def held(request):
    return request.Response(json=HOLD["waiting"])


def release(request):
    if HOLD["event"] is not None:
        HOLD["event"].set()
        HOLD["event"] = None
    return request.Response(text="released")


def hold_stream(request):
    # a streamed body that waits for /release after its first item
    async def body():
        yield b"first,"
        await wait_for_release()
        yield b"last"
    return Response(stream=body())


async def body_length(request):
    # a stream=True route: the body's length, read as it arrives
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return Response(json={"n": n})


def chunks(request):
    # n small items from a sync generator, or an endless stream for n = 0
    n = request.match_dict["n"]

    def body():
        i = 0
        while n == 0 or i < n:
            yield b"item %d\n" % i
            i += 1
    return Response(stream=body())


def attr_mark(request):
    # an attribute a view sets on its request is gone by the next request,
    # though request objects are reused
    seen = getattr(request, "user_mark", None)
    request.user_mark = request.match_dict["v"]
    return request.Response(json={"seen": seen, "dict": sorted(vars(request))})


def io_mode(request):
    srv = app._server
    return request.Response(json={"direct_io": bool(srv.direct_io),
                                  "direct": srv.direct_connections,
                                  "connections": srv.connections})


add_task_routes(r)
r.add_route("/attr/{v}", attr_mark)
r.add_route("/io", io_mode)
r.add_route("/writes", lambda request: request.Response(text=str(app._server.writes)))
r.add_route("/gc", lambda request: request.Response(json={
    "setting": app.gc_freeze, "frozen": __import__("gc").get_freeze_count(),
    "threshold": __import__("gc").get_threshold()[0]}))
r.add_route("/stash/{rest}", stash, methods=["GET", "POST"])
r.add_route("/stashed", stashed)
r.add_route("/hold/{x}", hold)
r.add_route("/held", held)
r.add_route("/release", release)
r.add_route("/hold-stream", hold_stream)
r.add_route("/chunks/{n:int}", chunks)
r.add_route("/body-length", body_length, method="POST", stream=True)
r.add_route("/dispatched", lambda request: request.Response(json=app._server.requests))

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
