"""Closing and slow clients, over TLS and (for comparison) plain TCP.

body_timeout is how long a client may refuse to read a response: one that
reads, however slowly, gets the whole answer, whether the connection stays
open after it or closes (HTTP/1.0, Connection: close).  One that stops
reading, or that never answers the server's TLS close_notify, is cut off
after body_timeout, and its max_connections place is free again.
"""
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

from .test_binding import cert  # noqa: F401
from .test_supervisor import Proc, write_app

APP = '''
import sys
from fulmen import Application

app = Application(body_timeout=%(bt)r, keep_alive_timeout=%(ka)r, max_connections=%(maxc)r)

def big(request):
    if "say" in request.query:   # the answer goes to the transport right after
        print("answering " + request.query["say"], file=sys.stderr, flush=True)
    return request.Response(body=b"x" * int(request.query["n"]))

async def later(request):
    import asyncio
    await asyncio.sleep(float(request.query["s"]))
    return request.Response(text="later")

def hello(request):
    return request.Response(text="hello")

app.router.add_route("/big", big)
app.router.add_route("/later", later)
app.router.add_route("/", hello)

if __name__ == "__main__":
    tls = sys.argv[1:3] if len(sys.argv) > 2 else None
    app.run(host="127.0.0.1", port=0, ssl=tuple(tls) if tls else None)
'''


def start(tmp_path, cert, tls, ka=60.0, maxc=None, bt=1.0, env=None):
    name = "slowapp_%s" % ("tls" if tls else "plain")
    write_app(tmp_path, name, APP % {"ka": ka, "maxc": maxc, "bt": bt})
    return Proc([sys.executable, str(tmp_path / (name + ".py")), *(cert if tls else ())],
                env=env, cwd=str(tmp_path)).start()


def connect(port, cert, tls, timeout=10.0, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:   # before connecting, so that the window stays small
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    if tls:
        ctx = ssl.create_default_context(cafile=cert[0])
        s = ctx.wrap_socket(s, server_hostname="localhost")
    return s


def read_head(s):
    """Read up to the end of an answer's head (and what came with it)."""
    got = b""
    while b"\r\n\r\n" not in got:
        d = s.recv(16384)
        assert d, got
        got += d
    return got


def assert_next_client_served(srv, cert, tls, who):
    """With max_connections=1: the next client is served once `who` is cut
    (body_timeout 1 s), its handshake waiting in the backlog till then."""
    try:
        with connect(srv.port, cert, tls, timeout=30.0) as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert other.recv(100).startswith(b"HTTP/1.1 200 ")
    except (socket.timeout, ssl.SSLError) as e:
        pytest.fail("the client that %s was not cut within 30 s (body_timeout 1 s): %r"
                    % (who, e))


N = 8_000_000
RATE = 2_000_000     # bytes a second: N takes 4 s, four times body_timeout


def read_big_at_rate(s, close):
    """Ask for N bytes and read them at RATE bytes a second; the head and
    the body that came."""
    s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n%s\r\n"
              % (N, b"Connection: close\r\n" if close else b""))
    got = bytearray()
    t0 = time.monotonic()
    while True:
        # the reading pace is what these tests are about: sleeping sets it
        ahead = len(got) - (time.monotonic() - t0) * RATE
        if ahead > 0:
            time.sleep(ahead / RATE)
        d = s.recv(16384)
        if not d:
            break
        got += d
        if not close and got.endswith(b"x" * 16) and len(got) >= N:
            break
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert len(body) == N, "the answer was cut after %d of %d bytes" % (len(body), N)


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "close"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_slow_but_steady_reader_gets_the_whole_answer(tmp_path, cert, tls, close):
    """The answer is far larger than what the kernel buffers hold, so the
    transport keeps most of it, for longer than body_timeout, while the
    client takes it bit by bit."""
    srv = start(tmp_path, cert, tls)
    try:
        with connect(srv.port, cert, tls, rcvbuf=65536) as s:
            read_big_at_rate(s, close)
    finally:
        assert srv.stop() == 0, srv.stderr()


def test_tls_keep_alive_counts_from_when_a_slow_reader_has_the_answer(tmp_path, cert):
    """keep-alive 1 s: an answer the client takes in 4 s over TLS, whose
    layer hands it all to the socket's transport at once.  Once the client
    has the last byte, the connection still takes its next request (over
    TCP keep-alive counts from when the kernel has the last bytes, as in
    nginx: the kernel's buffers may hold more than a second of this client's
    reading, so this is for TLS only)."""
    srv = start(tmp_path, cert, True, ka=1.0)
    try:
        with connect(srv.port, cert, True, rcvbuf=65536) as s:
            read_big_at_rate(s, False)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_head(s).startswith(b"HTTP/1.1 200 ")
    finally:
        assert srv.stop() == 0, srv.stderr()


