"""TLS in C (tls.c): what a hostile or unusual client sends over TLS must
not crash the worker or hang a connection, and what the app sees (scheme,
pipelining, large answers, files) is what it saw over uvloop's TLS."""
import json
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_binding import cert  # noqa: F401
from .test_soak import client_hello
from .test_supervisor import Proc, write_app

APP = '''
import os, sys
from fulmen import Application

app = Application(header_timeout=1.0)

def hello(request):
    return request.Response(text="hello " + request.scheme)

def big(request):
    return request.Response(body=b"y" * int(request.query["n"]))

def emptied(request):
    # a file whose answer is made, which then gets shorter before it goes
    import tempfile
    from fulmen import streams
    with tempfile.NamedTemporaryFile() as f:
        f.truncate(1 << 20)
        body = streams._file_body(f.name, os.fstat(f.fileno()), 0, 1 << 20)
        f.truncate(int(request.query["to"]))
        fd = os.open(f.name, os.O_RDONLY)   # what _FileBody.open opens again
        body._reopen = lambda: fd
    return request.Response(stream=body, headers={"Content-Length": str(1 << 20)})

async def chunks(request):
    import asyncio
    async def gen():
        for i in range(int(request.query["n"])):
            yield b"%d:" % i + b"z" * 1000 + b"\\n"
            if i % 50 == 0:
                await asyncio.sleep(0)
    return request.Response(stream=gen())

GATE = {}

async def gated(request):
    # answers once /open has been asked: after the client's FIN
    import asyncio
    ev = GATE.setdefault("ev", asyncio.Event())
    await ev.wait()
    ev.clear()
    return request.Response(text="after the FIN")

def gate_open(request):
    import asyncio
    GATE.setdefault("ev", asyncio.Event()).set()
    return request.Response(text="open")

LATE = {}

async def late_peer(request):
    # reads the client's certificate once /open is asked, the client gone
    import asyncio
    t = request.transport
    LATE.setdefault("started", asyncio.Event()).set()
    ev = GATE.setdefault("ev", asyncio.Event())
    await ev.wait()
    ev.clear()
    for _ in range(500):            # until its connection is gone (the client reset it)
        if request.transport is None:
            break
        await asyncio.sleep(0.01)
    LATE["peercert"] = t.get_extra_info("peercert")
    LATE["cipher"] = t.get_extra_info("cipher") is not None
    LATE.setdefault("done", asyncio.Event()).set()
    return request.Response(text="late")

async def late_started(request):
    import asyncio
    await LATE.setdefault("started", asyncio.Event()).wait()
    return request.Response(text="started")

async def late_result(request):
    import asyncio
    await LATE.setdefault("done", asyncio.Event()).wait()
    return request.Response(json={"peercert": LATE["peercert"], "cipher": LATE["cipher"]})

def tlsinfo(request):
    t = request.transport
    so = t.get_extra_info("ssl_object")
    der = so.getpeercert(binary_form=True) if so is not None else None
    return request.Response(json={
        "ssl_object": so is not None, "peercert": t.get_extra_info("peercert"),
        "in_c": type(t).__module__ == "fulmen._tls",
        "der": len(der) if der else None, "version": so.version() if so else None,
        "cipher": t.get_extra_info("cipher"),
        "sslcontext": t.get_extra_info("sslcontext") is not None,
        "peername": t.get_extra_info("peername") is not None})

def raw_write(request):
    # what a view's write to, or close of, the transport does: under TLS in
    # C it would bypass OpenSSL, so it is refused
    op = request.query["op"]
    try:
        getattr(request.transport, op)(*((b"raw",) if op == "write" else ()))
    except RuntimeError as e:
        return request.Response(text="refused: %s" % e)
    return request.Response(text="done")

def body_len(request):
    body = request.body
    return request.Response(text="%d %d" % (len(body), sum(body) % 65521))

app.router.add_route("/", hello)
app.router.add_route("/len", body_len, methods=["POST"])
app.router.add_route("/raw", raw_write)
app.router.add_route("/tlsinfo", tlsinfo)
app.router.add_route("/gated", gated)
app.router.add_route("/late-peer", late_peer)
app.router.add_route("/late-result", late_result)
app.router.add_route("/late-started", late_started)
app.router.add_route("/open", gate_open)
app.router.add_route("/big", big)
app.router.add_route("/emptied", emptied)
app.router.add_route("/chunks", chunks)
app.router.add_static("/files", os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    import ssl
    if len(sys.argv) > 3:
        # sys.argv[3]: "client-cert=CA" asks for client certificates issued
        # by CA ("client-cert-optional=CA": may have one); "psk" adds a PSK
        # server callback (3.13)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        if sys.argv[3].startswith("client-cert"):
            kind, ca = sys.argv[3].split("=", 1)
            ctx.verify_mode = ssl.CERT_OPTIONAL if kind.endswith("optional") else ssl.CERT_REQUIRED
            ctx.load_verify_locations(ca)
        elif sys.argv[3] == "alpn-h2":
            ctx.set_alpn_protocols(["h2", "http/1.1"])
        else:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("PSK")
            ctx.set_psk_server_callback(lambda identity: bytes(16))
        app.run(host="127.0.0.1", port=0, ssl=ctx)
    else:
        app.run(host="127.0.0.1", port=0, ssl=(sys.argv[1], sys.argv[2]))
'''


