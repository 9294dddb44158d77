"""A tiny stdlib HTTP/1.1 client for the benchmark's correctness probes and
for the instruction-count driver (instr.py).

It sends raw request bytes (so pipelining is exact: N requests in one write)
and parses responses framed by Content-Length or chunked encoding.  Not a
general client: no redirects, no 1xx handling beyond skipping.  TLS when
given an ssl.SSLContext (the tls scenario; certificates are not checked).
"""
import socket
import time


def build_request(method, path, port, headers=(), body=b""):
    """One HTTP/1.1 request as bytes (keep-alive)."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % port]
    lines += ["%s: %s" % kv for kv in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_one(buf, start=0):
    """Parse one response from buf[start:].

    Returns (status, headers, body, end) where headers is a dict with
    lower-case names, or None when buf holds no complete response yet.
    Raises ValueError on a malformed response.
    """
    head_end = buf.find(b"\r\n\r\n", start)
    if head_end < 0:
        return None
    lines = buf[start:head_end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError("bad status line %r" % lines[0])
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    pos = head_end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = []
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                return None
            size = int(buf[pos:nl].split(b";")[0], 16)
            if len(buf) < nl + 2 + size + 2:
                return None
            body.append(buf[nl + 2:nl + 2 + size])
            pos = nl + 2 + size + 2
            if size == 0:
                return status, headers, b"".join(body), pos
    length = int(headers.get("content-length", "0"))
    if len(buf) < pos + length:
        return None
    return status, headers, buf[pos:pos + length], pos + length


class Conn:
    """One keep-alive connection that sends raw bytes and collects responses."""

    def __init__(self, port, timeout=5.0, tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def recv_responses(self, want, deadline=None):
        """Read until `want` whole responses arrived (or EOF/deadline)."""
        out = []
        while len(out) < want:
            r = parse_one(self.buf) if self.buf else None
            if r is not None:
                out.append(r[:3])
                self.buf = self.buf[r[3]:]
                continue
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                data = self.sock.recv(262144)
            except socket.timeout:
                break
            if not data:
                break
            self.buf += data
        return out

    def close(self):
        self.sock.close()


def exchange(port, payload, want, timeout=3.0, tls=None):
    """Send payload in one write on a new connection; return the responses."""
    c = Conn(port, timeout, tls)
    try:
        c.send(payload)
        return c.recv_responses(want, time.monotonic() + timeout)
    finally:
        c.close()
