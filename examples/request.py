"""The request object: everything the client sent, echoed back as JSON.

    python examples/request.py [--host H] [--port P]

    curl 'localhost:8080/basic/some/path?a=1&a=2&b=x' -H 'X-Demo: yes' -b 'sid=abc'
    curl localhost:8080/body -H 'Content-Type: application/json' -d '{"hello": "world"}'
    curl localhost:8080/body -d 'name=Ada&lang=en'
    curl localhost:8080/body -F 'name=Ada' -F 'upload=@README.md'
    curl localhost:8080/misc
"""
import argparse

from fulmen import Application, BadRequest


def basic(request):
    return request.Response(json={
        "method": request.method,
        "path": request.path,                    # percent-decoded
        "raw_path": request.raw_path,            # as sent
        "version": request.version,              # "1.1" or "1.0"
        "query_string": request.query_string,    # raw
        "query": dict(request.query),            # last value of each key
        "query_all": {k: request.query.getall(k) for k in request.query},
        "headers": dict(request.headers),        # Title-Case names
        "user_agent": request.headers.get("user-agent"),   # lookups ignore case
        "cookies": request.cookies,
    })


def body(request):
    info = {
        "mime_type": request.mime_type,
        "encoding": request.encoding,
        "length": len(request.body),
        "text": request.text,
    }
    if request.mime_type == "application/json":
        try:
            info["json"] = request.json
        except BadRequest as e:                  # the body is not valid JSON
            return request.Response(code=400, json={"error": str(e)})
    elif request.mime_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        info["form"] = dict(request.form)
        info["files"] = {
            field: {"name": f.name, "type": f.type, "size": len(f.body),
                    "head": f.body[:32].decode("utf-8", "replace")}
            for field, f in request.files.items()
        }
    return request.Response(json=info)


def misc(request):
    return request.Response(json={
        "route": request.route.pattern if request.route else None,
        "match_dict": request.match_dict,
        "hostname": request.hostname,
        "port": request.port,                    # None when Host has no port
        "remote_addr": request.remote_addr,
        "keep_alive": request.keep_alive,
        "target": request.target,
    })


app = Application()
app.router.add_route("/basic", basic)
app.router.add_route("/basic/{rest:path}", basic)
app.router.add_route("/body", body, methods=["POST", "PUT", "PATCH"])
app.router.add_route("/misc", misc)
app.router.add_route("/misc/{name}", misc)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
