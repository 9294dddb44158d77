"""Scenario `async-sleep`: an async def view that really suspends once
(await asyncio.sleep(0)) before answering text "Hello world!".
Usage: async_sleep.py PORT"""
import asyncio
import sys

from fulmen import Application


async def hello(request):
    await asyncio.sleep(0)
    return request.Response(text="Hello world!")


app = Application()
app.router.add_route("/", hello)
app.run(host="127.0.0.1", port=int(sys.argv[1]))
