"""Binding: unix sockets, IPv6, inherited sockets (--fd and systemd's
LISTEN_FDS), TLS with a certificate made at test time, and the proxy and
access-log settings the CLI hands to the application."""
import json
import os
import re
import shutil
import socket
import ssl
import stat
import signal
import subprocess
import sys
import time

import pytest

from .rawhttp import Conn, build_request
from .test_supervisor import (Proc, app_dir, fulmen_proc, get, stop_master,  # noqa: F401
                              wait_exit, wait_gone)


def conn_over(sock):
    """A rawhttp.Conn on an already connected socket (unix, TLS)."""
    c = Conn.__new__(Conn)
    c.sock, c.buf, c.eof = sock, bytearray(), False
    sock.settimeout(5.0)
    return c


def unix_conn(path, bind=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if bind is not None:
        s.bind(bind)                # the peer name the server sees
    s.connect(path)
    return conn_over(s)


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---- unix sockets ------------------------------------------------------------------

@pytest.mark.parametrize("workers", [None, "2"])
def test_unix_socket(app_dir, tmp_path, workers):
    path = str(tmp_path / "app.sock")
    args = ["--uds", path] + (["--workers", workers] if workers else [])
    srv = fulmen_proc(app_dir, *args).start()
    try:
        pids = srv.wait_workers(int(workers or 1))
        assert srv.addr == "unix:" + path
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        seen = set()
        for _ in range(20):
            with unix_conn(path) as c:
                r = c.request("GET", "/pid")
                assert r.status == 200
                seen.add(int(r.body))
            with unix_conn(path) as c:
                assert c.request("GET", "/").body == b"Hello world!"
        assert seen <= set(pids)
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    assert not os.path.exists(path), "the socket file outlived the server"


@pytest.mark.parametrize("where", ["tcp", "uds"])
def test_new_connections_are_refused_while_a_worker_finishes(app_dir, tmp_path, where):
    # SIGTERM to the master while a slow request runs: a new connection is
    # refused from then on (a balancer tries another instance), not queued
    # by the kernel on a socket the master still held, where no one accepted
    # it until the exit reset it
    path = str(tmp_path / "app.sock")
    srv = fulmen_proc(app_dir, "--workers", "2", "--graceful-timeout", "20",
                      *(["--uds", path] if where == "uds" else [])).start()
    srv.wait_workers(2)

    def connect():
        return Conn(srv.port) if where == "tcp" else unix_conn(path)

    with connect() as c:
        mark = srv.mark()
        c.send(build_request("GET", "/slow?s=15"))
        srv.wait_line("slow request started", mark)
        srv.proc.send_signal(signal.SIGTERM)
        srv.wait_line("stopping 2 worker", mark)
        # the worker with the slow request closes its socket when it sees
        # its SIGTERM: no line says when, so connections are tried until then
        deadline = time.monotonic() + 10
        refused = False
        while not refused and time.monotonic() < deadline:
            try:
                connect().close()
            except (ConnectionRefusedError, FileNotFoundError):
                refused = True
            except ConnectionResetError:
                pass    # queued as the last socket closed, and reset: try again
            else:
                time.sleep(0.02)
        assert refused, "still connecting 10 s after SIGTERM"
        assert srv.proc.poll() is None          # the slow request still runs
        srv.proc.send_signal(signal.SIGINT)     # (and is not waited for here)
    assert wait_exit(srv, 10) == 1, srv.stderr()


def test_unix_socket_stale_file_is_replaced_live_one_is_not(app_dir, tmp_path):
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()                       # a socket file nobody listens on
    srv = fulmen_proc(app_dir, "--uds", path).start()
    try:
        with unix_conn(path) as c:
            assert c.request("GET", "/").status == 200
        # a second server on the same path refuses to steal it
        other = subprocess.run(
            [sys.executable, "-m", "fulmen", "supapp:app", "--uds", path],
            cwd=str(app_dir), env=dict(srv.env), capture_output=True, text=True, timeout=20)
        assert other.returncode != 0
        assert "already listening on %s" % path in other.stderr
        with unix_conn(path) as c:
            assert c.request("GET", "/").status == 200
    finally:
        assert stop_master(srv) == 0, srv.stderr()


# ---- IPv6 ------------------------------------------------------------------------

@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_with_workers(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "2")
    srv.argv[srv.argv.index("127.0.0.1")] = "::1"
    srv.start()
    try:
        srv.wait_workers(2)
        assert srv.host == "[::1]"
        with Conn(srv.port, host="::1") as c:
            assert c.request("GET", "/").body == b"Hello world!"
    finally:
        assert stop_master(srv) == 0, srv.stderr()


# ---- inherited sockets -------------------------------------------------------------

@pytest.mark.parametrize("workers", [None, "2"])
def test_fd(app_dir, workers):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    os.set_inheritable(fd, True)
    srv = fulmen_proc(app_dir, "--fd", str(fd), *(["--workers", workers] if workers else []))
    srv.start(pass_fds=[fd])
    lsock.close()                       # the server has its own copy now
    try:
        pids = srv.wait_workers(int(workers or 1))
        assert srv.port == port
        with Conn(port) as c:
            assert c.request("GET", "/").body == b"Hello world!"
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    assert wait_gone(pids, 5) == []


def test_systemd_socket_activation(app_dir):
    """LISTEN_PID/LISTEN_FDS: the socket is fd 3 of the server process."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    os.set_inheritable(fd, True)
    srv = fulmen_proc(app_dir, "--workers", "1")
    # a small launcher puts the socket at fd 3 and sets LISTEN_PID to its own
    # pid, which exec hands on to the server; --host/--port are then ignored
    launcher = ("import os, sys; os.dup2(%d, 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.environ['LISTEN_FDS'] = '1'; os.execv(sys.argv[1], sys.argv[1:])" % fd)
    srv.argv = [sys.executable, "-c", launcher] + srv.argv
    srv.start(pass_fds=[fd])
    lsock.close()
    try:
        srv.wait_workers(1)
        assert srv.port == port
        with Conn(port) as c:
            assert c.request("GET", "/").status == 200
    finally:
        assert stop_master(srv) == 0, srv.stderr()


# ---- TLS --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: no test certificate")
    d = tmp_path_factory.mktemp("tls")
    certfile, keyfile = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", keyfile, "-out", certfile],
                   check=True, capture_output=True, timeout=30)
    return certfile, keyfile


def tls_conn(port, certfile):
    ctx = ssl.create_default_context(cafile=certfile)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return conn_over(ctx.wrap_socket(s, server_hostname="localhost"))


@pytest.mark.parametrize("workers", [None, "2"])
def test_tls(app_dir, cert, workers):
    certfile, keyfile = cert
    srv = fulmen_proc(app_dir, "--ssl-certfile", certfile, "--ssl-keyfile", keyfile,
                      *(["--workers", workers] if workers else [])).start()
    try:
        srv.wait_workers(int(workers or 1))
        assert srv.addr.startswith("https://127.0.0.1:")
        with tls_conn(srv.port, certfile) as c:
            for _ in range(3):          # keep-alive over TLS
                assert c.request("GET", "/").body == b"Hello world!"
            big = c.request("GET", "/headers", headers=[("X-Pad", "p" * 8000)])
            assert big.json()["headers"]["X-Pad"] == "p" * 8000
        # plain HTTP on a TLS port gets no HTTP answer
        with Conn(srv.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = c.sock.recv(100)
            except OSError:
                data = b""
            assert not data.startswith(b"HTTP/1.1 200")
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_tls_from_app_run(tmp_path, cert):
    from .test_supervisor import APP, write_app
    certfile, keyfile = cert
    write_app(tmp_path, "tlsapp", APP + '\nif __name__ == "__main__":\n'
              '    app.run(host="127.0.0.1", port=0, ssl=(%r, %r))\n' % (certfile, keyfile))
    srv = Proc([sys.executable, str(tmp_path / "tlsapp.py")], cwd=str(tmp_path)).start()
    try:
        with tls_conn(srv.port, certfile) as c:
            assert c.request("GET", "/").status == 200
    finally:
        assert stop_master(srv) == 0, srv.stderr()


@pytest.mark.parametrize("max_connections", [None, 10])
def test_tls_handshake_is_bounded_by_header_timeout(tmp_path, cert, max_connections):
    """A client that opens a TCP connection to the TLS port and then stalls
    in the handshake (nothing sent, or half a ClientHello) holds it for
    header_timeout (1 s here), not for uvloop's 60 s default."""
    from .test_supervisor import APP, write_app
    certfile, keyfile = cert
    text = APP.replace("app = Application()", "app = Application(header_timeout=1.0, "
                       "max_connections=%r)" % max_connections)
    write_app(tmp_path, "tlsslow", text + '\nif __name__ == "__main__":\n'
              '    app.run(host="127.0.0.1", port=0, ssl=(%r, %r))\n' % (certfile, keyfile))
    srv = Proc([sys.executable, str(tmp_path / "tlsslow.py")], cwd=str(tmp_path)).start()
    try:
        for first in (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(first)
                try:
                    data = s.recv(100)          # b"" (EOF) once the server gives up
                except ConnectionResetError:
                    data = b""
                except socket.timeout:
                    pytest.fail("a stalled TLS handshake was still open after 10 s")
                assert data == b""
        with tls_conn(srv.port, certfile) as c:  # a real client is still served
            assert c.request("GET", "/").status == 200
    finally:
        assert stop_master(srv) == 0, srv.stderr()


@pytest.mark.parametrize("how", ["connection-close", "keep-alive-idle", "408"])
def test_tls_close_does_not_wait_for_the_clients_close_notify(tmp_path, cert, how):
    """The server closes a TLS connection (after Connection: close, at
    keep_alive_timeout, after a 408) and sends its close_notify; the client
    reads everything but never answers with its own close_notify nor closes
    the socket.  The closing is bounded by body_timeout (0.5 s here), as on
    plain TCP, not by uvloop's 30 s TLS shutdown timeout: with
    max_connections=1 the next client is served."""
    from .test_supervisor import APP, write_app
    certfile, keyfile = cert
    text = APP.replace("app = Application()", "app = Application(header_timeout=0.5, "
                       "body_timeout=0.5, keep_alive_timeout=0.5, max_connections=1)")
    write_app(tmp_path, "tlsclose", text + '\nif __name__ == "__main__":\n'
              '    app.run(host="127.0.0.1", port=0, ssl=(%r, %r))\n' % (certfile, keyfile))
    srv = Proc([sys.executable, str(tmp_path / "tlsclose.py")], cwd=str(tmp_path)).start()
    try:
        with tls_conn(srv.port, certfile) as first:
            if how == "connection-close":
                r = first.request("GET", "/", headers={"Connection": "close"})
                assert r.status == 200
            elif how == "keep-alive-idle":
                assert first.request("GET", "/").status == 200
            else:
                first.send(b"GET / HTTP/1.1\r\nHo")
                assert first.read_response().status == 408
            first.sock.settimeout(10)
            assert first.at_eof()       # the server's close_notify; not answered
            # waits in the backlog until the slot is free: a 15 s deadline
            # (for the handshake too), far below uvloop's 30 s default
            ctx = ssl.create_default_context(cafile=certfile)
            try:
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
                second = conn_over(ctx.wrap_socket(s, server_hostname="localhost"))
                with second:
                    second.sock.settimeout(15)
                    assert second.request("GET", "/").status == 200
            except TimeoutError as e:
                pytest.fail("the closed TLS connection still held the only "
                            "connection slot: %r" % e)
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_failed_tls_handshakes_do_not_use_up_max_connections(tmp_path, cert):
    """With max_connections=2, two clients whose handshakes fail (one stalls
    until header_timeout, one sends garbage) hold no slot afterwards: the
    worker accepts again and serves a real client."""
    from .test_supervisor import APP, write_app
    certfile, keyfile = cert
    text = APP.replace("app = Application()",
                       "app = Application(header_timeout=0.5, max_connections=2)")
    write_app(tmp_path, "tlsmax", text + '\nif __name__ == "__main__":\n'
              '    app.run(host="127.0.0.1", port=0, ssl=(%r, %r))\n' % (certfile, keyfile))
    srv = Proc([sys.executable, str(tmp_path / "tlsmax.py")], cwd=str(tmp_path)).start()
    try:
        for rounds in range(2):             # the slots come back every time
            bad = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                   for _ in range(2)]
            bad[1].sendall(b"\x16\x03\x01\x00\x05hello" * 3)
            for s in bad:
                try:
                    # EOF once the server gives up, maybe after a TLS alert
                    # record (TLS in C sends one for the garbage)
                    got = s.recv(100)
                    if got.startswith(b"\x15"):
                        got = s.recv(100)
                    assert got == b"", got
                except ConnectionResetError:
                    pass
                except socket.timeout:
                    pytest.fail("a failed TLS handshake was still open after 10 s")
                s.close()
            with tls_conn(srv.port, certfile) as c:
                c.sock.settimeout(10)
                assert c.request("GET", "/").status == 200
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    # what clients get wrong in their handshake is not logged (as without
    # max_connections): a log line per bad client would let them flood it
    assert "could not start a connection" not in srv.stderr(), srv.stderr()


# ---- settings plumbed to the application ------------------------------------------

def test_proxy_and_access_log_settings(app_dir):
    srv = fulmen_proc(app_dir, "--proxy-headers", "--forwarded-allow-ips", "10.0.0.1, 10.0.0.2",
                      "--access-log", "--access-log-format", "json").start()
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/settings").json() == {
                "proxy_headers": True, "forwarded_allow_ips": ["10.0.0.1", "10.0.0.2"],
                "access_log": True, "access_log_format": "json"}
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    srv = fulmen_proc(app_dir).start()
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/settings").json() == {
                "proxy_headers": False, "forwarded_allow_ips": ["127.0.0.1"],
                "access_log": False, "access_log_format": "text"}
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_cli_keeps_the_access_log_the_application_asked_for(app_dir):
    # Application(log_request=True) (Japronto's name) turns the access log
    # on; the command line without --access-log must not turn it off
    from .test_supervisor import APP, write_app
    write_app(app_dir, "logapp", APP.replace("app = Application()",
                                             "app = Application(log_request=True)"))
    srv = fulmen_proc(app_dir, module="logapp").start()
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/settings").json()["access_log"] is True
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    assert re.search(r'"GET /settings HTTP/1\.1" 200 ', srv.stderr()), srv.stderr()


