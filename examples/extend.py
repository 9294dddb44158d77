"""Extending fulmen: request methods and properties, request/response hooks
(CORS, auth, timing), done callbacks, start-up and shutdown hooks.

    python examples/extend.py [--host H] [--port P]

    curl -H 'Host: api.example.com' -A 'curl' localhost:8080/
    curl -i localhost:8080/api/items                    # CORS and X-Response-Time headers
    curl -i -X OPTIONS localhost:8080/api/items         # CORS preflight, answered by a hook
    curl -i localhost:8080/private                      # 401
    curl -H 'Authorization: Bearer let-me-in' localhost:8080/private
    curl localhost:8080/stats
"""
import argparse
import asyncio
import sys
import time

from fulmen import Application

app = Application()
r = app.router

ALLOWED_ORIGIN = "*"
TOKEN = "let-me-in"


# ---- extend_request: methods and properties on every request ---------------

def host_startswith(request, prefix):
    """request.host_startswith('api.'): a method (takes the request first)."""
    return (request.hostname or "").startswith(prefix)


def reversed_agent(request):
    """request.reversed_agent: a property, computed on access."""
    return request.headers.get("User-Agent", "")[::-1]


def store(request):
    """request.store: the app-wide state made by the start-up hook."""
    return request.app.store


app.extend_request(host_startswith)
app.extend_request(reversed_agent, property=True)
app.extend_request(store, property=True)


# ---- hooks around every view ----------------------------------------------------

@app.on_request
def start_timer(request):
    request.extra["started"] = time.perf_counter()


@app.on_request
def cors_preflight(request):
    # Returning a Response short-circuits: the view is not called.
    if request.method == "OPTIONS":
        return request.Response(code=204, headers={
            "Access-Control-Allow-Origin": ALLOWED_ORIGIN,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Authorization",
            "Access-Control-Max-Age": "600",
        })


@app.on_request
async def authenticate(request):
    # Hooks may be async too.
    if request.path.startswith("/private"):
        if request.headers.get("Authorization") != "Bearer " + TOKEN:
            return request.Response(code=401, json={"error": "unauthorized"},
                                    headers={"WWW-Authenticate": "Bearer"})


@app.on_response
def cors_and_timing(request, response):
    # Change the response in place (or return a new one).
    response.headers["Access-Control-Allow-Origin"] = ALLOWED_ORIGIN
    started = request.extra.get("started")
    if started is not None:
        response.headers["X-Response-Time"] = "%.3fms" % ((time.perf_counter() - started) * 1e3)


# ---- start-up and shutdown: once per worker ------------------------------------

@app.on_startup
async def open_store(app):
    await asyncio.sleep(0)              # e.g. await asyncpg.create_pool(...)
    app.store = {"requests_done": 0, "items": ["apple", "pear"]}
    print("extend: store opened", file=sys.stderr)


@app.on_shutdown
def close_store(app):
    print("extend: store closed after %d requests" % app.store["requests_done"],
          file=sys.stderr)


# ---- views --------------------------------------------------------------------------

def hello(request):
    if request.host_startswith("api."):
        text = "Hello " + request.reversed_agent
    else:
        text = "Hello stranger"
    return request.Response(text=text)


def items(request):
    def done(req):
        # runs once the response has been written
        req.store["requests_done"] += 1
    request.add_done_callback(done)
    return request.Response(json=request.store["items"])


def private(request):
    return request.Response(json={"secret": 42})


def stats(request):
    return request.Response(json={"requests_done": request.store["requests_done"]})


r.add_route("/", hello)
# a preflight OPTIONS to /api/items is answered automatically (204 and
# Allow), and the hooks run on that answer too: the CORS headers are added
r.add_route("/api/items", items, methods=["GET"])
r.add_route("/private", private)
r.add_route("/stats", stats)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
