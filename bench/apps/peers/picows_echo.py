"""picows (PyPI "picows") on uvloop: WebSocket echo at /ws; every data frame
goes back as it came (opcode, payload, fin).  picows never negotiates
permessage-deflate.  With aiofastnet installed (a picows dependency since
2.x) picows uses it instead of loop.create_server, which is its default.
Usage: picows_echo.py PORT [SCENARIO]"""
import asyncio
import sys

import uvloop
from picows import WSListener, WSMsgType, ws_create_server


class Echo(WSListener):
    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)


def route(request):
    return Echo() if request.path == b"/ws" else None


async def main(port):
    server = await ws_create_server(route, "127.0.0.1", port)
    print("picows: listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
    await server.serve_forever()


uvloop.run(main(int(sys.argv[1])))
