"""The supervisor over real processes: workers, crashes, signals, recycling.

Each test starts its own master (`python -m fulmen supapp:app --workers N`)
on an app written to a temporary directory, and watches its stderr lines:
workers announce "listening on ... (pid P)", the master logs what happens to
them.  Waiting is done on those lines or on pidfds (process exit), never by
sleeping.  The helpers here are shared by test_reload, test_binding and
test_nginx.
"""
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from .rawhttp import Conn, build_request
from .server import START_TIMEOUT, Server

ANY_LISTENING = re.compile(r"fulmen: listening on (\S+) \(pid (\d+)\)$")

APP = '''
import asyncio, os, sys
from fulmen import Application

app = Application()

def hello(request):
    return request.Response(text="Hello world!")

def pid(request):
    return request.Response(text=str(os.getpid()))

async def slow(request):
    sys.stderr.write("slow request started in %d\\n" % os.getpid())
    sys.stderr.flush()
    await asyncio.sleep(float(request.query.get("s", "1")))
    return request.Response(text="slow done")

def block(request):
    # a view that blocks its worker's event loop (a lock or a socket
    # without a timeout, say)
    sys.stderr.write("blocking in %d\\n" % os.getpid())
    sys.stderr.flush()
    import threading
    threading.Event().wait()

def headers(request):
    return request.Response(json={"headers": dict(request.headers),
                                  "remote_addr": request.remote_addr,
                                  "pid": os.getpid()})

def settings(request):
    return request.Response(json={
        "proxy_headers": app.proxy_headers,
        "forwarded_allow_ips": list(app.forwarded_allow_ips),
        "access_log": app.access_log, "access_log_format": app.access_log_format})

@app.on_startup
def fail_if_flagged(app):
    if os.path.exists(os.path.join(os.path.dirname(__file__), "FAIL_STARTUP")):
        raise RuntimeError("start-up fails on purpose")

@app.on_startup
async def hang_if_flagged(app):
    flag = os.path.join(os.path.dirname(__file__), "SLOW_STARTUP")
    while os.path.exists(flag):         # until the test removes it
        await asyncio.sleep(0.05)

def crash_if_flagged():
    if os.path.exists(os.path.join(os.path.dirname(__file__), "CRASH_AFTER_READY")):
        os._exit(4)

@app.on_startup
def crash_soon_if_flagged(app):
    # 50 ms after the worker told the master it serves (the supervisor's
    # hook), not after this hook: a busy machine may take longer than that
    # to get there
    ready = getattr(app, "_on_listening", None)
    if ready is not None:
        def listening():
            ready()
            asyncio.get_event_loop().call_later(0.05, crash_if_flagged)
        app._on_listening = listening

app.router.add_route("/", hello)
app.router.add_route("/pid", pid)
app.router.add_route("/slow", slow)
app.router.add_route("/block", block)
app.router.add_route("/headers", headers)
app.router.add_route("/settings", settings)
app.router.add_route("/small-body", hello, methods=["POST"], max_body_size=1000)


def stream_fails(request):
    def gen():
        raise RuntimeError("fails before its first item")
        yield b""
    return request.Response(stream=gen())


app.router.add_route("/stream-fails", stream_fails)
'''


