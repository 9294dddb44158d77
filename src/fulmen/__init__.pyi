"""fulmen: a Python micro-framework for microservices, with its HTTP engine in C."""
from . import _core as _core
from ._core import BadRequest as BadRequest
from ._core import ClientDisconnected as ClientDisconnected
from ._core import File as File
from ._core import Headers as Headers
from ._core import InvalidJSON as InvalidJSON
from ._core import Query as Query
from ._core import RequestTimeout as RequestTimeout
from ._core import RequestTooLarge as RequestTooLarge
from ._core import Request as Request
from ._core import Response as Response
from ._core import WebSocket as WebSocket
from ._core import WebSocketClosed as WebSocketClosed
from .app import Application as Application
from .app import MethodNotAllowed as MethodNotAllowed
from .app import RouteNotFoundException as RouteNotFoundException
from .router import RouteError as RouteError
from .router import Router as Router
from .streams import FileResponse as FileResponse

__all__ = ["Application", "BadRequest", "ClientDisconnected", "File", "FileResponse", "Headers", "InvalidJSON", "Query", "RequestTimeout", "RequestTooLarge", "Request", "Response", "Router", "WebSocket", "WebSocketClosed",
           "RouteError", "RouteNotFoundException", "MethodNotAllowed"]
__version__: str
