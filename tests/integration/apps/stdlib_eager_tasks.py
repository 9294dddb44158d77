"""An app whose loop uses asyncio's own eager task factory (3.12+): every
Task, a view's included, takes its first step inside create_task, as asyncio
runs it (its C Task swaps itself in as the loop's current task)."""
import asyncio
import contextvars

from fulmen import Application


def factory(loop, coro, eager_start=None, **kwargs):
    # uvloop 0.23 on 3.13 passes eager_start=None, which asyncio's factory
    # takes only from 3.13.3 on (and None would then mean not eager)
    return asyncio.eager_task_factory(loop, coro, **kwargs)


async def tools(request):
    first = asyncio.current_task()
    async with asyncio.timeout(5):
        await asyncio.sleep(0)
    async with asyncio.TaskGroup() as tg:
        child = tg.create_task(asyncio.sleep(0, "child"))
    return request.Response(json={"task": first is not None,
                                  "same": first is asyncio.current_task(),
                                  "child": child.result()})


async def timeout(request):
    try:
        async with asyncio.timeout(0.01):
            await asyncio.get_running_loop().create_future()
    except TimeoutError:
        return request.Response(text="timed out")
    return request.Response(text="not reached")


async def child(request):
    # a child that does not suspend has finished when create_task returns,
    # and ran as its own task; the view is its task again afterwards
    me = asyncio.current_task()

    async def step():
        return asyncio.current_task() is not me

    t = asyncio.create_task(step())
    return request.Response(json={"eager": t.done(), "own": t.done() and t.result(),
                                  "back": asyncio.current_task() is me})


async def maybe(request):
    if request.query.get("wait"):
        await asyncio.sleep(0)
    return request.Response(json={"task": asyncio.current_task() is not None})


CTX = contextvars.ContextVar("ctx")


async def ctx(request):
    seen = CTX.get(None)
    CTX.set(request.match_dict["v"])
    if request.query.get("wait"):
        await asyncio.sleep(0)
    return request.Response(json={"seen": seen, "after": CTX.get(None)})


async def boom(request):
    if request.query.get("wait"):
        await asyncio.sleep(0)
    raise RuntimeError("boom")


app = Application()
app.on_startup(lambda app: app.loop.set_task_factory(factory))
app.router.add_route("/task/tools", tools)
app.router.add_route("/task/timeout", timeout)
app.router.add_route("/task/child", child)
app.router.add_route("/task/maybe", maybe)
app.router.add_route("/ctx/{v}", ctx)
app.router.add_route("/boom", boom)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
