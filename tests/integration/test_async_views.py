"""An `async def` view that cannot suspend (no await, async for or async
with in its body) is run as a plain call (router._never_suspends): the same
results and exceptions as the coroutine, and views that can suspend are left
alone.

A view that can suspend runs inside its own asyncio Task from its first line
(asyncio.current_task(), asyncio.timeout, TaskGroup work before the first
await), and in its own copy of the context."""
import asyncio
import dis
import functools
import json
import sys

import pytest

from fulmen.router import _never_suspends

from .conftest import _app_fixture
from .rawhttp import Conn, build_request
from .wsclient import OP_TEXT, WSClient

eager_tasks = pytest.fixture(_app_fixture("eager_tasks"), name="eager_tasks")
custom_loop = pytest.fixture(_app_fixture("custom_loop"), name="custom_loop")
stdlib_eager_tasks = pytest.fixture(_app_fixture("stdlib_eager_tasks"), name="stdlib_eager_tasks")
coro_errors = pytest.fixture(_app_fixture("coro_errors"), name="coro_errors")


def run_coro(fn, *args, **kw):
    return asyncio.run(fn(*args, **kw))


def make_closure():
    y = 3

    async def view(r, k=2, *, z=5):
        try:
            return r + y + k + z
        finally:
            pass
    return view


async def plain(r):
    return r + 1


async def raises(r):
    raise ValueError(r)


async def with_loop_and_try(r):
    total = 0
    for i in range(r):
        try:
            if i == 2:
                raise KeyError(i)
            total += i
        except KeyError:
            total += 100
    return [x * 2 for x in range(total % 7)], {"t": total}


async def calls_sync_things(r):
    return "%s-%s" % (r, sorted({r, r + 1}))


async def returns_none(r):
    pass


NEVER_SUSPEND = [plain, make_closure(), with_loop_and_try, calls_sync_things, returns_none]


@pytest.mark.parametrize("view", NEVER_SUSPEND, ids=lambda v: v.__name__)
@pytest.mark.parametrize("arg", [0, 1, 5])
def test_same_result_as_the_coroutine(view, arg):
    fast = _never_suspends(view)
    assert fast is not None
    assert not asyncio.iscoroutinefunction(fast)
    assert fast(arg) == run_coro(view, arg)
    assert fast.__name__ == view.__name__ and fast.__wrapped__ is view


def test_defaults_and_keywords_are_kept():
    view = make_closure()
    fast = _never_suspends(view)
    assert fast(1) == run_coro(view, 1) == 11
    assert fast(1, 10, z=0) == run_coro(view, 1, 10, z=0) == 14


def test_same_exception_as_the_coroutine():
    fast = _never_suspends(raises)
    with pytest.raises(ValueError) as a:
        fast(7)
    with pytest.raises(ValueError) as b:
        run_coro(raises, 7)
    assert a.value.args == b.value.args == (7,)


async def stops(r):
    raise StopIteration(r)


def test_a_stop_iteration_is_the_coroutines_runtime_error():
    # the plain call lets it out as it is; the server's error path makes it
    # what the coroutine raises
    from fulmen.app import _coroutine_error
    fast = _never_suspends(stops)
    # 3.12+: no StopIteration handler is left that only a generator may run
    assert not [i for i in dis.get_instructions(fast) if i.opname == "CALL_INTRINSIC_1"]
    with pytest.raises(StopIteration) as a:
        fast(7)
    with pytest.raises(RuntimeError) as b:
        run_coro(stops, 7)

    class Req:
        class route:
            handler = fast
    err = _coroutine_error(Req, a.value)
    assert (type(err), err.args) == (RuntimeError, b.value.args)
    assert type(err.__cause__) is StopIteration and err.__cause__.args == (7,)
    Req.route.handler = stops   # not a plain call: left alone
    assert _coroutine_error(Req, a.value) is a.value


@pytest.mark.parametrize("path,body", [
    ("/stop/now", "RuntimeError: coroutine raised StopIteration (from StopIteration('now'))"),
    ("/stop/later", "RuntimeError: coroutine raised StopIteration (from StopIteration('later'))"),
    ("/stop/later?wait=1",
     "RuntimeError: coroutine raised StopIteration (from StopIteration('later'))"),
    ("/stop/sync", "StopIteration: sync")])
