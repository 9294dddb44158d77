"""The Application: settings, routes, error handling and serving.

This is the thin Python shell around fulmen._core.  Nothing here runs per
request except the error hook, which only runs when a view raised.
"""
import asyncio
import builtins
import inspect
import json as _json
import os
import signal
import socket
import sys
import traceback
from http.cookies import Morsel, SimpleCookie

from . import _core
from .router import Router, _is_async

builtins_property = builtins.property
_EXTENDED = set()

Response = _core.Response

_MiB = 1024 * 1024


def _render_cookies(cookies):
    """Set-Cookie values for Response(cookies=...): a dict or SimpleCookie."""
    if isinstance(cookies, SimpleCookie):
        return [m.OutputString() for m in cookies.values()]
    out = []
    for k, v in cookies.items():
        if isinstance(v, Morsel):
            out.append(v.OutputString())
        else:
            c = SimpleCookie()
            c[k] = v
            out.append(c[k].OutputString())
    return out


def _set_cookie(self, name, value, *, max_age=None, expires=None, path="/",
                domain=None, secure=False, httponly=False, samesite=None):
    """response.set_cookie(name, value, ...): add a Set-Cookie header."""
    jar = self.cookies
    if not isinstance(jar, SimpleCookie):
        new = SimpleCookie()
        for k, v in (jar or {}).items():
            new[k] = v
        jar = new
    jar[name] = value
    m = jar[name]
    for key, val in (("max-age", max_age), ("expires", expires), ("path", path),
                     ("domain", domain), ("samesite", samesite)):
        if val is not None:
            m[key] = val
    if secure:
        m["secure"] = True
    if httponly:
        m["httponly"] = True
    self.cookies = jar


def _delete_cookie(self, name, *, path="/", domain=None):
    """response.delete_cookie(name): expire the cookie on the client."""
    _set_cookie(self, name, "", max_age=0, expires="Thu, 01 Jan 1970 00:00:00 GMT",
                path=path, domain=domain)


Response.set_cookie = _set_cookie
Response.delete_cookie = _delete_cookie


def _json_dumps(obj):
    """Fallback for JSON the C encoder does not handle; replaced by json_dumps=."""
    return _json.dumps(obj)


class RouteNotFoundException(Exception):
    """Raised (for error handlers) when no route matches the path."""


class MethodNotAllowed(Exception):
    """Raised (for error handlers) when the path exists for other methods."""


