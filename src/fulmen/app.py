"""The Application: settings, routes, error handling and serving.

This is the thin Python shell around fulmen._core.  Nothing here runs per
request except the error hook, which only runs when a view raised, and the
on_request/on_response hooks when the app registered some.
"""
import asyncio
import atexit
import builtins
import datetime
import email.utils
import functools
import gc
import inspect
import io
import json as _json
import os
import signal
import socket
import sys
import traceback
import types
from http.cookies import Morsel, SimpleCookie

from . import _core
from .router import (MethodNotAllowed, RouteNotFoundException, Router, _is_async,
                     _never_suspends, check_arity)

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
        if not isinstance(k, str):
            raise TypeError("cookie names must be str, not %s (%r)" % (type(k).__name__, k))
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
    if not isinstance(name, str) or not isinstance(value, str):
        # (str(b"v") would send "b'v'", str(None) "None")
        raise TypeError("set_cookie(name, value): both must be str, not %s and %s"
                        % (type(name).__name__, type(value).__name__))
    for key, flag in (("secure", secure), ("httponly", httponly)):
        if not isinstance(flag, bool):
            raise TypeError("set_cookie(%s=) must be True or False, not %r" % (key, flag))
    if isinstance(expires, datetime.datetime):
        # a cookie-date (RFC 6265 5.1.1), not str(datetime); a naive one is UTC
        if expires.tzinfo is not None:
            expires = expires.astimezone(datetime.timezone.utc)
        expires = email.utils.format_datetime(expires.replace(tzinfo=datetime.timezone.utc),
                                              usegmt=True)
    attrs = [(key, val) for key, val in (("max-age", max_age), ("expires", expires),
                                         ("path", path), ("domain", domain),
                                         ("samesite", samesite)) if val is not None]
    for key, val in attrs:
        text = str(val)
        if ";" in text or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            # it would end the attribute and start another one of the
            # caller's choosing (RFC 6265 4.1.1); checked before the jar
            # changes, so a refused cookie leaves none half-set
            raise ValueError("cookie attribute %s may not contain ';' or a control "
                             "character: %r" % (key, val))
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)):
        raise ValueError("cookie max_age must be an int of seconds, not %r" % (max_age,))
    if samesite is not None and str(samesite).lower() not in ("strict", "lax", "none"):
        raise ValueError("cookie samesite must be Strict, Lax or None, not %r" % (samesite,))
    jar = self.cookies
    if not isinstance(jar, SimpleCookie):
        new = SimpleCookie()
        for k, v in (jar or {}).items():
            new[k] = v
        jar = new
    jar[name] = value
    m = jar[name]
    for key, val in attrs:
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




def _check_size(name, value, minimum=0, allow_none=False, maximum=None):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("%s must be an int, not %r" % (name, value))
    if value < minimum:
        raise ValueError("%s must be at least %d, not %d" % (name, minimum, value))
    if value > (_MAX_SIZE if maximum is None else maximum):
        raise ValueError("%s must be at most %s, not %d"
                         % (name, "2**62" if maximum is None else maximum, value))
    return value


def _check_bool(name, value):
    """A yes/no setting: True or False.  Anything else (a string such as
    "false" above all) is refused, not taken for its truth value."""
    if not isinstance(value, bool):
        raise ValueError("%s must be True or False, not %r" % (name, value))
    return value


# what the hooked view wrapper turns into an answer itself: what the engine
# answers for a view without hooks (a view's SystemExit or KeyboardInterrupt
# is the app's error too, a 500); only GeneratorExit, the coroutine being
# closed, goes on up
_ANSWERED = (Exception, asyncio.CancelledError, KeyboardInterrupt, SystemExit)


# what the gate before a WebSocket's 101 (App._ws_gate) returns to let the
# upgrade go on: no on_request hook answered
_WS_ACCEPT = _core._WS_ACCEPT


def _ws_accept(request):
    return _WS_ACCEPT


def _check_response(response):
    """A view's (or on_request hook's) result must be a Response; the
    engine says the same for views without hooks (conn_check_response)."""
    if not isinstance(response, Response):
        raise TypeError("a view must return a Response, not %.100s"
                        % type(response).__name__)


def _refuse_generator(fn, what):
    """A generator function (sync or async) would give a generator instead of
    running: TypeError, when it is registered."""
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError("%s %r is a generator function (it has a yield): it would "
                        "never run" % (what, fn))


def _hook_result(hook, result, kind="on_response"):
    """What a hook returned instead of None: a Response, or a TypeError that
    names the hook (not the view)."""
    if not isinstance(result, Response):
        raise TypeError("%s hook %r returned %.100s, not a Response or None"
                        % (kind, hook, type(result).__name__))
    return result


def _run_error_handler(handler, request, exc):
    """handler(request, exc), which must return a Response (TypeError)."""
    res = handler(request, exc)
    if not isinstance(res, Response):
        raise TypeError("error handler %r returned %r, not a Response" % (handler, res))
    return res


# True while the command line imports the app's module: a module that ends
# with app.run(), as Japronto's examples do, is then served by the command
# line with its options (cli.load_app).
_ignore_run = False

_MAX_SECONDS = 365 * 24 * 3600.0
_WORKER_TIMEOUT = 30.0      # run(worker_timeout=None) under a master, without reload
_MAX_SIZE = 1 << 62
_MAX_WORKERS = 1024         # run(worker_num=): each is a process and a socket