def test_error_handlers_see_the_coroutines_runtime_error(coro_errors, path, body):
    with Conn(coro_errors.port) as c:
        r = c.request("GET", path)
        assert (r.status, r.body.decode()) == (418 if "coroutine" in body else 419, body)


async def awaits(r):
    await asyncio.sleep(0)
    return r


async def awaits_late(r):
    if r > 100:
        await asyncio.sleep(0)
    return r


class Ctx:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


async def async_with(r):
    async with Ctx():
        return r


async def agen():
    yield 1


async def async_for(r):
    async for x in agen():
        return x + r


async def await_in_comprehension(r):
    return [await asyncio.sleep(0, x) for x in range(r)]


async def async_generator(r):
    yield r


async def names_its_task(r):
    return asyncio.current_task().get_name(), r


def sync_view(r):
    return r


class AsyncCallable:
    async def __call__(self, r):
        return r


@pytest.mark.parametrize("view", [
    awaits, awaits_late, async_with, async_for, await_in_comprehension, async_generator,
    names_its_task,
    sync_view, functools.partial(plain), AsyncCallable(), print, lambda r: r,
], ids=repr)
def test_views_that_can_suspend_are_left_alone(view):
    assert _never_suspends(view) is None


def test_over_a_socket(basic):
    # /an/{i}: an async view that awaits nothing, served among sync and
    # suspending ones on one connection
    with Conn(basic.port) as c:
        for i in range(3):
            assert c.request("GET", "/an/%d" % i).body == b"%d" % i
            assert c.request("GET", "/ap/%d" % i).body == b"%d" % i
            assert c.request("GET", "/p/%d" % i).body == b"%d" % i


def test_a_view_runs_in_its_task_from_the_first_line(basic):
    with Conn(basic.port) as c:
        for _ in range(2):
            r = c.request("GET", "/task/tools")
            assert r.status == 200, r.body
            assert json.loads(r.body) == {"task": True, "same": True, "child": "child"}


def test_a_timeout_cancels_the_views_task(basic):
    with Conn(basic.port) as c:
        r = c.request("GET", "/task/timeout")
        assert (r.status, r.body) == (200, b"timed out")
        # the connection goes on
        assert c.request("GET", "/task/maybe?wait=1").status == 200


@pytest.mark.parametrize("query", ["", "?wait=1"])
def test_a_view_that_could_suspend_has_a_task(basic, query):
    with Conn(basic.port) as c:
        r = c.request("GET", "/task/maybe" + query)
        # named after the view (the stock loop's create_task, no factory)
        assert json.loads(r.body) == {"task": True, "name": "task_maybe"}


@pytest.mark.parametrize("wait", ["", "&wait=1"])
def test_a_view_that_could_suspend_raises_500(basic, wait):
    # raised in its first step (which a 3.12+ Task takes in its constructor)
    # or after suspending: a 500 in its turn, one by one and pipelined
    with Conn(basic.port) as c:
        r = c.request("GET", "/task/raise?n=1" + wait)
        assert (r.status, r.body) == (500, b"Internal Server Error")
        c.send(b"".join(build_request("GET", p) for p in
                        ("/task/maybe", "/task/raise?n=2" + wait, "/task/maybe")))
        assert [c.read_final().status for _ in range(3)] == [200, 500, 200]
    for n in (1, 2):
        assert basic.wait_for_stderr("task-raise-marker-%d" % n)


@pytest.mark.parametrize("query", ["", "?wait=1"])
def test_each_async_view_has_its_own_context(basic, query):
    # pipelined on one connection, then one by one: no request sees the
    # value another set, and neither does a sync view after them
    names = ["a%d" % i for i in range(6)]
    with Conn(basic.port) as c:
        c.send(b"".join(build_request("GET", "/ctx/%s%s" % (v, query)) for v in names))
        for v in names:
            assert json.loads(c.read_final().body) == {"seen": None, "after": v}
        for v in names:
            r = c.request("GET", "/ctx/%s%s" % (v, query))
            assert json.loads(r.body) == {"seen": None, "after": v}
        assert json.loads(c.request("GET", "/ctx-sync").body) == {"seen": None}


