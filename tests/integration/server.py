"""Run a fulmen app as a child process and watch it.

The server announces itself with exactly one stderr line,
    fulmen: listening on http://HOST:PORT (pid PID)
which is what start() waits for (no sleeping).  stderr is drained by a thread
for the whole life of the process, so a chatty server never blocks on a full
pipe and every line stays available to check for crash reports.
"""
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
REPO = os.path.dirname(os.path.dirname(HERE))

LISTENING = re.compile(r"fulmen: listening on http://(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+) \(pid (\d+)\)$")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# Lines that only a crashing or corrupted C runtime prints.
CRASH = re.compile(
    r"Fatal Python error|Segmentation fault|AddressSanitizer|LeakSanitizer"
    r"|\.[ch]:\d+:\d+: runtime error:|Assertion `.*' failed|core dumped"
    r"|double free or corruption|malloc\(\): |free\(\): |stack smashing detected"
    r"|exception was never retrieved|Task was destroyed but it is pending")


class Server:
    def __init__(self, argv, env=None, cwd=REPO):
        self.argv = argv
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONFAULTHANDLER"] = "1"
        # Apps import as top-level modules (for the CLI's module:app form).
        # The child imports fulmen the way this interpreter does; if this one
        # cannot (an in-place build that is not installed), use src/.
        path = [APPS]
        if importlib.util.find_spec("fulmen") is None:
            path.append(os.path.join(REPO, "src"))
        full_env["PYTHONPATH"] = os.pathsep.join(
            path + [p for p in [full_env.get("PYTHONPATH")] if p])
        full_env.update(env or {})
        self.env = full_env
        self.cwd = cwd
        self.proc = None
        self.lines = []
        self.host = self.port = self.pid = None
        self._listening = threading.Event()
        self._lock = threading.Lock()
        self._new_line = threading.Condition(self._lock)
        self.eof = False            # every line the process wrote is in self.lines
        # wait_for_stderr looks from here on by default: a shared server's
        # pool moves it to the end of its stderr as each test begins, so
        # that a line an earlier test caused cannot answer for this one
        self.since = 0

    @classmethod
    def for_app(cls, name, *args, **kw):
        return cls([sys.executable, os.path.join(APPS, name + ".py"), *args], **kw)

    def start(self):
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=self.env, cwd=self.cwd)
        threading.Thread(target=self._drain, daemon=True).start()
        # The drain thread sets the event on the listening line or on EOF.
        if not self._listening.wait(START_TIMEOUT) or self.port is None:
            self.stop()
            raise RuntimeError("server %r did not report listening; stderr:\n%s"
                               % (self.argv, self.stderr()))
        return self

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)
                self._new_line.notify_all()
            if self.port is None and self._listening_line(line):
                self._listening.set()
        self.proc.stderr.close()
        with self._lock:
            self.eof = True
            self._new_line.notify_all()
        self._listening.set()

    def _listening_line(self, line):
        """Take host, port and pid from the listening line; True if it is one."""
        m = LISTENING.search(line)
        if m:
            self.host, self.port, self.pid = m.group(1), int(m.group(2)), int(m.group(3))
        return m is not None

    def wait_for_stderr(self, text, timeout=5.0, start=None):
        """Wait until text appears in the server's stderr from line start on
        (self.since by default; or its stderr ends without it); True if it
        did."""
        if start is None:
            start = self.since
        def seen():
            return any(text in l for l in self.lines[start:])
        with self._lock:
            return self._new_line.wait_for(lambda: seen() or self.eof, timeout) and seen()

    def stderr(self):
        with self._lock:
            return "\n".join(self.lines)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def crash_report(self):
        """The stderr lines that show a C-level crash, or ''."""
        with self._lock:
            return "\n".join(l for l in self.lines if CRASH.search(l))

    def problem(self):
        """Why this server is not healthy ('' when it is)."""
        if not self.alive():
            return "server exited unexpectedly with %s; stderr:\n%s" % (
                describe(self.proc.returncode), self.stderr())
        crash = self.crash_report()
        if crash:
            return "server reported a crash:\n%s" % crash
        return ""

    def stop(self):
        """SIGTERM, wait, kill if it hangs.  Returns the exit code, once the
        lines it wrote last are in self.lines too."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "hung"
        self.wait_eof()
        return self.proc.returncode

    def wait_eof(self, timeout=5.0):
        """Wait until the drain thread has read the process's stderr to its
        end (a process that has exited may have lines still in the pipe)."""
        with self._lock:
            return self._new_line.wait_for(lambda: self.eof, timeout)


def rss_kb(pid):
    """The resident set size of process pid, in KiB (/proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def describe(code):
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return "signal %s" % signal.Signals(-code).name
        except ValueError:
            return "signal %d" % -code
    return "exit code %d" % code


def clean_exit(code):
    """A server stopped by SIGTERM may exit 0 or die of the signal; anything
    else (a crash signal, an error exit, a hang) is a failure."""
    return code in (0, -signal.SIGTERM)
