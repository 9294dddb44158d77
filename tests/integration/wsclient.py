"""A small raw-socket WebSocket client (RFC 6455, RFC 7692) for the tests.

It does exactly what it is told, so that it can also break the protocol:
frames with any opcode, RSV bits, FIN flag, mask (or none) and length
encoding (7-bit, 16-bit or 64-bit, minimal or not), sent whole, split in
pieces, or mixed with garbage.  Reading gives back the server's frames one by
one (unmasked, as a server must send them) or reassembled messages.

    ws = WSClient(port, "/ws").connect()
    ws.send_text("hello")
    assert ws.recv_message() == (OP_TEXT, b"hello")
    ws.close(1000)
    ws.expect_close(1000)

permessage-deflate (client side) uses zlib from the stdlib: Deflate(...) and
Inflate(...) follow the negotiated context-takeover and window parameters.

wss://: WSClient(port, path, ssl_context=ctx) wraps the socket in TLS once
it is connected (server_hostname defaults to "localhost", the test
certificate's name); everything else works as over plain TCP.  A TLS
close_notify from the server reads as EOF, like a FIN.
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import time
import zlib

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFLATE_TAIL = b"\x00\x00\xff\xff"


class Closed(Exception):
    """The server closed the TCP connection (EOF or reset)."""


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "payload", "masked")

    def __init__(self, fin, rsv, opcode, payload, masked=False):
        self.fin, self.rsv, self.opcode, self.payload, self.masked = fin, rsv, opcode, payload, masked

    @property
    def close_code(self):
        """The status code of a close frame (1005 when it has none)."""
        assert self.opcode == OP_CLOSE, self
        if len(self.payload) < 2:
            return 1005
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:].decode("utf-8")

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return "Frame(fin=%d rsv=%d op=%#x len=%d %r)" % (
            self.fin, self.rsv, self.opcode, len(self.payload), p)


def mask_bytes(data, key):
    """XOR data with the 4-byte key (masking and unmasking alike)."""
    if not data:
        return b""
    n = len(data)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(n, "big")


def build_frame(opcode, payload=b"", *, fin=True, rsv=0, mask=True, mask_key=None,
                length=None, len_encoding=None):
    """The bytes of one frame.

    rsv: the RSV bits as a 3-bit number (4 = RSV1, 2 = RSV2, 1 = RSV3).
    mask: mask the payload (clients must); mask_key: the 4 bytes to use.
    length: the length to announce (default len(payload)); a lie is allowed.
    len_encoding: force "7", "16" or "64" (non-minimal encodings included).
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    enc = len_encoding or ("7" if n < 126 else "16" if n < 65536 else "64")
    if enc == "7":
        assert n < 126
        head = bytes([b0, mbit | n])
    elif enc == "16":
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Deflate:
    """The client's compressor for permessage-deflate (RFC 7692 7.2.1)."""

    def __init__(self, window_bits=15, no_context_takeover=False):
        self.bits, self.no_ctx = window_bits, no_context_takeover
        self.z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)

    def __call__(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        out = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(DEFLATE_TAIL)
        if self.no_ctx:
            self.z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.bits)
        return out[:-4]


class Inflate:
    """The client's decompressor for the server's messages (RFC 7692 7.2.2)."""

    def __init__(self, window_bits=15, no_context_takeover=False):
        self.bits, self.no_ctx = window_bits, no_context_takeover
        self.z = zlib.decompressobj(-window_bits)

    def __call__(self, data):
        out = self.z.decompress(data + DEFLATE_TAIL)
        if self.no_ctx:
            self.z = zlib.decompressobj(-self.bits)
        return out


def parse_extensions(value):
    """'permessage-deflate; a=1; b' -> [('permessage-deflate', {'a': '1', 'b': None})]."""
    out = []
    for ext in (value or "").split(","):
        parts = [p.strip() for p in ext.split(";") if p.strip()]
        if not parts:
            continue
        params = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            params[k.strip()] = v.strip().strip('"') if _ else None
        out.append((parts[0], params))
    return out


