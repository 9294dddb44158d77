"""Route registration: parses patterns and hands them to the C matcher.

Matching itself happens in C (fulmen/_core/router.c) on every request; this
module only runs while the app is being set up.
"""
import difflib
import dis
import functools
import inspect
import re
import sys
import types
from urllib.parse import quote

from . import _core

# what add_route returns and request.route is (japronto.router.Route)
Route = _core.Route

_KINDS = {"str": 0, "int": 1, "float": 2, "uuid": 3, "path": 4}
# a parameter's name: any text but braces, ':' (the type follows it), '/'
# and white space, as Japronto took any ({user-id}, {é}); url_for() takes
# one that is no identifier as url_for(name, **{"user-id": 1})
_NAME = re.compile(r"^[^\s{}:/]+$")
# what a parameter's value must look like for its route to take it (the
# matcher's rules, router.c router_seg_ok)
_URL_VALUE = {"str": re.compile(r".+", re.S), "path": re.compile(r".*", re.S),
              "int": re.compile(r"-?[0-9]{1,18}"),
              "float": re.compile(r"-?(?=[0-9.]{0,64}$)(?=\.?[0-9])[0-9]*\.?[0-9]*"),
              "uuid": re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")}
_METHOD = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# a serialized origin (RFC 6454 6.2): scheme "://" host [":" port], nothing after
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.\-]*://(\[[0-9a-f:.]+\]|[a-z0-9\-._~%!$&'()*+,;=]+)(:[0-9]+)?$")


class RouteError(ValueError):
    """A route pattern or route table that cannot work."""


class RouteNotFoundException(Exception):
    """No route matches the path (404); for add_error_handler."""


class MethodNotAllowed(RouteNotFoundException):
    """The path exists for other methods (405); args[0] is the Allow value.
    A RouteNotFoundException, as Japronto raised for these requests, for a
    catch-all handler that tests for it; a handler registered for that
    class does not take it (Application._error_handler_for)."""


def _is_async(handler):
    while isinstance(handler, functools.partial):
        handler = handler.func
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None))


