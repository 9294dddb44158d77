"""Synchronous and asynchronous views.

A plain ``def`` view runs straight away on the event loop and must not block.
An ``async def`` view may ``await`` anything asyncio can (timers, database
drivers, HTTP clients); while it waits, the server goes on serving other
requests, and pipelined responses still leave in request order.

    python examples/async.py [--host H] [--port P]

    curl localhost:8080/sync
    curl localhost:8080/async
    curl 'localhost:8080/sleep?seconds=0.2'
"""
import argparse
import asyncio
import time

from fulmen import Application


def synchronous(request):
    # Fine for work that takes microseconds; never call time.sleep() here.
    return request.Response(text="I am synchronous!")


async def asynchronous(request):
    # Awaiting gives the loop back to other connections in the meantime.
    await asyncio.sleep(0.01)
    return request.Response(text="I am asynchronous!")


async def sleep(request):
    seconds = min(float(request.query.get("seconds", "0.1")), 5.0)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return request.Response(json={"slept": round(time.monotonic() - started, 3)})


async def gather(request):
    # Run several awaitables at once: three 0.1 s sleeps take about 0.1 s.
    started = time.monotonic()
    await asyncio.gather(*(asyncio.sleep(0.1) for _ in range(3)))
    return request.Response(json={"elapsed": round(time.monotonic() - started, 3)})


app = Application()
app.router.add_route("/sync", synchronous)
app.router.add_route("/async", asynchronous)
app.router.add_route("/sleep", sleep)
app.router.add_route("/gather", gather)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
