"""Pipelining: any depth, sync and async views mixed, async views finishing
out of order; responses must come back in request order."""
import base64
import random
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import _app_fixture, skip_if_sanitized
from .rawhttp import Conn, build_request, chunked
from .server import rss_kb

KINDS = ["p", "ap", "an"]          # sync, async with a random sleep, async without await


def pipeline(kinds):
    return [(i, "/%s/%d" % (k, i)) for i, k in enumerate(kinds)]


def check_in_order(c, reqs):
    for i, path in reqs:
        r = c.read_response()
        assert r.status == 200, (path, r)
        assert r.body == str(i).encode() and r.header("X-Idx") == str(i), (
            "response for request %d (%s) came back as %r" % (i, path, r.body))


def test_pipeline_150_in_one_write(basic):
    rng = random.Random(1)
    reqs = pipeline(rng.choice(KINDS) for _ in range(150))
    with Conn(basic.port) as c:
        c.send(b"".join(build_request("GET", p) for _, p in reqs))
        check_in_order(c, reqs)
        assert c.request("GET", "/").status == 200


def test_pipeline_all_async_behind_slow_view(basic):
    # Japronto broke with more than 10 requests queued behind an async view.
    reqs = [(0, "/sleepy")] + pipeline(["an"] * 300)[1:]
    with Conn(basic.port) as c:
        c.send(b"".join(build_request("GET", p) for _, p in reqs))
        assert c.read_response().body == b"slept"
        check_in_order(c, reqs[1:])


def test_pipeline_random_pieces(basic):
    rng = random.Random(2)
    reqs = pipeline(rng.choice(KINDS) for _ in range(120))
    data = b"".join(build_request("GET", p) for _, p in reqs)
    cuts = rng.sample(range(1, len(data)), 60)
    with Conn(basic.port) as c:
        c.send_pieces(data, cuts)
        check_in_order(c, reqs)


def test_pipeline_with_bodies(basic):
    # Content-Length and chunked bodies interleaved with bodiless requests and
    # async views; each echo must carry its own body.
    rng = random.Random(3)
    data, expected = [], []
    for i in range(60):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
        kind = i % 4
        if kind == 0:
            data.append(build_request("POST", "/echo?i=%d" % i, body=body))
        elif kind == 1:
            data.append(build_request("POST", "/aecho?i=%d" % i,
                                      headers={"Transfer-Encoding": "chunked"})
                        + chunked(body, sizes=[rng.randrange(1, 500)]))
        elif kind == 2:
            body = b""
            data.append(build_request("GET", "/echo?i=%d" % i))
        else:
            data.append(build_request("PUT", "/aecho?i=%d" % i, body=body))
        expected.append((i, body))
    blob = b"".join(data)
    with Conn(basic.port) as c:
        c.send_pieces(blob, rng.sample(range(1, len(blob)), 40))
        for i, body in expected:
            e = c.read_response().json()
            assert e["query_string"] == "i=%d" % i
            assert base64.b64decode(e["body"]) == body, i


def test_pipeline_with_errors_in_the_middle(basic):
    # 500s and 404s and 405s do not disturb the order or the connection.
    paths = ["/p/0", "/boom", "/ap/2", "/aboom", "/nope", "/an/5", "/boom", "/p/7"]
    with Conn(basic.port) as c:
        c.send(b"".join(build_request("GET", p) for p in paths)
               + build_request("POST", "/only-get", body=b"zz") + build_request("GET", "/p/9"))
        statuses = [c.read_response() for _ in range(len(paths) + 2)]
        assert [r.status for r in statuses] == [200, 500, 200, 500, 404, 200, 500, 200, 405, 200]
        assert [r.body for r in statuses if r.status == 200] == [b"0", b"2", b"5", b"7", b"9"]


