"""Error handlers, debug mode, on_request/on_response hooks, startup and
shutdown hooks and extend_request (apps/api.py, apps/debug.py, and
apps/hooks.py for the hooks over error answers)."""
import re
import select
import signal
import socket
import sys
import uuid

import pytest

from .rawhttp import Conn, build_request, chunked
from .server import Server, clean_exit, describe
from .test_api import api, api_tree, get  # noqa: F401  (the shared fixture)

POLL_DEADLINE = 5.0


def wait_for_stderr(srv, text):
    """The server's stderr once it contains `text` (the drain thread reads it
    asynchronously); fails after POLL_DEADLINE."""
    if not srv.wait_for_stderr(text, POLL_DEADLINE):
        pytest.fail("%r never appeared on stderr:\n%s" % (text, srv.stderr()[-3000:]))
    return srv.stderr()


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


def test_a_large_404_for_expect_100_is_not_reset_by_the_body_sent_anyway(api):
    """The 404 goes at once, without a 100 Continue; the client sends its
    body anyway (RFC 9110 10.1.1 lets it), while the 404 is still on its
    way (the client reads nothing until then, with a small receive buffer).
    The close is staged, so the body is dropped, not answered with a reset
    that would cut the 404."""
    size = 200_000
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", api.port))
    with s:
        s.sendall(b"POST /eh-big/%d HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 1000\r\n\r\n" % size)
        select.select([s], [], [], 10)      # the 404 has begun to arrive
        s.sendall(b"b" * 1000)
        got = b""
        while True:
            d = s.recv(65536)               # a reset raises here
            if not d:
                break
            got += d
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), head
    assert b"\r\nConnection: close" in head
    assert body == b"n" * size


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


def test_response_hooks_see_error_handler_answers(api):
    # the error handler's answer is what the response hooks get
    r = get(api, "/err/not-found", headers={"X-Mutate": "1"})
    assert (r.status, r.body) == (202, b"not found error: missing thing +mutated")
    assert r.header("X-Hooked") == "sync"
    r = get(api, "/err/async-not-found", headers={"X-Replace": "1"})
    assert (r.status, r.body) == (201, b"replaced; was 404")
    r = get(api, "/err/not-found")
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
    others = {"bound": "hello bob from /hk/extended", "partial": "hey ann from /hk/extended",
              "callable": "hi eve from /hk/extended"}
    assert get(api, "/hk/extended", headers={"X-User": "bob"}).json() == \
        dict(others, user="bob", greet="hi, bob")
    assert get(api, "/hk/extended").json() == dict(others, user="anonymous",
                                                   greet="hi, anonymous")


TWO_APPS = """
from fulmen import Application
first, second = Application(), Application()
first.extend_request(lambda request: "first's", name="db", property=True)
first.extend_request(lambda request: "first's", name="only_first", property=True)
second.extend_request(lambda request: "second's", name="db", property=True)
first.extend_request(lambda request: "first's again", name="db", property=True)
def view(request):
    return request.Response(json=[request.db, hasattr(request, "only_first")])
second.router.add_route("/", view)
second.run(host="127.0.0.1", port=0)
"""


def test_extend_request_is_per_app(tmp_path):
    """An app serves with its own extensions, not those another app added
    since (the names were set on the one request class for every app)."""
    (tmp_path / "two_apps.py").write_text(TWO_APPS)
    srv = Server([sys.executable, str(tmp_path / "two_apps.py")]).start()
    try:
        assert get(srv, "/").json() == ["second's", False]
    finally:
        srv.stop()


def test_extend_request_rejects_bad_names():
    from fulmen import Application
    app = Application()
    with pytest.raises(ValueError):
        app.extend_request(lambda r: 1, name="path")        # a built-in attribute
    with pytest.raises(ValueError):
        app.extend_request(lambda r: 1, name="not an identifier")
    with pytest.raises(TypeError):
        app.extend_request("not callable", name="x")
    # the name given is what is blamed, not the function's own
    with pytest.raises(TypeError, match="name must be a str, not 5"):
        app.extend_request(lambda r: 1, name=5)
    with pytest.raises(ValueError, match="name '' is no attribute name"):
        app.extend_request(lambda r: 1, name="")


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