def _check_seconds(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("%s must be a number of seconds, not %r" % (name, value))
    if not 0 < value <= _MAX_SECONDS:  # also NaN and infinity
        raise ValueError("%s must be more than 0 and at most %d seconds, not %r"
                         % (name, _MAX_SECONDS, value))
    return float(value)


def _coroutine_error(request, exc):
    """exc (a StopIteration) as the coroutine of an async view run as a plain
    call (router._never_suspends) would have raised it: a coroutine turns an
    escaping StopIteration into RuntimeError("coroutine raised
    StopIteration"); the plain call lets it out as it is."""
    route = getattr(request, "route", None)
    if not getattr(getattr(route, "handler", None), "_fulmen_plain", False):
        return exc
    err = RuntimeError("coroutine raised StopIteration")
    err.__cause__ = exc
    return err.with_traceback(exc.__traceback__)


def _stock_type(loop, method, cls):
    """cls when loop's method is the stock one (uvloop's loop's, asyncio's
    own): loop.create_task(coro, context=ctx) is then exactly
    Task(coro, loop=loop, context=ctx) as long as no task factory is set,
    loop.create_future() exactly Future(loop=loop).  None for a loop that
    overrides it."""
    stock = [getattr(asyncio.BaseEventLoop, method)]
    try:
        import uvloop
        stock.append(getattr(uvloop.Loop, method))
    except ImportError:
        pass
    create = getattr(type(loop), method, None)
    return cls if any(create is m for m in stock) else None


# what the engine takes once, when it starts: changed later (in an on_startup
# hook, in a view) they would do nothing, or half, unchecked
_SETTINGS = frozenset((
    "debug", "gc_freeze", "gc_threshold", "max_header_size", "max_headers",
    "max_body_size", "max_form_parts", "header_timeout", "body_timeout",
    "keep_alive_timeout", "response_timeout", "max_connections", "proxy_headers",
    "forwarded_allow_ips", "access_log", "access_log_format"))


class Application:
    """A fulmen application: ``app = Application(); app.router.add_route(...)``."""

    def __setattr__(self, name, value):
        if name in _SETTINGS and self.__dict__.get("_server") is not None:
            raise RuntimeError("app.%s cannot be changed once the app is serving (its "
                               "on_startup hooks run then): set it before run(), or in "
                               "Application()" % name)
        object.__setattr__(self, name, value)

    def __init__(self, *, debug=False, loop=None, max_header_size=16384,
                 max_headers=100, max_body_size=10 * _MiB, header_timeout=10.0,
                 body_timeout=30.0, keep_alive_timeout=60.0, max_connections=None,
                 max_form_parts=1000, reaper_settings=None, json_dumps=None,
                 log_request=None, gc_freeze=True, gc_threshold=10_000,
                 response_timeout=None):
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise ValueError("loop must be an asyncio event loop, not %r" % (loop,))
        self._loop = loop
        if reaper_settings is not None:
            if not isinstance(reaper_settings, dict):
                raise ValueError("reaper_settings must be a dict")
            unknown = set(reaper_settings) - {"check_interval", "idle_timeout"}
            if unknown:
                raise ValueError("unknown reaper_settings: %s" % ", ".join(sorted(unknown)))
            if "idle_timeout" in reaper_settings:
                keep_alive_timeout = _check_seconds("reaper_settings['idle_timeout']",
                                                    reaper_settings["idle_timeout"])
            if "check_interval" in reaper_settings:
                _check_seconds("reaper_settings['check_interval']",
                               reaper_settings["check_interval"])
        self.debug = debug
        self.gc_freeze = gc_freeze
        self.gc_threshold = gc_threshold
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.max_form_parts = max_form_parts
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.response_timeout = response_timeout
        self.max_connections = max_connections
        if log_request is not None:  # Japronto's name for a per-request log line
            self.access_log = _check_bool("log_request", log_request)
        self._check_settings()
        if json_dumps is not None:
            if not callable(json_dumps):
                raise ValueError("json_dumps must be callable")
            global _json_dumps
            _json_dumps = json_dumps
        self.router = Router()
        self._error_handlers = {}
        self._extensions = {}       # extend_request: name -> class attribute
        self._request_hooks = []
        self._response_hooks = []
        self._startup = []
        self._shutdown = []
        self._server = None

    def _check_settings(self):
        """Check the settings, as given to Application() or run(), or
        assigned to their attributes since (app.max_body_size = N): an
        invalid one raises ValueError naming it, before anything serves."""
        self.debug = _check_bool("debug", self.debug)
        self.gc_freeze = _check_bool("gc_freeze", self.gc_freeze)
        g = self.gc_threshold
        if g is not None and (type(g) is not int or not 1 <= g <= 2 ** 31 - 1):
            raise ValueError("gc_threshold must be None or an int from 1 to 2**31-1, not %r"
                             % (g,))
        self.max_header_size = _check_size("max_header_size", self.max_header_size, 256,
                                           maximum=1 << 30)
        self.max_headers = _check_size("max_headers", self.max_headers, 1, maximum=65536)
        self.max_body_size = _check_size("max_body_size", self.max_body_size, 0)
        self.max_form_parts = _check_size("max_form_parts", self.max_form_parts, 1,
                                          allow_none=True)
        self.header_timeout = _check_seconds("header_timeout", self.header_timeout)
        self.body_timeout = _check_seconds("body_timeout", self.body_timeout)
        self.keep_alive_timeout = _check_seconds("keep_alive_timeout", self.keep_alive_timeout)
        if self.response_timeout is not None:
            self.response_timeout = _check_seconds("response_timeout", self.response_timeout)
        self.max_connections = _check_size("max_connections", self.max_connections, 1,
                                           allow_none=True)
        self.proxy_headers = _check_bool("proxy_headers", self.proxy_headers)
        self.access_log = _check_bool("access_log", self.access_log)
        if self.access_log_format not in ("text", "json"):
            raise ValueError("access_log_format must be 'text' or 'json', not %r"
                             % (self.access_log_format,))
        if self.forwarded_allow_ips is not None:
            # assigned to the attribute: checked (and made a tuple) as run()'s
            _set_proxy_and_log_settings(self, None, self.forwarded_allow_ips, None, None)

    @property
    def loop(self):
        if self._loop is None:
            import uvloop
            self._loop = uvloop.new_event_loop()
        return self._loop

    def url_for(self, name, /, **params):
        """The path of the route named name, with its parameters filled in."""
        return self.router.url_for(name, **params)

    # ---- extension points ----------------------------------------------------

    def extend_request(self, fn, *, name=None, property=False):
        """Add a method (or, with property=True, a property) to every request."""
        if not callable(fn):
            raise TypeError("extend_request needs a callable")
        if name is None:
            name = getattr(fn, "__name__", None)
            if name is None:
                raise TypeError("extend_request needs name= for %r, which has no __name__"
                                % (fn,))
        elif not isinstance(name, str):
            raise TypeError("extend_request name must be a str, not %r" % (name,))
        if not name.isidentifier() or name.startswith("__"):
            raise ValueError("extend_request name %r is no attribute name (an identifier, "
                             "not a dunder)" % (name,))
        if hasattr(_core.Request, name) and name not in _EXTENDED:
            raise ValueError("Request already has an attribute %r" % name)
        if property:
            check_arity(fn, 1, "extend_request property")
        else:
            try:
                inspect.signature(fn).bind_partial(None)
            except TypeError as e:
                raise TypeError("extend_request method %r must take the request as its "
                                "first argument: %s" % (fn, e)) from None
            except ValueError:
                pass        # a builtin without a signature
        _EXTENDED.add(name)
        if property:
            fn = builtins_property(fn)
        elif not isinstance(fn, types.FunctionType):
            # a bound method, a partial, a builtin or a callable object does
            # not bind as a class attribute: called with the request first
            # all the same, as Japronto did (functools.partial(fn, request))
            fn = _request_method(fn)
        self._extensions[name] = fn
        setattr(_core.Request, name, fn)

    def _install_extensions(self):
        """The request class as this app extended it: its extensions in
        place, another app's taken away (the class is one for every app)."""
        for name in _EXTENDED - set(self._extensions):
            delattr(_core.Request, name)
            _EXTENDED.discard(name)
        for name, attr in self._extensions.items():
            setattr(_core.Request, name, attr)

    def on_request(self, fn):
        """fn(request), sync or async, runs before the view; a Response it
        returns is sent instead of calling the view.  Usable as a decorator."""
        self._add_hook(self._request_hooks, fn)
        return fn

    def on_response(self, fn):
        """fn(request, response), sync or async, runs after the view, also on
        the answer made from an exception the view or an on_request hook
        raised; it may change the response, or return a new one.  Usable as
        a decorator."""
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
        _refuse_generator(fn, "hook")
        check_arity(fn, 2 if lst is self._response_hooks else 1, "hook")
        if self._server is not None:
            raise RuntimeError("hooks cannot be added once the app is serving")
        lst.append(fn)

    def _wrap_view(self, view):
        """Compose on_request/on_response hooks around a view, once, at
        start-up; with no hook registered the view is called directly.

        The hooks also see the answers made from an exception: one raised by
        the view or by an on_request hook is turned into its response here
        (error handlers, 400/408/413/503, the 500) and the on_response hooks
        run on that.  An on_response hook that raises gives a plain 500 that
        no hook sees."""
        pre, post = tuple(self._request_hooks), tuple(self._response_hooks)
        if not pre and not post:
            # an async def that cannot suspend runs as a plain call
            return _never_suspends(view) or view
        handle_error, hook_failed = self._handle_error, self._response_hook_failed
        # the on_response hooks see the answer a file gives (its 304, 206
        # or 404, its ETag), not the Response(file=) that names it
        from .streams import _resolve_file

        async def respond(request, response):
            """The answer, from a Response or an awaitable that gives one
            (a sync view's coroutine), through the on_response hooks."""
            if type(response) is not Response and inspect.isawaitable(response):
                try:
                    response = await response
                    _check_response(response)
                except _ANSWERED as exc:
                    response = handle_error(request, exc)
            if response is _WS_ACCEPT:
                return response
            if post and response.file is not None:
                response = _resolve_file(request, response)
            try:
                for h in post:
                    r = h(request, response)
                    if inspect.isawaitable(r):
                        r = await r
                    if r is not None:
                        response = _hook_result(h, r)
            except _ANSWERED as exc:
                return hook_failed(request, exc)
            return response

        if not any(map(_is_async, pre + post + (view,))):
            def hooked(request):
                try:
                    for h in pre:
                        response = h(request)
                        if response is not None:
                            response = _hook_result(h, response, "on_request")
                            break
                    else:
                        response = view(request)
                        if type(response) is not Response and inspect.isawaitable(response):
                            # a sync view's coroutine (as Japronto ran
                            # them): answered as an async view's
                            return respond(request, response)
                    _check_response(response)
                except _ANSWERED as exc:
                    response = handle_error(request, exc)
                if response is _WS_ACCEPT:
                    return response
                if post and response.file is not None:
                    response = _resolve_file(request, response)
                try:
                    for h in post:
                        r = h(request, response)
                        if r is not None:
                            response = _hook_result(h, r)
                except _ANSWERED as exc:
                    return hook_failed(request, exc)
                return response
        else:
            async def hooked(request):
                try:
                    for h in pre:
                        response = h(request)
                        if inspect.isawaitable(response):
                            response = await response
                        if response is not None:
                            response = _hook_result(h, response, "on_request")
                            break
                    else:
                        response = view(request)
                        if inspect.isawaitable(response):
                            response = await response
                    _check_response(response)
                except _ANSWERED as exc:
                    # CancelledError included: a view cancelled at shutdown
                    # gets its 503, and the hooks see it
                    response = handle_error(request, exc)
                return await respond(request, response)
        hooked.__wrapped__ = view
        # its Task is named after the view (conn.c conn_task_name)
        hooked.__qualname__ = getattr(view, "__qualname__", hooked.__qualname__)
        return hooked

    def _ws_gate(self):
        """What runs before a WebSocket route's 101 when the app has
        on_request hooks: the hooks, as before a view.  When none answers,
        the upgrade goes on (_WS_ACCEPT; the on_response hooks do not see
        the 101).  A Response one returns, or the answer made from an
        exception one raised, goes through the on_response hooks and is
        sent instead: the connection then ends."""
        if not self._request_hooks:
            return None
        return self._wrap_view(_ws_accept)

    async def _run_hooks(self, hooks):
        for fn in hooks:
            r = fn(self)
            if inspect.isawaitable(r):
                await r

    # ---- errors ------------------------------------------------------------

    def add_error_handler(self, exc_type, handler):
        """handler(request, exc) answers exceptions of class exc_type (the
        most specific class registered wins); exc_type None, as in Japronto,
        answers any exception no class-specific handler takes."""
        if exc_type is not None and not (isinstance(exc_type, type)
                                         and issubclass(exc_type, BaseException)):
            raise TypeError("add_error_handler needs an exception class or None, not %r"
                            % (exc_type,))
        if self._server is not None:
            raise RuntimeError("error handlers cannot be added once the app is serving")
        if not callable(handler):
            raise TypeError("error handler must be callable")
        _refuse_generator(handler, "error handler")
        if _is_async(handler):
            raise TypeError("error handler %r is an async def: it must return a Response "
                            "itself (a view may await, then raise)" % (handler,))
        check_arity(handler, 2, "error handler")
        self._error_handlers[exc_type] = handler

    def _error_handler_for(self, exc):
        """The registered handler for exc: its most specific class, else
        the catch-all (None), else None.  A handler for RouteNotFoundException
        does not take a MethodNotAllowed: that stays a 405 with its Allow."""
        for cls in type(exc).__mro__:
            if cls is RouteNotFoundException and isinstance(exc, MethodNotAllowed):
                continue
            handler = self._error_handlers.get(cls)
            if handler is not None:
                return handler
        return self._error_handlers.get(None)

    def _handle_error(self, request, exc):
        """Called from C when a view raised: returns the Response to send."""
        if isinstance(exc, StopIteration):
            exc = _coroutine_error(request, exc)
        handler = self._error_handler_for(exc)
        if handler is not None:
            try:
                return _run_error_handler(handler, request, exc)
            except Exception as e:  # a broken handler: fall through to 500
                e.__context__ = exc
                exc = e
        if isinstance(exc, asyncio.CancelledError):
            return Response(code=503, text="Service Unavailable")
        if isinstance(exc, _core.ClientDisconnected):
            # its client has gone: the answer goes nowhere, nothing to log
            return Response(code=400, text="Bad Request")
        allow = exc.args[0] if isinstance(exc, MethodNotAllowed) and exc.args else None
        if isinstance(allow, str) and allow.isascii() and allow.isprintable():
            # raised by the view itself, naming the methods it takes
            return Response(code=405, text="Method Not Allowed", headers={"Allow": allow})
        if isinstance(exc, RouteNotFoundException):
            # raised by the view itself (a missing object): Japronto's 404
            return Response(code=404, text="Not Found")
        if isinstance(exc, _core.RequestTooLarge):
            return Response(code=413, text="Content Too Large")
        if isinstance(exc, _core.RequestTimeout):
            return Response(code=408, text="Request Timeout")
        if isinstance(exc, _core.BadRequest):
            return Response(code=400, text="Bad Request: %s" % exc if self.debug
                            else "Bad Request")
        return self._internal_error(request, exc, "view")

    def _response_hook_failed(self, request, exc):
        """An on_response hook raised: a plain 500 (503 if it was cancelled at
        shutdown), without error handlers and without running the hooks again."""
        if isinstance(exc, asyncio.CancelledError):
            return Response(code=503, text="Service Unavailable")
        return self._internal_error(request, exc, "on_response hook")

    def _internal_error(self, request, exc, where):
        """Log exc with its traceback and return the 500 (traceback in debug)."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write("fulmen: error in %s for %r:\n%s" % (where, request, tb))
        if self.debug:
            return Response(code=500, text="Internal Server Error\n\n" + tb)
        return Response(code=500, text="Internal Server Error")

    # ---- serving -----------------------------------------------------------

    def _not_found(self, request, allow):
        """Called from C for the answers no route gives (404, 405, the
        automatic OPTIONS) when the app has hooks or handlers for them: the
        on_request/on_response hooks see these too (CORS preflights)."""
        return self._wrap_view(lambda r: self._automatic_answer(r, allow))(request)

    def _automatic_answer(self, request, allow):
        if request.method == "OPTIONS" and (allow is not None or request.target == "*"):
            return Response(code=204, headers={"Allow": allow} if allow else None)
        exc = RouteNotFoundException() if allow is None else MethodNotAllowed(allow)
        handler = self._error_handler_for(exc)
        if handler is not None:
            return _run_error_handler(handler, request, exc)
        if allow is None:
            return Response(code=404, text="Not Found")
        return Response(code=405, text="Method Not Allowed", headers={"Allow": allow})

    def _make_server(self, loop):
        self._check_settings()
        self._install_extensions()
        matcher = self.router.build(self._wrap_view, self._ws_gate())
        server = _core.Server(self, matcher, loop, self._handle_error, self.debug,
                            self.max_header_size, self.max_headers,
                            self.max_body_size, self.header_timeout,
                            self.body_timeout, self.keep_alive_timeout,
                            self._not_found if (
                                self._request_hooks or self._response_hooks or any(
                                    c in (None, Exception, BaseException)
                                    or issubclass(c, RouteNotFoundException)
                                    for c in self._error_handlers)) else None)
        server.task_type = _stock_type(loop, "create_task", asyncio.Task)
        server.future_type = _stock_type(loop, "create_future", asyncio.Future)
        server.task_eager = sys.version_info >= (3, 12)  # Task(eager_start=)
        server.max_form_parts = self.max_form_parts or 0
        if self.response_timeout is not None:
            server.response_timeout_ms = max(1, round(self.response_timeout * 1000))
        server.proxy_headers = self.proxy_headers
        server.forwarded_allow = _allow_blob(self.forwarded_allow_ips or "127.0.0.1")
        if self.access_log:
            server.access_log = 2 if self.access_log_format == "json" else 1
        return server

    def _bind(self, host, port, backlog, *, reuseport=False):
        """A listening TCP socket on (host, port); an IPv6 host (one with a
        ':') gets an AF_INET6 socket, dual-stack when host is '::'."""
        return _tcp_listener(host, port, backlog, reuseport=reuseport, join=True)

    def serve(self, sock, *, loop=None, graceful_timeout=30.0, ssl=None):
        """Serve on an already bound, listening socket until SIGTERM/SIGINT.

        The first signal stops gracefully: no new connections, idle ones
        close, requests in flight finish (up to graceful_timeout seconds).
        A second SIGINT stops at once, and so does a second SIGTERM while
        the shutdown hooks run.
        """
        graceful_timeout = _check_seconds("graceful_timeout", graceful_timeout)
        _check_listening(sock)
        if ssl is not None:
            import ssl as _ssl
            if not isinstance(ssl, _ssl.SSLContext):
                raise TypeError("serve(): ssl must be an ssl.SSLContext or None, not %r"
                                % (ssl,))
        loop = loop or self.loop
        asyncio.set_event_loop(loop)
        factory = self._make_server(loop)
        self._server = factory
        if self.gc_threshold is not None:
            # the young generation: before the startup hooks, which may set
            # their own thresholds
            gc.set_threshold(self.gc_threshold, *gc.get_threshold()[1:])
        loop.run_until_complete(self._run_hooks(self._startup))
        # The TLS handshake happens before the connection (and its timeouts)
        # exists: bound it by header_timeout, not by uvloop's 60 s default.
        # Once closed, a connection's own deadline (body_timeout without
        # progress) bounds sending what is left and the close_notify
        # exchange; uvloop's (30 s in all, counted from close) would cut a
        # large answer to a slow but steady reader, and wait 30 s for a
        # close_notify a client may never send.  Its own stays, far off, as
        # a last resort.
        # TLS in C (docs/tls.md): uvloop then serves plain TCP, and each
        # connection runs OpenSSL on its socket with the context's SSL_CTX
        transport_ssl = None if ssl is None or _tls_in_c(factory, ssl) else ssl
        tls = {} if transport_ssl is None else {"ssl_handshake_timeout": self.header_timeout,
                                                "ssl_shutdown_timeout": 3600.0}
        if self.max_connections is None:
            server = loop.run_until_complete(
                loop.create_server(factory, sock=sock, ssl=transport_ssl,
                                   backlog=getattr(self, "_backlog", 1024), **tls))
        else:
            server = self._acceptor = _LimitedAcceptor(loop, sock, factory, transport_ssl,
                                                       self.max_connections, tls)
        stopping = []
        # one sweep over all connections a few times a second enforces every
        # timeout: no timer per connection
        limits = [self.header_timeout, self.body_timeout, self.keep_alive_timeout]
        if self.response_timeout:
            limits.append(self.response_timeout)
        interval = max(0.05, min(1.0, min(limits) / 4))
        sweeper = []

        def sweep():
            factory.sweep()
            sweeper[:] = [loop.call_later(interval, sweep)]

        def wait_idle(deadline):
            if factory.connections <= 0:
                loop.stop()
            elif loop.time() >= deadline:
                # past the grace period: what still runs is cancelled and
                # answered 503, then the loop gets a moment to send that
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.call_later(0.2, loop.stop)
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

        # uvloop's remove_signal_handler leaves its own handler in place, which
        # would swallow these signals for good: they are put back by hand
        saved = {sig: signal.getsignal(sig)
                 for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        # SIGHUP asks a master to replace its workers; a process serving on
        # its own has none to replace, and SIGHUP's default would kill it
        # (a systemd ExecReload, say): said and ignored.  Under a master
        # the worker ignores it already.
        hup = signal.getsignal(signal.SIGHUP) == signal.SIG_DFL

        def arm():
            # uvloop drops a signal that comes after add_signal_handler but
            # while the loop does not run: the handlers go in from the
            # loop's first callback, and until then a signal has its
            # default effect (SIGTERM ends the process, which serves nothing
            # yet).  Then the line: a SIGTERM sent on seeing it must count.
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop, sig)
            if hup:
                loop.add_signal_handler(signal.SIGHUP, _log_hup)
            _announce(self, sock, ssl)

        sweeper.append(loop.call_later(interval, sweep))
        loop.call_soon(arm)
        if self.gc_freeze:
            # what exists now (modules, routes, settings) lives as long as
            # the process: out of the collector's sight, a full collection
            # only walks what requests made (garbage cycles go first)
            gc.collect()
            gc.freeze()
        try:
            loop.run_forever()
        finally:
            for h in sweeper:
                h.cancel()
            server.close()
            factory.close_io()
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            # while the shutdown hooks run, a second signal ends the process
            # at once (a hook that hangs must not make it unkillable); added
            # from inside the running loop, where uvloop sees signals at
            # once (until then serving's handlers still take them)
            loop.call_soon(_arm_exit_at_once, loop)
            try:
                loop.run_until_complete(self._run_hooks(self._shutdown))
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
                for sig, handler in saved.items():
                    if handler is not None:
                        signal.signal(sig, handler)
            factory.flush_log()

    def run(self, host="0.0.0.0", port=8080, *, worker_num=None, debug=None,
            backlog=1024, reload=False, ssl=None, uds=None, fd=None,
            graceful_timeout=30.0, max_requests=None, max_requests_jitter=0,
            max_rss=None, proxy_headers=None, forwarded_allow_ips=None,
            access_log=None, access_log_format=None, worker_timeout=None,
            max_start_failures=None):
        """Bind and serve until SIGTERM/SIGINT.

        worker_num=None serves in this process (the simplest to debug).  Any
        number starts a supervisor instead: a master that serves nothing and
        keeps worker_num forked workers running (0 means one per CPU).  So do
        reload=True, max_requests, max_rss and worker_timeout, which need
        someone to restart the worker.

        worker_timeout: a worker whose event loop does not turn for that many
        seconds (a view that blocks) is killed, with its traceback printed,
        and replaced.  None means 30 s under a master (off with reload, where
        a debugger may stop a worker), 0 turns it off.

        max_start_failures: under a master, after that many workers in a row
        failed to start (an on_startup hook that raises, say), the master
        stops the others and exits 1.  None (the default) retries for ever,
        with a back-off up to 5 s.

        The socket is TCP on (host, port) (IPv4, or IPv6 when host has a
        ':'), or the unix socket uds, or the inherited listening socket fd; a
        systemd socket-activated unit (LISTEN_FDS/LISTEN_PID) serves fd 3.
        ssl is an ssl.SSLContext or a (certfile, keyfile) pair.
        """
        if _ignore_run:
            return      # the command line is importing the app's module
        if debug is not None:
            self.debug = debug      # checked with the others (_check_settings)
        if worker_num is not None:
            _check_size("worker_num", worker_num, 0, maximum=_MAX_WORKERS)
        reload = _check_bool("reload", reload)
        graceful_timeout = _check_seconds("graceful_timeout", graceful_timeout)
        max_requests = _check_size("max_requests", max_requests, 1, allow_none=True)
        max_requests_jitter = _check_size("max_requests_jitter", max_requests_jitter, 0)
        max_start_failures = _check_size("max_start_failures", max_start_failures, 1,
                                         allow_none=True)
        if max_requests_jitter and max_requests is None:
            raise ValueError("max_requests_jitter needs max_requests")
        if max_rss is not None:
            if (isinstance(max_rss, bool) or not isinstance(max_rss, (int, float))
                    or not 0 < max_rss < float("inf")):
                raise ValueError("max_rss must be more than 0 MB, not %r" % (max_rss,))
            max_rss = float(max_rss)
        if worker_timeout is not None and (isinstance(worker_timeout, bool)
                                           or worker_timeout != 0):   # 0: off
            try:
                worker_timeout = _check_seconds("worker_timeout", worker_timeout)
            except ValueError as e:
                if isinstance(worker_timeout, bool) or not isinstance(worker_timeout,
                                                                      (int, float)):
                    raise
                raise ValueError("%s (0 turns it off)" % e) from None
        if not isinstance(host, str):
            raise ValueError("host must be a str, not %r" % (host,))
        if fd is not None and (isinstance(fd, bool) or not isinstance(fd, int) or fd < 0):
            raise ValueError("fd must be a file descriptor number, not %r" % (fd,))
        if uds is not None:
            path = os.fspath(uds) if isinstance(uds, os.PathLike) else uds
            if not isinstance(path, str) or not path:
                raise ValueError("uds must be a path, not %r" % (uds,))
            uds = path
            if fd is not None:
                raise ValueError("uds and fd exclude each other (fd is served, uds was "
                                 "ignored)")
        _set_proxy_and_log_settings(self, proxy_headers, forwarded_allow_ips,
                                    access_log, access_log_format)
        self._check_settings()
        # the routes too, here: under a master they are built in each
        # worker, which would fail for good, and be restarted for ever,
        # while the master held the port
        self.router.build(self._wrap_view, self._ws_gate())
        ctx = _ssl_context(ssl)
        # listen() takes an int; the kernel caps it at net.core.somaxconn
        self._backlog = _check_size("backlog", backlog, 1, maximum=65535)
        from . import supervisor
        _nonblocking_stderr()
        inprocess = worker_num is None and not (reload or max_requests or max_rss
                                                or worker_timeout)
        if worker_timeout is None:
            worker_timeout = 0.0 if reload else _WORKER_TIMEOUT
        options = dict(graceful_timeout=graceful_timeout, ssl=ctx,
                       max_requests=max_requests, max_requests_jitter=max_requests_jitter,
                       max_rss=max_rss, reload=reload,
                       worker_timeout=float(worker_timeout))
        if os.environ.get(supervisor.WORKER_ENV):
            # a worker that a reloading master started by running us again
            raise SystemExit(supervisor.exec_worker_main(self, **options))
        # a supervisor makes one SO_REUSEPORT socket per worker (supervisor.py)
        sock = _listener(host, port, backlog, uds, fd, reuseport=not inprocess)
        made = _file_id(uds)
        try:
            if inprocess:
                self.serve(sock, graceful_timeout=graceful_timeout, ssl=ctx)
                code = 0
            else:
                workers = worker_num if worker_num else (
                    1 if worker_num is None else os.cpu_count() or 1)
                code = supervisor.Supervisor(self, sock, workers=workers,
                                             max_start_failures=max_start_failures,
                                             **options).run()
        finally:
            _close_listener(sock, uds, made)
        if code:
            raise SystemExit(code)


# ---- binding and serving helpers (used by run() and the supervisor) -------------

class _Stderr(io.RawIOBase):
    """fd 2 for sys.stderr while serving: written as far as it takes bytes
    without blocking, in turn with the access log (connlog.c), so that a
    log reader that stops reading a pipe stops neither a worker nor the
    master (whose watchdog would go with it).  What fd 2 does not take
    waits, up to 1 MiB, then whole lines are dropped and counted."""

    def writable(self):
        return True

    def fileno(self):
        return 2

    def isatty(self):
        return os.isatty(2)

    def write(self, b):
        _core._stderr_write(b)
        return len(b)

    def flush(self):
        _core._stderr_write(b"")


def _request_method(fn):
    """A function, which binds to the request, that calls fn with it."""
    def method(request, *args, **kwargs):
        return fn(request, *args, **kwargs)
    return functools.update_wrapper(method, fn, updated=())


def _nonblocking_stderr():
    """sys.stderr through _Stderr, unless the app put another one in place;
    at exit stderr gets a second to take what waits."""
    err = sys.stderr
    if err is None or err is not sys.__stderr__:
        return
    try:
        if err.fileno() != 2:
            return
        err.flush()
    except (OSError, ValueError):
        return
    sys.stderr = io.TextIOWrapper(_Stderr(), encoding=err.encoding, errors="backslashreplace",
                                  write_through=True)
    _retarget_log_handlers(err, sys.stderr)
    atexit.register(_drain_stderr)
    # a forked worker does not write again what waited in its master
    os.register_at_fork(after_in_child=lambda: _core._stderr_drain(-1))


def _retarget_log_handlers(old, new):
    """The logging handlers made before run() that write to the old stderr
    (logging.basicConfig(), a StreamHandler()) write to the new one: they
    held the blocking stream, and a full pipe stopped the process."""
    logging = sys.modules.get("logging")
    if logging is None:
        return
    loggers = [logging.getLogger()]
    loggers += [lg for lg in list(logging.Logger.manager.loggerDict.values())
                if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for h in list(lg.handlers):
            if isinstance(h, logging.StreamHandler) and h.stream is old:
                h.setStream(new)


def _drain_stderr():
    """Before the process exits: a second at most for stderr to take what
    waits (os._exit skips atexit: the supervisor calls this itself)."""
    _core._stderr_drain(1.0)


# Settings the C engine reads from the Application; run() and the CLI set them.
Application.proxy_headers = False
Application.forwarded_allow_ips = ("127.0.0.1",)
Application.access_log = False
Application.access_log_format = "text"


def _check_listening(sock):
    """serve()'s socket: a stream socket, bound and listening (uvloop would
    listen on one never bound, at a random port of every address)."""
    if not isinstance(sock, socket.socket):
        raise TypeError("serve() needs a socket.socket, not %r" % (sock,))
    try:
        stream = sock.type == socket.SOCK_STREAM
        listening = stream and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError as e:
        raise ValueError("serve(): the socket cannot be used: %s" % e) from None
    if not listening:
        raise ValueError("serve() needs a bound, listening stream socket (bind() and "
                         "listen() it first), not %r" % (sock,))


def _allow_blob(allow):
    """forwarded_allow_ips (a comma-separated str or a list of str) in the
    form connlog.c reads: None when "*" trusts every peer, else 18 bytes per
    network (its family, 4 or 6, its prefix length, its address in 16
    bytes).  An address is a network of one; ValueError names an entry
    that is neither."""
    import ipaddress
    if isinstance(allow, str):
        allow = allow.split(",")
    out = []
    every = False
    for entry in allow:
        entry = entry.strip() if isinstance(entry, str) else entry
        if entry == "*":
            every = True    # (the other entries are still checked: a typo is said)
            continue
        if entry == "":
            continue
        try:
            if not isinstance(entry, str):      # ip_network() takes ints and packed bytes
                raise ValueError(entry)
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError("forwarded_allow_ips: %r is not an IP address or network "
                             "(such as 10.0.0.5, 10.0.0.0/8 or fd00::/8)" % (entry,)) from None
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None \
                and net.prefixlen >= 96:
            # ::ffff:10.0.0.0/104 is what a dual-stack socket names 10.0.0.0/8
            net = ipaddress.IPv4Network((net.network_address.ipv4_mapped, net.prefixlen - 96))
        out.append(bytes([net.version, net.prefixlen])
                   + net.network_address.packed.ljust(16, b"\0"))
    return None if every else b"".join(out)


def _set_proxy_and_log_settings(app, proxy_headers, forwarded_allow_ips, access_log,
                                access_log_format):
    """Store the proxy and access-log settings on app (run() then checks them
    with the others); None keeps the current one.
    forwarded_allow_ips is a comma-separated string or an iterable of
    addresses; "*" trusts every peer."""
    if proxy_headers is not None:
        app.proxy_headers = proxy_headers
    if forwarded_allow_ips is not None:
        ips = forwarded_allow_ips
        if isinstance(ips, str):
            ips = ips.split(",")
        try:
            ips = list(ips)
        except TypeError:
            ips = None
        if ips is None or not all(isinstance(ip, str) for ip in ips):
            raise ValueError("forwarded_allow_ips must be a str or a list of str, not %r"
                             % (forwarded_allow_ips,))
        ips = tuple(ip.strip() for ip in ips if ip.strip())
        if not ips:
            raise ValueError("forwarded_allow_ips is empty")
        _allow_blob(ips)        # each one an address or a network
        app.forwarded_allow_ips = ips
    if access_log is not None:
        app.access_log = access_log
    if access_log_format is not None:
        app.access_log_format = access_log_format


def _arm_exit_at_once(loop):
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _exit_at_once, sig)


def _exit_at_once(signum):
    sys.stderr.write("fulmen: %s during the shutdown hooks, exiting at once\n"
                     % signal.Signals(signum).name)
    _drain_stderr()
    os._exit(1)


def _log_hup():
    sys.stderr.write("fulmen: SIGHUP ignored: replacing workers gracefully needs a "
                     "master (--workers N, or run(worker_num=N))\n")


def _tls_in_c(server, ctx):
    """Have the server run TLS itself (tls.c) with ctx's SSL_CTX; False when
    it cannot, and uvloop's TLS serves.  Not for a context with Python
    callbacks that expect an ssl.SSLSocket or SSLObject behind each
    connection (sni_callback, keylog_filename, _msg_callback; PSK callbacks
    are checked in C), nor for one that asks for client certificates after
    the handshake (post_handshake_auth: the view would need the SSLObject's
    verify_client_post_handshake), nor for a class that is not CPython's.
    Client certificates asked in the handshake are read by the view from
    request.transport (fulmen._tls).  FULMEN_TLS_C=0 turns it off, and so
    does FULMEN_DIRECT_IO=0 (the server's direct_io, checked in C)."""
    import _ssl
    import ssl as _ssl_mod
    if os.environ.get("FULMEN_TLS_C") == "0" or not isinstance(ctx, _ssl._SSLContext):
        return False
    if ctx.verify_mode != _ssl_mod.CERT_NONE and (
            getattr(ctx, "post_handshake_auth", False)
            or not hasattr(_ssl, "_test_decode_cert") or not hasattr(os, "memfd_create")):
        return False
    if (getattr(ctx, "sni_callback", None) is not None
            or getattr(ctx, "keylog_filename", None) is not None
            or getattr(ctx, "_msg_callback", None) is not None):
        return False
    return server._use_tls(ctx, int(ctx.options), _ssl_mod.OPENSSL_VERSION_NUMBER)


def _ssl_context(ssl):
    """None, an ssl.SSLContext (used as is) or a (certfile, keyfile) pair."""
    if ssl is None:
        return None
    import ssl as _ssl
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    if isinstance(ssl, (tuple, list)) and len(ssl) == 2:
        ctx = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)

        def encrypted():
            # not OpenSSL's passphrase prompt, which a service cannot answer
            raise ValueError("the TLS key %s is encrypted: give a key without a passphrase, "
                             "or an ssl.SSLContext that has loaded it with its password"
                             % (ssl[1],))
        try:
            ctx.load_cert_chain(ssl[0], ssl[1], password=encrypted)
        except OSError as e:    # SSLError too; neither names the file
            hint = (" (is each file what it is given as, the certificate first and "
                    "the key second, in PEM?)" if "PEM" in str(e) else "")
            err = OSError("cannot load the TLS certificate %s and key %s: %s%s"
                          % (ssl[0], ssl[1], e, hint))
            err.errno = e.errno
            raise err from None
        return ctx
    raise ValueError("ssl must be an ssl.SSLContext or a (certfile, keyfile) pair")


