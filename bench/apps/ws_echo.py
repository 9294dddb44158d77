"""Scenario `ws-echo`: WebSocket echo at /ws, permessage-deflate off (the
comparison is raw framing).  Usage: ws_echo.py PORT"""
import sys

from fulmen import Application


async def echo(ws):
    async for message in ws:
        await ws.send(message)


app = Application()
app.router.add_websocket("/ws", echo, compression=False)
app.run(host="127.0.0.1", port=int(sys.argv[1]))
