"""Every limit and timeout of the engine, over real sockets, against the
`limits` app (apps/limits.py): max_header_size=2048, max_headers=20,
max_body_size=1000 (a route raises it to 5000, one lowers it to 10),
header_timeout=0.5, body_timeout=0.5, keep_alive_timeout=0.7,
max_connections=3.

Waiting for the server is always waiting for an event (a response, or the
server closing the connection) with a socket timeout as the upper bound.
Timing assertions are generous upper bounds on what the settings define, plus
lower bounds where closing early would be the bug (a timeout may not fire
before its time)."""
import math
import os
import select
import socket
import time
import uuid

import pytest

from .conftest import _app_fixture
from .rawhttp import Conn, ProtocolError, build_request
from .conftest import skip_if_sanitized
from .server import rss_kb

limits = pytest.fixture(_app_fixture("limits"), name="limits")

MAX_HEAD = 2048
MAX_HEADERS = 20
MAX_BODY = 1000
ROUTE_BODY = 5000
HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
KEEP_ALIVE = 0.7
# The most a timeout may take to fire: its value plus sweep granularity and a
# loaded CI machine.  Generous on purpose.
LATE = 5.0


# ---- helpers -------------------------------------------------------------

def proc_field(pid, fname, key):
    with open("/proc/%d/%s" % (pid, fname)) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def rchar(pid):
    """Bytes the process has read with read(2) (libuv reads TCP with read)."""
    return proc_field(pid, "io", "rchar")


def hits(port, name):
    """How often /hit/<name> ran, asked on a fresh connection."""
    with Conn(port) as c:
        r = c.request("GET", "/count/" + name, headers={"Connection": "close"})
        assert r.status == 200
        return int(r.body)


def smuggle():
    """A request that must never run, and its name for hits()."""
    name = "s" + uuid.uuid4().hex[:12]
    return name, build_request("GET", "/hit/" + name)


def closes_within(conn, seconds):
    """Wait for the server to close `conn`; return the time it took.  Fails
    if bytes arrive instead or if it stays open for `seconds`."""
    t0 = time.monotonic()
    conn.sock.settimeout(seconds)
    try:
        assert conn.at_eof(), "server sent %r instead of closing" % bytes(conn.buf[:200])
    except TimeoutError:
        pytest.fail("server did not close the connection within %.1f s" % seconds)
    elapsed = time.monotonic() - t0
    assert elapsed < seconds, "server kept the connection open for %.1f s" % elapsed
    return elapsed


def quiet_for(conn, seconds):
    """True if the server neither sends nor closes for `seconds`."""
    conn.sock.settimeout(seconds)
    try:
        conn.sock.recv(1, socket.MSG_PEEK)    # data, or b"" for a close
    except TimeoutError:
        return True
    except ConnectionResetError:
        pass
    finally:
        conn.sock.settimeout(LATE)
    return False


def head_of_size(total, path="/"):
    base = b"GET %s HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n" % path.encode()
    head = base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (total - len(base)))
    assert len(head) == total
    return head


def assert_error_and_close(conn, status):
    r = conn.read_response()
    assert r.status == status, r
    assert r.version == "1.1"
    assert r.header("Connection").lower() == "close"
    assert int(r.header("Content-Length")) == len(r.body)
    assert conn.at_eof(), "bytes after the %d: %r" % (status, bytes(conn.buf[:200]))
    return r


# ---- max_header_size / max_headers ----------------------------------------

def test_head_at_the_limit_is_accepted_one_over_is_431(limits):
    with Conn(limits.port) as c:
        r = c.request("GET", "/", headers={"X-Pad": "p" * 1900})
        assert r.status == 200
        c.send(head_of_size(MAX_HEAD))
        assert c.read_response().status == 200
    name, smug = smuggle()
    with Conn(limits.port) as c:
        c.send(head_of_size(MAX_HEAD + 1) + smug)
        assert_error_and_close(c, 431)
    assert hits(limits.port, name) == 0


def test_request_line_over_the_limit_is_414(limits):
    name, smug = smuggle()
    line = b"GET /?" + b"q" * (MAX_HEAD - 16) + b" HTTP/1.1\r\n"
    assert len(line) == MAX_HEAD + 1
    with Conn(limits.port) as c:
        c.send(line + b"Host: x\r\n\r\n" + smug)
        assert_error_and_close(c, 414)
    # The request line alone, never finished: 414 from what has arrived.
    with Conn(limits.port) as c:
        c.send(b"GET /?" + b"q" * (MAX_HEAD + 100))
        assert_error_and_close(c, 414)
    assert hits(limits.port, name) == 0


def test_method_over_the_limit_is_501(limits):
    """A method longer than any the server knows: 501 (RFC 9112 3)."""
    name, smug = smuggle()
    with Conn(limits.port) as c:
        c.send(b"G" * (MAX_HEAD + 1) + b" / HTTP/1.1\r\nHost: x\r\n\r\n" + smug)
        assert_error_and_close(c, 501)
    assert hits(limits.port, name) == 0