def test_head_in_the_middle_of_a_pipeline(basic):
    # HEAD answers carry no body (and no Content-Length): every answer after
    # them reads intact.
    rng = random.Random(4)
    reqs = []
    for i in range(60):
        method = "HEAD" if i % 3 == 1 else "GET"
        path = rng.choice(["/p/%d", "/ap/%d", "/an/%d"]) % i
        reqs.append((method, path, i))
    # other kinds of answer, each somewhere between two of those
    others = ["/json", "/nope", "/boom", "/header-crlf", "/code/204", "/big/70000"]
    for path in others:
        reqs.insert(rng.randrange(1, len(reqs)), ("HEAD", path, None))
    with Conn(basic.port) as c:
        expect = {}
        for path in others:
            g = c.request("GET", path)
            expect[path] = (g.status, None)
        c.send(b"".join(build_request(m, p) for m, p, _ in reqs)
               + build_request("GET", "/p/99", headers={"Connection": "close"}))
        for method, path, i in reqs:
            r = c.read_response(head=method == "HEAD")
            if i is None:
                assert (r.status, r.header("Content-Length")) == expect[path], (path, r)
                continue
            assert r.status == 200, (path, r)
            assert r.header("X-Idx") == str(i), (path, r)
            assert r.header("Content-Length") == (None if method == "HEAD" else str(len(str(i)))), (path, r)
            assert r.body == (b"" if method == "HEAD" else str(i).encode()), (path, r)
        assert c.read_response().body == b"99"
        assert c.at_eof(), "bytes after the last answer: %r" % c.buf[:100]


def test_each_split_point_of_a_request(basic):
    # Every byte boundary of a request with a chunked body, on one connection.
    data = (b"POST /echo?s=1 HTTP/1.1\r\nHost: h\r\nX-Thing: v a l\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer-A: t\r\n\r\n")
    with Conn(basic.port) as c:
        for cut in range(1, len(data)):
            c.send_pieces(data, [cut])
            e = c.read_response().json()
            assert base64.b64decode(e["body"]) == b"abcde", cut
            assert ["X-Thing", "v a l"] in e["headers"], cut


def test_every_byte_separately(basic):
    data = build_request("POST", "/echo", body=b"0123456789", headers={"X-Y": "z"}) * 2
    with Conn(basic.port) as c:
        c.send_pieces(data, range(1, len(data)))
        for _ in range(2):
            assert base64.b64decode(c.read_response().json()["body"]) == b"0123456789"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=60),
       data=st.data())
def test_pipeline_hypothesis(basic, kinds, data):
    reqs = pipeline(kinds)
    blob = b"".join(build_request("GET", p) for _, p in reqs)
    cuts = data.draw(st.lists(st.integers(1, len(blob) - 1), max_size=10))
    with Conn(basic.port) as c:
        c.send_pieces(blob, cuts)
        check_in_order(c, reqs)



