"""Error handlers, debug mode, on_request/on_response hooks, startup and
shutdown hooks and extend_request (apps/api.py, apps/debug.py)."""
import re
import time

import pytest

from .rawhttp import Conn
from .server import Server, clean_exit, describe
from .test_api import api, api_tree, get  # noqa: F401  (the shared fixture)

POLL_DEADLINE = 5.0


def wait_for_stderr(srv, text):
    """The server's stderr once it contains `text` (the drain thread reads it
    asynchronously); fails after POLL_DEADLINE."""
    deadline = time.monotonic() + POLL_DEADLINE
    while True:
        err = srv.stderr()
        if text in err:
            return err
        if time.monotonic() > deadline or not srv.alive():
            pytest.fail("%r never appeared on stderr:\n%s" % (text, err[-3000:]))
        time.sleep(0.01)


# ---- error handlers ---------------------------------------------------------------

@pytest.mark.parametrize("path,status,body", [
    ("/err/not-found", 404, b"not found error: missing thing"),
    ("/err/deep", 404, b"not found error: deep"),         # a subclass: nearest handler
    ("/err/app", 418, b"app error: generic"),
    ("/err/async-not-found", 404, b"not found error: async missing"),
])
def test_most_specific_error_handler(api, path, status, body):
    with Conn(api.port) as c:
        r = c.request("GET", path)
        assert (r.status, r.body) == (status, body)
        assert c.request("GET", "/plain").body == b"plain"


def test_unhandled_error_is_500_without_traceback(api):
    r = get(api, "/err/runtime")
    assert r.status == 500
    assert r.body == b"Internal Server Error"
    # the traceback goes to the server's stderr instead
    err = wait_for_stderr(api, "secret-internal-detail")
    assert "Traceback" in err and "RuntimeError" in err


def test_bad_request_from_view_is_400(api):
    r = get(api, "/err/bad-request")
    assert r.status == 400
    assert r.body == b"Bad Request"          # no detail without debug


def test_failing_error_handler_gives_500(api):
    with Conn(api.port) as c:
        r = c.request("GET", "/err/broken-handler")
        assert r.status == 500
        assert r.body == b"Internal Server Error"
        assert c.request("GET", "/plain").body == b"plain"


def test_route_not_found_handler(api):
    r = get(api, "/eh/nothing-here")
    assert r.status == 404
    assert r.body == b"custom 404 for /eh/nothing-here"
    assert r.header("X-Custom") == "404"
    r = get(api, "/nothing-here")
    assert (r.status, r.body) == (404, b"Not Found")


def test_method_not_allowed_handler(api):
    r = get(api, "/eh/only-get", "POST")
    assert r.status == 405
    assert r.header("X-Custom") == "405"
    allow = {m.strip() for m in r.header("Allow").split(",")}
    assert allow == {"GET", "HEAD", "OPTIONS"}
    assert r.body.startswith(b"custom 405, allow ")
    # OPTIONS is still answered automatically
    r = get(api, "/eh/only-get", "OPTIONS")
    assert r.status == 204
    assert r.header("X-Custom") is None


def test_no_request_log_without_debug(api):
    with Conn(api.port) as c:
        assert c.request("GET", "/plain?nolog-marker").status == 200
        assert c.request("GET", "/err/message/after-nolog-marker").status == 500
    # stderr is one ordered stream: once the later error is there, a log
    # line for the earlier request would be too
    err = wait_for_stderr(api, "after-nolog-marker")
    assert not re.search(r"(?m)^fulmen: [A-Z]+ \S+ -> \d+$", err)


# ---- debug mode --------------------------------------------------------------------

def test_debug_traceback_in_500(debug_app):
    r = get(debug_app, "/boom")
    assert r.status == 500
    assert b"Traceback" in r.body
    assert b"debug-marker-7f3a" in r.body
    assert b"RuntimeError" in r.body


def test_debug_logs_requests(debug_app):
    with Conn(debug_app.port) as c:
        assert c.request("GET", "/ok?log-marker-1").status == 200
        assert c.request("POST", "/ok?log-marker-2").status == 200
        assert c.request("GET", "/missing?log-marker-3").status == 404
    err = wait_for_stderr(debug_app, "log-marker-3")
    lines = [l for l in err.splitlines() if "log-marker" in l]
    assert lines == ["fulmen: GET /ok?log-marker-1 -> 200",
                     "fulmen: POST /ok?log-marker-2 -> 200",
                     "fulmen: GET /missing?log-marker-3 -> 404"]


# ---- on_request / on_response --------------------------------------------------------

def test_request_hooks_run_in_order(api):
    assert get(api, "/hk/view").json() == {"pre": ["sync", "async"]}


