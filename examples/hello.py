"""Hello world: `make run` serves this on 127.0.0.1:8080 (PORT=N for another port).

    python examples/hello.py [--host H] [--port P]
"""
import argparse

from fulmen import Application


def hello(request):
    return request.Response(text="Hello world!")


app = Application()
app.router.add_route("/", hello)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
