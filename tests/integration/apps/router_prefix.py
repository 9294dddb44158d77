"""Routes with a literal prefix before the parameter in one segment
(Japronto's /user-{id}), beside literal and plain-parameter siblings."""
from fulmen import Application, Response


def info(request):
    return Response(json={
        "pattern": request.route.pattern,
        "method": request.method,
        "match_dict": {k: [str(v), type(v).__name__] for k, v in request.match_dict.items()},
    })


def urls(request):
    u = app.router.url_for
    return Response(json={
        "user": u("user", id="a b/c"),
        "user_int": u("user_int", id=7),
        "version": u("version", version=2),
        "img_rest": u("img_rest", rest="x y/z.png"),
    })


app = Application()
r = app.router

# precedence in one segment: literal, longer prefix, shorter prefix, plain
r.add_route("/u/user-me", info)
r.add_route("/u/user-{id:int}", info, name="user_int")
r.add_route("/u/user-{id}", info, name="user")
r.add_route("/u/us{rest}", info)
r.add_route("/u/{name}", info)

# a prefixed parameter in the middle of a pattern
r.add_route("/v{version:int}/items", info, name="version")
r.add_route("/v{version:int}/items/{item:uuid}", info)
r.add_route("/vlatest/items", info)

# typed prefixed parameters
r.add_route("/t/f{x:float}", info)
r.add_route("/t/id-{u:uuid}", info)
r.add_route("/t/n{n:int}", info)

# {x:path} after a prefix: tried after every one-segment candidate
r.add_route("/files/img_{name}", info)
r.add_route("/files/img_{rest:path}", info, name="img_rest")
r.add_route("/files/{name}/meta", info)
r.add_route("/files/{rest:path}", info)

# a prefixed candidate whose later segments do not match gives way
r.add_route("/b/pre{x}/end", info)
r.add_route("/b/{y}/other", info)

# non-ASCII prefix, compared as UTF-8 after percent-decoding
r.add_route("/caf\u00e9-{x}", info)

# methods: GET (HEAD follows), and POST on the same pattern by another view
r.add_route("/m/item-{id}", info, method="GET")
r.add_route("/m/item-{id}", info, method="POST")
r.add_route("/m/only-{id}", info, method="GET")

r.add_route("/urls", urls)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
