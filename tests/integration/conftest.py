"""Fixtures for the integration suite: one server process per test app, shared
by the whole session, and a health check after every test that uses one.

A test takes `basic` (or `debug_app`, ...) and gets a running Server with a
.port.  After the test the server must still be alive and must not have
printed a C-level crash; if it died, the test errors and the next test gets a
fresh process.  At the end of the session every server is stopped with SIGTERM
and must exit cleanly (0 or -SIGTERM) within the timeout.
"""
import os

import pytest

from .server import Server, clean_exit, describe


class ServerPool:
    def __init__(self):
        self.running = {}
        self.stopped = []
        self.failed_start = {}

    def get(self, name, env=None):
        """The running server for app `name`, started if need be (with the
        extra environment variables `env`).  An app that failed to start is
        not retried: its later tests fail at once with a pointer to the
        first error instead of repeating it."""
        if name in self.failed_start:
            pytest.fail("app %r failed to start earlier in this session: %s"
                        % (name, self.failed_start[name]), pytrace=False)
        srv = self.running.get(name)
        if srv is None or not srv.alive():
            try:
                srv = Server.for_app(name, env=env).start()
            except RuntimeError as e:
                self.failed_start[name] = str(e).splitlines()[-1]
                raise
            self.running[name] = srv
        return srv

    def retire(self, name):
        srv = self.running.pop(name, None)
        if srv is not None:
            srv.stop()
            self.stopped.append(srv)

    def stop_all(self):
        bad = []
        for name, srv in list(self.running.items()):
            code = srv.stop()
            if not clean_exit(code) or srv.crash_report():
                bad.append("%s: %s\n%s" % (name, describe(code) if code != "hung"
                                           else "did not exit after SIGTERM",
                                           srv.stderr()[-4000:]))
        self.running.clear()
        return bad


@pytest.fixture(scope="session")
def server_pool():
    pool = ServerPool()
    yield pool
    bad = pool.stop_all()
    if bad:
        pytest.fail("server(s) did not shut down cleanly:\n" + "\n".join(bad))


@pytest.fixture(autouse=True)
def _stderr_since_this_test(server_pool):
    """Each shared server's wait_for_stderr looks only at what it writes from
    this test on.  Autouse fixtures come first, so a server the test starts
    itself begins at its first line."""
    for srv in server_pool.running.values():
        with srv._lock:
            srv.since = len(srv.lines)


def _app_fixture(name):
    def fixture(server_pool):
        srv = server_pool.get(name)
        yield srv
        problem = srv.problem()
        if problem:
            server_pool.retire(name)
            pytest.fail("after this test: " + problem, pytrace=False)
    return fixture


basic = pytest.fixture(_app_fixture("basic"), name="basic")
debug_app = pytest.fixture(_app_fixture("debug"), name="debug_app")
japronto_style = pytest.fixture(_app_fixture("japronto_style"), name="japronto_style")
japronto_plain = pytest.fixture(_app_fixture("japronto_plain"), name="japronto_plain")
router_prefix = pytest.fixture(_app_fixture("router_prefix"), name="router_prefix")


# Under AddressSanitizer (make asan) memory is held in quarantine and every
# step is several times slower: RSS figures and sub-second timers mean
# nothing there.  Tests that measure those skip under it, and say so.
SANITIZED = bool(os.environ.get("FULMEN_SANITIZED"))
skip_if_sanitized = pytest.mark.skipif(
    SANITIZED, reason="RSS and sub-second timing are not meaningful under ASan")
