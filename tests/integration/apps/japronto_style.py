"""An app written as a Japronto app is (only the import changed): the
pieces of Japronto's API its examples do not show, checked by
test_api.py's Japronto section."""
from fulmen import Application, RouteNotFoundException

app = Application()
r = app.router


class Handled(Exception):
    pass


def raise_handled(request):
    raise Handled("handled")


def raise_other(request):
    raise ValueError("other")


def on_handled(request, exc):
    return request.Response(code=409, text="handled: %s" % exc)


def on_anything(request, exc):
    # Japronto's add_error_handler(None, ...) takes every exception; a
    # path or method that no route takes is a RouteNotFoundException there
    if isinstance(exc, ValueError):
        code = 418
    elif isinstance(exc, RouteNotFoundException):
        code = 404
    else:
        code = 500
    return request.Response(code=code, text="caught %s" % type(exc).__name__)


def get_only(request):
    return request.Response(text="get view")


def any_other(request):
    return request.Response(text="other view: " + request.method)


app.add_error_handler(None, on_anything)
app.add_error_handler(Handled, on_handled)
r.add_route("/handled", raise_handled)
r.add_route("/other", raise_other)
r.add_route("/get-only", get_only, "GET")
# Japronto upper-cases methods, and a route for one method beside one for
# any method of the same path splits the methods between them.
r.add_route("/split", get_only, "get")
r.add_route("/split", any_other)

# Unconditional, as in Japronto's examples: run as a script it serves;
# imported by the command line (python -m fulmen japronto_style.app) it
# returns at once and the command line serves the app.
app.run(host="127.0.0.1", port=0)
