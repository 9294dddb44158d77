"""Starting and stopping: the listening line, SIGTERM, the CLI, IPv6; a
stderr nobody reads."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from .rawhttp import Conn, build_request
from .server import REPO, Server, clean_exit, describe


def stop_cleanly(srv):
    code = srv.stop()
    assert clean_exit(code), "exit: %s\n%s" % (
        describe(code) if code != "hung" else "hung after SIGTERM", srv.stderr())
    assert not srv.crash_report()


def test_listening_line_and_sigterm():
    srv = Server.for_app("basic").start()
    try:
        assert srv.host == "127.0.0.1"
        listening = [l for l in srv.lines if "listening on" in l]
        assert listening == ["fulmen: listening on http://127.0.0.1:%d (pid %d)"
                             % (srv.port, srv.pid)]
        with Conn(srv.port) as c:
            assert c.request("GET", "/").status == 200
    finally:
        stop_cleanly(srv)


def test_sighup_without_a_master_is_said_and_ignored():
    # SIGHUP asks a master to replace its workers; a process serving on its
    # own has none, and SIGHUP's default action would kill it (a systemd
    # ExecReload sends one)
    srv = Server.for_app("basic").start()
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/").status == 200
            srv.proc.send_signal(signal.SIGHUP)
            assert srv.wait_for_stderr("SIGHUP ignored"), srv.stderr()
            assert c.request("GET", "/").status == 200
        assert srv.alive()
    finally:
        stop_cleanly(srv)


def test_sigterm_with_open_and_busy_connections():
    srv = Server.for_app("basic").start()
    idle = busy = half = None
    try:
        idle = Conn(srv.port)
        busy = Conn(srv.port)
        assert idle.request("GET", "/").status == 200
        busy.send(build_request("GET", "/sleepy") * 50)
        half = Conn(srv.port)
        half.send(b"GET / HTTP/1.1\r\nHo")
    finally:
        stop_cleanly(srv)
        for c in (idle, busy, half):
            if c:
                c.close()


def test_cli_module_app():
    srv = Server([sys.executable, "-m", "fulmen", "basic:app",
                  "--host", "127.0.0.1", "--port", "0"]).start()
    try:
        assert srv.host == "127.0.0.1"
        with Conn(srv.port) as c:
            assert c.request("GET", "/").body == b"Hello world!"
            assert c.request("GET", "/u/9").json() == {"id": "9"}
    finally:
        stop_cleanly(srv)


def _ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_cli_ipv6():
    srv = Server([sys.executable, "-m", "fulmen", "basic:app",
                  "--host", "::1", "--port", "0"]).start()
    try:
        assert srv.host == "[::1]"
        with Conn(srv.port, host="::1") as c:
            assert c.request("GET", "/").body == b"Hello world!"
    finally:
        stop_cleanly(srv)


def test_cli_japronto_spec_and_module_level_run():
    # Japronto's command line: `module.attribute` and --worker-num, for a
    # module that ends with an unconditional app.run() (ignored on import)
    srv = Server([sys.executable, "-m", "fulmen", "japronto_style.app",
                  "--host", "127.0.0.1", "--port", "0", "--worker-num", "1"]).start()
    try:
        assert "starting 1 worker" in srv.stderr(), srv.stderr()
        with Conn(srv.port) as c:
            assert c.request("GET", "/split").body == b"get view"
    finally:
        stop_cleanly(srv)


HANGING_HOOK_APP = '''
import asyncio, signal, sys
from fulmen import Application

app = Application()
app.router.add_route("/", lambda request: request.Response(text="ok"))


@app.on_shutdown
async def hang(app):
    sys.stderr.write("hook started\\n")
    sys.stderr.flush()
    if "hang" in sys.argv:
        await asyncio.sleep(3600)


before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
app.run(host="127.0.0.1", port=0, worker_num=1 if "master" in sys.argv else None)
after = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
sys.stderr.write("handlers restored: %s\\n" % (after == before))
'''


def second_signal_in_a_hanging_hook(tmp_path, sig, *argv):
    """SIGTERM to the hanging-hook app (run with argv), then sig once its
    hook has started: the exit code (it must exit within 10 s) and stderr."""
    path = tmp_path / "hangapp.py"
    path.write_text(HANGING_HOOK_APP)
    srv = Server([sys.executable, str(path), "hang", *argv]).start()
    try:
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait_for_stderr("hook started"), srv.stderr()
        srv.proc.send_signal(sig)
        code = srv.proc.wait(10)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    return code, srv.stderr()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_during_a_hanging_shutdown_hook_exits(tmp_path, sig):
    """A shutdown hook that never ends: a second SIGTERM or SIGINT ends the
    process at once (exit 1).  uvloop left its own handler behind, which
    swallowed both: only SIGKILL ended it."""
    code, err = second_signal_in_a_hanging_hook(tmp_path, sig)
    assert code == 1, "%s\n%s" % (describe(code), err)


def test_second_sigterm_to_the_master_reaches_a_worker_in_a_hanging_hook(tmp_path):
    """The master passes a second SIGTERM on: the worker whose shutdown hook
    hangs exits 1 at once, and the master with it (it waited for the
    graceful timeout and then 2 s more, 32 s by default)."""
    code, err = second_signal_in_a_hanging_hook(tmp_path, signal.SIGTERM, "master")
    assert code == 0, "%s\n%s" % (describe(code), err)
    assert "exited with code 1" in err, err


def test_signal_handlers_are_restored_when_run_returns(tmp_path):
    path = tmp_path / "hangapp.py"
    path.write_text(HANGING_HOOK_APP)
    srv = Server([sys.executable, str(path)]).start()
    stop_cleanly(srv)
    assert "handlers restored: True" in srv.stderr(), srv.stderr()


SIGNAL_AT_START_APP = '''
import gc, os, signal, sys
from fulmen import Application

app = Application()       # gc_freeze: one full collection just before serving
app.router.add_route("/", lambda request: request.Response(text="ok"))


@app.on_startup
def arm(app):
    def kill_on_collect(phase, info):
        if phase == "start":
            gc.callbacks.remove(kill_on_collect)
            sys.stderr.write("sending SIGTERM\\\\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGTERM)
    gc.callbacks.append(kill_on_collect)


app.run(host="127.0.0.1", port=0)
'''


def test_sigterm_while_starting_is_not_lost(tmp_path):
    """A SIGTERM that comes after the startup hooks, before the first
    request, ends the process (it serves nothing yet).  uvloop dropped one
    that came after its handlers were added but before its loop ran: the
    process served on until SIGKILL (a master's restart waited for it
    graceful_timeout + 2 s)."""
    path = tmp_path / "sigstart.py"
    path.write_text(SIGNAL_AT_START_APP)
    srv = Server([sys.executable, str(path)])
    srv.proc = subprocess.Popen(srv.argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=srv.env, cwd=srv.cwd)
    threading.Thread(target=srv._drain, daemon=True).start()
    try:
        code = srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        code = "still running"
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    assert srv.wait_for_stderr("sending SIGTERM"), srv.stderr()
    assert code == -signal.SIGTERM, "%s\n%s" % (code, srv.stderr())


STALLED_APP = '''
import logging, os, sys
from fulmen import Application
logging.basicConfig()    # a handler on the stderr of before run()
app = Application()
def hello(request): return request.Response(text=str(os.getpid()))
def boom(request): raise RuntimeError("boom " + "x" * 300)
def log(request):
    logging.getLogger("app").warning("logged " + "x" * 300)
    return request.Response(text="logged")
app.router.add_route("/pid/{p}", hello)
app.router.add_route("/boom/{p}", boom)
app.router.add_route("/log/{p}", log)
app.run(host="127.0.0.1", port=0, access_log=True, worker_num=%s)
'''


class _StalledStderr:
    """The app's process with a stderr pipe that nobody reads once the
    listening line is in (a log shipper that stopped)."""

    def __init__(self, tmp_path, worker_num):
        (tmp_path / "stalled.py").write_text(STALLED_APP % worker_num)
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
        self.proc = subprocess.Popen([sys.executable, str(tmp_path / "stalled.py")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        line = b""
        while b"listening on" not in line:
            line = self.proc.stderr.readline()
            assert line, "the app exited before listening"
        self.port = int(re.search(rb":(\d+) ", line).group(1))

    def get(self, path):
        """One request on a connection of its own: (status, body)."""
        with Conn(self.port, timeout=10) as c:
            c.send(build_request("GET", path, [("Connection", "close")]))
            r = c.read_response()
            return r.status, r.body

    def finish(self):
        """SIGTERM, then everything stderr holds, read to its end."""
        self.proc.send_signal(signal.SIGTERM)
        err = self.proc.stderr.read().decode(errors="replace")
        return self.proc.wait(15), err


@pytest.mark.parametrize("kind", ["pid", "boom", "log"])
def test_a_stderr_nobody_reads_stops_no_worker(tmp_path, kind):
    """Access log lines (tracebacks, and lines of a logging handler made
    before run()) past what the pipe holds (64 KiB) are kept or dropped,
    never waited for: every request is answered (the worker blocked in
    write(2) for good after about 240 of them)."""
    app = _StalledStderr(tmp_path, None)
    try:
        for i in range(1500):
            assert app.get("/%s/%s%d" % (kind, "a" * 200, i))[0] == (
                500 if kind == "boom" else 200)
    finally:
        code, err = app.finish()
    assert code == 0, err
    # what the pipe did not take is there once read, or said to be dropped
    assert "GET /%s/%s1499 " % (kind, "a" * 200) in err or "lines of log dropped" in err, err[-2000:]
    assert "GET /%s/%s0 " % (kind, "a" * 200) in err, err[:2000]


def test_a_stderr_nobody_reads_stops_no_master(tmp_path):
    """The master's own lines wait as a worker's do: with the pipe full, a
    worker killed is still replaced (the master blocked in write(2), and
    with it the watchdog)."""
    app = _StalledStderr(tmp_path, 1)
    try:
        for i in range(600):
            status, body = app.get("/boom/%s%d" % ("a" * 200, i))
            assert status == 500
        status, pid = app.get("/pid/x")
        os.kill(int(pid), signal.SIGKILL)
        while True:        # the master's replacement, once it listens
            try:
                status, body = app.get("/pid/y")
            except (ConnectionError, OSError):
                continue
            if status == 200 and body != pid:
                break
    finally:
        code, err = app.finish()
    assert code == 0, err[-3000:]
    # the master's line waited in the master, and went out once read
    assert "was killed by signal SIGKILL" in err, err[-3000:]


BROKEN_APP = '''
import sys
from fulmen import Application
app = Application()
def view(request): return request.Response(text="x")
if sys.argv[1] == "routes":
    app.router.add_route("/a/{x}", view)
    app.router.add_route("/a/{y}", view)    # the same requests as the first
else:
    app.router.add_route("/", view)
    app.proxy_headers = True
    app.forwarded_allow_ips = eval(sys.argv[1])
app.run(host="127.0.0.1", port=0, worker_num=int(sys.argv[2]) or None)
'''


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("broken,error", [
    ("routes", "RouteError: route '/a/{y}'"),
    ("'bogus'", "ValueError: forwarded_allow_ips: 'bogus' is not an IP address"),
    ("5", "ValueError: forwarded_allow_ips must be a str or a list of str, not 5"),
])
def test_a_broken_app_is_refused_before_binding(tmp_path, broken, error, workers):
    """Routes that cannot work and a bad setting assigned to the app are
    refused at start-up, before the port is bound, by a master too (its
    workers failed for good, and were restarted for ever)."""
    (tmp_path / "broken.py").write_text(BROKEN_APP)
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    r = subprocess.run([sys.executable, str(tmp_path / "broken.py"), broken, str(workers)],
                       stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=30)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err
    assert error in err, err
    assert "listening on" not in err and "before serving" not in err, err
