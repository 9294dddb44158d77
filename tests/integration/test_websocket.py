"""WebSockets (RFC 6455, RFC 7692) over real sockets, modelled on Autobahn's
fuzzingclient groups 1-7 and 9-13 (Autobahn's wstest needs Python 2.7, which
this machine cannot install; `make autobahn` runs it where it can).

The raw client in wsclient.py sends exactly the frames each case needs,
including broken ones.  Most cases run against examples/websocket_echo.py,
the app Autobahn is pointed at; the rest against tests/integration/apps/ws.py
(subprotocols, the request, failing and slow handlers, limits, backpressure),
whose /events/{tag} route tells the tests what the handlers saw.

Every case that makes the server fail the connection checks the close code
and that the server then closes the TCP connection.  After every test the
servers must still be alive and must not have printed a C-level crash.
"""
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import zlib

import pytest

from .conftest import _app_fixture
from .rawhttp import Conn, build_request
from .server import REPO, Server, clean_exit, describe, rss_kb
from .wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                       Closed, HandshakeError, Inflate, WSClient, build_frame,
                       close_payload)

EXAMPLE = os.path.join(REPO, "examples", "websocket_echo.py")

ws_app = pytest.fixture(_app_fixture("ws"), name="ws_app")


@pytest.fixture(scope="module")
def echo_server():
    srv = Server([sys.executable, EXAMPLE, "--port", "0"]).start()
    yield srv
    code = srv.stop()
    assert clean_exit(code), "websocket_echo.py: %s\n%s" % (
        describe(code) if code != "hung" else "hung after SIGTERM", srv.stderr())
    assert not srv.crash_report(), srv.stderr()


@pytest.fixture
def echo(echo_server):
    """The port of examples/websocket_echo.py; checked after each test."""
    yield echo_server.port
    problem = echo_server.problem()
    assert not problem, "after this test: " + problem


def connect(port, path="/", **kw):
    return WSClient(port, path, **kw).connect()


def roundtrip(ws, opcode, payload, **kw):
    ws.send_frame(opcode, payload, **kw)
    return ws.recv_message()


def fails_with(port, data, code, path="/", **kw):
    """Open a socket, send the bytes (or list of frames), expect close `code`."""
    with connect(port, path, **kw) as ws:
        ws.send_raw(data if isinstance(data, bytes) else b"".join(data))
        return ws.expect_close(code)


def echo_then_close(ws, message, code):
    """A good message then a bad frame in the same write: the echo may come
    before the close (Autobahn's OK) or be dropped because the connection
    failed first (Autobahn's NON-STRICT); nothing else may come."""
    op, data = ws.recv_message()
    if op != OP_CLOSE:
        assert (op, data) == message
        op, data = ws.recv_message()
    assert op == OP_CLOSE, (op, data)
    assert struct.unpack("!H", data[:2])[0] == code, data
    ws.expect_eof()


def events(port, tag, want=None, timeout=5.0):
    """What the ws app's handlers recorded under tag (polled until a line
    starting with `want` shows up)."""
    deadline = time.monotonic() + timeout
    while True:
        with Conn(port) as c:
            ev = c.request("GET", "/events/" + tag).json()
        if want is None or any(e.startswith(want) for e in ev) or time.monotonic() > deadline:
            return ev
        time.sleep(0.02)


# ==========================================================================
# 1: framing
# ==========================================================================

LENGTHS = [0, 1, 125, 126, 127, 128, 65535, 65536]


@pytest.mark.parametrize("n", LENGTHS)
def test_1_text_lengths(echo, n):
    text = ("*" * n).encode()
    with connect(echo) as ws:
        assert roundtrip(ws, OP_TEXT, text) == (OP_TEXT, text)
        ws.close()
        ws.expect_close(1000)


@pytest.mark.parametrize("n", LENGTHS)
def test_1_binary_lengths(echo, n):
    data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    with connect(echo) as ws:
        assert roundtrip(ws, OP_BINARY, data) == (OP_BINARY, data)
        ws.close()
        ws.expect_close(1000)


def test_1_server_uses_minimal_length_encodings(echo):
    with connect(echo) as ws:
        for n, marker, ext in [(0, 0, b""), (125, 125, b""), (126, 126, struct.pack("!H", 126)),
                               (65535, 126, struct.pack("!H", 65535)),
                               (65536, 127, struct.pack("!Q", 65536))]:
            ws.send_binary(b"a" * n)
            ws._need(2 + len(ext))
            assert ws.buf[0] == 0x82 and ws.buf[1] == marker, bytes(ws.buf[:2])
            assert bytes(ws.buf[2:2 + len(ext)]) == ext
            f = ws.recv_frame()
            assert (f.fin, f.rsv, f.opcode, f.masked, f.payload) == (1, 0, OP_BINARY, False, b"a" * n)


def test_1_non_minimal_length_encodings_accepted(echo):
    with connect(echo) as ws:
        for enc in ("16", "64"):
            assert roundtrip(ws, OP_TEXT, b"hello", len_encoding=enc) == (OP_TEXT, b"hello")


def test_1_frame_chopped_into_single_bytes(echo):
    frame = build_frame(OP_TEXT, b"chopped " * 20)
    with connect(echo) as ws:
        for i in range(len(frame)):
            ws.send_raw(frame[i:i + 1])
        assert ws.recv_message() == (OP_TEXT, b"chopped " * 20)


def test_1_frames_in_the_handshake_write(echo):
    ws = WSClient(echo, "/")
    with ws:
        ws.connect(extra=build_frame(OP_TEXT, b"early") + build_frame(OP_PING, b"p"))
        # the pong comes from C at once, the echo from the handler: any order
        got = {ws.recv_message(return_controls=True) for _ in range(2)}
        assert got == {(OP_TEXT, b"early"), (OP_PONG, b"p")}


def test_1_large_16mb_echo(echo):
    data = os.urandom(1 << 16) * 256   # 16 MiB
    with connect(echo, timeout=20) as ws:
        ws.send_binary(data)
        op, got = ws.recv_message()
        assert op == OP_BINARY and len(got) == len(data) and got == data
        ws.close()
        ws.expect_close(1000)


def test_1_unmasked_client_frame_fails_1002(echo):
    fails_with(echo, build_frame(OP_TEXT, b"hi", mask=False), 1002)


def test_1_length_with_msb_set_fails_1002(echo):
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\0\0\0\0"
    fails_with(echo, head, 1002)


# ==========================================================================
# 2: pings and pongs
# ==========================================================================

@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125)), b"\xff\xfe\x00 binary"])
def test_2_ping_payload_echoed_in_pong(echo, payload):
    with connect(echo) as ws:
        ws.send_frame(OP_PING, payload)
        f = ws.recv_frame()
        assert (f.fin, f.rsv, f.opcode, f.payload) == (1, 0, OP_PONG, payload)


def test_2_ping_over_125_bytes_fails_1002(echo):
    fails_with(echo, build_frame(OP_PING, b"x" * 126), 1002)


def test_2_ping_with_extended_length_encoding_fails_1002(echo):
    # a control frame's length always fits in 7 bits
    fails_with(echo, build_frame(OP_PING, b"x" * 5, len_encoding="16"), 1002)


def test_2_unsolicited_pong_ignored(echo):
    with connect(echo) as ws:
        ws.send_frame(OP_PONG, b"unsolicited")
        ws.send_frame(OP_PONG, b"")
        assert roundtrip(ws, OP_TEXT, b"after pong") == (OP_TEXT, b"after pong")
        ws.close()
        ws.expect_close(1000)


def test_2_ten_pings_ten_pongs(echo):
    with connect(echo) as ws:
        ws.send_raw(b"".join(build_frame(OP_PING, b"p%d" % i) for i in range(10)))
        for i in range(10):
            assert ws.recv_message(return_controls=True) == (OP_PONG, b"p%d" % i)


def test_2_ping_between_fragments(echo):
    with connect(echo) as ws:
        ws.send_frame(OP_TEXT, b"frag", fin=False)
        ws.send_frame(OP_PING, b"mid")
        assert ws.recv_message(return_controls=True) == (OP_PONG, b"mid")
        ws.send_frame(OP_CONT, b"ment", fin=True)
        assert ws.recv_message() == (OP_TEXT, b"fragment")


def test_2_server_ping_answered_with_pong(ws_app):
    with connect(ws_app.port, "/ping") as ws:
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PING, b"server-ping")
        ws.send_frame(OP_PONG, f.payload)
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PING, b"by keyword")
        ws.send_frame(OP_PONG, f.payload)
        assert ws.recv_message() == (OP_TEXT, b"pinged TypeError,TypeError,TypeError")
        assert roundtrip(ws, OP_TEXT, b"still open") == (OP_TEXT, b"still open")


# ==========================================================================
# 3: reserved bits
# ==========================================================================

