"""Direct I/O: after its first read, a plain socket is read with recv() and
written with send() by the server itself, outside the uvloop transport (see
the top of connio.c).  These tests check that it is engaged, and that the
behaviours which depend on the data path hold with it and without it
(FULMEN_DIRECT_IO=0, the basic_transport app)."""
import select
import socket
import struct
import threading

import pytest

from .conftest import _app_fixture, skip_if_sanitized
from .test_limits import proc_field
from .rawhttp import Conn, build_request

basic_transport = pytest.fixture(_app_fixture("basic_transport"), name="basic_transport")


@pytest.fixture(params=["direct", "transport"])
def app(request):
    return request.getfixturevalue("basic" if request.param == "direct" else "basic_transport")


def test_plain_socket_goes_direct_after_its_first_read(basic):
    with Conn(basic.port) as c:
        assert c.request("GET", "/p/1").body == b"1"   # read by the transport
        mode = c.request("GET", "/io").json()           # read by the server
    assert mode["direct_io"] is True
    assert mode["direct"] >= 1


def test_direct_io_off(basic_transport):
    with Conn(basic_transport.port) as c:
        c.request("GET", "/p/1")
        mode = c.request("GET", "/io").json()
    assert (mode["direct_io"], mode["direct"]) == (False, 0)


def test_closed_connections_leave_direct_io(basic):
    conns = [Conn(basic.port) for _ in range(20)]
    for c in conns:
        c.request("GET", "/p/1")
        c.request("GET", "/p/2")
    with Conn(basic.port) as probe:
        probe.request("GET", "/p/0")
        during = probe.request("GET", "/io").json()["direct"]
        for c in conns:
            c.close()
        # the closes reach the server in its own time: ask until it has
        # seen all of them (each answer is one more loop turn)
        for _ in range(1000):
            after = probe.request("GET", "/io").json()["direct"]
            if after <= during - 20:
                break
    assert during >= 21
    assert after <= during - 20


