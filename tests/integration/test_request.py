"""The request object a view sees: method, path, query, version, headers, body."""
import base64

from .rawhttp import Conn, build_request


def echo(port, raw):
    with Conn(port) as c:
        c.send(raw)
        r = c.read_final()
        assert r.status == 200, r
        return r.json()


def test_method_path_and_empty_query(basic):
    e = echo(basic.port, build_request("GET", "/echo"))
    assert e["method"] == "GET"
    assert e["path"] == "/echo"
    assert e["query_string"] == ""
    assert e["version"] == "1.1"
    assert e["body"] == ""
    assert e["content_type"] is None


def test_query_string_is_raw_and_split_from_path(basic):
    e = echo(basic.port, build_request("GET", "/echo?a=1&b=%20x&c=%2F&=?&d"))
    assert e["path"] == "/echo"
    assert e["query_string"] == "a=1&b=%20x&c=%2F&=?&d"


def test_empty_query_after_question_mark(basic):
    e = echo(basic.port, build_request("GET", "/echo?"))
    assert e["path"] == "/echo"
    assert e["query_string"] == ""


def test_query_string_with_match_dict(basic):
    e = echo(basic.port, build_request("GET", "/echo/seg?x=y"))
    assert e["path"] == "/echo/seg"
    assert e["query_string"] == "x=y"
    assert e["match_dict"] == {"rest": "seg"}


def test_http10_version(basic):
    raw = b"GET /echo HTTP/1.0\r\n\r\n"
    e = echo(basic.port, raw)
    assert e["version"] == "1.0"
    assert e["keep_alive"] is False


def test_keep_alive_attribute(basic):
    assert echo(basic.port, build_request("GET", "/echo"))["keep_alive"] is True
    assert echo(basic.port, build_request(
        "GET", "/echo", headers={"Connection": "close"}))["keep_alive"] is False
    assert echo(basic.port, build_request(
        "GET", "/echo", version="1.0", headers={"Connection": "keep-alive"}))["keep_alive"] is True


def test_headers_case_insensitive_and_title_case(basic):
    raw = (b"GET /echo HTTP/1.1\r\n"
           b"host: example\r\n"
           b"content-type: text/x-test\r\n"
           b"x-foo-bar: 1\r\n"
           b"X-UPPER-CASE: 2\r\n"
           b"x-MiXeD:   padded value \t\r\n"
           b"Accept:\r\n"
           b"\r\n")
    e = echo(basic.port, raw)
    assert e["content_type"] == "text/x-test"     # .get() with a lower-case key
    assert e["has_host"] is True                  # `in` with a lower-case key
    assert e["headers"] == [
        ["Host", "example"],
        ["Content-Type", "text/x-test"],
        ["X-Foo-Bar", "1"],
        ["X-Upper-Case", "2"],
        ["X-Mixed", "padded value"],              # OWS stripped both sides
        ["Accept", ""],
    ]


def test_repeated_headers_are_combined_in_order(basic):
    # RFC 9110 5.3: ", "-separated; Cookie lines with "; " (RFC 6265 5.4).
    # Each name keeps the place of its first line.
    raw = (b"GET /echo HTTP/1.1\r\nHost: x\r\n"
           b"X-A: 1\r\nX-B: b\r\nx-a: 2\r\nCookie: a=1\r\nX-A: \r\nX-A: 3\r\n"
           b"cookie: b=2\r\n\r\n")
    e = echo(basic.port, raw)
    assert e["headers"] == [["Host", "x"], ["X-A", "1, 2, , 3"], ["X-B", "b"],
                            ["Cookie", "a=1; b=2"]]


def test_header_value_keeps_inner_whitespace(basic):
    raw = (b"GET /echo HTTP/1.1\r\nHost: x\r\n"
           b"X-A: a  b\tc\r\n"
           b"\r\n")
    e = echo(basic.port, raw)
    assert ["X-A", "a  b\tc"] in e["headers"]


def test_content_length_body(basic):
    body = bytes(range(256)) * 4
    e = echo(basic.port, build_request("POST", "/echo", body=body,
                                       headers={"Content-Type": "application/octet-stream"}))
    assert base64.b64decode(e["body"]) == body
    assert e["content_type"] == "application/octet-stream"


def test_absolute_form_target(basic):
    e = echo(basic.port, b"GET http://example.com/echo?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert e["path"] == "/echo"
    assert e["query_string"] == "q=1"


def test_leading_empty_line_is_ignored(basic):
    # RFC 9112 2.2: a server SHOULD ignore at least one empty line before the
    # request line.
    e = echo(basic.port, b"\r\n" + build_request("GET", "/echo"))
    assert e["path"] == "/echo"


def test_async_view_without_await(basic):
    with Conn(basic.port) as c:
        assert c.request("GET", "/an/7").body == b"7"


def test_async_view_awaiting(basic):
    with Conn(basic.port) as c:
        e = c.request("POST", "/aecho?k=v", body=b"payload").json()
        assert e["query_string"] == "k=v"
        assert base64.b64decode(e["body"]) == b"payload"
        assert c.request("GET", "/sleepy").body == b"slept"
        assert c.request("GET", "/ap/3").body == b"3"


def test_json_is_none_without_a_body(basic):
    # As on Japronto: no Content-Length and no Transfer-Encoding, no JSON
    with Conn(basic.port) as c:
        r = c.request("GET", "/json-or-none")
        assert (r.status, r.body) == (200, b"None")
        r = c.request("POST", "/json-or-none", body=b'{"a": [1]}')
        assert (r.status, r.body) == (200, b"{'a': [1]}")
        # a body that is there but empty is not JSON: 400 as before
        assert c.request("POST", "/json-or-none", body=b"").status == 400


def test_attributes_set_on_a_request_do_not_reach_the_next(basic):
    # request objects are reused: what a view set on one (its instance
    # dict) is gone by the next request, one by one and pipelined
    with Conn(basic.port) as c:
        for v in ("a", "b"):
            assert c.request("GET", "/attr/" + v).json() == {"seen": None, "dict": ["user_mark"]}
        c.send(b"".join(build_request("GET", "/attr/p%d" % i) for i in range(5)))
        for _ in range(5):
            assert c.read_final().json() == {"seen": None, "dict": ["user_mark"]}
