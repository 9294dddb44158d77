"""The API an app sees (apps/api.py): request attributes, responses, JSON
encoding and routing.  Also home of the `api` fixture that the hook,
stream and file tests share."""
import collections
import datetime
import json
import math
import os
import socket
import time
import uuid

import pytest

from .rawhttp import Conn, build_request

# ---- the api app: one server for the whole session ------------------------------

SECRET = b"TOP-SECRET-CONTENT-0d5e"
_TREE = {}


def _make_tree(root):
    """Files for the api app: a static directory, a file outside it that
    escapes must not reach, symlinks pointing out, and a big file."""
    static = root / "static"
    (static / "sub").mkdir(parents=True)
    (root / "outside").mkdir()
    (root / "secret.txt").write_bytes(SECRET)
    (root / "outside" / "outside.txt").write_bytes(SECRET)
    files = {
        "hello.txt": b"hello static\n",
        "style.css": b"body { color: red }\n",
        "data.json": b'{"k": [1, 2]}',
        "image.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        "noext": b"no extension",
        "sub/nested.txt": b"nested file",
        "sub/empty.txt": b"",
        "digits.txt": b"0123456789abcdefghijklmnopqrstuvwxyz",
        # names whose Content-Type takes care (test_files: C and Python views)
        ".hidden": b"dot file",
        "UPPER.TXT": b"upper-case extension",
        "trail.": b"a name ending in a dot",
        "archive.tar.gz": b"\x1f\x8b not really gzip",
        "x.tgz": b"\x1f\x8b neither",
        "edge.bin": bytes(range(256)) * 256,        # 64 KiB: still read whole
        "over.bin": bytes(range(256)) * 256 + b"!",  # one byte more: streamed
    }
    for name, data in files.items():
        (static / name).write_bytes(data)
    big = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(65536)) * 64   # 4 MiB
    (static / "big.bin").write_bytes(big)
    files["big.bin"] = big
    # more than the kernel's socket buffers take at once (4 MiB each way)
    (static / "huge.bin").write_bytes(big * 5)
    files["huge.bin"] = big * 5
    os.symlink(root / "secret.txt", static / "link.txt")
    os.symlink(root / "outside", static / "linkdir")
    os.symlink("hello.txt", static / "inner-link.txt")
    os.symlink("sub", static / "inner-dir")      # a directory, inside
    os.symlink("loop-b", static / "loop-a")      # a symlink loop: ELOOP
    os.symlink("loop-a", static / "loop-b")
    os.mkfifo(static / "fifo")                   # opening it for reading would block
    (static / "future.txt").write_bytes(b"from the future\n")
    os.utime(static / "future.txt", (4102444800, 4102444800))   # 2100-01-01
    page = b"<html><body>file response</body></html>\n"
    (root / "page.html").write_bytes(page)
    return {
        "root": str(root), "static": str(static), "files": files,
        "page": str(root / "page.html"), "page_body": page,
        "env": {"FULMEN_API_STATIC": str(static),
                "FULMEN_API_FILE": str(root / "page.html")},
    }


def api_tree(tmp_path_factory):
    if not _TREE:
        _TREE.update(_make_tree(tmp_path_factory.mktemp("api")))
    return _TREE


def _answers(srv):
    try:
        with Conn(srv.port, timeout=2) as c:
            return c.request("GET", "/plain").body == b"plain"
    except (OSError, EOFError, AssertionError):
        return False


@pytest.fixture
def api(server_pool, tmp_path_factory):
    """The running apps/api.py server (.tree has the files it serves).
    Besides the crash checks of conftest, the server must still answer
    after the test; a hung one is killed so that later tests get a fresh
    process."""
    tree = api_tree(tmp_path_factory)
    srv = server_pool.get("api", env=tree["env"])
    srv.tree = tree
    yield srv
    problem = srv.problem()
    if problem:
        server_pool.retire("api")
        pytest.fail("after this test: " + problem, pytrace=False)
    if not _answers(srv):
        srv.proc.kill()
        srv.proc.wait()
        server_pool.running.pop("api", None)
        pytest.fail("after this test the server no longer answers (killed it)",
                    pytrace=False)


def get(srv, path, method="GET", **kw):
    with Conn(srv.port) as c:
        return c.request(method, path, **kw)


def info(srv, path="/r/info", **kw):
    resp = get(srv, path, **kw)
    assert resp.status == 200, resp
    return resp.json()


# ---- request: path, query, match_dict -----------------------------------------

def test_path_is_decoded_raw_path_is_not(api):
    e = info(api, "/r/info?x=1")
    assert e["path"] == e["raw_path"] == "/r/info"
    e = info(api, "/enc/caf%C3%A9%20x")
    assert e["path"] == "/enc/caf\u00e9 x"
    assert e["raw_path"] == "/enc/caf%C3%A9%20x"
    assert e["match_dict"] == {"x": ["caf\u00e9 x", "str"]}


def test_encoded_slash_does_not_split_segments(api):
    assert get(api, "/enc/a/b").body == b"static a/b"
    e = info(api, "/enc/a%2Fb")             # one segment: the {x} route
    assert e["route_pattern"] == "/enc/{x}"
    assert e["path"] == "/enc/a/b"
    assert e["raw_path"] == "/enc/a%2Fb"
    assert e["match_dict"] == {"x": ["a/b", "str"]}
    assert get(api, "/enc/a%2fb").json()["match_dict"] == {"x": ["a/b", "str"]}


def test_query_string_raw_and_query_decoded(api):
    qs = "a=1&a=2&b=x+y&c=%26%3D%2B&d&e=&k%3Dx=v&&u=%C3%A9&a=3"
    e = info(api, "/r/info?" + qs)
    assert e["query_string"] == qs
    assert e["query_is_dict"] is True
    assert e["query"] == {"a": "3", "b": "x y", "c": "&=+", "d": "", "e": "",
                          "k=x": "v", "u": "\u00e9"}
    assert e["query_all"]["a"] == ["1", "2", "3"]
    assert e["query_all"]["b"] == ["x y"]
    assert e["getall_default"] == "dflt"


def test_headers_written_in_any_case_are_read_in_any_case(api):
    """A hook's request.headers["x-request-id"] is the view's "X-Request-Id";
    headers and query pickle and copy as what they are"""
    e = info(api, "/r/headers-mutated?a=1&b=2&b=3", headers=[("X-Foo", "bar")])
    assert e == {"new": "1", "up": "u", "new_in": True, "pop": "bar", "foo_in": False,
                 "setdefault": "d", "sd": "d", "host_in": False,
                 "pickled": ["Headers", "1", "Query", ["2", "3"]],
                 "copied": ["u", ["2", "3"], "Headers", 1],
                 "keys": ["X-New", "X-Or", "X-Sd", "X-Up"]}, e


def test_query_invalid_utf8_is_replaced(api):
    e = info(api, "/r/info?k=%FF%FEx&bad=%zz%4")
    assert e["query"] == {"k": "\ufffd\ufffdx", "bad": "%zz%4"}


@pytest.mark.parametrize("path,name,value,typ", [
    ("/t/int/42", "id", "42", "int"),
    ("/t/int/-7", "id", "-7", "int"),
    ("/t/float/2.5", "x", "2.5", "float"),
    ("/t/float/-0.125", "x", "-0.125", "float"),
    ("/t/uuid/12345678-1234-5678-1234-567812345678", "u",
     "12345678-1234-5678-1234-567812345678", "UUID"),
    ("/t/path/a", "rest", "a", "str"),
    ("/t/path/a/b/c.txt", "rest", "a/b/c.txt", "str"),
    ("/t/path/a%20b/c", "rest", "a b/c", "str"),
])
def test_typed_params(api, path, name, value, typ):
    e = info(api, path)
    assert e["match_dict"] == {name: [value, typ]}


def test_uuid_param_is_normalised(api):
    u = "12345678-1234-5678-1234-56781234ABCD"
    e = info(api, "/t/uuid/" + u)
    assert e["match_dict"]["u"] == [str(uuid.UUID(u)), "UUID"]


def test_two_params_mixed_types(api):
    e = info(api, "/t/two/5/five")
    assert e["match_dict"] == {"a": ["5", "int"], "b": ["five", "str"]}


