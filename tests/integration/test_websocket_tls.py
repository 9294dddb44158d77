"""WebSockets over TLS (wss://) against the same behaviour over plain TCP.

The WebSocket code leans on its transport: write back-pressure, pausing
reads, the closing handshake and its deadline, the keep-alive ping and
connection_lost.  A TLS connection stays on uvloop's TLS transport, which
buffers on its own, closes with a close_notify exchange and reads a TLS
record at a time.  Each test here runs the ws test app (apps/ws.py) over
both transports, with the same checks: a difference is a bug unless the
docs name it.  Tests that wait on a fixed deadline (the 5 s close timeout,
body_timeout) drive both transports at once, so that they wait once.
"""
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest

from .server import APPS, clean_exit
from .test_binding import cert, conn_over  # noqa: F401
from .test_supervisor import Proc
from .wsclient import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Closed,
                       WSClient, build_frame)

BODY_TIMEOUT = 2.0   # the ws app's, for the tests of clients that stop reading
TRANSPORTS = ["plain", "tls"]


class Side:
    """One running ws app, plain or TLS, and how to reach it."""

    def __init__(self, transport, cert, env=None, app="ws.py", args=()):
        self.transport = transport
        self.ctx = ssl.create_default_context(cafile=cert[0]) if transport == "tls" else None
        self.srv = Proc([sys.executable, os.path.join(APPS, app), *args,
                         *(cert if transport == "tls" else ())],
                        env=env).start()
        self.port = self.srv.port

    def client(self, path, **kw):
        return WSClient(self.port, path, ssl_context=self.ctx, **kw)

    def connect(self, path, **kw):
        return self.client(path, **kw).connect()

    def http(self, path):
        """GET path over this transport (the app's side channel)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if self.ctx is not None:
            s = self.ctx.wrap_socket(s, server_hostname="localhost")
        with conn_over(s) as c:
            return c.request("GET", path)

    def events(self, tag, want=None, timeout=10.0):
        """What the handlers recorded under tag (polled until a line
        starting with `want` shows up)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.http("/events/" + tag).json()
            if want is None or any(e.startswith(want) for e in ev) or time.monotonic() > deadline:
                return ev
            time.sleep(0.02)