class Proc(Server):
    """A Server whose stderr lines can be awaited: wait_line(pattern)."""

    def __init__(self, argv, **kw):
        super().__init__(argv, **kw)
        self.addr = None

    def _listening_line(self, line):
        """Any listening line: http(s) or a unix socket (port 0)."""
        m = ANY_LISTENING.search(line)
        if m:
            self.addr, self.pid = m.group(1), int(m.group(2))
            hp = re.match(r"https?://(\[[^\]]+\]|[^:]+):(\d+)$", self.addr)
            if hp:
                self.host, self.port = hp.group(1), int(hp.group(2))
            else:
                self.port = 0                     # a unix socket
        return m is not None

    def start(self, pass_fds=()):
        """Server.start, and the child inherits pass_fds."""
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=self.env, cwd=self.cwd, pass_fds=tuple(pass_fds))
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._listening.wait(START_TIMEOUT) or self.port is None:
            self.stop()
            raise RuntimeError("server %r did not report listening; stderr:\n%s"
                               % (self.argv, self.stderr()))
        return self

    def wait_line(self, pattern, start=0, timeout=10.0):
        """The first line at index >= start matching pattern (a regex);
        fails the test after timeout seconds or when the process (and every
        worker, which shares its stderr) has exited without writing one."""
        return self._wait(pattern, start, timeout)[0]

    def _wait(self, pattern, start, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._new_line:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m, i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.eof and i >= len(self.lines):
                    pytest.fail("no line matching %r; stderr:\n%s"
                                % (pattern, "\n".join(self.lines)), pytrace=False)
                self._new_line.wait(min(left, 0.2))

    def mark(self):
        with self._lock:
            return len(self.lines)

    def worker_pids(self, start=0):
        """Pids of the workers that printed a listening line (from index start)."""
        with self._lock:
            return [int(m.group(2)) for m in map(ANY_LISTENING.search, self.lines[start:]) if m]

    def wait_workers(self, n, start=0, timeout=10.0):
        """Wait for n listening lines from index start; return their pids."""
        pids = []
        for _ in range(n):
            m, i = self._wait(ANY_LISTENING.pattern, start, timeout)
            pids.append(int(m.group(2)))
            start = i + 1
        return pids


def write_app(directory, name="supapp", text=APP):
    path = os.path.join(str(directory), name + ".py")
    with open(path, "w") as f:
        f.write(text)
    return path


def fulmen_proc(app_dir, *args, module="supapp", env=None):
    """`python -m fulmen module:app ARGS` in app_dir, as a Proc (not started)."""
    e = {"PYTHONPATH": str(app_dir) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    e.update(env or {})
    return Proc([sys.executable, "-m", "fulmen", module + ":app", "--host", "127.0.0.1",
                 "--port", "0", *args], env=e, cwd=str(app_dir))


def pid_alive(pid):
    """True while pid exists and has not exited: a zombie (Z) has, and so
    has a process its parent is reaping (X, for a moment before its /proc
    entry goes)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X", "x")
    except (FileNotFoundError, ProcessLookupError):
        return False


def children(pid):
    """Pids of the live processes whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(d))
    return out


def wait_gone(pids, timeout):
    """Wait (on pidfds, not by polling) until none of pids runs; return the
    ones still running after timeout.  A readable pidfd is the kernel saying
    the process exited: it is not asked again."""
    fds = {}
    for p in pids:
        try:
            fds[p] = os.pidfd_open(p)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(fds.values()), [], [], left)
            for p, fd in list(fds.items()):
                if fd in ready or not pid_alive(p):
                    os.close(fds.pop(p))
    finally:
        for fd in fds.values():
            os.close(fd)
    return [p for p in fds if pid_alive(p)]


def assert_gone(srv, pids, timeout=20.0):
    """Fail unless every one of pids exits within timeout, a deadline for
    a loaded machine (the master's own SIGKILL comes graceful_timeout + 2 s
    after its SIGTERM).  On failure, each one left is sent SIGABRT first: its
    faulthandler prints where every thread was to the stderr shown."""
    left = wait_gone(pids, timeout)
    if left:
        states = []
        for p in left:
            try:
                with open("/proc/%d/status" % p) as f:
                    states.append("%d: %s" % (p, " ".join(f.read().split("\n")[:3])))
            except OSError:
                pass
            try:
                os.kill(p, signal.SIGABRT)
            except ProcessLookupError:
                pass
        wait_gone(left, 5)
        raise AssertionError("still running after %g s: %s\n%s\n%s"
                             % (timeout, left, "\n".join(states), srv.stderr()))


