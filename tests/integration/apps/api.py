"""The API test app: the request and response objects, routing, error
handlers, hooks, streamed bodies and files.

Paths it needs come from the environment (set by the test fixture):
    FULMEN_API_STATIC         directory served by add_static('/static', ...)
    FULMEN_API_FILE           a file served by Response(file=...)
    FULMEN_API_SHUTDOWN_FILE  (optional) the shutdown hooks append to it
"""
import asyncio
import base64
import collections
import datetime
import decimal
import enum
import functools
import json
import os
import pickle
import sys
import tempfile
from http.cookies import SimpleCookie

import fulmen
from fulmen import streams
from fulmen import (Application, BadRequest, FileResponse, MethodNotAllowed,
                    Response, RouteNotFoundException)


# ---- JSON: the custom fallback encoder ----------------------------------------

def _default(o):
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, (datetime.date, datetime.datetime)):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return str(o)
    raise TypeError("not JSON serializable: %r" % (o,))


def custom_dumps(obj):
    return json.dumps(obj, default=_default)


app = Application(debug=False, json_dumps=custom_dumps)
r = app.router

STATE = {"startup": [], "startup_pid": None, "done": {}, "closed": collections.Counter(),
         "progress": collections.Counter(), "sse": {}}


# ---- request attributes -------------------------------------------------------

def _files(request):
    out = {}
    for k in request.files:
        out[k] = [[f.name, f.type, base64.b64encode(f.body).decode()]
                  for f in request.files.getall(k)]
    return out


def info(request):
    q = request.query
    route = request.route
    return Response(json={
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "query": q,
        "query_is_dict": isinstance(q, dict),
        "query_all": {k: q.getall(k) for k in q},
        "getall_default": q.getall("no-such-key", "dflt"),
        "match_dict": {k: [str(v), type(v).__name__] for k, v in request.match_dict.items()},
        "hostname": request.hostname,
        "port": request.port,
        "remote_addr": request.remote_addr,
        "version": request.version,
        "keep_alive": request.keep_alive,
        "mime_type": request.mime_type,
        "encoding": request.encoding,
        "cookies": request.cookies,
        "route_pattern": route.pattern if route is not None else None,
        "route_name": route.name if route is not None else None,
        "app_is_app": request.app is app,
        "extra": request.extra,
        "response_is_fulmen_response": type(request.Response(text="x")) is fulmen.Response,
    })


def text(request):
    return Response(json={"text": request.text, "mime_type": request.mime_type,
                          "encoding": request.encoding})


def json_body(request):
    return Response(json={"json": request.json})


def json_once(request):
    # parsed once, as Japronto memoized it: what the view adds stays
    request.json["added"] = True
    return Response(json={"json": request.json, "same_text": request.text is request.text})


def form(request):
    f = request.form
    return Response(json={"form": f, "form_all": {k: f.getall(k) for k in f},
                          "files": _files(request)})


def done_register(request):
    key = request.match_dict["key"]
    STATE["done"][key] = "view ran"

    def cb(req):
        STATE["done"][key] = "callback got %s" % req.path

    request.add_done_callback(cb)
    return Response(text=STATE["done"][key])


async def done_gone(request):
    """Registers a callback, then answers only once the client has gone."""
    key = request.match_dict["key"]
    STATE["done"][key] = "view waiting"

    def cb(req):
        STATE["done"][key] = "callback got %s" % req.path

    request.add_done_callback(cb)
    for _ in range(1000):
        if request.transport is None:    # the connection was lost
            break
        await asyncio.sleep(0.01)
    STATE["done"][key] = "view returned"
    return Response(text="nobody reads this")


def done_late(request):
    """Callbacks added once the answer is done: by a callback as it runs,
    and after all of them (at the loop's next turn)."""
    log = STATE["done"][request.match_dict["key"]] = []

    def first(req):
        log.append("first")
        req.add_done_callback(lambda r: log.append("added by first"))
        asyncio.get_running_loop().call_soon(req.add_done_callback,
                                             lambda r: log.append("added later"))

    request.add_done_callback(first)
    return Response(text="ok")


def done_state(request):
    return Response(text=str(STATE["done"].get(request.match_dict["key"], "unknown")))


def enc_static(request):
    return Response(text="static a/b")


def typed(request):
    return info(request)


def users_me(request):
    return Response(text="me")


def users_name(request):
    return Response(text="user " + request.match_dict["name"])