@pytest.fixture(scope="module")
def sides(cert):
    env = {"WS_APP_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    s = {t: Side(t, cert, env) for t in TRANSPORTS}
    yield s
    for side in s.values():
        code = side.srv.stop()
        assert clean_exit(code), "%s: %s\n%s" % (side.transport, code, side.srv.stderr())
        assert not side.srv.crash_report(), side.srv.stderr()


@pytest.fixture(params=TRANSPORTS)
def side(request, sides):
    """The ws app over one transport; checked after the test."""
    s = sides[request.param]
    yield s
    problem = s.srv.problem()
    assert not problem, "after this test (%s): %s" % (s.transport, problem)


@pytest.fixture
def both(sides):
    yield sides
    for s in sides.values():
        problem = s.srv.problem()
        assert not problem, "after this test (%s): %s" % (s.transport, problem)


def in_parallel(fn, items):
    """fn(item) for every item in threads; re-raises the first failure."""
    errors = []

    def run(item):
        try:
            fn(item)
        except BaseException as e:   # noqa: B902 - handed to the main thread
            errors.append((item, e))

    threads = [threading.Thread(target=run, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        item, e = errors[0]
        raise AssertionError("%s: %r" % (name_of(item), e)) from e


def name_of(item):
    if isinstance(item, tuple):
        return ", ".join(map(name_of, item))
    return item.transport if isinstance(item, Side) else repr(item)


def tag(side, name):
    return "%s-%s" % (name, side.transport)


# ==========================================================================
# Messages
# ==========================================================================

@pytest.mark.parametrize("n", [0, 1, 125, 126, 16383, 16384, 16385, 65536, 100_000])
def test_echo_text_and_binary(side, n):
    """Around the TLS record size (16 KiB) and the 16/64-bit length forms."""
    data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    text = ("é" * (n // 2)).encode()
    with side.connect("/echo") as ws:
        ws.send_binary(data)
        assert ws.recv_message() == (OP_BINARY, data)
        ws.send_text(text)
        assert ws.recv_message() == (OP_TEXT, text)
        ws.close()
        ws.expect_close(1000)


def test_large_messages_both_ways(side):
    """8 MB in each direction: far over the TLS record size and over the
    transports' high-water marks."""
    data = os.urandom(1 << 16) * 128
    with side.connect("/big-echo", timeout=20) as ws:
        for _ in range(2):
            ws.send_binary(data)
            op, got = ws.recv_message()
            assert op == OP_BINARY and got == data
        ws.close()
        ws.expect_close(1000)


def test_frames_in_the_handshake_write(side):
    ws = side.client("/echo")
    with ws:
        ws.connect(extra=build_frame(OP_TEXT, b"early") + build_frame(OP_PING, b"p"))
        got = {ws.recv_message(return_controls=True) for _ in range(2)}
        assert got == {(OP_TEXT, b"early"), (OP_PONG, b"p")}


def test_frame_in_single_bytes(side):
    """Over TLS each byte is a record of its own."""
    frame = build_frame(OP_TEXT, b"chopped " * 20)
    with side.connect("/echo") as ws:
        for i in range(len(frame)):
            ws.send_raw(frame[i:i + 1])
        assert ws.recv_message() == (OP_TEXT, b"chopped " * 20)


def test_many_small_messages_in_one_write(side):
    frames = b"".join(build_frame(OP_TEXT, b"m%d" % i) for i in range(500))
    with side.connect("/echo") as ws:
        ws.send_raw(frames)
        for i in range(500):
            assert ws.recv_message() == (OP_TEXT, b"m%d" % i)


def test_permessage_deflate(side):
    with side.connect("/echo", extensions="permessage-deflate; client_max_window_bits") as ws:
        assert ws.deflate is not None, ws.headers
        for n in (0, 1, 20_000, 1 << 20):
            msg = (b"compress me " * (n // 12 + 1))[:n]
            ws.send_compressed(OP_BINARY, msg)
            assert ws.recv_message() == (OP_BINARY, msg)
        ws.send_compressed(OP_TEXT, "x" * 100_000, fragments=7)
        assert ws.recv_message() == (OP_TEXT, b"x" * 100_000)
        ws.close()
        ws.expect_close(1000)


def test_ping_pong(side):
    with side.connect("/echo") as ws:
        ws.send_frame(OP_PING, b"are you there")
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"are you there")


def test_server_ping(side):
    with side.connect("/ping") as ws:
        got = [ws.recv_message(return_controls=True) for _ in range(3)]
        assert got[:2] == [(OP_PING, b"server-ping"), (OP_PING, b"by keyword")]


# ==========================================================================
# Back-pressure
# ==========================================================================

def wait_stable(side, t, within=10.0):
    """The handler's progress (messages sent) once it stops moving."""
    last, since, end = None, time.monotonic(), time.monotonic() + within
    while time.monotonic() - since < 0.4 and time.monotonic() < end:
        ev = side.events(t)
        if ev != last:
            last, since = ev, time.monotonic()
        time.sleep(0.05)
    return int(last[0]) if last else 0


def test_send_waits_while_the_client_does_not_read(side):
    """The handler sends 40 MB in 1 MB messages to a client that does not
    read: its send() waits (it has sent a few, not 40), and it goes on once
    the client reads; every message arrives."""
    t = tag(side, "flood")
    ws = side.client("/flood/40/" + t, timeout=20,
                     sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
    with ws:
        ws.connect()
        sent = wait_stable(side, t)
        assert sent < 10, "send() did not wait: %d MB sent to a client that reads nothing" % sent
        for _ in range(40):
            op, data = ws.recv_message()
            assert op == OP_BINARY and len(data) == 1 << 20
        assert side.events(t) == ["40"]
        ws.close()
        ws.expect_close(1000)


def test_client_that_stops_reading_is_cut_after_body_timeout(both):
    """A client that takes nothing for body_timeout while the handler's
    send() waits: the connection is dropped and the send ends, over TLS as
    over TCP."""
    def run(side):
        t = tag(side, "stall")
        ws = side.client("/flood/40/" + t, timeout=20,
                         sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
        with ws:
            ws.connect()
            ev = side.events(t, "stopped by", timeout=BODY_TIMEOUT + 8)
            assert ev and ev[-1].startswith("stopped by"), ev
            assert int(ev[0]) < 10, ev
            # what was sent before may still be read; then EOF or reset
            with pytest.raises(Closed):
                while True:
                    ws.recv_frame(timeout=10)
    in_parallel(run, both.values())


def test_receive_queue_bounded_then_drained(side):
    """The handler does not receive: the server stops reading (over TLS the
    transport then stops taking records) and holds a few MB, not all the
    client sends; once released, every message reaches the handler."""
    t = tag(side, "sink")
    size = (1 << 20) - 64
    ws = side.client("/sink/" + t, timeout=10,
                     sockopts=[(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)])
    with ws:
        ws.connect()
        assert ws.recv_message() == (OP_TEXT, b"ready")
        s = ws.sock
        s.setblocking(False)
        sent, rest = 0, b""
        while sent < 64:
            rest = memoryview(build_frame(OP_BINARY, b"m" * size))
            while rest:
                if not select.select([], [s], [], 1.0)[1]:
                    break
                try:
                    rest = rest[s.send(rest):]
                except (ssl.SSLWantWriteError, BlockingIOError):
                    continue
            if rest:
                break
            sent += 1
        assert sent < 8, "%d MB taken while the handler received nothing" % sent
        side.http("/release/" + t)
        s.setblocking(True)
        s.settimeout(10)
        s.sendall(rest)
        ws.close()
        ws.expect_close(1000)
    assert side.events(t, "received") == ["received %d" % (sent + 1)]


# ==========================================================================
# Closing
# ==========================================================================

def test_client_initiated_close(side):
    t = tag(side, "cclose")
    with side.connect("/wait/" + t) as ws:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        ws.send_text("one")
        ws.close(4001, "done")
        ws.expect_close(4001)
    ev = side.events(t, "closed")
    assert ev[-2:] == ["message one", "closed 4001 True 4001"], ev


def test_server_initiated_close(side):
    t = tag(side, "sclose")
    with side.connect("/server-close/" + t) as ws:
        assert ws.recv_message() == (OP_TEXT, b"closing")
        f = ws.expect_close(4000)
        assert f.close_reason == "bye"
    ev = side.events(t, "close done")
    assert ev == ["close done True 4000 ''"], ev


def test_handler_return_closes_1000(side):
    with side.connect("/returns") as ws:
        assert ws.recv_message() == (OP_TEXT, b"bye")
        ws.expect_close(1000)


def test_handler_exception_closes_1011(side):
    with side.connect("/boom") as ws:
        ws.send_text("x")
        ws.expect_close(1011)


def test_protocol_error_closes_1002(side):
    with side.connect("/echo") as ws:
        ws.send_raw(build_frame(OP_TEXT, b"unmasked", mask=False))
        ws.expect_close(1002)


def test_server_close_unanswered_drops_the_connection(both):
    """The handler closes; the client never answers, whether it reads the
    close frame or nothing at all, or takes a 2 MB message queued before
    the close first: within the close timeout (5 s, counted on while the
    client takes what was queued before the close frame) the connection is
    gone, and the handler's close() has returned."""
    def run(case):
        side, kind = case
        t = tag(side, "unanswered-" + kind)
        path = ("/send-close/" if kind == "behind" else "/server-close/") + t
        ws = side.client(path, timeout=10,
                         sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
        with ws:
            ws.connect()
            if kind == "behind":
                assert side.events(t) == []     # close() waits behind the message
                op, data = ws.recv_message()
                assert op == OP_BINARY and len(data) == 2 << 20
            elif kind == "reads":
                assert ws.recv_message() == (OP_TEXT, b"closing")
            if kind != "still":
                assert ws.recv_frame().close_code == 4000
            ev = side.events(t, "close done", timeout=12.0)
            assert ev and ev[-1].startswith("close done True"), ev
            with pytest.raises(Closed):
                while True:
                    ws.recv_frame(timeout=10)
    in_parallel(run, [(side, kind) for side in both.values()
                      for kind in ("reads", "still", "behind")])


def has_input(ws, timeout=5.0):
    """Bytes from the server wait to be read (without reading them)."""
    if ws.buf or (isinstance(ws.sock, ssl.SSLSocket) and ws.sock.pending()):
        return True
    return bool(select.select([ws.sock], [], [], timeout)[0])


def test_closed_connection_is_dropped_within_body_timeout(both):
    """After the closing handshake the server closes: over TCP once its
    output has left, over TLS with its close_notify.  A client that takes
    all of it, close_notify included, but never answers (it keeps its
    socket open) is cut off after body_timeout, as the docs say, not twice
    that: once the client has acknowledged everything, it is not taking
    more.  (The client's receive window is kept small and it reads only
    once the server has closed, so that most of the server's last bytes
    are acknowledged after that.)"""
    def run(side):
        t = tag(side, "notify-unanswered")
        ws = side.client("/send-wait/30000/" + t,
                         sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
        with ws:
            ws.connect()
            # the message has started to arrive: it is all with the transport
            assert has_input(ws)
            ws.close(1000)
            assert side.events(t, "closed") == ["closed 1000"]
            assert ws.recv_message() == (OP_BINARY, b"s" * 30000)
            ws.expect_close(1000)             # EOF, or the close_notify over TLS
            t0 = time.monotonic()
            raw = socket.socket(fileno=os.dup(ws.sock.fileno()))
            raw.settimeout(4 * BODY_TIMEOUT)
            try:
                while raw.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            finally:
                raw.close()
            took = time.monotonic() - t0
        assert took < 1.6 * BODY_TIMEOUT, "the server closed %.1f s after its close_notify" % took
    in_parallel(run, both.values())


# ---- the client goes away -------------------------------------------------------

def vanish_rst(ws):
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.abort()


def vanish_fin(ws):
    """The TCP connection's sending side shut, without a close frame (and,
    over TLS, without a close_notify: the raw socket underneath)."""
    raw = socket.socket(fileno=os.dup(ws.sock.fileno()))
    raw.shutdown(socket.SHUT_WR)
    raw.close()


@pytest.mark.parametrize("how", [vanish_rst, vanish_fin], ids=["rst", "fin"])
def test_client_vanishes(side, how):
    t = tag(side, "vanish-" + how.__name__)
    ws = side.connect("/wait/" + t)
    try:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        how(ws)
        ev = side.events(t, "closed")
        assert ev[-1] == "closed 1006 True 1006", ev
        if how is vanish_fin:
            # nothing more comes from the server: no close frame
            with pytest.raises(Closed):
                ws.recv_frame(timeout=5)
    finally:
        ws.abort()


@pytest.mark.parametrize("size", [100, 64 << 10])
def test_client_gone_while_sends_never_wait(side, size):
    """A handler that awaits each send in a loop, to a client that takes
    them as they come and then resets: send() raises WebSocketClosed(1006)
    and the worker serves others.  Over TLS the socket's error stays inside
    uvloop's transports until the loop turns: the sends, which never wait,
    give it a turn now and then."""
    t = tag(side, "push-%d" % size)
    ws = side.connect("/push/%d/%s" % (size, t))
    got = 0
    while got < 4 << 20:
        data = ws.sock.recv(1 << 16)
        assert data
        got += len(data)
    vanish_rst(ws)
    ev = side.events(t, "closed")
    assert len(ev) == 1 and ev[0].startswith("closed 1006"), ev
    with side.connect("/echo") as other:
        other.send_frame(OP_TEXT, b"alive")
        assert other.recv_message() == (OP_TEXT, b"alive")


def test_tls_close_notify_without_close_frame(sides):
    """Over TLS only: the client sends its close_notify and no close frame.
    The server treats it as the end of the connection (as a FIN over TCP):
    the handler sees 1006, and the server answers with its own close_notify
    rather than leaving the client waiting."""
    side = sides["tls"]
    t = tag(side, "notify")
    ws = side.connect("/wait/" + t)
    try:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        ws.sock.settimeout(5)
        raw = ws.sock.unwrap()      # close_notify, then the server's
        ws.sock = raw
        ev = side.events(t, "closed")
        assert ev[-1] == "closed 1006 True 1006", ev
        raw.settimeout(5)
        assert raw.recv(100) == b""
    finally:
        ws.abort()
    assert not side.srv.problem()


def test_client_ends_its_side_while_the_server_sends(both):
    """While the handler floods a client that does not read, the client
    ends its side: a FIN over TCP, its close_notify over TLS (no close
    frame either way).  The handler's send() ends, and the worker is fine."""
    def run(side):
        t = tag(side, "ends-flood")
        ws = side.connect("/flood/40/" + t)
        try:
            deadline = time.monotonic() + 5
            while not side.events(t) and time.monotonic() < deadline:
                time.sleep(0.02)
            if side.ctx is None:
                ws.sock.shutdown(socket.SHUT_WR)
            else:
                # close_notify; the client's TLS then fails on the data
                # still coming (or would wait for the server's)
                ws.sock.setblocking(False)
                with pytest.raises(ssl.SSLError):
                    ws.sock.unwrap()
            ev = side.events(t, "stopped by", timeout=BODY_TIMEOUT + 8)
            assert ev[-1].startswith("stopped by"), ev
        finally:
            ws.abort()
    in_parallel(run, both.values())


# ==========================================================================
# Keep-alive
# ==========================================================================

def test_keepalive_silent_client_closed_1011(side):
    ws = side.connect("/keepalive")
    try:
        f = ws.recv_frame(timeout=5)
        assert f.opcode == OP_PING
        while True:
            f = ws.recv_frame(timeout=5)
            if f.opcode == OP_CLOSE:
                break
        assert f.close_code == 1011
    finally:
        ws.abort()


def test_keepalive_spares_a_client_that_answers(side):
    ws = side.connect("/keepalive")
    try:
        for _ in range(3):
            f = ws.recv_frame(timeout=5)
            assert f.opcode == OP_PING
            ws.send_frame(OP_PONG, f.payload)
        ws.send_text("still here")
        assert ws.recv_message(timeout=5) == (OP_TEXT, b"still here")
    finally:
        ws.abort()


# ==========================================================================
# Server shutdown
# ==========================================================================

def test_graceful_stop_closes_with_1001(cert):
    """SIGTERM with an open wss:// (and ws://) connection: each gets a close
    frame with 1001 and the worker exits at once, not after the graceful
    timeout."""
    servers = [Side(t, cert) for t in TRANSPORTS]

    def run(side):
        try:
            with side.connect("/echo") as ws:
                ws.send_text("hi")
                assert ws.recv_message() == (OP_TEXT, b"hi")
                side.srv.proc.send_signal(signal.SIGTERM)
                ws.expect_close(1001)
            side.srv.proc.wait(5)
        finally:
            code = side.srv.stop()
        assert clean_exit(code), side.srv.stderr()
        assert not side.srv.crash_report(), side.srv.stderr()
    in_parallel(run, servers)


def test_graceful_stop_with_a_silent_client(cert):
    """SIGTERM while the client reads nothing and answers nothing (a frozen
    process, say: its kernel still acknowledges): the close frame with 1001
    is sent and the worker exits at once, not after the graceful timeout
    (30 s).  Over TCP the socket closes once the transport has handed the
    frame to the kernel; over TLS the server must not wait, all the same,
    for a close_notify this client will never send."""
    servers = [Side(t, cert) for t in TRANSPORTS]

    def run(side):
        try:
            with side.connect("/echo") as ws:
                side.srv.proc.send_signal(signal.SIGTERM)
                try:
                    side.srv.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pytest.fail("the worker was still running 10 s after SIGTERM")
                assert ws.recv_frame(timeout=5).close_code == 1001
        finally:
            code = side.srv.stop()
        assert clean_exit(code), side.srv.stderr()
    in_parallel(run, servers)
