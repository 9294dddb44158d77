"""The supervisor: a master process that keeps N workers serving one socket.

The master binds the listening socket, forks the workers, and then runs no
event loop and serves no request.  It sleeps in select() on three kinds of
file descriptor:

  * the signal wakeup pipe (SIGTERM, SIGINT, SIGHUP, SIGCHLD),
  * one control socket per worker, on which the worker says "ready" once it
    accepts connections, "recycle ..." when it wants to be replaced
    (--max-requests, --max-rss), and "beat" from its event loop every second
    (a quarter of --worker-timeout when that is shorter),
  * with --reload, the file watcher (reloader.py).

Load spreading: a TCP address gets one SO_REUSEPORT listening socket per
worker "slot", all made and kept open by the master; the kernel spreads new
connections over them by hash.  One socket shared by all workers spreads
badly under uvloop: the worker that wakes first accepts everything queued,
and with wrk -c100 one of two workers often got every connection.  Because
the master keeps every slot's socket open, a worker that stops or dies never
takes its socket (and the connections queued in it) down: the replacement
for that slot accepts them.  A unix socket or an inherited --fd is one
socket, shared by every worker.

Replacing a worker (SIGHUP, recycling, a code change) always starts the new
one first, waits for its "ready", and only then stops the old one gracefully,
one worker at a time.  Workers are marked with the generation they were
started in; SIGHUP and code changes bump the generation, and a worker of an
older generation (or one that asked to be recycled) is "stale".

A worker whose event loop stops turning (a view that blocks: an endless
loop, a lock or a socket with no timeout) says nothing more.  Once no word
came from it for --worker-timeout seconds, the master sends it SIGABRT:
faulthandler, enabled in every worker, prints every thread's traceback to
stderr, which shows the line that blocks, and the worker dies; SIGKILL
follows _KILL_MARGIN later if SIGABRT did not end it.  It is replaced like
any worker that dies.

Workers die with the master: PR_SET_PDEATHSIG sends them SIGTERM (a graceful
stop) when it dies, and the control socket reaching EOF does the same where
prctl is not available.

With --reload the workers are not forked but started by running the same
command again (sys.orig_argv): forked workers would share the master's
already imported, stale modules.  The command finds the inherited socket and
control socket through the FULMEN_WORKER environment variable, which makes
Application.run() call exec_worker_main().
"""
import ctypes
import faulthandler
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback

WORKER_ENV = "FULMEN_WORKER"

_PR_SET_PDEATHSIG = 1
# the signals the master handles (through its wake-up pipe)
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
_BACKOFF_FIRST = 0.1        # seconds before restarting a worker that died at start-up,
_BACKOFF_CAP = 5.0          # doubled on each failure in a row, up to this
_START_REPORT = 10.0       # a worker not "ready" yet is reported this often
_STABLE = 1.0              # a worker that dies sooner after its "ready" crashed on start
_KILL_MARGIN = 2.0          # after graceful_timeout, for on_shutdown hooks, then SIGKILL
_RELOAD_DEBOUNCE = 0.05     # a save is often several file events
_BEAT = 1.0                 # a worker's "beat" interval (at most a quarter of the timeout)


def _log(msg):
    sys.stderr.write("fulmen: %s\n" % msg)
    sys.stderr.flush()


