"""Every app in examples/: started as a child process with --port 0, asked the
requests it is about over real sockets, then stopped with SIGTERM (exit 0).

Each example runs once per module (a fixture); the fixture's teardown stops
it and fails the test run if it does not exit with code 0, or if it printed a
C-level crash.
"""
import hashlib
import json
import os
import sys

import pytest

from .rawhttp import Conn, build_request
from .server import REPO, Server, describe

EXAMPLES = os.path.join(REPO, "examples")


def start_example(name, *args):
    argv = [sys.executable, os.path.join(EXAMPLES, name + ".py"), "--port", "0", *args]
    return Server(argv).start()


def stop_example(srv):
    """SIGTERM; the example must exit with code 0 and print no crash."""
    code = srv.stop()           # also reads its stderr to the end
    assert code == 0, "exit: %s\n%s" % (
        describe(code) if code != "hung" else "hung after SIGTERM", srv.stderr())
    assert not srv.crash_report(), srv.stderr()


def example_fixture(name, *args):
    @pytest.fixture(scope="module")
    def fixture():
        srv = start_example(name, *args)
        try:
            yield srv
        finally:
            stop_example(srv)
    return fixture


hello = example_fixture("hello")
async_app = example_fixture("async")
router = example_fixture("router")
request_app = example_fixture("request")
response = example_fixture("response")
exceptions = example_fixture("exceptions")
exceptions_debug = example_fixture("exceptions", "--debug")
templates = example_fixture("templates")
todo = example_fixture("todo_api")
sse = example_fixture("sse")
static = example_fixture("static_files")
streaming = example_fixture("streaming")


def req(srv, method="GET", path="/", headers=(), body=None, version="1.1"):
    """One request on a fresh connection; the parsed response."""
    with Conn(srv.port) as c:
        return c.request(method, path, headers=headers, body=body, version=version)


def ctype(resp):
    return resp.header("Content-Type")


# ---- hello.py ------------------------------------------------------------------

def test_hello(hello):
    r = req(hello)
    assert (r.status, r.body) == (200, b"Hello world!")
    assert ctype(r) == "text/plain; charset=utf-8"


# ---- async.py ------------------------------------------------------------------

def test_async_sync_and_async_views(async_app):
    assert req(async_app, path="/sync").text == "I am synchronous!"
    assert req(async_app, path="/async").text == "I am asynchronous!"
    # lower bounds only (load can only lengthen a sleep), less 2 ms: the
    # loop's clock is libuv's, cached at the turn's start with 1 ms steps,
    # so a timer can fire up to a millisecond before time.monotonic() says
    assert req(async_app, path="/sleep?seconds=0.05").json()["slept"] >= 0.048
    assert req(async_app, path="/gather").json()["elapsed"] >= 0.098


def test_async_views_do_not_block_each_other(async_app):
    # Pipelined: a slow async view first, a sync one after it; both answer,
    # in order, and the slow one did not hold up the event loop for others.
    with Conn(async_app.port) as slow, Conn(async_app.port) as fast:
        slow.send(build_request("GET", "/sleep?seconds=0.3") + build_request("GET", "/sync"))
        r = fast.request("GET", "/async")        # answered while /sleep waits
        assert r.text == "I am asynchronous!"
        assert slow.read_final().json()["slept"] >= 0.298
        assert slow.read_final().text == "I am synchronous!"


# ---- router.py -----------------------------------------------------------------

def test_router_params_and_types(router):
    assert req(router, path="/hello/Ada").text == "Hello, Ada!"
    assert req(router, path="/hello/Ada%20L").text == "Hello, Ada L!"
    assert req(router, path="/users/42").json() == {"id": 42, "type": "int"}
    assert req(router, path="/users/me").json() == {"id": "me"}   # static wins
    assert req(router, path="/users/x42").status == 404          # not an int
    assert req(router, path="/prices/9.5").json() == {"value": 9.5, "type": "float"}
    oid = "6f1c2d1e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"
    assert req(router, path="/orders/" + oid).json() == {"order": oid, "version": 4}
    assert req(router, path="/orders/not-a-uuid").status == 404
    assert req(router, path="/files/docs/a/b.txt").text == "docs/a/b.txt"