def start(tmp_path, cert, *args, env=None):
    write_app(tmp_path, "tlsc", APP)
    return Proc([sys.executable, str(tmp_path / "tlsc.py"), *cert, *args], env=env,
                cwd=str(tmp_path)).start()


@pytest.fixture
def srv(tmp_path, cert):
    p = start(tmp_path, cert)
    yield p
    assert p.stop() == 0, p.stderr()


def tls(port, cert, **kw):
    ctx = ssl.create_default_context(cafile=cert[0])
    for k, v in kw.items():
        setattr(ctx, k, v)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(s, server_hostname="localhost")


_rest = {}


def read_answer(s):
    """One answer's head and body; what came after it is kept for the next."""
    got = _rest.pop(id(s), b"")
    while b"\r\n\r\n" not in got:
        d = s.recv(65536)
        assert d, got
        got += d
    head, _, body = got.partition(b"\r\n\r\n")
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
            .split(b":")[1])
    while len(body) < n:
        d = s.recv(65536)
        assert d
        body += d
    _rest[id(s)] = body[n:]
    return head, body[:n]


def wait_closed(s):
    """Read from raw socket s until the server closes or resets it (its
    timeout fails the test if it never does), then close it."""
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    s.close()


def served(port, cert):
    with tls(port, cert) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return read_answer(s)[1] == b"hello https"


def test_scheme_keep_alive_and_versions(srv, cert):
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with tls(srv.port, cert, maximum_version=v) as s:
            for _ in range(3):
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_answer(s)[1] == b"hello https"


@pytest.mark.parametrize("op", ["write", "close", "write_eof"])
def test_a_view_cannot_write_to_or_close_the_transport_under_tls_in_c(srv, cert, op):
    # the bytes went out unencrypted, breaking the session; close did nothing
    with tls(srv.port, cert) as s:
        s.sendall(b"GET /raw?op=%s HTTP/1.1\r\nHost: x\r\n\r\n" % op.encode())
        body = read_answer(s)[1]
        assert body.startswith(b"refused: under TLS in C a view cannot write to or close"), body
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[1] == b"hello https"