# ---- response hooks also see the answers made from exceptions (apps/hooks.py) ----
#
# "hooks" has sync hooks (sync views run in the sync wrapper, async views in
# the async one); "hooks_async" has async hooks and debug=True.  Its response
# hook stamps X-Decorated with the status it saw.

@pytest.fixture(params=["hooks", "hooks_async"])
def hooks_app(request, server_pool):
    srv = server_pool.get(request.param)
    srv.debug = request.param == "hooks_async"
    yield srv
    problem = srv.problem()
    if problem:
        server_pool.retire(request.param)
        pytest.fail("after this test: " + problem, pytrace=False)


def _assert_500(srv, r, marker):
    assert r.status == 500, r
    if srv.debug:
        assert r.body.startswith(b"Internal Server Error\n\nTraceback")
        assert marker.encode() in r.body
    else:
        assert r.body == b"Internal Server Error"


def test_plain_answers_are_decorated(hooks_app):
    with Conn(hooks_app.port) as c:
        r = c.request("GET", "/ok")
        assert (r.status, r.body, r.header("X-Decorated")) == (200, b"ok", "200")
        r = c.request("GET", "/no-such-route")          # the automatic 404 still is
        assert (r.status, r.header("X-Decorated")) == (404, "404")


@pytest.mark.parametrize("path", ["/static/small.txt", "/static/big.bin",
                                  "/file/small.txt", "/file/big.bin"])
def test_hooks_see_a_files_answer_and_may_set_its_headers(hooks_app, path):
    """A response hook that sets a header as in a dict works on files too
    (add_static's headers were a list: every file was a 500), and sees the
    answer the file gives: its 304 as a 304, its 404 as a 404 that keeps
    the view's headers."""
    size = 11 if path.endswith(".txt") else 256 * 1024
    with Conn(hooks_app.port) as c:
        r = c.request("GET", path)
        assert (r.status, len(r.body), r.header("X-Decorated")) == (200, size, "200")
        etag = r.header("ETag")
        assert r.header_all("ETag") == [etag] and etag != '"the-apps-own"'
        r = c.request("GET", path, headers={"If-None-Match": etag})
        assert (r.status, r.body, r.header("X-Decorated")) == (304, b"", "304")
        r = c.request("GET", path, headers={"Range": "bytes=2-5"})
        assert (r.status, r.header("X-Decorated")) == (206, "206")
        missing = path.replace("small.txt", "nope.txt").replace("big.bin", "nope.bin")
        r = c.request("GET", missing)
        assert (r.status, r.header("X-Decorated")) == (404, "404")
        assert r.header("X-View") == ("1" if path.startswith("/file/") else None)


def test_a_hooked_views_task_is_named_after_the_view(hooks_app):
    with Conn(hooks_app.port) as c:
        r = c.request("GET", "/task-name")
        assert (r.status, r.body) == (200, b"make_app.<locals>.task_name")


@pytest.mark.parametrize("exc", ["", "SystemExit", "KeyboardInterrupt"])
@pytest.mark.parametrize("path,marker", [("/fail", "sync-view-marker-3b88"),
                                         ("/afail", "async-view-marker-d41f")])
def test_500_from_a_raising_view_is_decorated(hooks_app, path, marker, exc):
    with Conn(hooks_app.port) as c:
        r = c.request("GET", path + "?exc=" + exc)
        _assert_500(hooks_app, r, marker)
        assert r.header("X-Decorated") == "500"
        assert c.request("GET", "/ok").header("X-Decorated") == "200"
    # logged as a view error, as without hooks
    err = wait_for_stderr(hooks_app, marker)
    assert "fulmen: error in view for" in err


