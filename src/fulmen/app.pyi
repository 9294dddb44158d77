import asyncio
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, overload

from ._core import Request, Response
from .router import Router

_F = TypeVar("_F", bound=Callable[..., Any])
_E = TypeVar("_E", bound=BaseException)

class RouteNotFoundException(Exception):
    """Raised (for error handlers) when no route matches the path."""

class MethodNotAllowed(RouteNotFoundException):
    """Raised (for error handlers) when the path exists for other methods;
    args[0] is the Allow value."""

class Application:
    """A fulmen application: app = Application(); app.router.add_route(...)."""
    debug: bool
    max_header_size: int
    max_headers: int
    max_body_size: int
    header_timeout: float
    body_timeout: float
    keep_alive_timeout: float
    max_connections: int | None
    max_form_parts: int | None
    gc_freeze: bool
    gc_threshold: int | None
    response_timeout: float | None
    router: Router
    proxy_headers: bool
    forwarded_allow_ips: tuple[str, ...]
    access_log: bool
    access_log_format: str
    def __init__(
        self,
        *,
        debug: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        max_header_size: int = 16384,
        max_headers: int = 100,
        max_body_size: int = 10485760,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        keep_alive_timeout: float = 60.0,
        max_connections: int | None = None,
        max_form_parts: int | None = 1000,
        reaper_settings: dict[str, float] | None = None,
        json_dumps: Callable[[Any], str | bytes] | None = None,
        log_request: bool | None = None,
        gc_freeze: bool = True,
        gc_threshold: int | None = 10_000,
        response_timeout: float | None = None,
    ) -> None: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    def url_for(self, name: str, /, **params: Any) -> str: ...
    def extend_request(self, fn: Callable[..., Any], *, name: str | None = None,
                       property: bool = False) -> None: ...
    def on_request(self, fn: _F) -> _F: ...
    def on_response(self, fn: _F) -> _F:
        """fn(request, response), sync or async, runs after the view, also on
        the answer made from an exception (error handlers, 400, 500, ...); it
        may change the response or return a new one.  A hook that raises gives
        a plain 500 that no hook sees."""
        ...
    def on_startup(self, fn: _F) -> _F: ...
    def on_shutdown(self, fn: _F) -> _F: ...
    @overload
    def add_error_handler(
        self,
        exc_type: type[_E],
        handler: Callable[[Request, _E], Response],
    ) -> None: ...
    @overload
    def add_error_handler(
        self,
        exc_type: None,
        handler: Callable[[Request, BaseException], Response],
    ) -> None: ...
    def serve(self, sock: socket.socket, *, loop: asyncio.AbstractEventLoop | None = None,
              graceful_timeout: float = 30.0, ssl: _ssl.SSLContext | None = None) -> None: ...
    def run(
        self,
        host: str = "0.0.0.0",
        port: int = 8080,
        *,
        worker_num: int | None = None,
        debug: bool | None = None,
        backlog: int = 1024,
        reload: bool = False,
        ssl: _ssl.SSLContext | tuple[str, str] | None = None,
        uds: str | None = None,
        fd: int | None = None,
        graceful_timeout: float = 30.0,
        max_requests: int | None = None,
        max_requests_jitter: int = 0,
        max_rss: float | None = None,
        proxy_headers: bool | None = None,
        forwarded_allow_ips: str | tuple[str, ...] | list[str] | None = None,
        access_log: bool | None = None,
        access_log_format: Literal["text", "json"] | None = None,
        worker_timeout: float | None = None,
        max_start_failures: int | None = None,
    ) -> None: ...
