"""Request bodies: Content-Length, chunked (extensions, trailers), the body
size limit and Expect: 100-continue."""
import base64
import json
import random

import pytest

from .rawhttp import Conn, build_request, chunked

LIMIT = 10 * 1024 * 1024


def body_of(resp):
    assert resp.status == 200, resp
    return base64.b64decode(resp.json()["body"])


def test_empty_content_length_body(basic):
    with Conn(basic.port) as c:
        assert body_of(c.request("POST", "/echo", body=b"")) == b""


def test_body_in_pieces(basic):
    rng = random.Random(5)
    body = rng.randbytes(1024 * 1024)
    data = build_request("POST", "/len", body=body)
    with Conn(basic.port) as c:
        c.send_pieces(data, rng.sample(range(1, len(data)), 50))
        assert c.read_response().json() == {"len": len(body), "sum": sum(body) % 65521}


def test_body_at_the_limit_is_accepted(basic):
    body = b"\x07" * LIMIT
    with Conn(basic.port, timeout=20) as c:
        r = c.request("POST", "/len", body=body)
        assert r.status == 200
        assert r.json() == {"len": LIMIT, "sum": 7 * LIMIT % 65521}


def test_body_over_the_limit_is_413_before_the_body(basic):
    with Conn(basic.port) as c:
        # Only the head is sent: the 413 must come without the body.
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1))
        r = c.read_response()
        assert r.status == 413
        assert r.header("Connection").lower() == "close"
        assert c.at_eof()


def test_huge_content_length_is_413(basic):
    with Conn(basic.port) as c:
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n")
        assert c.read_response().status == 413
        assert c.at_eof()


def test_expect_100_over_the_limit_gets_413_not_100(basic):
    with Conn(basic.port) as c:
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % (LIMIT + 1))
        r = c.read_response()
        assert r.status == 413, "got %d before the final answer" % r.status


def test_chunked_body(basic):
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
    with Conn(basic.port) as c:
        c.send(raw)
        assert body_of(c.read_response()) == b"hello world"
        # The connection is in sync afterwards.
        assert c.request("GET", "/").body == b"Hello world!"


def test_chunked_with_extensions_and_trailers(basic):
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"A;name=value;flag\r\n0123456789\r\n"
           b"a;quoted=\"s;t \\\"q\\\"\"\r\nabcdefghij\r\n"
           b"0;last\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n")
    with Conn(basic.port) as c:
        c.send(raw + build_request("GET", "/p/1"))
        assert body_of(c.read_response()) == b"0123456789abcdefghij"
        assert c.read_response().body == b"1"


@pytest.mark.parametrize("ext", [b" ;a", b"\t;a", b"; a", b";a = b", b" ; a=b ; c",
                                 b";a\t=\t\"q \\\" ;\" ;b"])
def test_chunk_extension_bws_is_accepted(basic, ext):
    # RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS val ] );
    # RFC 9110 5.6.3: a recipient MUST parse and remove BWS.  The body is
    # framed exactly as without the whitespace, and the request behind it
    # is answered on the same connection.
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3" + ext + b"\r\nabc\r\n0" + ext + b"\r\n\r\n" + build_request("GET", "/p/1"))
    with Conn(basic.port) as c:
        c.send(raw)
        assert body_of(c.read_response()) == b"abc"
        assert c.read_response().body == b"1"


@pytest.mark.parametrize("ext", [b" ", b"\t", b";a ", b";a=b\t", b"; ", b";a= ",
                                 b"\x0b;a", b";\x0ca", b" ;a\n", b" ;a \rx"])
def test_chunk_extension_whitespace_elsewhere_is_rejected(basic, ext):
    # Whitespace only where the grammar has BWS: not before the CRLF of the
    # size line, not after '=' with no value, and SP / HTAB only (VT and FF
    # are not whitespace here).  400, then the connection closes.
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3" + ext + b"\r\nabc\r\n0\r\n\r\n" + build_request("GET", "/p/1"))
    with Conn(basic.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 400
        assert r.header("Connection") == "close"
        assert c.at_eof()


def test_chunked_uppercase_hex_and_leading_zeros(basic):
    body = bytes(range(256)) * 2
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"0000FF\r\n" + body[:255] + b"\r\n" + b"101\r\n" + body[255:] + b"\r\n0\r\n\r\n")
    with Conn(basic.port) as c:
        c.send(raw)
        assert body_of(c.read_response()) == body


