"""Streamed responses: Response(stream=...) with sync and async iterables
(apps/api.py)."""
import socket
import struct
import time
from urllib.parse import quote

import pytest

from .rawhttp import Conn, build_request, fields_but_date
from .conftest import basic  # noqa: F401  (a shared fixture)
from .test_api import api, get  # noqa: F401  (the shared fixture)
from .server import rss_kb

POLL_DEADLINE = 5.0
MiB = 1024 * 1024


def counters(srv, key):
    return get(srv, "/s/counters/" + key).json()


def wait_counter(srv, key, name, value):
    """Poll /s/counters/key until counter `name` reaches value."""
    deadline = time.monotonic() + POLL_DEADLINE
    while True:
        c = counters(srv, key)
        if c[name] >= value:
            return c
        if time.monotonic() > deadline:
            pytest.fail("counter %s of %s stayed at %r" % (name, key, c))
        time.sleep(0.01)



def read_chunked_raw(c):
    """Read one chunked response off Conn c by hand: (head, [chunk], trailer
    lines), checking the framing byte by byte."""
    head = c._read_until(b"\r\n\r\n").decode("latin-1") + "\r\n"
    assert "\r\nTransfer-Encoding: chunked\r\n" in head, head
    chunks = []
    while True:
        line = c._read_until(b"\r\n")
        assert line == b"%x" % int(line, 16), line          # bare lower-case hex
        n = int(line, 16)
        if n == 0:
            break
        chunks.append(c._read_exact(n))
        assert c._read_exact(2) == b"\r\n"
    assert c._read_until(b"\r\n") == b""                    # no trailers
    return head, chunks


def test_sync_iterable_is_chunked(api):
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/sync/5"))
        head, chunks = read_chunked_raw(c)
        assert head.startswith("HTTP/1.1 200 OK\r\n")
        assert "\r\nContent-Length:" not in head
        assert "\r\nContent-Type: text/plain\r\n" in head
        # one chunk per item
        assert chunks == [b"chunk %d\n" % i for i in range(5)]
        # keep-alive after the stream
        assert c.request("GET", "/plain").body == b"plain"


def test_async_generator_is_chunked(api):
    with Conn(api.port) as c:
        r = c.request("GET", "/s/async/100")
        assert r.header("Transfer-Encoding") == "chunked"
        assert r.body == b"".join(b"achunk %d\n" % i for i in range(100))
        assert c.request("GET", "/plain").body == b"plain"


def test_empty_stream(api):
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/sync/0"))
        head, chunks = read_chunked_raw(c)
        assert head.startswith("HTTP/1.1 200 OK\r\n")
        assert chunks == []
        assert c.request("GET", "/plain").body == b"plain"


def test_stream_of_str_and_buffers(api):
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/str"))
        head, chunks = read_chunked_raw(c)
        # str is sent as UTF-8; the empty item sends no (terminating) chunk
        assert chunks == ["caf\u00e9 ".encode(), "\U0001F600".encode(), b" bytes", b" ba"]


def test_stream_with_content_length_is_raw(api):
    with Conn(api.port) as c:
        r = c.request("GET", "/s/length")
        assert r.header("Content-Length") == "50"
        assert r.header("Transfer-Encoding") is None
        assert r.body == b"0123456789" * 5
        assert c.request("GET", "/plain").body == b"plain"


@pytest.mark.parametrize("cl", ["50|50", " 50\t", "050"])
def test_stream_content_length_said_twice_or_padded(api, cl):
    with Conn(api.port) as c:
        r = c.request("GET", "/s/length?cl=" + quote(cl))
        assert r.header("Content-Length") == cl.split("|")[0].strip()    # (once)
        assert r.body == b"0123456789" * 5


@pytest.mark.parametrize("cl", ["5x", "", "+50", "-50", "0x32", "5 0", "1e3", "\u0665\u0660",
                                "1" * 19, "50|49"])
def test_stream_content_length_that_is_not_one_number_is_a_500(api, cl):
    """The app's mistake in a stream's length is a 500 with the reason in
    the log, not a body sent chunked instead (nothing went out yet)."""
    n0 = len(api.lines)
    with Conn(api.port) as c:
        r = c.request("GET", "/s/length?cl=" + quote(cl))
        assert r.status == 500
        assert b"0123456789" not in r.body
        assert c.request("GET", "/plain").body == b"plain"
    assert api.wait_for_stderr("could not be written; answered 500 instead", start=n0)
    assert api.wait_for_stderr("Content-Length", start=n0)


