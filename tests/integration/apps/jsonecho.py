"""The JSON test app: request.json echoed back through Response(json=...)."""
import json

from fulmen import Application, Response

app = Application(debug=False)


def echo(request):
    return Response(json={"json": request.json})


def error(request):
    """What a view sees when it catches the error as a json.JSONDecodeError."""
    try:
        request.json
    except json.JSONDecodeError as e:
        return Response(json={"type": type(e).__name__, "msg": e.msg, "pos": e.pos,
                              "lineno": e.lineno, "colno": e.colno})
    return Response(json={"type": None})


app.router.add_route("/echo", echo, methods=["POST"])
app.router.add_route("/error", error, methods=["POST"])

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