def test_large_body_in_pieces_then_a_pipelined_request(srv, cert):
    # past 16 KiB still to come, TLS reads go straight into request.body
    rng = random.Random(5)
    body = rng.randbytes(1024 * 1024 + 77)
    data = (b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    cuts = [0] + sorted(rng.sample(range(1, len(data)), 30)) + [len(data)]
    with tls(srv.port, cert) as s:
        for a, b in zip(cuts, cuts[1:]):
            s.sendall(data[a:b])
        assert read_answer(s)[1] == b"%d %d" % (len(body), sum(body) % 65521)
        assert read_answer(s)[1] == b"hello https"


@pytest.mark.parametrize("offer, chosen", [(["h2", "http/1.1"], "http/1.1"), (["h2"], None),
                                           (["http/1.1"], "http/1.1"), (None, None)])
def test_alpn_never_chooses_h2(tmp_path, cert, offer, chosen):
    """HTTP/1.1 is all fulmen speaks: a context that lists h2 for ALPN
    still gets http/1.1 or nothing chosen (h2 was chosen, and HTTP/1.1
    then spoken to a client expecting HTTP/2)."""
    p = start(tmp_path, cert, "alpn-h2")
    try:
        ctx = ssl.create_default_context(cafile=cert[0])
        if offer is not None:
            ctx.set_alpn_protocols(offer)
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=10),
                             server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == chosen
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s)[1] == b"hello https"
    finally:
        assert p.stop() == 0, p.stderr()


