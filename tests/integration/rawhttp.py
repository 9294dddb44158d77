"""A small HTTP/1.1 client over raw sockets, for driving the server byte by byte.

It sends exactly the bytes a test gives it and parses what comes back strictly:
a response that is not well formed raises ProtocolError, a server that goes
quiet raises socket.timeout after TIMEOUT seconds, so a hung server fails the
test instead of hanging the suite.
"""
import re
import socket

TIMEOUT = 5.0

_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) (\d{3}) ([^\r\n]*)")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class ProtocolError(AssertionError):
    """The server sent bytes that are not a well-formed HTTP/1.1 response."""


class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version      # "1.1" / "1.0"
        self.status = status        # int
        self.reason = reason        # str
        self.headers = headers      # list of (name, value) str pairs, as sent
        self.body = body            # bytes, de-chunked
        self.raw = raw              # the response bytes as received

    def header(self, name, default=None):
        """The value of the single header `name` (case-insensitive); fails
        the test if the header occurs more than once."""
        values = self.header_all(name)
        if not values:
            return default
        assert len(values) == 1, "header %s repeated: %r" % (name, values)
        return values[0]

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        import json
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (
            self.status, self.reason, self.headers, self.body[:200])


def fields_but_date(resp, *also):
    """The header fields of `resp` as a sorted list of (lower-case name,
    value), without Date (a GET and a HEAD answered a second apart differ
    there) nor the lower-case names in `also`."""
    skip = {"date", *also}
    return sorted((k.lower(), v) for k, v in resp.headers if k.lower() not in skip)


def build_request(method="GET", path="/", headers=(), body=None, version="1.1",
                  host="test"):
    """Serialise one request.  `headers` is a list of pairs or a dict; a
    Content-Length is added for `body` unless the headers frame it already."""
    lines = ["%s %s HTTP/%s" % (method, path, version)]
    if isinstance(headers, dict):
        headers = list(headers.items())
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    lines.extend("%s: %s" % kv for kv in headers)
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        lines.append("Content-Length: %d" % len(body))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def chunked(body, sizes=None, ext=b"", trailers=b""):
    """Encode `body` with the chunked coding, in pieces of `sizes` (cycled);
    `ext` is appended to each chunk size, `trailers` are raw trailer lines."""
    sizes = sizes or [len(body) or 1]
    out, i, k = [], 0, 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        k += 1
        piece = body[i:i + n]
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
        i += n
    out.append(b"0%s\r\n%s\r\n" % (ext, trailers))
    return b"".join(out)


class Conn:
    """One client connection with a receive buffer."""

    def __init__(self, port, host="127.0.0.1", timeout=TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_pieces(self, data, cuts):
        """Send `data` split at the sorted offsets `cuts`, one send per piece."""
        prev = 0
        for c in sorted(set(cuts)) + [len(data)]:
            if c > prev:
                self.sock.sendall(data[prev:c])
                prev = c

    def _fill(self):
        """Receive more bytes; return False on EOF (or reset) instead."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, delim):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(delim)]
                return out
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self._fill():
                raise ProtocolError("EOF before %r; have %r" % (delim, bytes(self.buf[:300])))

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ProtocolError("EOF after %d of %d body bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def at_eof(self):
        """True when the server has closed and every byte has been consumed.
        Waits (up to the socket timeout) for the server to close if it has not;
        a server that keeps the connection open is False, not an error."""
        try:
            while not self.buf and self._fill():
                pass
        except TimeoutError:
            return False
        return self.eof and not self.buf

    def read_response(self, head=False):
        """Parse the next response (interim 1xx responses included).  `head`
        says the request was HEAD, so the response has no body.  Raises
        EOFError if the server closed cleanly before the first byte."""
        if not self.buf and not self._fill():
            raise EOFError("connection closed before a response")
        raw_head = self._read_until(b"\r\n\r\n")
        lines = raw_head.split(b"\r\n")
        m = _STATUS_LINE.fullmatch(lines[0])
        if not m:
            raise ProtocolError("bad status line %r" % lines[0])
        version = m.group(1).decode()
        status = int(m.group(2))
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.fullmatch(name):
                raise ProtocolError("bad header line %r" % line)
            if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value):
                raise ProtocolError("control byte in header %r" % line)
            headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
        raw = raw_head + b"\r\n\r\n"
        resp = Response(version, status, m.group(3).decode("latin-1"), headers, b"", raw)
        if head or 100 <= status < 200 or status in (204, 304):
            return resp
        te = resp.header_all("transfer-encoding")
        cl = resp.header_all("content-length")
        if te:
            if te[-1].lower().rsplit(",", 1)[-1].strip() != "chunked":
                raise ProtocolError("unsupported transfer-encoding %r" % te)
            resp.body = self._read_chunked()
        elif cl:
            if len(set(cl)) != 1 or not cl[0].isdigit():
                raise ProtocolError("bad content-length %r" % cl)
            resp.body = self._read_exact(int(cl[0]))
        else:
            while self._fill():
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
        resp.raw += resp.body
        return resp

    def _read_chunked(self):
        parts = []
        while True:
            line = self._read_until(b"\r\n")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while self._read_until(b"\r\n"):
                    pass                                   # trailers
                return b"".join(parts)
            parts.append(self._read_exact(size))
            if self._read_exact(2) != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")

    def read_final(self, head=False):
        """Read the next response, skipping (and returning) 1xx interims."""
        interim = []
        while True:
            r = self.read_response(head=head)
            if r.status >= 200:
                r.interim = interim
                return r
            interim.append(r)

    def request(self, *args, **kw):
        """Send one request (build_request arguments) and read its response."""
        self.send(build_request(*args, **kw))
        return self.read_final(head=(args[0] if args else kw.get("method")) == "HEAD")


def exchange(port, data, host="127.0.0.1"):
    """Send `data` on a fresh connection, then read responses until the server
    closes.  Returns the list of responses; fails on a hang or garbage."""
    with Conn(port, host) as c:
        c.send(data)
        out = []
        while True:
            try:
                out.append(c.read_response())
            except EOFError:
                return out
