"""Type stubs for fulmen._core, the C extension: Request, Response, File,
BadRequest and the router's Route."""
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from http.cookies import SimpleCookie
from os import PathLike
from typing import Any, Generic, TypeVar, overload

import asyncio
import datetime

_V = TypeVar("_V")
_D = TypeVar("_D")

SIMD_LEVEL: int

def http_date() -> str:
    """The cached value of the Date header."""
    ...

class BadRequest(ValueError):
    """The request body cannot be parsed as asked (answered with 400)."""

import json as _json

class InvalidJSON(BadRequest, _json.JSONDecodeError):
    """request.json on a body that is not JSON: a BadRequest (400) and a
    json.JSONDecodeError (msg, doc, pos, lineno, colno)."""

class File(tuple[str, str | None, bytes]):
    """An uploaded file from a multipart/form-data body."""
    @property
    def name(self) -> str:
        """The file name the client sent."""
        ...
    @property
    def type(self) -> str | None:
        """The part's Content-Type, or None."""
        ...
    @property
    def body(self) -> bytes:
        """The file's content."""
        ...

class Headers(dict[str, str]):
    """Request headers: Title-Case keys, case-insensitive lookups.  A field
    sent more than once is joined with ", " ("; " for Cookie).  get() and
    [] ignore case: headers.get("content-type") finds "Content-Type".
    Names written ([]=, update(), setdefault()) are stored Title-Cased, and
    del and pop() ignore case too; copy() is a Headers."""
    def pop(self, key: str, default: Any = ..., /) -> Any: ...
    def setdefault(self, key: str, default: Any = None, /) -> Any: ...
    def copy(self) -> Headers: ...

class Query(dict[str, _V], Generic[_V]):
    """Query or form parameters: the last value of each key; getall(key)
    for every value, in order."""
    @overload
    def getall(self, key: str, /) -> list[_V]: ...
    @overload
    def getall(self, key: str, default: _D, /) -> list[_V] | _D: ...
    def copy(self) -> Query[_V]: ...

class Route:
    """A route as registered with Router.add_route()."""
    @property
    def pattern(self) -> str: ...
    @property
    def handler(self) -> Callable[..., Any]: ...
    @property
    def methods(self) -> frozenset[str] | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def param_names(self) -> tuple[str, ...]: ...
    @property
    def param_types(self) -> tuple[str, ...]: ...
    @property
    def extra(self) -> dict[str, Any]: ...
    @property
    def is_async(self) -> int: ...

class Request:
    """An HTTP request; attributes are decoded on first access and cached.
    Made by the server, never by the app."""
    @property
    def method(self) -> str:
        """The request method, e.g. "GET"."""
        ...
    @property
    def path(self) -> str:
        """The path, percent-decoded (after routing on the raw path)."""
        ...
    @property
    def raw_path(self) -> str:
        """The path as sent, not decoded."""
        ...
    @property
    def target(self) -> str:
        """The request-target as sent (path, query and all)."""
        ...
    @property
    def query_string(self) -> str:
        """The raw query string, without the "?" ("" when there is none)."""
        ...
    @property
    def query(self) -> Query[str]:
        """Query parameters, percent-decoded; getall(key) for repeated keys."""
        ...
    @property
    def version(self) -> str:
        """"1.1" or "1.0"."""
        ...
    @property
    def headers(self) -> Headers:
        """Request headers (Title-Case keys, case-insensitive lookups)."""
        ...
    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after this request."""
        ...
    @property
    def body(self) -> bytes:
        """The request body (b"" when there is none)."""
        ...
    @property
    def text(self) -> str:
        """The body decoded with its charset (UTF-8 by default)."""
        ...
    @property
    def json(self) -> Any:
        """The body parsed as JSON; raises BadRequest when it is not JSON."""
        ...
    @property
    def mime_type(self) -> str | None:
        """The media type from Content-Type, or None."""
        ...
    @property
    def encoding(self) -> str | None:
        """The charset parameter of Content-Type, or None."""
        ...
    @property
    def form(self) -> Query[str]:
        """Form fields of an urlencoded or multipart/form-data body."""
        ...
    @property
    def files(self) -> Query[File]:
        """Uploaded files of a multipart/form-data body, by field name."""
        ...
    @property
    def cookies(self) -> dict[str, str]:
        """Cookies the client sent."""
        ...
    @property
    def match_dict(self) -> dict[str, Any]:
        """Route parameters, converted by their type (str, int, float,
        uuid.UUID)."""
        ...
    @property
    def route(self) -> Route | None:
        """The matched route."""
        ...
    @property
    def hostname(self) -> str | None:
        """The host from the Host header, or None."""
        ...
    @property
    def port(self) -> int | None:
        """The port from the Host header, or None when it has none."""
        ...
    @property
    def scheme(self) -> str:
        """"http" or "https" (from X-Forwarded-Proto or Forwarded when the
        proxy headers are trusted)."""
        ...
    @property
    def remote_addr(self) -> str | None:
        """The peer's address."""
        ...
    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection's asyncio transport (under TLS in C, a
        fulmen._tls.TLSTransport that answers get_extra_info() the same way;
        not an asyncio.Transport subclass)."""
        ...
    @property
    def app(self) -> Any:
        """The Application serving this request."""
        ...
    @property
    def extra(self) -> dict[str, Any]:
        """A dict for the app's own per-request data."""
        ...
    @property
    def Response(self) -> type[Response]:
        """The Response class (the same as fulmen.Response)."""
        ...
    def add_done_callback(self, cb: Callable[[Request], object], /) -> None:
        """Call cb(request) once the response has been written."""
        ...
    def stream(self) -> BodyStream:
        """The body as an async iterator of bytes (as it arrives on a
        stream=True route)."""
        ...