def test_pipelined_and_large(srv, cert):
    with tls(srv.port, cert) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 100)
        for _ in range(100):
            assert read_answer(s)[1] == b"hello https"
        s.sendall(b"GET /big?n=3000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[1] == b"y" * 3000000


def test_streamed_response_over_tls(srv, cert):
    """A chunked streamed answer, then keep-alive goes on."""
    with tls(srv.port, cert) as s:
        s.sendall(b"GET /chunks?n=2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(b"\r\n0\r\n\r\n"):
            d = s.recv(65536)
            assert d, got[-200:]
            got += d
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"chunked" in head.lower(), head
        assert body.count(b"z" * 1000 + b"\n") == 2000
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[1] == b"hello https"


def test_static_file_over_tls(srv, cert, tmp_path):
    (tmp_path / "f.bin").write_bytes(os.urandom(1 << 20))
    with tls(srv.port, cert) as s:
        s.sendall(b"GET /files/f.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_answer(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert body == (tmp_path / "f.bin").read_bytes()


@pytest.mark.parametrize("to", [0, 1000])
def test_a_file_that_shrinks_before_its_first_block_is_a_500_over_tls(srv, cert, to):
    with tls(srv.port, cert) as s:
        s.sendall(b"GET /emptied?to=%d HTTP/1.1\r\nHost: x\r\n\r\n" % to)
        head, body = read_answer(s)
        assert head.startswith(b"HTTP/1.1 500"), head
    assert srv.wait_for_stderr("bytes short of its Content-Length; answered 500")


@pytest.mark.parametrize("junk", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                # plain HTTP on the TLS port
    b"\x16\x03\x01\x00\x05hello" * 3,                      # a garbage ClientHello
    b"\x16\x03\x01\xff\xff" + b"\x00" * 100,               # a truncated record, then FIN
    b"\x17\x03\x03\x00\x10" + b"\x00" * 16,                # application data before a handshake
    os.urandom(4096),
])
def test_hostile_bytes_close_the_connection_only(srv, cert, junk):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(junk)
    s.shutdown(socket.SHUT_WR)
    wait_closed(s)
    assert served(srv.port, cert)


@pytest.mark.parametrize("request_", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"y" * 5000])
def test_plain_http_on_the_tls_port_gets_a_400_that_says_so(srv, cert, request_):
    """(an http:// link to the https server: the client saw the connection
    close with no answer)"""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(request_)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"Connection: close" in head
    assert body == b"This port speaks HTTPS: use an https:// address\n"
    assert served(srv.port, cert)


def test_stalled_handshake_is_cut_after_header_timeout(srv, cert):
    # header_timeout is 1 s: a socket timeout of 5 s fails the test if the
    # server waits on (it bounds the wait; nothing is timed)
    for first in (b"\x16\x03\x01", b""):   # the start of a record, or nothing
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(first)
        wait_closed(s)
    assert served(srv.port, cert)


def test_bare_fin_and_close_notify(srv, cert):
    # a bare FIN after a request: the answer still comes, then the close
    s = tls(srv.port, cert)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    socket.socket.shutdown(s, socket.SHUT_WR)
    assert read_answer(s)[1] == b"hello https"
    s.close()
    # Connection: close: the server's close_notify comes before its FIN
    s = tls(srv.port, cert)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    read_answer(s)
    assert s.recv(100) == b""            # ssl: b"" means close_notify was received
    s.close()
    assert served(srv.port, cert)


def test_an_answer_made_after_a_bare_fin_still_goes(srv, cert):
    # HTTP over TLS may end its side with a FIN and no close_notify (RFC
    # 9112 9.8): an answer the view makes after that FIN was read must
    # still be written, not refused by an SSL that took the FIN as fatal
    s = tls(srv.port, cert)
    s.sendall(b"GET /gated HTTP/1.1\r\nHost: x\r\n\r\n")
    socket.socket.shutdown(s, socket.SHUT_WR)
    with tls(srv.port, cert) as o:
        o.sendall(b"GET /open HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(o)[1] == b"open"
    assert read_answer(s)[1] == b"after the FIN"
    s.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_renegotiation_is_refused(srv, cert):
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port,
                          "-tls1_2", "-CAfile", cert[0]],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(30, p.kill)     # bounds a hang; nothing is timed
    watchdog.start()
    try:
        # s_client prints its summary once the handshake is done ...
        for line in p.stdout:
            if b"Verify return code" in line:
                break
        # ... then "R" on its own line asks it to renegotiate: the refusal
        # (a no_renegotiation alert) ends it; its stdin stays open, so
        # nothing else does
        p.stdin.write(b"R\n")
        p.stdin.flush()
        err = p.stderr.read()
        out = p.stdout.read()
        p.wait()
    finally:
        watchdog.cancel()
        p.stdin.close()
    assert b"no renegotiation" in err or b"no renegotiation" in out, (out, err)
    assert served(srv.port, cert)


def tlsinfo(s):
    s.sendall(b"GET /tlsinfo HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = read_answer(s)
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


def client_cert(tmp_path):
    d = tmp_path / "client"
    d.mkdir()
    ccert, ckey = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=fulmen-client", "-keyout", ckey, "-out", ccert],
                   check=True, capture_output=True, timeout=30)
    return ccert, ckey


@pytest.mark.parametrize("send_cert", [True, False])
@pytest.mark.parametrize("kind", ["client-cert", "client-cert-optional"])
def test_client_certificate_reaches_the_view_as_over_uvloop_tls(tmp_path, cert, kind, send_cert):
    """A context that asks for client certificates runs TLS in C, and the
    view reads the certificate from request.transport as uvloop's TLS
    transport gives it (the same run with FULMEN_TLS_C=0 is the reference):
    get_extra_info("peercert"), "cipher", "ssl_object" (getpeercert, version)."""
    ccert, ckey = client_cert(tmp_path)
    infos = []
    for tls_c in ("1", "0"):
        p = start(tmp_path, cert, "%s=%s" % (kind, ccert), env={"FULMEN_TLS_C": tls_c})
        try:
            ctx = ssl.create_default_context(cafile=cert[0])
            if send_cert:
                ctx.load_cert_chain(ccert, ckey)
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=10),
                                server_hostname="localhost")
            try:
                with s:
                    infos.append(tlsinfo(s))
                    tlsinfo(s)      # a second request on the connection
            except (ssl.SSLError, ConnectionError, AssertionError):
                # a certificate required and not sent: the handshake fails
                # (TLS 1.3 tells the client on its first read)
                assert kind == "client-cert" and not send_cert
                infos.append(None)
        finally:
            assert p.stop() == 0, p.stderr()
    c, uv = infos
    if c is None:
        assert uv is None
        return
    assert c.pop("in_c") and not uv.pop("in_c")
    assert c == uv
    assert c["ssl_object"] and c["sslcontext"] and c["peername"] and c["version"] == "TLSv1.3"
    assert len(c["cipher"]) == 3 and c["cipher"][1] == "TLSv1.3"
    if send_cert:
        assert c["der"] > 100
        assert ["commonName", "fulmen-client"] in [kv for rdn in c["peercert"]["subject"]
                                                   for kv in rdn], c
    else:
        assert c["peercert"] is None and c["der"] is None