# ---- the access log's lines -----------------------------------------------------------

def _serve_and_log(app_dir, *args):
    """Serve a few requests with --access-log ARGS, stop, and return the
    server's stderr lines (the log is flushed at exit)."""
    srv = fulmen_proc(app_dir, "--access-log", *args).start()
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/settings").status == 200
            assert c.request("GET", "/nope?q=%22x%22").status == 404
            # a '"' and a '\\' that the text format must not take as its own
            c.send(b'GET /q"x\\y HTTP/1.1\r\nHost: x\r\n\r\n')
            assert c.read_response().status == 404
            # pipelined, one HTTP/1.0 and one HEAD
            c.send(build_request("HEAD", "/settings") + build_request("GET", "/settings"))
            c.read_response(head=True)
            c.read_response()
        with Conn(srv.port) as c:
            c.send(build_request("GET", "/settings", version="1.0"))
            c.read_response()
        with Conn(srv.port) as c:       # answered before it could be parsed
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n")
            assert c.read_response().status == 400
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    return srv.stderr().splitlines()


TEXT_LINE = re.compile(
    r'^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] '
    r'"(\S+) (\S+) HTTP/1\.([01])" (\d{3}) (\d+|-) (\d+\.\d{3})$')


def test_access_log_text(app_dir):
    lines = [m.groups() for m in map(TEXT_LINE.match, _serve_and_log(app_dir)) if m]
    assert [(m, t, v, s) for m, t, v, s, _, _ in lines] == [
        ("GET", "/settings", "1", "200"), ("GET", "/nope?q=%22x%22", "1", "404"),
        ("GET", "/q\\x22x\\x5cy", "1", "404"), ("HEAD", "/settings", "1", "200"), ("GET", "/settings", "1", "200"),
        ("GET", "/settings", "0", "200")]
    get_bytes = int(lines[0][4])
    assert get_bytes > 100                      # the whole answer, head included
    assert int(lines[2][4]) < get_bytes         # HEAD: no body
    assert all(float(ms) < 10_000 for *_, ms in lines)