class HandshakeError(Exception):
    def __init__(self, status, headers, body):
        super().__init__("handshake refused: %s %r" % (status, headers))
        self.status, self.headers, self.body = status, headers, body


class WSClient:
    def __init__(self, port, path="/", host="127.0.0.1", *, headers=None,
                 extensions=None, protocols=None, timeout=10.0, sockopts=(),
                 ssl_context=None, server_hostname="localhost"):
        self.port, self.path, self.host = port, path, host
        self.ssl_context, self.server_hostname = ssl_context, server_hostname
        self.sockopts = sockopts  # (level, option, value), set before connecting
        self.extra_headers = list(headers or [])
        self.extensions_offer = extensions
        self.protocols = protocols
        self.timeout = timeout
        self.sock = None
        self.buf = bytearray()
        self.status = None
        self.headers = {}
        self.deflate = None   # (Deflate, Inflate) once permessage-deflate is on
        self.close_sent = False
        self.pmd_params = None

    # -- opening handshake ---------------------------------------------------

    def handshake_request(self, key=None):
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % self.path,
                 "Host: %s:%d" % (self.host, self.port),
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + self.key,
                 "Sec-WebSocket-Version: 13"]
        if self.extensions_offer:
            lines.append("Sec-WebSocket-Extensions: " + self.extensions_offer)
        if self.protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(self.protocols))
        lines += ["%s: %s" % kv for kv in self.extra_headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def open_socket(self):
        if self.sockopts:   # buffer sizes must be set before connect()
            self.sock = socket.socket()
            for opt in self.sockopts:
                self.sock.setsockopt(*opt)
            self.sock.settimeout(self.timeout)
            self.sock.connect((self.host, self.port))
        else:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            self.sock = self.ssl_context.wrap_socket(self.sock,
                                                     server_hostname=self.server_hostname)
        return self.sock

    def connect(self, extra=b""):
        """Handshake (plus `extra` bytes in the same write); raises
        HandshakeError unless the answer is a valid 101."""
        self.open_socket()
        self.sock.sendall(self.handshake_request() + extra)
        status, headers, body = self.read_response()
        self.status, self.headers = status, headers
        if status != 101:
            self.sock.close()
            raise HandshakeError(status, headers, body)
        expect = base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == expect, headers
        assert headers.get("upgrade", "").lower() == "websocket", headers
        assert "upgrade" in headers.get("connection", "").lower(), headers
        exts = parse_extensions(headers.get("sec-websocket-extensions"))
        if exts:
            assert len(exts) == 1 and exts[0][0] == "permessage-deflate", exts
            p = exts[0][1]
            self.pmd_params = p
            sbits = int(p.get("server_max_window_bits") or 15)
            cbits = int(p.get("client_max_window_bits") or 15)
            self.deflate = (Deflate(cbits, "client_no_context_takeover" in p),
                            Inflate(sbits, "server_no_context_takeover" in p))
        return self

    def read_response(self):
        """(status, {lower-case name: value}, body bytes) of an HTTP answer;
        the bytes after the head stay in self.buf (for a 101) or are the
        body (Content-Length)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = b""
        if status != 101 and "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return status, headers, body

    # -- sending ---------------------------------------------------------------

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))
        if opcode == OP_CLOSE:
            self.close_sent = True

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_compressed(self, opcode, data, fragments=1):
        """A permessage-deflate message (RSV1 on the first frame only)."""
        comp = self.deflate[0](data)
        if fragments <= 1:
            self.send_frame(opcode, comp, rsv=4)
            return
        step = max(1, -(-len(comp) // fragments))
        pieces = [comp[i:i + step] for i in range(0, len(comp), step)] or [b""]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            self.send_frame(opcode if i == 0 else OP_CONT, piece, fin=last,
                            rsv=4 if i == 0 else 0)

    def send_fragments(self, opcode, pieces):
        for i, piece in enumerate(pieces):
            self.send_frame(opcode if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)

    def close(self, code=1000, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    # -- receiving -------------------------------------------------------------

    def _fill(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            raise Closed("connection reset") from None
        except ssl.SSLEOFError:
            raise Closed("EOF without close_notify") from None
        finally:
            if timeout is not None:
                self.sock.settimeout(self.timeout)
        if not data:
            raise Closed("EOF")
        self.buf += data

    def _need(self, n):
        while len(self.buf) < n:
            self._fill()

    def recv_frame(self, timeout=None):
        """The next frame from the server.  Raises Closed on EOF and
        socket.timeout when nothing comes."""
        if timeout is not None:
            old = self.timeout
            self.timeout = timeout
            self.sock.settimeout(timeout)
        try:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                self._need(4)
                n = struct.unpack("!H", self.buf[2:4])[0]
                pos = 4
            elif n == 127:
                self._need(10)
                n = struct.unpack("!Q", self.buf[2:10])[0]
                pos = 10
            masked = bool(b1 & 0x80)
            key = None
            if masked:
                self._need(pos + 4)
                key = bytes(self.buf[pos:pos + 4])
                pos += 4
            self._need(pos + n)
            payload = bytes(self.buf[pos:pos + n])
            del self.buf[:pos + n]
        finally:
            if timeout is not None:
                self.timeout = old
                self.sock.settimeout(old)
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(b0 >> 7, (b0 >> 4) & 7, b0 & 0xF, payload, masked)

    def recv_message(self, timeout=None, *, return_controls=False):
        """(opcode, payload) of the next data message, reassembled and
        inflated; control frames are skipped (or returned, as (op, payload),
        with return_controls).  A close frame is returned as (OP_CLOSE, payload)."""
        op, parts, compressed = None, [], False
        while True:
            f = self.recv_frame(timeout)
            assert not f.masked, "a server frame must not be masked: %r" % f
            if f.opcode >= 8:
                assert f.fin and len(f.payload) <= 125, f
                if f.opcode == OP_CLOSE or return_controls:
                    return f.opcode, f.payload
                continue
            if op is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), "unexpected %r" % f
                op = f.opcode
                compressed = bool(f.rsv & 4)
                assert f.rsv & 3 == 0, f
                assert not compressed or self.deflate, "RSV1 without permessage-deflate: %r" % f
            else:
                assert f.opcode == OP_CONT and f.rsv == 0, f
            parts.append(f.payload)
            if f.fin:
                data = b"".join(parts)
                if compressed:
                    data = self.deflate[1](data)
                if op == OP_TEXT:
                    data.decode("utf-8")  # the server must send valid UTF-8
                return op, data

    def expect_close(self, code, timeout=5.0):
        """Read until the server's close frame: its code must be `code` (a
        code or a tuple of acceptable ones).  A close the server started is
        answered (with the same code), as a client must; then the server
        must close the TCP connection.  Data frames before the close are
        allowed.  Returns the close frame."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.05, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                break
        codes = code if isinstance(code, tuple) else (code,)
        assert f.close_code in codes, "close code %d, expected %s (%r)" % (
            f.close_code, codes, f)
        if not self.close_sent:
            try:
                self.send_frame(OP_CLOSE, f.payload[:2])
            except OSError:
                pass   # the server failed the connection and is gone already
        self.expect_eof(max(0.5, deadline - time.monotonic()))
        return f

    def expect_eof(self, timeout=5.0):
        """The server closes the TCP connection (no more frames)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                raise AssertionError("bytes after the close frame: %r" % data[:80])
        except (ConnectionResetError, ssl.SSLEOFError):
            return
        finally:
            self.sock.settimeout(self.timeout)

    def abort(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()