def test_a_task_factory_that_starts_tasks_at_once(eager_tasks):
    # the view's Task may step before the server ran the view's first step:
    # it waits a turn, and the view still runs once, inside its Task
    with Conn(eager_tasks.port) as c:
        for _ in range(2):
            assert json.loads(c.request("GET", "/task/tools").body) == {
                "task": True, "same": True, "child": "child"}
            for q in ("", "?wait=1"):
                r = c.request("GET", "/task/maybe" + q)
                assert json.loads(r.body) == {"task": True, "name": "eager"}


def test_a_loop_with_its_own_create_task_makes_the_tasks(custom_loop):
    with Conn(custom_loop.port) as c:
        for q in ("", "?wait=1", ""):
            r = c.request("GET", "/task/maybe" + q)
            assert json.loads(r.body) == {"task": True, "name": "custom-loop"}


def test_a_loop_with_its_own_create_future_makes_the_futures(custom_loop):
    # the handler asks for the second message before the loop can read it
    # (it answers the first and awaits again in one step): that wait is a
    # future, which must come from the loop's create_future
    with WSClient(custom_loop.port, "/futures").connect() as ws:
        ws.send_frame(OP_TEXT, b"1")
        before = int(ws.recv_message()[1])
        ws.send_frame(OP_TEXT, b"2")
        after = int(ws.recv_message()[1])
        assert after > before, "the handler's wait was not the loop's future"


STDLIB_EAGER = [
    ("/task/tools", {"task": True, "same": True, "child": "child"}),
    ("/task/child", {"eager": True, "own": True, "back": True}),
    ("/task/maybe", {"task": True}),
    ("/task/maybe?wait=1", {"task": True}),
    ("/ctx/a", {"seen": None, "after": "a"}),
    ("/ctx/b?wait=1", {"seen": None, "after": "b"}),
]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+")
def test_asyncios_eager_task_factory(stdlib_eager_tasks):
    # asyncio's C Task steps a view's Task inside create_task, swapping
    # itself in as the loop's current task, before the server runs the
    # view's first step as that Task: one by one, then pipelined
    def check(r, path, want):   # /task/maybe also gives the factory's name
        got = json.loads(r.body)
        assert (r.status, {k: got.get(k) for k in want}) == (200, want), path

    with Conn(stdlib_eager_tasks.port) as c:
        for _ in range(2):
            for path, want in STDLIB_EAGER:
                check(c.request("GET", path), path, want)
        r = c.request("GET", "/task/timeout")
        assert (r.status, r.body) == (200, b"timed out")
        for path in ("/task/raise", "/task/raise?wait=1"):
            assert c.request("GET", path).status == 500
        c.send(b"".join(build_request("GET", path) for path, _ in STDLIB_EAGER * 2))
        for path, want in STDLIB_EAGER * 2:
            check(c.read_final(), path, want)


def _eager_app(request):
    if request.param == "stdlib_eager_tasks" and sys.version_info < (3, 12):
        pytest.skip("asyncio.eager_task_factory is 3.12+")
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["eager_tasks", "stdlib_eager_tasks", "basic"])
def factory_app(request):
    return _eager_app(request)


@pytest.mark.parametrize("kind,body", [("sync", b"abc"), ("async", b"ab")])
def test_a_streamed_answer_under_a_task_factory_that_starts_tasks_at_once(
        factory_app, kind, body):
    """The stream's Task stepped inside create_task found the connection not
    set up for it yet, ended at once, and the answer (and every one behind
    it) never came."""
    with Conn(factory_app.port) as c:
        c.send(build_request("GET", "/task/stream/" + kind) + build_request("GET", "/ctx-sync"))
        r = c.read_final()
        assert (r.status, r.body) == (200, body)
        assert json.loads(c.read_final().body) == {"seen": None}


def test_a_websocket_under_a_task_factory_that_starts_tasks_at_once(factory_app):
    """The handler's first frame went out before the 101."""
    with WSClient(factory_app.port, "/task/ws").connect() as ws:
        assert ws.recv_message() == (OP_TEXT, b"first step")
        ws.send_frame(OP_TEXT, b"echo")
        assert ws.recv_message() == (OP_TEXT, b"echo")
