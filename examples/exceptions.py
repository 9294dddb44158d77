"""Errors: error handlers, custom 404 and 405, and debug tracebacks.

    python examples/exceptions.py [--host H] [--port P] [--debug]

    curl localhost:8080/cat          # handled: "Just a kitty, meow"
    curl localhost:8080/dog          # handled by the Animal handler
    curl localhost:8080/unhandled    # 500; with --debug the body has the traceback
    curl localhost:8080/nowhere      # custom 404
    curl -X DELETE localhost:8080/cat   # custom 405
"""
import argparse

from fulmen import Application, MethodNotAllowed, RouteNotFoundException


class AnimalError(Exception):
    greet = "..."


class KittyError(AnimalError):
    greet = "meow"


class DoggieError(AnimalError):
    greet = "woof"


def cat(request):
    raise KittyError()


def dog(request):
    raise DoggieError()


def unhandled(request):
    1 / 0


def handle_kitty(request, exception):
    return request.Response(text="Just a kitty, " + exception.greet)


def handle_animal(request, exception):
    # checked after more specific handlers: KittyError never gets here
    return request.Response(code=418, text="Some animal, " + exception.greet)


def handle_not_found(request, exception):
    return request.Response(code=404, json={"error": "not found", "path": request.path})


def handle_not_allowed(request, exception):
    allow = exception.args[0]                   # e.g. "GET, HEAD, OPTIONS"
    return request.Response(code=405, json={"error": "method not allowed", "allow": allow},
                            headers={"Allow": allow})


app = Application()
r = app.router
r.add_route("/cat", cat, method="GET")
r.add_route("/dog", dog, method="GET")
r.add_route("/unhandled", unhandled)

app.add_error_handler(KittyError, handle_kitty)
app.add_error_handler(AnimalError, handle_animal)
app.add_error_handler(RouteNotFoundException, handle_not_found)
app.add_error_handler(MethodNotAllowed, handle_not_allowed)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--debug", action="store_true",
                   help="log each request and put tracebacks in 500 responses")
    args = p.parse_args()
    app.run(host=args.host, port=args.port, debug=args.debug)