def test_router_methods(router):
    assert req(router, "POST", "/only-post", body=b"").text == "posted"
    r = req(router, "GET", "/only-post")
    assert r.status == 405
    assert r.header("Allow") == "OPTIONS, POST"
    assert req(router, "PUT", "/item", body=b"").text == "you sent PUT"
    assert req(router, "GET", "/item").text == "you sent GET"
    assert req(router, "DELETE", "/item").status == 405
    r = req(router, "OPTIONS", "/item")
    assert r.status == 204 and r.header("Allow") == "GET, HEAD, OPTIONS, PUT"
    r = req(router, "HEAD", "/item")                  # GET routes serve HEAD
    assert r.status == 200 and r.body == b""


def test_router_url_for(router):
    assert req(router).json() == {"user": "/users/42", "hello": "/hello/Ada%20Lovelace",
                                  "file": "/files/docs/a/b.txt"}


# ---- request.py ----------------------------------------------------------------

def test_request_basic(request_app):
    r = req(request_app, path="/basic/some%2Fthing?a=1&a=2&b=x%20y",
            headers=[("X-Demo", "yes"), ("User-Agent", "pytest"),
                     ("Cookie", "sid=abc; theme=dark")])
    d = r.json()
    assert d["method"] == "GET"
    assert d["path"] == "/basic/some/thing"
    assert d["raw_path"] == "/basic/some%2Fthing"
    assert d["version"] == "1.1"
    assert d["query_string"] == "a=1&a=2&b=x%20y"
    assert d["query"] == {"a": "2", "b": "x y"}
    assert d["query_all"] == {"a": ["1", "2"], "b": ["x y"]}
    assert d["headers"]["X-Demo"] == "yes"
    assert d["user_agent"] == "pytest"
    assert d["cookies"] == {"sid": "abc", "theme": "dark"}


def test_request_http10(request_app):
    r = req(request_app, path="/basic", version="1.0")
    assert r.json()["version"] == "1.0"


def test_request_json_body(request_app):
    r = req(request_app, "POST", "/body", headers=[("Content-Type", "application/json")],
            body=b'{"hello": "world"}')
    d = r.json()
    assert d["json"] == {"hello": "world"}
    assert d["mime_type"] == "application/json" and d["length"] == 18
    r = req(request_app, "POST", "/body", headers=[("Content-Type", "application/json")],
            body=b'{"hello": ')
    assert r.status == 400 and r.json() == {"error": "request body is not valid JSON"}


def test_request_text_with_charset(request_app):
    r = req(request_app, "PUT", "/body",
            headers=[("Content-Type", "text/plain; charset=latin-1")],
            body="caf\u00e9".encode("latin-1"))
    d = r.json()
    assert (d["mime_type"], d["encoding"], d["text"]) == ("text/plain", "latin-1", "caf\u00e9")


def test_request_urlencoded_form(request_app):
    r = req(request_app, "POST", "/body",
            headers=[("Content-Type", "application/x-www-form-urlencoded")],
            body=b"name=Ada+L&lang=en")
    d = r.json()
    assert d["form"] == {"name": "Ada L", "lang": "en"} and d["files"] == {}


def test_request_multipart_form_and_files(request_app):
    b = "XyZzY"
    body = ("--{b}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAda\r\n"
            "--{b}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"notes.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\nhello file\r\n"
            "--{b}--\r\n").format(b=b).encode()
    r = req(request_app, "POST", "/body",
            headers=[("Content-Type", "multipart/form-data; boundary=" + b)], body=body)
    d = r.json()
    assert d["form"] == {"name": "Ada"}
    assert d["files"] == {"upload": {"name": "notes.txt", "type": "text/plain",
                                     "size": 10, "head": "hello file"}}


def test_request_misc(request_app):
    d = req(request_app, path="/misc/x", headers=[("Host", "example.com:8443")]).json()
    assert d["route"] == "/misc/{name}"
    assert d["match_dict"] == {"name": "x"}
    assert (d["hostname"], d["port"]) == ("example.com", 8443)
    assert d["remote_addr"] == "127.0.0.1"
    assert d["keep_alive"] is True
    assert d["target"] == "/misc/x"
    d = req(request_app, path="/misc", headers=[("Host", "example.com")]).json()
    assert (d["hostname"], d["port"]) == ("example.com", None)


# ---- response.py ---------------------------------------------------------------

