"""request.transport on a connection whose TLS runs in C (tls.c,
docs/tls.md): uvloop's plain transport, with get_extra_info() answering
the TLS names ("peercert", "cipher", "compression", "ssl_object",
"sslcontext") as uvloop's TLS transport does, from the connection's SSL."""
import os
import ssl

_TLS_NAMES = frozenset(("peercert", "cipher", "compression", "ssl_object", "sslcontext"))
_DECODED_MAX = 64
_decoded = {}   # client certificate (DER) -> ssl's dict of it: the few seen lately


def _decode(der):
    """ssl's dict of a certificate (SSLObject.getpeercert()), made by _ssl
    itself, which reads it only from a file: a memfd here."""
    d = _decoded.get(der)
    if d is None:
        import _ssl
        fd = os.memfd_create("fulmen-peercert", os.MFD_CLOEXEC)
        try:
            os.write(fd, ssl.DER_cert_to_PEM_cert(der).encode("ascii"))
            d = _ssl._test_decode_cert("/proc/self/fd/%d" % fd)
        finally:
            os.close(fd)
        if len(_decoded) >= _DECODED_MAX:
            _decoded.clear()
        _decoded[der] = d
    return dict(d)


class SSLInfo:
    """What get_extra_info("ssl_object") gives: the read-only part of
    ssl.SSLObject's interface, answered from the connection's SSL."""

    __slots__ = ("_info", "context")
    server_side = True
    server_hostname = None

    def __init__(self, info, context):
        self._info, self.context = info, context

    def getpeercert(self, binary_form=False):
        der, verified = self._info[3], self._info[4]
        if der is None:
            return None
        if binary_form:
            return der
        return _decode(der) if verified else {}

    def cipher(self):
        return self._info[1]

    def version(self):
        return self._info[0]

    def selected_alpn_protocol(self):
        return self._info[2]

    def compression(self):
        return None


class TLSTransport:
    """The plain transport, with the TLS names of get_extra_info(), read
    from the SSL when the view asks for request.transport: they still
    answer once the client has gone (and the SSL with it), as uvloop's do."""

    __slots__ = ("_transport", "_info", "_context")

    def __init__(self, transport, conn, context):
        self._transport, self._context = transport, context
        self._info = conn._tls_info()

    def get_extra_info(self, name, default=None):
        if name not in _TLS_NAMES:
            return self._transport.get_extra_info(name, default)
        if name == "sslcontext":
            return self._context
        info = self._info
        if info is None:        # (no handshake done: no request either)
            return default
        obj = SSLInfo(info, self._context)
        if name == "ssl_object":
            return obj
        if name == "peercert":
            return obj.getpeercert()
        if name == "cipher":
            return obj.cipher()
        return None             # compression: never

    def _no_raw_bytes(self, *args, **kw):
        # OpenSSL runs this socket in C: bytes written, or a close, through
        # the plain transport would go out unencrypted (breaking the
        # session) or not at all
        raise RuntimeError("under TLS in C a view cannot write to or close request.transport: "
                           "answer with a Response (a stream for bytes as they come; "
                           "headers={'Connection': 'close'} to end the connection)")

    write = writelines = write_eof = close = abort = _no_raw_bytes

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def __repr__(self):
        return "<fulmen TLS in C over %r>" % (self._transport,)