def read_to_eof(c, limit=16 * MiB):
    """Every byte the server sends until it closes (or resets) the
    connection; at most limit bytes (an endless stream fails the test)."""
    while c._fill():
        assert len(c.buf) < limit, "still streaming: %r" % bytes(c.buf[:200])
    return bytes(c.buf)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_generator_error_aborts_the_response(api, kind):
    """A generator that raises midway: the chunked body stays unterminated
    (RFC 9112 7.1: without the last chunk the client knows it is cut), and
    no response to a request pipelined behind it may follow the cut."""
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/fail/" + kind) + build_request("GET", "/plain"))
        raw = read_to_eof(c)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head, raw
    assert body.startswith(b"6\r\nfirst \r\n"), raw
    assert b"0\r\n\r\n" not in body, raw
    assert b"HTTP/1.1" not in body, raw                   # nothing after the cut
    assert api.wait_for_stderr("the generator failed")
    # the log names the request
    assert "fulmen: error while streaming the response to <Request GET /s/fail/%s>" % kind \
        in api.stderr()


@pytest.mark.parametrize("exc", ["RuntimeError", "ConnectionRefusedError", "GeneratorExit",
                                 "BaseException"])
@pytest.mark.parametrize("version", ["1.1", "1.0"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_generator_error_before_its_first_item_is_a_500(api, kind, version, exc):
    """Nothing of the answer went out yet: the app's error is a whole 500
    (not a 200 cut at once), and the connection ends after it, with no
    answer to the request pipelined behind (its view may have run).  A
    ConnectionError of the app's (its database is down) is its error too,
    not the client leaving."""
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/fail/%s?first=0&exc=%s" % (kind, exc),
                             version=version) +
               build_request("GET", "/plain", version=version))
        raw = read_to_eof(c)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), raw
    assert b"\r\nConnection: close" in head, raw
    assert b"\r\nContent-Length: %d\r\n" % len(body) in head, raw
    assert b"HTTP/1.1" not in body, raw
    assert api.wait_for_stderr("the generator failed")


def test_a_stream_whose_clean_up_waits_ends_when_the_client_leaves(api):
    # the first item is of the wrong type, and the generator's clean-up
    # waits for good: the client's FIN cancels that wait, and the stream
    # still ends (a 500, nothing having gone out), then the connection
    n0 = len(api.lines)
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/slow-close"))
        assert api.wait_for_stderr("a stream must yield bytes or str", start=n0)
        c.sock.shutdown(socket.SHUT_WR)
        raw = read_to_eof(c)        # a connection left open is a socket.timeout
    assert raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), raw


def test_stream_with_a_content_length_and_no_item_is_a_500(api):
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/bad-length/none"))
        raw = read_to_eof(c)
    assert raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), raw
    assert api.wait_for_stderr("5 bytes short of its Content-Length; answered 500")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_generator_error_resets_an_http10_body_that_ends_with_the_close(api, kind):
    """For HTTP/1.0 the body ends when the connection does: a FIN after the
    cut would make it look whole (to a proxy that talks 1.0 upstream, and
    caches).  The connection is reset instead."""
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/fail/" + kind, version="1.0"))
        data = b""
        with pytest.raises(ConnectionResetError):
            while True:
                got = c.sock.recv(65536)
                assert got, "a clean close after a cut body: %r" % data
                data += got
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in data, data


