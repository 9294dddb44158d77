"""An app on an asyncio loop whose create_task and create_future are its
own: coroutine views' Tasks, and the futures the server awaits with, must
still come from it (the server makes them directly only for a stock
create_task or create_future)."""
import asyncio

from fulmen import Application
from task_views import add_task_routes


class Loop(asyncio.SelectorEventLoop):
    futures = 0

    def create_task(self, coro, *, name=None, context=None):
        return super().create_task(coro, name="custom-loop", context=context)

    def create_future(self):
        Loop.futures += 1
        return super().create_future()


async def futures(ws):
    """Answers each message with how many futures the loop has made."""
    async for _ in ws:
        await ws.send(str(Loop.futures))


app = Application(loop=Loop())
add_task_routes(app.router)
app.router.add_websocket("/futures", futures)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