def test_access_log_says_500_for_a_stream_that_fails_before_its_head(app_dir):
    # a streamed answer is logged once it is over: with the status sent
    srv = fulmen_proc(app_dir, "--access-log").start()
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/stream-fails").status == 500
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    lines = [m.groups() for m in map(TEXT_LINE.match, srv.stderr().splitlines()) if m]
    assert [(m, t, s) for m, t, _, s, _, _ in lines] == [("GET", "/stream-fails", "500")]


def test_access_log_json(app_dir):
    lines = [l for l in _serve_and_log(app_dir, "--access-log-format", "json")
             if l.startswith("{")]
    rows = [json.loads(l) for l in lines]
    assert [(r["method"], r["target"], r["version"], r["status"]) for r in rows] == [
        ("GET", "/settings", "1.1", 200), ("GET", "/nope?q=%22x%22", "1.1", 404),
        ("GET", '/q"x\\y', "1.1", 404), ("HEAD", "/settings", "1.1", 200), ("GET", "/settings", "1.1", 200),
        ("GET", "/settings", "1.0", 200), (None, None, None, 400)]
    for line in lines:      # laid out as docs/deployment.md shows it
        assert re.match(r'^\{"time": "[^"]+", "client": "127\.0\.0\.1", "method": '
                        r'(null|"[A-Z]+"), "target": (null|"[^"]+"), "version": '
                        r'(null|"1\.[01]"), "status": \d{3}, "bytes": \d+, '
                        r'"duration_ms": \d+\.\d{3}\}$', line), line
    for r in rows:
        assert r["client"] == "127.0.0.1"
        assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", r["time"])
        assert isinstance(r["bytes"], int) and r["bytes"] > 0
        assert isinstance(r["duration_ms"], float) and 0 <= r["duration_ms"] < 10_000


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("bound", [None, "caf\u00e9 \n.sock"])
def test_access_log_on_a_unix_socket(app_dir, tmp_path, fmt, bound):
    """A unix socket's peer has no address: the log's client is "-", as for
    any unknown field of the Common Log Format, not an empty field that
    shifts the others.  A client bound to a path is named by it: in the
    JSON log as UTF-8 text (it was one \\u00HH escape per byte, mojibake
    once read), in the text log with its spaces, controls and non-ASCII
    bytes escaped as nginx's log does (a newline in it forged a line)."""
    path = str(tmp_path / "app.sock")
    client = None if bound is None else str(tmp_path / bound)
    srv = fulmen_proc(app_dir, "--uds", path, "--access-log", "--access-log-format",
                      fmt).start()
    try:
        with unix_conn(path, bind=client) as c:
            assert c.request("GET", "/settings").status == 200
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    lines = [l for l in srv.stderr().splitlines() if "/settings" in l]
    assert len(lines) == 1, srv.stderr()
    if fmt == "json":
        assert json.loads(lines[0])["client"] == (client or "-"), lines[0]
    else:
        shown = client.replace("\u00e9", "\\xc3\\xa9").replace(" ", "\\x20").replace(
            "\n", "\\x0a") if client else "-"
        assert lines[0].startswith(shown + " - - ["), lines[0]


