"""Soak: the features beyond plain requests (WebSockets, streamed and file
responses, streamed and multipart request bodies, TLS), each driven for a
few seconds by clients that finish and clients that leave every way they
can, must leave the worker where the warm-up left it: no more open file
descriptors, no handler, generator or upload still running, no more live
objects of the server's types, none of them in a reference cycle (left to
the cyclic collector), and RSS within a small budget.

test_leaks.py does the same for plain requests.  The app is apps/soak.py,
in its own process (plain and TLS), so that only this module's traffic
shows in it; its /state route says what is still alive.
"""
import collections
import os
import socket
import ssl
import struct
import sys
import time

import pytest

from .conftest import skip_if_sanitized
from .rawhttp import Conn, build_request, chunked
from .server import APPS, clean_exit, describe, rss_kb
from .test_binding import cert, conn_over  # noqa: F401  (the cert fixture)
from .test_supervisor import Proc
from .wsclient import OP_BINARY, OP_CLOSE, OP_TEXT, Closed, WSClient, build_frame

RSS_GROWTH_KB = 4 * 1024
SETTLE_TIMEOUT = 10.0
BIG = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(65536)) * 64      # 4 MiB
# the objects that must not pile up (Request and Response are kept on
# freelists, which may hold a few more or fewer at one time than another)
EXACT = ("Connection", "WebSocket", "BodyStream", "Task", "Future", "generator",
         "async_generator", "coroutine", "BufferedReader", "FileIO", "SSLObject",
         "SSLProtocol", "TCPTransport")
FREELISTED = ("Request", "Response")
FREELIST_SLACK = 64
# what must never be left to the cyclic collector (apps/soak.py turns it
# off, so that each cycle stays until /state counts it)
NO_CYCLES = ("Connection", "Request", "Response", "WebSocket", "BodyStream",
             "TCPTransport", "SSLProtocol", "SSLObject", "generator", "async_generator")


# ---- the servers -----------------------------------------------------------------

@pytest.fixture(scope="module")
def soak_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("soak")
    (d / "big.bin").write_bytes(BIG)
    (d / "small.txt").write_bytes(b"small file\n")
    return d


def _serve(files, tls=None):
    env = {"FULMEN_SOAK_FILES": str(files)}
    if tls:
        env.update(FULMEN_SOAK_CERT=tls[0], FULMEN_SOAK_KEY=tls[1])
    srv = Proc([sys.executable, os.path.join(APPS, "soak.py")], env=env).start()
    srv.tls = tls
    return srv


def _stop(srv):
    code = srv.stop()
    assert clean_exit(code), "%s\n%s" % (describe(code), srv.stderr()[-3000:])
    assert not srv.crash_report(), srv.crash_report()


@pytest.fixture(scope="module")
def soak_server(soak_files):
    srv = _serve(soak_files)
    yield srv
    _stop(srv)


@pytest.fixture(scope="module")
def soak_tls_server(soak_files, cert):
    srv = _serve(soak_files, cert)
    yield srv
    _stop(srv)


def _checked(srv):
    yield srv
    assert not srv.problem(), srv.problem()


@pytest.fixture
def plain(soak_server):
    yield from _checked(soak_server)


@pytest.fixture
def tls(soak_tls_server):
    yield from _checked(soak_tls_server)


# ---- clients ---------------------------------------------------------------------

def tcp(srv, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:   # before connecting, so that the window stays small
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", srv.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def tls_wrap(srv, s):
    ctx = ssl.create_default_context(cafile=srv.tls[0])
    return ctx.wrap_socket(s, server_hostname="localhost")


def client(srv, rcvbuf=None):
    """A connected socket to srv, over TLS if srv serves TLS."""
    s = tcp(srv, rcvbuf)
    return tls_wrap(srv, s) if srv.tls else s


def reset(s):
    """Close with an RST instead of a FIN (SO_LINGER 0)."""
    if isinstance(s, ssl.SSLSocket):
        s = socket.socket(fileno=s.detach())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_some(s, n):
    """Read at least n bytes (or up to EOF)."""
    got = 0
    while got < n:
        d = s.recv(65536)
        if not d:
            break
        got += len(d)
    return got


def drain(s):
    """Read until the server closes; the bytes read."""
    got = 0
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                return got
            got += len(d)
    except (ConnectionResetError, ssl.SSLError):
        return got


def leave(s, how, read=0):
    """Read `read` bytes of the answer, then leave: "fin" shuts down the
    sending side and reads whatever the server still sends until it closes,
    "close" closes (a reset when unread bytes are waiting), "rst" resets."""
    if read:
        read_some(s, read)
    if how == "fin":
        if isinstance(s, ssl.SSLSocket):
            s = socket.socket(fileno=s.detach())   # a FIN under the TLS session
            s.settimeout(10)
        s.shutdown(socket.SHUT_WR)
        drain(s)
        s.close()
    elif how == "close":
        s.close()
    else:
        reset(s)


# ---- the measure ------------------------------------------------------------------


def fd_list(pid):
    d = "/proc/%d/fd" % pid
    out = []
    for n in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, n)))
        except OSError:
            pass            # closed meanwhile
    return out