@pytest.mark.parametrize("exc", ["SystemExit", "KeyboardInterrupt"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_generator_raising_a_base_exception_aborts_only_its_response(api, kind, exc):
    """SystemExit or KeyboardInterrupt out of a generator is the app's
    error like any other (a view raising them gets a 500): the response is
    cut and the error logged, and the worker serves on."""
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/fail/%s?exc=%s" % (kind, exc)))
        raw = read_to_eof(c)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body.startswith(b"6\r\nfirst \r\n"), raw
    assert b"0\r\n\r\n" not in body, raw
    assert api.wait_for_stderr("%s: the generator failed" % exc)
    with Conn(api.port) as c:
        assert c.request("GET", "/plain").body == b"plain"
    assert api.alive()


@pytest.mark.parametrize("kind,sent", [("short", b"abc"), ("long", b"abcd")])
def test_stream_that_breaks_its_content_length_is_aborted(api, kind, sent):
    """short: 3 of the 5 announced bytes, then the connection closes (the
    client sees a short body).  long: an item past the announced length is
    not sent, so 4 of the 5 bytes go out, then the connection closes and
    the extra bytes never reach the client as the start of a next response.
    Either way the pipelined request behind it is never answered."""
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/bad-length/" + kind) + build_request("GET", "/plain"))
        raw = read_to_eof(c)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 5\r\n" in head, raw
    assert body == sent, raw


@pytest.mark.parametrize("code", [204, 304, 205])
def test_stream_with_a_status_without_content(api, code):
    """RFC 9110 15.3.5 / 15.4.5, RFC 9112 6.1: a 204 or 304 has no content,
    so a streamed response with that status gets neither a body nor
    Transfer-Encoding / Content-Length, and its generator is not run; the
    connection goes on.  A 205 has none either but says so with
    Content-Length: 0 (RFC 9110 15.3.6)."""
    key = "code-%d-%d" % (code, time.monotonic_ns())
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/code/%d?key=%s" % (code, key))
               + build_request("GET", "/plain"))
        r = c.read_final()
        assert r.status == code
        assert r.header("X-Stream") == "1"
        assert r.header("Transfer-Encoding") is None
        assert r.header("Content-Length") == ("0" if code == 205 else None)
        assert c.read_final().body == b"plain"            # no body bytes in between
    assert counters(api, key)["progress"] == 0


@pytest.mark.parametrize("n", [0, 40, 49, 51, 60, 100000])
def test_stream_that_breaks_its_content_length_is_cut_and_closed(api, n):
    # A stream that yields more or fewer bytes than its Content-Length must
    # not shift the framing: the client gets at most the 50 bytes announced,
    # then the connection ends (never a response read out of body bytes, nor
    # body bytes read as a response).  A first item over the length alone
    # fails before anything went out: a 500.
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/length-wrong/%d" % n) + build_request("GET", "/plain"))
        head = c._read_until(b"\r\n\r\n")
        if n // 2 > 50:
            assert head.startswith(b"HTTP/1.1 500 "), head
        else:
            assert b"Content-Length: 50" in head
        body = bytearray(c.buf)
        c.buf.clear()
        while c._fill():
            body += c.buf
            c.buf.clear()
        assert len(body) <= 50 and b"HTTP/1.1" not in body, bytes(body[:200])
    assert get(api, "/plain").body == b"plain"


def test_stream_http10_raw_body_then_close(api):
    with Conn(api.port) as c:
        c.send(b"GET /s/sync/3 HTTP/1.0\r\n\r\n")
        r = c.read_final()
        assert r.status == 200
        assert r.header("Transfer-Encoding") is None
        assert r.header("Content-Length") is None
        assert r.header("Connection") == "close"
        assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"     # read until EOF
        assert c.at_eof()


def test_stream_http10_keep_alive_still_closes(api):
    # no length and no chunked coding for 1.0: only the close can end the body
    with Conn(api.port) as c:
        c.send(b"GET /s/async/2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_final()
        assert r.header("Connection") == "close"
        assert r.body == b"achunk 0\nachunk 1\n"
        assert c.at_eof()


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/s/sync/3", b"chunk 0\nchunk 1\nchunk 2\n"),     # a stream at once
    ("GET", "/s/late/2", b"late 0\nlate 1\n"),                # one after an await
    ("HEAD", "/s/sync/3", b""),
])
def test_stream_http10_keep_alive_answers_nothing_pipelined_behind_it(api, method, path, body):
    # Its body ends with the connection: an answer to a request pipelined
    # behind it would read as more of that body (the client chose its
    # bytes), so none is sent (RFC 9112 9.6)
    keep = {"Connection": "keep-alive"}
    with Conn(api.port) as c:
        c.send(build_request(method, path, headers=keep, version="1.0") +
               build_request("POST", "/m/post-put", headers=keep, body=b"HTTP/1.1 200 OK", version="1.0") +
               build_request("GET", "/plain", headers=keep, version="1.0"))
        data = read_to_eof(c)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in head, data
    assert rest == body, data


