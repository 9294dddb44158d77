"""Raw ASGI apps (no framework) for every scenario, served by uvicorn
(uvicorn_run.py) and by granian's ASGI interface (granian_asgi.py).

The scenario comes from $BENCH_SCENARIO (hello, json, params, post-json,
async, async-sleep, static, upload, ws-echo); `app` is the ASGI callable for it.  ASGI apps are always
coroutines, so `async` is the same code as `hello`, and `async-sleep` adds one
real suspension.

params: the router a hand-written ASGI micro-app typically has - static paths
in a dict, then the parameterised routes as compiled regexes tried in
registration order (as Starlette's router does).  The requested route is the
81st of the 161 regexes.
"""
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import static_asset  # noqa: E402
from routes200 import (OTHER_BODY, TARGET, answer, is_static, patterns,  # noqa: E402
                       split_query, to_regex)

SCENARIO = os.environ.get("BENCH_SCENARIO", "hello")

TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
JSON = [(b"content-type", b"application/json")]


def start(headers, body):
    return {"type": "http.response.start", "status": 200,
            "headers": headers + [(b"content-length", str(len(body)).encode())]}


HELLO_BODY = b"Hello world!"
HELLO_START = start(TEXT, HELLO_BODY)
HELLO_MSG = {"type": "http.response.body", "body": HELLO_BODY}


async def hello(scope, receive, send):
    await send(HELLO_START)
    await send(HELLO_MSG)


async def hello_sleep(scope, receive, send):
    await asyncio.sleep(0)
    await send(HELLO_START)
    await send(HELLO_MSG)


async def hello_json(scope, receive, send):
    body = json.dumps({"message": "Hello, World!"}).encode()
    await send(start(JSON, body))
    await send({"type": "http.response.body", "body": body})


async def read_body(receive):
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


async def post_json(scope, receive, send):
    data = json.loads(await read_body(receive))
    body = json.dumps(data).encode()
    await send(start(JSON, body))
    await send({"type": "http.response.body", "body": body})


STATIC = {}
DYNAMIC = []


def _target(scope, params):
    token = None
    for k, v in scope["headers"]:
        if k == b"x-token":
            token = v.decode("latin-1")
            break
    page = split_query(scope["query_string"].decode("latin-1")).get("page")
    return answer(params["id"], params["slug"], page, token)


def _other(scope, params):
    return OTHER_BODY


for _p in patterns():
    _view = _target if _p == TARGET else _other
    if is_static(_p):
        STATIC[_p] = _view
    else:
        DYNAMIC.append((to_regex(_p).match, _view))

NOT_FOUND = b"Not Found"


async def params(scope, receive, send):
    path = scope["path"]
    view = STATIC.get(path)
    args = None
    if view is None:
        for match, v in DYNAMIC:
            m = match(path)
            if m is not None:
                view, args = v, m.groupdict()
                break
    if view is None:
        await not_found(send)
        return
    body = view(scope, args).encode()
    await send(start(TEXT, body))
    await send({"type": "http.response.body", "body": body})


async def not_found(send):
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-length", b"9")]})
    await send({"type": "http.response.body", "body": NOT_FOUND})


JS = [(b"content-type", b"text/javascript; charset=utf-8")]
STATIC_DIR = static_asset.directory() if SCENARIO == "static" else None


async def static(scope, receive, send):
    """A hand-written file handler: one directory level, no ETag, ranges
    or conditional requests (granian's ASGI run serves the directory
    itself, in Rust, before this is reached)."""
    name = scope["path"][len("/static/"):]
    path = os.path.join(STATIC_DIR, name)
    if not scope["path"].startswith("/static/") or "/" in name or name.startswith(".") \
            or not os.path.isfile(path):
        await not_found(send)
        return
    with open(path, "rb") as f:
        body = f.read()
    await send(start(JS, body))
    await send({"type": "http.response.body", "body": body})


async def upload(scope, receive, send):
    body = b"%d" % len(await read_body(receive))
    await send(start(TEXT, body))
    await send({"type": "http.response.body", "body": body})


async def ws_echo(scope, receive, send):
    """ws-echo: a WebSocket at /ws that sends every message back as it came
    (bytes as bytes, text as text); anything else is a 404."""
    if scope["type"] != "websocket" or scope["path"] != "/ws":
        if scope["type"] == "http":
            await not_found(send)
        return
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        m = await receive()
        if m["type"] != "websocket.receive":
            return
        if m.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": m["bytes"]})
        else:
            await send({"type": "websocket.send", "text": m["text"]})


app = {"hello": hello, "json": hello_json, "params": params, "post-json": post_json,
       "async": hello, "async-sleep": hello_sleep, "static": static, "upload": upload,
       "ws-echo": ws_echo, "tls": hello}[SCENARIO]