@pytest.mark.parametrize("path,body", [("/teapot", b"teapot: sync"),
                                       ("/ateapot", b"teapot: async")])
def test_error_handler_answer_is_decorated(hooks_app, path, body):
    r = get(hooks_app, path)
    assert (r.status, r.body, r.header("X-Decorated")) == (418, body, "418")


def test_bad_request_400_is_decorated(hooks_app):
    with Conn(hooks_app.port) as c:
        r = c.request("POST", "/json", body=b'{"not": json}',
                      headers={"Content-Type": "application/json"})
        assert (r.status, r.header("X-Decorated")) == (400, "400")
        assert r.body.startswith(b"Bad Request")
        r = c.request("GET", "/bad")
        assert (r.status, r.header("X-Decorated")) == (400, "400")
        # a valid body on the same connection still works
        r = c.request("POST", "/json", body=b'{"a": 1}',
                      headers={"Content-Type": "application/json"})
        assert (r.status, r.json(), r.header("X-Decorated")) == (200, {"json": {"a": 1}}, "200")


def test_413_from_a_streamed_body_is_decorated(hooks_app):
    with Conn(hooks_app.port) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(b"x" * 500, [50]))
        r = c.read_final()
        assert (r.status, r.header("X-Decorated")) == (413, "413")
    r = get(hooks_app, "/upload", "POST", body=b"x" * 50)
    assert (r.status, r.body, r.header("X-Decorated")) == (200, b"50", "200")


def test_non_response_from_view_is_a_decorated_500(hooks_app):
    r = get(hooks_app, "/none")
    _assert_500(hooks_app, r, "a view must return a Response, not NoneType")
    assert r.header("X-Decorated") == "500"


def test_500_from_a_raising_request_hook_is_decorated(hooks_app):
    tag = uuid.uuid4().hex
    with Conn(hooks_app.port) as c:
        r = c.request("GET", "/ok", headers={"X-Pre-Raise": tag})
        _assert_500(hooks_app, r, tag)
        assert r.header("X-Decorated") == "500"
        assert c.request("GET", "/ok").body == b"ok"
    wait_for_stderr(hooks_app, "pre-hook failed: " + tag)


@pytest.mark.parametrize("path", ["/ok", "/fail", "/teapot", "/no-such-route"])
def test_raising_response_hook_gives_plain_500(hooks_app, path):
    tag = uuid.uuid4().hex
    with Conn(hooks_app.port) as c:
        r = c.request("GET", path, headers={"X-Post-Raise": tag})
        _assert_500(hooks_app, r, tag)
        # a fresh answer: the hooks do not run on their own failure
        assert r.header("X-Decorated") is None
        # the connection goes on serving
        r = c.request("GET", "/ok")
        assert (r.status, r.body, r.header("X-Decorated")) == (200, b"ok", "200")
    err = wait_for_stderr(hooks_app, "post-hook failed: " + tag)
    assert re.search(r"fulmen: error in on_response hook for .*\n(.*\n)*?"
                     r"RuntimeError: post-hook failed: " + tag, err)


def test_response_hook_returning_no_response_is_blamed_in_the_log(hooks_app):
    # it was logged as "error in view ... a view must return a Response"
    with Conn(hooks_app.port) as c:
        r = c.request("GET", "/ok", headers={"X-Post-Wrong": "yes"})
        assert r.status == 500
        assert c.request("GET", "/ok").body == b"ok"
    err = wait_for_stderr(hooks_app, "returned bool, not a Response or None")
    assert re.search(r"fulmen: error in on_response hook for <Request GET /ok>:\n(.*\n)*?"
                     r"TypeError: on_response hook <function .*> returned bool, "
                     r"not a Response or None", err), err


def test_a_sync_view_that_returns_a_coroutine_gets_the_hooks(hooks_app):
    # as it is answered without hooks (it was a 500 once the app had some)
    r = get(hooks_app, "/coro")
    assert (r.status, r.body) == (200, b"from a coroutine")
    assert r.header("X-Decorated") == "200"