def test_output_larger_than_the_socket_takes(app):
    # One read asks for ~12 MB of answers while the client reads nothing and
    # has a tiny receive buffer: send() comes up short, the rest goes to the
    # transport (which pauses the reading), and once the client has read it
    # all, send() takes over again on the same connection.
    n = 400
    sizes = [30000 + i for i in range(n)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", app.port))
    c = Conn.__new__(Conn)
    c.sock, c.buf, c.eof = sock, bytearray(), False
    with c:
        assert c.request("GET", "/p/0").body == b"0"   # now under direct I/O
        data = b"".join(build_request("GET", "/big/%d" % k) for k in sizes)
        sender = threading.Thread(target=c.send, args=(data,))
        sender.start()
        got = [len(c.read_response().body) for _ in range(n)]
        sender.join()
        assert got == sizes
        for i in range(3):
            assert c.request("GET", "/p/%d" % i).body == b"%d" % i


def test_pipelined_mixed_sync_async(app):
    with Conn(app.port) as c:
        c.request("GET", "/p/0")
        reqs = [build_request("GET", ("/p/%d" if i % 3 else "/ap/%d") % i) for i in range(200)]
        c.send(b"".join(reqs))
        assert [c.read_response().body for _ in range(200)] == [b"%d" % i for i in range(200)]


def test_half_close_after_direct_takeover(app):
    with Conn(app.port) as c:
        c.request("GET", "/p/0")
        c.send(build_request("GET", "/p/1") + build_request("GET", "/ap/2"))
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_response().body == b"1"
        assert c.read_response().body == b"2"
        assert c.at_eof()


def test_reset_after_direct_takeover(app):
    c = Conn(app.port)
    c.request("GET", "/p/0")
    c.send(build_request("GET", "/sleepy") * 3)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()   # RST while answers are pending
    with Conn(app.port) as d:
        assert d.request("GET", "/p/9").body == b"9"


def test_a_request_kept_by_the_app_keeps_its_bytes(app):
    # reads share one reused buffer under direct I/O: a request the app keeps
    # must not see the bytes of later reads
    with Conn(app.port) as c:
        c.request("GET", "/p/0")
        assert c.request("POST", "/stash/one?q=1", headers={"X-Mark": "first"},
                         body=b"body-one").body == b"kept"
        for i in range(5):   # later reads overwrite the buffer
            c.send(build_request("GET", "/p/%d" % i) * 3)
            for _ in range(3):
                c.read_response()
        assert c.request("GET", "/stashed").json() == {
            "path": "/stash/one", "qs": "q=1", "x": "first", "body": "body-one"}


@skip_if_sanitized
def test_waiting_requests_do_not_keep_the_read_buffer(basic):
    # a request that waits (an async view suspended) gets its own copy of
    # its bytes: the 64 KB buffer reads land in is not pinned by each one
    n = 300
    conns = [Conn(basic.port) for _ in range(n)]
    try:
        for c in conns:
            c.request("GET", "/p/0")          # now under direct I/O
        before = proc_field(basic.pid, "status", "VmData")
        for c in conns:
            c.send(build_request("GET", "/hold/x"))
        with Conn(basic.port) as probe:
            for _ in range(10_000):           # each answer is a turn of the loop
                if probe.request("GET", "/held").json() >= n:
                    break
            during = proc_field(basic.pid, "status", "VmData")
            assert probe.request("GET", "/release").body == b"released"
        for c in conns:
            assert c.read_response().body == b"/hold/x"
    finally:
        for c in conns:
            c.close()
    # (VmData, not RSS: a pinned buffer is mostly untouched pages) a pinned
    # buffer each would be n * 64 KB; a copy, a waiting request and its
    # Task are a few KB
    assert during - before < n * 16, (before, during)


def test_async_answers_of_one_batch_leave_in_one_write(app):
    # 24 pipelined requests to a view that awaits asyncio.sleep(0): every
    # view suspends once, and all of them finish in the same turn of the
    # loop.  Their answers must leave together, not in one write each.
    n = 24
    with Conn(app.port) as c:
        c.request("GET", "/p/0")
        before = int(c.request("GET", "/writes").body)
        c.send(b"".join(build_request("GET", "/aecho?i=%d" % i) for i in range(n)))
        bodies = [c.read_response().json() for _ in range(n)]
        after = int(c.request("GET", "/writes").body)
    assert [b["query_string"] for b in bodies] == ["i=%d" % i for i in range(n)]
    # the /writes answer itself is one write; the batch one (two if its
    # bytes happened to arrive in two reads); one write per answer: 24
    assert after - before - 1 <= 2


def test_a_ready_answer_does_not_wait_for_a_slow_one_behind_it(app):
    # the first view finishes at once; the second waits for /release.  The
    # first answer is held back one turn of the loop at most, not until the
    # second is ready.
    with Conn(app.port) as c, Conn(app.port) as other:
        c.request("GET", "/p/0")
        c.send(build_request("GET", "/aecho?first") + build_request("GET", "/hold/second"))
        assert c.read_response().json()["query_string"] == "first"
        for _ in range(1000):  # the second view is waiting (it normally is by now)
            if other.request("GET", "/held").json() >= 1:
                break
        assert other.request("GET", "/release").body == b"released"
        assert c.read_response().body == b"/hold/second"


def test_out_of_descriptors_at_the_first_read_leaves_direct_io_on(tmp_path):
    # A flood of connections uses up the server's descriptors before any
    # request came: the epoll set that direct I/O needs cannot be made at
    # the first read.  That connection stays with the transport; once
    # descriptors are free again, the next one goes direct.
    import sys
    from .server import APPS, Server
    code = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)); "
            "sys.argv = [sys.argv[1]]; runpy.run_path(sys.argv[0], run_name='__main__')")
    srv = Server([sys.executable, "-c", code, APPS + "/basic.py"]).start()
    try:
        flood = []
        for _ in range(60):
            flood.append(Conn(srv.port, timeout=2))
        # the server has run out: it closes the connections it has no
        # descriptor for (libuv's EMFILE handling); until then it may still
        # have one for the epoll set when the first request comes
        assert select.select([c.sock for c in flood], [], [], 10)[0]
        first = flood.pop(0)
        assert first.request("GET", "/p/1").body == b"1"   # no descriptor for epoll now
        mode = first.request("GET", "/io").json()
        assert mode["direct_io"] is True and mode["direct"] == 0, mode
        for c in flood:
            c.close()
        for _ in range(1000):           # until the server has seen the closes
            if first.request("GET", "/io").json()["connections"] <= 1:
                break
        first.close()
        with Conn(srv.port) as c:
            assert c.request("GET", "/p/2").body == b"2"
            mode = c.request("GET", "/io").json()
        assert (mode["direct_io"], mode["direct"]) == (True, 1), mode
        assert "Too many open files" not in srv.stderr()
    finally:
        srv.stop()
