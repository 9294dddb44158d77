"""fulmen behind a real nginx: reverse proxy and load balancer in front of two
instances, one on TCP and one on a unix socket.

nginx (Debian's nginx-light, /usr/sbin/nginx) runs in the foreground as one
process with its configuration, pid file, logs and temporary paths in a
temporary directory.  When it is not installed the tests skip: they install
nothing (.ci/run installs nginx-light with apt-get).

The client connects from 127.0.0.2 so that the real client address differs
from nginx's own (127.0.0.1) and from a unix socket peer.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from .rawhttp import Conn
from .test_supervisor import Load, app_dir, fulmen_proc, stop_master, wait_exit  # noqa: F401

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                  else None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)")

CLIENT = "127.0.0.2"

CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_max_body_size 64m;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream fulmen {{
        server 127.0.0.1:{tcp_port};
        server unix:{uds};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fulmen;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_conn(port):
    """A rawhttp.Conn to nginx from 127.0.0.2."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(CLIENT, 0))
    c = Conn.__new__(Conn)
    c.sock, c.buf, c.eof = s, bytearray(), False
    return c


def _client_address_usable():
    try:
        with socket.socket() as s:
            s.bind((CLIENT, 0))
        return True
    except OSError:
        return False


@pytest.fixture
def stack(app_dir, tmp_path):
    """nginx on a free port in front of fulmen A (TCP, 2 workers) and B (unix
    socket, 1 worker), both with --proxy-headers."""
    if not _client_address_usable():
        pytest.skip("cannot bind %s for the client" % CLIENT)
    d = tmp_path / "nginx"
    d.mkdir()
    uds = str(tmp_path / "b.sock")
    a = fulmen_proc(app_dir, "--workers", "2", "--proxy-headers").start()
    b = fulmen_proc(app_dir, "--workers", "1", "--uds", uds, "--proxy-headers").start()
    a.wait_workers(2)
    b.wait_workers(1)
    port = free_port()
    (d / "nginx.conf").write_text(CONF.format(d=d, tcp_port=a.port, uds=uds, port=port))
    ngx = subprocess.Popen([NGINX, "-p", str(d), "-c", str(d / "nginx.conf"), "-e",
                            str(d / "error.log")],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    try:
        # nginx prints nothing when it is ready: try to connect, with a deadline
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if ngx.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("nginx did not start: %s\n%s" % (
                        ngx.stderr.read().decode() if ngx.poll() is not None else "timeout",
                        (d / "error.log").read_text() if (d / "error.log").exists() else ""))
                time.sleep(0.02)
        yield port, a, b
    finally:
        ngx.send_signal(signal.SIGQUIT)     # graceful stop
        try:
            ngx.wait(10)
        except subprocess.TimeoutExpired:
            ngx.kill()
            ngx.wait()
        ngx.stderr.close()
        for srv in (a, b):
            if srv.alive():
                assert stop_master(srv) == 0, srv.stderr()


def _engine_reads_proxy_headers():
    from fulmen import _core
    return bool(getattr(_core, "PROXY_HEADERS", False)
                or hasattr(_core.Server, "proxy_headers"))


def test_balanced_and_forwarded_headers(stack):
    port, a, b = stack
    pids = {}
    seen = []
    with client_conn(port) as c:
        for i in range(40):
            # nginx passes a client's own Forwarded header on: it must not
            # count over the X-Forwarded-For nginx wrote
            r = c.request("GET", "/headers", host="example.test",
                          headers=[("Forwarded", "for=6.6.6.6;proto=https")] if i % 2 else [])
            assert r.status == 200, r
            j = r.json()
            pids[j["pid"]] = pids.get(j["pid"], 0) + 1
            seen.append(j)
    a_pids = set(a.worker_pids())
    b_pids = set(b.worker_pids())
    on_a = sum(n for p, n in pids.items() if p in a_pids)
    on_b = sum(n for p, n in pids.items() if p in b_pids)
    assert on_a + on_b == 40, (pids, a_pids, b_pids)
    assert on_a >= 10 and on_b >= 10, "not balanced: A %d, B %d" % (on_a, on_b)
    for j in seen:
        h = {k.lower(): v for k, v in j["headers"].items()}
        assert h["x-forwarded-for"] == CLIENT
        assert h["x-forwarded-proto"] == "http"
        assert h["x-forwarded-host"] == "example.test"
    if not _engine_reads_proxy_headers():
        pytest.skip("the engine does not apply --proxy-headers yet (no "
                    "fulmen._core.Server.proxy_headers): remote_addr not checked")
    via_tcp = [j["remote_addr"] for j in seen if j["pid"] in a_pids]
    via_unix = [j["remote_addr"] for j in seen if j["pid"] in b_pids]
    assert set(via_tcp) == {CLIENT}, "nginx's peer address is 127.0.0.1, a trusted proxy"
    assert set(via_unix) == {CLIENT}, (
        "a peer on a unix socket has no address; it should count as a trusted proxy "
        "(as in gunicorn and uvicorn), only the proxy can reach the socket")


def test_413_for_a_large_body_reaches_the_client(stack):
    """nginx takes a body larger than the route allows (its own limit is
    higher) and sends it on; fulmen answers 413 before the body is in.  If it
    closed after reading only a little more, nginx, still sending, would get
    a reset and answer 502: the declared rest of the body is read and
    dropped first (a few MB here)."""
    port, a, b = stack
    body = b"x" * (8 << 20)
    for _ in range(4):              # both instances, one on TCP, one on a unix socket
        with client_conn(port) as c:
            c.sock.settimeout(20)
            r = c.request("POST", "/small-body", body=body)
            assert r.status == 413, r


def test_graceful_stop_of_one_instance_loses_nothing(stack):
    port, a, b = stack
    load = Load(port, n=8)
    load.host = "127.0.0.1"
    with load:
        load.wait_requests(300)
        b_pid = b.proc.pid
        b.proc.send_signal(signal.SIGTERM)
        assert wait_exit(b, 15) == 0, b.stderr()
        load.wait_requests(300)        # A alone now
    assert load.failed == [] and load.racy == [], (load.failed, load.racy)
    assert set(load.by_pid) & set(a.worker_pids())
    assert b_pid not in load.by_pid
