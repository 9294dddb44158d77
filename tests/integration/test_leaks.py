"""Leaks: 200k requests of mixed kinds (sync; async that suspend, or whose
Task ends in its first step; view errors, 404, Content-Length and chunked
bodies, all pipelined) must leave the worker's
RSS where it was after a 50k warm-up, and the objects every request touches
must keep their reference counts.  Plus refcount checks on Response built
in-process through the public API."""
import gc
import json
import re
import socket
import ssl
import sys

import pytest

from .rawhttp import Conn, build_request, chunked
from .server import Server, clean_exit, describe, rss_kb
from .conftest import SANITIZED, skip_if_sanitized
from .test_binding import cert  # noqa: F401
from .test_soak import client_hello
from .test_supervisor import Proc

BATCH = 50
CONNS = 4
WARMUP = 50_000
TOTAL = 200_000
RSS_GROWTH_KB = 4 * 1024


@pytest.fixture(scope="module")
def roomy():
    """The limits app with the default settings, in its own process, so
    that its RSS only sees this module's traffic."""
    srv = Server.for_app("limits", env={"FULMEN_LIMITS_PROFILE": "roomy"}).start()
    yield srv
    code = srv.stop()
    assert clean_exit(code), "%s\n%s" % (describe(code), srv.stderr()[-3000:])
    assert not srv.crash_report(), srv.crash_report()


@pytest.fixture
def server(roomy):
    yield roomy
    assert not roomy.problem(), roomy.problem()



def make_batch(k):
    """BATCH mixed requests and the statuses they must get, in order."""
    body = bytes(range(256)) + b"x" * 44
    reqs = []
    for i in range(BATCH):
        kind = (i + k) % 10
        if kind in (0, 1, 2):
            reqs.append((build_request("GET", "/static?i=%d" % i), 200))
        elif kind in (3, 4):
            path = "/astatic" if kind == 3 else "/astatic?now=1"
            reqs.append((build_request("GET", path, headers={"X-I": str(i)}), 200))
        elif kind == 5:
            reqs.append((build_request("POST", "/len", body=body), 200))
        elif kind == 6:
            reqs.append((build_request("POST", "/alen", headers={"Transfer-Encoding": "chunked"})
                         + chunked(body, sizes=[100, 7]), 200))
        elif kind == 7:
            reqs.append((build_request("GET", "/no/such/%d" % i), 404))
        elif kind == 8:
            reqs.append((build_request("GET", "/" if i % 3 else "/aboom" if i % 2 else "/boom"),
                         200 if i % 3 else 500))
        else:
            reqs.append((build_request("POST", "/hit/leak", body=b"q" * 10,
                                       headers={"Cookie": "a=b; c=d"}), 200))
    return b"".join(r for r, _ in reqs), [s for _, s in reqs]


_CL = re.compile(rb"\r\nContent-Length: (\d+)\r\n", re.I)


def read_statuses(sock, buf, n):
    """Parse n responses from sock (fast: these routes always send a
    Content-Length) and return their statuses."""
    out = []
    pos = 0
    while len(out) < n:
        i = buf.find(b"\r\n\r\n", pos)
        if i >= 0:
            m = _CL.search(buf, pos, i + 2)
            assert m, bytes(buf[pos:i])
            end = i + 4 + int(m.group(1))
            if end <= len(buf):
                assert buf.startswith(b"HTTP/1.1 ", pos), bytes(buf[pos:pos + 100])
                out.append(int(buf[pos + 9:pos + 12]))
                pos = end
                continue
        del buf[:pos]
        pos = 0
        data = sock.recv(1 << 20)
        assert data, "server closed a pipelined connection"
        buf += data
    del buf[:pos]
    return out


def drive(port, n_requests, batches):
    """Send n_requests on CONNS pipelined connections, BATCH at a time;
    return how many of them were /hit/leak."""
    conns = [Conn(port, timeout=10) for _ in range(CONNS)]
    bufs = [bytearray() for _ in conns]
    n_hits = 0
    try:
        done, k = 0, 0
        while done < n_requests:
            sent = []
            for c in conns:
                data, statuses = batches[k % len(batches)]
                k += 1
                c.send(data)
                n_hits += data.count(b"POST /hit/leak ")
                sent.append(statuses)
            for c, b, statuses in zip(conns, bufs, sent):
                got = read_statuses(c.sock, b, len(statuses))
                assert got == statuses
            done += CONNS * BATCH
    finally:
        for c in conns:
            c.close()
    return n_hits