def braces(request):
    return info(request)


# ---- responses ----------------------------------------------------------------

def cookies_dict(request):
    return Response(text="c", cookies={"a": "1", "b": "two words"})


def headers_mutated(request):
    """request.headers written as a hook would, with names in any case; then
    pickled and copied with request.query"""
    h, q = request.headers, request.query
    h["x-new"] = "1"
    h.update({"x-up": "u"})
    h |= {"x-or": "o"}
    out = {"new": h.get("X-New"), "up": h["X-UP"], "new_in": "X-NEW" in h,
           "pop": h.pop("X-FOO"), "foo_in": "x-foo" in h,
           "setdefault": h.setdefault("x-sd", "d"), "sd": h["X-Sd"]}
    del h["HOST"]
    out["host_in"] = "host" in h
    hp, qp = pickle.loads(pickle.dumps(h)), pickle.loads(pickle.dumps(q))
    out.update(pickled=[type(hp).__name__, hp.get("x-new"), type(qp).__name__, qp.getall("b")],
               copied=[h.copy().get("x-up"), q.copy().getall("b"),
                       type(h | {"x-b": 1}).__name__, (h | {"x-b": 1}).get("X-B")],
               keys=sorted(h))
    return Response(json=out)


def cookies_bad_name(request):
    return Response(text="c", cookies={5: "x"})


def cookies_simple(request):
    c = SimpleCookie()
    c["sc"] = "v"
    c["sc"]["path"] = "/p"
    c["sc"]["httponly"] = True
    return Response(text="c", cookies=c)


def set_cookie(request):
    resp = Response(text="c")
    resp.set_cookie("sid", "abc", max_age=60, httponly=True, secure=True, samesite="Lax")
    resp.set_cookie("plain", "1")
    resp.delete_cookie("old")
    return resp


def headers_list(request):
    return Response(text="h", headers=[("X-Rep", "1"), ("X-Rep", "2"), ("Link", "<a>")])


class JSONResponse(Response):
    """A subclass with an __init__ of its own (as Starlette's)."""
    def __init__(self, data, status=200):
        super().__init__(json=data, code=status, headers={"X-Sub": type(self).__name__})


def resp_subclass_init(request):
    return JSONResponse({"made": "by a subclass"}, 201)


def headers_values(request):
    """Header values of each kind: str, bytes, bytes-like, an int."""
    return Response(text="h", headers=[("X-Str", "s"), ("X-Bytes", b"b"),
                                       ("X-Bytearray", bytearray(b"ba")),
                                       ("X-Memoryview", memoryview(b"mv")), ("X-Int", 7)])


def resp_bytes(request):
    return Response(body=b"z" * request.match_dict["n"])