@skip_if_sanitized
@pytest.mark.parametrize("size,count", [(1_000_000, 120), (65536, 2000), (20000, 3000)])
def test_deep_pipeline_of_large_answers_is_read_only_as_they_leave(basic, size, count):
    """A few kB of pipelined requests for large answers, from a client that
    does not read: the server must stop taking requests once the output
    waits (backpressure), not answer the whole read into memory, which
    was about size * count bytes.  Then every answer arrives, in order."""
    pid = basic.pid
    rss0 = rss_kb(pid)
    with Conn(basic.port, timeout=30) as c:
        c.send(build_request("GET", "/big/%d" % size) * count)
        time.sleep(0.5)
        grown = rss_kb(pid) - rss0
        assert grown < 24 * 1024, "RSS grew by %d kB for %d unread answers" % (grown, count)
        want = (bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        for _ in range(count):
            r = c.read_response()
            assert r.status == 200 and r.body == want
        assert c.request("GET", "/").body == b"Hello world!"


basic_transport = pytest.fixture(_app_fixture("basic_transport"), name="basic_transport")


@pytest.mark.parametrize("io", ["direct", "transport"])
@pytest.mark.parametrize("first", ["/hold/pipe", "/hold-stream"])
def test_answers_queued_behind_a_waiting_one_stop_the_reading(request, io, first):
    """Answers of sync views queue behind one that is not ready: an async
    view that waits, or a streamed body that waits.  A client that pipelines
    without end and never reads made the server take every request and
    queue its answer (1.9 GB of RSS in 3 s).  The queue must stop the
    reading at its high-water mark (64 answers), as for async views."""
    srv = request.getfixturevalue("basic" if io == "direct" else "basic_transport")
    n = 400
    with Conn(srv.port) as probe, Conn(srv.port) as c:
        assert c.request("GET", "/").status == 200  # direct I/O reads from now on
        before = probe.request("GET", "/dispatched").json()
        # one send: loopback hands it to the server in one read
        c.send(build_request("GET", first) +
               b"".join(build_request("GET", "/p/%d" % i) for i in range(n)))
        polls = 0
        while probe.request("GET", "/held").json() == 0:
            polls += 1
        taken = probe.request("GET", "/dispatched").json() - before - polls - 2
        assert probe.request("GET", "/release").body == b"released"
        r = c.read_response()
        assert r.status == 200
        assert r.body == (b"first,last" if first == "/hold-stream" else b"/hold/pipe")
        check_in_order(c, [(i, "/p/%d" % i) for i in range(n)])
        # the waiting one and 63 behind it fill the queue; nothing more is read
        assert taken <= 80, "%d requests were taken behind one not answered" % taken


@pytest.mark.parametrize("first", ["/hold/pipe", "/hold-stream"])
def test_large_answers_queued_behind_a_waiting_one_stop_the_reading_at_a_burst(basic, first):
    """1 MB answers of sync views behind one that is not ready: the queue
    stops the reading once the answers it holds pass a burst's bytes, not
    only at 64 answers (64 MB for a client that reads none of them)."""
    n, size = 20, 1_000_000
    with Conn(basic.port) as probe, Conn(basic.port, timeout=30) as c:
        assert c.request("GET", "/").status == 200  # direct I/O reads from now on
        before = probe.request("GET", "/dispatched").json()
        c.send(build_request("GET", first) + build_request("GET", "/big/%d" % size) * n)
        polls = 0
        while probe.request("GET", "/held").json() == 0:
            polls += 1
        taken = probe.request("GET", "/dispatched").json() - before - polls - 2
        assert probe.request("GET", "/release").body == b"released"
        assert c.read_response().status == 200
        want = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        for _ in range(n):
            r = c.read_response()
            assert (r.status, r.body) == (200, want)
    # the waiting one and the first answer past 256 kB: then no more
    assert taken <= 2, "%d requests were taken behind one not answered" % taken


def test_views_that_wait_run_at_most_24_at_once_per_connection(basic):
    """Each async view that waits may end with an answer of any size, which
    must then wait its turn: a client pipelining 40 of them (and reading
    none) has 24 run at once; the rest when those are answered."""
    with Conn(basic.port) as probe, Conn(basic.port, timeout=30) as c:
        c.send(b"".join(build_request("GET", "/hold/%d" % i) for i in range(40)))
        while probe.request("GET", "/held").json() == 0:
            pass
        # their first steps ran as the read was taken: the count is final
        assert probe.request("GET", "/held").json() == 24
        assert probe.request("GET", "/release").body == b"released"
        assert [c.read_response().body for _ in range(24)] == [
            b"/hold/%d" % i for i in range(24)]
        while probe.request("GET", "/held").json() < 16:
            pass
        assert probe.request("GET", "/release").body == b"released"
        assert [c.read_response().body for _ in range(16)] == [
            b"/hold/%d" % i for i in range(24, 40)]


@pytest.mark.parametrize("io", ["direct", "transport"])
@pytest.mark.parametrize("close", [False, True])
def test_a_view_writing_to_its_transport_comes_after_the_answers_before_it(request, io, close):
    """request.transport.write() and .close() in a view of a pipelined
    request: the answers to the requests before it, made in the same burst,
    go first (they went after the raw bytes, or were lost by the close)."""
    srv = request.getfixturevalue("basic" if io == "direct" else "basic_transport")
    with Conn(srv.port) as c:
        assert c.request("GET", "/").status == 200  # direct I/O reads from now on
        c.send(build_request("GET", "/p/1") + build_request("GET", "/p/2") +
               build_request("GET", "/transport-write" + ("?close" if close else "")))
        check_in_order(c, [(1, "/p/1"), (2, "/p/2")])
        if close:
            # then the connection ends (under direct I/O the view's own
            # answer, sent before the transport's close takes effect, too)
            rest = []
            while not c.at_eof():
                rest.append(c.read_response().body)
            assert rest in ([], [b"after"]), rest
        else:
            assert c._read_exact(3) == b"RAW"
            assert c.read_response().body == b"after"