def test_100_continue_waits_for_the_stream_ahead_of_it(basic):
    # A request with Expect: 100-continue behind a streamed answer, to a
    # route that reads its body as it comes (its view starts at once): its
    # 100 goes out after that body, never inside it (it was written at
    # once, between the stream's head and its chunks)
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/chunks/3") +
               b"POST /body-length HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: 2\r\n\r\n{}")
        r = c.read_response()
        assert r.body == b"item 0\nitem 1\nitem 2\n", r.raw
        assert c.read_final().json() == {"n": 2}


def test_an_answer_before_a_cut_stream_is_not_lost(api):
    # A complete answer larger than the socket buffers, then a stream that
    # fails: the chunked body shows its cut by its missing last chunk, and
    # the close must not be a reset that drops the first answer's unsent
    # bytes with it (only a body that ends with the close needs one).  The
    # client reads as the bytes come: the second request is taken once
    # most of the first answer is in the socket, and waiting for the
    # failure before reading waited for good where the socket buffers are
    # smaller than the answer
    n = 4 * MiB
    with Conn(api.port) as c:
        c.send(build_request("GET", "/resp/bytes/%d" % n) + build_request("GET", "/s/fail/sync"))
        r = c.read_response()
        assert r.status == 200 and len(r.body) == n
        rest = read_to_eof(c)
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:100]     # the cut one
    assert api.wait_for_stderr("the generator failed")


@pytest.mark.parametrize("path,framing", [
    ("/s/sync/3", "chunked"),
    ("/s/async/3", "chunked"),
    ("/s/sync/0", "chunked"),
    ("/s/length", "50"),            # the stream says its length: HEAD says it too
])
def test_stream_head_has_the_fields_of_get(api, path, framing):
    with Conn(api.port) as c:
        g = c.request("GET", path)
        # HEAD pipelined before a GET: not one body byte, not even the
        # terminating 0-chunk, may come before the next status line
        c.send(build_request("HEAD", path) + build_request("GET", "/plain"))
        h = c.read_response(head=True)
        assert h.status == g.status == 200
        assert fields_but_date(h) == fields_but_date(g)
        if framing == "chunked":
            assert h.header("Transfer-Encoding") == "chunked"
            assert h.header("Content-Length") is None
        else:
            assert h.header("Transfer-Encoding") is None
            assert h.header("Content-Length") == framing == str(len(g.body))
        assert c.read_response().body == b"plain"


def test_stream_head_sends_no_body_before_close(api):
    with Conn(api.port) as c:
        c.send(build_request("HEAD", "/s/sync/3", headers={"Connection": "close"}))
        h = c.read_response(head=True)
        assert h.header("Transfer-Encoding") == "chunked"
        assert c.at_eof(), "bytes after a HEAD response: %r" % c.buf[:100]


def test_stream_head_http10_has_the_fields_of_get(api):
    # no length and no chunked coding for 1.0: GET says Connection: close
    # and ends the body by closing; HEAD says the same and sends nothing
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/sync/3", version="1.0"))
        g = c.read_response()
        assert g.body == b"chunk 0\nchunk 1\nchunk 2\n"
    with Conn(api.port) as c:
        c.send(build_request("HEAD", "/s/sync/3", version="1.0"))
        h = c.read_response(head=True)
        assert fields_but_date(h) == fields_but_date(g)
        assert h.header("Connection") == "close"
        assert c.at_eof(), "bytes after a HEAD response: %r" % c.buf[:100]


def test_stream_head_does_not_run_the_generator(api):
    key = "head-%d" % time.monotonic_ns()
    with Conn(api.port) as c:
        c.send(build_request("HEAD", "/s/big/4?key=" + key)
               + build_request("GET", "/s/counters/" + key))
        assert c.read_response(head=True).status == 200
        # answered in order: the HEAD was done when this was
        assert c.read_response().json() == {"closed": 0, "progress": 0}


def test_streams_keep_pipeline_order(api):
    reqs = [("/s/async/50", b"".join(b"achunk %d\n" % i for i in range(50))),
            ("/plain", b"plain"),
            ("/s/sync/20", b"".join(b"chunk %d\n" % i for i in range(20))),
            ("/users/me", b"me"),
            ("/s/length", b"0123456789" * 5),
            ("/plain", b"plain")]
    with Conn(api.port) as c:
        c.send(b"".join(build_request("GET", p) for p, _ in reqs))
        bodies = [c.read_final().body for _ in reqs]
        assert bodies == [b for _, b in reqs]
        assert c.request("GET", "/plain").body == b"plain"


