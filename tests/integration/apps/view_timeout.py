"""Application(response_timeout=0.5): coroutine views that run longer are
cancelled and answered 503 (test_view_timeout.py)."""
import asyncio
import sys

from fulmen import Application

app = Application(response_timeout=0.5)


async def hang(request):
    # awaits what never comes (an upstream with no timeout, say)
    await asyncio.Event().wait()


async def hang_logged(request):
    print("hang-logged started", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        print("hang-logged cancelled", file=sys.stderr, flush=True)
        raise


async def catch(request):
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        return request.Response(text="caught")


async def quick(request):
    await asyncio.sleep(0)
    return request.Response(text="quick")


def sync(request):
    return request.Response(text="sync")


async def upload(request):
    # stream=True: reads the body as it comes, for as long as it takes
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return request.Response(text=str(n))


async def stream(request):
    async def chunks():
        yield b"a"
        await asyncio.sleep(0)
        yield b"b"
    return request.Response(stream=chunks())


r = app.router
r.add_route("/hang", hang)
r.add_route("/hang-logged", hang_logged)
r.add_route("/catch", catch)
r.add_route("/quick", quick)
r.add_route("/sync", sync)
r.add_route("/upload", upload, method="POST", stream=True)
r.add_route("/stream", stream)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
