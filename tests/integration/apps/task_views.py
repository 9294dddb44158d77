"""Async views that check how a view runs in its asyncio Task, shared by the
apps that run them on differently made Tasks (basic.py: the server's own;
eager_tasks.py, stdlib_eager_tasks.py: task factories; custom_loop.py: a
loop's own create_task).  add_task_routes(router) adds them all."""
import asyncio
import contextvars


async def task_tools(request):
    # asyncio.timeout and TaskGroup need the view to run inside a Task from
    # its first line on, before it suspends for the first time
    first = asyncio.current_task()
    async with asyncio.timeout(5):
        await asyncio.sleep(0)
    async with asyncio.TaskGroup() as tg:
        child = tg.create_task(asyncio.sleep(0, "child"))
    return request.Response(json={"task": first is not None,
                                  "same": first is asyncio.current_task(),
                                  "child": child.result()})


async def task_timeout(request):
    # the timeout cancels the view's Task, which is waiting on a future
    # nothing will ever set
    try:
        async with asyncio.timeout(0.01):
            await asyncio.get_running_loop().create_future()
    except TimeoutError:
        return request.Response(text="timed out")
    return request.Response(text="not reached")


async def task_maybe(request):
    # can suspend, but does not on this request: it still has a Task
    if request.query.get("wait"):
        await asyncio.sleep(0)
    task = asyncio.current_task()
    return request.Response(json={"task": task is not None,
                                  "name": task and task.get_name()})


async def task_raise(request):
    # can suspend; raises in its first step unless ?wait
    if request.query.get("wait"):
        await asyncio.sleep(0)
    raise ValueError("task-raise-marker-%s" % request.query.get("n", "-"))


async def task_child(request):
    # under an eager task factory, a child that does not suspend has finished
    # when create_task returns, and ran as its own task; the view is its
    # task again afterwards
    me = asyncio.current_task()

    async def step():
        return asyncio.current_task() is not me

    t = asyncio.create_task(step())
    return request.Response(json={"eager": t.done(), "own": t.done() and t.result(),
                                  "back": asyncio.current_task() is me})


CTX = contextvars.ContextVar("fulmen_test_ctx")


async def ctx_async(request):
    # each async view runs in its own copy of the context: a value one
    # request sets is never seen by another
    seen = CTX.get(None)
    CTX.set(request.match_dict["v"])
    if request.query.get("wait"):
        await asyncio.sleep(0)
    return request.Response(json={"seen": seen, "after": CTX.get(None)})


def ctx_sync(request):
    return request.Response(json={"seen": CTX.get(None)})


async def _astream():
    for part in (b"a", b"b"):
        await asyncio.sleep(0)
        yield part


def task_stream(request):
    # a stream's Task, made by the loop's factory: a factory that runs its
    # first step at once runs it before the connection is set up for it
    if request.match_dict["kind"] == "sync":
        return request.Response(stream=iter([b"a", b"b", b"c"]))
    return request.Response(stream=_astream())


async def task_ws(ws):
    await ws.send("first step")     # before the handler first waits
    async for message in ws:
        await ws.send(message)


def add_task_routes(r):
    r.add_route("/task/stream/{kind}", task_stream)
    r.add_websocket("/task/ws", task_ws, compression=False)
    r.add_route("/task/tools", task_tools)
    r.add_route("/task/timeout", task_timeout)
    r.add_route("/task/maybe", task_maybe)
    r.add_route("/task/raise", task_raise)
    r.add_route("/task/child", task_child)
    r.add_route("/ctx/{v}", ctx_async)
    r.add_route("/ctx-sync", ctx_sync)