@pytest.mark.parametrize("tls_c", ["1", "0"])
def test_client_certificate_is_still_read_after_the_client_left(tmp_path, cert, tls_c):
    """A view that took request.transport reads the client's certificate
    after the client has gone (its SSL freed), as over uvloop's TLS: an
    audit after an await must not find the request anonymous."""
    ccert, ckey = client_cert(tmp_path)
    p = start(tmp_path, cert, "client-cert=" + ccert, env={"FULMEN_TLS_C": tls_c})
    try:
        ctx = ssl.create_default_context(cafile=cert[0])
        ctx.load_cert_chain(ccert, ckey)

        def client():
            return ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=10),
                                   server_hostname="localhost")
        gone = client()
        gone.sendall(b"GET /late-peer HTTP/1.1\r\nHost: x\r\n\r\n")
        with client() as s:
            s.sendall(b"GET /late-started HTTP/1.1\r\nHost: x\r\n\r\n")
            read_answer(s)
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            gone.close()                        # a reset
            s.sendall(b"GET /open HTTP/1.1\r\nHost: x\r\n\r\n")
            read_answer(s)
            s.sendall(b"GET /late-result HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_answer(s)
        late = json.loads(body)
        assert late["cipher"], late
        assert ["commonName", "fulmen-client"] in [kv for rdn in late["peercert"]["subject"]
                                                   for kv in rdn], late
    finally:
        assert p.stop() == 0, p.stderr()


def test_direct_io_off_keeps_uvloop_tls(tmp_path, cert):
    """FULMEN_DIRECT_IO=0 keeps every socket on uvloop's transport: TLS too."""
    p = start(tmp_path, cert, env={"FULMEN_DIRECT_IO": "0"})
    try:
        with tls(p.port, cert) as s:
            info = tlsinfo(s)
            assert info["ssl_object"], info
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s)[1] == b"hello https"
    finally:
        assert p.stop() == 0, p.stderr()


@pytest.mark.skipif(not hasattr(ssl.SSLContext, "set_psk_server_callback"),
                    reason="PSK callbacks are Python 3.13's")
def test_psk_server_callback_is_served(tmp_path, cert):
    """A context with a PSK server callback (3.13) is served, by uvloop's TLS:
    the callback expects an SSLSocket behind the SSL."""
    p = start(tmp_path, cert, "psk")
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("PSK")
        ctx.set_psk_client_callback(lambda hint: ("client", bytes(16)))
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=10))
        with s:
            assert tlsinfo(s)["ssl_object"]
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s)[1] == b"hello https"
    finally:
        assert p.stop() == 0, p.stderr()


CLOSE_SCRIPT = r"""
import os, signal, socket, ssl, sys, threading
from fulmen import Application

app = Application()
app.router.add_route("/big", lambda request: request.Response(body=b"y" * (64 << 20)))
app.router.add_route("/mode", lambda request: request.Response(
    text="uvloop" if request.transport.get_extra_info("ssl_object") else "c"))
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(16)
port = sock.getsockname()[1]
listening, served = threading.Event(), threading.Event()
app._on_listening = listening.set      # (after serve's signal handlers are in)
seen = []

def client():
    listening.wait(30)
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="localhost")
    s.sendall(b"GET /mode HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not (got.endswith(b"\r\n\r\nc") or got.endswith(b"uvloop")):
        got += s.recv(4096)
    seen.append(got.rsplit(b"\r\n", 1)[1].decode())
    # an answer the client does not read: the connection is still there
    # when the server is closed, its SSL in the server's table
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    os.kill(os.getpid(), signal.SIGTERM)
    served.wait(60)
    try:
        while s.recv(1 << 20):
            pass
        seen.append("the end")
    except socket.timeout:
        seen.append("timeout")
    except OSError as e:
        seen.append("the end (%s)" % type(e).__name__)

t = threading.Thread(target=client)
t.start()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
app.serve(sock, graceful_timeout=0.2, ssl=ctx)
served.set()
t.join()
print("tls in", seen[0], "client saw", seen[1])
"""


