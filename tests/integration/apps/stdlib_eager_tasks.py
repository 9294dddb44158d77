"""An app whose loop uses asyncio's own eager task factory (3.12+): every
Task, a view's included, takes its first step inside create_task, as asyncio
runs it (its C Task swaps itself in as the loop's current task)."""
import asyncio

from fulmen import Application
from task_views import add_task_routes


def factory(loop, coro, eager_start=None, **kwargs):
    # uvloop 0.23 on 3.13 passes eager_start=None, which asyncio's factory
    # takes only from 3.13.3 on (and None would then mean not eager)
    return asyncio.eager_task_factory(loop, coro, **kwargs)


app = Application()
app.on_startup(lambda app: app.loop.set_task_factory(factory))
add_task_routes(app.router)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
