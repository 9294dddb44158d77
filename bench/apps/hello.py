"""Scenario `hello`: a sync view answering text "Hello world!".  Usage: hello.py PORT

Scenario `tls` is the same app over TLS: run.py names the certificate and key
in $BENCH_TLS_CERT and $BENCH_TLS_KEY."""
import os
import sys

from fulmen import Application


def hello(request):
    return request.Response(text="Hello world!")


app = Application()
app.router.add_route("/", hello)
tls = os.environ.get("BENCH_TLS_CERT")
app.run(host="127.0.0.1", port=int(sys.argv[1]),
        ssl=(tls, os.environ["BENCH_TLS_KEY"]) if tls else None)
