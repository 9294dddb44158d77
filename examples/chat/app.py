"""A WebSocket chat room: the page at / and a broadcast room at /ws.

Every message a client sends is relayed to every connected client (its
sender included), with the nickname the room gave the sender on joining.

    python examples/chat/app.py [--host H] [--port P]

    then open http://localhost:8080/ in two browser tabs.
"""
import argparse
import itertools
import json
import os

from fulmen import Application, WebSocketClosed

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "index.html")
MAX_TEXT = 2000

clients = {}                 # WebSocket -> nickname
numbers = itertools.count(1)


def index(request):
    return request.Response(file=PAGE)


def broadcast(event):
    """Send one event to every client.  send() writes the frame when it is
    called, and awaiting it would only wait for that client to read: not
    awaited, a client that does not read holds up no one (the server cuts
    it after body_timeout without reading, or once 16 MiB wait for it)."""
    message = json.dumps(event)
    for ws in list(clients):
        try:
            ws.send(message)
        except WebSocketClosed:
            pass             # that client left meanwhile; its handler cleans up


async def room(ws):
    nick = "guest-%d" % next(numbers)
    clients[ws] = nick
    try:
        await ws.send(json.dumps({"type": "welcome", "nick": nick,
                                  "online": sorted(clients.values())}))
        broadcast({"type": "join", "nick": nick})
        async for message in ws:
            if not isinstance(message, str):
                continue     # the page only sends text
            text = message.strip()[:MAX_TEXT]
            if text:
                broadcast({"type": "message", "nick": nick, "text": text})
    finally:
        clients.pop(ws, None)
        broadcast({"type": "leave", "nick": nick})


app = Application()
app.router.add_route("/", index, method="GET")
app.router.add_websocket("/ws", room, max_message_size=64 * 1024)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