class Probe:
    """Snapshots of the server, over one keep-alive connection held for the
    whole test (so that it counts the same in both)."""

    def __init__(self, srv):
        self.srv = srv
        self.conn = conn_over(client(srv))
        self.cycles = collections.Counter()   # what each /state found, added up

    def state(self):
        st = self.conn.request("GET", "/state").json()
        self.cycles.update(st["cycles"])
        return st

    def settle(self, base=None):
        """Wait until our connection is the only one left and nothing the
        app started is still running; given the warm-up's snapshot `base`,
        also until no more descriptors, tasks and objects are left than
        then (a closed connection's transport and socket go a moment after
        it).  Returns the snapshot (rss, fds, state); past SETTLE_TIMEOUT,
        the last one for the caller's checks to explain."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            st = self.state()
            n = len(fd_list(self.srv.pid))
            settled = st["connections"] == 1 and not any(st["live"].values())
            if settled and base is not None:
                fds0, st0 = base[1], base[2]
                settled = (n <= fds0 and st["tasks"] <= st0["tasks"]
                           and all(st["objects"][t] <= st0["objects"][t] for t in EXACT))
            if settled or (base is not None and time.monotonic() > deadline):
                if not settled:
                    kinds = collections.Counter(f.split("[")[0] for f in fd_list(self.srv.pid))
                    print("not settled: fds %s, state %s" % (dict(kinds), st))
                return rss_kb(self.srv.pid), n, st
            if time.monotonic() > deadline:
                pytest.fail("the server did not settle within %.0f s: %s" % (SETTLE_TIMEOUT, st))
            time.sleep(0.02)

    def close(self):
        self.conn.close()


def soak(srv, one_round, warm, rounds, kinds):
    """Run one_round(i) `warm` times, take a snapshot, run it `rounds` times
    more: the second snapshot must show nothing more held than the first.
    `kinds` are the app's counters (see apps/soak.py) the rounds move."""
    probe = Probe(srv)
    try:
        for i in range(warm):
            one_round(i)
        base = rss0, fds0, st0 = probe.settle()
        probe.cycles.clear()
        for i in range(warm, warm + rounds):
            one_round(i)
        rss1, fds1, st1 = probe.settle(base)
    finally:
        probe.close()
    for kind in kinds:
        assert st1["done"].get(kind, 0) > st0["done"].get(kind, 0), \
            "no %s ran after the warm-up" % kind
    grown = {t: (st0["objects"][t], st1["objects"][t]) for t in EXACT
             if st1["objects"][t] > st0["objects"][t]}
    grown.update({t: (st0["objects"][t], st1["objects"][t]) for t in FREELISTED
                  if st1["objects"][t] > st0["objects"][t] + FREELIST_SLACK})
    assert not grown, "live objects grew over %d rounds: %s" % (rounds, grown)
    cycles = {t: n for t, n in probe.cycles.items() if t in NO_CYCLES}
    assert not cycles, "the server's objects were left in reference cycles " \
        "over %d rounds: %s (all: %s)" % (rounds, cycles, dict(probe.cycles))
    assert not any(st1["live"].values()), "still running: %s" % st1["live"]
    assert st1["connections"] == 1, "%d connections left open" % (st1["connections"] - 1)
    assert st1["tasks"] <= st0["tasks"], (st0["tasks"], st1["tasks"])
    assert fds1 <= fds0, "%d fds after the warm-up, %d at the end" % (fds0, fds1)
    assert rss1 - rss0 < RSS_GROWTH_KB, \
        "RSS grew from %d kB to %d kB over %d rounds" % (rss0, rss1, rounds)
    return st0, st1


# ---- 1. WebSockets ---------------------------------------------------------------

OFFERS = [None, "permessage-deflate; client_max_window_bits",
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
          "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"]
WS_ENDINGS = ["clean", "close-no-wait", "rst-mid-frame", "fin-mid-message",
              "no-messages", "before-101"]