def test_sync_request_hook_short_circuits(api):
    r = get(api, "/hk/view", headers={"X-Short": "1"})
    assert (r.status, r.body) == (203, b"short-circuited by sync hook")


def test_async_request_hook_short_circuits(api):
    r = get(api, "/err/runtime", headers={"X-Short-Async": "1"})
    # the view (which would raise) never ran
    assert (r.status, r.body) == (203, b"short-circuited by async hook")


def test_response_hook_mutates(api):
    r = get(api, "/plain", headers={"X-Mutate": "1"})
    assert r.status == 202
    assert r.header("X-Hooked") == "sync"
    assert r.body == b"plain +mutated"


def test_response_hook_mutates_list_headers(api):
    r = get(api, "/resp/headers-list", headers={"X-Mutate": "1"})
    assert r.status == 202
    assert r.header_all("X-Rep") == ["1", "2"]
    assert r.header("X-Hooked") == "sync"


def test_response_hook_replaces(api):
    r = get(api, "/plain", headers={"X-Replace": "1"})
    assert (r.status, r.body) == (201, b"replaced; was 200")
    # hooks run in order: the replacing one sees the mutated response
    r = get(api, "/plain", headers={"X-Replace": "1", "X-Mutate": "1"})
    assert (r.status, r.body) == (201, b"replaced; was 202")
    assert r.header("X-Hooked") is None


def test_response_hooks_see_short_circuited_response(api):
    r = get(api, "/plain", headers={"X-Short": "1", "X-Replace": "1"})
    assert (r.status, r.body) == (201, b"replaced; was 203")


def test_hooks_do_not_hide_view_errors(api):
    r = get(api, "/err/not-found", headers={"X-Mutate": "1"})
    assert (r.status, r.body) == (404, b"not found error: missing thing")


# ---- startup / shutdown ------------------------------------------------------------------

def test_startup_hooks_ran_once_before_serving(api):
    e = get(api, "/hk/startup").json()
    assert e["startup"] == [["sync", True], ["async", True]]
    assert e["pid"] == e["my_pid"] == api.pid


def test_shutdown_hooks_run_on_sigterm(tmp_path, tmp_path_factory):
    out = tmp_path / "shutdown.log"
    env = dict(api_tree(tmp_path_factory)["env"], FULMEN_API_SHUTDOWN_FILE=str(out))
    srv = Server.for_app("api", env=env).start()
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/plain").body == b"plain"
        assert not out.exists()          # not before the server is told to stop
    finally:
        code = srv.stop()
    assert clean_exit(code), "exit: %s\n%s" % (
        describe(code) if code != "hung" else "hung after SIGTERM", srv.stderr())
    assert not srv.crash_report()
    assert out.read_text().splitlines() == ["sync %d" % srv.pid, "async %d" % srv.pid]


# ---- extend_request ------------------------------------------------------------------------

def test_extend_request_property_and_method(api):
    assert get(api, "/hk/extended", headers={"X-User": "bob"}).json() == \
        {"user": "bob", "greet": "hi, bob"}
    assert get(api, "/hk/extended").json() == {"user": "anonymous", "greet": "hi, anonymous"}


def test_extend_request_rejects_bad_names():
    from fulmen import Application
    app = Application()
    with pytest.raises(ValueError):
        app.extend_request(lambda r: 1, name="path")        # a built-in attribute
    with pytest.raises(ValueError):
        app.extend_request(lambda r: 1, name="not an identifier")
    with pytest.raises(TypeError):
        app.extend_request("not callable", name="x")


def test_hook_and_handler_registration_errors():
    from fulmen import Application
    app = Application()
    for add in (app.on_request, app.on_response, app.on_startup, app.on_shutdown):
        with pytest.raises(TypeError):
            add("not callable")
    with pytest.raises(TypeError):
        app.add_error_handler("ValueError", lambda r, e: None)
    with pytest.raises(TypeError):
        app.add_error_handler(ValueError, None)


# ---- hooks also see the answers no route gives ----------------------------------

def test_hooks_see_404_405_and_automatic_options(api):
    with Conn(api.port) as c:
        # on_request can answer a request no route takes (a CORS preflight)
        r = c.request("GET", "/no-such-route-at-all", headers={"X-Short": "1"})
        assert (r.status, r.body) == (203, b"short-circuited by sync hook")
        # on_response sees the automatic 404, 405 and OPTIONS answers
        r = c.request("GET", "/no-such-route-at-all", headers={"X-Replace": "1"})
        assert r.text == "replaced; was 404"
        r = c.request("OPTIONS", "/m/get", headers={"X-Replace": "1"})
        assert r.text == "replaced; was 204"
        r = c.request("OPTIONS", "/m/get")
        assert r.status == 204 and "GET" in r.header("Allow")
        assert c.request("GET", "/plain").body == b"plain"
