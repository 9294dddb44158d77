"""What a view returns and how it goes on the wire: status, headers, bodies."""
import json
from datetime import datetime

import pytest

from .rawhttp import Conn, build_request, fields_but_date


def get(port, path, **kw):
    with Conn(port) as c:
        return c.request("GET", path, **kw)


def check_common_headers(r):
    assert r.version == "1.1"
    assert r.header("Server") == "fulmen"
    assert int(r.header("Content-Length")) == len(r.body)
    assert r.header("Content-Type")
    # RFC 9110 5.6.7 IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    date = r.header("Date")
    parsed = datetime.strptime(date, "%a, %d %b %Y %H:%M:%S GMT")
    assert parsed.strftime("%a, %d %b %Y %H:%M:%S GMT") == date, "weekday/padding off"


def test_text_response(basic):
    r = get(basic.port, "/")
    assert (r.status, r.body) == (200, b"Hello world!")
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    check_common_headers(r)


def test_async_json_response(basic):
    r = get(basic.port, "/json")
    assert r.status == 200
    assert r.header("Content-Type") == "application/json"
    assert json.loads(r.body) == {"a": 1, "s": "\u00e9"}
    check_common_headers(r)


def test_bytes_response(basic):
    r = get(basic.port, "/bytes")
    assert r.body == b"\x00\x01\xffbin"
    assert r.header("Content-Type") == "application/octet-stream"
    check_common_headers(r)


def test_mime_type_overrides_content_type(basic):
    r = get(basic.port, "/mime")
    assert r.body == b"<b>x</b>"
    assert r.header("Content-Type").split(";")[0] == "text/html"


def test_extra_headers(basic):
    r = get(basic.port, "/headers")
    assert r.header("X-One") == "1"
    assert r.header("X-Two") == "two words"
    check_common_headers(r)


@pytest.mark.parametrize("how", ["dict", "list"])
def test_a_header_value_whose_str_empties_the_headers(basic, how):
    """str() of a value may change the dict or list it is in: the names
    being written stay alive (a use after free under ASan before)."""
    r = get(basic.port, "/headers-mutated/" + how)
    assert r.status == 200
    assert r.header("X-Mut2-" + "m" * 300) == "v"


@pytest.mark.parametrize("code", [201, 202, 400, 404, 418, 503])
def test_status_code(basic, code):
    r = get(basic.port, "/code/%d" % code)
    assert r.status == code
    assert r.body == b"code"
    check_common_headers(r)


@pytest.mark.parametrize("code", [100, 101, 103, 199])
def test_interim_code_from_a_view_is_500(basic, code):
    # A 1xx is interim (RFC 9110 15.2): the client still waits for the final
    # answer, and would take the next pipelined answer for it (or, after a
    # 101, stop reading HTTP).  A view cannot answer with one: it is a 500,
    # and the answers behind it stay in step with their requests.
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/code/%d" % code) + build_request("GET", "/p/2"))
        r = c.read_response()
        assert (r.status, r.body) == (500, b"Internal Server Error")
        assert c.read_response().body == b"2"
        c.send(build_request("HEAD", "/code/%d" % code) + build_request("GET", "/p/3"))
        assert c.read_response(head=True).status == 500
        assert c.read_response().body == b"3"


def test_text_encoding(basic):
    assert get(basic.port, "/latin1").body == b"caf\xe9"


def test_fulmen_response_is_request_response(basic):
    assert get(basic.port, "/module-response").body == b"True"


def test_positional_text_first_as_japronto(basic):
    # Japronto's Response(text, code, body, ...): a str first is the text
    r = get(basic.port, "/japronto-positional")
    assert (r.status, r.body) == (200, b"made")
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    r = get(basic.port, "/japronto-positional?code=201")
    assert (r.status, r.body) == (201, b"made")


@pytest.mark.parametrize("case, body, ctype", [
    ("text-html-latin1", b"caf\xe9", "text/html; charset=iso-8859-1"),
    ("text-xml-utf8", b"<a/>", "application/xml; charset=utf-8"),
    ("text-params-kept", b"x", "text/html; charset=ascii"),
    ("text-mime-latin1", b"caf\xe9", "text/html; charset=iso-8859-1"),
    ("body-html", b"<b>x</b>", "text/html; charset=utf-8"),
    ("body-html-latin1", b"<b>x</b>", "text/html; charset=iso-8859-1"),
    ("body-png", b"\x89PNG", "image/png"),
    ("body-encoding", b"x", "application/octet-stream; charset=utf-8"),
    # set later, the type is sent as set, with UTF-8 named only for text
    # that is sent in UTF-8 (it was named for latin-1 bytes too)
    ("text-latin1-later", b"caf\xe9", "text/html"),
    ("text-utf8-later", b"caf\xc3\xa9", "text/html; charset=utf-8"),
])
def test_content_type_charset_as_japronto(basic, case, body, ctype):
    """The charset label names the encoding the body was made with: the
    encoding= given, else UTF-8 for a text/ type (text= or body=)."""
    r = get(basic.port, "/charset/" + case)
    assert r.body == body
    assert r.header("Content-Type") == ctype
    check_common_headers(r)


@pytest.mark.parametrize("case, query, body, text", [
    ("text-html-latin1", "", b"caf\xe9", "caf\u00e9"),
    ("text-html-latin1", "?set=%C3%BC", b"\xfc", "\u00fc"),
    ("body-html-latin1", "?set=%C3%BC", b"\xfc", "\u00fc"),
    ("text-utf8-later", "?set=%C3%BC", b"\xc3\xbc", "\u00fc"),
])
def test_text_reads_and_writes_in_the_labelled_charset(basic, case, query, body, text):
    """response.text decodes, and setting it encodes, with the charset the
    Content-Type names: the bytes sent are what the label says"""
    r = get(basic.port, "/charset-text/%s%s" % (case, query))
    assert (r.status, r.body, r.header("X-Text")) == (200, body, ascii(text)), r.raw


