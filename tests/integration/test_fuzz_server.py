"""Whole-server fuzz: random, mutated and truncated request streams sent to a
live server (the small-limits app) in one piece, split at random points, and
pipelined.  Each stream gets zero or more well-formed HTTP/1.1 responses,
then either more of them or a clean close; after every example the worker is
alive and serves a normal request."""
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import _app_fixture
from .rawhttp import Conn, ProtocolError, build_request, chunked

import pytest

limits = pytest.fixture(_app_fixture("limits"), name="limits")

VALID = [
    build_request("GET", "/"),
    build_request("GET", "/sleep/3"),
    build_request("GET", "/static?x=1&y=%20"),
    build_request("POST", "/len", body=b"hello world", headers={"Content-Type": "text/plain"}),
    build_request("POST", "/alen", headers={"Transfer-Encoding": "chunked"})
    + chunked(b"0123456789abcdef", sizes=[3, 7], ext=b";e=1", trailers=b"T: v\r\n"),
    build_request("POST", "/len5000", body=b"b" * 1200, headers={"Expect": "100-continue"}),
    build_request("GET", "/boom"),
    build_request("GET", "/aboom"),
    build_request("GET", "/no/such/route"),
    build_request("GET", "/", version="1.0", headers={"Connection": "keep-alive"}, host=None),
    build_request("DELETE", "http://x/len", body=b"abc"),
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    build_request("GET", "/", headers=[("Cookie", "a=1; b=2"), ("X-List", "a, b,,c")]),
]

SPECIAL = b"\r\n\x00 \t:;,\"0123456789abcdefxXF-+\x0b\x7f\xff"
# Statuses after which the connection must end.
CLOSING = {400, 408, 413, 414, 431, 501, 505}

SETTINGS = settings(max_examples=150, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def mutate(draw, data):
    n = draw(st.integers(0, 4))
    for _ in range(n):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "insert", "delete", "special", "dup-line",
                                   "drop-line", "swap-lines", "cut"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data = data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1:]
        elif op == "insert":
            data = data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
        elif op == "delete":
            data = data[:pos] + data[pos + draw(st.integers(1, 10)):]
        elif op == "special":
            ch = draw(st.sampled_from(list(SPECIAL)))
            data = data[:pos] + bytes([ch]) + data[pos + draw(st.integers(0, 1)):]
        elif op == "cut":
            data = data[:pos]
        else:
            lines = data.split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "dup-line":
                lines.insert(i, lines[i])
            elif op == "drop-line":
                del lines[i]
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            data = b"\r\n".join(lines)
    return data


@st.composite
def streams(draw):
    kind = draw(st.sampled_from(["mutated"] * 5 + ["valid", "random", "truncated"]))
    if kind == "random":
        data = draw(st.binary(min_size=1, max_size=400))
    else:
        data = b"".join(draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=6)))
        if kind == "truncated":
            data = data[:draw(st.integers(1, len(data) - 1))]
        elif kind == "mutated":
            data = mutate(draw, data)
    data = data or b"\r\n"
    cuts = draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=6))
    # Mostly half-closed (the server sees EOF); sometimes left open, so the
    # server's own timers must end the exchange.
    half_close = draw(st.sampled_from([True] * 9 + [False]))
    return kind, data, cuts, half_close


def read_all(c):
    """Every response until the server closes; strict parsing."""
    out = []
    while True:
        try:
            out.append(c.read_response())
        except EOFError:
            return out


def check(resps, data):
    max_requests = data.count(b"HTTP/") + data.count(b"http/") + 1
    finals = [r for r in resps if r.status >= 200]
    assert len(finals) <= max_requests, "more responses than requests: %r" % resps
    for i, r in enumerate(resps):
        assert r.version == "1.1", r
        assert 100 <= r.status <= 599, r
        if r.status >= 200:
            assert r.header("Server") == "fulmen", r
        if r.status >= 200 and r.status not in (204, 304):
            assert int(r.header("Content-Length")) == len(r.body), r
        if r.status in CLOSING:
            assert (r.header("Connection") or "").lower() == "close", r
            assert i == len(resps) - 1, "a response after a %d: %r" % (r.status, resps)


@SETTINGS
@given(case=streams())
def test_fuzzed_streams(limits, case):
    kind, data, cuts, half_close = case
    with Conn(limits.port, timeout=5.0) as c:
        try:
            c.send_pieces(data, cuts)
            if half_close:
                c.sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass        # the server gave up on the stream early: allowed
        try:
            resps = read_all(c)
        except TimeoutError:
            raise AssertionError("server neither answered nor closed within 5 s: %r" % data[:300])
        except ProtocolError as e:
            raise AssertionError("malformed response to %r: %s" % (data[:300], e))
    check(resps, data)
    assert limits.alive(), limits.problem()
    with Conn(limits.port) as c:
        assert c.request("GET", "/").body == b"ok"


@SETTINGS
@given(reqs=st.lists(st.sampled_from(VALID), min_size=2, max_size=30),
       cuts=st.lists(st.integers(1, 20000), max_size=20))
def test_valid_pipelines_split_anywhere_are_all_answered(limits, reqs, cuts):
    data = b"".join(reqs)
    with Conn(limits.port) as c:
        c.send_pieces(data, [x % len(data) for x in cuts if x % len(data)])
        c.sock.shutdown(socket.SHUT_WR)
        resps = [r for r in read_all(c) if r.status >= 200]
    check(resps, data)
    expected = reqs         # (the HTTP/1.0 one asks for keep-alive)
    assert len(resps) == len(expected), resps
    statuses = {b"/boom": 500, b"/aboom": 500, b"/no/such/route": 404, b"OPTIONS": None}
    for req, resp in zip(expected, resps):
        want = next((s for k, s in statuses.items() if k in req.split(b"\r\n", 1)[0]), 200)
        if want is None:
            assert 200 <= resp.status < 300
        else:
            assert resp.status == want, (req[:60], resp)
