"""socketify.py (uWebSockets core, one process) in its own idiom: uWS's router
with :name parameters, req.get_query / req.get_header, res.send / res.end(dict).
Usage: socketify_app.py PORT SCENARIO

`async` is an async def handler; `async-sleep` awaits asyncio.sleep(0) (after
reading everything it needs from req, which uWS frees once the handler yields).
`ws-echo` is uWS's own WebSocket server at /ws (app.ws), compression off.
"""
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import static_asset  # noqa: E402
from routes200 import OTHER_BODY, TARGET, answer, patterns, to_colon  # noqa: E402

from socketify import App, AppOptions, CompressOptions  # noqa: E402

TEXT = b"text/plain; charset=utf-8"


def hello(res, req):
    res.send("Hello world!", content_type=TEXT)


async def hello_async(res, req):
    res.send("Hello world!", content_type=TEXT)


async def hello_sleep(res, req):
    await asyncio.sleep(0)
    res.send("Hello world!", content_type=TEXT)


def hello_json(res, req):
    res.end({"message": "Hello, World!"})          # dict -> JSON + content-type


READING = set()


def read_body(res, done):
    """Collect the body with res.on_data, then call done(res, body).

    Not `await res.get_data()`: with socketify 0.0.31 that died under wrk
    load, and so does on_data when a body spans chunks unless something
    holds the response between them ("Fatal Python error: b_from_handle:
    ffi.from_handle() ... points to garbage" in uws_generic_on_data_handler):
    READING holds it."""
    chunks = []

    def on_data(res, chunk, is_end):
        if chunk:
            chunks.append(chunk)
        if is_end:
            READING.discard(res)
            done(res, b"".join(chunks))

    READING.add(res)
    res.on_data(on_data)


def post_json(res, req):
    read_body(res, lambda res, body: res.end(json.loads(body)))   # dict -> JSON + content-type


def upload(res, req):
    read_body(res, lambda res, body: res.send(str(len(body)), content_type=TEXT))


def target(res, req):
    res.send(answer(req.get_parameter(0), req.get_parameter(1), req.get_query("page"),
                    req.get_header("x-token")), content_type=TEXT)


def other(res, req):
    res.send(OTHER_BODY, content_type=TEXT)


def ws_message(ws, message, opcode):
    """ws-echo: every message goes back as it came (same opcode)."""
    ws.send(message, opcode)


def main():
    port = int(sys.argv[1])
    scenario = sys.argv[2] if len(sys.argv) > 2 else "hello"
    tls = os.environ.get("BENCH_TLS_CERT")   # scenario tls: run.py names them
    app = App(AppOptions(cert_file_name=tls, key_file_name=os.environ["BENCH_TLS_KEY"])
              if tls else None)
    if scenario == "params":
        for p in patterns():
            app.get(to_colon(p), target if p == TARGET else other)
    elif scenario == "post-json":
        app.post("/", post_json)
    elif scenario == "upload":
        app.post("/", upload)
    elif scenario == "static":
        app.static("/static", static_asset.directory())
    elif scenario == "ws-echo":
        app.ws("/ws", {"compression": CompressOptions.DISABLED, "message": ws_message,
                       "max_payload_length": 16 * 1024 * 1024, "idle_timeout": 120})
    else:
        app.get("/", {"hello": hello, "json": hello_json, "async": hello_async,
                      "async-sleep": hello_sleep, "tls": hello}[scenario])
    app.listen(port, lambda config: None)
    app.run()


if __name__ == "__main__":
    main()
