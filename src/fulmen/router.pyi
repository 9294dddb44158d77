from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ._core import Request, Response, Route, WebSocket

Handler = Callable[[Request], Response | Awaitable[Response]]

class RouteError(ValueError):
    """A route pattern or route table that cannot work."""

def parse_pattern(
    pattern: str,
) -> tuple[list[str | int | tuple[str, int]], tuple[str, ...], tuple[str, ...]]: ...

class Router:
    """app.router: add_route() as in Japronto."""
    def __init__(self) -> None: ...
    def add_route(
        self,
        pattern: str,
        handler: Handler,
        method: str | None = None,
        methods: str | Iterable[str] | None = None,
        *,
        name: str | None = None,
        max_body_size: int | None = None,
        stream: bool = False,
        **options: Any,
    ) -> Route: ...
    def add_websocket(
        self,
        pattern: str,
        handler: Callable[[WebSocket], Awaitable[None]],
        *,
        subprotocols: str | Iterable[str] | None = None,
        max_message_size: int = 1048576,
        compression: bool = True,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        origins: str | Iterable[str] | None = None,
        name: str | None = None,
    ) -> Route: ...
    def add_static(self, prefix: str, directory: str, *, name: str | None = None) -> Route: ...
    @property
    def routes(self) -> list[Route]: ...
    def url_for(self, name: str, /, **params: Any) -> str: ...
    def build(self, wrap: Callable[[Handler], Handler] | None = None,
              ws_gate: Callable[[Request], Any] | None = None) -> Any: ...