def test_close_notify_while_an_answer_is_due_is_quiet(tmp_path, cert):
    """A TLS client sends its close_notify while a view is still working on
    its answer: the server closes (a TLS connection cannot stay half-open)
    without asking uvloop to keep it open, which only logged a warning per
    connection."""
    srv = start(tmp_path, cert, True)
    try:
        for _ in range(3):
            s = connect(srv.port, cert, True)
            s.sendall(b"GET /later?s=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setblocking(False)
            try:
                s.unwrap()                 # sends our close_notify
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            s.setblocking(True)
            raw = socket.socket(fileno=s.detach())
            raw.settimeout(10.0)
            while raw.recv(65536):         # until the server closes
                pass
            raw.close()
        with connect(srv.port, cert, True) as s:   # and it still serves
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200 ")
    finally:
        assert srv.stop() == 0, srv.stderr()
    assert "eof_received" not in srv.stderr(), srv.stderr()


def test_tls_client_that_ignores_close_notify_gives_its_place_back(tmp_path, cert):
    """max_connections=1: the server closes an idle TLS connection (keep-alive
    timeout) whose client neither reads nor answers the close_notify; within
    body_timeout (1 s), not uvloop's 30 s, the next client is served."""
    srv = start(tmp_path, cert, True, ka=0.5, maxc=1)
    try:
        idle = connect(srv.port, cert, True)
        # this client's handshake waits in the backlog until the place is free
        s = connect(srv.port, cert, True, timeout=15.0)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200 ")
        s.close()
        idle.close()
    except (socket.timeout, ssl.SSLError) as e:
        pytest.fail("the next client was not served within 15 s: %r" % e)
    finally:
        assert srv.stop() == 0, srv.stderr()


def test_tls_client_that_stops_reading_after_the_tls_layer_resumed_us_is_cut(tmp_path, cert):
    """max_connections=1, body_timeout 1 s, keep-alive 300 s.  The client
    reads a first answer (8 MB) only to its head, asks for a second (4 MB),
    then reads the rest of the first and stops.  The first fills the
    socket's transport, so uvloop's TLS layer keeps the second and pauses
    the app (the write deadline starts); once the socket's transport has
    drained, the TLS layer hands it all of the second at once and resumes
    the app, with megabytes of it still to go to a client that no longer
    reads.  That client must be cut after body_timeout, its place freed for
    the next one, not held until the keep-alive timeout.  (uvloop's TLS
    layer only, FULMEN_TLS_C=0: TLS in C reads no request while the
    transport holds more than its high-water mark, as over plain TCP, so
    the second request is not read before the client takes the first.)"""
    A, B = 8_000_000, 4_000_000
    srv = start(tmp_path, cert, True, ka=300.0, maxc=1, env={"FULMEN_TLS_C": "0"})
    s = None
    try:
        s = connect(srv.port, cert, True, rcvbuf=65536)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % A)
        # the first answer is in the transport
        head, _, body = read_head(s).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        mark = srv.mark()
        s.sendall(b"GET /big?n=%d&say=second HTTP/1.1\r\nHost: x\r\n\r\n" % B)
        # the second answer goes to the TLS layer in the same callback as
        # this line, before the server can see the client read any more
        srv.wait_line(r"answering second", start=mark)
        left = A - len(body)
        while left > 0:                  # the rest of the first, not a byte more
            d = s.recv(min(left, 16384))
            assert d, "the first answer was cut with %d bytes to go" % left
            left -= len(d)
        # now stop reading
        assert_next_client_served(srv, cert, True, "stopped reading")
    finally:
        if s is not None:
            s.close()
        assert srv.stop() == 0, srv.stderr()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_keep_alive_timeout_counts_from_the_answer_when_shorter_than_body_timeout(
        tmp_path, cert, tls):
    """keep-alive 1 s, body_timeout 300 s: after one answer, read whole, the
    idle connection is closed by keep_alive_timeout (over TLS too, where
    the server first waits for the client to have the answer)."""
    srv = start(tmp_path, cert, tls, ka=1.0, bt=300.0)
    try:
        s = connect(srv.port, cert, tls, timeout=30.0)
        s.sendall(b"GET /big?n=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(b"x" * 100):
            d = s.recv(16384)
            assert d, got
            got += d
        try:
            assert s.recv(100) == b"", "nothing more was asked for"
        except socket.timeout:
            pytest.fail("the idle connection was still open after 30 s (keep-alive 1 s)")
        s.close()
    finally:
        assert srv.stop() == 0, srv.stderr()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_client_that_never_reads_one_large_answer_is_cut(tmp_path, cert, tls):
    """max_connections=1, body_timeout 1 s, keep-alive 300 s.  One 8 MB
    answer to a client that reads its head and no more.  Over TLS the app
    is never paused: uvloop's TLS layer hands the whole answer to the
    socket's transport at once, which keeps the megabytes the kernel cannot
    take.  The client must still be cut after body_timeout, its place freed
    for the next one, not held until the keep-alive timeout."""
    srv = start(tmp_path, cert, tls, ka=300.0, maxc=1)
    s = None
    try:
        s = connect(srv.port, cert, tls, rcvbuf=65536)
        s.sendall(b"GET /big?n=8000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_head(s)
        assert got.startswith(b"HTTP/1.1 200 "), got[:100]
        assert_next_client_served(srv, cert, tls, "never read")
    finally:
        if s is not None:
            s.close()
        assert srv.stop() == 0, srv.stderr()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_graceful_stop_does_not_wait_for_close_notify(tmp_path, cert, tls):
    """SIGTERM with an idle keep-alive client that neither reads nor
    answers the server's close_notify: the worker closes it after the short
    drain and exits, as over TCP, not after body_timeout (30 s here) nor
    the graceful timeout (30 s)."""
    srv = start(tmp_path, cert, tls, bt=30.0)
    try:
        s = connect(srv.port, cert, tls)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200 ")
        srv.proc.send_signal(signal.SIGTERM)
        try:
            srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker was still running 10 s after SIGTERM")
        s.close()
    finally:
        assert srv.stop() == 0, srv.stderr()
