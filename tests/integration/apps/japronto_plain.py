"""A Japronto app with Japronto's defaults: no error handler, no hook (only
the import changed).  Checked by test_api.py's Japronto section: what such
an app relies on that japronto_style.py's catch-all handler would hide."""
from fulmen import Application, Response, RouteNotFoundException

app = Application()
r = app.router


def find_item(request):
    # Japronto's default error handler answers 404 for this exception,
    # wherever it is raised: a view may raise it for a missing object.
    if request.match_dict["id"] != "1":
        raise RouteNotFoundException()
    return request.Response(text="item 1")


def positional(request):
    # Japronto's order is (text, code, ...): a None text, then the code
    return request.Response(None, int(request.query.get("code", "404")))


def static(request):
    return request.Response(text="static " + request.route.pattern)


def header_names(request):
    return request.Response(text="\n".join(request.headers))


def response_class(request):
    # request.Response is the class itself, also when read before the call
    make = request.Response
    return make(text="same class" if make is Response else "other: %r" % make)


r.add_route("/items/{id}", find_item)
r.add_route("/response-class", response_class)
r.add_route("/positional", positional)
r.add_route("/love", static)
r.add_route("/a:b", static)
r.add_route("/caf\u00e9", static)
r.add_route("/header-names", header_names)

app.run(host="127.0.0.1", port=0)