@pytest.mark.parametrize("path", [
    "/t/int/abc", "/t/int/1.5", "/t/int/", "/t/int/12x",
    "/t/float/abc", "/t/float/",
    "/t/uuid/not-a-uuid", "/t/uuid/12345678123456781234567812345678zz",
    "/t/two/x/five",
    "/t/path/",
])
def test_typed_param_mismatch_is_404(api, path):
    assert get(api, path).status == 404


def test_literal_braces_in_pattern(api):
    e = info(api, "/t/{lit}/v")
    assert e["route_pattern"] == "/t/{{lit}}/{x}"
    assert e["path"] == "/t/{lit}/v"
    assert e["match_dict"] == {"x": ["v", "str"]}
    assert get(api, "/t/lit/v").status == 404


def test_static_route_wins_over_parametric(api):
    assert get(api, "/users/me").body == b"me"
    assert get(api, "/users/you").body == b"user you"
    assert get(api, "/users/mee").body == b"user mee"


# ---- request: bodies ----------------------------------------------------------

def test_text_decoded_with_charset(api):
    body = "caf\u00e9 \u00fc".encode("latin-1")
    e = get(api, "/r/text", "POST", body=body,
            headers={"Content-Type": "text/plain; charset=latin-1"}).json()
    assert e == {"text": "caf\u00e9 \u00fc", "mime_type": "text/plain", "encoding": "latin-1"}


def test_text_default_utf8_and_quoted_charset(api):
    body = "\u20ac\U0001F600".encode("utf-8")
    e = get(api, "/r/text", "POST", body=body).json()
    assert e == {"text": "\u20ac\U0001F600", "mime_type": None, "encoding": None}
    e = get(api, "/r/text", "POST", body="\u00e9".encode("utf-16-le"),
            headers={"Content-Type": 'text/plain;charset="utf-16-le"'}).json()
    assert e["text"] == "\u00e9"
    assert e["encoding"] == "utf-16-le"


@pytest.mark.parametrize("charset", [
    "no-such-charset",  # unknown to Python: was a LookupError, a 500
    "base64", "rot13",  # codecs, but not text encodings: a LookupError too
    # text codecs that are no charset; punycode's decoder takes time
    # quadratic in the body (10 MB held the worker for about half an hour)
    "punycode", "idna", "undefined", "unicode_escape", "raw_unicode_escape",
    "x" * 80,           # longer than any codec name
    "utf\xff8",        # a byte that is not ASCII: was a UnicodeDecodeError, a 500
])
def test_text_with_a_charset_that_is_not_one_is_400(api, charset):
    with Conn(api.port) as c:
        # "abc-" is valid punycode, idna and escape-codec input alike
        r = c.request("POST", "/r/text", body=b"abc-",
                      headers={"Content-Type": "text/plain; charset=" + charset})
        assert r.status == 400, r
        # a client error: the connection survives it
        assert c.request("GET", "/plain").body == b"plain"


def test_mime_type_and_encoding(api):
    e = info(api, headers={"Content-Type": "application/json ; charset=UTF-8; q=1"})
    assert e["mime_type"] == "application/json"
    assert e["encoding"] == "UTF-8"


