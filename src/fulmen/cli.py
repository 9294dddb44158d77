"""Command line: ``python -m fulmen module:app --host H --port P``."""
import argparse
import importlib
import os
import re
import sys
import sysconfig
import traceback


def _failure(what, e, debug):
    """SystemExit for e, an exception the app's own code raised at start-up:
    one line naming the exception and the app's line it came from; with
    debug, the traceback is printed first."""
    if debug:
        traceback.print_exception(type(e), e, e.__traceback__)
    if isinstance(e, SyntaxError):
        detail, filename, lineno = e.msg, e.filename, e.lineno
    else:
        detail, filename, lineno = str(e), None, None
        skip = ("<", os.path.join(os.path.dirname(os.path.abspath(__file__)), ""),
                os.path.join(sysconfig.get_paths()["stdlib"], ""))
        for frame in traceback.extract_tb(e.__traceback__):
            # the innermost frame of the app's code, not fulmen's, importlib's
            # or the standard library's
            if not frame.filename.startswith(skip):
                filename, lineno = frame.filename, frame.lineno
    line = "fulmen: %s: %s" % (what, type(e).__name__)
    if detail:
        line += ": " + detail
    if filename:
        line += " (%s, line %s)" % (filename, lineno)
    return SystemExit(line)


def load_app(spec, debug=False):
    """Import 'module:attr' (attr defaults to 'app') and return the Application.

    Japronto's 'module.attr' is understood too when 'module.attr' is not a
    module.  While the module is imported, app.run() returns at once (as
    under Japronto's command line), so a script that ends with app.run()
    is served with the command line's options."""
    from . import app as app_module
    from .app import Application
    module_name, colon, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise SystemExit("fulmen: expected module:app, got %r" % spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app_module._ignore_run = True
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if colon or "." not in module_name or e.name != module_name:
                raise
            module_name, attr = module_name.rsplit(".", 1)
            module = importlib.import_module(module_name)
    except Exception as e:
        if isinstance(e, ModuleNotFoundError) and e.name and (
                module_name == e.name or module_name.startswith(e.name + ".")):
            # the app's module (or its package) is not there
            raise SystemExit("fulmen: cannot import %r: %s" % (module_name, e))
        # a syntax error, an import that failed or an exception in the
        # module's code: the app's line it came from
        raise _failure("cannot import %r" % module_name, e, debug) from None
    finally:
        app_module._ignore_run = False
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise SystemExit("fulmen: module %r has no attribute %r" % (module_name, attr))
    if callable(app) and not isinstance(app, Application):
        try:
            app = app()
        except Exception as e:
            raise _failure("the app factory %s failed" % spec, e, debug) from None
    if not isinstance(app, Application):
        raise SystemExit("fulmen: %s is not a fulmen Application" % spec)
    return app


# run()'s argument names as the command line spells them, for its errors
_FLAGS = {"worker_num": "--workers", "graceful_timeout": "--graceful-timeout",
          "max_requests_jitter": "--max-requests-jitter", "max_requests": "--max-requests",
          "max_rss": "--max-rss", "worker_timeout": "--worker-timeout", "backlog": "--backlog",
          "max_start_failures": "--max-start-failures",
          "port": "--port", "fd": "--fd", "uds": "--uds",
          "forwarded_allow_ips": "--forwarded-allow-ips"}


def _flag_names(message):
    """An error of run() about one of its arguments ("max_rss must be...",
    "... needs max_requests"), naming the flag instead."""
    return re.sub(r"^(%s)\b|(?<=needs )(%s)\b" % (("|".join(_FLAGS),) * 2),
                  lambda m: _FLAGS[m.group(1) or m.group(2)], message)


def main(argv=None):
    p = argparse.ArgumentParser(prog="fulmen", description="Serve a fulmen application.")
    p.add_argument("app", help="module:attribute of the Application (attribute defaults to app)")
    g = p.add_argument_group("binding")
    g.add_argument("--host", default="127.0.0.1",
                   help="IPv4 or IPv6 address to listen on (default 127.0.0.1; :: for all)")
    g.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any free one)")
    g.add_argument("--uds", metavar="PATH",
                   help="listen on a unix socket instead (not with --fd)")
    g.add_argument("--fd", type=int, metavar="N",
                   help="serve the inherited listening socket N (systemd socket "
                        "activation is also detected from LISTEN_FDS)")
    g.add_argument("--backlog", type=int, default=1024,
                   help="listen queue length (default 1024; the kernel caps it)")
    g.add_argument("--ssl-certfile", metavar="PEM",
                   help="serve TLS with this certificate (chain), with --ssl-keyfile")
    g.add_argument("--ssl-keyfile", metavar="PEM", help="its private key (no passphrase)")
    g = p.add_argument_group("processes")
    g.add_argument("--workers", "--worker-num", type=int, default=None, metavar="N",
                   help="run a master and N worker processes (0: one per CPU); "
                        "without it, serve in this process (but --reload, "
                        "--max-requests, --max-rss and --worker-timeout start a "
                        "master with one worker)")
    g.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long requests in flight may run after SIGTERM (default 30)")
    g.add_argument("--max-requests", type=int, metavar="N",
                   help="replace a worker after about N requests")
    g.add_argument("--max-requests-jitter", type=int, default=0, metavar="N",
                   help="add a random 0..N to --max-requests, per worker")
    g.add_argument("--max-rss", type=float, metavar="MB",
                   help="replace a worker whose resident memory exceeds MB")
    g.add_argument("--worker-timeout", type=float, metavar="SECONDS",
                   help="kill and replace a worker whose event loop is blocked this "
                        "long, printing its traceback (default 30 with workers, "
                        "none with --reload; 0: never)")
    g.add_argument("--max-start-failures", type=int, metavar="N",
                   help="with workers: once N workers in a row failed to start, stop "
                        "and exit 1 (default: retry for ever)")
    g.add_argument("--reload", action="store_true",
                   help="restart the worker when a .py file of the app changes")
    g = p.add_argument_group("proxies and logging")
    g.add_argument("--proxy-headers", action="store_true",
                   help="trust X-Forwarded-For/-Proto/-Host and Forwarded from "
                        "--forwarded-allow-ips")
    g.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="comma-separated proxy addresses or networks "
                        "(10.0.0.0/8) to trust, * for all (default 127.0.0.1)")
    g.add_argument("--access-log", action="store_true",
                   help="log one line per request to stderr")
    g.add_argument("--access-log-format", choices=("text", "json"),
                   help="text (the default) or json")
    p.add_argument("--debug", action="store_true",
                   help="debug mode: tracebacks in 500 answers, a line per request")
    args = p.parse_args(argv)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        p.error("--ssl-certfile and --ssl-keyfile go together")
    if args.uds is not None and args.fd is not None:
        p.error("--uds and --fd exclude each other")
    if args.max_requests_jitter and args.max_requests is None:
        p.error("--max-requests-jitter needs --max-requests")
    app = load_app(args.app, debug=args.debug)
    # an option that would do nothing is a mistake to say, not to ignore
    if args.forwarded_allow_ips is not None and not (args.proxy_headers or app.proxy_headers):
        p.error("--forwarded-allow-ips needs --proxy-headers")
    if args.access_log_format is not None and not (args.access_log or app.access_log):
        p.error("--access-log-format needs --access-log")
    try:
        app.run(host=args.host, port=args.port, worker_num=args.workers,
                debug=args.debug or None, backlog=args.backlog, reload=args.reload,
                ssl=(args.ssl_certfile, args.ssl_keyfile) if args.ssl_certfile else None,
                uds=args.uds, fd=args.fd, graceful_timeout=args.graceful_timeout,
                max_requests=args.max_requests,
                max_requests_jitter=args.max_requests_jitter, max_rss=args.max_rss,
                worker_timeout=args.worker_timeout,
                max_start_failures=args.max_start_failures,
                # None, for an option not given, keeps what the application
                # set (Application(log_request=True) turns the access log on)
                proxy_headers=args.proxy_headers or None,
                forwarded_allow_ips=args.forwarded_allow_ips,
                access_log=args.access_log or None,
                access_log_format=args.access_log_format)
    except (OSError, ValueError) as e:
        raise SystemExit("fulmen: %s" % _flag_names(str(e)))
