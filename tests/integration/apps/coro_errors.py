"""A StopIteration escaping an async view: the error handler for
RuntimeError sees the RuntimeError its coroutine raises, whether the view
ran as a coroutine or as a plain call (router._never_suspends)."""
import asyncio

from fulmen import Application


async def stop_now(request):
    # cannot suspend: run as a plain call
    raise StopIteration("now")


async def stop_later(request):
    if request.query.get("wait"):
        await asyncio.sleep(0)
    raise StopIteration("later")


def stop_sync(request):
    # a sync view's StopIteration stays what it is
    raise StopIteration("sync")


def on_runtime_error(request, exc):
    return request.Response(code=418, text="%s: %s (from %r)" % (
        type(exc).__name__, exc, exc.__cause__))


def on_stop_iteration(request, exc):
    return request.Response(code=419, text="%s: %s" % (type(exc).__name__, exc))


app = Application()
app.add_error_handler(RuntimeError, on_runtime_error)
app.add_error_handler(StopIteration, on_stop_iteration)
app.router.add_route("/stop/now", stop_now)
app.router.add_route("/stop/later", stop_later)
app.router.add_route("/stop/sync", stop_sync)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