# ---- refusals ----------------------------------------------------------------------

def run_cli(app_dir, *args, timeout=20, pass_fds=()):
    """`python -m fulmen supapp:app ARGS`, which must exit by itself."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(app_dir) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "fulmen", "supapp:app", *args],
                          cwd=str(app_dir), env=env, capture_output=True, text=True,
                          timeout=timeout, pass_fds=pass_fds)


@pytest.mark.parametrize("kind", ["unbound-tcp", "unbound-unix", "connected"])
def test_fd_that_is_no_socket_to_listen_on_is_refused(app_dir, kind):
    """An unbound socket would be bound by listen() to every interface at a
    port of the kernel's choosing (or to an abstract unix name); a connected
    one is a client's.  Either is a one-line error naming the fd."""
    peer = None
    if kind == "connected":
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        sock = socket.create_connection(lsock.getsockname())
        peer = lsock
    else:
        sock = socket.socket(socket.AF_UNIX if kind == "unbound-unix" else socket.AF_INET)
    with sock:
        fd = sock.fileno()
        os.set_inheritable(fd, True)
        r = run_cli(app_dir, "--fd", str(fd), pass_fds=[fd])
    if peer is not None:
        peer.close()
    assert r.returncode == 1, r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith("fulmen: --fd %d is a " % fd), line
    assert ("bound to no address" if kind != "connected" else "connected socket") in line


