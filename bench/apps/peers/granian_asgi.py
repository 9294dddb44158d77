"""granian's ASGI interface serving asgi_app.py, one worker, one runtime thread
(started like /work/shared/bench/servers/granian_asgi.py: exec the granian CLI).
Usage: granian_asgi.py PORT SCENARIO"""
import os
import sys

os.environ["BENCH_SCENARIO"] = scenario = sys.argv[2] if len(sys.argv) > 2 else "hello"
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
static = []
if scenario == "static":
    # granian's own static file serving (Rust): the fastest way it has
    import static_asset
    static = ["--static-path-route", "/static", "--static-path-mount", static_asset.directory()]
tls = []
if os.environ.get("BENCH_TLS_CERT"):    # scenario tls: run.py names them
    tls = ["--ssl-certificate", os.environ["BENCH_TLS_CERT"],
           "--ssl-keyfile", os.environ["BENCH_TLS_KEY"]]
os.execvp(sys.executable, [sys.executable, "-m", "granian", "--interface", "asgi",
                           "--host", "127.0.0.1", "--port", sys.argv[1], "--workers", "1",
                           "--runtime-threads", "1", "--http", "1",
                           *([] if scenario == "ws-echo" else ["--no-ws"]),
                           "--loop", "uvloop", "--log-level", "warning"] + static + tls +
          ["--working-dir", here, "asgi_app:app"])