def test_request_line_under_the_limit_but_head_over_is_431(limits):
    line = b"GET /?" + b"q" * (MAX_HEAD - 17) + b" HTTP/1.1\r\n"
    assert len(line) == MAX_HEAD
    with Conn(limits.port) as c:
        c.send(line + b"Host: x\r\n\r\n")
        assert_error_and_close(c, 431)


def test_max_headers(limits):
    with Conn(limits.port) as c:
        r = c.request("GET", "/", headers=[("X-%d" % i, "1") for i in range(MAX_HEADERS - 1)])
        assert r.status == 200
    name, smug = smuggle()
    with Conn(limits.port) as c:
        c.send(build_request("GET", "/", headers=[("X-%d" % i, "1") for i in range(MAX_HEADERS)])
               + smug)
        assert_error_and_close(c, 431)
    # Many empty-valued headers, still incomplete: counted as they arrive.
    with Conn(limits.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"A:\r\n" * (MAX_HEADERS + 5))
        assert_error_and_close(c, 431)
    assert hits(limits.port, name) == 0


def test_header_limits_hold_for_the_second_request_on_a_connection(limits):
    with Conn(limits.port) as c:
        assert c.request("GET", "/").status == 200
        c.send(head_of_size(MAX_HEAD + 1))
        assert_error_and_close(c, 431)


FLOODS = {
    # name: (prefix, filler repeated to 64 MB)
    "one-header-value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Flood: ", b"a"),
    "many-header-lines": (b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-Aaaaaaaa: bbbbbbbbbbbbbbbbbbbbbbbbb\r\n"),
    "request-line": (b"GET /", b"a"),
    "header-name": (b"GET / HTTP/1.1\r\nHost: x\r\nX", b"a"),
}
FLOOD_BYTES = 64 * 1024 * 1024


