"""Scenario `hello`: a sync view answering text "Hello world!".  Usage: hello.py PORT"""
import sys

from fulmen import Application


def hello(request):
    return request.Response(text="Hello world!")


app = Application()
app.router.add_route("/", hello)
app.run(host="127.0.0.1", port=int(sys.argv[1]))