def test_response_bodies_and_types(response):
    r = req(response, path="/text")
    assert (r.body, ctype(r)) == (b"Hello world!", "text/plain; charset=utf-8")
    r = req(response, path="/encoding")
    assert (r.body, ctype(r)) == ("J\u00e1 pronto!".encode("iso-8859-1"),
                                  "text/plain; charset=iso-8859-1")
    r = req(response, path="/json")
    assert ctype(r) == "application/json"
    assert r.json() == {"hello": "world", "n": [1, 2.5, True, None]}
    r = req(response, path="/body")
    assert (r.body, ctype(r)) == (b"\xde\xad\xbe\xef", "application/octet-stream")
    r = req(response, path="/mime")
    assert ctype(r) == "image/svg+xml" and r.body.startswith(b"<svg")
    r = req(response, path="/html")
    assert ctype(r) == "text/html; charset=utf-8"


def test_response_codes(response):
    for code, reason in ((200, "OK"), (404, "Not Found"), (418, "I'm a teapot"),
                         (299, "Unknown"), (503, "Service Unavailable")):
        r = req(response, path="/code/%d" % code)
        assert (r.status, r.reason) == (code, reason)
    r = req(response, "POST", "/created", body=b"")
    assert (r.status, r.header("Location"), r.json()) == (201, "/things/1", {"id": 1})
    r = req(response, path="/no-content")
    assert (r.status, r.body, r.header("Content-Length")) == (204, b"", None)
    r = req(response, path="/redirect")
    assert (r.status, r.header("Location")) == (302, "/text")


def test_response_headers_and_cookies(response):
    r = req(response, path="/headers")
    assert r.header("X-Header") == "Value"
    assert r.header_all("Link") == ["</a>; rel=a", "</b>; rel=b"]
    r = req(response, path="/cookies")
    cookies = r.header_all("Set-Cookie")
    assert "hello=world; Max-Age=3600; Path=/" in cookies
    assert "session=abc123; HttpOnly; Path=/; SameSite=Lax" in cookies
    assert any(c.startswith('old=""') and "Max-Age=0" in c for c in cookies)


def test_response_is_mutable(response):
    r = req(response, path="/mutable")
    assert (r.status, r.body, r.header("X-Changed")) == (202, b"final", "yes")


# ---- exceptions.py -------------------------------------------------------------

def test_exceptions_handlers(exceptions):
    assert req(exceptions, path="/cat").text == "Just a kitty, meow"
    r = req(exceptions, path="/dog")
    assert (r.status, r.text) == (418, "Some animal, woof")
    r = req(exceptions, path="/nowhere")
    assert (r.status, r.json()) == (404, {"error": "not found", "path": "/nowhere"})
    r = req(exceptions, "DELETE", "/cat")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD, OPTIONS"
    assert r.json() == {"error": "method not allowed", "allow": "GET, HEAD, OPTIONS"}


def test_exceptions_no_traceback_without_debug(exceptions):
    r = req(exceptions, path="/unhandled")
    assert (r.status, r.text) == (500, "Internal Server Error")
    assert exceptions.wait_for_stderr("ZeroDivisionError")      # logged on the server


def test_exceptions_debug_traceback(exceptions_debug):
    r = req(exceptions_debug, path="/unhandled")
    assert r.status == 500
    assert "Traceback" in r.text and "ZeroDivisionError: division by zero" in r.text
    assert req(exceptions_debug, path="/cat").status == 200
    assert exceptions_debug.wait_for_stderr("fulmen: GET /unhandled -> 500")   # request log
    assert exceptions_debug.wait_for_stderr("fulmen: GET /cat -> 200")


# ---- extend.py -----------------------------------------------------------------