@pytest.mark.parametrize("workers", [None, "1", "2"])
def test_port_in_use_by_a_master_is_refused(app_dir, workers):
    # SO_REUSEPORT lets a process of the same user join another's sockets:
    # a second master on the same port would take half of its connections
    srv = fulmen_proc(app_dir, "--workers", "2").start()
    try:
        srv.wait_workers(2)
        other = run_cli(app_dir, "--host", "127.0.0.1", "--port", str(srv.port),
                        *(("--workers", workers) if workers else ()))
        assert other.returncode == 1, other.stderr
        assert other.stderr.splitlines() == [
            "fulmen: cannot listen on 127.0.0.1:%d: [Errno 98] Address already in use"
            % srv.port]
        assert get(srv.port, "/").status == 200
    finally:
        assert stop_master(srv) == 0, srv.stderr()


@pytest.mark.parametrize("args, message", [
    (("--port", "70000"), "fulmen: --port must be from 0 to 65535, not 70000"),
    (("--port", "-1"), "fulmen: --port must be from 0 to 65535, not -1"),
    (("--max-rss", "0"), "fulmen: --max-rss must be more than 0 MB, not 0.0"),
    (("--worker-timeout", "-5"),
     "fulmen: --worker-timeout must be more than 0 and at most 31536000 seconds, not -5.0 "
     "(0 turns it off)"),
    (("--graceful-timeout", "-1"),
     "fulmen: --graceful-timeout must be more than 0 and at most 31536000 seconds, not -1.0"),
    (("--backlog", "0"), "fulmen: --backlog must be at least 1, not 0"),
    (("--max-start-failures", "0"), "fulmen: --max-start-failures must be at least 1, not 0"),
    (("--fd", "99"), "fulmen: cannot serve fd 99: [Errno 9] Bad file descriptor"),
    (("--uds", "/nonexistent-dir/app.sock"),
     "fulmen: cannot listen on unix:/nonexistent-dir/app.sock: "
     "[Errno 2] No such file or directory"),
    (("--ssl-certfile", "/nonexistent-dir/cert.pem", "--ssl-keyfile", "/nonexistent-dir/key.pem"),
     "fulmen: cannot load the TLS certificate /nonexistent-dir/cert.pem and key "
     "/nonexistent-dir/key.pem: [Errno 2] No such file or directory"),
])
def test_bad_values_are_one_line_errors(app_dir, args, message):
    """The reason, naming the flag (run() names its argument)."""
    r = run_cli(app_dir, *args, "--workers", "1")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [message]


