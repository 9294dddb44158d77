"""--reload: an edited view is served by a new worker; a syntax error waits.

The app is two files in a temporary directory (the app module imports its
view from a second module), served with `python -m fulmen app:app --reload`.
After an edit the test polls GET / until it shows the new code. Its
deadline is generous (a loaded CI machine): how fast a reload is, is
measured, not asserted.
"""
import os
import re
import time

from .rawhttp import Conn
from .test_supervisor import assert_gone, fulmen_proc, stop_master, write_app

APP = '''
from fulmen import Application
from views import hello

app = Application()
app.router.add_route("/", hello)
'''

VIEW = '''
import os

def hello(request):
    return request.Response(text="%s " + str(os.getpid()))
'''


def write_view(d, text):
    # written to a temporary name and renamed over the old file, as editors do,
    # so that a worker never imports a half-written file
    tmp = os.path.join(str(d), ".views.py.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(str(d), "views.py"))


def body(port):
    with Conn(port) as c:
        return c.request("GET", "/").text


def served_within(port, prefix, seconds):
    """Poll GET / until the body starts with prefix; the time it took, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            if body(port).startswith(prefix):
                return time.monotonic() - t0
        except (OSError, EOFError):
            pass
    return None


def serve_reloading(d, app=APP):
    """`python -m fulmen app:app --reload` in d, the view answering "one PID"."""
    write_app(d, "app", app)
    write_view(d, VIEW % "one")
    return fulmen_proc(d, "--reload", module="app").start()


def line_within(srv, pattern, start, seconds):
    """Whether a stderr line from index start matches pattern within seconds."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + seconds
    with srv._new_line:
        while True:
            if any(rx.search(line) for line in srv.lines[start:]):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            srv._new_line.wait(left)


def test_reload_on_edit_and_syntax_error(tmp_path):
    srv = serve_reloading(tmp_path)
    try:
        first = srv.wait_workers(1)[0]
        assert srv.proc.pid != first                # the master serves nothing
        assert body(srv.port) == "one %d" % first

        mark = srv.mark()
        write_view(tmp_path, VIEW % "two")
        took = served_within(srv.port, "two ", 10.0)
        assert took is not None, "new code not served within 10 s:\n" + srv.stderr()
        srv.wait_line(r"views\.py changed, reloading", mark)
        second = srv.wait_workers(1, mark)[0]
        assert_gone(srv, [first])

        # a syntax error is printed; the running worker keeps serving
        mark = srv.mark()
        write_view(tmp_path, "def hello(request)\n    return 1\n")
        srv.wait_line(r"SyntaxError", mark)
        srv.wait_line(r"before serving; waiting for a file to change", mark)
        assert srv.alive()
        assert body(srv.port) == "two %d" % second

        # the next change starts again
        mark = srv.mark()
        write_view(tmp_path, VIEW % "three")
        assert served_within(srv.port, "three ", 5.0) is not None, srv.stderr()
        assert_gone(srv, [second])
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_reload_ignores_files_the_app_does_not_import(tmp_path):
    srv = serve_reloading(tmp_path)
    try:
        first = srv.wait_workers(1)[0]
        mark = srv.mark()
        (tmp_path / "unrelated.py").write_text("x = 1\n")
        (tmp_path / "notes.txt").write_text("x\n")
        # an event we can wait for: touching views.py afterwards reloads, and
        # the log names views.py only
        write_view(tmp_path, VIEW % "two")
        line = srv.wait_line(r"changed, reloading", mark)
        assert "unrelated" not in line.string and "notes" not in line.string
        srv.wait_workers(1, mark)
        assert first not in srv.worker_pids(mark)
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_reload_after_fixing_a_module_the_broken_code_added(tmp_path):
    # the new code imports a module that was never imported before, and that
    # module has the syntax error: fixing it must start the new code
    srv = serve_reloading(tmp_path)
    try:
        first = srv.wait_workers(1)[0]
        (tmp_path / "helper.py").write_text("def broken(:\n")
        mark = srv.mark()
        write_view(tmp_path, "from helper import broken\n" + VIEW % "two")
        srv.wait_line(r"before serving; waiting for a file to change", mark)
        assert body(srv.port) == "one %d" % first

        mark = srv.mark()
        tmp = tmp_path / ".helper.py.tmp"
        tmp.write_text("def broken():\n    pass\n")
        os.rename(str(tmp), str(tmp_path / "helper.py"))
        srv.wait_line(r"helper\.py changed, reloading", mark)
        second = srv.wait_workers(1, mark)[0]
        srv.wait_line(r"worker %d served \d+ requests" % first, mark)
        assert_gone(srv, [first])
        assert body(srv.port) == "two %d" % second
    finally:
        assert stop_master(srv) == 0, srv.stderr()


LAZY_VIEW = '''
def hello(request):
    import lazy         # imported by the first request, after the worker started
    return request.Response(text=lazy.WORD)
'''


def test_reload_watches_a_module_imported_after_the_worker_started(tmp_path):
    write_app(tmp_path, "app", APP)
    write_view(tmp_path, LAZY_VIEW)
    (tmp_path / "lazy.py").write_text("WORD = 'one'\n")
    srv = fulmen_proc(tmp_path, "--reload", module="app").start()
    try:
        first = srv.wait_workers(1)[0]
        assert body(srv.port) == "one"
        mark = srv.mark()
        # the worker reports the modules it imported since it started a
        # moment later: an edit made before that is not seen, so edit until
        # the master says it saw one (each edit waits up to 1.5 s for that)
        for n in range(8):
            tmp = tmp_path / ".lazy.py.tmp"
            tmp.write_text("WORD = 'two'  # edit %d\n" % n)
            os.rename(str(tmp), str(tmp_path / "lazy.py"))
            if line_within(srv, r"lazy\.py changed, reloading", mark, 1.5):
                break
        else:
            raise AssertionError("lazy.py is not watched:\n" + srv.stderr())
        assert served_within(srv.port, "two", 10.0) is not None, srv.stderr()
        # an edit's line can come just after the 1.5 s, and the next edit
        # then reloads a second time: the first worker stops once a worker of
        # the newest code is ready, which may be a worker after the one that
        # served "two"
        srv.wait_line(r"worker %d served \d+ requests" % first, mark, 20.0)
        assert_gone(srv, [first])
    finally:
        assert stop_master(srv) == 0, srv.stderr()


HELD_APP = '''
import os, sys, time
from fulmen import Application
from views import hello

app = Application()
app.router.add_route("/", hello)


@app.on_startup
def hold(app):
    # while the file "hold" exists a new worker stays in its startup
    if os.path.exists("hold"):
        sys.stderr.write("worker %d held\\n" % os.getpid())
        sys.stderr.flush()
        while os.path.exists("hold"):
            time.sleep(0.02)
'''


def test_an_edit_while_the_new_worker_starts_replaces_it(tmp_path):
    """A second edit while the first one's worker is still starting: that
    worker is stopped (it serves nothing yet, said as such), the next one
    serves the newest code, and the first worker serves until then."""
    srv = serve_reloading(tmp_path, HELD_APP)
    try:
        first = srv.wait_workers(1)[0]
        (tmp_path / "hold").write_text("")
        mark = srv.mark()
        write_view(tmp_path, VIEW % "two")
        second = int(srv.wait_line(r"worker (\d+) held", mark).group(1))
        mark = srv.mark()
        write_view(tmp_path, VIEW % "three")
        srv.wait_line(r"worker %d stopped while it was starting" % second, mark)
        assert_gone(srv, [second])
        third = int(srv.wait_line(r"worker (\d+) held", mark).group(1))
        assert body(srv.port) == "one %d" % first       # still the first one
        os.unlink(str(tmp_path / "hold"))
        assert served_within(srv.port, "three %d" % third, 10.0) is not None, srv.stderr()
        srv.wait_line(r"worker %d served \d+ requests" % first, mark)
        assert_gone(srv, [first])
        assert not any("killed" in line or "two" in line for line in srv.lines), srv.stderr()
    finally:
        assert stop_master(srv) == 0, srv.stderr()