def test_an_on_request_hook_that_returns_no_response_is_named(hooks_app):
    r = get(hooks_app, "/ok", headers={"X-Pre-Wrong": "1"})
    assert r.status == 500
    err = wait_for_stderr(hooks_app, "returned bool, not a Response or None")
    assert re.search(r"TypeError: on_request hook <function .*> returned bool, "
                     r"not a Response or None", err), err


@pytest.mark.parametrize("headers,saw", [
    ([("X-User", "ann")], b"hook saw ann"),
    # "Connection: Upgrade" and "close": the close is HTTP's, and goes with
    # the upgrade, after sync or async hooks
    ([("Connection", "close")], b"hook saw -"),
])
def test_websocket_hooks_run_before_the_101_not_around_the_handler(hooks_app, headers, saw):
    from .wsclient import OP_TEXT, WSClient
    # the on_request hook reads request.headers: given the WebSocket
    # instead of a request it would fail the handler.  What it set on the
    # request is on ws.request.
    with WSClient(hooks_app.port, "/ws", headers=headers) as ws:
        ws.connect()
        ws.send_text("hello")
        assert ws.recv_message() == (OP_TEXT, b"hello")
        assert ws.recv_message() == (OP_TEXT, saw)


def test_frames_sent_with_the_upgrade_wait_for_the_hooks(hooks_app):
    from .wsclient import OP_PING, OP_PONG, OP_TEXT, WSClient, build_frame
    # (RFC 6455 4.1 has the client wait for the 101; one that does not
    # loses nothing, also while async hooks run)
    with WSClient(hooks_app.port, "/ws") as ws:
        ws.connect(extra=build_frame(OP_TEXT, b"early") + build_frame(OP_PING, b"p"))
        got = [ws.recv_message(return_controls=True) for _ in range(3)]
        assert sorted(got) == sorted([(OP_PONG, b"p"), (OP_TEXT, b"early"),
                                      (OP_TEXT, b"hook saw -")])


def _upgrade(headers):
    from .wsclient import WSClient
    return WSClient(0, "/ws", headers=headers).handshake_request()


@pytest.mark.parametrize("headers,status,body", [
    ([("X-Deny", "nope")], 403, b"denied: nope"),
    ([("X-Pre-Raise", "ws-hook-marker-71c2")], 500, None),
])
def test_on_request_hook_refuses_a_websocket_upgrade(hooks_app, headers, status, body):
    from .wsclient import OP_TEXT, build_frame
    with Conn(hooks_app.port) as c:
        # frames and a request behind the refused upgrade are neither
        # taken as frames nor answered: the connection ends with the answer
        c.send(_upgrade(headers) + build_frame(OP_TEXT, b"x") + build_request("GET", "/ok"))
        r = c.read_final()
        assert r.status == status, r
        assert r.header("X-Decorated") == str(status)     # the on_response hooks saw it
        assert r.header("Connection") == "close"
        assert body is None or r.body == body
        assert c.at_eof()
    if status == 500:
        wait_for_stderr(hooks_app, "ws-hook-marker-71c2")


@pytest.mark.parametrize("name", ["hooks", "hooks_async"])
def test_view_cancelled_at_shutdown_gets_a_decorated_503(name):
    srv = Server.for_app(name, env={"FULMEN_HOOKS_GRACE": "0.3"}).start()
    try:
        with Conn(srv.port) as c:
            c.send(build_request("GET", "/slow"))
            assert srv.wait_for_stderr("slow view started")
            srv.proc.send_signal(signal.SIGTERM)
            # past the grace period the view is cancelled and answered
            r = c.read_final()
            assert (r.status, r.body) == (503, b"Service Unavailable")
            assert r.header("X-Decorated") == "503"
    finally:
        code = srv.stop()
    assert clean_exit(code), "exit: %s\n%s" % (describe(code), srv.stderr())
    assert not srv.crash_report()
