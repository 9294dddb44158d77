"""Scenario `post-json`: POST / with a 1 KB JSON body (bench/payload-1k.json);
the view parses it and echoes it back with Response(json=...).
Usage: post_json.py PORT"""
import json
import sys

from fulmen import Application
from fulmen import _core

# request.json once the engine has it; json.loads(request.body) until then.
HAS_JSON = hasattr(_core.Request, "json")


def echo(request):
    data = request.json if HAS_JSON else json.loads(request.body)
    return request.Response(json=data)


app = Application()
app.router.add_route("/", echo, method="POST")
app.run(host="127.0.0.1", port=int(sys.argv[1]))
