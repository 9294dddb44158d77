"""Application(response_timeout=S): a coroutine view still running S
seconds after it suspended is cancelled; its answer, in its turn, is the
503 of the CancelledError (or whatever the view makes of it), and the
server says so on stderr.  Views that finish, sync views, streamed
answers and stream=True views (which read their body as it comes) are not
cut.  The app (apps/view_timeout.py) uses 0.5 s; the tests wait for
answers, never for time."""
import socket
import struct

import pytest

from .conftest import _app_fixture
from .rawhttp import Conn, build_request

view_timeout = pytest.fixture(_app_fixture("view_timeout"), name="view_timeout")


def test_a_view_that_hangs_gets_503_and_a_line_on_stderr(view_timeout):
    with Conn(view_timeout.port) as c:
        r = c.request("GET", "/hang")
        assert (r.status, r.body) == (503, b"Service Unavailable")
        # the connection goes on
        assert c.request("GET", "/quick").body == b"quick"
    assert view_timeout.wait_for_stderr("<Request GET /hang> has run for response_timeout (500 ms): "
                                 "its view is cancelled (503)")


def test_answers_stay_in_order_around_a_cancelled_view(view_timeout):
    with Conn(view_timeout.port) as c:
        c.send(build_request("GET", "/quick") + build_request("GET", "/hang")
               + build_request("GET", "/sync") + build_request("GET", "/stream"))
        got = [c.read_response() for _ in range(4)]
    assert [(r.status, r.body) for r in got] == [
        (200, b"quick"), (503, b"Service Unavailable"), (200, b"sync"), (200, b"ab")]


def test_a_view_may_answer_its_cancellation(view_timeout):
    with Conn(view_timeout.port) as c:
        r = c.request("GET", "/catch")
    assert (r.status, r.body) == (200, b"caught")


def test_a_stream_true_view_is_not_timed(view_timeout):
    # The upload's view starts first and waits for its body; a hanging view
    # started after it gets its 503, so more than response_timeout has
    # passed for the upload too: the rest of its body still gets its 200.
    with Conn(view_timeout.port) as up, Conn(view_timeout.port) as other:
        up.send(build_request("POST", "/upload", headers={"Content-Length": "10"})
                + b"01234")
        assert other.request("GET", "/quick").body == b"quick"
        assert other.request("GET", "/hang").status == 503
        up.send(b"56789")
        r = up.read_response()
    assert (r.status, r.body) == (200, b"10")




def test_a_view_whose_client_has_gone_is_cancelled_too(view_timeout):
    # The client resets the connection while its view hangs: the sweep no
    # longer sees that connection, and the view is cancelled all the same.
    gone = Conn(view_timeout.port)
    gone.send(build_request("GET", "/hang-logged"))
    assert view_timeout.wait_for_stderr("hang-logged started")
    gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()                                        # RST: the connection is lost
    assert view_timeout.wait_for_stderr("hang-logged cancelled")
