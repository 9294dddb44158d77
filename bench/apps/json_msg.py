"""Scenario `json`: a sync view answering {"message": "Hello, World!"} with
Response(json=...).  Usage: json_msg.py PORT
(Not named json.py: the script's directory is on sys.path and would shadow
the standard library's json module.)"""
import sys

from fulmen import Application


def hello_json(request):
    return request.Response(json={"message": "Hello, World!"})


app = Application()
app.router.add_route("/", hello_json)
app.run(host="127.0.0.1", port=int(sys.argv[1]))
