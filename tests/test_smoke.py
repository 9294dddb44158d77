"""Smoke test: examples/hello.py answers over a real socket, alone and pipelined."""
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def hello_port():
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "hello.py"),
                          "--port", "0"], stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    assert m, "server did not start: %r" % line
    yield int(m.group(1))
    p.send_signal(signal.SIGTERM)
    code = p.wait(timeout=10)
    p.stderr.close()
    assert code == 0


def _exchange(port, payload, n_responses):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while data.count(b"Hello world!") < n_responses:
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            data += chunk
    return data


def test_hello(hello_port):
    data = _exchange(hello_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 12\r\n" in data
    assert b"\r\nServer: fulmen\r\n" in data
    assert data.endswith(b"\r\n\r\nHello world!")


def test_hello_pipelined(hello_port):
    data = _exchange(hello_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 100, 100)
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 100


def test_request_response_descriptor_wants_a_request():
    # request.Response(...) is called with the request first; the descriptor
    # behind it refuses anything else instead of reading it as a request
    from fulmen import Response, _core
    assert _core.Request.Response is Response
    maker = _core.Request.__dict__["Response"]
    with pytest.raises(TypeError):
        maker(text="x")
    with pytest.raises(TypeError):
        maker(object(), text="x")
