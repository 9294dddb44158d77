"""An app on an asyncio loop whose create_task is its own: coroutine views'
Tasks must still come from it (the server makes them directly only for a
stock create_task)."""
import asyncio

from fulmen import Application


class Loop(asyncio.SelectorEventLoop):
    def create_task(self, coro, *, name=None, context=None):
        return super().create_task(coro, name="custom-loop", context=context)


async def maybe(request):
    if request.query.get("wait"):
        await asyncio.sleep(0)
    task = asyncio.current_task()
    return request.Response(json={"task": task is not None,
                                  "name": task and task.get_name()})


app = Application(loop=Loop())
app.router.add_route("/task/maybe", maybe)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