def test_stream_then_close_in_pipeline(api):
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/async/3")
               + build_request("GET", "/s/sync/2", headers={"Connection": "close"})
               + build_request("GET", "/plain"))
        assert c.read_final().body == b"achunk 0\nachunk 1\nachunk 2\n"
        assert c.read_final().body == b"chunk 0\nchunk 1\n"
        assert c.at_eof()


# A disconnect races with the server's writes, so each case is tried a few
# times: a server that misses the disconnect in any of them fails the test.
ATTEMPTS = 8


@pytest.mark.parametrize("route", ["forever", "aforever"])
def test_client_disconnect_closes_generator(api, route):
    for attempt in range(ATTEMPTS):
        key = "disc-%s-%d" % (route, time.monotonic_ns())
        with Conn(api.port) as c:
            c.send(build_request("GET", "/s/%s/%s" % (route, key)))
            got = 0
            while got < 1 * MiB:
                data = c.sock.recv(65536)
                assert data
                got += len(data)
            assert counters(api, key)["closed"] == 0      # still streaming
        wait_counter(api, key, "closed", 1)


@pytest.mark.parametrize("route", ["forever", "aforever"])
def test_client_reset_closes_generator(api, route):
    for attempt in range(ATTEMPTS):
        key = "reset-%s-%d" % (route, time.monotonic_ns())
        c = Conn(api.port)
        c.send(build_request("GET", "/s/%s/%s" % (route, key)))
        assert c.sock.recv(65536)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()                                          # RST
        wait_counter(api, key, "closed", 1)


@pytest.mark.parametrize("second", ["/chunks/1", "/chunks/0"])
def test_client_shutting_its_side_behind_pipelined_streams_is_closed(basic, second):
    # The client's FIN comes with two pipelined requests that both stream:
    # the second stream's Task is made when the first ends, and the FIN
    # may reach the server before that Task's first step.  The connection
    # ends all the same (it used to wait forever for a stream cancelled
    # before it began), and an endless second stream is not begun at all.
    for attempt in range(ATTEMPTS):
        with Conn(basic.port) as c:
            c.send(build_request("GET", "/chunks/1") + build_request("GET", second))
            c.sock.shutdown(socket.SHUT_WR)
            data = read_to_eof(c)    # a hang is a socket.timeout
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:100]
        assert data.count(b"HTTP/1.1 200 OK\r\n") <= 2
    assert get(basic, "/chunks/2").body == b"item 0\nitem 1\n"


def test_stream_begun_after_the_clients_fin_is_cut_not_ended_empty(api):
    # The client half-closes right after its request; the view answers with
    # a stream once it has awaited something, by when the FIN has usually
    # come.  Such a stream is not begun, and its answer must not look
    # complete: it used to be a head and the last chunk, an empty 200.
    for attempt in range(ATTEMPTS):
        with Conn(api.port) as c:
            c.send(build_request("GET", "/s/late/3"))
            c.sock.shutdown(socket.SHUT_WR)
            data = read_to_eof(c)
        head, _, body = data.partition(b"\r\n\r\n")
        if body.endswith(b"0\r\n\r\n"):        # ended: then with all it had
            assert body == b"7\r\nlate 0\n\r\n7\r\nlate 1\n\r\n7\r\nlate 2\n\r\n0\r\n\r\n", data


