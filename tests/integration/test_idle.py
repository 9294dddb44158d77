"""Idle keep-alive connections (apps/idle.py).

A plain idle connection is one small object (bench/RESULTS.md, idle memory):
the state of the rarer features lives in a block made on first use, and an
idle connection gives that block and its response queue back a second after
its last request (conn_trim in conn.c).  These tests check that every
feature works again on the same connection after it gave them back, and that
a connection that is still busy keeps them."""
import hashlib
import sys
import time

import pytest

from fulmen import _core

from .conftest import _app_fixture
from .rawhttp import Conn, build_request, chunked
from .wsclient import OP_TEXT, WSClient

idle = pytest.fixture(_app_fixture("idle"), name="idle")

TRIM_DEADLINE = 15.0


def trims(srv):
    with Conn(srv.port) as probe:
        return probe.request("GET", "/trims").json()["trims"]


def wait_trims(srv, above):
    """Poll /trims until the server has trimmed more than `above` times.
    Only the test's own connections can be trimmed: the probes close."""
    deadline = time.monotonic() + TRIM_DEADLINE
    while True:
        t = trims(srv)
        if t > above:
            return t
        if time.monotonic() > deadline:
            pytest.fail("no idle connection was trimmed (trims stayed at %d)" % t)
        time.sleep(0.1)


def digest(body):
    return {"len": len(body), "sha": hashlib.sha256(body).hexdigest()}


def use_every_feature(c, k):
    """On connection c: a queued answer, a streamed response, a chunked
    body, stream=True bodies (Content-Length and chunked), and a pipeline
    mixing them."""
    assert c.request("GET", "/a/%d" % k).text == "async %d" % k
    r = c.request("GET", "/s/5")
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.body == b"0;1;2;3;4;"
    body = bytes(range(256)) * 20 + b"%d" % k
    c.send(build_request("POST", "/body", headers={"Transfer-Encoding": "chunked"})
           + chunked(body, sizes=[1000, 7, 3000]))
    assert c.read_final().json() == digest(body)
    assert c.request("POST", "/sbody", body=body).json() == digest(body)
    c.send(build_request("POST", "/sbody", headers={"Transfer-Encoding": "chunked"})
           + chunked(body, sizes=[100, 4000]))
    assert c.read_final().json() == digest(body)
    c.send(build_request("GET", "/a/p%d" % k) + build_request("GET", "/s/3")
           + build_request("GET", "/"))
    assert [c.read_final().body for _ in range(3)] == [b"async p%d" % k, b"0;1;2;", b"hi"]


def test_connection_object_is_small():
    # 160 bytes, 176 with the GC header: pymalloc's 176-byte class.  A field
    # that crosses it costs every idle connection 16 bytes: rare state
    # belongs in conn_ext.
    if sys.maxsize < 2 ** 32 or sys.implementation.name != "cpython":
        pytest.skip("sizes are for 64-bit CPython")
    assert _core.Connection.__basicsize__ <= 160


def test_features_work_again_after_the_connection_gave_them_back(idle):
    with Conn(idle.port, timeout=10) as c:
        before = trims(idle)
        use_every_feature(c, 1)
        after = wait_trims(idle, before)       # this connection, idle
        use_every_feature(c, 2)
        wait_trims(idle, after)                # and again
        # the access log fetched the peer again after the first trim
        assert idle.wait_for_stderr('"GET /a/2 HTTP/1.1" 200')
        line = [l for l in idle.stderr().splitlines() if '"GET /a/2 HTTP/1.1" 200' in l]
        assert line and line[0].startswith("127.0.0.1 - - ["), line
        # last, the same connection becomes a WebSocket
        ws = WSClient(idle.port, "/ws")
        ws.sock, ws.buf = c.sock, c.buf
        ws.sock.sendall(ws.handshake_request())
        status, _, _ = ws.read_response()
        assert status == 101
        ws.send_text("after idling")
        assert ws.recv_message() == (OP_TEXT, b"after idling")
        ws.close()


def test_busy_connections_keep_their_state_across_sweeps(idle):
    body = b"x" * 5000
    with Conn(idle.port, timeout=10) as streaming, Conn(idle.port, timeout=10) as upload, \
            Conn(idle.port, timeout=10) as other:
        before = trims(idle)
        # a streamed response that pauses for 2.5 s ...
        streaming.send(build_request("GET", "/paused"))
        # ... a stream=True body that stops half way ...
        upload.send(build_request("POST", "/sbody", headers={"Content-Length": str(len(body))})
                    + body[:2000])
        # ... while another connection goes idle and is trimmed
        assert other.request("GET", "/a/1").text == "async 1"
        wait_trims(idle, before)
        upload.send(body[2000:])
        assert upload.read_final().json() == digest(body)
        r = streaming.read_final()
        assert r.body == b"first;second;"
        for c in (streaming, upload, other):
            use_every_feature(c, 3)


def test_many_idle_connections_are_served_again(idle):
    n = 200
    conns = [Conn(idle.port, timeout=10) for _ in range(n)]
    try:
        before = trims(idle)
        for i, c in enumerate(conns):
            assert c.request("GET", "/a/%d" % i).text == "async %d" % i
        deadline = time.monotonic() + TRIM_DEADLINE
        while trims(idle) < before + n:
            assert time.monotonic() < deadline, "the idle connections were not all trimmed"
            time.sleep(0.1)
        for i, c in enumerate(conns):
            c.send(build_request("GET", "/a/%d" % i) + build_request("GET", "/s/2"))
            assert c.read_final().text == "async %d" % i
            assert c.read_final().body == b"0;1;"
    finally:
        for c in conns:
            c.close()