def _listen_error(what, e):
    """e (an OSError) again, its message saying what could not be served."""
    err = OSError("%s: %s" % (what, e))
    err.errno = e.errno
    return err


def _tcp_listener(host, port, backlog, *, reuseport=False, join=False):
    """A listening socket on (host, port).  With reuseport and not join, the
    port must be free: SO_REUSEPORT alone would let this process join the
    sockets of another server of the same user, and take half its clients.
    join=True is for the supervisor's further sockets on its own port."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError("port must be from 0 to 65535, not %r" % (port,))
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    if reuseport and port and not join:
        # a plain socket cannot bind where anyone listens
        _tcp_listener(host, port, 1, reuseport=False).close()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # '::' serves IPv4 too; '::1' and other addresses are IPv6 only anyway
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host.strip("[]") if family == socket.AF_INET6 else host, port))
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        where = "[%s]" % host.strip("[]") if family == socket.AF_INET6 else host
        raise _listen_error("cannot listen on %s:%d" % (where, port), e) from None
    sock.setblocking(False)
    return sock


def _unix_listener(path, backlog):
    """A listening unix socket at path.  A socket file nobody listens on any
    more (a crashed server's) is removed; a live one is an error.  The socket
    is made 0o666 so that a proxy running as another user can connect:
    restrict access with the permissions of the directory it is in."""
    import stat
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            # bind() makes its socket only where nothing is, a link included
            # (a dangling one read as "Address already in use")
            raise OSError("%s is a symbolic link (to %s): give the path the socket is to "
                          "be made at" % (path, os.readlink(path)))
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError("%s exists and is not a socket" % path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)                     # stale
        else:
            raise OSError("a server is already listening on %s" % path)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise _listen_error("cannot listen on unix:%s" % path, e) from None
    sock.setblocking(False)
    return sock


def _fd_listener(fd, backlog):
    """The inherited socket fd, which must be a stream socket; it is made to
    listen if it does not yet (systemd passes it listening)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise _listen_error("cannot serve fd %d" % fd, e) from None

    def refused(err):
        sock.detach()       # (the fd stays the caller's)
        return err
    if sock.type != socket.SOCK_STREAM:
        raise refused(OSError("fd %d is not a stream socket" % fd))
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        # not listening yet: it must be bound (else listen() would bind it
        # to every interface, at a port of the kernel's choosing), and not
        # connected (a client's socket)
        name = sock.getsockname()
        if (name[1] == 0 if sock.family in (socket.AF_INET, socket.AF_INET6)
                else sock.family == socket.AF_UNIX and not name):
            raise refused(OSError("fd %d is a socket bound to no address: bind it first, "
                                  "or let fulmen bind (--host and --port, or --uds)" % fd))
        try:
            sock.getpeername()
        except OSError:
            pass
        else:
            raise refused(OSError("fd %d is a connected socket, not one to listen on" % fd))
        try:
            sock.listen(backlog)
        except OSError as e:
            raise refused(_listen_error("cannot listen on fd %d" % fd, e)) from None
    sock.setblocking(False)
    return sock


def _systemd_fd():
    """fd 3 when systemd passed us sockets (LISTEN_PID is us, LISTEN_FDS >= 1),
    else None.  The variables are removed so that children do not see them."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        nfds = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return None
    if pid != os.getpid() or nfds < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return 3


def _listener(host, port, backlog, uds=None, fd=None, reuseport=False):
    """The listening socket run() serves: fd, then uds, then systemd's, then TCP."""
    if fd is None and uds is None:
        fd = _systemd_fd()
    if fd is not None:
        return _fd_listener(fd, backlog)
    if uds is not None:
        return _unix_listener(uds, backlog)
    return _tcp_listener(host, port, backlog, reuseport=reuseport)


def _file_id(path):
    """(device, inode) of path, or None."""
    try:
        st = os.stat(path)
    except (OSError, TypeError):
        return None
    return st.st_dev, st.st_ino


def _close_listener(sock, uds, made):
    """Close the socket run() made; the unix socket file goes too, unless
    another server has replaced it since (made is its _file_id)."""
    sock.close()
    if made is not None and _file_id(uds) == made:
        try:
            os.unlink(uds)
        except OSError:
            pass


def _announce(app, sock, ssl):
    """Tell a supervisor that this worker accepts connections, then print
    the listening line (tests and tools wait for it).  In this order, one
    who acts on the line (a SIGHUP to the master, say) acts after the master
    can know this worker serves: the master would otherwise take it for one
    still starting, and retire it at once."""
    ready = getattr(app, "_on_listening", None)
    if ready is not None:
        ready()
    if sock.family == socket.AF_UNIX:
        where = "unix:%s" % (sock.getsockname(),)
    else:
        host, port = sock.getsockname()[:2]
        where = "%s://%s:%d" % ("https" if ssl else "http",
                                "[%s]" % host if ":" in host else host, port)
    sys.stderr.write("fulmen: listening on %s (pid %d)\n" % (where, os.getpid()))
    sys.stderr.flush()


class _LimitedAcceptor:
    """Accepts connections itself, for max_connections: at the limit it stops
    watching the listening socket (new clients wait in the backlog) and
    resumes when a connection closes.  Without the setting, uvloop's own
    server accepts, at no cost per connection."""

    def __init__(self, loop, sock, factory, ssl, limit, tls_options):
        self.loop, self.sock, self.factory, self.ssl = loop, sock, factory, ssl
        self.tls_options = tls_options
        self.limit = limit
        self.pending = 0
        self.watching = False
        self.closed = False
        self.failures = 0   # accept() failures in a row (EMFILE...)
        factory.on_connection_lost = self._on_lost
        self._watch()

    def _watch(self):
        if not self.watching and not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
            self.watching = True

    def _unwatch(self):
        if self.watching:
            self.loop.remove_reader(self.sock.fileno())
            self.watching = False

    def _on_readable(self):
        while self.factory.connections + self.pending < self.limit:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and the like: try again later
                if not self.failures:   # one line a spell, not one a try
                    sys.stderr.write("fulmen: accept failed: %s; trying again every 0.1 s\n"
                                     % e)
                self.failures += 1
                self._unwatch()
                self.loop.call_later(0.1, self._watch)
                return
            if self.failures:
                sys.stderr.write("fulmen: accepting again (%d tries had failed)\n"
                                 % self.failures)
                self.failures = 0
            self.pending += 1
            self.loop.create_task(self._start(conn))
        self._unwatch()

    async def _start(self, conn):
        try:
            await self.loop.connect_accepted_socket(self.factory, conn, ssl=self.ssl,
                                                    **self.tls_options)
        except OSError:
            # the client's doing (a TLS handshake that timed out or got
            # garbage): dropped quietly, as uvloop's own server does
            conn.close()
        except Exception as e:
            sys.stderr.write("fulmen: could not start a connection: %s\n" % e)
            conn.close()
        finally:
            self.pending -= 1
            # a connection that never reached the factory (a failed TLS
            # handshake) gives its slot back here: no connection_lost will
            self._on_lost()

    def _on_lost(self):
        if self.factory.connections + self.pending < self.limit:
            self._watch()

    def close(self):
        self.closed = True
        self._unwatch()

    def is_serving(self):
        return not self.closed
