"""Command line: ``python -m fulmen module:app --host H --port P``."""
import argparse
import importlib
import os
import sys


def load_app(spec):
    """Import 'module:attr' (attr defaults to 'app') and return the Application."""
    from .app import Application
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise SystemExit("fulmen: expected module:app, got %r" % spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SystemExit("fulmen: cannot import %r: %s" % (module_name, e))
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise SystemExit("fulmen: module %r has no attribute %r" % (module_name, attr))
    if callable(app) and not isinstance(app, Application):
        app = app()
    if not isinstance(app, Application):
        raise SystemExit("fulmen: %s is not a fulmen Application" % spec)
    return app


def main(argv=None):
    p = argparse.ArgumentParser(prog="fulmen", description="Serve a fulmen application.")
    p.add_argument("app", help="module:attribute of the Application (attribute defaults to app)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--backlog", type=int, default=1024)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    app = load_app(args.app)
    app.run(host=args.host, port=args.port, worker_num=args.workers,
            debug=args.debug or None, backlog=args.backlog)
