"""The response object: text, JSON, bytes, headers, cookies, status codes and
media types.

    python examples/response.py [--host H] [--port P]

    curl -i localhost:8080/text
    curl -i localhost:8080/json
    curl -i localhost:8080/code/418
"""
import argparse
from http.cookies import SimpleCookie

from fulmen import Application, Response


def text(request):
    # text/plain; charset=utf-8
    return request.Response(text="Hello world!")


def encoding(request):
    # encoded as ISO-8859-1; Content-Type says so
    return request.Response(text="J\u00e1 pronto!", encoding="iso-8859-1")


def json(request):
    # application/json, encoded in C for dict/list/str/int/float/bool/None
    return request.Response(json={"hello": "world", "n": [1, 2.5, True, None]})


def body(request):
    # application/octet-stream unless mime_type says otherwise
    return request.Response(body=b"\xde\xad\xbe\xef")


def mime(request):
    # text= is sent as UTF-8, but only a text/* type gets "; charset=utf-8"
    # added (any type does when encoding= is given): this one goes as given
    return request.Response(
        mime_type="image/svg+xml",
        text='<svg xmlns="http://www.w3.org/2000/svg" version="1.1">'
             '<line x1="10" y1="10" x2="80" y2="80" stroke="blue"/></svg>')


def html(request):
    return request.Response(text="<h1>Hello</h1>", mime_type="text/html")


def code(request):
    # the reason phrase comes from the code; unknown codes still work
    return request.Response(code=request.match_dict["code"], text="code")


def created(request):
    return Response(code=201, json={"id": 1},           # fulmen.Response is request.Response
                    headers={"Location": "/things/1"})


def no_content(request):
    return request.Response(code=204)


def redirect(request):
    return request.Response(code=302, headers={"Location": "/text"})


def headers(request):
    # a dict, or a list of pairs when a header repeats
    return request.Response(
        text="headers",
        headers=[("X-Header", "Value"), ("Link", "</a>; rel=a"), ("Link", "</b>; rel=b"),
                 ("Refresh", "5; url=https://xkcd.com/353/")])


def cookies(request):
    jar = SimpleCookie()
    jar["hello"] = "world"
    jar["hello"]["path"] = "/"
    jar["hello"]["max-age"] = 3600
    response = request.Response(text="cookies", cookies=jar)
    # or one at a time:
    response.set_cookie("session", "abc123", httponly=True, samesite="Lax")
    response.delete_cookie("old")
    return response


def mutable(request):
    # a Response can be inspected and changed until it is sent
    response = request.Response(text="draft")
    response.code = 202
    response.text = "final"
    response.headers["X-Changed"] = "yes"
    return response


app = Application()
r = app.router
r.add_route("/text", text)
r.add_route("/encoding", encoding)
r.add_route("/json", json)
r.add_route("/body", body)
r.add_route("/mime", mime)
r.add_route("/html", html)
r.add_route("/code/{code:int}", code)
r.add_route("/created", created, method="POST")
r.add_route("/no-content", no_content)
r.add_route("/redirect", redirect)
r.add_route("/headers", headers)
r.add_route("/cookies", cookies)
r.add_route("/mutable", mutable)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
