"""Connection management: keep-alive, close, HTTP/1.0, many clients, clients
that go away early, and slow readers."""
import socket
import struct
import threading

import pytest

from .rawhttp import Conn, build_request


def test_keep_alive_is_default_in_http11(basic):
    with Conn(basic.port) as c:
        for _ in range(5):
            r = c.request("GET", "/")
            assert r.status == 200
            assert (r.header("Connection") or "keep-alive").lower() != "close"


def test_connection_close_from_client(basic):
    with Conn(basic.port) as c:
        assert c.request("GET", "/").status == 200
        r = c.request("GET", "/", headers={"Connection": "close"})
        assert r.status == 200
        assert r.header("Connection").lower() == "close"
        assert c.at_eof()


@pytest.mark.parametrize("request_bytes", [
    build_request("GET", "/", headers={"Connection": "close"}),
    b"GET / HTTP/1.0\r\n\r\n",
], ids=["connection-close", "http10"])
def test_connection_the_client_ends_is_closed_at_once(basic, request_bytes):
    """A client that ends the connection with its request, and sent nothing
    after it, sends nothing more (RFC 9112 9.6): its socket is closed
    with the answer, not held open to drain what it might still send."""
    with Conn(basic.port) as c:      # this side stays open
        c.send(request_bytes)
        assert c.read_response().status == 200
        assert c.at_eof()
        with Conn(basic.port) as q:
            assert q.request("GET", "/io").json()["connections"] == 1


def test_connection_close_token_in_list(basic):
    with Conn(basic.port) as c:
        r = c.request("GET", "/", headers={"Connection": "foo, Close"})
        assert r.header("Connection").lower() == "close"
        assert c.at_eof()


@pytest.mark.parametrize("path", ["/app-close/dict", "/app-close/list",
                                  "/app-close-async/dict", "/app-close-stream"])
@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_connection_close_from_the_app(basic, path, version):
    """A response whose app sets "Connection: close" ends the connection
    after it and says so; a request pipelined behind it is not run."""
    with Conn(basic.port) as c:
        keep = {"Connection": "keep-alive"} if version == "1.0" else {}
        c.send(build_request("GET", path, headers=keep, version=version) +
               build_request("GET", "/p/1", headers=keep, version=version))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"bye")
        assert r.header_all("Connection") == ["close"]
        assert c.at_eof()


def test_connection_header_of_the_app_without_close_is_dropped(basic):
    with Conn(basic.port) as c:
        r = c.request("GET", "/app-close/other")
        assert (r.status, r.body, r.header("Connection")) == (200, b"bye", None)
        assert c.request("GET", "/").status == 200


def test_http10_closes_by_default(basic):
    with Conn(basic.port) as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello world!"
        assert (r.header("Connection") or "close").lower() == "close"
        assert c.at_eof()


def test_http10_keep_alive(basic):
    with Conn(basic.port) as c:
        for _ in range(3):
            c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == b"Hello world!"
            assert r.header("Connection").lower() == "keep-alive"
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        assert c.read_response().status == 200
        assert c.at_eof()


def test_requests_after_close_are_not_answered(basic):
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/p/1")
               + build_request("GET", "/p/2", headers={"Connection": "close"})
               + build_request("GET", "/p/3"))
        assert c.read_response().body == b"1"
        r = c.read_response()
        assert r.body == b"2" and r.header("Connection").lower() == "close"
        assert c.at_eof()


def test_many_concurrent_connections(basic):
    errors = []

    def client(k):
        try:
            with Conn(basic.port) as c:
                for i in range(20):
                    path = "/ap/%d" % (k * 100 + i) if i % 2 else "/p/%d" % (k * 100 + i)
                    r = c.request("GET", path)
                    assert r.body == str(k * 100 + i).encode(), r
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_client_disconnects_mid_head(basic):
    with Conn(basic.port) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Partial: ab")
    with Conn(basic.port) as c:
        assert c.request("GET", "/").status == 200


def test_client_disconnects_mid_body(basic):
    with Conn(basic.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    with Conn(basic.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
    with Conn(basic.port) as c:
        assert c.request("GET", "/").status == 200


def test_client_disconnects_before_async_response(basic):
    # The views finish after the transport is gone; their responses must be
    # dropped without harm.
    for path in ["/sleepy", "/ap/1", "/aboom"]:
        with Conn(basic.port) as c:
            c.send(build_request("GET", path) * 20)
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/sleepy") * 5)
        # SO_LINGER with a zero timeout makes close() send RST.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with Conn(basic.port) as c:
        assert c.request("GET", "/sleepy").body == b"slept"


def test_client_half_close_still_gets_responses(basic):
    with Conn(basic.port) as c:
        c.send(build_request("GET", "/p/1") + build_request("GET", "/ap/2"))
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_response().body == b"1"
        assert c.read_response().body == b"2"
        assert c.at_eof()


def test_slow_reader_gets_everything(basic):
    # 40 MB of pipelined responses while the client reads nothing: the server
    # has to stop reading or buffer, and must deliver all of it in order.
    n, size = 200, 200_000
    with Conn(basic.port, timeout=20) as c:
        c.send(build_request("GET", "/big/%d" % size) * n)
        for _ in range(n):
            r = c.read_response()
            assert r.status == 200 and len(r.body) == size
        assert r.body[:256] == bytes(range(256))


def test_idle_connection_is_not_closed_immediately(basic):
    # A connection that has sent nothing yet still gets served.
    with Conn(basic.port) as c, Conn(basic.port) as d:
        assert d.request("GET", "/").status == 200
        assert c.request("GET", "/").status == 200


@pytest.mark.parametrize("last", [
    b"BAD\x01REQUEST\r\n\r\n",
    build_request("GET", "/", headers={"Connection": "close"}),
    b"GET / HTTP/1.0\r\n\r\n",
], ids=["400", "connection-close", "http10"])
def test_answers_before_a_close_survive_bytes_the_client_sends_after_it(basic, last):
    """RFC 9112 9.6: a server that closes while unread bytes from the client
    wait in its socket makes the kernel send RST, which throws away what it
    has not delivered yet, the last answers included.  The server closes its
    sending side, then reads and discards until the client closes (or for a
    short while): the client gets every answer, then EOF."""
    n, size = 20, 200_000
    with Conn(basic.port, timeout=20) as c:
        c.send(build_request("GET", "/big/%d" % size) * n + last)
        assert c._fill()  # the server has read the batch and is answering it
        # a pipelining client that has not seen the close yet
        c.send(build_request("GET", "/") * 50)
        for _ in range(n):
            r = c.read_response()
            assert r.status == 200 and len(r.body) == size
        r = c.read_response()
        assert r.header("Connection", "").lower() == "close", r
        assert c.at_eof()