@pytest.mark.parametrize("args, message", [
    (("--ssl-keyfile", "key.pem"), "--ssl-certfile and --ssl-keyfile go together"),
    (("--uds", "a.sock", "--fd", "3"), "--uds and --fd exclude each other"),
    (("--max-requests-jitter", "10"), "--max-requests-jitter needs --max-requests"),
    (("--forwarded-allow-ips", "10.0.0.1"), "--forwarded-allow-ips needs --proxy-headers"),
    (("--access-log-format", "json"), "--access-log-format needs --access-log"),
])
def test_an_option_that_would_do_nothing_is_an_error(app_dir, args, message):
    # said with the usage, as argparse says a bad option (exit 2)
    r = run_cli(app_dir, *args)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == "fulmen: error: " + message, r.stderr


def test_uds_path_that_is_not_a_socket(app_dir, tmp_path):
    path = tmp_path / "file"
    path.write_text("keep me")
    r = run_cli(app_dir, "--uds", str(path))
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["fulmen: %s exists and is not a socket" % path]
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("to", ["gone.sock", "file"])
def test_uds_path_that_is_a_symbolic_link_is_refused_as_one(app_dir, tmp_path, to):
    # a dangling link read as "Address already in use"; a link to a file
    # was "not a socket", as if the file were at the path
    (tmp_path / "file").write_text("keep me")
    path = tmp_path / "app.sock"
    path.symlink_to(tmp_path / to)
    r = run_cli(app_dir, "--uds", str(path))
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["fulmen: %s is a symbolic link (to %s): give the path "
                                     "the socket is to be made at" % (path, tmp_path / to)]
    assert path.is_symlink() and (tmp_path / "file").read_text() == "keep me"