def _check_size(name, value, minimum=0, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("%s must be an int, not %r" % (name, value))
    if value < minimum:
        raise ValueError("%s must be at least %d, not %d" % (name, minimum, value))
    return value


def _check_seconds(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("%s must be a number of seconds, not %r" % (name, value))
    if not value > 0 or value != value:
        raise ValueError("%s must be positive, not %r" % (name, value))
    return float(value)


class Application:
    """A fulmen application: ``app = Application(); app.router.add_route(...)``."""

    def __init__(self, *, debug=False, loop=None, max_header_size=16384,
                 max_headers=100, max_body_size=10 * _MiB, header_timeout=10.0,
                 body_timeout=30.0, keep_alive_timeout=60.0, max_connections=None,
                 reaper_settings=None, json_dumps=None, log_request=None):
        self.debug = bool(debug)
        self._loop = loop
        self.max_header_size = _check_size("max_header_size", max_header_size, 256)
        if self.max_header_size > (1 << 30):
            raise ValueError("max_header_size must be at most 1 GiB")
        self.max_headers = _check_size("max_headers", max_headers, 1)
        if self.max_headers > 65536:
            raise ValueError("max_headers must be at most 65536")
        self.max_body_size = _check_size("max_body_size", max_body_size, 0)
        self.header_timeout = _check_seconds("header_timeout", header_timeout)
        self.body_timeout = _check_seconds("body_timeout", body_timeout)
        if reaper_settings is not None:
            if not isinstance(reaper_settings, dict):
                raise ValueError("reaper_settings must be a dict")
            unknown = set(reaper_settings) - {"check_interval", "idle_timeout"}
            if unknown:
                raise ValueError("unknown reaper_settings: %s" % ", ".join(sorted(unknown)))
            if "idle_timeout" in reaper_settings:
                keep_alive_timeout = reaper_settings["idle_timeout"]
            if "check_interval" in reaper_settings:
                _check_seconds("reaper_settings['check_interval']",
                               reaper_settings["check_interval"])
        self.keep_alive_timeout = _check_seconds("keep_alive_timeout", keep_alive_timeout)
        self.max_connections = _check_size("max_connections", max_connections, 1,
                                           allow_none=True)
        if json_dumps is not None:
            if not callable(json_dumps):
                raise ValueError("json_dumps must be callable")
            global _json_dumps
            _json_dumps = json_dumps
        self.router = Router()
        self._error_handlers = {}
        self._request_hooks = []
        self._response_hooks = []
        self._startup = []
        self._shutdown = []
        self._server = None

    @property
    def loop(self):
        if self._loop is None:
            import uvloop
            self._loop = uvloop.new_event_loop()
        return self._loop

    # ---- extension points ----------------------------------------------------

    def extend_request(self, fn, *, name=None, property=False):
        """Add a method (or, with property=True, a property) to every request."""
        if not callable(fn):
            raise TypeError("extend_request needs a callable")
        name = name or fn.__name__
        if not name.isidentifier() or name.startswith("__"):
            raise ValueError("bad attribute name %r" % name)
        if hasattr(_core.Request, name) and name not in _EXTENDED:
            raise ValueError("Request already has an attribute %r" % name)
        _EXTENDED.add(name)
        setattr(_core.Request, name, builtins_property(fn) if property else fn)

    def on_request(self, fn):
        """fn(request), sync or async, runs before the view; a Response it
        returns is sent instead of calling the view.  Usable as a decorator."""
        self._add_hook(self._request_hooks, fn)
        return fn

    def on_response(self, fn):
        """fn(request, response), sync or async, runs after the view; it may
        change the response, or return a new one.  Usable as a decorator."""
        self._add_hook(self._response_hooks, fn)
        return fn

    def on_startup(self, fn):
        """fn(app), sync or async, runs once per worker before it serves."""
        self._add_hook(self._startup, fn)
        return fn

    def on_shutdown(self, fn):
        """fn(app), sync or async, runs once per worker after it stopped serving."""
        self._add_hook(self._shutdown, fn)
        return fn

    def _add_hook(self, lst, fn):
        if not callable(fn):
            raise TypeError("a hook must be callable, not %r" % (fn,))
        if self._server is not None:
            raise RuntimeError("hooks cannot be added once the app is serving")
        lst.append(fn)

    def _wrap_view(self, view):
        """Compose on_request/on_response hooks around a view, once, at
        start-up; with no hook registered the view is called directly."""
        pre, post = tuple(self._request_hooks), tuple(self._response_hooks)
        if not pre and not post:
            return view
        if not any(map(_is_async, pre + post + (view,))):
            def hooked(request):
                for h in pre:
                    r = h(request)
                    if r is not None:
                        response = r
                        break
                else:
                    response = view(request)
                for h in post:
                    r = h(request, response)
                    if r is not None:
                        response = r
                return response
        else:
            async def hooked(request):
                for h in pre:
                    r = h(request)
                    if inspect.isawaitable(r):
                        r = await r
                    if r is not None:
                        response = r
                        break
                else:
                    response = view(request)
                    if inspect.isawaitable(response):
                        response = await response
                for h in post:
                    r = h(request, response)
                    if inspect.isawaitable(r):
                        r = await r
                    if r is not None:
                        response = r
                return response
        hooked.__wrapped__ = view
        return hooked

    async def _run_hooks(self, hooks):
        for fn in hooks:
            r = fn(self)
            if inspect.isawaitable(r):
                await r

    # ---- errors ------------------------------------------------------------

    def add_error_handler(self, exc_type, handler):
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise TypeError("add_error_handler needs an exception class, not %r" % (exc_type,))
        if not callable(handler):
            raise TypeError("error handler must be callable")
        self._error_handlers[exc_type] = handler

    def _handle_error(self, request, exc):
        """Called from C when a view raised: returns the Response to send."""
        for cls in type(exc).__mro__:
            handler = self._error_handlers.get(cls)
            if handler is not None:
                try:
                    res = handler(request, exc)
                    if isinstance(res, Response):
                        return res
                    raise TypeError("error handler %r returned %r, not a Response"
                                    % (handler, res))
                except Exception as e:  # a broken handler: fall through to 500
                    exc = e
                    break
        if isinstance(exc, _core.BadRequest):
            return Response(code=400, text="Bad Request: %s" % exc if self.debug
                            else "Bad Request")
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write("fulmen: error in view for %r:\n%s" % (request, tb))
        if self.debug:
            return Response(code=500, text="Internal Server Error\n\n" + tb)
        return Response(code=500, text="Internal Server Error")

    # ---- serving -----------------------------------------------------------

    def _not_found(self, request, allow):
        """Called from C for 404/405 when the app has a handler for them."""
        exc = RouteNotFoundException() if allow is None else MethodNotAllowed(allow)
        for cls in type(exc).__mro__:
            handler = self._error_handlers.get(cls)
            if handler is not None:
                res = handler(request, exc)
                if isinstance(res, Response):
                    return res
                raise TypeError("error handler %r returned %r, not a Response"
                                % (handler, res))
        if allow is None:
            return Response(code=404, text="Not Found")
        return Response(code=405, text="Method Not Allowed", headers={"Allow": allow})

    def _make_server(self, loop):
        matcher = self.router.build(self._wrap_view)
        return _core.Server(self, matcher, loop, self._handle_error, self.debug,
                            self.max_header_size, self.max_headers,
                            self.max_body_size, self.header_timeout,
                            self.body_timeout, self.keep_alive_timeout,
                            self._not_found if any(
                                issubclass(c, (RouteNotFoundException, MethodNotAllowed))
                                or c in (Exception, BaseException)
                                for c in self._error_handlers) else None)

    def _bind(self, host, port, backlog):
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(backlog)
        sock.setblocking(False)
        return sock

    def serve(self, sock, *, loop=None, graceful_timeout=30.0):
        """Serve on an already bound, listening socket until SIGTERM/SIGINT.

        The first signal stops gracefully: no new connections, idle ones
        close, requests in flight finish (up to graceful_timeout seconds).
        A second SIGINT stops at once.
        """
        loop = loop or self.loop
        asyncio.set_event_loop(loop)
        factory = self._make_server(loop)
        self._server = factory
        loop.run_until_complete(self._run_hooks(self._startup))
        server = loop.run_until_complete(
            loop.create_server(factory, sock=sock, backlog=1024))
        stopping = []
        # one sweep over all connections a few times a second enforces every
        # timeout: no timer per connection
        interval = max(0.05, min(1.0, self.header_timeout / 4, self.body_timeout / 4,
                                 self.keep_alive_timeout / 4))
        sweeper = []

        def sweep():
            factory.sweep()
            sweeper[:] = [loop.call_later(interval, sweep)]

        def wait_idle(deadline):
            if factory.connections <= 0 or loop.time() >= deadline:
                loop.stop()
            else:
                loop.call_later(0.02, wait_idle, deadline)

        def stop(signum):
            if stopping:
                if signum == signal.SIGINT:
                    os._exit(1)
                return
            stopping.append(signum)
            server.close()
            factory.stop()
            wait_idle(loop.time() + graceful_timeout)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig)
        sweeper.append(loop.call_later(interval, sweep))
        host, port = sock.getsockname()[:2]
        shown = "[%s]" % host if ":" in host else host
        sys.stderr.write("fulmen: listening on http://%s:%d (pid %d)\n"
                         % (shown, port, os.getpid()))
        sys.stderr.flush()
        try:
            loop.run_forever()
        finally:
            for h in sweeper:
                h.cancel()
            server.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            loop.run_until_complete(self._run_hooks(self._shutdown))

    def run(self, host="0.0.0.0", port=8080, *, worker_num=None, debug=None,
            backlog=1024, reload=False):
        if debug is not None:
            self.debug = bool(debug)
        if worker_num is not None and (not isinstance(worker_num, int) or worker_num < 0):
            raise ValueError("worker_num must be a non-negative int")
        sock = self._bind(host, port, backlog)
        try:
            self.serve(sock)
        finally:
            sock.close()