@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_3_rsv_without_extension_fails_1002(echo, rsv, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"rsv"
    fails_with(echo, build_frame(opcode, payload, rsv=rsv), 1002)


def test_3_rsv_after_a_good_message(echo):
    # Autobahn 3.2: the good message is echoed, then the connection fails
    with connect(echo) as ws:
        ws.send_raw(build_frame(OP_TEXT, b"good") + build_frame(OP_TEXT, b"bad", rsv=2)
                    + build_frame(OP_PING, b""))
        echo_then_close(ws, (OP_TEXT, b"good"), 1002)


# ==========================================================================
# 4: opcodes
# ==========================================================================

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_4_reserved_opcode_fails_1002(echo, opcode):
    with connect(echo) as ws:
        ws.send_raw(build_frame(OP_TEXT, b"before") + build_frame(opcode, b"reserved")
                    + build_frame(OP_PING, b""))
        echo_then_close(ws, (OP_TEXT, b"before"), 1002)


# ==========================================================================
# 5: fragmentation
# ==========================================================================

@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_5_fragmented_message(echo, opcode):
    with connect(echo) as ws:
        ws.send_fragments(opcode, [b"frag", b"ment", b"ed"])
        assert ws.recv_message() == (opcode, b"fragmented")


def test_5_fragments_of_one_byte_and_empty_ones(echo):
    text = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!".encode()
    with connect(echo) as ws:
        ws.send_fragments(OP_TEXT, [text[i:i + 1] for i in range(len(text))])
        assert ws.recv_message() == (OP_TEXT, text)
        ws.send_fragments(OP_BINARY, [b"", b"a", b"", b"", b"b", b""])
        assert ws.recv_message() == (OP_BINARY, b"ab")
        ws.send_fragments(OP_TEXT, [b"", b""])
        assert ws.recv_message() == (OP_TEXT, b"")


def test_5_control_frames_between_fragments(echo):
    with connect(echo) as ws:
        ws.send_raw(build_frame(OP_BINARY, b"a", fin=False) + build_frame(OP_PONG, b"x")
                    + build_frame(OP_CONT, b"b", fin=False) + build_frame(OP_PING, b"y")
                    + build_frame(OP_CONT, b"c", fin=True))
        assert ws.recv_message(return_controls=True) == (OP_PONG, b"y")
        assert ws.recv_message() == (OP_BINARY, b"abc")


def test_5_fragmented_message_pieces_sent_slowly(echo):
    with connect(echo) as ws:
        for i, piece in enumerate([b"one ", b"two ", b"three"]):
            ws.send_frame(OP_CONT if i else OP_TEXT, piece, fin=i == 2)
            time.sleep(0.02)
        assert ws.recv_message() == (OP_TEXT, b"one two three")


@pytest.mark.parametrize("fin", [True, False])
def test_5_continuation_without_start_fails_1002(echo, fin):
    fails_with(echo, build_frame(OP_CONT, b"orphan", fin=fin), 1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_5_new_data_frame_while_fragmented_fails_1002(echo, opcode):
    fails_with(echo, [build_frame(OP_TEXT, b"first", fin=False),
                      build_frame(opcode, b"second")], 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_5_fragmented_control_frame_fails_1002(echo, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"ctl"
    fails_with(echo, [build_frame(opcode, payload, fin=False),
                      build_frame(OP_CONT, b"more")], 1002)


def test_5_continuation_after_a_complete_message_fails_1002(echo):
    with connect(echo) as ws:
        ws.send_raw(build_frame(OP_TEXT, b"whole") + build_frame(OP_CONT, b"extra"))
        echo_then_close(ws, (OP_TEXT, b"whole"), 1002)


# ==========================================================================
# 6: UTF-8
# ==========================================================================

VALID_UTF8 = [
    "\u03ba\u1f79\u03c3\u03bc\u03b5",          # κόσμε
    "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!",
    "\U0001F600 \U00010000 \U0010FFFF",
    "\u0080 \u07ff \u0800 \uffff \ufffd \ue000",
    "\x00\x7f",
]

INVALID_UTF8 = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # surrogate
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",                 # overlong '/'
    b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf",                 # overlong maxima
    b"\xf4\x90\x80\x80",                                               # > U+10FFFF
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\x80\xed\xb0\x80",     # surrogates
    b"\x80", b"\xbf", b"\x80\xbf\x80",                                  # stray continuations
    b"\xc0 ", b"\xe0\x80 ", b"\xf0\x80\x80 ",                           # truncated then space
    b"\xce", b"\xe1\xbd", b"\xf0\x9f\x98",                               # truncated at the end
    b"\xfe", b"\xff", b"\xfe\xfe\xff\xff", b"\xf8\x88\x80\x80\x80",   # never valid
    b"\xf5\x80\x80\x80",
]


@pytest.mark.parametrize("text", VALID_UTF8)
def test_6_valid_utf8_echoed(echo, text):
    data = text.encode("utf-8")
    with connect(echo) as ws:
        assert roundtrip(ws, OP_TEXT, data) == (OP_TEXT, data)
        # split at every byte, code points cut across frames
        ws.send_fragments(OP_TEXT, [data[i:i + 1] for i in range(len(data))])
        assert ws.recv_message() == (OP_TEXT, data)


@pytest.mark.parametrize("data", INVALID_UTF8, ids=lambda b: b.hex())
def test_6_invalid_utf8_fails_1007(echo, data):
    fails_with(echo, build_frame(OP_TEXT, data), 1007)


@pytest.mark.parametrize("data", INVALID_UTF8[:10], ids=lambda b: b.hex())
def test_6_invalid_utf8_fragmented_fails_1007(echo, data):
    fails_with(echo, [build_frame(OP_TEXT, data[:1], fin=False)]
               + [build_frame(OP_CONT, data[i:i + 1], fin=i == len(data) - 1)
                  for i in range(1, len(data))], 1007)


def test_6_invalid_utf8_fails_fast_on_the_first_fragment(echo):
    """The first fragment holds an invalid sequence: the close 1007 arrives
    before the message's other fragments are sent (Autobahn 6.4)."""
    with connect(echo) as ws:
        ws.send_frame(OP_TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
                      fin=False)
        f = ws.recv_frame(timeout=2.0)   # nothing else sent: the server decided alone
        assert f.opcode == OP_CLOSE and f.close_code == 1007, f
        ws.expect_eof()


def test_6_binary_is_not_checked(echo):
    with connect(echo) as ws:
        assert roundtrip(ws, OP_BINARY, b"\xff\xfe\xc0\xaf") == (OP_BINARY, b"\xff\xfe\xc0\xaf")


# ==========================================================================
# 7: close handling
# ==========================================================================

@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 3999, 4000, 4999])
def test_7_valid_close_code_echoed(echo, code):
    with connect(echo) as ws:
        ws.close(code, b"reason")
        f = ws.expect_close(code)
        assert f.payload[:2] == struct.pack("!H", code)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 1100, 2000,
                                  2999, 5000, 65535])
def test_7_invalid_close_code_fails_1002(echo, code):
    fails_with(echo, build_frame(OP_CLOSE, close_payload(code)), 1002)


def test_7_close_without_payload(echo):
    with connect(echo) as ws:
        ws.send_frame(OP_CLOSE, b"")
        f = ws.expect_close((1000, 1005))
        assert len(f.payload) in (0, 2)


def test_7_close_payload_of_one_byte_fails_1002(echo):
    fails_with(echo, build_frame(OP_CLOSE, b"\x03"), 1002)


def test_7_close_with_longest_reason(echo):
    with connect(echo) as ws:
        ws.close(1000, b"r" * 123)
        ws.expect_close(1000)


def test_7_close_reason_too_long_fails_1002(echo):
    fails_with(echo, build_frame(OP_CLOSE, close_payload(1000, b"r" * 124)), 1002)


def test_7_close_reason_with_multibyte_utf8(echo):
    with connect(echo) as ws:
        ws.close(1000, "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001F600")
        ws.expect_close(1000)


@pytest.mark.parametrize("reason", [b"\xce\xba\xed\xa0\x80", b"\xff", b"ok\xc0\xaf"])
def test_7_close_reason_invalid_utf8_fails_1007(echo, reason):
    fails_with(echo, build_frame(OP_CLOSE, close_payload(1000, reason)), 1007)


def test_7_data_after_close_ignored(echo):
    with connect(echo) as ws:
        ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b"late")
                    + build_frame(OP_PING, b"late") + build_frame(OP_CLOSE, close_payload(1001)))
        ws.expect_close(1000)   # and nothing else: no echo, no pong, one close


def test_7_close_in_the_middle_of_a_fragmented_message(echo):
    with connect(echo) as ws:
        ws.send_raw(build_frame(OP_TEXT, b"part", fin=False) + build_frame(OP_CLOSE, close_payload(1000)))
        ws.expect_close(1000)


def test_7_message_after_a_cancelled_receive_is_not_lost(ws_app):
    # the handler gave its first receive() up before anything came: the
    # client's message then goes to its next receive(), not to the
    # cancelled one's future, and that receive() is no "already awaited"
    with connect(ws_app.port, "/cancelled-receive") as ws:
        assert ws.recv_message() == (OP_TEXT, b"timed out")
        ws.send_text(b"a")
        ws.send_text(b"b")
        assert ws.recv_message() == (OP_TEXT, b"got a")
        assert ws.recv_message() == (OP_TEXT, b"got b")


def test_7_close_after_a_cancelled_close_waits_for_the_answer(ws_app):
    with connect(ws_app.port, "/cancelled-close/cc") as ws:
        f = ws.recv_frame()
        assert f.opcode == OP_CLOSE, f
        assert events(ws_app.port, "cc", "given up") == ["given up"]
        ws.close(1000)
        assert events(ws_app.port, "cc", "closed") == ["given up", "closed 1000"]


def test_7_message_before_close_reaches_the_handler(ws_app):
    # message and close in one write: the close is answered at once (RFC
    # 6455 5.5.1 allows it), but the handler still gets the message first
    with connect(ws_app.port, "/wait/lastwords") as ws:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        ws.send_raw(build_frame(OP_TEXT, b"last words") + build_frame(OP_CLOSE, close_payload(1000)))
        ws.expect_close(1000)
    ev = events(ws_app.port, "lastwords", "closed")
    assert ev == ["started", "message last words", "closed 1000 True 1000"], ev


