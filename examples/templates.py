"""HTML pages from templates, with string.Template from the standard library.

Any template engine works the same way: render to a str, then return
``request.Response(text=html, mime_type="text/html")``.  With Jinja2
(``pip install jinja2``) the page below would be

    template = jinja2.Template("<h1>Hello {{ name }}!</h1>")
    html = template.render(name=name)

    python examples/templates.py [--host H] [--port P]

    curl localhost:8080/
    curl localhost:8080/hello/Ada
    curl 'localhost:8080/hello/<script>'    # escaped
"""
import argparse
import html
from string import Template

from fulmen import Application

PAGE = Template("""<!doctype html>
<html>
<head><meta charset="utf-8"><title>$title</title></head>
<body>
$content
</body>
</html>
""")

HELLO = Template("<h1>Hello $name!</h1>\n<p>You are visitor number $count.</p>")

ITEM = Template('<li><a href="$href">$label</a></li>')


def render_page(title, content):
    return PAGE.substitute(title=html.escape(title), content=content)


def index(request):
    links = "\n".join(ITEM.substitute(href="/hello/" + name, label=html.escape(name))
                      for name in ("Ada", "Grace", "Linus"))
    body = render_page("fulmen templates", "<ul>\n%s\n</ul>" % links)
    return request.Response(text=body, mime_type="text/html")


visits = {"count": 0}


def hello(request):
    visits["count"] += 1
    name = request.match_dict["name"]
    # Escape what the client sent before it goes into HTML.
    content = HELLO.substitute(name=html.escape(name), count=visits["count"])
    return request.Response(text=render_page("Hello " + name, content),
                            mime_type="text/html")


def raw(request):
    # A view can also return an HTML string directly.
    return request.Response(text="<h1>Some HTML!</h1>", mime_type="text/html")


app = Application()
app.router.add_route("/", index)
app.router.add_route("/hello/{name}", hello)
app.router.add_route("/raw", raw)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
