"""WebSocket echo: every message comes back as it was sent.

    python examples/websocket_echo.py [--host H] [--port P]

Autobahn's fuzzingclient runs against this app (`make autobahn`).
"""
import argparse

from fulmen import Application


async def echo(ws):
    async for message in ws:
        await ws.send(message)


app = Application()
app.router.add_websocket("/", echo, max_message_size=64 * 1024 * 1024)
app.router.add_websocket("/ws", echo, max_message_size=64 * 1024 * 1024)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