def test_tls_files_that_are_not_pem_name_the_files(app_dir):
    not_pem = str(app_dir / "supapp.py")
    r = run_cli(app_dir, "--ssl-certfile", not_pem, "--ssl-keyfile", not_pem)
    assert r.returncode == 1
    [line] = r.stderr.splitlines()
    assert line.startswith("fulmen: cannot load the TLS certificate %s and key %s: "
                           % (not_pem, not_pem)), line
    assert line.endswith("(is each file what it is given as, the certificate first and "
                         "the key second, in PEM?)"), line


def test_an_encrypted_tls_key_is_a_one_line_error(app_dir, cert, tmp_path):
    # it was OpenSSL's passphrase prompt on a terminal, else "[Errno 22]"
    certfile, keyfile = cert
    enc = str(tmp_path / "enc-key.pem")
    subprocess.run(["openssl", "pkey", "-in", keyfile, "-aes256", "-passout", "pass:secret",
                    "-out", enc], check=True, capture_output=True, timeout=30)
    r = run_cli(app_dir, "--ssl-certfile", certfile, "--ssl-keyfile", enc)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "fulmen: the TLS key %s is encrypted: give a key without a passphrase, or an "
        "ssl.SSLContext that has loaded it with its password" % enc]


# ---- an application that does not load -----------------------------------------

BROKEN_APPS = {
    "syntax_error": "from fulmen import Application\ndef f(:\n    pass\n",
    "raises_at_import": "from fulmen import Application\n\n"
                        "raise RuntimeError('no database configured')\n",
    "imports_a_missing_module": "from fulmen import Application\n"
                                "from viewz import hello\n",
    "imports_a_missing_name": "from fulmen import Application, Helo\n",
    "factory_wants_args": "from fulmen import Application\n\n"
                          "def make(config):\n    return Application()\n",
    "factory_raises": "from fulmen import Application\n\n"
                      "def make():\n    raise KeyError('SECRET')\n",
}


