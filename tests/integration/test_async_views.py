"""An `async def` view that cannot suspend (no await, async for or async
with in its body) is run as a plain call (router._never_suspends): the same
results and exceptions as the coroutine, and views that can suspend are left
alone."""
import asyncio
import functools

import pytest

from fulmen.router import _never_suspends

from .rawhttp import Conn


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


def sync_view(r):
    return r


class AsyncCallable:
    async def __call__(self, r):
        return r


@pytest.mark.parametrize("view", [
    awaits, awaits_late, async_with, async_for, await_in_comprehension, async_generator,
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
