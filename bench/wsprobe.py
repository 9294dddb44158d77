"""A tiny blocking WebSocket client (standard library only) for run.py's
correctness probe of the ws-echo scenario: RFC 6455 handshake (no
extensions offered; the answer must be 101 with the right
Sec-WebSocket-Accept and no extension), masked frames, then a close
handshake.  Independent of bench/ws_load.c, so the probe also checks the
load generator's idea of a correct echo."""
import base64
import hashlib
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload, fin=True):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", (0x80 if fin else 0) | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", (0x80 if fin else 0) | opcode, 0x80 | 127, n)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + body


class Conn:
    def __init__(self, port, path="/ws", timeout=2.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), port, key))
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 101"):
            raise ValueError("handshake answered %r" % lines[0][:60])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            hdrs[k.strip().lower()] = v.strip()
        want = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if hdrs.get(b"sec-websocket-accept") != want:
            raise ValueError("wrong Sec-WebSocket-Accept %r" % hdrs.get(b"sec-websocket-accept"))
        if b"sec-websocket-extensions" in hdrs:
            raise ValueError("server chose an extension: %r" % hdrs[b"sec-websocket-extensions"])

    def _more(self):
        d = self.sock.recv(65536)
        if not d:
            raise ValueError("connection closed by the server")
        self.buf += d

    def _need(self, n):
        while len(self.buf) < n:
            self._more()

    def read_frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise ValueError("masked server frame")
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def read_message(self):
        """(opcode, payload) of the next data or close message; fragments joined."""
        op, parts = None, []
        while True:
            fin, o, p = self.read_frame()
            if o == 9:
                self.sock.sendall(frame(10, p))
                continue
            if o == 10:
                continue
            if o == 8:
                return 8, p
            if o != 0:
                op = o
            parts.append(p)
            if fin:
                return op, b"".join(parts)

    def close(self):
        try:
            self.sock.sendall(frame(8, struct.pack("!H", 1000)))
            op, _ = self.read_message()
        except (OSError, ValueError):
            pass
        self.sock.close()


def exchange(port, messages, path="/ws", timeout=2.0):
    """Send [(opcode, payload)] in one write; return the echoed messages."""
    c = Conn(port, path, timeout)
    try:
        c.sock.sendall(b"".join(frame(op, p) for op, p in messages))
        return [c.read_message() for _ in messages]
    finally:
        c.close()