def test_chunked_empty_body(basic):
    with Conn(basic.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert body_of(c.read_response()) == b""


def test_chunked_many_small_chunks_random_pieces(basic):
    rng = random.Random(9)
    body = rng.randbytes(200_000)
    data = (build_request("POST", "/len", headers={"Transfer-Encoding": "chunked"})
            + chunked(body, sizes=[1, 7, 100, 3000, 2]))
    with Conn(basic.port) as c:
        c.send_pieces(data, rng.sample(range(1, len(data)), 200))
        assert c.read_response().json() == {"len": len(body), "sum": sum(body) % 65521}


def test_chunked_large(basic):
    body = random.Random(4).randbytes(3 * 1024 * 1024)
    data = (build_request("POST", "/len", headers={"Transfer-Encoding": "chunked"})
            + chunked(body, sizes=[65536, 100_000]))
    with Conn(basic.port, timeout=20) as c:
        c.send(data)
        assert c.read_response().json() == {"len": len(body), "sum": sum(body) % 65521}


def test_transfer_encoding_is_case_insensitive(basic):
    with Conn(basic.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\n\r\n"
               b"2\r\nok\r\n0\r\n\r\n")
        assert body_of(c.read_response()) == b"ok"


@pytest.mark.parametrize("bad", [
    b"zz\r\nhello\r\n0\r\n\r\n",                 # size not hex
    b"5\r\nhelloXX0\r\n\r\n",                    # no CRLF after the data
    b"5\nhello\n0\n\n",                          # bare LF
    b"-5\r\nhello\r\n0\r\n\r\n",                 # negative size
    b" 5\r\nhello\r\n0\r\n\r\n",                 # leading space
    b"5 \r\nhello\r\n0\r\n\r\n",                 # trailing space, no extension
    b"5;\r\nhello\r\n0\r\n\r\n",                 # ";" without a name
    b"5;a=\"x\r\nhello\r\n0\r\n\r\n",             # unterminated quoted string
    b"5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",   # trailer without colon
])
def test_malformed_chunked_is_400_and_close(basic, bad):
    raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + bad
    with Conn(basic.port) as c:
        c.send(raw + build_request("GET", "/"))
        r = c.read_response()
        assert r.status == 400, r
        assert r.header("Connection").lower() == "close"
        assert c.at_eof()


def test_chunk_size_overflow_is_rejected(basic):
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"1ffffffffffffffffffff\r\nx\r\n")
    with Conn(basic.port) as c:
        c.send(raw)
        assert c.read_response().status in (400, 413)
        assert c.at_eof()


def test_chunked_body_over_the_limit_is_413(basic):
    # A single chunk that announces more than the limit is refused without
    # waiting for its data.
    raw = (b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"%x\r\n" % (LIMIT + 1))
    with Conn(basic.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 413
        assert r.header("Connection").lower() == "close"
        assert c.at_eof()


def test_chunked_body_over_the_limit_in_small_chunks_is_413(basic):
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"c" * (1 << 20))
    with Conn(basic.port, timeout=20) as c:
        c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(11):
                c.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass            # the server may close as soon as it has answered
        r = c.read_response()
        assert r.status == 413
        assert c.at_eof()