def test_7_message_then_close_in_separate_writes_is_echoed(echo):
    # Autobahn 7.1.1's order of events, with the echo awaited
    with connect(echo) as ws:
        ws.send_text(b"Hello World!")
        assert ws.recv_message() == (OP_TEXT, b"Hello World!")
        ws.close(1000)
        ws.expect_close(1000)


def test_7_server_closes_tcp_after_the_closing_handshake(echo):
    with connect(echo) as ws:
        ws.close(1000)
        f = ws.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1000
        t = time.monotonic()
        ws.expect_eof(2.0)   # the server, not the client, drops TCP (RFC 6455 7.1.1)
        assert time.monotonic() - t < 1.0


def test_7_handler_return_closes_1000(ws_app):
    with connect(ws_app.port, "/returns") as ws:
        assert ws.recv_message() == (OP_TEXT, b"bye")
        f = ws.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1000
        ws.close(1000)
        ws.expect_eof()


def test_7_server_initiated_close(ws_app):
    with connect(ws_app.port, "/server-close/srvclose") as ws:
        assert ws.recv_message() == (OP_TEXT, b"closing")
        f = ws.recv_frame()
        assert (f.opcode, f.close_code, f.close_reason) == (OP_CLOSE, 4000, "bye")
        ws.close(4000)
        ws.expect_eof()
    ev = events(ws_app.port, "srvclose", "close done")
    assert ev and ev[-1].startswith("close done True 4000"), ev


@pytest.mark.parametrize("code", [1012, 1013, 1014])
def test_7_server_may_close_with_codes_registered_after_rfc_6455(ws_app, code):
    """Service restart, try again later, bad gateway: IANA's registry, after
    RFC 6455 (a client's own are still refused, as Autobahn expects; its
    echo of the server's is the closing handshake's answer)."""
    with connect(ws_app.port, "/close-with/%d" % code) as ws:
        f = ws.recv_frame()
        assert (f.opcode, f.close_code) == (OP_CLOSE, code), f
        ws.close(code, "echo")
        ws.expect_eof()
    ev = events(ws_app.port, "close-with-%d" % code, "close done")
    assert ev == ["close done True %d 'echo'" % code], ev


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_7_server_may_not_close_with_a_reserved_code(ws_app, code):
    with connect(ws_app.port, "/close-with/%d" % code) as ws:
        f = ws.recv_frame()
        assert (f.opcode, f.close_code) == (OP_CLOSE, 1011), f   # the handler raised
    ev = events(ws_app.port, "close-with-%d" % code, "ValueError")
    assert ev and "is not a close code an endpoint may send" in ev[0], ev


# ==========================================================================
# 9: limits and performance
# ==========================================================================

def test_9_message_at_the_limit_is_echoed(ws_app):
    with connect(ws_app.port, "/small") as ws:   # max_message_size=1000
        assert roundtrip(ws, OP_BINARY, b"m" * 1000) == (OP_BINARY, b"m" * 1000)


def test_9_message_over_the_limit_fails_1009(ws_app):
    fails_with(ws_app.port, build_frame(OP_BINARY, b"m" * 1001), 1009, "/small")


def test_9_fragmented_message_over_the_limit_fails_1009(ws_app):
    fails_with(ws_app.port, [build_frame(OP_TEXT, b"m" * 600, fin=False),
                             build_frame(OP_CONT, b"m" * 600)], 1009, "/small")


def test_9_a_message_of_endless_empty_fragments_fails_1009(ws_app):
    # its payload stays under the limit for ever; its framing is bounded
    # (headers up to max_message_size + 512 KiB): the frame that passes it
    # fails the message, here the last one sent
    first = build_frame(OP_BINARY, b"m", fin=False)        # 6 bytes, as each below
    n = (1000 + (512 << 10)) // 6
    fails_with(ws_app.port, first + build_frame(OP_CONT, b"", fin=False) * n, 1009, "/small")
    # one frame fewer in all is a message that goes on
    with connect(ws_app.port, "/small") as ws:
        ws.send_raw(first + build_frame(OP_CONT, b"", fin=False) * (n - 2) +
                    build_frame(OP_CONT, b"", fin=True))
        assert ws.recv_message() == (OP_BINARY, b"m")


def test_9_huge_announced_length_fails_1009_at_once(ws_app):
    # only the header is sent: the server must not wait for 2^62 bytes
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 62) + b"\x01\x02\x03\x04"
    fails_with(ws_app.port, head, 1009, "/small")


def test_9_default_limit_is_1mib(ws_app):
    with connect(ws_app.port, "/echo") as ws:
        assert roundtrip(ws, OP_BINARY, b"d" * (1 << 20))[1] == b"d" * (1 << 20)
    # the header decides: the payload is not even sent
    fails_with(ws_app.port, build_frame(OP_BINARY, b"d" * ((1 << 20) + 1))[:100], 1009, "/echo")


@pytest.mark.parametrize("size", [(1 << 20) - 64, 1 << 20, 5 << 20])
def test_9_an_idle_socket_keeps_no_buffer_of_a_big_message(ws_app, size):
    # once a big message is delivered, the socket's receive buffers go: an
    # idle connection does not hold twice the largest message it was sent
    with connect(ws_app.port, "/sizeof") as ws:
        op, small = roundtrip(ws, OP_TEXT, b"x")
        assert op == OP_TEXT and int(small) < 64 << 10
        op, after = roundtrip(ws, OP_BINARY, b"d" * size)
        assert op == OP_TEXT and int(after) < 200 << 10, (int(small), int(after))
        ws.close()
        ws.expect_close(1000)


def test_9_many_small_messages_pipelined_in_one_write(echo):
    n = 2000
    msgs = [("msg %d" % i).encode() for i in range(n)]
    with connect(echo) as ws:
        ws.send_raw(b"".join(build_frame(OP_TEXT if i % 2 else OP_BINARY, m)
                             for i, m in enumerate(msgs)))
        for i, m in enumerate(msgs):
            assert ws.recv_message() == (OP_TEXT if i % 2 else OP_BINARY, m)
        ws.close()
        ws.expect_close(1000)


def test_9_many_concurrent_websockets(echo):
    clients = [connect(echo) for _ in range(100)]
    try:
        for i, ws in enumerate(clients):
            ws.send_text(b"client %d" % i)
        for i, ws in enumerate(clients):
            ws.send_frame(OP_BINARY, b"second %d" % i)
        for i, ws in enumerate(reversed(clients)):
            j = len(clients) - 1 - i
            assert ws.recv_message() == (OP_TEXT, b"client %d" % j)
            assert ws.recv_message() == (OP_BINARY, b"second %d" % j)
        for ws in clients:
            ws.close()
        for ws in clients:
            ws.expect_close(1000)
    finally:
        for ws in clients:
            ws.abort()



def test_receive_queue_is_bounded_in_bytes(ws_app):
    """A handler that does not receive: the server stops reading once about
    1 MB of messages wait for it (not 32 messages of up to max_message_size
    each), so a client can make it hold no more; then the handler receives
    every message all the same."""
    size = (1 << 20) - 64                 # under max_message_size (1 MiB)
    ws = WSClient(ws_app.port, "/sink/sink-bytes", timeout=10,
                  sockopts=[(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)])
    with ws:
        ws.connect()
        s = ws.sock
        assert ws.recv_message() == (OP_TEXT, b"ready")
        sent, rest = 0, b""
        while sent < 64:                  # until the server stops taking them
            rest = memoryview(build_frame(OP_BINARY, b"m" * size))
            while rest:
                if not select.select([], [s], [], 1.0)[1]:
                    break                 # stalled: the server reads no more
                rest = rest[s.send(rest):]
            if rest:
                break
            sent += 1
        # the server holds about 1 MB of whole messages and one being
        # reassembled; the kernel's buffers, made small, a few hundred KB
        assert sent < 6, "%d MB taken while the handler received nothing" % sent
        with Conn(ws_app.port) as c:
            assert c.request("GET", "/release/sink-bytes").status == 200
        s.settimeout(10)
        s.sendall(rest)
        ws.close()
        ws.expect_close(1000)
    assert events(ws_app.port, "sink-bytes", "received") == ["received %d" % (sent + 1)]


def test_receive_queue_bounds_compressed_messages_too(ws_app):
    """40 compressed messages of about 1 MB each (1 KB each on the wire)
    in one write, to a handler that does not receive: the server inflates
    and queues about 1 MB of them, not all 40 MB (the frames it had read
    were all inflated before it stopped reading); the rest is inflated as
    the handler catches up, and none is lost."""
    n, size = 40, (1 << 20) - 64
    with pmd(ws_app.port, "permessage-deflate", "/sink-deflate/sink-deflate") as ws:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        before = rss_kb(ws_app.pid)
        frames = []
        for _ in range(n):
            frames.append(build_frame(OP_BINARY, ws.deflate[0](b"\0" * size), rsv=4))
        ws.send_raw(b"".join(frames))
        _server_has_read(ws_app.port)
        grown_mb = (rss_kb(ws_app.pid) - before) / 1024
        assert grown_mb < 16, "%.0f MB held for %d KB sent" % (grown_mb, len(b"".join(frames)) >> 10)
        with Conn(ws_app.port) as c:
            assert c.request("GET", "/release/sink-deflate").status == 200
        ws.close()
        ws.expect_close(1000)
    assert events(ws_app.port, "sink-deflate", "received") == ["received %d" % n]


def _server_has_read(port):
    """Another client's round trip: the server's loop has read what was sent
    before it."""
    with connect(port, "/echo") as other:
        assert roundtrip(other, OP_TEXT, b"sync") == (OP_TEXT, b"sync")