def check_arity(fn, n, what):
    """TypeError, at set-up time, when fn cannot be called with n positional
    arguments (it would fail on every request instead).  A callable whose
    signature cannot be read (some builtins) is let through."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*range(n))
    except TypeError:
        raise TypeError("%s %r must take %d positional argument%s; its signature is %s"
                        % (what, fn, n, "" if n == 1 else "s", sig)) from None


# opcodes that let a coroutine suspend (await, async for, async with) or
# make it a generator
_SUSPENDING = frozenset(n for n in (
    "GET_AWAITABLE", "SEND", "YIELD_VALUE", "GET_AITER", "GET_ANEXT",
    "END_ASYNC_FOR", "BEFORE_ASYNC_WITH", "SETUP_ASYNC_WITH", "ASYNC_GEN_WRAP",
    "GET_YIELD_FROM_ITER") if n in dis.opmap)
_PROLOGUE_OK = frozenset(("COPY_FREE_VARS", "MAKE_CELL", "NOP"))
# names whose use means the view wants its Task, which a plain call has not
_NEEDS_TASK = frozenset(("current_task",))


def _never_suspends(view):
    """For an `async def` view with no await, async for or async with in its
    body (so it can never suspend), a plain function running the same code:
    the server then calls it like a sync view, without making a coroutine
    object per request.  None for anything else, or for bytecode this does
    not recognise (the view then runs as a coroutine, as always).

    A view that names asyncio.current_task is left a coroutine: it runs in
    its Task, and a plain call has none.  (A call to current_task() hidden in
    a helper it calls returns None.)

    One difference shows: a StopIteration the view lets out is not turned
    into the coroutine's RuntimeError here; the server's error path does that
    (app.py _coroutine_error), so error handlers and logs see what they would.

    The code differs from the coroutine's only in its prologue: the
    RETURN_GENERATOR + POP_TOP pair that turns the call into a coroutine
    becomes two NOPs (same size, so no offset moves), and CO_COROUTINE is
    cleared; on 3.12+ also in its StopIteration handler (below)."""
    if type(view) is not types.FunctionType:
        return None
    code = view.__code__
    if not code.co_flags & inspect.CO_COROUTINE or code.co_flags & (
            inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE):
        return None
    if _NEEDS_TASK.intersection(code.co_names):
        return None
    ins = list(dis.get_instructions(code))
    names = [i.opname for i in ins]
    if _SUSPENDING.intersection(names) or "RETURN_GENERATOR" not in names:
        return None
    k = names.index("RETURN_GENERATOR")
    if (names[k + 1:k + 3] != ["POP_TOP", "RESUME"] or ins[k + 2].arg != 0
            or not _PROLOGUE_OK.issuperset(names[:k])):
        return None
    if ins[k + 1].offset != ins[k].offset + 2 or ins[k + 2].offset != ins[k].offset + 4:
        return None   # inline cache entries after them: not the layout expected
    co = bytearray(code.co_code)
    co[ins[k].offset:ins[k].offset + 4] = bytes((dis.opmap["NOP"], 0)) * 2
    # 3.12+: the coroutine's exception handler turns an escaping StopIteration
    # into RuntimeError through an intrinsic that only a generator's frame may
    # call (a debug build asserts it).  It goes, and exceptions leave the plain
    # call as they are; app.py _coroutine_error does that conversion.
    stop = [i for i in ins if i.opname == "CALL_INTRINSIC_1"
            and i.argrepr == "INTRINSIC_STOPITERATION_ERROR"]
    if sys.version_info >= (3, 12) and not stop:
        return None
    for i in stop:
        co[i.offset:i.offset + 2] = bytes((dis.opmap["NOP"], 0))
    plain = types.FunctionType(code.replace(co_code=bytes(co),
                                            co_flags=code.co_flags & ~inspect.CO_COROUTINE),
                               view.__globals__, view.__name__, view.__defaults__,
                               view.__closure__)
    plain.__kwdefaults__ = view.__kwdefaults__
    functools.update_wrapper(plain, view)
    plain._fulmen_plain = True  # app.py _coroutine_error
    return plain


def _parse_segment(pattern, seg):
    """One segment of a pattern: its literal text (a str), or
    (prefix, name, kind) when it holds a parameter.  '{{' and '}}' stand for
    literal braces; a parameter may follow literal text, as in Japronto's
    /user-{id}, but nothing may follow the parameter."""
    lit, i, n = [], 0, len(seg)
    while i < n:
        if seg.startswith("{{", i) or seg.startswith("}}", i):
            lit.append(seg[i])
            i += 2
        elif seg[i] == "}":
            raise RouteError("route pattern %r: unmatched '}' in %r (write '}}' for a "
                             "literal brace)" % (pattern, seg))
        elif seg[i] == "{":
            j = seg.find("}", i)
            m = re.fullmatch(r"\{([^{}:]+)(?::([^{}]+))?\}", seg[i:j + 1]) if j >= 0 else None
            if m is None:
                raise RouteError("route pattern %r: bad parameter in %r (write {name} or "
                                 "{name:type}, and '{{' for a literal brace)" % (pattern, seg))
            if j != n - 1:
                raise RouteError(
                    "route pattern %r: a parameter must end its segment, as in "
                    "/users/{id} or /user-{id} (got %r)" % (pattern, seg))
            return "".join(lit), m.group(1).strip(), (m.group(2) or "str").strip()
        else:
            lit.append(seg[i])
            i += 1
    return "".join(lit)


def parse_pattern(pattern):
    """Split a pattern into matcher segments.

    Returns (segments, names, types): a segment is a str (literal), an int
    (a parameter kind) for a parameter that fills the segment, or a
    (prefix, kind) tuple for a parameter after literal text, as in
    /user-{id}.  '{{' and '}}' stand for literal braces.
    """
    if not isinstance(pattern, str):
        raise TypeError("a route pattern must be a str, not %s" % type(pattern).__name__)
    if not pattern.startswith("/"):
        raise RouteError("route pattern %r must start with '/'" % pattern)
    bad = next((ch for ch in pattern if ch in "?#" or ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        # a query or a fragment is no part of a path, and a control
        # character is in no request's: the route could only be reached
        # percent-encoded, and url_for() would build a link that misses it
        raise RouteError("route pattern %r: %r cannot be in a path" % (pattern, bad))
    segments, names, types = [], [], []
    for seg in pattern[1:].split("/"):
        parsed = _parse_segment(pattern, seg)
        if isinstance(parsed, str):
            segments.append(parsed)
            continue
        prefix, name, kind = parsed
        if not _NAME.match(name):
            raise RouteError("route pattern %r: bad parameter name %r" % (pattern, name))
        if kind not in _KINDS:
            raise RouteError("route pattern %r: unknown parameter type %r (known: %s)"
                             % (pattern, kind, ", ".join(sorted(_KINDS))))
        if name in names:
            raise RouteError("route pattern %r: parameter %r appears twice" % (pattern, name))
        segments.append((prefix, _KINDS[kind]) if prefix else _KINDS[kind])
        names.append(name)
        types.append(kind)
    if "path" in types and (types[-1] != "path" or isinstance(segments[-1], str)):
        raise RouteError("route pattern %r: a {name:path} parameter must be last" % pattern)
    return segments, tuple(names), tuple(types)


def _literal_path(segments):
    return "/" + "/".join(segments)


# the options add_route() reads itself, and the ones only add_websocket() sets
_ROUTE_OPTIONS = ("max_body_size", "stream")
_WS_OPTIONS = frozenset(("websocket", "subprotocols", "max_message_size", "compression",
                         "ping_interval", "ping_timeout"))


def _origins(origins):
    """add_websocket's origins, checked: a tuple of lower-case origins."""
    if isinstance(origins, str):
        origins = [origins]
    try:
        origins = list(origins)
    except TypeError:
        raise TypeError("origins must be a list of origins or None, not %r"
                        % (origins,)) from None
    for o in origins:
        if not isinstance(o, str) or not _ORIGIN.match(o.lower()):
            raise ValueError("origin %r is not scheme://host[:port] (as a browser "
                             "sends it: no path, no trailing '/')" % (o,))
    return tuple(o.lower() for o in origins)