class BodyStream:
    def __aiter__(self) -> BodyStream: ...
    def __anext__(self) -> Awaitable[bytes]: ...

class RequestTooLarge(BadRequest):
    """The request body passed its limit (answered with 413)."""

class RequestTimeout(TimeoutError):
    """The request body stopped arriving for body_timeout while
    request.stream() awaited it (answered with 408)."""

class ClientDisconnected(ConnectionResetError):
    """The connection was gone while request.stream() awaited the body, or
    while a streamed answer was written: nobody is left to answer."""

_HeadersArg = Mapping[str, str] | Sequence[tuple[str, str]]
_StreamArg = Iterable[bytes | str] | AsyncIterable[bytes | str]

class Response:
    """An HTTP response.  Give at most one of text=, body=, json=, stream=
    and file=.  It stays inspectable and mutable until it is sent."""
    def __init__(
        self,
        code: int = 200,
        text: str | None = None,
        body: bytes | bytearray | memoryview | None = None,
        json: Any = None,
        mime_type: str | None = None,
        encoding: str | None = "utf-8",
        headers: _HeadersArg | None = None,
        cookies: Mapping[str, Any] | SimpleCookie | None = None,
        *,
        stream: _StreamArg | None = None,
        file: str | PathLike[str] | None = None,
    ) -> None: ...
    @property
    def code(self) -> int:
        """The status code (200..599; a 1xx is refused)."""
        ...
    @code.setter
    def code(self, value: int) -> None: ...
    @property
    def status_code(self) -> int:
        """An alias of code."""
        ...
    @status_code.setter
    def status_code(self, value: int) -> None: ...
    @property
    def body(self) -> bytes:
        """The body as bytes (JSON and text encoded)."""
        ...
    @body.setter
    def body(self, value: bytes | str | None) -> None: ...
    @property
    def text(self) -> str:
        """The body as str, decoded with the charset of its Content-Type
        (UTF-8 by default); setting it encodes with that charset."""
        ...
    @text.setter
    def text(self, value: str) -> None: ...
    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        ...
    @property
    def headers(self) -> dict[str, str] | list[tuple[str, str]]:
        """The response's headers: the dict (or list of pairs) it was given,
        or a new empty dict."""
        ...
    @headers.setter
    def headers(self, value: _HeadersArg | None) -> None: ...
    @property
    def mime_type(self) -> str | None:
        """The media type (None for stream and file responses until sent)."""
        ...
    @mime_type.setter
    def mime_type(self, value: str | None) -> None: ...
    @property
    def cookies(self) -> dict[str, Any]:
        """Cookies to set: a dict or http.cookies.SimpleCookie."""
        ...
    @cookies.setter
    def cookies(self, value: Mapping[str, Any] | SimpleCookie | None) -> None: ...
    @property
    def stream(self) -> _StreamArg | None:
        """The iterable of a streamed response, or None."""
        ...
    @property
    def file(self) -> str | bytes | None:
        """The path of a file response, or None."""
        ...
    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        expires: str | datetime.datetime | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: str | None = None,
    ) -> None:
        """Add a Set-Cookie header."""
        ...
    def delete_cookie(self, name: str, *, path: str | None = "/",
                      domain: str | None = None) -> None:
        """Expire the cookie on the client."""
        ...

class Matcher:
    def __init__(self) -> None: ...
    def add(self, route: Route, segments: list[str | int | tuple[str, int]],
            path: str = ..., /) -> None: ...

class StaticFiles:
    """add_static's view: the usual request answered in C, the rest by
    fallback(request)."""
    def __init__(self, root: str, fallback: Callable[[Request], Response]) -> None: ...
    def __call__(self, request: Request) -> Response: ...
    @property
    def hits(self) -> int:
        """Requests answered in C."""
        ...
    @property
    def fallback(self) -> Callable[[Request], Response]: ...

class Server: ...
class Connection: ...

class WebSocketClosed(ConnectionError):
    """The WebSocket is closed; args are (code, reason)."""

class WebSocket:
    """A WebSocket connection, passed to an add_websocket() handler."""
    @property
    def closed(self) -> bool: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str | None: ...
    @property
    def request(self) -> Request: ...
    @property
    def subprotocol(self) -> str | None: ...
    def send(self, message: str | bytes, /) -> Awaitable[None]:
        """A text frame for str, binary for bytes; await it."""
        ...
    def receive(self) -> Awaitable[str | bytes]:
        """The next message."""
        ...
    def ping(self, data: bytes = b"") -> Any: ...
    def close(self, code: int = 1000, reason: str = "") -> Awaitable[None]: ...
    def __aiter__(self) -> AsyncIterator[str | bytes]: ...
