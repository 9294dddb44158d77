"""Protocol errors get the right status, `Connection: close`, and the end of
the connection: bytes after a bad request are never read as a request.
View errors get a 500 and the connection goes on serving."""
import os
import socket

import pytest

from .conftest import _app_fixture
from .rawhttp import Conn, build_request
from .test_streams import read_to_eof
from .wsclient import WSClient

reentry = pytest.fixture(_app_fixture("reentry"), name="reentry")

GOOD = build_request("GET", "/p/99")


def long_headers(total):
    """A head whose size is about `total` bytes, in 100-byte headers."""
    n = total // 100
    return b"".join(b"X-H%05d: %s\r\n" % (i, b"v" * 89) for i in range(n))


BAD_REQUESTS = [
    # (id, raw request, status)
    ("bare-lf", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("bare-lf-in-header", b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", 400),
    ("bare-cr", b"GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("ctl-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    ("del-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400),
    ("missing-host", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("bad-header-name", b"GET / HTTP/1.1\r\nHost: x\r\nX@Y: 1\r\n\r\n", 400),
    ("empty-header-name", b"GET / HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n", 400),
    ("no-colon", b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
    ("leading-space-header", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    ("bad-method", b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("missing-target", b"GET HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("double-space", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("lowercase-version", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad-version", b"GET / HTTP/1.x\r\nHost: x\r\n\r\n", 400),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    ("cl-not-a-number", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ("cl-negative", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("cl-plus", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400),
    ("cl-list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabc", 400),
    ("cl-duplicate-differs",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("cl-duplicate-same",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("expect-unknown",
     b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, foo\r\nContent-Length: 2\r\n\r\n{}",
     417),
    ("content-type-twice",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
     b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 400),
    ("cl-and-te",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", 400),
    ("te-chunked-not-last",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("te-gzip-chunked",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("http2-request-line", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("header-section-too-large",
     b"GET / HTTP/1.1\r\nHost: x\r\n" + long_headers(17000) + b"\r\n", 431),
    ("one-header-too-large",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 431),
    ("request-line-too-long",
     b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("too-many-headers",
     b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
     + b"\r\n", 431),
]


@pytest.mark.parametrize("raw,status", [c[1:] for c in BAD_REQUESTS],
                         ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_error_and_close(basic, raw, status):
    with Conn(basic.port) as c:
        c.send(raw + GOOD)
        r = c.read_response()
        assert r.status == status, r
        assert r.header("Connection").lower() == "close"
        assert int(r.header("Content-Length")) == len(r.body)
        assert r.header("Server") == "fulmen"
        # The good request after the bad one is never answered.
        assert c.at_eof(), "bytes after the error response: %r" % bytes(c.buf[:200])


@pytest.mark.parametrize("raw,status", [c[1:] for c in BAD_REQUESTS if c[2] in (431, 414)],
                         ids=[c[0] for c in BAD_REQUESTS if c[2] in (431, 414)])
def test_oversized_head_rejected_while_incomplete(basic, raw, status):
    # The head never ends: the limit must trigger on what has arrived.
    cut = raw.rfind(b"\r\n\r\n")
    with Conn(basic.port) as c:
        c.send(raw[:cut])
        assert c.read_response().status == status
        assert c.at_eof()


def test_bad_request_after_good_ones(basic):
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/p/1") + build_request("GET", "/ap/2")
               + b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n" + GOOD)
        assert c.read_response().body == b"1"
        assert c.read_response().body == b"2"
        assert c.read_response().status == 400
        assert c.at_eof()


def test_head_just_under_the_limit_is_accepted(basic):
    with Conn(basic.port) as c:
        r = c.request("GET", "/echo", headers=[
            ("X-H%03d" % i, "v" * 89) for i in range(150)][:90] + [("X-Pad", "p" * 6000)])
        assert r.status == 200


def test_a_hundred_headers_are_accepted(basic):
    with Conn(basic.port) as c:
        r = c.request("GET", "/echo", headers=[("X-%d" % i, "1") for i in range(99)])
        assert r.status == 200
        assert len(r.json()["headers"]) == 100


def test_long_request_line_under_the_limit(basic):
    with Conn(basic.port) as c:
        r = c.request("GET", "/echo?" + "q" * 8000)
        assert r.status == 200 and len(r.json()["query_string"]) == 8000


@pytest.mark.parametrize("path", ["/boom", "/aboom", "/not-a-response"])
def test_view_error_is_500_and_connection_survives(basic, path):
    with Conn(basic.port) as c:
        r = c.request("GET", path)
        assert r.status == 500
        assert int(r.header("Content-Length")) == len(r.body)
        assert r.header("Server") == "fulmen"
        assert b"Traceback" not in r.body
        assert (r.header("Connection") or "").lower() != "close"
        assert c.request("GET", "/").body == b"Hello world!"


@pytest.mark.parametrize("how,status,allow", [
    ("405", 405, "GET, HEAD"), ("404", 404, None), ("405-bad", 404, None)])
def test_view_raising_the_routers_exceptions(basic, how, status, allow):
    """A view that raises MethodNotAllowed (a RouteNotFoundException) gets
    the 405 with its Allow, or the 404 when the Allow it names cannot be
    sent; RouteNotFoundException is Japronto's 404."""
    with Conn(basic.port) as c:
        r = c.request("GET", "/raise-not-found/" + how)
        assert (r.status, r.header("Allow")) == (status, allow)
        assert r.header("X-Injected") is None
        assert c.request("GET", "/").body == b"Hello world!"


@pytest.mark.parametrize("how,body,x_a", [
    ("small", b"y" * 10, "v"), ("big", b"y" * 10, "v"), ("text", b"z" * 7, "v"),
    ("transport", b"x" * 3000, "127.0.0.1"), ("no-headers", b"x" * 3000, "v")])
def test_a_header_whose_str_runs_code_leaves_the_answer_whole(basic, how, body, x_a):
    """str() of a header value runs while the head is written: a body it
    replaces is the one sent (the old one was read after it was freed),
    and the request's transport it asks for sends nothing of the answer
    being written (half a head went, then the rest over it)."""
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/") + build_request("GET", "/str-runs-code/" + how)
               + build_request("GET", "/"))
        assert c.read_response().body == b"Hello world!"
        r = c.read_response()
        assert (r.status, r.body) == (200, body)
        assert (r.header_all("Server"), r.header("X-A")) == (["mine"], x_a)
        assert r.header("Content-Type") is not None
        assert r.header("X-Z") == "z"
        assert c.read_response().body == b"Hello world!"


def test_a_header_whose_str_ends_a_view_of_the_same_connection(basic):
    """str() of a header value closes the task of the view pipelined behind
    (its 503 is ready at once): the answers still leave whole and in order.
    The server drained the connection again inside the head being written:
    the 503 went out in the middle of the 200's head, then the rest of it
    (and a memmove of a negative size, with its own Server header)."""
    tag = "t%d" % os.getpid()
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/closes-parked/" + tag)
               + build_request("GET", "/parked/" + tag) + build_request("GET", "/"))
        r = c.read_response()
        assert (r.status, r.body, r.header_all("Server"), r.header("X-A")) == \
            (200, b"A", ["mine"], "v"), r
        r = c.read_response()
        assert (r.status, r.body) == (503, b"Service Unavailable"), r
        assert c.read_response().body == b"Hello world!"


def test_the_log_of_an_answer_that_cannot_be_written_ends_a_view_behind_it(reentry):
    """sys.stderr's write of the failed answer's log line ends the view
    pipelined behind: the 500, the 503 and the next answer leave in order
    (the 503 and the 200 went first, then the 500: every answer read as
    another request's)."""
    with Conn(reentry.port) as c:
        c.send(build_request("GET", "/bad-header") + build_request("GET", "/parked/err")
               + build_request("GET", "/"))
        assert [c.read_response().status for _ in range(3)] == [500, 503, 200]


def test_a_cut_body_whose_done_callback_ends_a_view_behind_it_is_the_last(reentry):
    """A stream 7 bytes short of its Content-Length, whose request's
    done-callback ends the view behind: nothing follows the cut body (the
    503 went after it, and the client read its first bytes as the end of
    the body)."""
    with Conn(reentry.port) as c:
        c.send(build_request("GET", "/cut-stream") + build_request("GET", "/parked/cut"))
        data = read_to_eof(c)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 10" in head, data
    assert body == b"abc", data


def test_nothing_follows_an_answer_that_closes_whose_done_callback_ends_a_view(reentry):
    with Conn(reentry.port) as c:
        c.send(build_request("GET", "/closer") + build_request("GET", "/parked/closer")
               + build_request("GET", "/"))
        r = c.read_response()
        assert (r.status, r.body, r.header("Connection")) == (200, b"closing", "close")
        assert c.at_eof(), c.sock.recv(65536)


@pytest.mark.parametrize("path", ["/send-piled", "/header-sends-piled"])
def test_a_send_that_cuts_a_websocket_keeps_the_answers_of_the_connection_sending(
        reentry, path):
    """A view, or a header value's str(), sends on a WebSocket whose client
    reads nothing and has 16 MiB waiting: the WebSocket is cut, and the
    answers of the connection that sent stay its own (they were flushed to
    the WebSocket's socket as it was cut: lost, or half a head)."""
    mark = len(reentry.lines)
    ws = WSClient(reentry.port, "/piled", timeout=20,
                  sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    with ws:
        ws.connect()
        assert reentry.wait_for_stderr("piled", timeout=20, start=mark)
        with Conn(reentry.port) as c:
            c.send(build_request("GET", "/") + build_request("GET", path)
                   + build_request("GET", "/"))
            assert c.read_response().body == b"Hello"
            r = c.read_response()
            if path == "/send-piled":
                assert r.body == b"raised WebSocketClosed", r
            else:
                assert (r.body, r.header("X-A"), r.header("X-B")) == (b"H", "v", "after"), r
            assert c.read_response().body == b"Hello"


@pytest.mark.parametrize("how", ["204", "304"])
def test_a_header_whose_str_changes_the_code_is_a_500(basic, how):
    """The status line is out when a header value's str() runs: a code set
    then would not match it (a 204 sent with a body read as the next
    answer): the answer is a 500, whole."""
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/str-runs-code/" + how) + build_request("GET", "/"))
        r = c.read_response()
        assert (r.status, int(r.header("Content-Length"))) == (500, len(r.body))
        assert c.read_response().body == b"Hello world!"
    assert basic.wait_for_stderr("changed while its head was written")


@pytest.mark.parametrize("how", ["close", "throw", "close-later", "throw-later", "send-later"])
def test_a_view_closing_its_own_task_gets_an_error_and_goes_on(basic, how):
    """(the server answered 503 into a queue it had not made yet, or, past
    the first step, freed the coroutine running: a crash)"""
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/close-own-task/" + how) + build_request("GET", "/"))
        r = c.read_response()
        assert r.status == 200 and r.body.startswith(b"raised "), r
        assert c.read_response().body == b"Hello world!"


def test_debug_500_has_traceback(debug_app):
    with Conn(debug_app.port) as c:
        r = c.request("GET", "/boom")
        assert r.status == 500
        assert b"Traceback" in r.body
        assert b"debug-marker-7f3a" in r.body
        assert c.request("GET", "/ok").body == b"ok"


def test_debug_log_names_the_status_sent(debug_app):
    """The debug log line gives the status that went out: a response the
    server cannot send (here a header with a LF) is logged as its 500."""
    with Conn(debug_app.port) as c:
        assert c.request("GET", "/bad-header?n=1").status == 500
        assert c.request("GET", "/ok?n=1").status == 200
    assert debug_app.wait_for_stderr("fulmen: GET /ok?n=1 -> 200")
    assert "fulmen: GET /bad-header?n=1 -> 500" in debug_app.stderr()
    assert "fulmen: GET /bad-header?n=1 -> 200" not in debug_app.stderr()


@pytest.mark.parametrize("path", ["/header-crlf", "/header-lf", "/header-nul",
                                  "/header-name-crlf"])
def test_response_header_injection_is_500(basic, path):
    with Conn(basic.port) as c:
        r = c.request("GET", path)
        assert r.status == 500
        head = r.raw.split(b"\r\n\r\n", 1)[0]
        assert b"Injected" not in head and b"X-Bad" not in head
        assert not r.header_all("Injected")
        # The stream is still in sync.
        assert c.request("GET", "/").body == b"Hello world!"


@pytest.mark.parametrize("path,why", [
    ("/header-crlf", "had a header with an invalid name, or a control character in a value "
                     "('X-Bad')"),
    ("/header-str-raises", "could not be written"),
])
def test_a_response_that_cannot_be_written_is_logged_with_its_request(basic, path, why):
    n0 = len(basic.lines)
    with Conn(basic.port) as c:
        assert c.request("GET", path).status == 500
    # (the lines come one by one: each is waited for)
    assert basic.wait_for_stderr("fulmen: the response to <Request GET %s" % path, start=n0), \
        basic.lines[n0:]
    assert basic.wait_for_stderr(why, start=n0), basic.lines[n0:]
    if path == "/header-str-raises":
        assert basic.wait_for_stderr("ValueError: no str for this header value", start=n0), \
            basic.lines[n0:]


def test_a_view_that_returns_a_generator_is_a_clear_500(basic):
    """A generator has am_send, as coroutines do: it must not be run as an
    async view (asyncio's Task would fail on what it yields)."""
    n0 = len(basic.lines)
    with Conn(basic.port) as c:
        assert c.request("GET", "/returns-generator").status == 500
        assert c.request("GET", "/").body == b"Hello world!"
    assert basic.wait_for_stderr("a view must return a Response, not generator"), \
        basic.lines[n0:]
    assert "bad yield" not in "\n".join(basic.lines[n0:])


# RFC 9110 5.5: a field value is visible characters, obs-text, and spaces
# and tabs between them; every other control character is invalid
@pytest.mark.parametrize("code", [c for c in range(0x20) if c != 0x09] + [0x7F])
def test_response_header_value_with_a_control_character_is_500(basic, code):
    with Conn(basic.port) as c:
        r = c.request("GET", "/header-char/%d" % code)
        assert r.status == 500
        assert not r.header_all("X-Char")
        assert c.request("GET", "/").body == b"Hello world!"


@pytest.mark.parametrize("code,wire", [(0x09, b"a\tb"), (0x20, b"a b"), (0xE9, b"a\xc3\xa9b")])
def test_response_header_value_with_tab_space_or_non_ascii_goes_out(basic, code, wire):
    with Conn(basic.port) as c:
        r = c.request("GET", "/header-char/%d" % code)
        assert r.status == 200
        assert b"\r\nX-Char: " + wire + b"\r\n" in r.raw


def test_response_header_value_goes_out_without_the_whitespace_around_it(basic):
    # RFC 9110 5.5: leading and trailing spaces and tabs are not part of a value
    with Conn(basic.port) as c:
        r = c.request("GET", "/header-padded")
        assert r.status == 200
        assert b"\r\nX-Pad: a b\r\n" in r.raw
        assert b"\r\nX-Blank: \r\n" in r.raw