def hit_count(port):
    with Conn(port) as c:
        return int(c.request("GET", "/count/leak", headers={"Connection": "close"}).body)


def refcounts(port):
    with Conn(port) as c:
        return c.request("GET", "/refcounts", headers={"Connection": "close"}).json()


@skip_if_sanitized
def test_rss_settles_over_200k_mixed_requests(server):
    batches = [make_batch(k) for k in range(10)]
    pid = server.pid
    hits0 = hit_count(server.port)
    n_hits = drive(server.port, 2000, batches)
    before_refs = refcounts(server.port)
    n_hits += drive(server.port, WARMUP - 2000, batches)
    rss_warm = rss_kb(pid)
    n_hits += drive(server.port, TOTAL - WARMUP, batches)
    rss_end = rss_kb(pid)
    after_refs = refcounts(server.port)
    # The traffic really ran: every /hit/leak request reached its view.
    assert hit_count(server.port) - hits0 == n_hits >= TOTAL // 10
    assert rss_end - rss_warm < RSS_GROWTH_KB, \
        "RSS grew from %d kB to %d kB over %d requests" % (rss_warm, rss_end, TOTAL - WARMUP)
    # Every request put MARKER into request.extra and sent BODY and
    # HEADER_VALUE: no reference may have stayed behind.
    assert after_refs == before_refs


def test_requests_leave_no_reference_behind(server):
    port = server.port
    with Conn(port) as c:       # warm: anything cached on first use
        for path in ("/static", "/astatic", "/astatic?now=1"):
            assert c.request("GET", path).status == 200
    before = refcounts(port)
    with Conn(port) as c:
        c.send((build_request("GET", "/static") + build_request("GET", "/astatic")
                + build_request("GET", "/astatic?now=1")) * 2000)
        for _ in range(6000):
            assert c.read_response().status == 200
    # Requests dropped mid-flight (client gone before the async view ends)
    # must release theirs too.
    for _ in range(50):
        with Conn(port) as c:
            c.send(build_request("GET", "/astatic") * 20)
    # Wait until the server has finished with those: a full round trip on a
    # new connection comes after their views (same loop, FIFO).
    with Conn(port) as c:
        for _ in range(5):
            assert c.request("GET", "/sleep/1").status == 200
    assert refcounts(port) == before


@skip_if_sanitized
def test_many_connections_opened_and_dropped(server):
    pid = server.pid
    def churn(n):
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 3 == 0:
                s.sendall(build_request("GET", "/static"))
                s.recv(65536)
            elif i % 3 == 1:
                s.sendall(b"GET /static HTTP/1.1\r\nHost: x\r\nX-Partial: ")
            s.close()
    churn(1000)
    rss0 = rss_kb(pid)
    churn(5000)
    with Conn(server.port) as c:    # the server has caught up
        assert c.request("GET", "/").status == 200
    assert rss_kb(pid) - rss0 < RSS_GROWTH_KB


# ---- TLS ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def roomy_tls(cert):
    """The roomy limits app serving TLS, in its own process."""
    srv = Proc.for_app("limits", *cert, env={"FULMEN_LIMITS_PROFILE": "roomy"}).start()
    yield srv
    code = srv.stop()
    assert clean_exit(code), "%s\n%s" % (describe(code), srv.stderr()[-3000:])
    assert not srv.crash_report(), srv.crash_report()


