"""App code that re-enters the engine while it writes a connection's answers
(test_errors.py): a stderr write, a done-callback or a header value's str()
that ends a view parked on the same connection (its 503 is then ready at
once), or sends on a WebSocket whose client reads nothing."""
import asyncio
import sys

from fulmen import Application, Response

parked_tasks = {}
sockets = {}


def close_parked(tag):
    task = parked_tasks.pop(tag, None)
    if task is not None:
        task.get_coro().close()
        # (the Task, its coroutine closed under it, stays pending for good)
        task._log_destroy_pending = False


class Stderr:
    """sys.stderr, which ends the parked view "err" when the engine logs an
    answer that cannot be written."""
    def __init__(self, real):
        self.real = real

    def write(self, s):
        if "could not be written" in s or "invalid name" in s:
            close_parked("err")
        return self.real.write(s)

    def __getattr__(self, name):
        return getattr(self.real, name)


async def parked(request):
    parked_tasks[request.match_dict["tag"]] = asyncio.current_task()
    await asyncio.sleep(30)
    return request.Response(text="B")


async def bad_header(request):
    await asyncio.sleep(0.05)           # "err" is parked by then
    return request.Response(text="A", headers={"X-A": "v\r\nInjected: 1"})


async def _three_of_ten():
    yield b"abc"
    await asyncio.sleep(0.2)            # "cut" is parked by then


def cut_stream(request):
    """A body 7 bytes short of its Content-Length, whose request's
    done-callback ends the view parked behind it."""
    request.add_done_callback(lambda r: close_parked("cut"))
    return Response(stream=_three_of_ten(), headers={"Content-Length": "10"})


async def closer(request):
    await asyncio.sleep(0.05)           # "closer" is parked by then
    request.add_done_callback(lambda r: close_parked("closer"))
    return request.Response(text="closing", headers={"Connection": "close"})


async def piled(ws):
    """Sends without awaiting to a client that reads nothing, until over 16
    MiB wait for it: the next send() cuts the connection."""
    transport = ws.request.transport
    chunk = b"x" * (1 << 20)
    while transport.get_write_buffer_size() <= (16 << 20):
        ws.send(chunk)
        await asyncio.sleep(0)
    sockets["piled"] = ws
    print("piled", file=sys.stderr, flush=True)
    try:
        await ws.receive()
    except Exception:
        pass


def send_piled(request):
    try:
        sockets.pop("piled").send(b"y")
        how = "sent"
    except Exception as e:
        how = "raised " + type(e).__name__
    return request.Response(text=how)


class SendsPiled:
    def __str__(self):
        try:
            sockets.pop("piled").send(b"y")
        except Exception:
            pass
        return "v"


def header_sends_piled(request):
    return request.Response(text="H", headers={"X-A": SendsPiled(), "X-B": "after"})


def hello(request):
    return request.Response(text="Hello")


sys.stderr = Stderr(sys.stderr)
app = Application()
r = app.router
r.add_route("/", hello)
r.add_route("/parked/{tag}", parked)
r.add_route("/bad-header", bad_header)
r.add_route("/cut-stream", cut_stream)
r.add_route("/closer", closer)
r.add_route("/send-piled", send_piled)
r.add_route("/header-sends-piled", header_sends_piled)
r.add_websocket("/piled", piled)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
