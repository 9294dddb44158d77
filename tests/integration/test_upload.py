"""Request-body streaming: `add_route(..., stream=True)` and
`async for chunk in request.stream()`, with backpressure, limits and
pipelining."""
import hashlib
import os

import pytest

from .conftest import skip_if_sanitized
from .rawhttp import Conn, build_request
from .server import rss_kb


@pytest.fixture
def up(server_pool):
    return server_pool.get("upload")



def chunked(data, size):
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"


def test_content_length_body_streams_and_pipeline_follows(up):
    data = os.urandom(3 * 1024 * 1024)
    with Conn(up.port) as c:
        c.send(build_request("POST", "/digest", body=data) + build_request("GET", "/"))
        r = c.read_response().json()
        assert r["n"] == len(data) and r["sha256"] == hashlib.sha256(data).hexdigest()
        assert r["chunks"] > 1          # it really arrived in pieces
        assert c.read_response().body == b"hi"


def test_chunked_body_streams(up):
    data = os.urandom(1024 * 1024 + 7)
    with Conn(up.port) as c:
        c.send(b"POST /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(data, 70000) + build_request("GET", "/"))
        r = c.read_response().json()
        assert r["n"] == len(data) and r["sha256"] == hashlib.sha256(data).hexdigest()
        assert c.read_response().body == b"hi"


@skip_if_sanitized
def test_large_upload_uses_constant_memory(up):
    """200 MB through a view that reads slowly: reading pauses while the
    view is behind, so the server never holds the body."""
    block = os.urandom(1 << 20)
    total = 200 * len(block)
    before = rss_kb(up.pid)
    with Conn(up.port) as c:
        c.send(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        h = hashlib.sha256()
        for _ in range(200):
            c.sock.sendall(block)
            h.update(block)
        r = c.read_response().json()
    assert r["n"] == total and r["sha256"] == h.hexdigest()
    assert rss_kb(up.pid) - before < 30 * 1024


@pytest.mark.parametrize("size", [5, 3 * 1024 * 1024])
@pytest.mark.parametrize("framing", ["length", "chunked", "http/1.0"])
def test_body_of_the_last_request_on_a_connection_streams(up, framing, size):
    """A request that ends its connection (Connection: close, or HTTP/1.0
    without keep-alive, as nginx proxies by default) still has its body read
    and fed to the view's stream; nothing after that body is read."""
    data = os.urandom(size)
    if framing == "chunked":
        req = (b"POST /digest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunked(data, 70000))
    else:
        req = build_request("POST", "/digest", body=data,
                            version="1.0" if framing == "http/1.0" else "1.1",
                            headers={} if framing == "http/1.0" else {"Connection": "close"})
    with Conn(up.port) as c:
        c.send(req + build_request("GET", "/"))
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["n"] == size
        assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
        assert c.at_eof()


def test_body_of_the_last_request_arriving_later_streams(up):
    """The same when the body comes in reads after the head's."""
    with Conn(up.port) as c:
        c.send(b"POST /digest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Length: 6\r\n\r\nabc")
        c.send(b"def")
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["n"] == 6
        assert c.at_eof()


def test_chunked_body_over_the_route_limit_is_413(up):
    with Conn(up.port) as c:
        c.send(b"POST /limited HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(b"x" * 5000, 1000))
        assert c.read_response().status == 413
        assert c.at_eof()


def test_content_length_over_the_route_limit_is_413_before_the_body(up):
    with Conn(up.port) as c:
        c.send(b"POST /limited HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        r = c.read_response()
        assert r.status == 413 and r.header("Connection") == "close"


def test_answer_before_the_body_ends_closes_the_connection(up):
    with Conn(up.port) as c:
        # half the body, then a request that must never be taken as one
        c.send(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
               + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.body == b"early" and r.header("Connection") == "close"
        assert c.at_eof()


@pytest.mark.parametrize("body,status", [
    (b"Content-Length: 100\r\n\r\nabc", 400),
    (b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 400),
    (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),                  # a bad chunk
    (b"Transfer-Encoding: chunked\r\n\r\n100000000000000009\r\n", 413),  # past any limit
])
def test_client_half_close_mid_body_ends_the_stream(up, body, status):
    """The client shuts its side down before the body is complete (or
    right after a bad or oversized chunk): the body can never arrive, so
    the view's stream fails at once (the view lets it through: 400, RFC
    9112 8; 413 for the chunk) instead of waiting for body_timeout (408);
    the answer says the connection closes after it."""
    import socket
    with Conn(up.port) as c:
        c.send(b"POST /digest HTTP/1.1\r\nHost: x\r\n" + body)
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response()
        assert r.status == status, r
        assert r.header("Connection") == "close", r
        assert c.at_eof()


def test_client_reset_mid_body_is_not_logged(up):
    """The client resets its connection mid-body: the view's stream raises
    ClientDisconnected, which the view lets through; nobody is left to
    answer, and that is no error to log."""
    import socket
    import struct
    n0 = len(up.lines)
    with Conn(up.port) as c:
        c.send(b"POST /noted HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
               + b"x" * 1000)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # the done callback runs after the view's exception was dealt with
    assert up.wait_for_stderr("noted done"), up.stderr()
    after = "\n".join(up.lines[n0:])
    assert "error in view" not in after, after


def test_body_after_a_cancelled_read_is_not_lost(up):
    n0 = len(up.lines)
    with Conn(up.port) as c:
        c.send(b"POST /cancelled-read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        assert up.wait_for_stderr("read given up"), up.stderr()
        c.send(b"hello")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello"), (r, up.lines[n0:])


def test_stream_on_an_ordinary_route_gives_the_whole_body(up):
    with Conn(up.port) as c:
        assert c.request("POST", "/whole", body=b"abc").json() == {"parts": 1, "body": "abc"}
        assert c.request("POST", "/whole", body=b"").json() == {"parts": 0, "body": ""}


def test_stream_called_again_after_reading(up):
    """An ordinary route keeps its body: each stream() gives all of it.  A
    stream=True route does not: a second stream() once the first was read
    from raises, rather than giving nothing as if the body were empty."""
    with Conn(up.port) as c:
        assert c.request("POST", "/twice", body=b"abc").json() == {"first": "abc",
                                                                  "second": "abc"}
        r = c.request("POST", "/twice-streamed", body=b"abc").json()
        assert r["first"] == "abc" and r["second"].startswith("RuntimeError"), r


def test_stream_route_needs_an_async_view():
    from fulmen import Application
    app = Application()
    with pytest.raises(TypeError):
        app.router.add_route("/x", lambda r: None, stream=True)