def test_ping_and_close_behind_a_full_queue_are_answered_at_once(ws_app):
    """40 messages, a ping and a close in one write, to a handler that
    receives nothing: the server answers the ping and the close, though
    the messages fill the handler's queue (it stopped parsing there, and
    left both unanswered)."""
    with connect(ws_app.port, "/sink/behind-ping") as ws:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        ws.send_raw(b"".join(build_frame(OP_BINARY, b"m%d" % i) for i in range(40))
                    + build_frame(OP_PING, b"still there?") + build_frame(OP_CLOSE,
                                                                         close_payload(4002)))
        assert ws.recv_message(return_controls=True) == (OP_PONG, b"still there?")
        op, data = ws.recv_message()
        assert (op, struct.unpack("!H", data[:2])[0]) == (OP_CLOSE, 4002)
        ws.expect_eof()


def test_close_from_a_handler_that_is_behind_reads_the_answer(ws_app):
    """The handler closes while 40 messages wait for it (reading paused):
    the client's answer is still read, and close() sees its code (it was
    left unread until the close deadline cut the connection)."""
    with connect(ws_app.port, "/close-behind/behind-close") as ws:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        ws.send_raw(b"".join(build_frame(OP_BINARY, b"m%d" % i) for i in range(40)))
        _server_has_read(ws_app.port)
        with Conn(ws_app.port) as c:
            assert c.request("GET", "/release/behind-close").status == 200
        op, data = ws.recv_message()
        assert (op, struct.unpack("!H", data[:2])[0]) == (OP_CLOSE, 1000)
        ws.close(4001)
        ws.expect_eof()
    assert events(ws_app.port, "behind-close", "closed") == ["closed 4001"]


def test_deflated_message_kept_while_behind_is_checked_when_taken(ws_app):
    """Deflated messages that come while the handler is behind are kept
    deflated, and inflated and checked when it takes them: 40 good ones,
    then text that is not UTF-8. The handler gets the 40, then the
    WebSocket fails with 1007."""
    with pmd(ws_app.port, "permessage-deflate", "/sink-deflate/deferred-bad") as ws:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        frames = [build_frame(OP_BINARY, ws.deflate[0](b"m%d" % i), rsv=4) for i in range(40)]
        frames.append(build_frame(OP_TEXT, ws.deflate[0](b"\xff\xfe"), rsv=4))
        ws.send_raw(b"".join(frames))
        _server_has_read(ws_app.port)
        with Conn(ws_app.port) as c:
            assert c.request("GET", "/release/deferred-bad").status == 200
        ws.expect_close(1007)
    assert events(ws_app.port, "deferred-bad", "received") == ["received 40"]


def server_writes(port):
    with Conn(port) as c:
        return int(c.request("GET", "/writes").body)


@pytest.mark.parametrize("size", [64, 4000])
def test_9_echoes_of_messages_sent_together_leave_in_one_write(ws_app, size):
    """24 messages in one write: the handler's 24 echoes go out together
    (held back while more received messages wait), not one write each."""
    n = 24
    with connect(ws_app.port, "/nocomp") as ws:
        assert roundtrip(ws, OP_BINARY, b"first") == (OP_BINARY, b"first")
        before = server_writes(ws_app.port)
        ws.send_raw(b"".join(build_frame(OP_BINARY, b"%04d" % i + b"m" * (size - 4))
                             for i in range(n)))
        got = [ws.recv_message() for _ in range(n)]
        after = server_writes(ws_app.port)
        assert got == [(OP_BINARY, b"%04d" % i + b"m" * (size - 4)) for i in range(n)]
    # the /writes answer is one write; the echoes one, or a few when the
    # frames arrived in more than one read (4000 bytes: 96 KB, 16 KB a write
    # at most); 24 when each echo is written alone
    assert after - before - 1 <= (2 if size == 64 else 8), after - before


def test_9_held_echo_leaves_when_the_handler_waits_elsewhere(ws_app):
    """The handler echoes the first of two messages that came together,
    then waits on an event, not in receive(): the echo still goes out."""
    with connect(ws_app.port, "/echo-then-wait/held") as ws:
        ws.send_raw(build_frame(OP_TEXT, b"one") + build_frame(OP_TEXT, b"two"))
        assert ws.recv_message(timeout=5) == (OP_TEXT, b"one")
        with Conn(ws_app.port) as c:
            assert c.request("GET", "/release/held").body == b"released"
        assert ws.recv_message(timeout=5)[0] == OP_CLOSE


def test_9_held_echo_goes_before_the_close_frame(ws_app):
    """A close() right after a held send: the echo is written before the
    close frame, and nothing after it."""
    with connect(ws_app.port, "/echo-then-close") as ws:
        ws.send_raw(build_frame(OP_TEXT, b"one") + build_frame(OP_TEXT, b"two"))
        assert ws.recv_message(timeout=5) == (OP_TEXT, b"one")
        op, data = ws.recv_message(timeout=5)
        assert (op, struct.unpack("!H", data[:2])[0]) == (OP_CLOSE, 4000)
        ws.close()
        ws.expect_eof()