def test_text_the_labelled_charset_cannot_encode_is_a_500(basic):
    assert get(basic.port, "/charset-text/text-html-latin1?set=%E2%82%AC").status == 500


@pytest.mark.parametrize("n", [0, 1, 1023, 1024 * 1024 + 7, 8 * 1024 * 1024])
def test_large_response_body(basic, n):
    r = get(basic.port, "/big/%d" % n)
    expected = bytes(range(256)) * (n // 256) + b"x" * (n % 256)
    assert len(r.body) == n
    assert r.body == expected
    check_common_headers(r)


@pytest.mark.parametrize("n", [1000, 1100, 5000, 70000])
def test_large_response_header(basic, n):
    # Japronto wrote response heads into a fixed 1 KB buffer and crashed.
    with Conn(basic.port) as c:
        r = c.request("GET", "/bigheader/%d" % n)
        assert r.header("X-Big") == "h" * n
        assert r.header("X-After") == "after"
        assert r.body == b"h"
        assert c.request("GET", "/").status == 200


def test_match_dict_single(basic):
    assert get(basic.port, "/u/42").json() == {"id": "42"}


def test_match_dict_two_segments(basic):
    assert get(basic.port, "/two/abc/x/d-e_f").json() == {"a": "abc", "b": "d-e_f"}


def test_match_dict_empty_for_static_route(basic):
    assert get(basic.port, "/echo").json()["match_dict"] == {}


def test_unknown_path_is_404(basic):
    r = get(basic.port, "/no/such/path")
    assert r.status == 404
    check_common_headers(r)


def test_placeholder_does_not_cross_slash(basic):
    assert get(basic.port, "/u/1/2").status == 404


def test_wrong_method_is_405_with_allow(basic):
    with Conn(basic.port) as c:
        r = c.request("POST", "/only-get", body=b"x")
        assert r.status == 405
        allow = {m.strip() for m in r.header("Allow").split(",")}
        assert "GET" in allow and "POST" not in allow
        check_common_headers(r)
        r = c.request("DELETE", "/get-or-post")
        assert r.status == 405
        allow = {m.strip() for m in r.header("Allow").split(",")}
        assert {"GET", "POST"} <= allow and "DELETE" not in allow
        # The connection is still usable after a 405.
        assert c.request("GET", "/only-get").body == b"get only"


def test_methods_list(basic):
    with Conn(basic.port) as c:
        assert c.request("GET", "/get-or-post").body == b"GET"
        assert c.request("POST", "/get-or-post", body=b"").body == b"POST"


def test_route_without_method_takes_any_token_method(basic):
    with Conn(basic.port) as c:
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO", "M-SEARCH"]:
            r = c.request(m, "/echo", body=b"")
            assert r.status == 200, m
            assert r.json()["method"] == m


@pytest.mark.parametrize("path,status", [
    ("/", 200),                 # text
    ("/json", 200),             # JSON
    ("/bytes", 200),            # bytes body
    ("/headers", 200),          # the app's own headers
    ("/big/70000", 200),        # a body larger than the output buffer's first block
    ("/big/0", 200),            # an empty body
    ("/nope", 404),             # no route
    ("/code/404", 404),
    ("/code/204", 204),
    ("/code/304", 304),
])
def test_head_has_the_fields_of_get(basic, path, status):
    # RFC 9110 9.3.2: the same header fields as GET and no body; Content-Length
    # is left out (8.6 makes it optional on HEAD), so that the answer frames
    # the same for a reader that takes it for a GET answer.
    with Conn(basic.port) as c:
        g = c.request("GET", path)
        # HEAD then GET pipelined: a body wrongly sent after the HEAD
        # response would be read as the next status line and fail.
        c.send(build_request("HEAD", path) + build_request("GET", path))
        h = c.read_response(head=True)
        g2 = c.read_response()
        assert h.status == g.status == g2.status == status
        assert fields_but_date(h, "content-length") == fields_but_date(g, "content-length")
        assert h.header("Content-Length") is None
        assert h.header("Transfer-Encoding") is None
        assert g2.body == g.body


def test_head_response_has_no_body_before_close(basic):
    with Conn(basic.port) as c:
        c.send(build_request("HEAD", "/big/3000", headers={"Connection": "close"}))
        h = c.read_response(head=True)
        assert h.status == 200 and h.header("Content-Length") is None
        assert h.header("Connection") == "close"
        assert c.at_eof(), "bytes after a HEAD response: %r" % c.buf[:100]


def test_head_http10_has_the_fields_of_get(basic):
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/", version="1.0"))
        g = c.read_response()
        assert c.at_eof()
    with Conn(basic.port) as c:
        c.send(build_request("HEAD", "/", version="1.0"))
        h = c.read_response(head=True)
        assert fields_but_date(h, "content-length") == fields_but_date(g, "content-length")
        assert h.header("Content-Length") is None
        assert c.at_eof(), "bytes after a HEAD response: %r" % c.buf[:100]


def test_head_answered_500_for_a_bad_header_has_no_body(basic):
    # an unsafe header turns the answer into a 500 written without the
    # Response object; on HEAD it must still carry no body
    with Conn(basic.port) as c:
        g = c.request("GET", "/header-crlf")
        assert (g.status, g.body) == (500, b"Internal Server Error")
        c.send(build_request("HEAD", "/header-crlf") + build_request("GET", "/"))
        h = c.read_response(head=True)
        assert h.status == 500
        assert fields_but_date(h, "content-length") == fields_but_date(g, "content-length")
        assert h.header("Content-Length") is None
        assert c.read_response().body == b"Hello world!"