def test_extend_request_method_and_property():
    srv = start_example("extend")
    try:
        assert "extend: store opened" in srv.stderr()         # on_startup ran first
        r = req(srv, headers=[("Host", "api.example.com"), ("User-Agent", "curl")])
        assert r.text == "Hello lruc"
        r = req(srv, headers=[("Host", "www.example.com"), ("User-Agent", "curl")])
        assert r.text == "Hello stranger"

        # on_response: CORS and timing headers on every view's response
        r = req(srv, path="/api/items")
        assert r.json() == ["apple", "pear"]
        assert r.header("Access-Control-Allow-Origin") == "*"
        assert r.header("X-Response-Time").endswith("ms")

        # on_request short-circuit: a CORS preflight never reaches the view
        r = req(srv, "OPTIONS", "/api/items", headers=[("Origin", "http://x.test")])
        assert r.status == 204
        assert r.header("Access-Control-Allow-Methods") == "GET, POST, OPTIONS"
        assert r.header("Access-Control-Allow-Origin") == "*"

        # an async on_request hook doing authentication
        r = req(srv, path="/private")
        assert (r.status, r.header("WWW-Authenticate")) == (401, "Bearer")
        r = req(srv, path="/private", headers=[("Authorization", "Bearer let-me-in")])
        assert (r.status, r.json()) == (200, {"secret": 42})

        # add_done_callback ran after /api/items was written
        assert req(srv, path="/stats").json() == {"requests_done": 1}
    finally:
        stop_example(srv)
    # on_shutdown ran after the server stopped serving
    assert "extend: store closed after 1 requests" in srv.stderr()


# ---- templates.py --------------------------------------------------------------

def test_templates(templates):
    r = req(templates)
    assert ctype(r) == "text/html; charset=utf-8"
    assert r.text.startswith("<!doctype html>")
    assert '<li><a href="/hello/Ada">Ada</a></li>' in r.text
    r = req(templates, path="/hello/Grace")
    assert "<h1>Hello Grace!</h1>" in r.text and "<title>Hello Grace</title>" in r.text
    r = req(templates, path="/hello/%3Cscript%3E")
    assert "<h1>Hello &lt;script&gt;!</h1>" in r.text and "<script>" not in r.text
    assert req(templates, path="/raw").text == "<h1>Some HTML!</h1>"


# ---- todo_api.py ---------------------------------------------------------------

def jreq(srv, method, path, data=None, raw=None):
    body = raw if raw is not None else (None if data is None else json.dumps(data).encode())
    headers = [("Content-Type", "application/json")] if body is not None else []
    return req(srv, method, path, headers=headers, body=body)


def test_todo_crud(todo):
    assert jreq(todo, "GET", "/todos").json() == []
    r = jreq(todo, "POST", "/todos", {"title": "write docs"})
    assert r.status == 201
    created = r.json()
    assert created == {"id": created["id"], "title": "write docs", "done": False}
    tid = created["id"]
    assert r.header("Location") == "/todos/%d" % tid
    assert jreq(todo, "POST", "/todos", {"title": "ship", "done": True}).status == 201

    assert jreq(todo, "GET", "/todos/%d" % tid).json() == created
    assert len(jreq(todo, "GET", "/todos").json()) == 2
    assert [t["title"] for t in jreq(todo, "GET", "/todos?done=true").json()] == ["ship"]

    r = jreq(todo, "PUT", "/todos/%d" % tid, {"title": "write more docs", "done": True})
    assert r.json() == {"id": tid, "title": "write more docs", "done": True}
    r = jreq(todo, "PATCH", "/todos/%d" % tid, {"done": False})
    assert r.json() == {"id": tid, "title": "write more docs", "done": False}

    r = jreq(todo, "DELETE", "/todos/%d" % tid)
    assert (r.status, r.body) == (204, b"")
    assert jreq(todo, "GET", "/todos/%d" % tid).status == 404
    assert [t["title"] for t in jreq(todo, "GET", "/todos").json()] == ["ship"]


def test_todo_errors(todo):
    r = jreq(todo, "GET", "/todos/9999")
    assert (r.status, r.json()) == (404, {"error": "no todo with id 9999"})
    assert jreq(todo, "DELETE", "/todos/9999").status == 404
    assert jreq(todo, "GET", "/todos/abc").status == 404            # not an int
    assert jreq(todo, "GET", "/nothing").json() == {"error": "no such resource"}
    r = jreq(todo, "POST", "/todos", raw=b"{oops")
    assert (r.status, r.json()) == (400, {"error": "the body is not valid JSON"})
    assert jreq(todo, "POST", "/todos", [1, 2]).status == 400
    assert jreq(todo, "POST", "/todos", {"done": True}).status == 400
    assert jreq(todo, "POST", "/todos", {"title": "x", "color": "red"}).status == 400
    r = jreq(todo, "DELETE", "/todos")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD, OPTIONS, POST"


