"""An app on an asyncio loop whose create_task is its own: coroutine views'
Tasks must still come from it (the server makes them directly only for a
stock create_task)."""
import asyncio

from fulmen import Application
from task_views import add_task_routes


class Loop(asyncio.SelectorEventLoop):
    def create_task(self, coro, *, name=None, context=None):
        return super().create_task(coro, name="custom-loop", context=context)


app = Application(loop=Loop())
add_task_routes(app.router)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