def headers_own(request):
    """The app's own Server and Date."""
    return Response(text="h", headers=[("server", "edge/1"), ("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),
                                       ("X-After", "1")])


def headers_big(request):
    n = request.match_dict["n"]
    return Response(text="big", headers=[("X-Big-%d" % i, "v" * 1000) for i in range(n)]
                    + [("X-Last", "last")])


def text_and_body(request):
    return Response(text="a", body=b"b")


def json_and_text(request):
    return Response(json={"a": 1}, text="a")


def json_and_body(request):
    return Response(json=[1], body=b"x")


def code(request):
    return Response(code=request.match_dict["n"], text="code")


def latin1(request):
    return Response(text="caf\u00e9 \u00fc", encoding="latin-1")


def latin1_mime(request):
    return Response(text="caf\u00e9", encoding="latin-1", mime_type="text/html; charset=latin-1")


class Color(enum.IntEnum):
    RED = 1


JSON_CASES = {
    "dict": {"a": 1, "b": [1, 2, {"c": None}], "d": {"e": "f"}},
    "list": [1, "two", 3.5, None, True, False, [], {}],
    "tuple": (1, (2, 3), "x"),
    "empty-dict": {},
    "empty-list": [],
    "str": "plain ascii",
    "escapes": "q\"b\\s/\b\f\n\r\t",
    "control": "".join(chr(i) for i in range(32)) + "\x7f",
    "non-ascii": "caf\u00e9 \u20ac \u00ff \u0100 \u4e2d",
    "astral": "\U0001F600 \U0001D11E \U0010FFFF",
    "lone-surrogate": "a\ud800b\udfffc",
    "line-separators": "\u2028\u2029",
    "int": 42,
    "negative": -7,
    "int64-max": 2 ** 63 - 1,
    "int64-min": -2 ** 63,
    "big-int": 2 ** 64 + 1,
    "bigger-negative": -(10 ** 30),
    "zero-float": 0.0,
    "neg-zero": -0.0,
    "float": 0.1,
    "float-round": 1.0 / 3,
    "float-exp": 1e300,
    "float-small": 5e-324,
    "float-1e16": 1e16,
    "float-int": 3.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "nan-in-list": [float("nan"), float("inf"), float("-inf")],
    "true": True,
    "false": False,
    "none-in-list": [None],
    "non-str-keys": {1: "a", 2.5: "b", None: "c", False: "d"},
    "ordered-dict": collections.OrderedDict([("z", 1), ("a", 2)]),
    "int-enum": Color.RED,
    "deep": json.loads("[" * 300 + "]" * 300),
    "nested-mixed": {"l": [{"t": (1, "\u00e9")}, [[["\U0001F600"]]]]},
    "unicode-keys": {"\u00e9": 1, "\U0001F600": 2, "a\nb": 3},
}

# types json.dumps cannot encode: only the custom json_dumps= knows them
CUSTOM_CASES = {
    "set": {"s": {3, 1, 2}},
    "date": [datetime.date(2020, 1, 2)],
    "decimal": {"d": decimal.Decimal("1.50")},
}


def json_case(request):
    name = request.match_dict["name"]
    value = JSON_CASES.get(name, CUSTOM_CASES.get(name))
    return Response(json=value)


def json_ref(request):
    name = request.match_dict["name"]
    if name in JSON_CASES:
        return Response(text=json.dumps(JSON_CASES[name]), mime_type="application/json")
    return Response(text=custom_dumps(CUSTOM_CASES[name]), mime_type="application/json")


def json_names(request):
    return Response(json={"plain": sorted(JSON_CASES), "custom": sorted(CUSTOM_CASES)})


# ---- routing ------------------------------------------------------------------

def method_echo(request):
    return Response(text=request.method)


def own_options(request):
    return Response(text="my options", headers={"X-Own": "1"})


def url_for(request):
    return Response(json={
        "item": app.router.url_for("item", id=3),
        "file": app.router.url_for("file", p="a b/c.txt"),
        "plain": app.router.url_for("plain"),
        "app_item": app.url_for("item", id=4) if hasattr(app, "url_for") else None,
    })


def item(request):
    return Response(text="item %r" % (request.match_dict["id"],))


def file_route(request):
    return Response(text="file " + request.match_dict["p"])


def plain(request):
    return Response(text="plain")


# ---- errors -------------------------------------------------------------------

class AppError(Exception):
    pass


class NotFoundError(AppError):
    pass


class DeepNotFound(NotFoundError):
    pass


def raise_app_error(request):
    raise AppError("generic")


def raise_not_found(request):
    raise NotFoundError("missing thing")


def raise_deep(request):
    raise DeepNotFound("deep")


def raise_runtime(request):
    raise RuntimeError("secret-internal-detail")


def raise_message(request):
    raise RuntimeError("message " + request.match_dict["msg"])


async def araise_not_found(request):
    await asyncio.sleep(0)
    raise NotFoundError("async missing")


def raise_bad_request(request):
    raise BadRequest("explicitly bad")


def broken_handler_route(request):
    raise KeyError("k")


def on_app_error(request, exc):
    return Response(code=418, text="app error: %s" % exc)


def on_not_found_error(request, exc):
    return Response(code=404, text="not found error: %s" % exc)


def on_key_error(request, exc):
    raise ValueError("the error handler itself fails")


def on_route_not_found(request, exc):
    if request.path.startswith("/eh-big/"):
        return Response(code=404, body=b"n" * int(request.path[8:]))
    if request.path.startswith("/eh/"):
        return Response(code=404, text="custom 404 for " + request.path,
                        headers={"X-Custom": "404"})
    return Response(code=404, text="Not Found")


def on_method_not_allowed(request, exc):
    allow = exc.args[0]
    if request.path.startswith("/eh/"):
        return Response(code=405, text="custom 405, allow " + allow,
                        headers={"Allow": allow, "X-Custom": "405"})
    return Response(code=405, text="Method Not Allowed", headers={"Allow": allow})


app.add_error_handler(AppError, on_app_error)
app.add_error_handler(NotFoundError, on_not_found_error)
app.add_error_handler(KeyError, on_key_error)
app.add_error_handler(RouteNotFoundException, on_route_not_found)
app.add_error_handler(MethodNotAllowed, on_method_not_allowed)


# ---- hooks --------------------------------------------------------------------

def pre_sync(request):
    request.extra.setdefault("pre", []).append("sync")
    if "X-Short" in request.headers:
        return Response(code=203, text="short-circuited by sync hook")


async def pre_async(request):
    await asyncio.sleep(0)
    request.extra.setdefault("pre", []).append("async")
    if "X-Short-Async" in request.headers:
        return Response(code=203, text="short-circuited by async hook")


def post_sync(request, response):
    if "X-Mutate" in request.headers:
        h = response.headers
        if isinstance(h, dict):
            h["X-Hooked"] = "sync"
        else:
            response.headers = list(h) + [("X-Hooked", "sync")]
        response.code = 202
        response.body = response.body + b" +mutated"


async def post_async(request, response):
    await asyncio.sleep(0)
    if "X-Replace" in request.headers:
        return Response(code=201, text="replaced; was %d" % response.code)


app.on_request(pre_sync)
app.on_request(pre_async)
app.on_response(post_sync)
app.on_response(post_async)


def hook_view(request):
    return Response(json={"pre": request.extra.get("pre")})


def startup_state(request):
    return Response(json={"startup": STATE["startup"], "pid": STATE["startup_pid"],
                          "my_pid": os.getpid()})


@app.on_startup
def startup_sync(a):
    STATE["startup"].append(["sync", a is app])
    STATE["startup_pid"] = os.getpid()


@app.on_startup
async def startup_async(a):
    await asyncio.sleep(0)
    STATE["startup"].append(["async", a is app])


def _shutdown_write(line):
    path = os.environ.get("FULMEN_API_SHUTDOWN_FILE")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@app.on_shutdown
def shutdown_sync(a):
    _shutdown_write("sync %d" % os.getpid())


@app.on_shutdown
async def shutdown_async(a):
    await asyncio.sleep(0)
    _shutdown_write("async %d" % os.getpid())


def user_prop(request):
    return request.headers.get("X-User", "anonymous")


def greet(request, greeting):
    return "%s, %s" % (greeting, request.user)


def greet_partial(greeting, request, who):
    return "%s %s from %s" % (greeting, who, request.path)


class Greeter:
    def __init__(self, greeting):
        self.greeting = greeting

    def greet(self, request, who):
        return "%s %s from %s" % (self.greeting, who, request.path)

    def __call__(self, request, who):
        return self.greet(request, who)


app.extend_request(user_prop, name="user", property=True)
app.extend_request(greet)
# not plain functions: each is called with the request first all the same
app.extend_request(Greeter("hello").greet, name="greet_bound")
app.extend_request(functools.partial(greet_partial, "hey"), name="greet_partial")
app.extend_request(Greeter("hi"), name="greet_callable")


def extended(request):
    return Response(json={"user": request.user, "greet": request.greet("hi"),
                          "bound": request.greet_bound("bob"),
                          "partial": request.greet_partial("ann"),
                          "callable": request.greet_callable("eve")})


# ---- streams ------------------------------------------------------------------

def stream_sync(request):
    n = request.match_dict["n"]
    return Response(stream=(b"chunk %d\n" % i for i in range(n)),
                    mime_type="text/plain")


def stream_async(request):
    n = request.match_dict["n"]

    async def gen():
        for i in range(n):
            await asyncio.sleep(0)
            yield b"achunk %d\n" % i
    return Response(stream=gen(), mime_type="text/plain")


async def stream_late(request):
    """A view that awaits something before it answers with a stream."""
    await asyncio.sleep(0.05)
    return Response(stream=(b"late %d\n" % i for i in range(request.match_dict["n"])),
                    mime_type="text/plain")


def stream_str(request):
    return Response(stream=["caf\u00e9 ", "", "\U0001F600", b" bytes", bytearray(b" ba")],
                    mime_type="text/plain; charset=utf-8")


def stream_length(request):
    """?cl=A|B sends the Content-Length header once per value (50 if not
    given)."""
    parts = [b"0123456789"] * 5
    lengths = request.query.get("cl", "50").split("|")
    return Response(stream=iter(parts), headers=[("Content-Length", n) for n in lengths],
                    mime_type="application/octet-stream")


def stream_fail(request):
    """Two items, then the generator raises: the body must not look whole.
    ?exc=SystemExit or KeyboardInterrupt raises that instead; ?first=0
    raises before the first item."""
    exc = {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
           "ConnectionRefusedError": ConnectionRefusedError, "GeneratorExit": GeneratorExit,
           "BaseException": type("AppsOwnBaseException", (BaseException,), {})}.get(
        request.query.get("exc"), RuntimeError)
    first = request.query.get("first") != "0"

    def gen():
        if first:
            yield b"first "
            yield b"second "
        raise exc("the generator failed")

    async def agen():
        await asyncio.sleep(0)
        if first:
            yield b"first "
            await asyncio.sleep(0)
            yield b"second "
        raise exc("the generator failed")
    return Response(stream=gen() if request.match_dict["kind"] == "sync" else agen())


def stream_slow_close(request):
    """An async generator whose first item is of the wrong type and whose
    clean-up waits for good: the client's FIN cancels that wait."""
    async def agen():
        try:
            yield 123
        finally:
            await asyncio.Event().wait()
    return Response(stream=agen())


def stream_bad_length(request):
    """A stream that breaks the Content-Length it announced."""
    parts = {"short": [b"abc"], "none": []}.get(request.match_dict["kind"], [b"abcd", b"efgh"])
    return Response(stream=iter(parts), headers={"Content-Length": "5"})


def file_emptied(request):
    """A file whose answer is made (as Response(file=...) makes it), which
    then gets shorter (?to=N bytes; 0 if not given) before its first block
    goes."""
    with tempfile.NamedTemporaryFile(dir=os.environ["FULMEN_API_STATIC"]) as f:
        f.truncate(256 * 1024)
        body = streams._file_body(f.name, os.fstat(f.fileno()), 0, 256 * 1024)
        f.truncate(int(request.query.get("to", "0")))
        # opened again for the answer (_FileBody.open) before it goes
        fd = os.open(f.name, os.O_RDONLY)
        body._reopen = lambda: fd
    return Response(stream=body, headers={"Content-Length": str(256 * 1024)})


def file_fifo(request):
    """A FIFO opened as the file of an answer: the stat() before the open
    skipped, as when a FIFO is renamed over the file between the two."""
    path = os.path.join(os.environ["FULMEN_API_STATIC"], "fifo")
    r = streams._file_body(path, os.stat(path), 0, 10)
    return r if isinstance(r, Response) else Response(text="opened")


def stream_code(request):
    """A stream answered with a status that has no content (1xx, 204, 304)."""
    key = request.query.get("key")

    def gen():
        STATE["progress"][key] += 1
        yield b"must not be sent"
    return Response(code=request.match_dict["code"], stream=gen(),
                    headers={"Content-Length": "16", "X-Stream": "1"})


def stream_length_wrong(request):
    # says 50 bytes, yields n (the app's mistake: the server must not let
    # it shift the framing)
    n = request.match_dict["n"]
    return Response(stream=iter([b"x" * (n // 2), b"y" * (n - n // 2)]),
                    headers={"Content-Length": "50"}, mime_type="application/octet-stream")


def stream_big(request):
    n = request.match_dict["n"]
    key = request.query.get("key")
    chunk = b"\xab" * (256 * 1024)

    def gen():
        try:
            for _ in range(n):
                if key:
                    STATE["progress"][key] += 1
                yield chunk
        finally:
            if key:
                STATE["closed"][key] += 1
    return Response(stream=gen(), mime_type="application/octet-stream")


def stream_forever(request):
    key = request.match_dict["key"]
    chunk = b"x" * 65536

    def gen():
        try:
            while True:
                STATE["progress"][key] += 1
                yield chunk
        finally:
            STATE["closed"][key] += 1
    return Response(stream=gen())


def astream_forever(request):
    key = request.match_dict["key"]
    chunk = b"y" * 65536

    async def gen():
        try:
            while True:
                await asyncio.sleep(0)
                STATE["progress"][key] += 1
                yield chunk
        finally:
            STATE["closed"][key] += 1
    return Response(stream=gen())


def stream_counters(request):
    key = request.match_dict["key"]
    return Response(json={"closed": STATE["closed"][key],
                          "progress": STATE["progress"][key]})


def sse(request):
    key = request.match_dict["key"]
    n = request.query.get("n")
    n = int(n) if n else 3
    first = request.query.get("wait") != "1"     # ?wait=1: event 0 waits too
    q = asyncio.Queue()
    STATE["sse"][key] = q

    async def events():
        try:
            for i in range(n):
                if i or not first:
                    await q.get()       # the client asks for the next event
                yield "id: %d\nevent: tick\ndata: event %d\n\n" % (i, i)
        finally:
            STATE["sse"].pop(key, None)
    return Response(stream=events(), mime_type="text/event-stream",
                    headers={"Cache-Control": "no-cache"})


def sse_next(request):
    q = STATE["sse"].get(request.match_dict["key"])
    if q is None:
        return Response(code=409, text="no such stream")
    q.put_nowait(1)
    return Response(text="ok")


# ---- files --------------------------------------------------------------------

def file_plain(request):
    return Response(file=os.environ["FULMEN_API_FILE"])


def file_response(request):
    return FileResponse(os.environ["FULMEN_API_FILE"], headers={"X-File": "1"})


def file_bytes(request):
    return FileResponse(os.fsencode(os.environ["FULMEN_API_FILE"]))


def file_mime(request):
    return FileResponse(os.environ["FULMEN_API_FILE"], mime_type="application/x-custom")


def file_missing(request):
    return Response(file=os.path.join(os.environ["FULMEN_API_STATIC"], "no-such-file"))


def file_dir(request):
    return Response(file=os.environ["FULMEN_API_STATIC"])


def file_unreachable(request):
    """A name too long for the file system, or a symlink loop (ELOOP)."""
    name = "x" * 5000 if request.match_dict["how"] == "toolong" else "loop-a"
    return Response(file=os.path.join(os.environ["FULMEN_API_STATIC"], name))


def _file_variant(request):
    """FileResponse of a file below the static directory, built as `how`
    says (for test_files: the C and Python answers side by side)."""
    how, name = request.match_dict["how"], request.match_dict["name"]
    path = os.path.join(os.environ["FULMEN_API_STATIC"], name)
    if how == "headers-dict":
        r = FileResponse(path, headers={"X-File": "1", "Cache-Control": "max-age=60"})
    elif how == "headers-list":
        r = FileResponse(path, headers=[("X-File", "1"), ("X-File", "2")])
    elif how == "mime":
        r = FileResponse(path, mime_type="application/x-custom")
    elif how in ("204", "304"):
        r = FileResponse(path, code=int(how))
    else:
        r = FileResponse(path)
    if how == "cookie":
        r.set_cookie("sess", "abc", max_age=60)
    elif how == "simplecookie":
        c = SimpleCookie()
        c["k"] = "v"
        r.cookies = c
    return r


def file_variant(request):
    return _file_variant(request)


def file_variant_python(request):
    return fulmen.streams._file_response(request, _file_variant(request))


# ---- the route table ----------------------------------------------------------

r.add_route("/r/info", info, name="info")
r.add_route("/r/text", text)
r.add_route("/r/json", json_body)
r.add_route("/r/json-once", json_once)
r.add_route("/r/form", form)
r.add_route("/r/done/{key}", done_register)


def done_refused(request):
    """What add_done_callback says to an async def callback."""
    async def cb(req):
        pass
    try:
        request.add_done_callback(cb)
    except TypeError as e:
        return Response(text=str(e))
    return Response(text="accepted")


r.add_route("/r/done-refused", done_refused)
r.add_route("/r/done-gone/{key}", done_gone)
r.add_route("/r/done-state/{key}", done_state)
r.add_route("/r/done-late/{key}", done_late)
r.add_route("/enc/a/b", enc_static)
r.add_route("/enc/{x}", info)
r.add_route("/t/int/{id:int}", typed)
r.add_route("/t/float/{x:float}", typed)
r.add_route("/t/uuid/{u:uuid}", typed)
r.add_route("/t/path/{rest:path}", typed)
r.add_route("/t/two/{a:int}/{b}", typed)
r.add_route("/t/{{lit}}/{x}", braces)
r.add_route("/users/{name}", users_name)     # registered before the static one
r.add_route("/users/me", users_me)

r.add_route("/resp/cookies-dict", cookies_dict)
r.add_route("/resp/cookies-simple", cookies_simple)
r.add_route("/resp/cookies-bad-name", cookies_bad_name)
r.add_route("/r/headers-mutated", headers_mutated)
r.add_route("/resp/set-cookie", set_cookie)
r.add_route("/resp/headers-list", headers_list)
r.add_route("/resp/headers-values", headers_values)
r.add_route("/resp/subclass-init", resp_subclass_init)
r.add_route("/resp/headers-big/{n:int}", headers_big)
r.add_route("/resp/headers-own", headers_own)
r.add_route("/resp/bytes/{n:int}", resp_bytes)
r.add_route("/resp/text-and-body", text_and_body)
r.add_route("/resp/json-and-text", json_and_text)
r.add_route("/resp/json-and-body", json_and_body)
r.add_route("/resp/code/{n:int}", code)
r.add_route("/resp/latin1", latin1)
r.add_route("/resp/latin1-mime", latin1_mime)
r.add_route("/json/{name}", json_case)
r.add_route("/json-ref/{name}", json_ref)
r.add_route("/json-names", json_names)

r.add_route("/m/get", method_echo, method="GET")
r.add_route("/m/post-put", method_echo, methods=["POST", "put"])
r.add_route("/m/split", method_echo, method="GET")
r.add_route("/m/split", method_echo, method="DELETE")
r.add_route("/m/own-options", own_options, methods=["OPTIONS"])
r.add_route("/m/own-options", method_echo, methods=["GET"])
r.add_route("/m/any", method_echo)
r.add_route("/m/trace", method_echo, methods=["TRACE"])
r.add_route("/urlfor", url_for)
r.add_route("/items/{id:int}", item, name="item")
r.add_route("/files/{p:path}", file_route, name="file")
r.add_route("/plain", plain, name="plain")

r.add_route("/err/app", raise_app_error)
r.add_route("/err/not-found", raise_not_found)
r.add_route("/err/deep", raise_deep)
r.add_route("/err/runtime", raise_runtime)
r.add_route("/err/async-not-found", araise_not_found)
r.add_route("/err/message/{msg}", raise_message)
r.add_route("/err/bad-request", raise_bad_request)
r.add_route("/err/broken-handler", broken_handler_route)
r.add_route("/eh/only-get", method_echo, method="GET")

r.add_route("/hk/view", hook_view)
r.add_route("/hk/startup", startup_state)
r.add_route("/hk/extended", extended)

r.add_route("/s/sync/{n:int}", stream_sync)
r.add_route("/s/async/{n:int}", stream_async)
r.add_route("/s/late/{n:int}", stream_late)
r.add_route("/s/str", stream_str)
r.add_route("/s/length", stream_length)
r.add_route("/s/fail/{kind}", stream_fail)
r.add_route("/s/slow-close", stream_slow_close)
r.add_route("/s/bad-length/{kind}", stream_bad_length)
r.add_route("/file-emptied", file_emptied)
r.add_route("/file-fifo", file_fifo)
r.add_route("/s/code/{code:int}", stream_code)
r.add_route("/s/length-wrong/{n:int}", stream_length_wrong)
r.add_route("/s/big/{n:int}", stream_big)
r.add_route("/s/forever/{key}", stream_forever)
r.add_route("/s/aforever/{key}", astream_forever)
r.add_route("/s/counters/{key}", stream_counters)
r.add_route("/s/sse/{key}", sse)
r.add_route("/s/sse-next/{key}", sse_next)

r.add_route("/f/file", file_plain)
r.add_route("/f/fileresponse", file_response)
r.add_route("/f/bytes", file_bytes)
r.add_route("/f/mime", file_mime)
r.add_route("/f/missing", file_missing)
r.add_route("/f/dir", file_dir)
r.add_route("/f/unreachable/{how}", file_unreachable)
r.add_route("/fv/{how}/{name:path}", file_variant)
r.add_route("/pyfv/{how}/{name:path}", file_variant_python)
r.add_route("/file-hits", lambda request: request.Response(text=str(fulmen._core._file_hits())))
r.add_static("/static", os.environ["FULMEN_API_STATIC"])
r.add_static("/bstatic", os.fsencode(os.environ["FULMEN_API_STATIC"]))   # a bytes name
r.add_static("/eh/static", os.environ["FULMEN_API_STATIC"])   # misses: on_route_not_found
# add_static's view answers the usual request in C; /pystatic gives every
# request to its Python view, and /static-hits says how many the C one kept
_STATIC = next(rt.handler for rt in r.routes if rt.pattern == "/static/{path:path}")
r.add_route("/pystatic/{path:path}", _STATIC.fallback)
r.add_route("/static-hits", lambda request: request.Response(text=str(_STATIC.hits)))

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
