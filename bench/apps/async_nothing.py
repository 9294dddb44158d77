"""Scenario `async`: an async def view that awaits nothing, answering the same
text "Hello world!" as hello.py so the two compare directly
(target: async ≤ 1.15 × sync in server CPU µs/request).
Usage: async_nothing.py PORT"""
import sys

from fulmen import Application


async def hello(request):
    return request.Response(text="Hello world!")


app = Application()
app.router.add_route("/", hello)
app.run(host="127.0.0.1", port=int(sys.argv[1]))