def test_slow_reader_does_not_make_server_buffer(api):
    """A client that stops reading: the generator is paused by flow control
    instead of the server buffering the whole stream."""
    key = "slow-%d" % time.monotonic_ns()
    total_chunks = 1024                               # 256 MiB if all produced
    before = rss_kb(api.pid)
    with Conn(api.port) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.send(build_request("GET", "/s/big/%d?key=%s" % (total_chunks, key)))
        # wait until production stops advancing (or runs away)
        deadline = time.monotonic() + POLL_DEADLINE
        last, stable = -1, 0
        while stable < 10:
            n = counters(api, key)["progress"]
            assert n < 200, "produced %d chunks (%d MiB) for a client that reads nothing" % (
                n, n // 4)
            stable = stable + 1 if n == last else 0
            last = n
            assert time.monotonic() < deadline, "production never stalled (%d chunks)" % n
            time.sleep(0.02)
        growth = rss_kb(api.pid) - before
        assert growth < 50 * 1024, "server RSS grew by %d KiB" % growth
        assert last < total_chunks
        # now read it all: the stream resumes and completes
        c.sock.settimeout(10)
        head = c._read_until(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        expected = total_chunks * (len(b"40000\r\n") + 256 * 1024 + 2) + len(b"0\r\n\r\n")
        got = len(c.buf)
        c.buf.clear()
        while got < expected:
            data = c.sock.recv(1 << 20)
            assert data, "EOF after %d of %d bytes" % (got, expected)
            got += len(data)
        assert got == expected
    wait_counter(api, key, "closed", 1)


def test_one_gigabyte_stream_with_bounded_memory(api):
    n_chunks = 4096                                   # 4096 * 256 KiB = 1 GiB
    chunk = 256 * 1024
    expected = n_chunks * (len(b"%x\r\n" % chunk) + chunk + 2) + len(b"0\r\n\r\n")
    before = rss_kb(api.pid)
    peak = before
    with Conn(api.port, timeout=10) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
        c.send(build_request("GET", "/s/big/%d" % n_chunks))
        head = c._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nTransfer-Encoding: chunked" in head
        got = len(c.buf)
        tail = bytes(c.buf[-16:])
        c.buf.clear()
        buf = bytearray(4 * MiB)
        view = memoryview(buf)
        next_sample = 0
        while got < expected:
            n = c.sock.recv_into(view, min(len(buf), expected - got))
            assert n, "EOF after %d of %d bytes" % (got, expected)
            got += n
            if got >= next_sample:
                peak = max(peak, rss_kb(api.pid))
                next_sample += 32 * MiB
            if n >= 16:
                tail = bytes(view[n - 16:n])
            else:
                tail = (tail + bytes(view[:n]))[-16:]
        assert got == expected
        assert tail.endswith(b"\xab\r\n0\r\n\r\n")
        # the connection is still usable: nothing extra was sent
        assert c.request("GET", "/plain").body == b"plain"
    growth = peak - before
    assert growth < 50 * 1024, "server RSS grew by %d KiB while streaming 1 GiB" % growth


def test_sse_events_arrive_one_by_one(api):
    key = "sse-%d" % time.monotonic_ns()
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/sse/%s?n=3" % key,
                             headers={"Accept": "text/event-stream"}))
        head = c._read_until(b"\r\n\r\n").decode("latin-1") + "\r\n"
        assert "\r\nContent-Type: text/event-stream\r\n" in head
        assert "\r\nCache-Control: no-cache\r\n" in head
        assert "\r\nTransfer-Encoding: chunked\r\n" in head
        for i in range(3):
            if i:
                # the generator waits for this before it yields event i
                assert get(api, "/s/sse-next/" + key).body == b"ok"
            size = int(c._read_until(b"\r\n"), 16)
            event = c._read_exact(size)
            assert c._read_exact(2) == b"\r\n"
            assert event == b"id: %d\nevent: tick\ndata: event %d\n\n" % (i, i)
        assert c._read_until(b"\r\n") == b"0"
        assert c._read_until(b"\r\n") == b""
        assert c.request("GET", "/plain").body == b"plain"


def test_stream_head_goes_before_a_first_item_that_waits(api):
    # The head waits for the first item (a failure before it is a 500), but
    # not for long: a client, or a proxy's read timeout, waiting for the
    # first event gets the head meanwhile (from the next sweep).
    key = "sse-%d" % time.monotonic_ns()
    with Conn(api.port) as c:
        c.send(build_request("GET", "/s/sse/%s?n=1&wait=1" % key))
        head = c._read_until(b"\r\n\r\n").decode("latin-1") + "\r\n"
        assert head.startswith("HTTP/1.1 200 OK\r\n"), head
        assert "\r\nTransfer-Encoding: chunked\r\n" in head
        assert get(api, "/s/sse-next/" + key).body == b"ok"   # only now event 0
        size = int(c._read_until(b"\r\n"), 16)
        assert c._read_exact(size) == b"id: 0\nevent: tick\ndata: event 0\n\n"
