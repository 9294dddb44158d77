"""An app whose loop starts each task's coroutine at once, when the task is
created (as Python 3.12's asyncio.eager_task_factory does): a view's Task
may then step before the server has run the view's first step itself."""
import asyncio
import types

from fulmen import Application


@types.coroutine
def _rest(coro, first):
    # the rest of a coroutine whose first step already ran
    value = yield first
    while True:
        try:
            first = coro.send(value)
        except StopIteration as e:
            return e.value
        value = yield first


async def _continue(coro, first):
    # a coroutine for the Task: from 3.12 on, Task refuses a generator
    return await _rest(coro, first)


def eager_factory(loop, coro, context=None, **kwargs):
    # kwargs: uvloop on 3.13 also passes eager_start=None
    try:
        first = context.run(coro.send, None) if context else coro.send(None)
    except StopIteration as e:
        value = e.value

        async def done():
            return value
        return asyncio.Task(done(), loop=loop, context=context, name="eager")
    return asyncio.Task(_continue(coro, first), loop=loop, context=context, name="eager")


async def tools(request):
    first = asyncio.current_task()
    async with asyncio.timeout(5):
        await asyncio.sleep(0)
    return request.Response(json={"task": first is not None,
                                  "same": first is asyncio.current_task()})


async def maybe(request):
    if request.query.get("wait"):
        await asyncio.sleep(0)
    task = asyncio.current_task()
    # the factory's Task, named by it
    return request.Response(json={"task": task is not None,
                                  "name": task and task.get_name()})


app = Application()
app.on_startup(lambda app: app.loop.set_task_factory(eager_factory))
app.router.add_route("/task/tools", tools)
app.router.add_route("/task/maybe", maybe)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