def test_closing_the_server_ends_its_tls_connections(tmp_path, cert):
    """A server closed in-process (serve() returns) frees the SSL of every
    connection it still has, and cuts that connection: its client sees the
    end, not a socket left open until the process exits."""
    (tmp_path / "close_in_process.py").write_text(CLOSE_SCRIPT)
    r = subprocess.run([sys.executable, str(tmp_path / "close_in_process.py"), *cert],
                       capture_output=True, timeout=60, cwd=str(tmp_path))
    out = r.stdout.decode()
    assert r.returncode == 0, (out, r.stderr.decode()[-3000:])
    if "tls in uvloop" in out:
        pytest.skip("TLS in C is not used on this Python: uvloop's TLS keeps its sockets")
    assert "tls in c client saw" in out and "timeout" not in out, (out, r.stderr.decode()[-3000:])


# ---- mutated TLS records (hypothesis) ------------------------------------------

def session(port, cert):
    """A raw socket carrying a TLS session (an SSLObject over memory BIOs),
    after one request and its whole answer, so the caller can write bytes
    of its own into the stream."""
    ctx = ssl.create_default_context(cafile=cert[0])
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outg, server_hostname="localhost")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)

    def pump():
        if outg.pending:
            s.sendall(outg.read())

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
            d = s.recv(65536)
            assert d, "closed during the handshake"
            inc.write(d)
    obj.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    pump()
    got = b""
    while not got.endswith(b"hello https"):
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            d = s.recv(65536)
            assert d, got
            inc.write(d)
    return s


def records_then_close(s):
    """Read to the end: what comes is whole TLS records (an alert, the
    server's flight), then EOF or a reset; a hang fails on the socket's
    timeout."""
    got, reset = b"", False
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except ConnectionResetError:
        reset = True
    i = 0
    while len(got) - i >= 5:
        assert got[i] in (20, 21, 22, 23) and got[i + 1] == 3, got[i:i + 16]
        n = int.from_bytes(got[i + 3:i + 5], "big")
        i += 5 + n
    assert reset or i == len(got), "a record cut by a clean close: %r" % got[-32:]


HELLO = None

record_header = st.builds(
    lambda ct, ver, n: bytes([ct]) + ver + n.to_bytes(2, "big"),
    st.sampled_from([20, 21, 22, 23, 24, 0, 0x80, 0xff]),
    st.sampled_from([b"\x03\x01", b"\x03\x03", b"\x03\x04", b"\x02\x00", b"\xfe\xfd"]),
    st.integers(0, 0x4300))

hostile = st.one_of(
    st.tuples(st.just("record"), st.tuples(record_header, st.binary(max_size=3000))),
    st.tuples(st.just("truncated"), st.floats(0, 1)),
    st.tuples(st.just("mutated"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                           min_size=1, max_size=8)),
    st.tuples(st.just("mid-session"), st.one_of(
        st.binary(min_size=1, max_size=3000),
        st.tuples(record_header, st.binary(max_size=3000)))),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=hostile)
def test_mutated_tls_records_close_or_answer(srv, cert, case):
    """Hostile records at every stage of a TLS connection: the server sends
    whole records (an alert) and closes, or resets; it never hangs, and it
    serves the next client."""
    global HELLO
    if HELLO is None:
        HELLO = client_hello()
    kind, arg = case
    if kind == "mid-session":
        s = session(srv.port, cert)
        junk = arg if isinstance(arg, bytes) else arg[0] + arg[1]
    else:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        if kind == "record":
            junk = arg[0] + arg[1]
        elif kind == "truncated":
            junk = HELLO[:int(arg * (len(HELLO) - 1))]
        else:
            b = bytearray(HELLO)
            for where, val in arg:
                b[int(where * (len(b) - 1))] = val
            junk = bytes(b)
    with s:
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass     # closed already, for bytes it refused at once
        records_then_close(s)
    assert served(srv.port, cert)
