"""Scenario `params`: 200 routes (routes200.py); the benchmark requests the one
in the middle, /users/{id:int}/posts/{slug}, with ?page=3 and an X-Token
header, and the view answers with text built from all four.
Usage: params.py PORT"""
import sys

from fulmen import Application
from fulmen import _core
from routes200 import answer, patterns, split_query, TARGET

# Use request.query once the engine has it (a C getter); until then parse the
# query string here.  Decided once, so the view pays no failed getattr.
HAS_QUERY = hasattr(_core.Request, "query")


def target(request):
    md = request.match_dict
    if HAS_QUERY:
        page = request.query.get("page")
    else:
        qs = request.query_string
        if isinstance(qs, bytes):
            qs = qs.decode("latin-1")
        page = split_query(qs).get("page")
    return request.Response(text=answer(md["id"], md["slug"], page,
                                        request.headers.get("X-Token")))


def other(request):
    return request.Response(text="other")


app = Application()
for p in patterns():
    app.router.add_route(p, target if p == TARGET else other)
app.run(host="127.0.0.1", port=int(sys.argv[1]))