# ---- sse.py --------------------------------------------------------------------

def test_sse_stream(sse):
    with Conn(sse.port) as c:
        c.send(build_request("GET", "/events?count=3&interval=0.02"))
        r = c.read_final()
        assert r.status == 200
        assert ctype(r) == "text/event-stream"
        assert r.header("Cache-Control") == "no-cache"
        assert r.header("Transfer-Encoding") == "chunked"
        text = r.text
        # the connection stays usable after the stream ended
        assert c.request("GET", "/").status == 200
    assert text.startswith(": stream opened\n\n")
    events = [e for e in text.split("\n\n") if e and not e.startswith(":")]
    assert len(events) == 4
    for i, e in enumerate(events[:3], 1):
        lines = e.split("\n")
        assert lines[0] == "id: %d" % i and lines[1] == "event: tick"
        assert json.loads(lines[2][len("data: "):])["n"] == i
    assert events[3] == "event: done\ndata: bye"


def test_sse_events_arrive_before_the_stream_ends(sse):
    # The first event must be readable while later ones are still 10 s away.
    with Conn(sse.port) as c:
        c.send(build_request("GET", "/events?count=2&interval=10"))
        head = c._read_until(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        size = int(c._read_until(b"\r\n"), 16)
        assert c._read_exact(size) == b": stream opened\n\n"


# ---- static_files.py -----------------------------------------------------------

def test_static_files(static):
    with open(os.path.join(EXAMPLES, "static", "index.html"), "rb") as f:
        index = f.read()
    r = req(static, path="/static/index.html")
    assert (r.status, r.body, ctype(r)) == (200, index, "text/html; charset=utf-8")
    etag = r.header("ETag")
    assert etag and r.header("Last-Modified") and r.header("Accept-Ranges") == "bytes"
    r = req(static, path="/static/index.html", headers=[("If-None-Match", etag)])
    assert (r.status, r.body) == (304, b"")
    r = req(static, path="/static/style.css", headers=[("Range", "bytes=0-3")])
    assert (r.status, r.body) == (206, b"body")
    assert r.header("Content-Range").startswith("bytes 0-3/")
    r = req(static, "HEAD", "/static/style.css")
    assert r.status == 200 and ctype(r) == "text/css; charset=utf-8"
    for path in ("/static/nope.txt", "/static/../static_files.py", "/static/%2e%2e/sse.py",
                 "/static/"):
        assert req(static, path=path).status == 404, path


def test_file_response(static):
    r = req(static, path="/")
    assert r.body.startswith(b"<!doctype html>") and r.header("ETag")
    r = req(static, path="/download")
    assert r.header("Content-Disposition") == 'attachment; filename="style.css"'
    assert ctype(r) == "text/plain" and r.body.startswith(b"body {")


# ---- streaming.py --------------------------------------------------------------

def test_streaming_download_with_length(streaming):
    size = 20 * 1024 * 1024
    r = req(streaming, path="/download?mb=20")
    assert r.status == 200
    assert r.header("Content-Length") == str(size) and r.header("Transfer-Encoding") is None
    assert len(r.body) == size
    pattern = bytes(range(256))
    assert r.body[:512] == pattern * 2 and r.body[-256:] == pattern
    expected = hashlib.sha256()
    block = pattern * 256                                 # 64 KiB
    for _ in range(size // len(block)):
        expected.update(block)
    assert hashlib.sha256(r.body).digest() == expected.digest()


def test_streaming_chunked(streaming):
    r = req(streaming, path="/csv?rows=20000")
    assert r.header("Transfer-Encoding") == "chunked" and ctype(r) == "text/csv"
    lines = r.text.splitlines()
    assert lines[0] == "id,square,sha1" and len(lines) == 20001
    assert lines[-1].startswith("19999,399960001,")
    r = req(streaming, path="/countdown?from=3")
    assert r.text == "3...\n2...\n1...\nliftoff!\n"


def test_streaming_http10_ends_with_close(streaming):
    # No chunked coding in HTTP/1.0: the body ends when the connection closes.
    with Conn(streaming.port) as c:
        c.send(build_request("GET", "/countdown?from=2", version="1.0"))
        r = c.read_final()
        assert r.text == "2...\n1...\nliftoff!\n"
        assert c.at_eof()