def tls_churn(port, cert, n, hello):
    """n TLS connections: most make a few keep-alive requests (sync, async
    and a body) and close; some are garbage, an abandoned handshake, or a
    connection dropped with its request unanswered."""
    ctx = ssl.create_default_context(cafile=cert[0])
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 10 == 7:
            s.sendall(b"\x16\x03\x01\x00\x05hello" * 3)      # garbage
        elif i % 10 == 8:
            s.sendall(hello[:len(hello) // 2])                  # a handshake left
        else:
            s = ctx.wrap_socket(s, server_hostname="localhost")
            req = build_request("GET", "/static") + build_request("GET", "/astatic") \
                + build_request("POST", "/len", body=b"x" * 300)
            s.sendall(req)
            if i % 10 != 9:                                    # else dropped unread
                buf = bytearray()
                assert read_statuses(s, buf, 3) == [200, 200, 200]
        s.close()


def test_tls_connections_leave_nothing_behind(roomy_tls, cert):
    """TLS connections made and dropped in every state keep the references
    that requests touch where they were, and (unsanitized) RSS flat."""
    hello = client_hello()
    port = roomy_tls.port
    tls_churn(port, cert, 200, hello)           # warm: sessions, caches
    before = tls_refcounts(port, cert)
    rss0 = rss_kb(roomy_tls.pid)
    tls_churn(port, cert, 2000 if not SANITIZED else 300, hello)
    tls_churn(port, cert, 1, hello)             # the server has caught up
    assert tls_refcounts(port, cert) == before
    if not SANITIZED:
        assert rss_kb(roomy_tls.pid) - rss0 < RSS_GROWTH_KB
    assert not roomy_tls.problem(), roomy_tls.problem()


def tls_refcounts(port, cert):
    ctx = ssl.create_default_context(cafile=cert[0])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="localhost")
    with s:
        s.sendall(build_request("GET", "/refcounts", headers={"Connection": "close"}))
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    return json.loads(got.partition(b"\r\n\r\n")[2])


# ---- in-process refcounts on Response -------------------------------------------

def _unique_str(tag):
    return "".join([tag, "-", str(id(object())), "-payload \u00e9"])


def _assert_refcounts_stable(make, *objs, n=10_000):
    for _ in range(100):            # warm caches
        make()
    gc.collect()
    before = [sys.getrefcount(o) for o in objs]
    for _ in range(n):
        make()
    gc.collect()
    after = [sys.getrefcount(o) for o in objs]
    assert after == before


def test_response_text_refcount():
    from fulmen import Response
    s = _unique_str("text")
    mime = _unique_str("mime").replace(" ", "").replace("\u00e9", "")
    _assert_refcounts_stable(lambda: Response(text=s), s, Response)
    _assert_refcounts_stable(lambda: Response(text=s, mime_type=mime, encoding="utf-8"), s, mime)
    _assert_refcounts_stable(lambda: Response(text=s).text, s)
    _assert_refcounts_stable(lambda: Response(text=s).body, s)


def test_response_body_refcount():
    from fulmen import Response
    b = _unique_str("body").encode()
    ba = bytearray(b)
    _assert_refcounts_stable(lambda: Response(body=b), b, Response)
    _assert_refcounts_stable(lambda: Response(body=b).body, b)
    _assert_refcounts_stable(lambda: Response(body=ba), ba)
    _assert_refcounts_stable(lambda: Response(body=memoryview(b)), b)

    def reassign():
        r = Response(body=b"x")
        r.body = b
        r.body = b
        return r
    _assert_refcounts_stable(reassign, b)


def test_response_json_refcount():
    from fulmen import Response
    key = _unique_str("key")
    val = _unique_str("val")
    inner = [val, 1, 2.5, None, True, {"k": val}]
    obj = {key: inner, "n": 12345678901234567890}
    _assert_refcounts_stable(lambda: Response(json=obj), obj, key, val, inner)
    _assert_refcounts_stable(lambda: Response(json=obj).json, obj, key, val)
    _assert_refcounts_stable(lambda: Response(json=obj).body, obj, key, val)


def test_response_headers_and_cookies_refcount():
    from fulmen import Response
    name = _unique_str("X-Name").replace(" ", "").replace("\u00e9", "")
    value = _unique_str("value").replace("\u00e9", "")
    headers = {name: value}
    pairs = [(name, value)]
    _assert_refcounts_stable(lambda: Response(text="x", headers=headers), headers, name, value)
    _assert_refcounts_stable(lambda: Response(text="x", headers=pairs), pairs, name, value)
    _assert_refcounts_stable(lambda: Response(text="x", headers=headers).headers, name, value)

    def mutate():
        r = Response(text="x")
        r.headers[name] = value
        r.headers = headers
        r.code = 201
        return r
    _assert_refcounts_stable(mutate, name, value, headers)
    cookies = {"c": value}
    _assert_refcounts_stable(lambda: Response(text="x", cookies=cookies), cookies, value)


def test_failed_response_construction_refcount():
    from fulmen import Response
    s = _unique_str("bad")
    b = s.encode()

    def bad():
        for kw in ({"text": s, "body": b}, {"headers": {"X-Bad": s + "\r\n"}},
                   {"text": s, "code": -1}, {"body": s}, {"json": {s: object()}}):
            try:
                Response(**kw)
            except (TypeError, ValueError):
                pass
    _assert_refcounts_stable(bad, s, b, n=2000)