def ws_round(srv, i):
    offer = OFFERS[i % len(OFFERS)]
    ending = WS_ENDINGS[(i // len(OFFERS)) % len(WS_ENDINGS)]
    path = "/ws" if i % 3 else "/ws-plain"
    ws = WSClient(srv.port, path, extensions=offer)
    if ending == "before-101":
        s = ws.open_socket()
        s.sendall(ws.handshake_request())
        leave(s, "rst" if i % 2 else "close")
        return
    ws.connect()
    try:
        if ending != "no-messages":
            text = "message %d \u00e9" % i * (1 + i % 50)
            blob = bytes(range(256)) * (1 + i % 20)
            ws.send_text(text)
            ws.send_binary(blob)
            ws.send_fragments(OP_TEXT, [b"frag", "mented \u00e9".encode(), b"!" * (i % 300)])
            want = [(OP_TEXT, text.encode()), (OP_BINARY, blob),
                    (OP_TEXT, "fragmented \u00e9".encode() + b"!" * (i % 300))]
            if ws.deflate:
                ws.send_compressed(OP_TEXT, text * 5, fragments=1 + i % 3)
                ws.send_compressed(OP_BINARY, blob, fragments=2)
                want += [(OP_TEXT, (text * 5).encode()), (OP_BINARY, blob)]
            for w in want:
                assert ws.recv_message() == w
        if ending in ("clean", "no-messages"):
            ws.close(1000)
            ws.expect_close(1000)
            ws.abort()
        elif ending == "close-no-wait":
            ws.close(1001)
            ws.abort()
        elif ending == "rst-mid-frame":
            frame = build_frame(OP_BINARY, b"y" * 5000)
            ws.send_raw(frame[:len(frame) // 2])
            reset(ws.sock)
            ws.sock = None
        else:   # a FIN in the middle of a fragmented message, mid-frame
            ws.send_frame(OP_TEXT, b"first half", fin=False)
            frame = build_frame(0, b"z" * 300)
            ws.send_raw(frame[:100])
            ws.sock.shutdown(socket.SHUT_WR)
            try:
                while True:
                    f = ws.recv_frame(timeout=5)   # a close frame (1006 is never sent)
                    assert f.opcode == OP_CLOSE, f
            except Closed:
                pass
            ws.abort()
    finally:
        ws.abort()


@skip_if_sanitized
def test_websockets_leave_nothing_behind(plain):
    st0, st1 = soak(plain, lambda i: ws_round(plain, i), warm=400, rounds=4800, kinds=("ws",))
    assert st1["done"]["ws"] - st0["done"].get("ws", 0) >= 4800 * 5 // 6


# ---- 2. streamed responses -------------------------------------------------------

STREAM_ROUTES = ["/s/sync", "/s/async", "/s/iter"]
LEAVINGS = ["whole", "close", "rst", "fin", "before-head"]


def stream_round(srv, i):
    route = STREAM_ROUTES[i % 3]
    cl = (i // 3) % 2 and route != "/s/iter"
    how = LEAVINGS[(i // 6) % len(LEAVINGS)]
    q = "?cl=1" if cl else ""
    if how == "whole":
        with conn_over(client(srv)) as c:
            r = c.request("GET", "%s/20/1000%s" % (route, q))
            assert r.status == 200 and len(r.body) == 20000, r
            r = c.request("GET", "%s/0/1%s" % (route, q))
            assert r.status == 200 and r.body == b"", r
        return
    # 200 x 64 KiB: far more than the socket buffers hold
    s = client(srv, rcvbuf=65536)
    s.sendall(build_request("GET", "%s/200/65536%s" % (route, q)))
    leave(s, "close" if how == "before-head" else how,
          read=0 if how == "before-head" else 100_000)


@skip_if_sanitized
def test_streamed_responses_leave_nothing_behind(plain):
    soak(plain, lambda i: stream_round(plain, i), warm=180, rounds=1800, kinds=("stream",))


# ---- 3. files --------------------------------------------------------------------

FILE_REQUESTS = [("/file", {}), ("/static/big.bin", {}),
                 ("/static/big.bin", {"Range": "bytes=1000-3999999"}),
                 ("/file", {"Range": "bytes=-2000000"})]


def file_round(srv, i):
    path, headers = FILE_REQUESTS[i % len(FILE_REQUESTS)]
    how = LEAVINGS[(i // len(FILE_REQUESTS)) % len(LEAVINGS)]
    if how == "whole":
        with conn_over(client(srv)) as c:
            r = c.request("GET", path, headers=headers)
            assert r.status == (206 if headers else 200)
            assert r.body == (BIG[1000:4000000] if "1000" in str(headers)
                              else BIG[-2000000:] if headers else BIG)
            assert c.request("GET", "/static/small.txt").body == b"small file\n"
        return
    s = client(srv, rcvbuf=65536)
    s.sendall(build_request("GET", path, headers=headers))
    leave(s, "close" if how == "before-head" else how,
          read=0 if how == "before-head" else 100_000)


@skip_if_sanitized
def test_file_responses_leave_nothing_behind(plain):
    soak(plain, lambda i: file_round(plain, i), warm=80, rounds=600, kinds=())


# ---- 4. request bodies ------------------------------------------------------------

PAYLOAD = os.urandom(256 * 1024)
BOUNDARY = "soakboundary7Hq"


def multipart(data):
    return (("--%s\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n" % BOUNDARY).encode()
            + data + ("\r\n--%s\r\nContent-Disposition: form-data; name=\"g\"; "
                      "filename=\"b.txt\"\r\n\r\nsecond\r\n--%s--\r\n"
                      % (BOUNDARY, BOUNDARY)).encode())


BODY_KINDS = ["upload-length", "upload-chunked", "form"]


def body_request(kind, data):
    if kind == "upload-length":
        return build_request("POST", "/upload", body=data)
    if kind == "upload-chunked":
        return (build_request("POST", "/upload", headers={"Transfer-Encoding": "chunked"})
                + chunked(data, sizes=[65536, 1000]))
    return build_request("POST", "/form", body=multipart(data), headers={
        "Content-Type": "multipart/form-data; boundary=" + BOUNDARY})


def body_round(srv, i):
    kind = BODY_KINDS[i % 3]
    how = ["whole", "close", "rst", "fin"][(i // 3) % 4]
    req = body_request(kind, PAYLOAD)
    if how == "whole":
        with conn_over(client(srv)) as c:
            c.send(req)
            r = c.read_response()
            assert r.status == 200, r
            if kind == "form":
                assert r.json() == {"f": len(PAYLOAD), "g": 6}
            else:
                assert r.body == b"%d" % len(PAYLOAD)
        return
    s = client(srv)
    s.sendall(req[:len(req) // 2 + i % 1000])    # mid-body (mid-chunk, mid-part)
    if how == "fin":
        # the body ends early: the server answers (400) or just closes
        leave(s, "fin")
    else:
        leave(s, how)


@skip_if_sanitized
def test_request_bodies_leave_nothing_behind(plain):
    soak(plain, lambda i: body_round(plain, i), warm=240, rounds=3600, kinds=("upload",))


# ---- 5. TLS -----------------------------------------------------------------------

def client_hello():
    """The first flight of a real TLS client: one ClientHello record."""
    ctx = ssl.create_default_context()
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def tls_round(srv, i, hello):
    kind = i % 8
    if kind == 0:           # a handshake, then gone
        leave(client(srv), "close")
    elif kind == 1:         # a handshake, then reset
        reset(client(srv))
    elif kind == 2:         # half a ClientHello, then gone
        s = tcp(srv)
        s.sendall(hello[:len(hello) // 2])
        leave(s, "close" if i % 2 else "rst")
    elif kind == 3:         # a whole ClientHello, then gone before the answer
        s = tcp(srv)
        s.sendall(hello)
        leave(s, "rst" if i % 16 < 8 else "close")
    elif kind == 4:         # requests, then close_notify
        s = client(srv)
        with conn_over(s) as c:
            assert c.request("GET", "/").body == b"hi"
            assert c.request("GET", "/static/small.txt").body == b"small file\n"
            s.unwrap()
    elif kind == 5:         # a request, then reset mid-answer (a file, read block by block)
        s = client(srv, rcvbuf=65536)
        s.sendall(build_request("GET", "/file"))
        leave(s, "rst", read=100_000)
    elif kind == 6:         # a stream, abandoned mid-answer
        s = client(srv, rcvbuf=65536)
        s.sendall(build_request("GET", "/s/async/200/65536"))
        leave(s, "close" if i % 16 < 8 else "fin", read=100_000)
    else:                   # an upload abandoned mid-body
        s = client(srv)
        req = body_request(BODY_KINDS[(i // 8) % 3], PAYLOAD)
        s.sendall(req[:len(req) // 2])
        leave(s, "rst")


@skip_if_sanitized
def test_tls_leaves_nothing_behind(tls):
    hello = client_hello()
    assert hello, "no ClientHello"
    soak(tls, lambda i: tls_round(tls, i, hello), warm=96, rounds=720,
         kinds=("stream", "upload"))
