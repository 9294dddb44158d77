"""on_response hooks over the answers made from exceptions (test_hooks.py).

A response hook stamps X-Decorated (the status) on every answer; another
one raises when the request has X-Post-Raise, an on_request hook when it has
X-Pre-Raise (the header's value goes into the error message), and answers 403
itself when it has X-Deny.  The views fail in each way the engine turns into
an answer.  make_app(async_hooks=True) is the
same app with async hooks, in debug mode (apps/hooks_async.py).

    FULMEN_HOOKS_GRACE   (optional) graceful_timeout of run(), in seconds
"""
import asyncio
import atexit
import os
import shutil
import sys
import tempfile

from fulmen import Application, BadRequest, FileResponse

# files for add_static and FileResponse: a small one (answered in C when
# there is no hook) and one over the size read whole (streamed)
FILES = tempfile.mkdtemp(prefix="fulmen-hooks-")
atexit.register(shutil.rmtree, FILES, True)
with open(os.path.join(FILES, "small.txt"), "w") as _f:
    _f.write("small file\n")
with open(os.path.join(FILES, "big.bin"), "wb") as _f:
    _f.write(bytes(range(256)) * 1024)


class Teapot(Exception):
    pass


def make_app(async_hooks=False):
    app = Application(debug=async_hooks)
    r = app.router

    def pre(request):
        if "X-Pre-Raise" in request.headers:
            raise RuntimeError("pre-hook failed: " + request.headers["X-Pre-Raise"])
        if "X-Deny" in request.headers:   # refuses a request, a WebSocket's too
            return request.Response(code=403, text="denied: " + request.headers["X-Deny"])
        if "X-Pre-Wrong" in request.headers:
            return True                    # no Response: the hook's error, not the view's
        request.seen_by_hook = request.headers.get("X-User", "-")

    def decorate(request, response):
        response.headers["X-Decorated"] = "%d" % response.code

    def post_raise(request, response):
        if "X-Post-Raise" in request.headers:
            raise RuntimeError("post-hook failed: " + request.headers["X-Post-Raise"])

    def post_wrong(request, response):
        if "X-Post-Wrong" in request.headers:
            return request.headers["X-Post-Wrong"] == "yes"   # a bool: no Response

    if async_hooks:
        def asynced(fn):
            async def hook(*args):
                await asyncio.sleep(0)
                return fn(*args)
            return hook
        pre, decorate, post_raise = asynced(pre), asynced(decorate), asynced(post_raise)
        post_wrong = asynced(post_wrong)

    app.on_request(pre)
    app.on_response(decorate)
    app.on_response(post_raise)
    app.on_response(post_wrong)
    app.add_error_handler(Teapot, lambda request, exc: request.Response(
        code=418, text="teapot: %s" % exc))

    def ok(request):
        return request.Response(text="ok")

    # ?exc=SystemExit or KeyboardInterrupt: no Exception, still the app's error
    def raised(request):
        return {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}.get(
            request.query.get("exc"), RuntimeError)

    def fail(request):
        raise raised(request)("sync-view-marker-3b88")

    async def afail(request):
        await asyncio.sleep(0)
        raise raised(request)("async-view-marker-d41f")

    def coro_view(request):
        # a sync view that returns a coroutine, as Japronto's ran them
        async def answer():
            await asyncio.sleep(0)
            return request.Response(text="from a coroutine")
        return answer()

    def teapot(request):
        raise Teapot("sync")

    async def ateapot(request):
        await asyncio.sleep(0)
        raise Teapot("async")

    def bad(request):
        raise BadRequest("explicitly bad")

    def echo_json(request):
        return request.Response(json={"json": request.json})

    def no_response(request):
        return None

    async def stream_len(request):
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
        return request.Response(text="%d" % n)

    async def slow(request):
        sys.stderr.write("slow view started\n")
        sys.stderr.flush()
        await asyncio.get_running_loop().create_future()     # until cancelled
        return request.Response(text="never")

    async def task_name(request):
        await asyncio.sleep(0)
        return request.Response(text=asyncio.current_task().get_name())

    async def ws_echo(ws):
        await ws.send(await ws.receive())
        await ws.send("hook saw " + ws.request.seen_by_hook)

    r.add_route("/ok", ok)
    r.add_route("/coro", coro_view)
    r.add_route("/fail", fail)
    r.add_route("/afail", afail)
    r.add_route("/teapot", teapot)
    r.add_route("/ateapot", ateapot)
    r.add_route("/bad", bad)
    r.add_route("/json", echo_json, method="POST")
    r.add_route("/none", no_response)
    r.add_route("/upload", stream_len, method="POST", stream=True, max_body_size=100)
    r.add_route("/slow", slow)
    r.add_route("/task-name", task_name)
    r.add_websocket("/ws", ws_echo)
    r.add_static("/static", FILES)

    def file_view(request):
        return FileResponse(os.path.join(FILES, request.match_dict["name"]),
                            headers={"X-View": "1", "etag": '"the-apps-own"'})

    r.add_route("/file/{name}", file_view)
    return app


app = make_app()


def main(app):
    app.run(host="127.0.0.1", port=0,
            graceful_timeout=float(os.environ.get("FULMEN_HOOKS_GRACE", "30")))


if __name__ == "__main__":
    main(app)