class Router:
    """app.router: add_route() as in Japronto."""

    def __init__(self):
        self._routes = []
        self._names = {}
        self._matcher = None

    def add_route(self, pattern, handler, method=None, methods=None, *, name=None,
                  **options):
        """A route; options: max_body_size=, stream=, and any other keyword,
        kept in route.extra for the app's own use."""
        ws = sorted(set(options) & _WS_OPTIONS)
        if ws:
            raise TypeError("%s: an add_websocket() argument, not add_route()'s" % ws[0])
        for key in options:
            near = difflib.get_close_matches(key, _ROUTE_OPTIONS, 1, 0.8)
            if near and key not in _ROUTE_OPTIONS:
                raise TypeError("add_route() has no option %r (did you mean %s?)"
                                % (key, near[0]))
        if "stream" in options and not isinstance(options["stream"], bool):
            raise TypeError("stream must be True or False, not %r" % (options["stream"],))
        return self._add(pattern, handler, method, methods, name, options)

    def _add(self, pattern, handler, method, methods, name, options):
        if self._matcher is not None:
            raise RuntimeError("routes cannot be added once the app is serving")
        if not callable(handler):
            raise TypeError("handler for %r is not callable: %r" % (pattern, handler))
        if inspect.isgeneratorfunction(handler) or inspect.isasyncgenfunction(handler):
            raise TypeError("handler for %r is a generator: a view returns a Response "
                            "(for a body made piece by piece, return "
                            "Response(stream=...))" % (pattern,))
        check_arity(handler, 1, "handler for %r," % (pattern,))
        if method is not None and methods is not None:
            raise TypeError("pass method= or methods=, not both")
        if method is not None:
            methods = [method]
        if methods is not None:
            if isinstance(methods, str):
                methods = [methods]
            if not all(isinstance(m, str) for m in methods):
                raise TypeError("route %r: a method is a str, such as 'GET', not %r"
                                % (pattern, methods))
            methods = [m.upper() for m in methods]
            for m in methods:
                if not _METHOD.match(m):
                    raise RouteError("route %r: %r is not a valid method" % (pattern, m))
                if m == "CONNECT":
                    # answered 501 before routing: the route could never be
                    # reached, and its Allow would offer what is refused
                    raise RouteError("route %r: CONNECT never reaches a route (it is "
                                     "answered 501: fulmen is no tunnel)" % pattern)
            methods = frozenset(methods)
            if not methods:
                raise RouteError("route %r: methods= is empty" % pattern)
        if options.get("stream") and not _is_async(handler):
            raise TypeError("a stream=True route needs an async def view "
                            "(it reads with `async for chunk in request.stream()`)")
        segments, names, types = parse_pattern(pattern)
        if not names:
            pattern = _literal_path(segments)
        for key in ("max_body_size",):
            v = options.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)
                                  or not 0 <= v <= 1 << 62):
                raise ValueError("%s must be an int from 0 to 2**62, not %r" % (key, v))
        if name is not None and not isinstance(name, str):
            raise TypeError("route %r: name must be a str, not %r" % (pattern, name))
        route = _core.Route(pattern, handler, methods, name, names, types,
                            _is_async(handler), options or None)
        if name is not None:
            if name in self._names:
                raise RouteError("two routes are named %r" % name)
            self._names[name] = route
        self._routes.append((route, segments))
        return route

    def add_websocket(self, pattern, handler, *, subprotocols=None,
                      max_message_size=1024 * 1024, compression=True,
                      ping_interval=20.0, ping_timeout=20.0, origins=None, name=None):
        """A WebSocket endpoint: ``async def handler(ws)`` runs once the
        upgrade is done.  subprotocols: the ones the server speaks, in order
        of preference.  A message over max_message_size closes with 1009.
        After ping_interval seconds without a frame from the client the
        server pings; with no frame within ping_timeout more it closes
        (1011).  None turns the keep-alive off.  origins: the origins
        ("https://example.com") whose pages may open it; an upgrade whose
        Origin is another gets 403 (None: any)."""
        for label, v in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not 0 < v <= 365 * 24 * 3600):
                raise ValueError("%s must be a positive number of seconds or None, not %r"
                                 % (label, v))
        if not _is_async(handler):
            raise TypeError("a WebSocket handler must be an async def, not %r" % (handler,))
        if subprotocols is not None:
            if isinstance(subprotocols, str):
                subprotocols = [subprotocols]
            subprotocols = tuple(subprotocols)
            for p in subprotocols:
                if not isinstance(p, str) or not _METHOD.match(p):
                    raise RouteError("subprotocol %r is not a token" % (p,))
        if not isinstance(max_message_size, int) or max_message_size < 1:
            raise ValueError("max_message_size must be a positive int")
        if not isinstance(compression, bool):
            raise TypeError("compression must be True or False, not %r" % (compression,))
        if origins is not None:
            origins = _origins(origins)
        return self._add(pattern, handler, None, ["GET"], name, dict(
            websocket=True, subprotocols=subprotocols, max_message_size=max_message_size,
            compression=compression, origins=origins,
            ping_interval=None if ping_interval is None else float(ping_interval),
            ping_timeout=None if ping_timeout is None else float(ping_timeout)))

    def add_static(self, prefix, directory, *, name=None):
        """Serve the files below directory at prefix/...: GET and HEAD, with
        ETag, Last-Modified, 304 and Range; no listing, no path escaping."""
        from .streams import static_handler
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise RouteError("static prefix %r must start with '/'" % (prefix,))
        prefix = prefix.rstrip("/")     # "/" serves the directory at the root
        return self.add_route(prefix + "/{path:path}", static_handler(directory),
                              methods=["GET"], name=name)

    @property
    def routes(self):
        return [r for r, _ in self._routes]

    def url_for(self, name, /, **params):
        try:
            route = self._names[name]
        except KeyError:
            raise KeyError("no route is named %r" % name) from None
        segs = parse_pattern(route.pattern)[0]
        out, i = [], 0
        missing = set(route.param_names) - set(params)
        if missing:
            raise KeyError("url_for(%r) needs %s" % (name, ", ".join(sorted(missing))))
        unknown = set(params) - set(route.param_names)
        if unknown:
            raise TypeError("url_for(%r) has no parameter %s" % (name, ", ".join(sorted(unknown))))
        for seg in segs:
            if isinstance(seg, str):
                out.append(seg)
                continue
            pname = route.param_names[i]
            kind = route.param_types[i]
            i += 1
            value = params[pname]
            if value is None or isinstance(value, (bytes, bytearray)):
                raise TypeError("url_for(%r): %s=%r is no value for a path" % (name, pname, value))
            value = str(value)
            if not _URL_VALUE[kind].fullmatch(value):
                # a link its own route would not take
                raise ValueError("url_for(%r): %s=%r does not match {%s:%s}"
                                 % (name, pname, params[pname], pname, kind))
            value = quote(value, safe="/" if kind == "path" else "")
            out.append(seg[0] + value if isinstance(seg, tuple) else value)
        return "/" + "/".join(out)

    def build(self, wrap=None, ws_gate=None):
        """Compile the routes into the C matcher; errors surface here, at
        start-up.  wrap(handler) composes the app's hooks around each view
        (not around WebSocket handlers: the hooks take requests and
        responses); ws_gate(request), the app's on_request hooks, runs
        before a WebSocket route's 101 (connstream.c conn_upgrade_ws)."""
        m = _core.Matcher()
        for route, segments in self._routes:
            if ws_gate is not None and (route.extra or {}).get("websocket"):
                route = _core.Route(route.pattern, route.handler, route.methods,
                                    route.name, route.param_names, route.param_types,
                                    route.is_async, dict(route.extra, gate=ws_gate))
            elif wrap is not None and not (route.extra or {}).get("websocket"):
                handler = wrap(route.handler)
                if handler is not route.handler:
                    route = _core.Route(route.pattern, handler, route.methods,
                                        route.name, route.param_names,
                                        route.param_types, _is_async(handler),
                                        route.extra)
            try:
                m.add(route, segments)
                if not route.param_names:
                    # matching runs on the raw path: a static route is also
                    # found the way clients send it, percent-encoded
                    encoded = quote(route.pattern, safe="/!$&'()*+,;=:@-._~")
                    if encoded != route.pattern:
                        m.add(route, segments, encoded)
            except ValueError as e:
                raise RouteError(str(e)) from None
        self._matcher = m
        return m