def test_json_body(api):
    doc = {"a": [1, 2.5, None, True], "\u00e9": "\U0001F600"}
    r = get(api, "/r/json", "POST", body=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json"})
    assert r.status == 200
    assert r.json() == {"json": doc}


def test_json_and_text_are_parsed_once(api):
    r = get(api, "/r/json-once", "POST", body=b'{"a": 1}',
            headers={"Content-Type": "application/json"})
    assert r.json() == {"json": {"a": 1, "added": True}, "same_text": True}
    # the next request on a pooled request object parses its own body
    r = get(api, "/r/json-once", "POST", body=b'{"b": 2}',
            headers={"Content-Type": "application/json"})
    assert r.json() == {"json": {"b": 2, "added": True}, "same_text": True}


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1,", b"\xff\xfe"])
def test_invalid_json_is_400(api, body):
    with Conn(api.port) as c:
        r = c.request("POST", "/r/json", body=body,
                      headers={"Content-Type": "application/json"})
        assert r.status == 400, r
        assert b"Traceback" not in r.body
        # the connection survives a client error raised by a view
        assert c.request("GET", "/plain").body == b"plain"


def test_urlencoded_form(api):
    body = b"a=1&b=two+words&a=2&c=%26%3D&empty="
    r = get(api, "/r/form", "POST", body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"})
    e = r.json()
    assert e["form"] == {"a": "2", "b": "two words", "c": "&=", "empty": ""}
    assert e["form_all"]["a"] == ["1", "2"]
    assert e["files"] == {}


def test_form_of_other_content_type_is_empty(api):
    e = get(api, "/r/form", "POST", body=b"a=1",
            headers={"Content-Type": "text/plain"}).json()
    assert e == {"form": {}, "form_all": {}, "files": {}}


def _multipart(parts, boundary="----fulmenBoundary7MA4YWxk"):
    out = []
    for headers, data in parts:
        out.append(b"--" + boundary.encode() + b"\r\n")
        for h in headers:
            out.append(h.encode() + b"\r\n")
        out.append(b"\r\n" + data + b"\r\n")
    out.append(b"--" + boundary.encode() + b"--\r\n")
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def test_multipart_form_and_files(api):
    import base64
    blob = bytes(range(256)) + b"\r\n--not-the-boundary\r\n"
    body, ctype = _multipart([
        (['Content-Disposition: form-data; name="field"'], b"value 1"),
        (['Content-Disposition: form-data; name="field"'], "caf\u00e9".encode()),
        (['Content-Disposition: form-data; name="single"'], b""),
        (['Content-Disposition: form-data; name="up"; filename="a.bin"',
          "Content-Type: application/octet-stream"], blob),
        (['Content-Disposition: form-data; name="up"; filename="b.txt"'], b"text file"),
    ])
    r = get(api, "/r/form", "POST", body=body, headers={"Content-Type": ctype})
    assert r.status == 200, r
    e = r.json()
    assert e["form"] == {"field": "caf\u00e9", "single": ""}
    assert e["form_all"]["field"] == ["value 1", "caf\u00e9"]
    assert e["files"] == {"up": [
        ["a.bin", "application/octet-stream", base64.b64encode(blob).decode()],
        ["b.txt", None, base64.b64encode(b"text file").decode()],
    ]}


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_form_of_more_than_max_form_parts_is_400(api, kind):
    # Application(max_form_parts=1000), the default: the 1,001st field or part
    # makes request.form a BadRequest (a form costs Python objects about ten
    # times its bytes, so max_body_size alone bounds it poorly)
    def body(n):
        if kind == "urlencoded":
            return ("&".join("f%d=v" % i for i in range(n)).encode(),
                    "application/x-www-form-urlencoded")
        return _multipart([(['Content-Disposition: form-data; name="f%d"%s'
                              % (i, '; filename="x"' if i % 2 else '')], b"v")
                           for i in range(n)])
    with Conn(api.port) as c:
        data, ctype = body(1000)
        r = c.request("POST", "/r/form", body=data, headers={"Content-Type": ctype})
        assert r.status == 200, r
        e = r.json()
        assert len(e["form"]) + len(e["files"]) == 1000
        data, ctype = body(1001)
        r = c.request("POST", "/r/form", body=data, headers={"Content-Type": ctype})
        assert r.status == 400, r
        assert c.request("GET", "/plain").body == b"plain"


@pytest.mark.parametrize("ctype,body", [
    # no boundary parameter
    ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n"),
    # the close delimiter never comes
    ("multipart/form-data; boundary=x",
     b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"),
    # a part without Content-Disposition
    ("multipart/form-data; boundary=x", b"--x\r\nX-Other: 1\r\n\r\n1\r\n--x--\r\n"),
    # garbage instead of a delimiter
    ("multipart/form-data; boundary=x", b"garbage"),
    # bytes after the close delimiter, on its line (RFC 2046 5.1.1): a
    # strict reader would see the part behind it, which was dropped
    ("multipart/form-data; boundary=x",
     b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--junk\r\n"
     b"--x\r\nContent-Disposition: form-data; name=role\r\n\r\nadmin\r\n--x--\r\n"),
])
def test_malformed_multipart_is_400(api, ctype, body):
    with Conn(api.port) as c:
        r = c.request("POST", "/r/form", body=body, headers={"Content-Type": ctype})
        assert r.status == 400, r
        assert c.request("GET", "/plain").body == b"plain"


def test_cookies(api):
    e = info(api, headers=[("Cookie", 'a=1; b="quoted"; c=x%20y'), ("Cookie", "d=4")])
    assert e["cookies"] == {"a": "1", "b": "quoted", "c": "x y", "d": "4"}
    assert info(api)["cookies"] == {}


COOKIE_VALUES = ["S\u00e3o Paulo", "x,y", 'a"b;c', "back\\slash", '{"k": [1, 2]}',
                 "\u00ff\u00e9", "caf\u00e9 \u2603", "plain"]


def test_cookies_set_by_simple_cookie_come_back_as_set(api):
    """Values that http.cookies quotes (set_cookie() uses it) come back
    unescaped, as Japronto's request.cookies gave them (http.cookies'
    _unquote): the octal escapes and the backslashes are undone."""
    from http.cookies import SimpleCookie
    jar = SimpleCookie()
    for i, v in enumerate(COOKIE_VALUES):
        jar["c%d" % i] = v
    sent = "; ".join(m.OutputString() for m in jar.values())
    assert "\\343" in sent and '\\"' in sent      # quoted and escaped on the wire
    e = info(api, headers=[("Cookie", sent.encode("utf-8").decode("latin-1"))])
    assert e["cookies"] == {"c%d" % i: v for i, v in enumerate(COOKIE_VALUES)}


@pytest.mark.parametrize("raw", ['"\\400"', '"a\\"', '"\\\\"', '"\\0"', '"\\012x"',
                                 '"\\377"', '"\\3777"', '"%41\\101"', 'x\\101'])
def test_cookie_unescaping_agrees_with_http_cookies(api, raw):
    from http.cookies import _unquote
    from urllib.parse import unquote
    e = info(api, headers=[("Cookie", "k=" + raw)])
    assert e["cookies"] == {"k": unquote(_unquote(raw))}


@pytest.mark.parametrize("host,hostname,port", [
    ("example.com:8080", "example.com", 8080),
    ("example.com", "example.com", None),
    ("[::1]:8080", "::1", 8080),
    ("[::1]", "::1", None),
    ("10.0.0.1:1", "10.0.0.1", 1),
    ("a:000080", "a", 80),          # leading zeros, as the parser takes them
])
def test_hostname_and_port(api, host, hostname, port):
    e = info(api, host=host)
    assert (e["hostname"], e["port"]) == (hostname, port)


@pytest.mark.parametrize("host", ["[zz]:80", "[1.2.3.4]", "[:]:1", "h:70000", "h:65536",
                                  ":80", "a%zz", "%"])
def test_a_host_that_names_no_address_or_port_is_400(api, host):
    # an IP-literal is an IPv6 address or an IPvFuture (RFC 3986 3.2.2);
    # no TCP port is past 65535 (request.port was silently None)
    assert get(api, "/r/info", host=host).status == 400


@pytest.mark.parametrize("target,host,hostname,port", [
    ("http://target.example:81/r/info", "other.example:82", "target.example", 81),
    ("https://target.example/r/info?x=1", "other.example", "target.example", None),
    ("HTTP://[::1]:8080/r/info", "x", "::1", 8080),
    ("http://user:pw@target.example/r/info", "other.example", "target.example", None),
    ("http://target.example/r/info", "", "target.example", None),
])
def test_hostname_and_port_of_absolute_form_come_from_the_target(api, target, host,
                                                                 hostname, port):
    # RFC 9112 3.2.2: an origin server MUST ignore Host and use the host of
    # an absolute-form target, as a proxy in front routes by it.
    e = info(api, target, host=host)
    assert (e["path"], e["hostname"], e["port"]) == ("/r/info", hostname, port)


def test_remote_addr_version_keep_alive(api):
    e = info(api)
    assert e["remote_addr"] == "127.0.0.1"
    assert e["version"] == "1.1"
    assert e["keep_alive"] is True
    e = info(api, version="1.0")
    assert e["version"] == "1.0"
    assert e["keep_alive"] is False


def test_route_app_extra_and_response_class(api):
    e = info(api)
    assert e["route_pattern"] == "/r/info"
    assert e["route_name"] == "info"
    assert e["app_is_app"] is True
    assert e["response_is_fulmen_response"] is True
    # extra is a per-request dict (here filled by the app's on_request hooks)
    assert e["extra"] == {"pre": ["sync", "async"]}


def test_add_done_callback_runs_after_response(api):
    key = "k%d" % os.getpid()
    with Conn(api.port) as c:
        r = c.request("GET", "/r/done/" + key)
        # the view saw the state before its callback ran...
        assert r.body == b"view ran"
        # ...which ran once the response was written, with the request
        r2 = c.request("GET", "/r/done-state/" + key)
    assert r2.body == ("callback got /r/done/%s" % key).encode()


def test_an_async_done_callback_is_refused(api):
    # its call would make a coroutine that nobody runs
    r = get(api, "/r/done-refused")
    assert b"is an async def or a generator: it would never run" in r.body, r


@pytest.mark.parametrize("args,kw", [((5, "v"), {}), (("a", b"v"), {}), (("a", None), {}),
                                     (("a", "v"), {"secure": "no"}),
                                     (("a", "v"), {"httponly": 1})])
def test_set_cookie_takes_str_and_bools(args, kw):
    from fulmen import Response
    with pytest.raises(TypeError, match="set_cookie"):
        Response().set_cookie(*args, **kw)


def test_a_done_callback_added_once_the_answer_is_done_runs_at_once(api):
    """Added by a done callback as it runs, or later (a background task):
    it runs at once, instead of never."""
    key = "late%d" % os.getpid()
    with Conn(api.port) as c:
        assert c.request("GET", "/r/done-late/" + key).body == b"ok"
        state = c.request("GET", "/r/done-state/" + key).body
    assert state == b"['first', 'added by first', 'added later']"


def test_done_callback_runs_when_the_client_is_gone_first(api):
    """The client resets its connection while an async view awaits: the
    answer cannot be written, but the callback (clean-up, accounting) still
    runs, once."""
    import socket
    import struct
    key = "gone%d" % os.getpid()

    def state():
        with Conn(api.port) as c:
            return c.request("GET", "/r/done-state/" + key).body

    c = Conn(api.port)
    c.send(build_request("GET", "/r/done-gone/" + key))
    while state() != b"view waiting":
        pass
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()                                       # a reset, not a FIN
    # the view notices, says "view returned", returns; the callback follows
    deadline = time.monotonic() + 10
    while (s := state()) in (b"view waiting", b"view returned") and \
            time.monotonic() < deadline:
        pass
    assert s == ("callback got /r/done-gone/%s" % key).encode()


# ---- responses ----------------------------------------------------------------

def test_cookies_dict(api):
    r = get(api, "/resp/cookies-dict")
    assert sorted(r.header_all("Set-Cookie")) == ['a=1', 'b="two words"']


def test_cookies_simple_cookie(api):
    r = get(api, "/resp/cookies-simple")
    assert r.header_all("Set-Cookie") == ["sc=v; HttpOnly; Path=/p"]


def test_a_cookie_name_that_is_no_str_is_a_500_that_says_so(api):
    assert get(api, "/resp/cookies-bad-name").status == 500
    assert api.wait_for_stderr("TypeError: cookie names must be str, not int (5)"), api.stderr()


def test_set_cookie_and_delete_cookie(api):
    r = get(api, "/resp/set-cookie")
    cookies = {v.split("=", 1)[0]: v for v in r.header_all("Set-Cookie")}
    assert set(cookies) == {"sid", "plain", "old"}
    attrs = [a.strip() for a in cookies["sid"].split(";")]
    assert attrs[0] == "sid=abc"
    assert set(attrs[1:]) == {"HttpOnly", "Max-Age=60", "Path=/", "SameSite=Lax", "Secure"}
    assert [a.strip() for a in cookies["plain"].split(";")] == ["plain=1", "Path=/"]
    old = [a.strip() for a in cookies["old"].split(";")]
    assert old[0] == 'old=""'
    assert "Max-Age=0" in old
    assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in old


@pytest.mark.parametrize("attr,value", [("path", "/x; Domain=evil.example"),
                                        ("domain", "a.example; Secure"),
                                        ("samesite", "Lax\r\nX: y"), ("max_age", "1;x")])
def test_set_cookie_refuses_an_attribute_that_would_add_another(attr, value):
    # RFC 6265 4.1.1: an attribute value holds no ';' nor control character
    from fulmen import Response
    r = Response()
    r.set_cookie("theme", "dark")
    with pytest.raises(ValueError, match="may not contain"):
        r.set_cookie("sid", "abc", **{attr: value})
    assert list(r.cookies) == ["theme"]       # nothing of the refused one


@pytest.mark.parametrize("attr,value", [("max_age", "1, x=y"), ("max_age", 1.5),
                                        ("max_age", True), ("samesite", "Sometimes")])
def test_set_cookie_refuses_an_attribute_of_no_such_value(attr, value):
    from fulmen import Response
    r = Response()
    with pytest.raises(ValueError, match="cookie %s must be" % attr):
        r.set_cookie("sid", "abc", **{attr: value})
    assert not r.cookies


@pytest.mark.parametrize("when", [datetime.datetime(2030, 1, 2, 3, 4, 5),
                                  datetime.datetime(2030, 1, 2, 4, 4, 5, tzinfo=datetime.timezone(
                                      datetime.timedelta(hours=1)))])
def test_set_cookie_expires_datetime_is_a_cookie_date(when):
    # str(datetime) is no date a browser reads (RFC 6265 5.1.1)
    from fulmen import Response
    r = Response()
    r.set_cookie("sid", "abc", expires=when, samesite="lax")
    out = r.cookies["sid"].OutputString()
    assert "expires=Wed, 02 Jan 2030 03:04:05 GMT" in out, out


@pytest.mark.parametrize("kw", [{"text": "t"}, {"body": b"b"}])
def test_an_unknown_encoding_is_refused(kw):
    # body= sent charset=bogus as given
    from fulmen import Response
    with pytest.raises(LookupError, match="unknown encoding: bogus"):
        Response(encoding="bogus", **kw)
    Response(body=b"b", encoding="latin-1")     # a known one is taken


@pytest.mark.parametrize("code", ["200", True, 200.0])
def test_a_code_that_is_no_int_names_code(code):
    from fulmen import Response
    with pytest.raises(TypeError, match="code must be an int"):
        Response(code=code)
    with pytest.raises(TypeError, match="code must be an int"):
        Response().code = code


@pytest.mark.parametrize("headers", [[("a",)], [("a", "b", "c")], [5], ("ab",)])
def test_headers_that_are_no_pairs_are_refused_when_given(headers):
    # they failed only when sent: a 500 logged far from the view
    from fulmen import Response
    with pytest.raises(TypeError, match="list of \\(name, value\\) pairs: item 0 is"):
        Response(headers=headers)
    r = Response()
    with pytest.raises(TypeError, match="list of \\(name, value\\) pairs: item 0 is"):
        r.headers = headers
    r.headers = None
    assert r.headers == {}


@pytest.mark.parametrize("headers", [[(1, "x")], {2: "x"}, collections.OrderedDict([(b"a", "x")])])
def test_header_names_that_are_no_str_are_refused_when_given(headers):
    from fulmen import Response
    with pytest.raises(TypeError, match="header names must be str"):
        Response(headers=headers)
    assert Response(headers=[("X-A", 2)]).headers == [("X-A", 2)]   # values: str()


def test_headers_as_list_of_pairs_repeat(api):
    r = get(api, "/resp/headers-list")
    assert r.header_all("X-Rep") == ["1", "2"]
    assert r.header("Link") == "<a>"
    names = [k for k, _ in r.headers]
    assert names.index("X-Rep") < names.index("Link")


def test_a_response_subclass_with_its_own_init(api):
    # it failed: Response() took the subclass's arguments as its own
    r = get(api, "/resp/subclass-init")
    assert (r.status, r.json(), r.header("X-Sub")) == (201, {"made": "by a subclass"},
                                                       "JSONResponse")


def test_response_init_remakes_it_and_keeps_its_attributes():
    from fulmen import Response

    class Pre(Response):
        def __init__(self, text):
            self.before = 1
            super().__init__(text=text, code=202)

    r = Pre("x")
    assert (r.before, r.code, r.text) == (1, 202, "x")
    r = Response(text="a")
    r.__init__(json={"b": 2}, code=203)
    assert (r.code, r.json) == (203, {"b": 2})


def test_header_values_of_each_kind(api):
    # bytes-like values go out as bytes do (they went out as their repr()),
    # others as their str()
    r = get(api, "/resp/headers-values")
    assert [r.header(n) for n in ("X-Str", "X-Bytes", "X-Bytearray", "X-Memoryview", "X-Int")] \
        == ["s", "b", "ba", "mv", "7"]


def test_apps_server_replaces_ours_and_its_date_is_dropped(api):
    # each is one value (RFC 9110 5.3, 6.6.1): never two lines of either
    r = get(api, "/resp/headers-own")
    assert r.header_all("Server") == ["edge/1"]
    assert len(r.header_all("Date")) == 1 and r.header("Date") != "Mon, 01 Jan 2001 00:00:00 GMT"
    assert r.header("X-After") == "1" and r.body == b"h"
    assert r.raw.startswith(b"HTTP/1.1 200 OK\r\nDate: "), r.raw[:60]


@pytest.mark.parametrize("code", [204, 304])
def test_no_content_codes_have_no_default_content_type(api, code):
    # the view gave text: a 304's Content-Type would replace the one a cache
    # stored (RFC 9111 4.3.4), and neither code has content to type
    with Conn(api.port) as c:
        c.send(build_request("GET", "/resp/code/%d" % code) + build_request("GET", "/plain"))
        r = c.read_final()
        assert r.status == code and r.body == b""
        assert r.header("Content-Type") is None, r.raw
        assert c.read_final().body == b"plain"


@pytest.mark.parametrize("n", [65, 200])
def test_response_headers_over_64k(api, n):
    with Conn(api.port) as c:
        r = c.request("GET", "/resp/headers-big/%d" % n)
        assert r.status == 200
        assert r.body == b"big"
        assert len(r.header_all("X-Big-%d" % (n - 1))) == 1
        assert r.header("X-Big-0") == "v" * 1000
        assert r.header("X-Last") == "last"
        assert len(r.raw) > n * 1000
        assert c.request("GET", "/plain").body == b"plain"


@pytest.mark.parametrize("path", ["/resp/text-and-body", "/resp/json-and-text",
                                  "/resp/json-and-body"])
def test_conflicting_content_arguments_are_500(api, path):
    with Conn(api.port) as c:
        r = c.request("GET", path)
        assert r.status == 500
        assert r.body == b"Internal Server Error"
        assert c.request("GET", "/plain").status == 200
    assert api.wait_for_stderr("TypeError"), api.stderr()


@pytest.mark.parametrize("code,reason", [(599, "Unknown"), (299, "Unknown"),
                                         (418, "I'm a teapot"), (201, "Created")])
def test_status_line_for_any_code(api, code, reason):
    with Conn(api.port) as c:
        c.send(build_request("GET", "/resp/code/%d" % code))
        r = c.read_final()
        assert r.raw.startswith(b"HTTP/1.1 %d %s\r\n" % (code, reason.encode()))
        assert r.body == b"code"
        assert c.request("GET", "/plain").body == b"plain"


def test_205_has_no_content_whatever_the_view_gave(api):
    # RFC 9110 15.3.6: a server MUST NOT generate content in a 205; it says
    # so with Content-Length: 0.  The view's text would be read as the next
    # response by a client.
    with Conn(api.port) as c:
        c.send(build_request("GET", "/resp/code/205") + build_request("GET", "/plain"))
        r = c.read_final()
        assert r.status == 205
        assert r.header("Content-Length") == "0" and r.body == b""
        assert c.read_final().body == b"plain"


@pytest.mark.parametrize("code", [600, 999, 99, 0, 100, 101, 199, -1, 2 ** 70, -2 ** 70])
def test_a_code_outside_200_599_is_a_value_error(api, code):
    # RFC 9110 15: codes outside 100..599 are invalid, so none goes on the
    # wire; a 1xx is interim (15.2), so no Response carries one
    from fulmen import Response
    with pytest.raises(ValueError):
        Response(code=code)
    r = Response()
    with pytest.raises(ValueError):
        r.code = code           # (2 ** 70: it was OverflowError)
    if abs(code) >= 10 ** 18:
        return                  # no {n:int} of the route
    with Conn(api.port) as c:
        c.send(build_request("GET", "/resp/code/%d" % code))
        assert c.read_final().status == 500
        assert c.request("GET", "/plain").body == b"plain"


def test_an_empty_mime_type_is_a_value_error():
    # it sent an empty Content-Type field
    from fulmen import Response
    with pytest.raises(ValueError, match="mime_type must not be empty"):
        Response(text="x", mime_type="")
    r = Response(text="x")
    with pytest.raises(ValueError, match="mime_type must not be empty"):
        r.mime_type = ""


def test_response_encoding_sets_charset(api):
    r = get(api, "/resp/latin1")
    assert r.body == "caf\u00e9 \u00fc".encode("latin-1")
    assert r.header("Content-Type") == "text/plain; charset=latin-1"
    r = get(api, "/resp/latin1-mime")
    assert r.body == "caf\u00e9".encode("latin-1")
    assert r.header("Content-Type") == "text/html; charset=latin-1"


# ---- JSON encoding --------------------------------------------------------------

def _json_names(srv):
    return get(srv, "/json-names").json()


def _json_pairs(srv):
    """(name, response of /json/name, response of /json-ref/name) for every
    case of apps/api.py JSON_CASES and CUSTOM_CASES."""
    names = _json_names(srv)
    assert len(names["plain"]) > 30
    out = []
    with Conn(srv.port) as c:
        for name in names["plain"] + names["custom"]:
            got = c.request("GET", "/json/" + name)
            want = c.request("GET", "/json-ref/" + name)
            assert got.status == want.status == 200, (name, got)
            out.append((name, got, want))
    return out


def test_json_encoding_matches_json_dumps(api):
    """The C encoder's bytes (or the fallback's) equal json.dumps() (the
    app's json_dumps= for the custom cases) run in the server on the same
    value."""
    bad = [(name, got.body[:120], want.body[:120])
           for name, got, want in _json_pairs(api) if got.body != want.body]
    assert not bad


def test_json_content_type(api):
    """Response(json=...) is application/json, also when the value went
    through the Python fallback encoder."""
    bad = [(name, got.header("Content-Type")) for name, got, _ in _json_pairs(api)
           if got.header("Content-Type") != "application/json"]
    assert not bad


@pytest.mark.parametrize("name,expected", [
    ("nan-in-list", b"[NaN, Infinity, -Infinity]"),
    ("neg-zero", b"-0.0"),
    ("float-1e16", b"1e+16"),
    ("int64-min", b"-9223372036854775808"),
    ("big-int", b"18446744073709551617"),
    ("astral", b'"\\ud83d\\ude00 \\ud834\\udd1e \\udbff\\udfff"'),
    ("lone-surrogate", b'"a\\ud800b\\udfffc"'),
    ("escapes", b'"q\\"b\\\\s/\\b\\f\\n\\r\\t"'),
    ("tuple", b'[1, [2, 3], "x"]'),
    ("non-str-keys", b'{"1": "a", "2.5": "b", "null": "c", "false": "d"}'),
    ("int-enum", b"1"),
    # only the app's json_dumps= knows these
    ("set", b'{"s": [1, 2, 3]}'),
    ("date", b'["2020-01-02"]'),
    ("decimal", b'{"d": "1.50"}'),
])
def test_json_encoding_literals(api, name, expected):
    assert get(api, "/json/" + name).body == expected


def test_json_control_characters(api):
    body = get(api, "/json/control").body
    assert body == json.dumps("".join(chr(i) for i in range(32)) + "\x7f").encode()
    assert b"\\u0000" in body and b"\\u001f" in body and b"\\u007f" in body


# ---- routing ----------------------------------------------------------------------

def _allow(resp):
    return {m.strip() for m in resp.header("Allow").split(",")}


def test_method_restriction_and_405(api):
    with Conn(api.port) as c:
        assert c.request("GET", "/m/get").body == b"GET"
        r = c.request("POST", "/m/get")
        assert r.status == 405
        assert _allow(r) == {"GET", "HEAD", "OPTIONS"}
        assert c.request("POST", "/m/post-put").body == b"POST"
        assert c.request("PUT", "/m/post-put").body == b"PUT"
        r = c.request("GET", "/m/post-put")
        assert r.status == 405
        assert _allow(r) == {"POST", "PUT", "OPTIONS"}       # no GET, so no HEAD
        r = c.request("HEAD", "/m/post-put")
        assert r.status == 405


def test_same_pattern_split_over_routes(api):
    with Conn(api.port) as c:
        assert c.request("GET", "/m/split").body == b"GET"
        assert c.request("DELETE", "/m/split").body == b"DELETE"
        r = c.request("PATCH", "/m/split")
        assert r.status == 405
        assert _allow(r) == {"GET", "HEAD", "DELETE", "OPTIONS"}


def test_options_automatic_204(api):
    with Conn(api.port) as c:
        r = c.request("OPTIONS", "/m/post-put")
        assert r.status == 204
        assert r.body == b""
        assert _allow(r) == {"POST", "PUT", "OPTIONS"}
        r = c.request("OPTIONS", "*")
        assert r.status == 204
        assert c.request("GET", "/plain").body == b"plain"


def test_options_handled_by_route(api):
    r = get(api, "/m/own-options", "OPTIONS")
    assert r.status == 200
    assert r.body == b"my options"
    assert r.header("X-Own") == "1"
    r = get(api, "/m/own-options", "POST")
    assert r.status == 405
    assert _allow(r) == {"GET", "HEAD", "OPTIONS"}


def test_route_without_methods_takes_options_and_any(api):
    with Conn(api.port) as c:
        for m in ("GET", "POST", "DELETE", "PURGE"):
            assert c.request(m, "/m/any").body == m.encode()
        assert c.request("OPTIONS", "/m/any").body == b"OPTIONS"


def test_trace_reaches_only_a_route_that_lists_it(api):
    # TRACE echoes what it is sent, Cookie and Authorization too (cross-site
    # tracing): a route with no methods does not take it
    with Conn(api.port) as c:
        r = c.request("TRACE", "/m/any")
        assert r.status == 405
        assert _allow(r) == {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}
        assert c.request("TRACE", "/m/trace").body == b"TRACE"
        assert c.request("GET", "/m/any").body == b"GET"


def test_head_served_by_get_route(api):
    with Conn(api.port) as c:
        r = c.request("HEAD", "/m/get")
        assert r.status == 200
        # the view ran for HEAD and answered "HEAD": no body, and no length
        assert r.header("Content-Length") is None
        assert r.header("Content-Type") == "text/plain; charset=utf-8"
        # nothing followed the head: the next response parses cleanly
        assert c.request("GET", "/m/get").body == b"GET"


def test_url_for(api):
    e = get(api, "/urlfor").json()
    assert e["item"] == "/items/3"
    assert e["file"] == "/files/a%20b/c.txt"
    assert e["plain"] == "/plain"
    assert e["app_item"] == "/items/4", "Application.url_for is missing"
    # and the URLs route back to their views
    assert get(api, e["item"]).body == b"item 3"
    assert get(api, e["file"]).body == b"file a b/c.txt"


# ---- route table errors, in-process (no server) -------------------------------------

def _view(request):
    return None


def test_duplicate_route_fails_at_build():
    from fulmen import Application
    app = Application()
    app.router.add_route("/dup", _view, method="GET")
    app.router.add_route("/dup", _view, method="GET")
    with pytest.raises(ValueError):
        app.router.build()


def test_duplicate_parametric_route_fails_at_build():
    from fulmen import Application
    app = Application()
    app.router.add_route("/p/{a}", _view)
    app.router.add_route("/p/{b}", _view)
    with pytest.raises(ValueError):
        app.router.build()


def test_same_pattern_other_methods_builds():
    from fulmen import Application
    app = Application()
    app.router.add_route("/x/{a}", _view, method="GET")
    app.router.add_route("/x/{a}", _view, method="POST")
    app.router.build()


@pytest.mark.parametrize("pattern", [
    "/a{b}c", "/{a", "/a}", "/{a:nosuchtype}", "/{a b}", "/{a}/{a}",
    "no-slash", "/{a:int}x",
])
def test_bad_pattern_fails_at_add_route(pattern):
    from fulmen import Application, RouteError
    app = Application()
    with pytest.raises(RouteError):
        app.router.add_route(pattern, _view)


def test_path_param_not_last_fails_at_start():
    # rejected by add_route or, at the latest, when the table is built
    from fulmen import Application
    app = Application()
    with pytest.raises(ValueError):
        app.router.add_route("/{p:path}/x", _view)
        app.router.build()


def test_bad_route_arguments():
    from fulmen import Application, RouteError
    app = Application()
    with pytest.raises(TypeError):
        app.router.add_route("/x", "not callable")
    with pytest.raises(TypeError):
        app.router.add_route("/x", _view, method="GET", methods=["POST"])
    with pytest.raises(RouteError):
        app.router.add_route("/x", _view, methods=[])
    with pytest.raises(RouteError):
        app.router.add_route("/x", _view, method="G E T")
    app.router.add_route("/n", _view, name="n")
    with pytest.raises(RouteError):
        app.router.add_route("/m", _view, name="n")


@pytest.mark.parametrize("kw", [{"method": "connect"}, {"methods": ["GET", "CONNECT"]}])
def test_a_connect_route_is_refused(kw):
    # CONNECT is answered 501 before routing: such a route could never run,
    # and OPTIONS and 405s would offer it in Allow
    from fulmen import Application, RouteError
    with pytest.raises(RouteError, match="CONNECT never reaches a route"):
        Application().router.add_route("/x", _view, **kw)


def _no_args():
    return None


def _two_args(request, extra):
    return None


def _kw_only(request, *, extra):
    return None


async def _async_gen_view(request):
    yield b"x"


def _gen_view(request):
    yield b"x"


class _Callable:
    def __call__(self):
        return None


@pytest.mark.parametrize("handler", [_no_args, _two_args, _kw_only, _async_gen_view,
                                     _gen_view, _Callable(), lambda: None])
def test_view_that_cannot_answer_a_request_fails_at_add_route(handler):
    # a view is view(request) -> Response: one that takes no request, wants
    # more, or is a generator would only fail (500) on every request
    from fulmen import Application
    app = Application()
    with pytest.raises(TypeError):
        app.router.add_route("/x", handler)


@pytest.mark.parametrize("handler", [
    _view, lambda request, extra=None: None, lambda *args: None,
    lambda request, **kw: None, print, __import__("functools").partial(_two_args, extra=1)])
def test_views_that_take_one_argument_are_accepted(handler):
    from fulmen import Application
    Application().router.add_route("/x", handler)


def test_hook_and_error_handler_arity_is_checked():
    from fulmen import Application
    app = Application()
    with pytest.raises(TypeError):
        app.on_request(_two_args)
    with pytest.raises(TypeError):
        app.on_response(_view)
    with pytest.raises(TypeError):
        app.add_error_handler(ValueError, _view)
    app.on_request(_view)
    app.on_response(_two_args)
    app.add_error_handler(ValueError, _two_args)


def _gen_hook(app):
    yield


async def _agen_hook(request):
    yield


def _gen_handler(request, exc):
    yield


@pytest.mark.parametrize("register", [
    lambda app: app.on_startup(_gen_hook), lambda app: app.on_shutdown(_gen_hook),
    lambda app: app.on_request(_agen_hook),
    lambda app: app.add_error_handler(KeyError, _gen_handler)])
def test_a_generator_hook_or_handler_is_refused(register):
    # it would give a generator instead of running (an async one with a
    # yield would never run its body at start-up)
    from fulmen import Application
    with pytest.raises(TypeError, match="is a generator function"):
        register(Application())


def test_settings_cannot_change_once_serving():
    # an on_startup hook's app.debug = "false" (a str: true) was taken
    # unchecked, and a valid max_body_size did nothing
    from fulmen import Application
    app = Application()
    app.max_body_size = 10          # before run(): checked when it starts
    app._server = object()          # (what serve() sets before the startup hooks)
    for name, value in (("debug", "false"), ("max_body_size", 10), ("response_timeout", 1)):
        with pytest.raises(RuntimeError, match="app.%s cannot be changed once" % name):
            setattr(app, name, value)
    app.anything_else = 1           # the app's own attributes stay free


def test_serve_needs_a_listening_socket():
    import socket
    from fulmen import Application
    app = Application()
    with socket.socket() as s:
        # uvloop would listen on it at a random port of every address
        with pytest.raises(ValueError, match="bound, listening stream socket"):
            app.serve(s)
        with pytest.raises(TypeError, match="needs a socket.socket"):
            app.serve(s.fileno())
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(TypeError, match="ssl must be an ssl.SSLContext"):
            app.serve(s, ssl=5)


def test_file_response_needs_a_path():
    from fulmen import FileResponse
    with pytest.raises(TypeError, match="needs a path"):
        FileResponse(None)


def test_parameter_names_are_any_text_as_on_japronto():
    """({user-id} was a RouteError: names had to be identifiers)"""
    from fulmen import Application, RouteError
    app = Application()
    app.router.add_route("/a/{user-id}/{\u00e9}/{item.id}", _view, name="a")
    m = app.router.build()
    route, params = m.match("/a/7/x/3", "GET")
    assert (route.param_names, params) == (("user-id", "\u00e9", "item.id"), ["7", "x", "3"])
    assert app.router.url_for("a", **{"user-id": 7, "\u00e9": "x y", "item.id": 3}) == \
        "/a/7/x%20y/3"
    for bad in ("/b/{x y}", "/b/{x/y}", "/b/{x{y}"):
        with pytest.raises(RouteError):
            Application().router.add_route(bad, _view)


def test_url_for_errors_in_process():
    from fulmen import Application
    app = Application()
    app.router.add_route("/u/{id:int}", _view, name="u")
    app.router.add_route("/s/{name}/{f:float}/{k:uuid}", _view, name="s")
    assert app.router.url_for("u", id=5) == "/u/5"
    assert app.router.url_for("u", id="-7") == "/u/-7"
    k = "12345678-1234-1234-1234-123456789abc"
    assert app.router.url_for("s", name="a/b", f=1.5, k=k) == "/s/a%2Fb/1.5/" + k
    with pytest.raises(KeyError):
        app.router.url_for("nope")
    with pytest.raises(KeyError):
        app.router.url_for("u")
    # a link its own route would not take, or a value that is none
    for bad in ({"id": "abc"}, {"id": True}, {"id": 10 ** 20}):
        with pytest.raises(ValueError, match="does not match {id:int}"):
            app.router.url_for("u", **bad)
    for bad in ({"name": ""}, {"f": "1.2.3"}, {"k": "nope"}):
        with pytest.raises(ValueError, match="does not match"):
            app.router.url_for("s", **dict({"name": "n", "f": 1, "k": k}, **bad))
    for bad in (None, b"5"):
        with pytest.raises(TypeError, match="no value for a path"):
            app.router.url_for("u", id=bad)
    with pytest.raises(TypeError, match="has no parameter x"):
        app.router.url_for("u", id=5, x=1)
    assert app.url_for("u", id=6) == "/u/6"


def test_routes_closed_after_build():
    from fulmen import Application
    app = Application()
    app.router.add_route("/a", _view)
    app.router.build()
    with pytest.raises(RuntimeError):
        app.router.add_route("/b", _view)


# ---- Japronto's API beyond its examples (apps/japronto_style.py) -----------------

def test_error_handler_none_catches_everything_else(japronto_style):
    # add_error_handler(None, h): Japronto's catch-all.  A handler for the
    # exception's own class still wins; the catch-all also gets the 404s.
    r = get(japronto_style, "/handled")
    assert (r.status, r.body) == (409, b"handled: handled")
    r = get(japronto_style, "/other")
    assert (r.status, r.body) == (418, b"caught ValueError")
    r = get(japronto_style, "/nowhere")
    assert (r.status, r.body) == (404, b"caught RouteNotFoundException")
    # a method no route takes is one too, as on Japronto (fulmen's own
    # class for it, MethodNotAllowed, is a RouteNotFoundException)
    r = get(japronto_style, "/get-only", method="POST")
    assert (r.status, r.body) == (404, b"caught MethodNotAllowed")


def test_error_handler_needs_a_class_or_none():
    from fulmen import Application
    with pytest.raises(TypeError):
        Application().add_error_handler("KeyError", _view)


def test_route_for_one_method_beside_one_for_any(japronto_style):
    # add_route(pattern, view, "get"): the method is upper-cased, and the
    # route for any method takes the other methods of the same path
    assert get(japronto_style, "/split").body == b"get view"
    assert get(japronto_style, "/split", method="POST").body == b"other view: POST"
    assert get(japronto_style, "/split", method="DELETE").body == b"other view: DELETE"


def test_japronto_router_module_names():
    # japronto.router's names, under fulmen.router
    from fulmen import Application
    from fulmen.router import Route, RouteNotFoundException, Router
    app = Application()
    assert isinstance(app.router, Router)
    assert isinstance(app.router.add_route("/r", _view), Route)
    assert issubclass(RouteNotFoundException, Exception)


# ---- a Japronto app with Japronto's defaults (apps/japronto_plain.py) -------------

def test_route_not_found_raised_by_a_view_is_404(japronto_plain):
    # Japronto's default error handler turned RouteNotFoundException into
    # its 404 wherever it came from, a view's "no such object" included
    assert get(japronto_plain, "/items/1").body == b"item 1"
    r = get(japronto_plain, "/items/2")
    assert (r.status, r.body) == (404, b"Not Found")


def test_request_response_is_the_response_class(japronto_plain):
    assert get(japronto_plain, "/response-class").body == b"same class"


@pytest.mark.parametrize("code", [404, 204, 201])
def test_positional_none_text_then_code(japronto_plain, code):
    # request.Response(None, 404): Japronto's (text, code) order with no text
    r = get(japronto_plain, "/positional?code=%d" % code)
    assert (r.status, r.body) == (code, b"")


@pytest.mark.parametrize("path,pattern", [
    ("/love", "/love"),
    ("/lo%76e", "/love"),                 # an unreserved character encoded
    ("/%6C%6F%76%65", "/love"),
    ("/%6c%6f%76%65", "/love"),           # lower-case hex digits
    ("/a:b", "/a:b"),
    ("/a%3Ab", "/a:b"),                   # as JavaScript's encodeURIComponent
    ("/a%3ab", "/a:b"),
    ("/caf%C3%A9", "/caf\u00e9"),
    ("/caf%c3%a9", "/caf\u00e9"),
    ("/c%61f%C3%a9", "/caf\u00e9"),
])
def test_static_route_found_percent_encoded(japronto_plain, path, pattern):
    # Japronto matched routes against the percent-decoded path (RFC 3986
    # 6.2.2: these spellings are the same path), as fulmen does for the
    # literal segments of a route with parameters
    r = get(japronto_plain, path)
    assert (r.status, r.body.decode()) == (200, "static " + pattern)


@pytest.mark.parametrize("path", ["/lov%65/", "/lov%65%2F", "/a%2Fb", "/caf%C3", "/lov%6"])
def test_static_route_not_found_by_other_paths(japronto_plain, path):
    assert get(japronto_plain, path).status == 404


def test_header_names_title_cased_as_japronto(japronto_plain):
    # Japronto upper-cased every letter that follows a non-letter
    r = get(japronto_plain, "/header-names",
            headers=[("x-2fa", "1"), ("x_custom_name", "2"), ("x.dotted", "3"),
                     ("WWW-AUTHENTICATE", "4"), ("content-md5", "5")])
    names = r.body.decode().split("\n")
    for name in ("X-2Fa", "X_Custom_Name", "X.Dotted", "Www-Authenticate", "Content-Md5"):
        assert name in names


def test_static_route_percent_encoded_wins_over_parametric_in_process():
    # the static route is found before a parameter would take the segment,
    # whichever way the path is spelled
    from fulmen import Application
    app = Application()
    app.router.add_route("/a:b", _view, method="GET")
    app.router.add_route("/{x}", _view)
    m = app.router.build()
    for path in ("/a:b", "/a%3Ab", "/a%3ab", "/%61%3A%62"):
        route, params = m.match(path, "GET")
        assert (route.pattern, params) == ("/a:b", [])
    # a method the static route lacks: the parameter's route takes it,
    # whichever way the path is spelled (as for /a:b itself)
    assert m.match("/a%3Ab", "POST")[0].pattern == m.match("/a:b", "POST")[0].pattern == "/{x}"
    assert m.match("/a%2Fb", "GET")[1] == ["a%2Fb"]


def test_a_route_for_other_methods_gives_way_to_a_less_specific_one():
    """As Japronto's matcher went past a route for other methods: the most
    specific route whose path matches and which takes the method.  (GET
    /todos/new was a 405 behind POST /todos/new.)  When none takes it, the
    405's Allow lists what every route of the path takes."""
    from fulmen import Application
    app = Application()
    app.router.add_route("/todos/new", _view, method="POST")
    app.router.add_route("/todos/{id}", _view, methods=["GET", "PUT"])
    app.router.add_route("/hi/{there}", _view, methods=["POST", "DELETE"])
    app.router.add_route("/{oh}/{dear}", _view, method="PATCH")
    app.router.add_route("/f/{p:path}", _view, method="GET")
    app.router.add_route("/f/x-{p:path}", _view, method="POST")
    m = app.router.build()
    assert m.match("/todos/new", "POST")[0].pattern == "/todos/new"
    assert (m.match("/todos/new", "GET")[0].pattern, m.match("/todos/new", "GET")[1]) == \
        ("/todos/{id}", ["new"])
    assert m.match("/todos/new", "PATCH")[0].pattern == "/{oh}/{dear}"
    assert m.match("/hi/jane", "PATCH")[0].pattern == "/{oh}/{dear}"
    assert m.match("/hi/jane", "DELETE")[0].pattern == "/hi/{there}"
    assert m.match("/f/x-1", "GET")[0].pattern == "/f/{p:path}"
    assert m.match("/f/x-1", "POST")[0].pattern == "/f/x-{p:path}"
    assert m.match("/todos/new", "DELETE") == (None, "GET, HEAD, OPTIONS, PATCH, POST, PUT")
    assert m.match("/todos/7", "DELETE") == (None, "GET, HEAD, OPTIONS, PATCH, PUT")
    assert m.match("/todos/7/x", "DELETE") == (None, None)
    assert m.match("/f/x-1", "PUT") == (None, "GET, HEAD, OPTIONS, PATCH, POST")
    assert m.match("/nothing", "GET") == (None, None)


@pytest.mark.parametrize("n", [255, 256, 257, 300, 2047, 2048, 2049, 3000])
def test_long_literal_segment_and_static_route_found_percent_encoded(n):
    # a percent-encoded spelling reaches a literal segment and a static
    # route of any length (they were missed past 256 and 2,048 bytes)
    from fulmen import Application
    app = Application()
    app.router.add_route("/" + "a" * n + "/{x}", _view, method="GET")
    app.router.add_route("/s/" + "b" * n, _view, method="GET")
    m = app.router.build()
    route, params = m.match("/" + "a" * (n - 1) + "%61/1", "GET")
    assert (route.pattern, params) == ("/" + "a" * n + "/{x}", ["1"])
    route, params = m.match("/s/" + "b" * (n - 1) + "%62", "GET")
    assert (route.pattern, params) == ("/s/" + "b" * n, [])
    assert m.match("/s/" + "b" * (n - 1) + "%63", "GET") == (None, None)


# ---- run() and Application() arguments, checked before anything is bound ---------

@pytest.mark.parametrize("kwargs, message", [
    ({"host": None}, "host must be a str, not None"),
    ({"host": 8080}, "host must be a str, not 8080"),
    ({"fd": "3"}, "fd must be a file descriptor number, not '3'"),
    ({"fd": True}, "fd must be a file descriptor number, not True"),
    ({"fd": -1}, "fd must be a file descriptor number, not -1"),
    ({"uds": 5}, "uds must be a path, not 5"),
    ({"uds": ""}, "uds must be a path, not ''"),
    ({"uds": "/tmp/x.sock", "fd": 3}, "uds and fd exclude each other (fd is served, uds was "
                                      "ignored)"),
    ({"forwarded_allow_ips": 5}, "forwarded_allow_ips must be a str or a list of str, not 5"),
    ({"forwarded_allow_ips": [b"10.0.0.1"]},
     "forwarded_allow_ips must be a str or a list of str, not [b'10.0.0.1']"),
    ({"max_requests_jitter": 10}, "max_requests_jitter needs max_requests"),
    ({"worker_timeout": -1},
     "worker_timeout must be more than 0 and at most 31536000 seconds, not -1 (0 turns it off)"),
    ({"worker_timeout": True}, "worker_timeout must be a number of seconds, not True"),
    ({"worker_timeout": "30"}, "worker_timeout must be a number of seconds, not '30'"),
    ({"forwarded_allow_ips": "10.0.0.1,localhost"},
     "forwarded_allow_ips: 'localhost' is not an IP address or network "
     "(such as 10.0.0.5, 10.0.0.0/8 or fd00::/8)"),
    ({"forwarded_allow_ips": ["10.0.0.0/33"]},
     "forwarded_allow_ips: '10.0.0.0/33' is not an IP address or network "
     "(such as 10.0.0.5, 10.0.0.0/8 or fd00::/8)"),
    ({"forwarded_allow_ips": "*,garbage"},      # beside "*" too: a typo is said
     "forwarded_allow_ips: 'garbage' is not an IP address or network "
     "(such as 10.0.0.5, 10.0.0.0/8 or fd00::/8)"),
    # a yes/no setting is True or False: "false" is not taken as true
    ({"debug": "false"}, "debug must be True or False, not 'false'"),
    ({"proxy_headers": "no"}, "proxy_headers must be True or False, not 'no'"),
    ({"access_log": "off"}, "access_log must be True or False, not 'off'"),
    ({"reload": "0"}, "reload must be True or False, not '0'"),
    ({"backlog": 10 ** 12}, "backlog must be at most 65535, not 1000000000000"),
    ({"worker_num": 10 ** 6}, "worker_num must be at most 1024, not 1000000"),
    ({"worker_num": -1}, "worker_num must be at least 0, not -1"),
])
def test_run_rejects_bad_arguments_by_name(kwargs, message, monkeypatch):
    from fulmen import Application, app as app_module

    def no_listener(*args, **kw):
        raise AssertionError("a socket was made before the arguments were checked")
    monkeypatch.setattr(app_module, "_listener", no_listener)
    app = Application()
    with pytest.raises(ValueError) as e:
        app.run(**dict({"host": "127.0.0.1", "port": 0}, **kwargs))
    assert str(e.value) == message


@pytest.mark.parametrize("loop", [5, "uvloop", object()])
def test_application_rejects_a_loop_that_is_not_one(loop):
    from fulmen import Application
    with pytest.raises(ValueError) as e:
        Application(loop=loop)
    assert str(e.value) == "loop must be an asyncio event loop, not %r" % (loop,)


def test_application_takes_a_loop():
    import asyncio
    from fulmen import Application
    loop = asyncio.new_event_loop()
    try:
        assert Application(loop=loop).loop is loop
    finally:
        loop.close()


@pytest.mark.parametrize("name, value, message", [
    ("max_connections", 0, "max_connections must be at least 1, not 0"),
    ("max_body_size", -5, "max_body_size must be at least 0, not -5"),
    ("max_body_size", "10", "max_body_size must be an int, not '10'"),
    ("debug", "false", "debug must be True or False, not 'false'"),
    ("body_timeout", 0, "body_timeout must be more than 0 and at most 31536000 seconds, not 0"),
])
def test_a_setting_assigned_after_creation_is_checked_before_serving(name, value, message,
                                                                     monkeypatch):
    # app.max_connections = 0 used to serve a worker that answered nobody
    from fulmen import Application, app as app_module

    def no_listener(*args, **kw):
        raise AssertionError("a socket was made before the settings were checked")
    monkeypatch.setattr(app_module, "_listener", no_listener)
    app = Application(gc_threshold=None, gc_freeze=False)
    setattr(app, name, value)
    with pytest.raises(ValueError) as e:
        app.run(host="127.0.0.1", port=0)
    assert str(e.value) == message
    with pytest.raises(ValueError):
        _serve_until_startup(app)


class _Started(Exception):
    pass


def _serve_until_startup(app, **kw):
    """app.serve() on a fresh socket and loop, stopped by _Started from a
    start-up hook: a check that serve() should have made first raises
    before it."""
    import asyncio

    def started(app):
        raise _Started
    app._startup.append(started)
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        with sock:
            app.serve(sock, loop=loop, **kw)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_serve_checks_graceful_timeout():
    # serve(graceful_timeout="x") served, then failed in its SIGTERM handler
    from fulmen import Application
    for bad in ("x", math.nan, -1):
        with pytest.raises(ValueError, match="graceful_timeout"):
            _serve_until_startup(Application(gc_threshold=None, gc_freeze=False),
                                 graceful_timeout=bad)


@pytest.mark.parametrize("kw", [{"debug": "false"}, {"log_request": "no"}, {"debug": 1}])
def test_application_yes_no_settings_are_true_or_false(kw):
    from fulmen import Application
    with pytest.raises(ValueError, match="must be True or False"):
        Application(**kw)


def test_async_error_handler_is_refused_when_registered():
    from fulmen import Application

    async def handler(request, exc):
        return request.Response(code=500)
    with pytest.raises(TypeError, match="async def"):
        Application().add_error_handler(ValueError, handler)


def test_route_method_must_be_a_str():
    from fulmen import Application
    with pytest.raises(TypeError, match="a method is a str"):
        Application().router.add_route("/a", _view, method=1)


def test_extend_request_checks_what_the_function_takes():
    from fulmen import Application
    app = Application()
    with pytest.raises(TypeError, match="must take 1 positional argument"):
        app.extend_request(lambda: 1, name="no_arg_property", property=True)
    with pytest.raises(TypeError, match="must take the request"):
        app.extend_request(lambda: 1, name="no_arg_method")


def test_error_handler_added_while_serving_is_refused():
    # a 404 handler added from on_startup was accepted and never used
    from fulmen import Application, RouteNotFoundException
    # nothing of this process's own state changes (the gc threshold)
    app = Application(gc_threshold=None, gc_freeze=False)
    seen = []

    @app.on_startup
    def late(app):
        try:
            app.add_error_handler(RouteNotFoundException, lambda request, exc: None)
        except RuntimeError as e:
            seen.append(str(e))
    with pytest.raises(_Started):
        _serve_until_startup(app)
    assert seen == ["error handlers cannot be added once the app is serving"]


@pytest.mark.parametrize("kw, message", [
    ({"max_body_sise": 100}, "add_route() has no option 'max_body_sise' "
                             "(did you mean max_body_size?)"),
    ({"websocket": True}, "websocket: an add_websocket() argument, not add_route()'s"),
    ({"stream": "yes"}, "stream must be True or False, not 'yes'"),
])
def test_add_route_refuses_options_it_would_misread(kw, message):
    # a typo of max_body_size was kept in extra, and the app's limit applied
    from fulmen import Application

    async def view(request):
        return request.Response()
    with pytest.raises(TypeError) as e:
        Application().router.add_route("/up", view, **kw)
    assert str(e.value) == message


def test_add_route_keeps_other_options_in_extra():
    from fulmen import Application
    route = Application().router.add_route("/a", _view, owner="team-a")
    assert route.extra == {"owner": "team-a"}
