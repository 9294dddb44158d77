"""Hostile and broken input: whatever arrives, the server answers with
well-formed responses (or nothing), never answers after an error, and stays
up (the fixture checks that after every test)."""
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .rawhttp import Conn, build_request

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

VALID = [
    build_request("GET", "/p/1"),
    build_request("POST", "/echo?x=1", body=b"hello", headers={"X-A": "b"}),
    build_request("PUT", "/aecho", headers={"Transfer-Encoding": "chunked"})
    + b"3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n",
    build_request("GET", "/ap/2", version="1.0", headers={"Connection": "keep-alive"}),
]


def drain(port, data):
    """Send data, half-close, read responses until EOF; return them."""
    with Conn(port) as c:
        try:
            c.send(data)
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass                     # the server may already have given up
        out = []
        while True:
            try:
                out.append(c.read_response())
            except EOFError:
                return out


def check_stream(resps, max_requests):
    assert len(resps) <= max_requests
    for i, r in enumerate(resps):
        assert 200 <= r.status <= 599, r
        assert r.header("Server") == "fulmen"
        assert int(r.header("Content-Length")) == len(r.body)
        if r.status in (400, 413, 414, 431, 501, 505):
            assert r.header("Connection").lower() == "close"
            assert i == len(resps) - 1, "response after a framing error: %r" % resps


@SETTINGS
@given(req=st.sampled_from(VALID), pos=st.integers(0, 200), junk=st.binary(min_size=1, max_size=8),
       mode=st.sampled_from(["insert", "replace", "truncate"]))
def test_mutated_requests(basic, req, pos, junk, mode):
    pos = pos % len(req)
    if mode == "insert":
        data = req[:pos] + junk + req[pos:]
    elif mode == "replace":
        data = req[:pos] + junk + req[pos + len(junk):]
    else:
        data = req[:pos]
    resps = drain(basic.port, data + build_request("GET", "/p/9"))
    check_stream(resps, 4)


@SETTINGS
@given(data=st.binary(min_size=1, max_size=300))
def test_random_bytes(basic, data):
    check_stream(drain(basic.port, data), 10)


CTL = [chr(c) for c in range(0x00, 0x20) if c not in (0x09,)] + ["\x7f"]


@SETTINGS
@given(before=st.text("abc xyz", max_size=5), ctl=st.sampled_from(CTL),
       after=st.text("abc xyz", max_size=5), where=st.sampled_from(["value", "name", "target"]))
def test_control_characters_are_rejected(basic, before, ctl, after, where):
    # CR and LF included: a lone CR or LF inside a line is not a line ending.
    bad = before + ctl + after
    if where == "value":
        head = "GET /p/1 HTTP/1.1\r\nHost: x\r\nX-V: a%sb\r\n\r\n" % bad
    elif where == "name":
        head = "GET /p/1 HTTP/1.1\r\nHost: x\r\nX%s: 1\r\n\r\n" % bad.replace(" ", "")
    else:
        head = "GET /p/1%s HTTP/1.1\r\nHost: x\r\n\r\n" % bad.replace(" ", "")
    resps = drain(basic.port, head.encode("latin-1") + build_request("GET", "/p/2"))
    assert [r.status for r in resps] == [400], resps


def test_slowloris_does_not_block_others(basic):
    # A client that trickles a head byte by byte does not hold up anyone else.
    with Conn(basic.port) as slow:
        slow.send(b"GET /p/1 HTTP/1.1\r\n")
        for b in b"Host: x\r\nX-Slow: ":
            slow.send(bytes([b]))
            with Conn(basic.port) as other:
                assert other.request("GET", "/p/5").body == b"5"
        slow.send(b"1\r\n\r\n")
        assert slow.read_response().body == b"1"


H2O_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "conformance",
                          "h2o-http1-corpus")


@pytest.mark.skipif(not os.path.isdir(H2O_CORPUS), reason="shared/conformance/h2o-http1-corpus not present")
def test_h2o_fuzz_corpus(basic):
    # h2o's HTTP/1 fuzzing corpus, each input on a connection of its own and
    # half-closed after it: every one ends in well-formed answers (or none)
    # and a close, and the server then still answers
    names = sorted(os.listdir(H2O_CORPUS))
    assert len(names) > 1000
    for name in names:
        with open(os.path.join(H2O_CORPUS, name), "rb") as f:
            data = f.read()
        try:
            resps = drain(basic.port, data)
            assert len(resps) <= data.count(b"\n") + 1
            for i, r in enumerate(resps):
                assert 200 <= r.status <= 599 and r.header("Server") == "fulmen", r
                # (a HEAD answer has no Content-Length: read as a body to EOF)
                cl = r.header("Content-Length")
                assert cl is None or int(cl) == len(r.body), r
                if r.status in (400, 413, 414, 431, 501, 505):
                    assert r.header("Connection").lower() == "close", r
                    assert i == len(resps) - 1, "an answer after a framing error"
        except Exception as e:
            raise AssertionError("corpus input %s: %r" % (name, e)) from e
    assert drain(basic.port, build_request("GET", "/p/7"))[0].body == b"7"
