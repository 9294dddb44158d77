"""granian's own RSGI interface (its fastest Python path), one worker, one
runtime thread.  As a script it execs the granian CLI on this module, with the
scenario in $BENCH_SCENARIO.  Usage: granian_rsgi.py PORT SCENARIO

params: the same dict-then-regex-list router as asgi_app.py.
"""
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import static_asset  # noqa: E402
from routes200 import (OTHER_BODY, TARGET, answer, is_static, patterns,  # noqa: E402
                       split_query, to_regex)

TEXT = [("content-type", "text/plain; charset=utf-8")]
JSON = [("content-type", "application/json")]


async def hello(scope, proto):
    proto.response_str(200, TEXT, "Hello world!")


async def hello_sleep(scope, proto):
    await asyncio.sleep(0)
    proto.response_str(200, TEXT, "Hello world!")


async def hello_json(scope, proto):
    proto.response_bytes(200, JSON, json.dumps({"message": "Hello, World!"}).encode())


async def post_json(scope, proto):
    data = json.loads(await proto())
    proto.response_bytes(200, JSON, json.dumps(data).encode())


STATIC = {}
DYNAMIC = []


def _target(scope, params):
    page = split_query(scope.query_string).get("page")
    return answer(params["id"], params["slug"], page, scope.headers.get("x-token"))


def _other(scope, params):
    return OTHER_BODY


for _p in patterns():
    _view = _target if _p == TARGET else _other
    if is_static(_p):
        STATIC[_p] = _view
    else:
        DYNAMIC.append((to_regex(_p).match, _view))


async def params(scope, proto):
    path = scope.path
    view = STATIC.get(path)
    args = None
    if view is None:
        for match, v in DYNAMIC:
            m = match(path)
            if m is not None:
                view, args = v, m.groupdict()
                break
    if view is None:
        proto.response_str(404, TEXT, "Not Found")
        return
    proto.response_str(200, TEXT, view(scope, args))


JS = [("content-type", "text/javascript; charset=utf-8")]


async def static(scope, proto):
    """A hand-written file handler; granian sends the file (response_file)."""
    name = scope.path[len("/static/"):]
    path = os.path.join(static_asset.DIR, name)
    if not scope.path.startswith("/static/") or "/" in name or name.startswith(".") \
            or not os.path.isfile(path):
        proto.response_str(404, TEXT, "Not Found")
        return
    proto.response_file(200, JS, path)


async def upload(scope, proto):
    proto.response_str(200, TEXT, str(len(await proto())))


async def ws_echo(scope, proto):
    """ws-echo: every message at /ws goes back as it came."""
    if scope.proto != "ws" or scope.path != "/ws":
        if scope.proto == "http":
            proto.response_str(404, TEXT, "Not Found")
        else:
            proto.close(403)
        return
    ws = await proto.accept()
    while True:
        m = await ws.receive()
        if m.kind == 1:
            await ws.send_bytes(m.data)
        elif m.kind == 2:
            await ws.send_str(m.data)
        else:
            break
    proto.close(1000)


APPS = {"hello": hello, "json": hello_json, "params": params, "post-json": post_json,
        "async": hello, "async-sleep": hello_sleep, "static": static, "upload": upload,
        "ws-echo": ws_echo, "tls": hello}
app = APPS[os.environ.get("BENCH_SCENARIO", "hello")]

if __name__ == "__main__":
    os.environ["BENCH_SCENARIO"] = sys.argv[2] if len(sys.argv) > 2 else "hello"
    static_asset.directory()
    os.execvp(sys.executable, [sys.executable, "-m", "granian", "--interface", "rsgi",
                               "--host", "127.0.0.1", "--port", sys.argv[1], "--workers", "1",
                               "--runtime-threads", "1", "--http", "1",
                               *([] if sys.argv[2:3] == ["ws-echo"] else ["--no-ws"]),
                               "--loop", "uvloop", "--log-level", "warning",
                               *(["--ssl-certificate", os.environ["BENCH_TLS_CERT"],
                                  "--ssl-keyfile", os.environ["BENCH_TLS_KEY"]]
                                 if os.environ.get("BENCH_TLS_CERT") else []),
                               "--working-dir", HERE, "granian_rsgi:app"])
