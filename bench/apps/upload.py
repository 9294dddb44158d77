"""Scenario `upload`: POST / with a 256 KiB body; the view answers with the
length of request.body.  Usage: upload.py PORT"""
import sys

from fulmen import Application


def upload(request):
    return request.Response(text=str(len(request.body)))


app = Application()
app.router.add_route("/", upload, method="POST")
app.run(host="127.0.0.1", port=int(sys.argv[1]))
