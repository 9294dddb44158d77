"""Server-Sent Events: a response whose body is an async generator.

Each item the generator yields is sent as soon as it is produced (HTTP/1.1
chunked framing), so the browser's EventSource sees events live.

    python examples/sse.py [--host H] [--port P]

    curl -N 'localhost:8080/events?count=5&interval=0.5'
    open http://localhost:8080/ in a browser
"""
import argparse
import asyncio
import json
import time

from fulmen import Application

PAGE = """<!doctype html>
<meta charset="utf-8"><title>SSE</title>
<ul id="log"></ul>
<script>
  const es = new EventSource("/events?count=10&interval=1");
  es.addEventListener("tick", (e) => {
    const li = document.createElement("li");
    li.textContent = e.data;
    document.getElementById("log").appendChild(li);
  });
  es.addEventListener("done", () => es.close());
</script>
"""


def event(data, *, name=None, id=None):
    """One event in the text/event-stream format."""
    lines = []
    if id is not None:
        lines.append("id: %s" % id)
    if name is not None:
        lines.append("event: %s" % name)
    lines.extend("data: " + line for line in data.splitlines() or [""])
    return "\n".join(lines) + "\n\n"


async def ticks(count, interval):
    # Items may be str (sent as UTF-8) or bytes.
    yield ": stream opened\n\n"                     # a comment line
    for i in range(1, count + 1):
        await asyncio.sleep(interval)
        yield event(json.dumps({"n": i, "time": time.time()}), name="tick", id=i)
    yield event("bye", name="done")


def index(request):
    return request.Response(text=PAGE, mime_type="text/html")


def events(request):
    count = min(int(request.query.get("count", "5")), 1000)
    interval = min(float(request.query.get("interval", "1")), 60.0)
    return request.Response(
        stream=ticks(count, interval),
        mime_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


app = Application()
app.router.add_route("/", index)
app.router.add_route("/events", events)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
