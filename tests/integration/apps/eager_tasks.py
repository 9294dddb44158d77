"""An app whose loop starts each task's coroutine at once, when the task is
created (as Python 3.12's asyncio.eager_task_factory does): a view's Task
may then step before the server has run the view's first step itself."""
import asyncio
import types

from fulmen import Application
from task_views import add_task_routes


@types.coroutine
def _rest(coro, first):
    # the rest of a coroutine whose first step already ran: what the Task
    # sends or throws in (a future's exception, a cancel) goes on to it
    while True:
        try:
            value = yield first
        except BaseException as e:
            step, arg = coro.throw, e
        else:
            step, arg = coro.send, value
        try:
            first = step(arg)
        except StopIteration as e:
            return e.value


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


app = Application()
app.on_startup(lambda app: app.loop.set_task_factory(eager_factory))
add_task_routes(app.router)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
