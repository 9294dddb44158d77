"""The router: static and parametric routes, typed parameters, methods, url_for.

    python examples/router.py [--host H] [--port P]

    curl localhost:8080/
    curl localhost:8080/users/42            # {id:int} arrives as an int
    curl localhost:8080/users/me            # a static route wins over {id}
    curl localhost:8080/prices/9.99         # {value:float}
    curl localhost:8080/orders/6f1c2d1e-3b4a-4c5d-8e9f-0a1b2c3d4e5f
    curl localhost:8080/files/docs/a/b.txt  # {rest:path} takes the remaining segments
    curl localhost:8080/hello/Ada           # {person}: any one segment, a str
    curl -X POST localhost:8080/only-post
    curl localhost:8080/only-post           # 405 with an Allow header
"""
import argparse

from fulmen import Application

app = Application()
r = app.router


def index(request):
    # url_for builds a path from a route's name and parameters.
    links = {
        "user": r.url_for("user", id=42),
        "hello": r.url_for("hello", person="Ada Lovelace"),
        "file": r.url_for("file", rest="docs/a/b.txt"),
    }
    return request.Response(json=links)


def hello(request):
    return request.Response(text="Hello, %s!" % request.match_dict["person"])


def user(request):
    uid = request.match_dict["id"]
    return request.Response(json={"id": uid, "type": type(uid).__name__})


def me(request):
    return request.Response(json={"id": "me"})


def price(request):
    value = request.match_dict["value"]
    return request.Response(json={"value": value, "type": type(value).__name__})


def order(request):
    oid = request.match_dict["oid"]             # a uuid.UUID
    return request.Response(json={"order": str(oid), "version": oid.version})


def file(request):
    return request.Response(text=request.match_dict["rest"])


def only_post(request):
    return request.Response(text="posted")


def get_or_put(request):
    return request.Response(text="you sent " + request.method)


r.add_route("/", index)
r.add_route("/hello/{person}", hello, name="hello")
r.add_route("/users/{id:int}", user, name="user")
r.add_route("/users/me", me)
r.add_route("/prices/{value:float}", price)
r.add_route("/orders/{oid:uuid}", order)
r.add_route("/files/{rest:path}", file, name="file")
r.add_route("/only-post", only_post, method="POST")
r.add_route("/item", get_or_put, methods=["GET", "PUT"])

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