def test_expect_100_continue(basic):
    body = b"x" * 5000
    with Conn(basic.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
        interim = c.read_response()
        assert interim.status == 100
        assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.send(body)
        assert body_of(c.read_response()) == body
        # Next request on the same connection, without Expect: no 100.
        r = c.request("POST", "/echo", body=b"abc")
        assert r.interim == [] and body_of(r) == b"abc"


def test_expect_100_continue_chunked(basic):
    with Conn(basic.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        assert c.read_response().status == 100
        c.send(chunked(b"chunky body", sizes=[3]))
        assert body_of(c.read_response()) == b"chunky body"


def test_expect_100_continue_sent_with_body_anyway(basic):
    # A client that does not wait: at most one 100, then the final response.
    with Conn(basic.port) as c:
        c.send(build_request("POST", "/echo", body=b"eager",
                             headers={"Expect": "100-continue"}) + build_request("GET", "/p/2"))
        r = c.read_final()
        assert len(r.interim) <= 1 and body_of(r) == b"eager"
        assert c.read_response().body == b"2"


def test_expect_100_continue_pipelined_behind_async(basic):
    # The 100 must not overtake the responses still owed for earlier requests.
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/sleepy")
               + b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        first = c.read_response()
        assert first.status == 200 and first.body == b"slept"
        assert c.read_response().status == 100
        c.send(b"abc")
        assert body_of(c.read_response()) == b"abc"


def test_json_body_round_trip(basic):
    payload = {"k": ["v", 1, None, {"n": 2.5}]}
    with Conn(basic.port) as c:
        r = c.request("POST", "/echo", body=json.dumps(payload).encode(),
                      headers={"Content-Type": "application/json"})
        assert json.loads(body_of(r)) == payload


# ---- bodies that span reads (from 16 KiB on they go straight into request.body's bytes) ------

@pytest.mark.parametrize("size", [16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 300 * 1024])
@pytest.mark.parametrize("with_head", [0, 1, 7000])
def test_body_spanning_reads_with_a_pipelined_request_after(basic, size, with_head):
    # the head arrives with with_head bytes of the body, behind a request
    # whose answer shows they were read; the rest of the body comes with the
    # next request in one write
    rng = random.Random(size + with_head)
    body = rng.randbytes(size)
    first = build_request("POST", "/echo", body=body)
    cut = len(first) - size + with_head
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/p/1") + first[:cut])
        assert c.read_response().body == b"1"
        c.send(first[cut:] + build_request("GET", "/p/9"))
        assert body_of(c.read_response()) == body
        assert c.read_response().body == b"9"


def test_body_spanning_reads_byte_pieces_then_another(basic):
    rng = random.Random(11)
    body = rng.randbytes(40 * 1024)
    data = build_request("POST", "/len", body=body) * 2
    with Conn(basic.port) as c:
        c.send_pieces(data, sorted(rng.sample(range(1, len(data)), 300)))
        for _ in range(2):
            assert c.read_response().json() == {"len": len(body), "sum": sum(body) % 65521}


@pytest.mark.parametrize("seed", range(3))
def test_big_body_in_pieces_read_straight_into_the_body(basic, seed):
    # past 16 KiB still to come, reads go straight into request.body's
    # bytes, all but its last byte: pieces of every size, then a request
    # pipelined behind, must give the body unchanged
    rng = random.Random(seed)
    body = rng.randbytes(1024 * 1024 + rng.randrange(100))
    data = build_request("POST", "/len", body=body) + build_request("GET", "/p/5")
    with Conn(basic.port) as c:
        c.send_pieces(data, sorted(rng.sample(range(1, len(data)), 40)))
        assert c.read_response().json() == {"len": len(body), "sum": sum(body) % 65521}
        assert c.read_response().body == b"5"


def test_json_body_spanning_reads(basic):
    payload = {"items": [{"n": i, "s": "x" * 50} for i in range(2000)]}
    data = json.dumps(payload).encode()
    assert len(data) > 64 * 1024
    req = build_request("POST", "/json-or-none", body=data,
                        headers={"Content-Type": "application/json"})
    with Conn(basic.port) as c:
        c.send_pieces(req, [len(req) - len(data) + 10, len(req) - 1000])
        r = c.read_response()
        assert r.status == 200
        assert r.body.decode() == repr(payload)


def test_expect_100_continue_large_body(basic):
    body = random.Random(3).randbytes(200 * 1024)
    with Conn(basic.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
        assert c.read_response().status == 100
        c.send_pieces(body, [1, 5000, 100000])
        assert body_of(c.read_response()) == body


def test_client_leaving_mid_body_leaves_the_server_serving(basic):
    for _ in range(20):
        with Conn(basic.port) as c:
            c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                   + b"y" * 50000)
    with Conn(basic.port) as c:
        assert c.request("POST", "/len", body=b"y" * 100000).json() == {
            "len": 100000, "sum": 121 * 100000 % 65521}


def test_big_chunked_json_body(basic):
    payload = {"items": [{"n": i, "s": "y" * 40} for i in range(1000)]}
    data = json.dumps(payload).encode()
    assert len(data) > 16 * 1024
    req = (build_request("POST", "/json-or-none", headers={"Transfer-Encoding": "chunked",
                                                           "Content-Type": "application/json"})
           + chunked(data, sizes=[5000]))
    with Conn(basic.port) as c:
        c.send_pieces(req, [30, 9000])
        r = c.read_response()
        assert r.status == 200 and r.body.decode() == repr(payload)


def test_big_body_behind_a_head_in_pieces(basic):
    # the head's start comes behind a request whose answer shows it was
    # read (and kept), then its rest with the whole body and the next request
    body = random.Random(8).randbytes(50 * 1024)
    first = build_request("POST", "/echo", body=body)
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/p/3") + first[:20])
        assert c.read_response().body == b"3"
        c.send(first[20:] + build_request("GET", "/p/4"))
        assert body_of(c.read_response()) == body
        assert c.read_response().body == b"4"