def _describe_status(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return "was killed by signal %s" % name
    return "exited with code %d" % os.waitstatus_to_exitcode(status)


def set_pdeathsig(sig=signal.SIGTERM):
    """Ask the kernel to send sig to this process when its parent dies.
    Returns False where prctl is not available (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _rss_mb():
    """This process's resident set size in MB (from /proc), or 0."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


# ---- the worker side ---------------------------------------------------------------

def worker_main(app, sock, conn, master_pid, *, graceful_timeout, ssl, max_requests,
                max_requests_jitter, max_rss, reload, worker_timeout):
    """Serve sock in this worker process until SIGTERM; return the exit code.

    conn is the worker's end of its control socket.  Once listening, the
    worker writes "ready" (and with reload the files of its modules); it
    checks its request count and RSS every second and writes "recycle" when
    over a limit, it writes "beat" while its loop turns (worker_timeout),
    and it stops gracefully when the master goes away.
    """
    set_pdeathsig(signal.SIGTERM)
    # a crash, or the master's SIGABRT for a blocked loop, prints where
    # every thread was
    faulthandler.enable(all_threads=True)
    if os.getppid() != master_pid:          # the master died before prctl
        return 0
    import uvloop
    loop = uvloop.new_event_loop()
    app._loop = loop
    limit = max_requests + random.randint(0, max_requests_jitter) if max_requests else None
    asked = []

    def send(line):
        try:
            conn.sendall(line.encode("utf-8", "surrogateescape") + b"\n")
        except OSError:
            pass

    def master_gone():
        try:
            data = conn.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(conn.fileno())
            os.kill(os.getpid(), signal.SIGTERM)

    def check_limits():
        server = app._server
        if not asked and server is not None:
            if limit is not None and server.requests >= limit:
                asked.append("max-requests %d reached" % limit)
            elif max_rss is not None and _rss_mb() > max_rss:
                asked.append("RSS %.0f MB over max-rss %g MB" % (_rss_mb(), max_rss))
            if asked:
                send("recycle " + asked[0])
                return
        loop.call_later(1.0, check_limits)

    reported = []

    def report_modules():
        # modules a view imports on first use come after start-up: the
        # master hears of them within a second (a cheap count when none)
        if len(sys.modules) != (reported[0] if reported else -1):
            reported[:] = [len(sys.modules)]
            send("modules " + json.dumps(module_files()))
        loop.call_later(1.0, report_modules)

    def beat():
        send("beat")
        loop.call_later(beat_every, beat)

    beat_every = min(_BEAT, worker_timeout / 4) if worker_timeout else None

    def listening():
        send("ready")
        if beat_every:
            loop.call_later(beat_every, beat)
        if reload:
            report_modules()
        conn.setblocking(False)
        loop.add_reader(conn.fileno(), master_gone)
        if limit is not None or max_rss is not None:
            loop.call_later(1.0, check_limits)

    app._on_listening = listening
    app.serve(sock, loop=loop, graceful_timeout=graceful_timeout, ssl=ssl)
    server = app._server
    _log("worker %d served %d requests" % (os.getpid(), server.requests if server else 0))
    return 0


def exec_worker_main(app, **options):
    """Application.run() in a worker that a reloading master started."""
    # the master held its signals across the exec: a SIGTERM sent to this
    # worker since is delivered now (and, before the worker's own handlers
    # exist, ends it, as it asked)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
    sock_fd, conn_fd, master_pid = map(int, os.environ.pop(WORKER_ENV).split(":"))
    sock = socket.socket(fileno=sock_fd)
    conn = socket.socket(fileno=conn_fd)
    try:
        return worker_main(app, sock, conn, master_pid, **options)
    finally:
        conn.close()


def module_files():
    """The .py files of the imported modules that belong to the application:
    every one outside the Python installation and site-packages."""
    skip = tuple({os.path.join(os.path.realpath(p), "") for p in
                  (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    out = set()
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if not f or not f.endswith(".py"):
            continue
        f = os.path.realpath(f)
        if f.startswith(skip) or "site-packages" in f or "dist-packages" in f:
            continue
        out.add(f)
    return sorted(out)


# ---- the master ------------------------------------------------------------------

class _Worker:
    __slots__ = ("pid", "slot", "conn", "gen", "ready", "ready_at", "stale", "retiring",
                 "kill_at", "kill_why", "buf", "proc", "started", "report_at", "heard_at")

    def __init__(self, pid, slot, conn, gen, proc=None):
        self.pid = pid
        self.slot = slot
        self.conn = conn            # master's end of the control socket
        self.gen = gen
        self.ready = False
        self.ready_at = None        # time.monotonic() of its "ready"
        self.stale = False          # asked to be recycled
        self.retiring = False       # SIGTERM sent
        self.kill_at = None
        self.kill_why = "after the graceful timeout"
        self.buf = b""
        self.proc = proc            # the Popen of a worker started by exec
        self.started = time.monotonic()
        self.report_at = self.started + _START_REPORT  # not ready by then: said
        self.heard_at = self.started    # its last message (a serving one beats)


class Supervisor:
    """The master: Supervisor(app, sock, workers=N, ...).run() returns the
    exit code once every worker has stopped."""

    def __init__(self, app, sock, *, workers=1, graceful_timeout=30.0, ssl=None,
                 max_requests=None, max_requests_jitter=0, max_rss=None, reload=False,
                 worker_timeout=None, max_start_failures=None):
        self.app = app
        self.n = max(1, workers)
        self.socks = [sock]
        if sock.family != socket.AF_UNIX and sock.getsockopt(socket.SOL_SOCKET,
                                                              socket.SO_REUSEPORT):
            host, port = sock.getsockname()[:2]
            backlog = getattr(app, "_backlog", 1024)
            try:
                for _ in range(self.n - 1):
                    self.socks.append(app._bind(host, port, backlog, reuseport=True))
            except OSError:
                for s in self.socks[1:]:
                    s.close()
                raise
        self.graceful_timeout = graceful_timeout
        self.worker_timeout = worker_timeout
        self.reload = reload
        self.worker_options = dict(graceful_timeout=graceful_timeout, ssl=ssl,
                                   max_requests=max_requests,
                                   max_requests_jitter=max_requests_jitter,
                                   max_rss=max_rss, reload=reload,
                                   worker_timeout=worker_timeout)
        self.workers = {}           # pid -> _Worker
        self.gen = 0
        self.failures = 0           # start-up failures in a row
        self.max_start_failures = max_start_failures    # then give up (None: never)
        self.code = 0               # the exit code once stopped
        self.quick_deaths = 0       # workers in a row that died within _STABLE of "ready"
        self.last_quick = 0.0       # when the last of them died
        self.next_spawn = 0.0
        self.paused = False         # reload: the new code does not start; wait for a change
        self.reload_at = None
        self.stopping = False
        self.stop_deadline = None
        self.watcher = None
        self.sel = None
        self.pid = os.getpid()

    # -- main loop ---------------------------------------------------------------

    def run(self):
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup = (sig_r, sig_w)
        old = {s: signal.signal(s, _noop) for s in _HANDLED}
        old_fd = signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(sig_r, selectors.EVENT_READ, self._on_signals)
        try:
            if self.reload:
                from .reloader import make_watcher
                self.watcher = make_watcher()
                self.watcher.watch(module_files())
                self.sel.register(self.watcher.fileno(), selectors.EVENT_READ, self._on_files)
            _log("master %d starting %d worker%s%s" % (
                self.pid, self.n, "s" if self.n > 1 else "",
                " (reloading on code changes, %s)" % self.watcher.kind if self.reload else ""))
            return self._loop()
        finally:
            for w in self.workers.values():       # only after an error in the master
                _kill(w.pid, signal.SIGKILL)
            signal.set_wakeup_fd(old_fd)
            for s, h in old.items():
                signal.signal(s, h)
            self.sel.close()
            if self.watcher is not None:
                self.watcher.close()
            for w in self.workers.values():
                w.conn.close()
            for s in self.socks[1:]:
                s.close()
            os.close(sig_r)
            os.close(sig_w)

    def _loop(self):
        while True:
            for key, _ in self.sel.select(self._timeout()):
                code = key.data(key.fileobj)
                if code is not None:
                    return code
            self._reap()
            now = time.monotonic()
            for w in list(self.workers.values()):
                if w.kill_at is not None and now >= w.kill_at:
                    _log("worker %d still running %s: SIGKILL" % (w.pid, w.kill_why))
                    _kill(w.pid, signal.SIGKILL)
                    w.kill_at = None
                if self._silent(w) and now >= w.heard_at + self.worker_timeout:
                    _log("worker %d: no word from it for %.0f s (--worker-timeout), its "
                         "event loop is blocked: SIGABRT (its traceback follows)"
                         % (w.pid, now - w.heard_at))
                    _kill(w.pid, signal.SIGABRT)
                    w.retiring = True   # dying: replaced now, not waited for
                    w.kill_at = now + _KILL_MARGIN
                    w.kill_why = "2 s after its SIGABRT"
                if not w.ready and not w.retiring and now >= w.report_at:
                    # a start (a replacement's, on SIGHUP, too) that takes
                    # long: say so, the old workers serve on meanwhile
                    _log("worker %d not ready after %d s (its on_startup hooks still "
                         "running?); waiting" % (w.pid, round(now - w.started)))
                    w.report_at += _START_REPORT
            if self.stopping:
                if not self.workers:
                    _log("master %d stopped" % self.pid)
                    return self.code
            else:
                if self.reload_at is not None and now >= self.reload_at:
                    self.reload_at = None
                    self.paused = False
                    self.gen += 1
                self._manage(now)

    def _timeout(self):
        now = time.monotonic()
        times = [w.kill_at for w in self.workers.values() if w.kill_at is not None]
        times += [w.report_at for w in self.workers.values() if not w.ready and not w.retiring]
        times += [w.heard_at + self.worker_timeout for w in self.workers.values()
                  if self._silent(w)]
        if not self.stopping:
            if self.reload_at is not None:
                times.append(self.reload_at)
            if self.next_spawn > now and not self.paused:
                times.append(self.next_spawn)
        return max(0.0, min(times) - now) if times else 1.0

    # -- events --------------------------------------------------------------------

    def _on_signals(self, fd):
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return None
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.stopping:
                    if signum == signal.SIGINT:
                        _log("second SIGINT: stopping at once")
                        for w in self.workers.values():
                            _kill(w.pid, signal.SIGKILL)
                        while self.workers:
                            self._reap(block=True)
                        return 1
                    # a second SIGTERM, passed on: a worker in its on_shutdown
                    # hooks exits at once (one still serving ignores it)
                    for w in self.workers.values():
                        _kill(w.pid, signal.SIGTERM)
                    continue
                _log("master %d: %s, stopping %d worker(s) gracefully"
                     % (self.pid, signal.Signals(signum).name, len(self.workers)))
                self._stop()
            elif signum == signal.SIGHUP and not self.stopping:
                _log("master %d: SIGHUP, replacing the workers one by one" % self.pid)
                self.gen += 1
                self.paused = False
        return None

    def _stop(self):
        self.stopping = True
        for w in self.workers.values():
            self._retire(w)
        # the workers close their listening sockets as they stop; the
        # master's copies would keep them open, and the kernel would go on
        # queueing connections that no one accepts until they were reset at
        # the exit: refused now, a load balancer sends them elsewhere (run()
        # closes sock again, and removes a unix socket's file)
        for s in self.socks:
            s.close()

    def _on_files(self, fd):
        # while the new code fails to start, the module with the error may be
        # one that no worker imported yet (so not watched): any .py file of
        # the app's directories counts then
        changed = self.watcher.read(any_py=self.paused)
        if changed and not self.stopping:
            _log("%s changed, reloading" % ", ".join(sorted(os.path.relpath(p) for p in changed)))
            self.reload_at = time.monotonic() + _RELOAD_DEBOUNCE
        return None

    def _on_message(self, conn):
        w = next((w for w in self.workers.values() if w.conn is conn), None)
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if w is None:
            return None
        if not data:                    # the worker is exiting; _reap logs it
            self.sel.unregister(conn)
            return None
        w.heard_at = time.monotonic()
        w.buf += data
        while b"\n" in w.buf:
            line, w.buf = w.buf.split(b"\n", 1)
            verb, _, arg = line.decode("utf-8", "surrogateescape").partition(" ")
            if verb == "ready":
                self._on_ready(w)
            elif verb == "recycle" and not w.retiring:
                _log("worker %d asks to be replaced: %s" % (w.pid, arg))
                w.stale = True
            elif verb == "modules" and self.watcher is not None:
                try:
                    self.watcher.watch(json.loads(arg))
                except ValueError:
                    pass
        return None

    def _on_ready(self, w):
        w.ready = True
        w.ready_at = time.monotonic()
        self.failures = 0
        if w.retiring or self.stopping or self._is_stale(w):
            return
        # a fresh worker is accepting: now one stale worker may stop, the
        # one of the same slot if there is one
        stale = [o for o in self.workers.values()
                 if o.ready and not o.retiring and self._is_stale(o)]
        if stale:
            self._retire(min(stale, key=lambda o: (o.slot != w.slot, o.gen)))

    # -- keeping N workers -----------------------------------------------------------

    def _silent(self, w):
        """w serves and should be beating (the watchdog applies to it)."""
        return bool(self.worker_timeout) and w.ready and not w.retiring

    def _is_stale(self, w):
        return w.stale or w.gen != self.gen

    def _manage(self, now):
        active = [w for w in self.workers.values() if not w.retiring]
        fresh = [w for w in active if not self._is_stale(w)]
        stale = [w for w in active if self._is_stale(w)]
        for w in stale:
            if not w.ready:             # started with code that is already outdated
                self._retire(w)
        stale_ready = [w for w in stale if w.ready]
        free = sorted(set(range(self.n)) - {w.slot for w in fresh})
        if not free:
            if all(w.ready for w in fresh):
                for w in stale_ready:
                    self._retire(w)
            return
        if self.paused or now < self.next_spawn:
            return
        if stale_ready:                 # rolling: one new worker at a time
            if all(w.ready for w in fresh):
                self._spawn(free[0])
        else:
            for slot in free:
                self._spawn(slot)

    def _retire(self, w):
        if not w.retiring:
            w.retiring = True
            w.kill_at = time.monotonic() + self.graceful_timeout + _KILL_MARGIN
            _kill(w.pid, signal.SIGTERM)

    def _reap(self, block=False):
        while self.workers:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            if w.proc is not None:
                w.proc.returncode = os.waitstatus_to_exitcode(status)
            try:
                self.sel.unregister(w.conn)
            except (KeyError, ValueError):
                pass
            w.conn.close()
            how = _describe_status(status)
            if w.retiring:
                if not w.ready and os.WIFSIGNALED(status) and \
                        os.WTERMSIG(status) == signal.SIGTERM:
                    # our SIGTERM, before it served: nothing to serve or finish
                    _log("worker %d stopped while it was starting" % pid)
                elif status != 0:
                    _log("worker %d %s" % (pid, how))
            elif w.ready:
                self._on_death_after_ready(w, how)
            else:
                self.failures += 1
                if self.reload:
                    self.paused = True
                    _log("worker %d %s before serving; waiting for a file to change" % (pid, how))
                elif self.max_start_failures and self.failures >= self.max_start_failures:
                    if not self.stopping:
                        _log("worker %d %s before serving: %d start-up failures in a row "
                             "(--max-start-failures), giving up; master %d stopping %d "
                             "worker(s) gracefully" % (pid, how, self.failures, self.pid,
                                                       len(self.workers)))
                        self.code = 1
                        self._stop()
                else:
                    delay = min(_BACKOFF_CAP, _BACKOFF_FIRST * 2 ** (self.failures - 1))
                    self.next_spawn = time.monotonic() + delay
                    _log("worker %d %s before serving; next try in %.1f s" % (pid, how, delay))
            if block:
                return

    def _on_death_after_ready(self, w, how):
        """A serving worker died unexpectedly: it is replaced at once, unless
        workers keep dying right after they start serving (a crash loop,
        which would otherwise fork as fast as they die).  The second such
        death in a row waits 0.1 s, then 0.2 ... up to 5 s; the count starts
        again once a worker started since has served for _STABLE seconds."""
        now = time.monotonic()
        lived = now - w.ready_at
        if lived >= _STABLE or any(
                o.ready and o.ready_at > self.last_quick and now - o.ready_at >= _STABLE
                for o in self.workers.values()):
            self.quick_deaths = 0
        if lived >= _STABLE:
            _log("worker %d %s; starting a new one" % (w.pid, how))
            return
        self.quick_deaths += 1
        self.last_quick = now
        if self.quick_deaths == 1:
            _log("worker %d %s; starting a new one" % (w.pid, how))
            return
        delay = min(_BACKOFF_CAP, _BACKOFF_FIRST * 2 ** (self.quick_deaths - 2))
        self.next_spawn = max(self.next_spawn, now + delay)
        _log("worker %d %s %.1f s after it started serving; next try in %.1f s"
             % (w.pid, how, lived, delay))

    def _spawn(self, slot):
        sock = self.socks[slot % len(self.socks)]
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        proc = None
        try:
            if self.reload:
                # held across fork and exec as below: a signal that reached
                # the child before exec would run the master's C handler
                # there and be lost (exec_worker_main lets them in)
                held = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
                try:
                    proc = self._exec_worker(sock, child)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                pid = proc.pid
            else:
                # the master's signals are held across fork(): until the
                # child has put its own handlers back, one sent to it would
                # run the master's handler there (and wake the master's
                # pipe, which the child shares) or be lost
                held = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
                try:
                    pid = os.fork()
                    if pid == 0:
                        self._forked_worker(sock, parent, child, held)  # never returns
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        w = _Worker(pid, slot, parent, self.gen, proc)
        self.workers[pid] = w
        self.sel.register(parent, selectors.EVENT_READ, self._on_message)
        return w

    def _forked_worker(self, sock, parent, child, held):
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(s, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            parent.close()
            # nothing of the master's stays open in the worker: in particular
            # not the control sockets of the other workers, or their EOF
            # would never come
            for w in self.workers.values():
                w.conn.close()
            self.sel.close()
            for fd in self._wakeup:
                os.close(fd)
            for s in self.socks:
                if s is not sock:
                    s.close()
            code = worker_main(self.app, sock, child, self.pid, **self.worker_options)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                from .app import _drain_stderr
                _drain_stderr()
            finally:
                os._exit(code)

    def _exec_worker(self, sock, child):
        argv = [sys.executable] + list(getattr(sys, "orig_argv", sys.argv)[1:])
        env = dict(os.environ)
        env[WORKER_ENV] = "%d:%d:%d" % (sock.fileno(), child.fileno(), self.pid)
        return subprocess.Popen(argv, env=env, pass_fds=(sock.fileno(), child.fileno()))


def _noop(signum, frame):
    """Signals only wake the select() through the wakeup fd."""


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
