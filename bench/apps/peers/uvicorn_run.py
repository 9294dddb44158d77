"""uvicorn (httptools + uvloop, 1 worker) serving asgi_app.py.
Usage: uvicorn_run.py PORT SCENARIO"""
import os
import sys

os.environ["BENCH_SCENARIO"] = sys.argv[2] if len(sys.argv) > 2 else "hello"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import uvicorn  # noqa: E402

from asgi_app import app  # noqa: E402

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop",
            http="httptools", lifespan="off", access_log=False,
            log_level="warning", workers=1,
            # scenario tls: run.py names the certificate and key
            ssl_certfile=os.environ.get("BENCH_TLS_CERT"),
            ssl_keyfile=os.environ.get("BENCH_TLS_KEY"))