def test_9_send_backpressure_bounds_memory(ws_app):
    """The handler sends 100 MB in 1 MB messages to a client that does not
    read: send() waits, and the server's RSS stays bounded."""
    before = rss_kb(ws_app.pid)
    ws = WSClient(ws_app.port, "/flood/100/flood", timeout=20,
                  sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
    with ws:
        ws.connect()
        # wait until the handler's progress stops moving
        last, stable_since = None, time.monotonic()
        while time.monotonic() - stable_since < 0.4:
            ev = events(ws_app.port, "flood")
            if ev != last:
                last, stable_since = ev, time.monotonic()
            time.sleep(0.05)
        sent = int(last[0]) if last else 0
        grown_mb = (rss_kb(ws_app.pid) - before) / 1024
        print("flood: %d MB sent while the client did not read; RSS +%.1f MB" % (sent, grown_mb))
        assert sent < 20, "send() did not wait: %d MB sent to a client that reads nothing" % sent
        assert grown_mb < 40, "server RSS grew by %.0f MB" % grown_mb
        # now read it all: every message arrives, and the handler finishes
        total = 0
        for _ in range(100):
            op, data = ws.recv_message()
            assert op == OP_BINARY and len(data) == 1 << 20
            total += len(data)
        assert total == 100 << 20
        assert events(ws_app.port, "flood") == ["100"]
        ws.close()
        ws.expect_close(1000)


def test_9_sends_not_awaited_to_a_client_that_does_not_read_are_cut(ws_app):
    """The handler calls send() without awaiting it, 64 MB in all, to a
    client that reads nothing: past 16 MiB held for the client the
    connection is dropped and send() raises WebSocketClosed(1006), instead
    of the worker holding all 64 MB."""
    before = rss_kb(ws_app.pid)
    ws = WSClient(ws_app.port, "/pile/64/pile", timeout=20,
                  sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
    with ws:
        ws.connect()
        ev = events(ws_app.port, "pile", want="", timeout=20)
        grown_mb = (rss_kb(ws_app.pid) - before) / 1024
    assert len(ev) == 1 and ev[0].startswith("closed 1006 the client does not read"), ev
    kb = int(ev[0].split()[-2])
    assert 16 << 10 <= kb < 32 << 10, ev     # 16 MiB held, the rest in socket buffers
    print("pile: cut after %d KB; RSS +%.1f MB" % (kb, grown_mb))
    assert grown_mb < 40, "server RSS grew by %.0f MB" % grown_mb
    with connect(ws_app.port, "/echo") as other:
        assert roundtrip(other, OP_TEXT, b"alive") == (OP_TEXT, b"alive")


@pytest.mark.parametrize("what", ["send", "close"])
def test_9_one_task_giving_up_its_wait_leaves_another_waiting(ws_app, what):
    """Two tasks wait on the same connection (send() while the client does
    not read; close() while it does not answer): when one gives up
    (asyncio.wait_for), the other goes on waiting, and ends as the client
    lets it.  It got CancelledError at the other's timeout."""
    tag = "two-" + what
    ws = WSClient(ws_app.port, "/two-waiters/%s/%s" % (what, tag), timeout=20,
                  sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
    with ws:
        ws.connect()
        assert events(ws_app.port, tag, "a timeout", timeout=20) == ["a timeout"]
        if what == "send":
            while ws.recv_message()[0] != OP_TEXT:  # now read, up to b's "end"
                pass
        else:
            ws.expect_close(1000)               # and answer it
        ev = events(ws_app.port, tag, "b ", timeout=20)
    assert ev == ["a timeout", "b done"], ev


def test_9_client_gone_while_send_waits(ws_app):
    """The client stops reading, then drops the connection: the handler's
    pending send() ends (it does not wait forever) and the worker is fine."""
    ws = connect(ws_app.port, "/flood/100/gone-flood")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    deadline = time.monotonic() + 5
    while not events(ws_app.port, "gone-flood") and time.monotonic() < deadline:
        time.sleep(0.02)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.abort()   # RST
    ev = events(ws_app.port, "gone-flood", "stopped by")
    assert ev[-1].startswith("stopped by"), ev
    assert int(ev[0]) < 100, ev
    with connect(ws_app.port, "/echo") as other:
        assert roundtrip(other, OP_TEXT, b"alive") == (OP_TEXT, b"alive")


def test_9_awaited_send_raises_when_the_client_goes_before_taking_it(ws_app):
    """A send that waits for a client that does not read ends with
    WebSocketClosed(1006) when the client resets: it was not delivered."""
    ws = WSClient(ws_app.port, "/send-big/big-gone", timeout=10,
                  sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
    ws.connect()
    try:
        assert events(ws_app.port, "big-gone", "sending")
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        ws.abort()   # RST
    ev = events(ws_app.port, "big-gone", "send ")
    assert ev[-1] == "send raised 1006", ev


@pytest.mark.parametrize("size", [100, 64 << 10])
def test_9_client_gone_while_sends_never_wait(ws_app, size):
    """The handler awaits each send in a loop, and the client takes them as
    they come (so no send waits), then resets: the handler's send() raises
    WebSocketClosed(1006) and the worker serves others.  Such a loop used to
    never give the loop a turn once the client had gone: the worker spun,
    deaf to every client (and to SIGTERM)."""
    tag = "push-%d" % size
    ws = connect(ws_app.port, "/push/%d/%s" % (size, tag))
    got = 0
    while got < 4 << 20:
        data = ws.sock.recv(1 << 16)
        assert data
        got += len(data)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.abort()   # RST
    ev = events(ws_app.port, tag, "closed")
    assert len(ev) == 1 and ev[0].startswith("closed 1006"), ev
    with connect(ws_app.port, "/echo") as other:
        assert roundtrip(other, OP_TEXT, b"alive") == (OP_TEXT, b"alive")


def test_7_server_close_unanswered_drops_tcp(ws_app):
    """The handler closes; the client never answers: the server gives up
    after its close timeout (5 s) and drops the TCP connection."""
    with connect(ws_app.port, "/server-close/unanswered") as ws:
        assert ws.recv_message() == (OP_TEXT, b"closing")
        assert ws.recv_frame().close_code == 4000
        t = time.monotonic()
        ws.expect_eof(10.0)
        assert time.monotonic() - t < 8.0
    ev = events(ws_app.port, "unanswered", "close done")
    assert ev and ev[-1].startswith("close done True"), ev


def test_7_server_close_behind_a_slow_read_unanswered_drops_tcp(ws_app):
    """The handler queues 2 MB and closes while the client is not reading:
    the close frame waits behind the message.  The client then reads it
    all (writing resumes) and never answers the close.  The close timeout
    still holds: taking the data used to drop it, leaving no deadline."""
    ws = WSClient(ws_app.port, "/send-close/slow", timeout=10,
                  sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
    with ws:
        ws.connect()
        assert events(ws_app.port, "slow") == []     # close() is waiting
        op, data = ws.recv_message()
        assert op == OP_BINARY and len(data) == 2 << 20
        assert ws.recv_frame().close_code == 4000
        ws.expect_eof(10.0)
    ev = events(ws_app.port, "slow", "close done")
    assert ev and ev[-1].startswith("close done True"), ev


# ==========================================================================
# 12/13: permessage-deflate (RFC 7692)
# ==========================================================================

def pmd(port, offer, path="/"):
    return connect(port, path, extensions=offer)


@pytest.mark.parametrize("offer, answer", [
    ("permessage-deflate", {}),
    ("permessage-deflate; client_max_window_bits", {}),
    ("permessage-deflate; client_max_window_bits=10", {}),
    ("permessage-deflate; server_max_window_bits=10", {"server_max_window_bits": "10"}),
    ("permessage-deflate; server_max_window_bits=9", {"server_max_window_bits": "9"}),
    ('permessage-deflate; server_max_window_bits="12"', {"server_max_window_bits": "12"}),
    ("permessage-deflate; server_no_context_takeover", {"server_no_context_takeover": None}),
    ("permessage-deflate; client_no_context_takeover", {"client_no_context_takeover": None}),
    ("permessage-deflate; client_no_context_takeover; server_no_context_takeover;"
     " client_max_window_bits=9; server_max_window_bits=11",
     {"client_no_context_takeover": None, "server_no_context_takeover": None,
      "server_max_window_bits": "11"}),
    # the first acceptable offer wins
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover",
     {"server_no_context_takeover": None}),
])
def test_12_negotiation(echo, offer, answer):
    with pmd(echo, offer) as ws:
        assert ws.pmd_params is not None, "no extension for %r: %r" % (offer, ws.headers)
        params = dict(ws.pmd_params)
        # client_max_window_bits may come back (with a value <= the offer)
        cmwb = params.pop("client_max_window_bits", None)
        if cmwb is not None:
            assert "client_max_window_bits" in offer
        assert params == answer
        for text in ["Hello, permessage-deflate!", "Hello, permessage-deflate!" * 50, ""]:
            ws.send_compressed(OP_TEXT, text)
            assert ws.recv_message() == (OP_TEXT, text.encode())


@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits",            # needs a value
    "permessage-deflate; client_max_window_bits=16",
    "permessage-deflate; client_max_window_bits=abc",
    # 1*DIGIT without a leading zero (RFC 7692 7.1.2.1, 7.1.2.2)
    "permessage-deflate; server_max_window_bits=9x",
    "permessage-deflate; server_max_window_bits=09",
    "permessage-deflate; server_max_window_bits=+9",
    "permessage-deflate; client_max_window_bits=9x",
    "permessage-deflate; client_max_window_bits=09",
    "permessage-deflate; client_max_window_bits=1a",
    "permessage-deflate; unknown_param=1",
    "permessage-deflate; unknown_flag",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; server_no_context_takeover=1",
    "x-webkit-deflate-frame",
    "deflate-frame; no_context_takeover",
])
def test_12_offer_declined(echo, offer):
    with pmd(echo, offer) as ws:
        assert "sec-websocket-extensions" not in ws.headers, ws.headers
        # no extension: RSV1 is a protocol error again
        ws.send_text(b"plain")
        assert ws.recv_message() == (OP_TEXT, b"plain")
        ws.send_frame(OP_TEXT, zlib.compress(b"x")[2:], rsv=4)
        ws.expect_close(1002)


def test_12_route_without_compression_declines(ws_app):
    with pmd(ws_app.port, "permessage-deflate", "/nocomp") as ws:
        assert "sec-websocket-extensions" not in ws.headers, ws.headers


def test_12_server_messages_are_compressed(echo):
    with pmd(echo, "permessage-deflate") as ws:
        ws.send_text(b"a" * 10000)   # an uncompressed message is fine too
        f = ws.recv_frame()
        assert f.rsv == 4 and f.opcode == OP_TEXT and len(f.payload) < 200, f
        assert ws.deflate[1](f.payload) == b"a" * 10000


def test_13_context_takeover_across_messages(echo):
    text = ("The quick brown fox jumps over the lazy dog %s. " % os.urandom(8).hex()) * 4
    with pmd(echo, "permessage-deflate") as ws:
        sizes_in, sizes_out = [], []
        for _ in range(3):
            comp = ws.deflate[0](text)
            sizes_in.append(len(comp))
            ws.send_frame(OP_TEXT, comp, rsv=4)
            f = ws.recv_frame()
            assert f.rsv == 4
            sizes_out.append(len(f.payload))
            assert ws.deflate[1](f.payload) == text.encode()
        # the client's later messages refer back into the first: the server
        # kept its inflate window; and its own replies shrink the same way
        assert sizes_in[1] < sizes_in[0] / 2, sizes_in
        assert sizes_out[1] < sizes_out[0] / 2, sizes_out


def test_13_server_no_context_takeover(echo):
    text = "no context takeover, no context takeover " * 10
    with pmd(echo, "permessage-deflate; server_no_context_takeover") as ws:
        assert ws.deflate[1].no_ctx
        sizes = []
        for _ in range(3):
            ws.send_compressed(OP_TEXT, text)
            f = ws.recv_frame()
            sizes.append(len(f.payload))
            # a fresh inflater per message reads every one
            assert Inflate(15)(f.payload) == text.encode()
        assert sizes[0] == sizes[1] == sizes[2], sizes


def test_13_client_no_context_takeover(echo):
    with pmd(echo, "permessage-deflate; client_no_context_takeover") as ws:
        assert ws.deflate[0].no_ctx
        for i in range(5):
            ws.send_compressed(OP_BINARY, b"same same same %d" % (i % 2))
            assert ws.recv_message() == (OP_BINARY, b"same same same %d" % (i % 2))


def test_13_server_max_window_bits_10_is_honoured(echo):
    # repeats 2000 bytes apart: a window over 1024 bytes would refer back
    # past what a 10-bit inflater keeps, and the client's inflate would fail
    block = os.urandom(1000).hex().encode()   # 2000 bytes
    data = block * 20
    with pmd(echo, "permessage-deflate; server_max_window_bits=10") as ws:
        for _ in range(2):
            ws.send_compressed(OP_BINARY, data)
            assert ws.recv_message() == (OP_BINARY, data)   # Inflate(10) for the replies


def test_13_client_max_window_bits_9(echo):
    block = os.urandom(300).hex().encode()
    data = block * 30
    with pmd(echo, "permessage-deflate; client_max_window_bits=9") as ws:
        ws.deflate = (type(ws.deflate[0])(9), ws.deflate[1])
        for _ in range(2):
            ws.send_compressed(OP_TEXT, data)
            assert ws.recv_message() == (OP_TEXT, data)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 1 << 20])