class Load:
    """n threads, each sending GET /pid on its own keep-alive connection in a
    loop until stop(); a failed request is counted and the thread reconnects.

    A failure is a connection refused, a reset, an EOF or a timeout, or a
    status other than 200.  `racy` counts the failures that happened on an
    already used keep-alive connection before any byte of the response came
    back: the case in which HTTP/1.1 lets a client retry (RFC 9112, 9.3.1)."""

    def __init__(self, port, n=8, host="127.0.0.1", path="/pid"):
        self.port, self.host, self.path = port, host, path
        self.ok = 0
        self.failed = []
        self.racy = []
        self.by_pid = {}
        self.last_pid = [None] * n
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(n)]
        self._started = threading.Barrier(n + 1)

    def __enter__(self):
        for t in self._threads:
            t.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc):
        self.stop()

    def wait_requests(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        target = self.ok + n
        while self.ok < target:
            assert time.monotonic() < deadline, "load made no progress: %r" % self.failed
            time.sleep(0.01)     # a counter, not an event: short polls

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _run(self, i):
        req = build_request("GET", self.path)
        conn = None
        used = False
        first = True
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = Conn(self.port, self.host)
                    used = False
                if first:
                    first = False
                    self._started.wait(10)
                conn.send(req)
                r = conn.read_final()
                if r.status != 200:
                    raise AssertionError("status %d" % r.status)
                pid = int(r.body)
                with self._lock:
                    self.ok += 1
                    self.by_pid[pid] = self.by_pid.get(pid, 0) + 1
                    self.last_pid[i] = pid
                used = True
                if (r.header("Connection") or "").lower() == "close":
                    conn.close()   # as RFC 9112 9.6 asks: no more on this one
                    conn = None
            except Exception as e:  # any failure: count it, reconnect
                got_bytes = conn is not None and bool(conn.buf)
                with self._lock:
                    (self.racy if used and not got_bytes and isinstance(
                        e, (EOFError, ConnectionError, AssertionError)) and not isinstance(
                        e, ConnectionRefusedError) else self.failed).append(
                        "%s: %s (last pid %s)" % (type(e).__name__, e, self.last_pid[i]))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


@pytest.fixture
def app_dir(tmp_path):
    write_app(tmp_path)
    return tmp_path


def wait_exit(srv, timeout):
    """The exit code of srv's process, which must exit within timeout seconds
    (else it is killed, with its process group, and the test fails)."""
    try:
        code = srv.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kids = children(srv.proc.pid)
        srv.proc.kill()
        for p in kids:
            os.kill(p, signal.SIGKILL)
        srv.proc.wait()
        pytest.fail("did not exit within %s s; stderr:\n%s" % (timeout, srv.stderr()),
                    pytrace=False)
    srv.wait_eof()          # its last lines may still be on their way
    return code


def stop_master(srv, timeout=15.0):
    srv.proc.send_signal(signal.SIGTERM)
    return wait_exit(srv, timeout)


def get(port, path="/", host="127.0.0.1"):
    with Conn(port, host) as c:
        return c.request("GET", path)


# ---- tests -------------------------------------------------------------------------

def test_two_workers_serve_and_stop_on_sigterm(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "2").start()
    try:
        pids = srv.wait_workers(2)
        master = srv.proc.pid
        assert sorted(children(master)) == sorted(pids)
        assert master not in pids
        assert get(srv.port).body == b"Hello world!"
        seen = {int(get(srv.port, "/pid").body) for _ in range(40)}
        assert seen <= set(pids)
    finally:
        code = stop_master(srv)
    assert code == 0, srv.stderr()
    assert wait_gone(pids, 5) == []
    for p in pids:
        assert re.search(r"worker %d served \d+ requests" % p, srv.stderr())
    assert "master %d stopped" % master in srv.stderr()


def test_workers_zero_means_one_per_cpu(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "0").start()
    try:
        pids = srv.wait_workers(os.cpu_count())
        assert len(set(pids)) == os.cpu_count()
    finally:
        assert stop_master(srv) == 0


def test_sigkill_worker_under_load(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "2").start()
    try:
        pids = srv.wait_workers(2)
        with Load(srv.port, n=8) as load:
            load.wait_requests(200)
            victim = pids[0]
            with load._lock:
                on_victim = sum(1 for p in load.last_pid if p == victim)
            mark = srv.mark()
            t0 = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            srv.wait_line(r"worker %d was killed by signal SIGKILL; starting a new one"
                          % victim, mark)
            new = srv.wait_workers(1, mark)[0]
            replaced_in = time.monotonic() - t0
            load.wait_requests(200)
        assert replaced_in < 1.0, "replaced after %.2f s" % replaced_in
        assert new not in pids
        # only the killed worker's connections may fail, once each
        failed = load.failed + load.racy
        assert len(failed) <= on_victim, failed
        assert all("last pid %d" % victim in f for f in failed), failed
        assert new in load.by_pid or pids[1] in load.by_pid
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_sigterm_during_slow_request(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "2", "--graceful-timeout", "10").start()
    pids = srv.wait_workers(2)
    with Conn(srv.port) as c:
        mark = srv.mark()
        c.send(build_request("GET", "/slow?s=2"))
        srv.wait_line("slow request started", mark)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        r = c.read_final()
        assert r.status == 200 and r.body == b"slow done"
        # the connection closes after the last response, which says so
        # (the request came before the stop: its answer is the last)
        assert r.header("Connection") == "close", r.raw
        assert c.at_eof()
    # new connections are refused once the workers stopped accepting ... and
    # the master exits 0 within the grace period, leaving no worker behind
    code = wait_exit(srv, 10)
    assert code == 0, srv.stderr()
    assert time.monotonic() - t0 < 10
    assert wait_gone(pids, 1) == []


def test_sigterm_answers_nothing_after_the_answer_that_says_close(app_dir):
    # A slow request with many pipelined behind it when SIGTERM comes: the
    # last answer to what had been read says Connection: close, and nothing
    # follows it (pipelined requests still unread are not run: the client
    # sends them again elsewhere)
    srv = fulmen_proc(app_dir, "--workers", "1", "--graceful-timeout", "10").start()
    srv.wait_workers(1)
    with Conn(srv.port) as c:
        mark = srv.mark()
        c.send(build_request("GET", "/slow?s=2") + build_request("GET", "/pid") * 300)
        srv.wait_line("slow request started", mark)
        srv.proc.send_signal(signal.SIGTERM)
        answers = []
        while not c.at_eof():
            answers.append(c.read_final())
        assert answers and answers[0].body == b"slow done"
        closes = [i for i, r in enumerate(answers) if r.header("Connection") == "close"]
        assert closes == [len(answers) - 1], (len(answers), closes)
    assert wait_exit(srv, 10) == 0, srv.stderr()


def test_graceful_timeout_expires(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "1", "--graceful-timeout", "0.5").start()
    pids = srv.wait_workers(1)
    with Conn(srv.port) as c:
        mark = srv.mark()
        c.send(build_request("GET", "/slow?s=60"))
        srv.wait_line("slow request started", mark)
        srv.proc.send_signal(signal.SIGTERM)
        code = wait_exit(srv, 10)       # 0.5 s grace, + the kill margin at worst
        try:
            r = c.read_final()
        except (EOFError, ConnectionError):
            r = None
    assert code == 0, srv.stderr()
    # the view is cancelled: 503 when the engine answers it, else a closed connection
    assert r is None or r.status == 503
    assert wait_gone(pids, 1) == []


def test_a_replacement_slow_to_start_is_reported_while_the_old_serves(app_dir):
    """SIGHUP while the new code's on_startup takes long: the master says
    so every 10 s (a reload that seems stuck otherwise shows nothing), the
    old worker serves meanwhile, and is replaced once the new one is ready."""
    srv = fulmen_proc(app_dir, "--workers", "1").start()
    flag = app_dir / "SLOW_STARTUP"
    try:
        old = srv.wait_workers(1)
        flag.write_text("")
        mark = srv.mark()
        srv.proc.send_signal(signal.SIGHUP)
        # the first report, 10 s after the start: "10 s", or more when a
        # busy machine wakes the master late (the figure is rounded)
        assert srv.wait_line(r"not ready after 1\d s", mark, timeout=30), srv.stderr()
        assert get(srv.port, "/pid").body.decode() == str(old[0])
        flag.unlink()
        new = srv.wait_workers(1, mark)
        assert new != old
        assert wait_gone(old, 10) == []
        assert get(srv.port, "/pid").body.decode() == str(new[0])
    finally:
        if flag.exists():
            flag.unlink()
        assert stop_master(srv) == 0, srv.stderr()


def test_second_sigint_stops_at_once(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "2", "--graceful-timeout", "30").start()
    pids = srv.wait_workers(2)
    with Conn(srv.port) as c:
        mark = srv.mark()
        c.send(build_request("GET", "/slow?s=60"))
        srv.wait_line("slow request started", mark)
        srv.proc.send_signal(signal.SIGINT)
        srv.wait_line("SIGINT, stopping", mark)
        srv.proc.send_signal(signal.SIGINT)
        code = wait_exit(srv, 5)          # not the 30 s grace period
    assert code == 1, srv.stderr()
    assert wait_gone(pids, 2) == []


def test_kill_9_master_leaves_no_worker(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "2").start()
    pids = srv.wait_workers(2)
    assert get(srv.port).status == 200
    srv.proc.kill()
    wait_exit(srv, 5)
    assert wait_gone(pids, 5) == [], "orphaned workers survived the master"


def test_sighup_replaces_workers_under_load(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "2").start()
    try:
        old = srv.wait_workers(2)
        with Load(srv.port, n=8) as load:
            load.wait_requests(200)
            mark = srv.mark()
            srv.proc.send_signal(signal.SIGHUP)
            new = srv.wait_workers(2, mark)
            for p in old:
                srv.wait_line(r"worker %d served \d+ requests" % p, mark)
            assert wait_gone(old, 5) == []
            load.wait_requests(200)
        assert set(new).isdisjoint(old)
        assert load.failed == [], load.failed
        assert load.racy == []
        # each new worker serves: the load's 8 keep-alive connections may
        # all have landed on one of them (SO_REUSEPORT hashes each
        # connection), so ask on fresh connections until both have answered
        seen = set()
        for _ in range(200):
            seen.add(int(get(srv.port, "/pid").body))
            if set(new) <= seen:
                break
        assert seen == set(new)
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_max_requests_recycles_gracefully(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "1", "--max-requests", "50",
                      "--max-requests-jitter", "10").start()
    try:
        first = srv.wait_workers(1)[0]
        mark = srv.mark()
        with Load(srv.port, n=2) as load:
            srv.wait_line(r"worker %d asks to be replaced: max-requests (5\d|60) reached"
                          % first, mark)
            new = srv.wait_workers(1, mark)[0]
            srv.wait_line(r"worker %d served \d+ requests" % first, mark)
            load.wait_requests(20)
        assert new != first
        assert load.failed == []
        n = int(re.search(r"worker %d served (\d+) requests" % first, srv.stderr()).group(1))
        assert n >= 50
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_max_rss_recycles(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "1", "--max-rss", "1").start()
    try:
        first = srv.wait_workers(1)[0]
        mark = srv.mark()
        srv.wait_line(r"worker %d asks to be replaced: RSS \d+ MB over max-rss 1 MB" % first)
        assert srv.wait_workers(1, mark)[0] != first
        assert get(srv.port).status == 200
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def kill_worker_under_flag(srv, flag):
    """Once the one worker serves, set `flag` (a file APP's hooks look
    for) and SIGKILL the worker: its replacements start under the flag.
    Returns the killed pid and the log mark before the kill."""
    first = srv.wait_workers(1)[0]
    flag.write_text("")
    mark = srv.mark()
    os.kill(first, signal.SIGKILL)
    return first, mark


def test_crashing_start_up_backs_off_and_recovers(app_dir):
    flag = app_dir / "FAIL_STARTUP"
    srv = fulmen_proc(app_dir, "--workers", "1").start()
    try:
        _, mark = kill_worker_under_flag(srv, flag)
        # the replacements die at start-up; the delays grow; the master stays
        srv.wait_line(r"before serving; next try in 0\.1 s", mark)
        srv.wait_line(r"before serving; next try in 0\.2 s", mark)
        srv.wait_line(r"before serving; next try in 0\.4 s", mark)
        assert srv.alive()
        mark = srv.mark()
        flag.unlink()
        srv.wait_workers(1, mark)
        assert get(srv.port).body == b"Hello world!"
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_max_start_failures_gives_up(app_dir):
    # with a limit, the master stops (serving workers too) and exits 1 once
    # that many starts in a row failed: systemd sees the service fail
    flag = app_dir / "FAIL_STARTUP"
    srv = fulmen_proc(app_dir, "--workers", "2", "--max-start-failures", "3").start()
    try:
        srv.wait_workers(2)
        first, mark = kill_worker_under_flag(srv, flag)
        srv.wait_line(r"before serving; next try in 0\.1 s", mark)
        srv.wait_line(r"before serving; next try in 0\.2 s", mark)
        srv.wait_line(r"before serving: 3 start-up failures in a row "
                      r"\(--max-start-failures\), giving up; master \d+ stopping 1 "
                      r"worker\(s\) gracefully", mark)
        assert wait_exit(srv, 10) == 1
        assert "master %d stopped" % srv.proc.pid in srv.stderr()
    finally:
        flag.unlink()
        srv.stop()


def test_workers_that_crash_right_after_starting_back_off(app_dir):
    # a worker that dies as soon as it serves (a background task that
    # crashes, say) is a crash loop too: without a delay the master would
    # fork a new one as fast as they die
    flag = app_dir / "CRASH_AFTER_READY"
    srv = fulmen_proc(app_dir, "--workers", "1").start()
    try:
        first, mark = kill_worker_under_flag(srv, flag)
        # deaths in a row right after starting wait longer each time (the
        # first is replaced at once)
        srv.wait_line(r"worker %d was killed by signal SIGKILL" % first, mark)
        srv.wait_line(r"exited with code 4 \d+\.\d s after it started serving; "
                      r"next try in 0\.1 s", mark)
        srv.wait_line(r"exited with code 4 \d+\.\d s after it started serving; "
                      r"next try in 0\.2 s", mark)
        srv.wait_line(r"exited with code 4 \d+\.\d s after it started serving; "
                      r"next try in 0\.4 s", mark)
        flag.unlink()
        mark = srv.mark()
        srv.wait_workers(1, mark)
        assert get(srv.port).body == b"Hello world!"
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_a_worker_whose_loop_blocks_is_replaced_with_its_traceback(app_dir):
    srv = fulmen_proc(app_dir, "--workers", "1", "--worker-timeout", "1").start()
    try:
        first = srv.wait_workers(1)[0]
        mark = srv.mark()
        with Conn(srv.port) as c:
            c.send(build_request("GET", "/block"))
            srv.wait_line(r"^blocking in %d$" % first, mark)
            srv.wait_line(r"worker %d: no word from it for \d+ s \(--worker-timeout\), its "
                          r"event loop is blocked: SIGABRT" % first, mark)
            # faulthandler's dump: the line that blocks, in the app's view
            srv.wait_line(r'File ".*supapp\.py", line \d+ in block$', mark)
            srv.wait_line(r"worker %d was killed by signal SIGABRT" % first, mark)
            # the blocked request's connection goes with its worker
            with pytest.raises((EOFError, ConnectionError)):
                c.read_final()
        new = srv.wait_workers(1, mark)[0]
        assert new != first
        assert get(srv.port, "/pid").body == str(new).encode()
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_a_worker_that_awaits_longer_than_the_timeout_is_left_alone(app_dir):
    # the timeout is about the event loop, not the requests: an async view
    # that awaits three times --worker-timeout keeps its worker
    srv = fulmen_proc(app_dir, "--workers", "1", "--worker-timeout", "0.5").start()
    try:
        first = srv.wait_workers(1)[0]
        mark = srv.mark()
        with Conn(srv.port) as c:
            r = c.request("GET", "/slow?s=1.5")
        assert (r.status, r.body) == (200, b"slow done")
        assert get(srv.port, "/pid").body == str(first).encode()
        assert not [line for line in srv.lines[mark:] if "no word" in line or "killed" in line]
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_app_run_worker_num(tmp_path):
    write_app(tmp_path, "runapp", APP + '\nif __name__ == "__main__":\n'
              '    app.run(host="127.0.0.1", port=0, worker_num=2)\n')
    srv = Proc([sys.executable, str(tmp_path / "runapp.py")], cwd=str(tmp_path)).start()
    pids = srv.wait_workers(2)
    assert srv.proc.pid not in pids
    assert get(srv.port).status == 200
    assert stop_master(srv) == 0
    assert wait_gone(pids, 5) == []
