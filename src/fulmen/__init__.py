"""fulmen: a Python micro-framework for microservices, with its HTTP engine in C.

    from fulmen import Application

    def hello(request):
        return request.Response(text="Hello world!")

    app = Application()
    app.router.add_route("/", hello)
    app.run()
"""
from . import _core
from ._core import (BadRequest, ClientDisconnected, File, Headers, InvalidJSON, Query,
                    Request, RequestTimeout, RequestTooLarge, Response, WebSocket,
                    WebSocketClosed)
from .app import Application, MethodNotAllowed, RouteNotFoundException
from .router import RouteError, Router
from .streams import FileResponse

__all__ = ["Application", "BadRequest", "ClientDisconnected", "File", "FileResponse", "Headers", "InvalidJSON", "Query", "RequestTimeout", "RequestTooLarge", "WebSocket", "WebSocketClosed", "Request", "Response", "Router", "RouteError",
           "RouteNotFoundException", "MethodNotAllowed"]
__version__ = "0.1.0"