def run_broken(tmp_path, spec, *args):
    for name, text in BROKEN_APPS.items():
        (tmp_path / (name + ".py")).write_text(text)
    return subprocess.run([sys.executable, "-m", "fulmen", spec, "--port", "0", *args],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("spec, message", [
    # the wording of a SyntaxError depends on the Python version
    ("syntax_error:app", "fulmen: cannot import 'syntax_error': SyntaxError: "
                         "{any} ({path}, line 2)"),
    ("raises_at_import:app", "fulmen: cannot import 'raises_at_import': "
                             "RuntimeError: no database configured ({path}, line 3)"),
    # an import the app's code makes fails: where, too
    ("imports_a_missing_module:app", "fulmen: cannot import 'imports_a_missing_module': "
                                     "ModuleNotFoundError: No module named 'viewz' "
                                     "({path}, line 2)"),
    ("imports_a_missing_name:app", "fulmen: cannot import 'imports_a_missing_name': "
                                   "ImportError: cannot import name 'Helo' from 'fulmen' "
                                   "{any} ({path}, line 1)"),
    ("factory_wants_args:make", "fulmen: the app factory factory_wants_args:make failed: "
                                "TypeError: make() missing 1 required positional "
                                "argument: 'config'"),
    ("factory_raises:make", "fulmen: the app factory factory_raises:make failed: "
                            "KeyError: 'SECRET' ({path}, line 4)"),
])
def test_an_app_that_does_not_load_is_a_one_line_error(tmp_path, spec, message):
    # the app's own code failing at start-up: one line that says where, and
    # with --debug the traceback before it
    path = tmp_path / (spec.split(":")[0] + ".py")
    pattern = re.escape(message.format(path=path, any="@ANY@")).replace("@ANY@", ".+")
    r = run_broken(tmp_path, spec)
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert re.fullmatch(pattern, r.stderr.rstrip("\n")), r.stderr
    r = run_broken(tmp_path, spec, "--debug")
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):", r.stderr
    assert re.fullmatch(pattern, lines[-1]), r.stderr


@pytest.mark.parametrize("spec, message", [
    ("no_such_module:app", "fulmen: cannot import 'no_such_module': "
                           "No module named 'no_such_module'"),
    ("no_such_package.app:app", "fulmen: cannot import 'no_such_package.app': "
                                "No module named 'no_such_package'"),
])
def test_an_app_module_that_is_not_there_is_named(tmp_path, spec, message):
    r = run_broken(tmp_path, spec)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [message], r.stderr


FDS_APP = '''
import os, resource
from fulmen import Application

app = Application(max_connections=100, header_timeout=60.0, keep_alive_timeout=60.0)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

def limit(request):
    # room for a few more descriptors only: accept() then fails (EMFILE)
    n = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 2, hard))
    return request.Response(text=str(n + 2))

def unlimit(request):
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return request.Response(text="ok")

def failures(request):
    return request.Response(text=str(app._acceptor.failures))

app.router.add_route("/limit", limit)
app.router.add_route("/unlimit", unlimit)
app.router.add_route("/failures", failures)
app.router.add_route("/", lambda request: request.Response(text="hello"))
app.run(host="127.0.0.1", port=0, worker_num=1)
'''


def test_accept_failing_for_want_of_descriptors_is_logged_once_a_spell(tmp_path):
    """With max_connections (fulmen accepts), accept() failing with EMFILE
    is tried again every 0.1 s: one line says so, and one more once it works
    again, not a line a try (10 a second for as long as clients hold every
    descriptor).  The clients that waited are served."""
    (tmp_path / "fdsapp.py").write_text(FDS_APP)
    srv = Proc([sys.executable, str(tmp_path / "fdsapp.py")], cwd=str(tmp_path)).start()
    waiting = []
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/limit").status == 200
            for _ in range(12):
                waiting.append(Conn(srv.port))
            _, at = srv._wait(r"accept failed: .*Too many open files", 0, 10.0)
            while int(c.request("GET", "/failures").body) < 3:
                pass   # each request lets the worker's loop turn; the tries go on
            assert c.request("GET", "/unlimit").status == 200
        for w in waiting:
            assert w.request("GET", "/").body == b"hello"
        srv.wait_line(r"accepting again \(\d+ tries had failed\)", start=at)
        assert srv.stderr().count("accept failed") == 1, srv.stderr()
    finally:
        for w in waiting:
            w.close()
        assert stop_master(srv) == 0, srv.stderr()
