"""websockets (PyPI "websockets", its asyncio implementation) on uvloop:
WebSocket echo at /ws, compression=None.  Usage: websockets_echo.py PORT [SCENARIO]"""
import asyncio
import sys

import uvloop
from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(port):
    # ping_interval=None: no keepalive pings during a run (the load generator
    # would answer them, but they are not part of the echo being measured)
    async with serve(echo, "127.0.0.1", port, compression=None, ping_interval=None) as server:
        print("websockets: listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
        await server.serve_forever()


uvloop.run(main(int(sys.argv[1])))