@skip_if_sanitized
@pytest.mark.parametrize("kind", ["text", "json"])
def test_one_large_answer_does_not_keep_its_memory(limits, kind):
    """The output buffer, and the JSON buffer of the Response object kept
    for reuse, that one 64 MiB answer grew are given back once it is out:
    the worker's memory does not stay at its largest answer."""
    n = 64 << 20
    with Conn(limits.port) as c:
        assert c.request("GET", "/big-%s/16" % kind).status == 200
        before = rss_kb(limits.pid)
        r = c.request("GET", "/big-%s/%d" % (kind, n))
        assert r.status == 200 and len(r.body) >= n
        assert c.request("GET", "/").body == b"ok"
        grown_mb = (rss_kb(limits.pid) - before) / 1024
    assert grown_mb < 16, "RSS %.0f MB above what it was before the answer" % grown_mb


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_64mb_header_flood(limits, kind):
    """Send up to 64 MB of head as fast as the server reads it.  The server
    must answer 431/414 and close after reading about the limit (read(2)
    granularity allowed), and its memory must not grow."""
    prefix, filler = FLOODS[kind]
    pid = limits.pid
    piece = filler * (65536 // len(filler))
    rss0, read0 = rss_kb(pid), rchar(pid)
    sent = 0
    with Conn(limits.port, timeout=LATE) as c:
        try:
            c.send(prefix)
            sent = len(prefix)
            while sent < FLOOD_BYTES:
                sent += c.sock.send(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except TimeoutError:
            pytest.fail("the server stopped reading the flood after %d bytes but "
                        "neither answered nor closed" % sent)
        read = rchar(pid) - read0
        rss = rss_kb(pid)
        assert sent < FLOOD_BYTES, "the server read all 64 MB of head"
        r = c.read_response()
        assert r.status == (414 if kind == "request-line" else 431)
        assert r.header("Connection").lower() == "close"
        assert c.at_eof()
    # The server read the limit plus at most a few read buffers, not 64 MB.
    assert read <= MAX_HEAD + 512 * 1024, "server read %d bytes of a flooded head" % read
    assert rss - rss0 < 4 * 1024, "RSS grew by %d kB during a head flood" % (rss - rss0)


def test_head_flood_in_one_big_write_is_431(limits):
    """The head starts, the server reads that much, then the rest of the
    flood comes in one write, so one read brings far more than the limit:
    still 431 (the bound on buffered bytes must not turn it into 413)."""
    pid = limits.pid
    prefix = b"GET / HTTP/1.1\r\nHost: x\r\nX-Flood: "
    with Conn(limits.port) as c:
        read0 = rchar(pid)
        c.send(prefix)
        deadline = time.monotonic() + LATE
        while rchar(pid) - read0 < len(prefix):     # the server has read it
            assert time.monotonic() < deadline, "the server did not read the head"
            time.sleep(0.001)
        try:
            c.send(b"f" * 1_000_000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_error_and_close(c, 431)


def test_head_flood_on_three_connections_at_once(limits):
    pid = limits.pid
    rss0 = rss_kb(pid)
    conns = [Conn(limits.port) for _ in range(3)]
    try:
        for c in conns:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Flood: ")
        piece = b"f" * 65536
        open_ = list(conns)
        for _ in range(64):          # up to 4 MB each, round robin
            for c in list(open_):
                try:
                    c.sock.send(piece)
                except (BrokenPipeError, ConnectionResetError):
                    open_.remove(c)
            if not open_:
                break
        assert not open_, "a flooded connection was still reading after 4 MB"
        for c in conns:
            assert_error_and_close(c, 431)
    finally:
        for c in conns:
            c.close()
    assert rss_kb(pid) - rss0 < 4 * 1024


def test_head_flood_that_waited_in_the_backlog_gets_431(limits):
    """The flood is already in the kernel when the connection is accepted
    (max_connections reached), so the first read brings ~100 KB at once:
    still a 431, not another status."""
    busy = [Conn(limits.port) for _ in range(3)]
    try:
        for c in busy:
            assert c.request("GET", "/").status == 200
            c.send(build_request("GET", "/sleep/500", headers={"Connection": "close"}))
        with Conn(limits.port) as c:
            c.sock.setblocking(False)
            data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Flood: " + b"f" * 100000
            sent = 0
            try:
                while sent < len(data):
                    sent += c.sock.send(data[sent:])
            except BlockingIOError:
                pass
            c.sock.settimeout(LATE)
            assert sent > 70000
            assert_error_and_close(c, 431)
        for c in busy:
            assert c.read_response().body == b"slept"
    finally:
        for c in busy:
            c.close()


def test_deep_pipeline_in_one_write_is_answered_in_full(limits):
    """20000 GETs (~540 KB) in one write: bounded buffering must pause
    reading, not cut the pipeline (the body limit is 1000 here)."""
    n = 20000
    with Conn(limits.port, timeout=LATE) as c:
        c.send(build_request("GET", "/") * n)
        for i in range(n):
            try:
                r = c.read_response()
            except (EOFError, ProtocolError) as e:
                pytest.fail("pipeline cut after %d of %d responses: %s" % (i, n, e))
            assert r.status == 200, "response %d: %r" % (i, r)


# ---- max_body_size ----------------------------------------------------------

def test_body_at_the_limit_is_accepted(limits):
    with Conn(limits.port) as c:
        r = c.request("POST", "/len", body=b"\x01" * MAX_BODY)
        assert r.json() == {"len": MAX_BODY, "sum": MAX_BODY}
        r = c.request("POST", "/alen", body=b"\x01" * MAX_BODY)
        assert r.json() == {"len": MAX_BODY, "sum": MAX_BODY}


@pytest.mark.parametrize("path,limit", [("/len", MAX_BODY), ("/alen", MAX_BODY),
                                        ("/len5000", ROUTE_BODY), ("/len10", 10),
                                        ("/no-such-route", MAX_BODY)])
def test_content_length_over_the_limit_is_413_before_the_body(limits, path, limit):
    name, smug = smuggle()
    with Conn(limits.port) as c:
        # Only the head: the 413 must come without any of the body.
        c.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % (path.encode(), limit + 1))
        r = c.read_response()
        assert r.status == 413, r
        assert r.header("Connection").lower() == "close"
        # A body sent anyway (holding a request) is never read as requests.
        try:
            c.send(smug * 3)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.at_eof()
    assert hits(limits.port, name) == 0


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_held_in_memory_stops_below_4_gib(limits, framing):
    # /len-huge allows 1 TiB, but a body read into memory (not stream=True)
    # is capped at 2 GiB: its offsets are 32-bit.  Over that, 413 at once,
    # not a wait for gigabytes whose length would wrap.
    big = (1 << 32) + 100
    with Conn(limits.port) as c:
        if framing == "length":
            c.send(b"POST /len-huge HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big)
        else:
            c.send(b"POST /len-huge HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"%x\r\nabc" % big)
        assert_error_and_close(c, 413)
    with Conn(limits.port) as c:
        assert c.request("POST", "/len-huge", body=b"y" * 1000).json()["len"] == 1000


def test_route_limit_raises_and_lowers_the_app_limit(limits):
    with Conn(limits.port) as c:
        body = bytes(range(250)) * 20
        assert c.request("POST", "/len5000", body=body).json() == {
            "len": 5000, "sum": sum(body) % 65521}
        assert c.request("POST", "/len10", body=b"x" * 10).json()["len"] == 10
        # The raised limit is the route's, not the connection's.
        c.send(build_request("POST", "/len", body=b"x" * (MAX_BODY + 1)))
        assert_error_and_close(c, 413)
    with Conn(limits.port) as c:
        c.send(build_request("POST", "/len5000", headers={"Transfer-Encoding": "chunked"})
               + b"".join(b"3e8\r\n" + b"c" * 1000 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n")
        assert c.read_response().json()["len"] == 5000


def test_expect_100_over_the_limit_gets_413_and_no_100(limits):
    name, smug = smuggle()
    for path, limit in (("/len", MAX_BODY), ("/len5000", ROUTE_BODY)):
        with Conn(limits.port) as c:
            c.send(b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                   b"Content-Length: %d\r\n\r\n" % (path.encode(), limit + 1))
            r = c.read_response()
            assert r.status == 413, "got %d, not 413, before any body" % r.status
            assert r.header("Connection").lower() == "close"
            try:
                c.send(smug)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert c.at_eof()
    assert hits(limits.port, name) == 0


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("method,path,status", [("POST", b"/nowhere", 404),
                                                ("PUT", b"/stream-len", 405)])
def test_expect_100_without_a_route_is_answered_at_once(limits, method, path, status, framing):
    """The 404 or 405 is known before the body: it comes at once, with no
    100 Continue first (RFC 9110 10.1.1: the client need not upload the
    body), and ends the connection.  What the client sends anyway, a body
    and a request behind it, is dropped."""
    name, smug = smuggle()
    frame, body = ((b"Content-Length: 5", b"abcde") if framing == "length"
                   else (b"Transfer-Encoding: chunked", b"5\r\nabcde\r\n0\r\n\r\n"))
    with Conn(limits.port) as c:
        c.send(b"%s %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n%s\r\n\r\n"
               % (method.encode(), path, frame))
        r = c.read_response()
        assert r.status == status, "got %d before the final answer" % r.status
        assert r.header("Connection").lower() == "close"
        assert (r.header("Allow") is not None) == (status == 405)
        try:
            c.send(body + smug)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.at_eof()
    assert hits(limits.port, name) == 0


@pytest.mark.parametrize("what", ["body", "text", "json", "form", "files"])
def test_a_streamed_routes_body_accessors_say_so(limits, what):
    """On a stream=True route the body comes through stream() only:
    request.body and the rest raise RuntimeError (they gave an empty body,
    or a 400 blamed on the client), before and after stream()."""
    body = b'{"a": 1}' if what == "json" else b"a=1&b=2"
    ctype = "application/json" if what == "json" else "application/x-www-form-urlencoded"
    with Conn(limits.port) as c:
        r = c.request("POST", "/stream-then/" + what, body=body,
                      headers={"Content-Type": ctype})
    got = r.json()
    assert got["len"] == len(body)
    for when in ("before", "after"):
        assert got[when].startswith("RuntimeError: request.%s: this route reads its body "
                                    "as it comes (stream=True)" % what), got


def test_expect_100_under_a_raised_route_limit_gets_100(limits):
    with Conn(limits.port) as c:
        c.send(b"POST /len5000 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: 3000\r\n\r\n")
        assert c.read_response().status == 100
        c.send(b"e" * 3000)
        assert c.read_final().json()["len"] == 3000


def test_chunked_body_passing_the_limit_mid_stream_is_413(limits):
    """The 413 comes as soon as the running total passes the limit: the
    terminating chunk is never sent and the connection stays open."""
    name, smug = smuggle()
    with Conn(limits.port) as c:
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(MAX_BODY // 100):
            c.send(b"64\r\n" + b"d" * 100 + b"\r\n")
        assert quiet_for(c, 0.2), "answered before the body passed the limit"
        c.send(b"1\r\nX\r\n" + smug)
        assert_error_and_close(c, 413)
    # Exactly the limit in the same pieces is fine.
    with Conn(limits.port) as c:
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"64\r\n" + b"d" * 100 + b"\r\n" + b"".join(
                   b"64\r\n" + b"d" * 100 + b"\r\n" for _ in range(MAX_BODY // 100 - 1))
               + b"0\r\n\r\n")
        assert c.read_response().json()["len"] == MAX_BODY
    # On the route that lowers the limit.
    with Conn(limits.port) as c:
        c.send(b"POST /len10 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\naaaaa\r\n6\r\n")
        assert_error_and_close(c, 413)
    assert hits(limits.port, name) == 0


@pytest.mark.parametrize("framing", [
    b"Content-Length: 4611686018427387905\r\n\r\n",             # past 2^62
    b"Content-Length: 18446744073709551616\r\n\r\n",            # past 2^64
    b"Transfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",   # 16 hex digits
    b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\n",
])
def test_a_valid_length_past_any_limit_is_413(limits, framing):
    """A length too large for any body is still a valid one (RFC 9110 8.6,
    RFC 9112 7.1): 413, not 400."""
    name, smug = smuggle()
    with Conn(limits.port) as c:
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\n" + framing + smug)
        assert_error_and_close(c, 413)
    assert hits(limits.port, name) == 0


def test_chunk_announcing_more_than_a_route_limit_is_413_before_its_data(limits):
    with Conn(limits.port) as c:
        c.send(b"POST /len5000 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"1389\r\n")                         # 5001
        assert_error_and_close(c, 413)


def test_chunk_framing_overhead_counts(limits):
    # 1-byte chunks with huge extensions: the wire bytes are what must stay
    # bounded, whatever the decoded size.
    with Conn(limits.port) as c:
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(2000):
                c.send(b"1;e=" + b"x" * 500 + b"\r\na\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert r.status in (400, 413), r
        assert c.at_eof()


@pytest.mark.parametrize("piece", [None, 4000, 65536])
@pytest.mark.parametrize("n,status", [(900, 200), (1100, 413)])
def test_chunk_framing_bound_does_not_depend_on_the_reads(limits, n, status, piece):
    """The bound on a chunked body's bytes on the wire (twice the route's
    limit, 5000, plus 512 KiB) gives the same answer however the bytes come:
    whole, the request was served past it; in pieces, refused."""
    chunk = b"1;e=" + b"x" * 480 + b"\r\na\r\n"      # 491 bytes for 1 of body
    data = (b"POST /len5000 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * n + b"0\r\n\r\n" + build_request("GET", "/"))
    with Conn(limits.port) as c:
        try:
            for at in range(0, len(data), piece or len(data)):
                c.send(data[at:at + (piece or len(data))])
        except (BrokenPipeError, ConnectionResetError):
            pass
        if status == 413:
            assert_error_and_close(c, 413)
        else:
            assert c.read_response().json()["len"] == n
            assert c.read_response().body == b"ok"


# ---- header_timeout (slowloris) ---------------------------------------------

def test_slowloris_gets_408_and_close_while_others_are_served(limits):
    """One byte every 100 ms: the trickle does not reset header_timeout."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 200 + b"\r\n\r\n"
    with Conn(limits.port) as slow:
        t0 = time.monotonic()
        sent = 0
        served_meanwhile = 0
        slow.sock.settimeout(0.1)
        while True:
            try:
                slow.sock.send(head[sent:sent + 1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                slow.sock.recv(1, socket.MSG_PEEK)
                break               # the server answered (or closed)
            except TimeoutError:
                pass                # 100 ms of silence: next byte
            if sent == 2:
                with Conn(limits.port) as other:
                    assert other.request("GET", "/").status == 200
                    served_meanwhile += 1
            assert time.monotonic() - t0 < LATE, "no 408 after %.1f s of trickling" % LATE
            assert sent < len(head), "the whole trickled head arrived before the timeout"
        elapsed = time.monotonic() - t0
        slow.sock.settimeout(LATE)
        r = assert_error_and_close(slow, 408)
        assert r.header("Server") == "fulmen"
    assert served_meanwhile == 1
    assert elapsed >= HEADER_TIMEOUT * 0.8, "408 after %.2f s, before header_timeout" % elapsed
    assert sent >= 3


def test_stalled_head_gets_408(limits):
    for partial in (b"G", b"GET / HTTP/1.1\r\nHost: x\r\n"):
        with Conn(limits.port) as c:
            c.send(partial)
            t0 = time.monotonic()
            r = c.read_response()
            assert r.status == 408
            assert time.monotonic() - t0 < LATE
            assert c.at_eof()


def test_slow_head_after_an_answered_request_is_closed_without_408(limits):
    with Conn(limits.port) as c:
        assert c.request("GET", "/").status == 200
        c.send(b"GET / HT")
        elapsed = closes_within(c, LATE)
        assert elapsed >= HEADER_TIMEOUT * 0.8


def test_idle_connection_never_sent_anything_is_closed(limits):
    # No byte at all: the keep-alive (or header) timer closes it; a 408 is
    # allowed here but nothing else.
    with Conn(limits.port) as c:
        c.sock.settimeout(LATE)
        t0 = time.monotonic()
        try:
            r = c.read_response()
            assert r.status == 408
            assert c.at_eof()
        except EOFError:
            pass
        assert time.monotonic() - t0 < LATE


def test_slow_view_is_not_cut_by_any_timer(limits):
    # 1.5 s: longer than every timeout of the app, but the app is working.
    with Conn(limits.port) as c:
        r = c.request("GET", "/sleep/1500")
        assert r.body == b"slept"
        assert c.request("GET", "/").status == 200


def test_pipelined_requests_behind_a_slow_view_are_not_cut(limits):
    with Conn(limits.port) as c:
        c.send(build_request("GET", "/sleep/1200") + build_request("GET", "/") * 50
               + build_request("POST", "/len", body=b"b" * 900) * 20)
        assert c.read_response().body == b"slept"
        for _ in range(50):
            assert c.read_response().body == b"ok"
        for _ in range(20):
            assert c.read_response().json()["len"] == 900


@pytest.mark.parametrize("partial", [
    b"G",
    b"GET / HTTP/1.1\r\nHost: x\r\n",
    b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
], ids=["one-byte", "partial-head", "partial-body"])
def test_a_stalled_pipelined_request_does_not_drop_the_one_in_flight(limits, partial):
    """A complete request whose view outlives header_timeout/body_timeout,
    followed by the start of a next one that then stalls.  The stall may
    close the connection, but only after the complete request's response:
    a valid request is never left unanswered."""
    with Conn(limits.port) as c:
        c.send(build_request("GET", "/sleep/1500") + partial)
        try:
            r = c.read_response()
        except EOFError:
            pytest.fail("connection closed without answering the complete request")
        assert r.status == 200 and r.body == b"slept", r
        # Then a 408 or a plain close.
        try:
            r2 = c.read_response()
            assert r2.status == 408 and r2.header("Connection").lower() == "close"
            assert c.at_eof()
        except EOFError:
            pass


# ---- body_timeout -----------------------------------------------------------

@pytest.mark.parametrize("sent", [b"", b"ab"])
def test_stalled_body_gets_408_and_close(limits, sent):
    name, smug = smuggle()
    with Conn(limits.port) as c:
        c.sock.settimeout(LATE)
        t0 = time.monotonic()
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + sent)
        r = c.read_response()
        assert time.monotonic() - t0 >= BODY_TIMEOUT * 0.8
        assert r.status == 408 and r.header("Connection").lower() == "close", r
        closes_within(c, LATE)
        # Too late: the rest of the body and a request behind it go nowhere.
        try:
            c.send(b"x" * (10 - len(sent)) + smug)
        except OSError:
            pass
    assert hits(limits.port, name) == 0


def test_stalled_chunked_body_gets_408_and_close(limits):
    for sent in (b"", b"5\r\nab", b"5\r\nabcde\r\n", b"5\r\nabcde\r\n0\r\n"):
        with Conn(limits.port) as c:
            c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + sent)
            assert c.read_response().status == 408
            closes_within(c, LATE)


def test_stalled_streamed_body_gets_408_and_close(limits):
    """request.stream() raises fulmen.RequestTimeout, which the view lets
    through: 408."""
    with Conn(limits.port) as c:
        c.send(b"POST /stream-len HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        r = c.read_response()
        assert r.status == 408 and r.header("Connection").lower() == "close", r
        closes_within(c, LATE)


def test_a_views_own_timeout_error_is_500_and_logged(limits):
    """Only the request's own timeouts are 408: a TimeoutError of the
    view's (asyncio.wait_for on a backend, say) is the server's failure."""
    n0 = len(limits.lines)
    with Conn(limits.port) as c:
        r = c.request("GET", "/own-timeout")
        assert r.status == 500, r
        assert c.request("GET", "/").body == b"ok"
    assert limits.wait_for_stderr("TimeoutError"), limits.lines[n0:]
    assert "error in view" in "\n".join(limits.lines[n0:])


def test_trickled_body_is_not_cut(limits):
    """body_timeout is about bytes not arriving: a body trickled one byte
    every ~100 ms for longer than body_timeout is received."""
    body = b"0123456789"
    with Conn(limits.port) as c:
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        t0 = time.monotonic()
        for b in body:
            # 100 ms of pacing that also checks the server stays quiet
            assert quiet_for(c, 0.1), "server gave up on a body that is still arriving"
            c.send(bytes([b]))
        assert time.monotonic() - t0 > BODY_TIMEOUT
        assert c.read_response().json() == {"len": 10, "sum": sum(body)}


# ---- errors answered to HEAD ------------------------------------------------

@pytest.mark.parametrize("rest,status", [
    (b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413),
    (b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (MAX_BODY + 1), 413),
    (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"X-Bad\x01: 1\r\n\r\n", 400),
    (b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"Content-Length: 10\r\n\r\nab", 408),
], ids=["413-length", "413-chunked", "400-chunked", "400-head", "501", "408-body"])
def test_error_answered_to_head_has_no_body(limits, rest, status):
    """RFC 9110 9.3.2: a response to HEAD carries no content, the errors the
    server makes itself included (the method is known once the request line
    is read).  A body after the head would be read by the client as the next
    response."""
    with Conn(limits.port) as c:
        c.send(b"HEAD /len HTTP/1.1\r\nHost: x\r\n" + rest)
        r = c.read_response(head=True)
        assert r.status == status, r
        assert r.header("Connection").lower() == "close"
        assert c.at_eof(), "a body after the %d to HEAD: %r" % (status, bytes(c.buf[:200]))


# ---- keep_alive_timeout -----------------------------------------------------

def test_idle_keep_alive_connection_is_closed(limits):
    with Conn(limits.port) as c:
        r = c.request("GET", "/")
        assert r.status == 200 and (r.header("Connection") or "").lower() != "close"
        elapsed = closes_within(c, LATE)
        assert elapsed >= KEEP_ALIVE * 0.7, "idle close after %.2f s" % elapsed


def test_keep_alive_timer_restarts_with_each_request(limits):
    with Conn(limits.port) as c:
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < KEEP_ALIVE * 2.5:
            assert c.request("GET", "/").status == 200
            n += 1
            assert quiet_for(c, KEEP_ALIVE / 2), "closed while in use"
        assert n >= 4


# ---- slow readers -------------------------------------------------------------

@skip_if_sanitized
def test_peer_that_never_reads_is_dropped_without_buffering(limits):
    """200 pipelined 1 MB responses and a client that never reads: the server
    stops reading requests (bounded memory) and gives the connection up
    after body_timeout without progress.  Seen from outside: the connection
    slot frees up (max_connections=3) long before the busy ones end."""
    pid = limits.pid
    rss0 = rss_kb(pid)
    busy = [Conn(limits.port) for _ in range(2)]
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(LATE)
    try:
        for c in busy:
            assert c.request("GET", "/").status == 200
            c.send(build_request("GET", "/sleep/4000"))
        stuck.connect(("127.0.0.1", limits.port))
        stuck.sendall(build_request("GET", "/big/1000000") * 200)
        with Conn(limits.port) as fourth:
            t0 = time.monotonic()
            r = fourth.request("GET", "/")
            assert r.status == 200
            assert time.monotonic() - t0 < 3.5, "the stuck connection was not dropped"
        grown = rss_kb(pid) - rss0
        assert grown < 8 * 1024, "RSS grew by %d kB for a client that does not read" % grown
        for c in busy:
            c.sock.settimeout(LATE)
            assert c.read_response().body == b"slept"
        # What reached the stuck client is a small part of 200 MB, then EOF.
        got = 0
        while True:
            try:
                data = stuck.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            got += len(data)
        assert got < 40 * 1024 * 1024
    finally:
        stuck.close()
        for c in busy:
            c.close()


@pytest.mark.parametrize("close", [False, True])
def test_slow_reader_of_a_large_answer_is_not_cut(limits, close):
    """body_timeout bounds how long a client may stop reading, not how long
    a large answer takes: a client taking 6 MB at 3 MB/s (2 s, four times
    body_timeout) gets all of it, on a connection that stays open and on
    one that closes after the answer.  It used to be cut after about
    body_timeout."""
    n, rate = 6_000_000, 3_000_000
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(LATE)
    try:
        s.connect(("127.0.0.1", limits.port))
        s.sendall(build_request("GET", "/big/%d" % n,
                                headers={"Connection": "close"} if close else {}))
        t0, got, data = time.monotonic(), 0, bytearray()
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            got = len(data)
            ahead = got / rate - (time.monotonic() - t0)   # the client's pace
            if ahead > 0:
                time.sleep(ahead)
            if data.endswith(b"b" * 16) and got >= n:
                break
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        assert len(body) == n, "cut after %d of %d bytes" % (len(body), n)
    finally:
        s.close()


def test_closed_connection_whose_peer_never_reads_is_aborted(limits):
    """Answers a client never reads, small enough to wait in the transport
    below its high-water mark: when the server closes such a connection
    (here at keep_alive_timeout), it aborts it after body_timeout instead
    of keeping each socket, and its max_connections slot, until the client
    reads."""
    stuck = []
    try:
        for _ in range(3):                  # every slot (max_connections=3)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(LATE)
            s.connect(("127.0.0.1", limits.port))
            s.sendall(build_request("GET", "/big-tight/56000"))
            stuck.append(s)
        with Conn(limits.port) as fourth:   # waits in the backlog meanwhile
            fourth.sock.settimeout(LATE)
            r = fourth.request("GET", "/tight-buffered")
            assert r.status == 200
        waiting = r.json()
        # what the test is about: the answers waited in the transport, below
        # its high-water mark (64 KiB), so no write deadline was set for them.
        # (What reached the clients then depends on how much more the kernel
        # took meanwhile: it may take all of it, so that is not checked.)
        assert len(waiting) == 3 and all(0 < n < 65536 for n in waiting), waiting
    finally:
        for s in stuck:
            s.close()


# ---- max_connections ----------------------------------------------------------

@skip_if_sanitized
def test_max_connections_fourth_client_waits_then_is_served(limits):
    conns = [Conn(limits.port) for _ in range(3)]
    try:
        for c in conns:         # all three accepted and served
            assert c.request("GET", "/").status == 200
        conns[0].send(build_request("GET", "/sleep/800", headers={"Connection": "close"}))
        for c in conns[1:]:
            c.send(build_request("GET", "/sleep/3000"))
        with Conn(limits.port) as fourth:   # connect() succeeds: the backlog
            fourth.send(build_request("GET", "/"))
            assert quiet_for(fourth, 0.4), "a 4th connection was served at max_connections=3"
            # The first closes after its response; then the 4th is served,
            # while the other two are still busy.
            assert conns[0].read_response().body == b"slept"
            assert conns[0].at_eof()
            # as a client does on EOF (else the server waits up to 2 s for
            # it before it closes its side: RFC 9112 9.6)
            conns[0].close()
            fourth.sock.settimeout(LATE)
            assert fourth.read_response().body == b"ok"
            readable, _, _ = select.select([c.sock for c in conns[1:]], [], [], 0)
            assert not readable, "the 4th was served only after the 3 s views ended"
        for c in conns[1:]:
            c.sock.settimeout(LATE)
            assert c.read_response().body == b"slept"
    finally:
        for c in conns:
            c.close()


def test_closed_connections_the_client_keeps_open_are_released(limits):
    """A connection the server closes stays open for a while to read what
    the client still sends (RFC 9112 9.6).  A client that never closes its
    side, and even keeps sending, must not keep it (nor its place under
    max_connections=3) for longer than that."""
    conns = [Conn(limits.port) for _ in range(3)]
    try:
        for c in conns:
            c.send(b"GET / HTTP/1.0\r\n\r\n")
            assert c.read_response().body == b"ok"
            assert c.at_eof()
            c.send(build_request("GET", "/"))   # never answered, never closed
        with Conn(limits.port, timeout=LATE) as fourth:
            fourth.send(build_request("GET", "/"))
            assert fourth.read_response().body == b"ok"
    finally:
        for c in conns:
            c.close()


def test_max_connections_many_waiting_clients_are_all_served(limits):
    clients = [Conn(limits.port) for _ in range(12)]
    try:
        for i, c in enumerate(clients):
            c.send(build_request("GET", "/sleep/50", headers={"Connection": "close"}))
        for c in clients:
            assert c.read_response().body == b"slept"
            assert c.at_eof()
    finally:
        for c in clients:
            c.close()


# ---- settings validation (in-process) -------------------------------------------

BAD_SETTINGS = [
    {"max_header_size": -1}, {"max_header_size": 0}, {"max_header_size": 1.5},
    {"max_header_size": "16384"}, {"max_header_size": True}, {"max_header_size": None},
    {"max_header_size": 1 << 40},
    {"max_headers": -1}, {"max_headers": 0}, {"max_headers": False}, {"max_headers": 2.0},
    {"max_body_size": -1}, {"max_body_size": 1.0}, {"max_body_size": True},
    {"max_body_size": "10"}, {"max_body_size": 2 ** 64 + 5},
    {"header_timeout": 0}, {"header_timeout": -1}, {"header_timeout": True},
    {"header_timeout": "1"}, {"header_timeout": None}, {"header_timeout": math.nan},
    {"header_timeout": math.inf}, {"header_timeout": 1e300},
    {"body_timeout": 0}, {"body_timeout": -0.5}, {"body_timeout": math.nan},
    {"body_timeout": math.inf},
    {"keep_alive_timeout": 0}, {"keep_alive_timeout": -1}, {"keep_alive_timeout": False},
    {"keep_alive_timeout": math.inf},
    {"max_connections": 0}, {"max_connections": -1}, {"max_connections": True},
    {"max_connections": 1.5}, {"max_connections": "3"},
    {"max_form_parts": 0}, {"max_form_parts": -1}, {"max_form_parts": True},
    {"max_form_parts": "1000"},
    {"reaper_settings": {"bogus": 1}}, {"reaper_settings": {"idle_timeout": 0}},
    {"reaper_settings": {"idle_timeout": -1}}, {"reaper_settings": {"check_interval": -1}},
    {"reaper_settings": {"check_interval": 0}}, {"reaper_settings": "x"},
    {"reaper_settings": [("idle_timeout", 1)]},
    {"gc_freeze": 1}, {"gc_freeze": None}, {"gc_freeze": "no"},
    {"gc_threshold": 0}, {"gc_threshold": -1}, {"gc_threshold": True},
    {"gc_threshold": 1.5}, {"gc_threshold": "700"}, {"gc_threshold": 2 ** 31},
    {"response_timeout": 0}, {"response_timeout": -1}, {"response_timeout": True},
    {"response_timeout": "60"}, {"response_timeout": math.inf},
]


@pytest.mark.parametrize("kw", BAD_SETTINGS, ids=lambda kw: "%s=%r" % next(iter(kw.items())))
def test_bad_setting_is_value_error_at_creation(kw):
    from fulmen import Application
    with pytest.raises(ValueError):
        Application(**kw)


def test_a_bad_reaper_idle_timeout_is_named_as_given():
    from fulmen import Application
    with pytest.raises(ValueError, match=r"^reaper_settings\['idle_timeout'\] must be more than 0"):
        Application(reaper_settings={"idle_timeout": -1})


GOOD_SETTINGS = [
    {"max_header_size": 256}, {"max_headers": 1}, {"max_body_size": 0},
    {"header_timeout": 1}, {"body_timeout": 0.01}, {"keep_alive_timeout": 3600},
    {"max_connections": None}, {"max_connections": 1},
    {"reaper_settings": {"idle_timeout": 5, "check_interval": 1}}, {"reaper_settings": {}},
    {"gc_freeze": True}, {"gc_freeze": False},
    {"gc_threshold": None}, {"gc_threshold": 1}, {"gc_threshold": 700},
    {"response_timeout": None}, {"response_timeout": 60}, {"response_timeout": 0.25},
]


@pytest.mark.parametrize("kw", GOOD_SETTINGS, ids=lambda kw: "%s=%r" % next(iter(kw.items())))
def test_good_setting_is_accepted(kw):
    from fulmen import Application
    Application(**kw)


@pytest.mark.parametrize("value", [-1, 1.5, "10", True, 2 ** 64 + 5])
def test_bad_route_body_limit_is_value_error(value):
    from fulmen import Application
    app = Application()
    with pytest.raises(ValueError):
        app.router.add_route("/x", lambda r: None, max_body_size=value)


def test_serving_freezes_what_exists_at_start(basic):
    # gc_freeze=True (the default): the start-up objects were frozen
    with Conn(basic.port) as c:
        got = c.request("GET", "/gc").json()
    assert got["setting"] is True and got["frozen"] > 1000
    # gc_threshold=10_000 (the default): the young generation's threshold
    assert got["threshold"] == 10_000


def test_gc_settings_off_leave_the_collector_alone(debug_app):
    import gc
    with Conn(debug_app.port) as c:
        got = c.request("GET", "/gc").json()
    assert got == {"setting": False, "frozen": 0, "threshold": gc.get_threshold()[0]}
    assert got["threshold"] != 10_000