def test_13_compressed_echo_sizes(echo, n):
    data = (os.urandom(n // 2) + b"z" * (n - n // 2))
    with pmd(echo, "permessage-deflate") as ws:
        ws.send_compressed(OP_BINARY, data)
        assert ws.recv_message() == (OP_BINARY, data)


def test_13_fragmented_compressed_message(echo):
    text = "fragmented and compressed \u00e9\u00e8 " * 200
    with pmd(echo, "permessage-deflate") as ws:
        for frags in (2, 7, 50):
            ws.send_compressed(OP_TEXT, text, fragments=frags)
            assert ws.recv_message() == (OP_TEXT, text.encode())


def test_13_compressed_and_plain_messages_mixed(echo):
    with pmd(echo, "permessage-deflate") as ws:
        for i in range(6):
            if i % 2:
                ws.send_compressed(OP_TEXT, "compressed %d" % i)
            else:
                ws.send_text("plain %d" % i)
        for i in range(6):
            want = ("compressed %d" if i % 2 else "plain %d") % i
            assert ws.recv_message() == (OP_TEXT, want.encode())


def test_13_corrupted_deflate_data_fails_1007(echo):
    with pmd(echo, "permessage-deflate") as ws:
        ws.send_frame(OP_BINARY, b"\xff\xff\xff\xff not deflate at all", rsv=4)
        ws.expect_close(1007)


def test_13_compressed_text_with_invalid_utf8_fails_1007(echo):
    with pmd(echo, "permessage-deflate") as ws:
        ws.send_compressed(OP_TEXT, b"valid then \xed\xa0\x80")
        ws.expect_close(1007)


def test_13_inflated_size_over_the_limit_fails_1009(ws_app):
    with pmd(ws_app.port, "permessage-deflate", "/small") as ws:   # max 1000
        ws.send_compressed(OP_BINARY, b"\0" * 900)
        assert ws.recv_message() == (OP_BINARY, b"\0" * 900)
        comp = ws.deflate[0](b"\0" * 100000)
        assert len(comp) < 1000
        ws.send_frame(OP_BINARY, comp, rsv=4)
        ws.expect_close(1009)


def test_13_limit_is_on_the_inflated_size(ws_app):
    # random bytes grow a little when deflated: a 1000-byte message (the
    # limit) takes more than 1000 on the wire, and is still within it
    data = os.urandom(1000)
    with pmd(ws_app.port, "permessage-deflate", "/small") as ws:   # max 1000
        comp = ws.deflate[0](data)
        assert len(comp) > 1000
        ws.send_frame(OP_BINARY, comp, rsv=4)
        assert ws.recv_message() == (OP_BINARY, data)
        ws.send_compressed(OP_BINARY, os.urandom(1001))
        ws.expect_close(1009)


@pytest.mark.parametrize("offer", ["permessage-deflate",
                                   "permessage-deflate; server_no_context_takeover"])
def test_13_empty_messages_keep_both_inflaters_in_step(echo, offer):
    # RFC 7692 7.2.3.6: the server sends an empty message as 0x00 (zlib has
    # nothing to flush after an earlier message, and an empty payload would
    # open a stored block in the client's inflater); a client's empty
    # compressed payload is an empty message that leaves the server's as is
    with pmd(echo, offer) as ws:
        for m in [b"abc" * 50, b"", b"", os.urandom(3000), b"", b"abc" * 50]:
            ws.send_compressed(OP_BINARY, m)
            f = ws.recv_frame()
            assert f.rsv == 4 and f.payload, f
            assert ws.deflate[1](f.payload) == m
        for m in [b"", b"xyz" * 40]:
            ws.send_frame(OP_BINARY, b"", rsv=4)
            assert ws.recv_message() == (OP_BINARY, b"")
            ws.send_compressed(OP_BINARY, m)
            assert ws.recv_message() == (OP_BINARY, m)


def test_13_zip_bomb_fails_1009_without_inflating_it_all(echo):
    # 64 MiB max on the example; 96 MiB of zeros deflate to ~100 kB
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    chunk = b"\0" * (1 << 20)
    comp = b"".join(z.compress(chunk) for _ in range(96)) + z.flush(zlib.Z_SYNC_FLUSH)
    with pmd(echo, "permessage-deflate", ) as ws:
        t = time.monotonic()
        ws.send_frame(OP_BINARY, comp[:-4], rsv=4)
        ws.expect_close(1009)
        assert time.monotonic() - t < 5


def test_13_rsv1_on_continuation_fails_1002(echo):
    with pmd(echo, "permessage-deflate") as ws:
        comp = ws.deflate[0]("abcdef")
        ws.send_frame(OP_TEXT, comp[:2], fin=False, rsv=4)
        ws.send_frame(OP_CONT, comp[2:], rsv=4)
        ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_13_rsv1_on_control_frame_fails_1002(echo, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b""
    with pmd(echo, "permessage-deflate") as ws:
        ws.send_frame(opcode, payload, rsv=4)
        ws.expect_close(1002)


def test_13_rsv2_with_deflate_fails_1002(echo):
    with pmd(echo, "permessage-deflate") as ws:
        ws.send_frame(OP_TEXT, ws.deflate[0]("x"), rsv=4 | 2)
        ws.expect_close(1002)


def test_13_final_deflate_block_bfinal_1():
    """RFC 7692 7.2.3.4: a sender may end a message with a DEFLATE block that
    has BFINAL set; the RFC's own example is "Hello" as f3 48 cd c9 c9 07 00.
    Runs on its own server: a server that loops on it must not hang the
    other tests."""
    srv = Server([sys.executable, EXAMPLE, "--port", "0"]).start()
    try:
        with pmd(srv.port, "permessage-deflate") as ws:
            ws.send_frame(OP_TEXT, bytes.fromhex("f348cdc9c90700"), rsv=4)
            try:
                got = ws.recv_message(timeout=2.0)
            except socket.timeout:
                got = "no answer within 2 s"
            # a second client must still be served either way
            try:
                with connect(srv.port, timeout=2.0) as other:
                    other_ok = roundtrip(other, OP_TEXT, b"x") == (OP_TEXT, b"x")
            except (OSError, Closed) as e:
                other_ok = repr(e)
            assert got == (OP_TEXT, b"Hello") and other_ok is True, (
                "BFINAL=1 message: got %r; another client: %r" % (got, other_ok))
            # the next message of the connection starts a new DEFLATE stream
            # (the old one ended), compressed without context
            ws.send_compressed(OP_TEXT, "after bfinal")
            assert ws.recv_message() == (OP_TEXT, b"after bfinal")
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()


# ==========================================================================
# Handshake
# ==========================================================================

def upgrade_headers(**override):
    h = {"Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    h.update(override)
    return [(k, v) for k, v in h.items() if v is not None]


def http(port, method, path, headers):
    """The first response (a 101 included) to one request."""
    with Conn(port) as c:
        c.send(build_request(method, path, headers))
        return c.read_response()


def test_handshake_rfc_example_accept_key(echo):
    r = http(echo, "GET", "/ws", upgrade_headers())
    # the RFC 6455 1.3 example pair
    assert r.status == 101 and r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_header_case_and_token_lists(echo):
    r = http(echo, "GET", "/", upgrade_headers(Upgrade="WebSocket",
                                               Connection="keep-alive, Upgrade"))
    assert r.status == 101, r


@pytest.mark.parametrize("connection", ["close", "Close, keep-alive"])
def test_handshake_with_close_beside_upgrade_runs_the_websocket(echo, connection):
    """"Connection: Upgrade, close": the close is HTTP's, and the connection
    becomes the WebSocket's (it was a 101 and then the socket closed)."""
    with connect(echo, headers=[("Connection", connection)]) as ws:
        for i in range(3):
            assert roundtrip(ws, OP_TEXT, b"m%d" % i) == (OP_TEXT, b"m%d" % i)
        ws.close()
        ws.expect_close(1000)


def test_handshake_without_upgrade_is_426(echo):
    r = http(echo, "GET", "/", [])
    assert r.status == 426, r
    assert r.header("Upgrade", "").lower() == "websocket", r
    r = http(echo, "GET", "/", upgrade_headers(Upgrade="h2c"))
    assert r.status == 426, r


@pytest.mark.parametrize("key", ["abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ==x",
                                 "!!!!!!!!!!!!!!!!!!!!!!==", None])
def test_handshake_bad_key_is_400(echo, key):
    r = http(echo, "GET", "/", upgrade_headers(**{"Sec-WebSocket-Key": key}))
    assert r.status == 400, r


@pytest.mark.parametrize("version", ["8", "7", "14", None])
def test_handshake_other_version_is_426(echo, version):
    r = http(echo, "GET", "/", upgrade_headers(**{"Sec-WebSocket-Version": version}))
    assert r.status == 426, r
    assert r.header("Sec-WebSocket-Version") == "13", r


@pytest.mark.parametrize("second", ["8", "13"])
def test_handshake_repeated_version_is_426(echo, second):
    """Two Sec-WebSocket-Version lines are the list "13, 8" (RFC 9110 5.3),
    which is no version 13: 426, as for that list (the first line won)."""
    r = http(echo, "GET", "/", upgrade_headers() + [("Sec-WebSocket-Version", second)])
    assert r.status == 426, r
    assert r.header("Sec-WebSocket-Version") == "13", r


@pytest.mark.parametrize("first, answer", [("/async-http", b"async answer"),
                                           ("/stream-http", b"streamed answer")])
def test_upgrade_pipelined_behind_an_answer_being_made_waits_for_it(ws_app, first, answer):
    """An upgrade sent right behind a request whose answer is still being
    made (an async view's, a stream) waits for that answer, then gets its
    101; a frame in the same write is the WebSocket's (it was a 400)."""
    ws = WSClient(ws_app.port, "/echo")
    ws.open_socket()
    try:
        ws.send_raw(build_request("GET", first) + ws.handshake_request()
                    + build_frame(OP_TEXT, b"first frame"))
        c = Conn.__new__(Conn)   # the HTTP answer read on the same socket
        c.sock, c.buf, c.eof = ws.sock, bytearray(), False
        r = c.read_response()
        assert (r.status, r.body) == (200, answer), r
        ws.buf = c.buf
        status, headers, _ = ws.read_response()
        assert status == 101, (status, headers)
        assert ws.recv_message() == (OP_TEXT, b"first frame")
        ws.close()
        ws.expect_close(1000)
    finally:
        ws.sock.close()


def test_handshake_repeated_key_is_400(echo):
    """RFC 6455 11.3.1: Sec-WebSocket-Key must not appear more than once;
    two lines are no key of 16 bytes (the same key twice included)."""
    for other in ("x3JJHMbDL1EzLkh9GBhXDw==", "dGhlIHNhbXBsZSBub25jZQ=="):
        r = http(echo, "GET", "/", upgrade_headers() + [("Sec-WebSocket-Key", other)])
        assert r.status == 400, r


def test_handshake_upgrade_token_in_a_later_line(echo):
    """Repeated field lines are one comma-separated list (RFC 9110 5.3)."""
    r = http(echo, "GET", "/", upgrade_headers(Upgrade="h2c") + [("Upgrade", "websocket")])
    assert r.status == 101, r


def test_handshake_post_is_refused(echo):
    r = http(echo, "POST", "/", upgrade_headers())
    assert r.status in (400, 405), r


def test_handshake_http10_is_refused(echo):
    with Conn(echo) as c:
        c.send(build_request("GET", "/", upgrade_headers(), version="1.0"))
        r = c.read_response()
    assert r.status in (400, 426), r


# ==========================================================================
# Subprotocols, the request, failing and disconnecting handlers
# ==========================================================================

@pytest.mark.parametrize("offer, chosen", [
    (["chat.v1", "chat.v2"], "chat.v2"),    # the server's preference wins
    (["superchat", "chat.v1"], "chat.v1"),
    (["superchat"], "superchat"),
    (["other", "nope"], None),
    (None, None),
])
def test_subprotocol_selection(ws_app, offer, chosen):
    with connect(ws_app.port, "/proto", protocols=offer) as ws:
        assert ws.headers.get("sec-websocket-protocol") == chosen, ws.headers
        assert ws.recv_message() == (OP_TEXT, repr(chosen).encode())
        ws.expect_close(1000)


def test_subprotocol_is_matched_exactly(ws_app):
    """RFC 6455 4.2.2: the server answers with one of the values the client
    sent, and a client fails the connection on any other (4.1).  An offer
    that differs from the route's name only in case is another protocol:
    answering "chat.v1" to "CHAT.V1" made the client give up."""
    with connect(ws_app.port, "/proto", protocols=["CHAT.V1", "SuperChat"]) as ws:
        assert "sec-websocket-protocol" not in ws.headers, ws.headers
        assert ws.recv_message() == (OP_TEXT, b"None")
        ws.expect_close(1000)
    with connect(ws_app.port, "/proto", protocols=["CHAT.V1", "chat.v1"]) as ws:
        assert ws.headers.get("sec-websocket-protocol") == "chat.v1", ws.headers
        assert ws.recv_message() == (OP_TEXT, b"'chat.v1'")
        ws.expect_close(1000)


def test_subprotocol_offered_over_several_lines(ws_app):
    """RFC 6455 11.3.4: Sec-WebSocket-Protocol may appear more than once in
    a request, as one list; the server's preference still wins."""
    with connect(ws_app.port, "/proto", protocols=["other"],
                 headers=[("Sec-WebSocket-Protocol", "superchat, chat.v1")]) as ws:
        assert ws.headers.get("sec-websocket-protocol") == "chat.v1", ws.headers
        assert ws.recv_message() == (OP_TEXT, b"'chat.v1'")
        ws.expect_close(1000)


def test_extension_offered_in_a_later_line(echo):
    """RFC 6455 11.3.2: Sec-WebSocket-Extensions may be repeated too."""
    with connect(echo, extensions="x-unknown-extension",
                 headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]) as ws:
        assert ws.deflate is not None, ws.headers
        assert roundtrip(ws, OP_TEXT, b"hello hello hello") == (OP_TEXT, b"hello hello hello")


def test_no_subprotocol_on_a_route_without_them(echo):
    with connect(echo, protocols=["chat"]) as ws:
        assert "sec-websocket-protocol" not in ws.headers


def test_request_attributes(ws_app):
    with connect(ws_app.port, "/info/alice?room=7&x=%C3%A9",
                 headers=[("X-Test", "yes")]) as ws:
        op, data = ws.recv_message()
        info = json.loads(data)
        assert info == {"path": "/info/alice", "query": {"room": "7", "x": "\u00e9"},
                        "match": {"name": "alice"}, "method": "GET", "x_test": "yes",
                        "closed": False, "close_code": None}, info
        assert roundtrip(ws, OP_TEXT, b"hi") == (OP_TEXT, b"got hi")
        ws.expect_close(1000)


def test_exception_after_await_closes_1011_and_worker_keeps_serving(ws_app):
    for i in range(3):
        with connect(ws_app.port, "/boom") as ws:
            ws.send_text("go %d" % i)
            ws.expect_close(1011)
    assert ws_app.wait_for_stderr("boom after go 2"), ws_app.stderr()
    with connect(ws_app.port, "/echo") as ws:
        assert roundtrip(ws, OP_TEXT, b"alive") == (OP_TEXT, b"alive")
    with Conn(ws_app.port) as c:
        assert c.request("GET", "/events/none").status == 200


def test_another_sockets_close_escaping_the_handler_is_its_failure(ws_app):
    """WebSocketClosed from a socket other than the handler's own (a relay
    whose peer left) is the handler failing: 1011 and logged, not 1000."""
    with connect(ws_app.port, "/relay") as ws:
        ws.send_text("m1")
        ws.expect_close(1011)
    assert ws_app.wait_for_stderr("relay peer gone with m1"), ws_app.stderr()


@pytest.mark.parametrize("exc", ["SystemExit", "KeyboardInterrupt", "GeneratorExit",
                                 "CancelledError"])
def test_base_exception_from_the_handler_closes_1011(ws_app, exc):
    """Whatever the handler raises ends its connection with 1011: the
    connection is not left open without a handler, and the worker serves
    on (asyncio re-raises SystemExit and KeyboardInterrupt from the loop)."""
    with connect(ws_app.port, "/boom-base") as ws:
        ws.send_text(exc)
        ws.expect_close(1011)
    with connect(ws_app.port, "/echo") as ws:
        assert roundtrip(ws, OP_TEXT, b"alive") == (OP_TEXT, b"alive")


def test_client_disconnect_while_handler_awaits(ws_app):
    ws = connect(ws_app.port, "/wait/gone")
    assert ws.recv_message() == (OP_TEXT, b"ready")
    ws.send_text("one")
    # the handler has the message before the connection goes (a reset can
    # overtake bytes the server has not read yet)
    assert events(ws_app.port, "gone", "message one")[-1] == "message one"
    ws.abort()   # no close frame: the TCP connection just goes away
    ev = events(ws_app.port, "gone", "closed")
    assert ev[:2] == ["started", "message one"], ev
    assert ev[-1] == "closed 1006 True 1006", ev


def test_client_close_while_handler_awaits(ws_app):
    with connect(ws_app.port, "/wait/closing") as ws:
        assert ws.recv_message() == (OP_TEXT, b"ready")
        ws.close(4321)
        ws.expect_close(4321)
    ev = events(ws_app.port, "closing", "closed")
    assert ev[-1] == "closed 4321 True 4321", ev


def test_upgrade_on_a_plain_route_or_unknown_path_is_not_switched(ws_app):
    with pytest.raises(HandshakeError) as e:
        connect(ws_app.port, "/events/nothing")
    assert e.value.status == 200 and e.value.body == b"[]", e.value.body
    with pytest.raises(HandshakeError) as e:
        connect(ws_app.port, "/no-such-socket")
    assert e.value.status == 404


@pytest.mark.parametrize("origin", [None, "https://app.example", "HTTPS://APP.EXAMPLE",
                                    "http://127.0.0.1:8080"])
def test_an_origin_the_route_allows_is_switched(ws_app, origin):
    # (no Origin: not a browser, which always sends one)
    with connect(ws_app.port, "/origins",
                 headers=[("Origin", origin)] if origin else []) as ws:
        assert ws.recv_message() == (OP_TEXT, b"hello")


@pytest.mark.parametrize("origins", [["https://evil.example"], ["https://app.example:443"],
                                     ["http://app.example"], ["null"],
                                     ["https://app.example.evil"],
                                     ["https://app.example", "https://app.example"]])
def test_an_origin_the_route_does_not_allow_is_refused_403(ws_app, origins):
    """RFC 6455 4.2.2: a page from another site may not open the socket
    with its user's cookies (cross-site WebSocket hijacking); two Origin
    lines are refused too.  The connection closes after the 403."""
    with pytest.raises(HandshakeError) as e:
        connect(ws_app.port, "/origins", headers=[("Origin", o) for o in origins])
    assert e.value.status == 403
    assert e.value.headers.get("connection") == "close", e.value.headers


@pytest.mark.parametrize("origins, error", [
    ("https://a.example/", ValueError), (["a.example"], ValueError),
    (["*"], ValueError), ([5], ValueError), (5, TypeError)])
def test_origins_that_are_not_origins_are_refused_when_the_route_is_added(origins, error):
    from fulmen import Application
    app = Application()

    async def h(ws):
        pass
    with pytest.raises(error):
        app.router.add_websocket("/ws", h, origins=origins)


# ---- keep-alive: ping_interval / ping_timeout ----------------------------------

# a silent client pinged, then closed with 1011, and a client that answers
# spared: test_websocket_tls.py, over plain TCP and TLS alike


def test_keepalive_spares_a_client_the_server_stopped_reading(ws_app):
    """The handler is busy and receives nothing, so the server stops
    reading the client's messages (and with them its pongs).  The client is
    alive and answers every ping: it must not be closed with 1011 for pongs
    the server itself left unread.  Once the handler receives, all flows."""
    ws = connect(ws_app.port, "/busy-keepalive/pongs")
    try:
        assert ws.recv_message(timeout=5) == (OP_TEXT, b"ready")
        for i in range(64):                      # more than the server queues
            ws.send_text("m%d" % i)
        deadline = time.monotonic() + 3.0        # ten ping intervals
        while time.monotonic() < deadline:
            try:
                f = ws.recv_frame(timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            assert f.opcode == OP_PING, "closed: %r" % (f.close_code,)
            ws.send_frame(OP_PONG, f.payload)
        with Conn(ws_app.port) as c:
            assert c.request("GET", "/release/pongs").status == 200
        for i in range(64):
            op, data = ws.recv_message(timeout=5)
            assert (op, data) == (OP_TEXT, b"m%d" % i)
    finally:
        ws.sock.close()


STOPPING_APP = """
import asyncio, sys
from fulmen import Application

app = Application()

async def slow(request):
    await asyncio.Event().wait()        # keeps the server draining

async def echo(ws):
    async for m in ws:
        await ws.send(m)

app.router.add_route("/slow", slow)
app.router.add_route("/", lambda request: request.Response(text="hi"))
app.router.add_websocket("/ws", echo)
app.run(host="127.0.0.1", port=0, graceful_timeout=2)
"""


def test_upgrade_while_stopping_is_503(tmp_path):
    """A WebSocket asked for while the server drains would be cut at the
    grace period's end: the answer is a 503 that ends the connection (it
    was a 101 and then the socket closed)."""
    from .test_supervisor import Proc, write_app
    srv = Proc([sys.executable, write_app(tmp_path, "stopping", STOPPING_APP)]).start()
    try:
        with Conn(srv.port) as busy, Conn(srv.port) as c:
            busy.send(build_request("GET", "/slow"))
            # c is accepted once a connection made after it is answered; a
            # connection that has sent nothing yet gets a second's drain
            with Conn(srv.port) as probe:
                assert probe.request("GET", "/").status == 200
            srv.proc.send_signal(signal.SIGTERM)
            while True:                     # the listener closes once it is stopping
                try:
                    socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
                except (ConnectionRefusedError, ConnectionResetError):
                    break
            c.send(build_request("GET", "/ws", upgrade_headers()))
            r = c.read_response()
            assert r.status == 503, r
            assert r.header("Connection") == "close"
            assert c.at_eof()
    finally:
        srv.stop()


def test_graceful_stop_closes_websockets_with_1001():
    """SIGTERM: an open WebSocket gets a close frame with 1001 (going away,
    RFC 6455 7.4.1: 'such as a server going down') before the connection
    closes, not a bare TCP close that the client sees as 1006; the handler's
    `async for` ends and the server exits at once."""
    srv = Server([sys.executable, EXAMPLE, "--port", "0"]).start()
    try:
        with connect(srv.port) as ws:
            assert roundtrip(ws, OP_TEXT, b"hi") == (OP_TEXT, b"hi")
            srv.proc.send_signal(signal.SIGTERM)
            ws.expect_close(1001)
    finally:
        code = srv.stop()
    assert clean_exit(code), srv.stderr()
    assert not srv.crash_report(), srv.stderr()


# ---- a view of another connection writes to a WebSocket, or reads a body ------------
#
# Answers are made into one buffer per process, sent once a read's requests
# are done: what a view writes to another connection must not take with it
# the answers its own connection has made so far (they went to the
# WebSocket's socket: another client's data, and a corrupt stream).

def _listener(port, tag):
    ws = connect(port, "/listen/" + tag, timeout=10)
    assert ws.recv_message() == (OP_TEXT, b"ready")
    return ws


def test_a_sync_view_sending_to_a_websocket_keeps_its_connections_answers(ws_app):
    ws = _listener(ws_app.port, "pipelined")
    try:
        with Conn(ws_app.port) as c:
            c.send(build_request("GET", "/events/none-1") + build_request("GET", "/events/none-2")
                   + build_request("GET", "/broadcast/pipelined")
                   + build_request("GET", "/events/none-3"))
            bodies = [c.read_response().body for _ in range(4)]
        assert bodies == [b"[]", b"[]", b"sent", b"[]"]
        assert ws.recv_message() == (OP_TEXT, b"hello from /broadcast/pipelined")
        ws.send_text("still a WebSocket")         # its stream is whole
        ws.close()
        assert ws.recv_message()[0] == OP_CLOSE
    finally:
        ws.abort()


def test_a_view_sending_before_its_100_continue_keeps_it(ws_app):
    ws = _listener(ws_app.port, "upload")
    try:
        with Conn(ws_app.port) as c:
            c.send(build_request("POST", "/upload-broadcast/upload",
                                 headers={"Expect": "100-continue", "Content-Length": "5"}))
            interim = c.read_response()
            assert interim.status == 100
            c.send(b"abcde")
            r = c.read_response()
            assert (r.status, r.body) == (200, b"5")
        assert ws.recv_message() == (OP_TEXT, b"upload started")
    finally:
        ws.abort()


@pytest.mark.parametrize("path,body,frame", [
    ("/slow-done/", b"slow answer", b"done /slow-done/"),
    ("/header-sends/", b"header answer", b"from a header")])
def test_an_async_answer_whose_app_code_sends_to_a_websocket_stays_whole(
        ws_app, path, body, frame):
    """An async view's answer, written once the loop has turned, while its
    done callback or a header value's str() sends to a WebSocket: the
    answer goes whole to its own client (it went, or half of it, to the
    WebSocket that last had a read), the frame alone to the WebSocket."""
    tag = path.strip("/").replace("/", "-")
    ws = None
    try:
        with Conn(ws_app.port) as c:
            c.send(build_request("GET", "/events/none") + build_request("GET", path + tag)
                   + build_request("GET", "/events/none"))
            assert c.read_response().body == b"[]"
            # the view waits for the listener, whose upgrade is the last read
            ws = _listener(ws_app.port, tag)
            r = c.read_response()
            assert (r.status, r.body) == (200, body)
            assert r.header_all("Server") == (["mine"] if "header" in path else ["fulmen"])
            assert c.read_response().body == b"[]"
        assert ws.recv_message() == (OP_TEXT, frame + (tag.encode() if "done" in path
                                                      else b""))
    finally:
        if ws is not None:
            ws.abort()


def test_a_body_read_by_a_view_of_another_connection(ws_app):
    """The stream of a paused upload, read from a view of a connection
    that has pipelined answers waiting: each connection gets its own."""
    size = 4 << 20          # more than the server reads before it pauses
    with Conn(ws_app.port, timeout=20) as up, Conn(ws_app.port, timeout=20) as c:
        # (sent from a thread: the server stops reading it until it is read)
        sender = threading.Thread(target=up.send, daemon=True, args=(
            build_request("POST", "/keep-body/kb", headers={"Content-Length": str(size)})
            + b"x" * size,))
        sender.start()
        for _ in range(1000):          # until the view has handed its stream over
            if c.request("GET", "/kept/kb").body == b"yes":
                break
        c.send(build_request("GET", "/events/none-1") + build_request("GET", "/events/none-2")
               + build_request("GET", "/read-kept/kb"))
        assert [c.read_response().body for _ in range(3)] == \
            [b"[]", b"[]", b"read %d" % size]
        sender.join(20)
        assert up.read_response().body == b"kept read %d" % size


# ---- examples/chat: a broadcast room ---------------------------------------------

def test_chat_room_is_not_held_up_by_a_member_that_does_not_read():
    """examples/chat/app.py, three members, one of which reads nothing (a
    small receive buffer, soon full): the others still get every message at
    once.  The room awaited its sends before, so the sender's handler
    waited for the member that did not read, and the room stalled until
    body_timeout (30 s) cut it."""
    chat = os.path.join(REPO, "examples", "chat", "app.py")
    srv = Server([sys.executable, chat, "--port", "0"]).start()
    n, text = 1500, "m" * 1900           # ~3 MB, far past the stuck one's buffers
    try:
        stuck = connect(srv.port, "/ws", timeout=10,
                        sockopts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
        with stuck, connect(srv.port, "/ws", timeout=10) as sender, \
                connect(srv.port, "/ws", timeout=10) as reader:
            nick = json.loads(sender.recv_message()[1])["nick"]
            got = 0

            def pump():
                nonlocal got
                while got < n:
                    event = json.loads(reader.recv_message()[1])
                    if event["type"] == "message" and event["nick"] == nick:
                        assert event["text"] == text
                        got += 1

            t = threading.Thread(target=pump, daemon=True)
            t.start()
            for _ in range(n):
                sender.send_frame(OP_TEXT, text.encode())
            t.join(20)
            assert got == n, "%d of %d messages arrived" % (got, n)
    finally:
        code = srv.stop()
    assert clean_exit(code), describe(code)
    assert not srv.crash_report(), srv.stderr()


def test_str_of_websocket_closed_says_its_code_and_reason():
    # OSError's took the code for an errno: "[Errno 1006] gone"
    from fulmen import WebSocketClosed
    assert str(WebSocketClosed(1006, "gone")) == "the WebSocket is closed (1006: gone)"
    assert str(WebSocketClosed(1000, None)) == "the WebSocket is closed (1000)"
    assert WebSocketClosed(1001, "bye").args == (1001, "bye")
