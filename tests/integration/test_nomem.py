"""Allocation failures: whichever allocation fails while a batch of
pipelined requests is handled (one at a time, each in turn, through
_testcapi.set_nomemory in apps/nomem.py), the server stays up and keeps
serving, and the client gets well-formed answers in order: the expected
ones, with at most one 500 in place of one of them, and nothing after a
close.  No crash, no hang, no garbled answer; under `make asan` no memory
error either (the fixture checks the server's stderr for one)."""
import pytest

from .conftest import _app_fixture
from .rawhttp import Conn, build_request, chunked

pytest.importorskip("_testcapi")

nomem = pytest.fixture(_app_fixture("nomem"), name="nomem")

JSON = b'{"a": [1, "b"], "c": {"d": null}}'
BATCHES = {
    "sync": [
        (build_request("GET", "/"), 200),
        (build_request("GET", "/p/zz?q=1", headers={"X-A": "hdr"}), 200),
        (build_request("POST", "/echo", headers={"Content-Type": "application/json"},
                       body=JSON), 200),
        (build_request("GET", "/nothere"), 404),
    ],
    "async": [
        (build_request("GET", "/a"), 200),
        (build_request("GET", "/sleep"), 200),
        (build_request("POST", "/echo", headers={"Content-Type": "application/json",
                                                 "Transfer-Encoding": "chunked"})
         + chunked(JSON, [5, 20]), 200),
        (build_request("GET", "/stream"), 200),
        (build_request("GET", "/a"), 200),
    ],
    "bodies": [
        (build_request("POST", "/upload", body=b"x" * 40000), 200),
        (build_request("POST", "/upload", headers={"Transfer-Encoding": "chunked"})
         + chunked(b"y" * 20000, [7000, 14000]), 200),
        (build_request("GET", "/"), 200),
    ],
}
CLEAN_RUNS = 10     # past the batch: this many k in a row with no failure seen
MAX_K = 400


def answers(port, k, batch):
    """Send arm(k) + batch + disarm in one write; the statuses that came
    back, and whether the server closed after them."""
    data = build_request("GET", "/arm/%d" % k) + b"".join(r for r, _ in batch) \
        + build_request("GET", "/disarm")
    with Conn(port) as c:
        c.send(data)
        got = []
        for _ in range(len(batch) + 2):
            try:
                r = c.read_final()
            except EOFError:
                return got, True
            assert int(r.header("Content-Length", len(r.body))) == len(r.body)
            got.append(r.status)
        return got, False


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_each_allocation_failing_in_turn(nomem, name):
    batch = BATCHES[name]
    want = [200] + [s for _, s in batch] + [200]
    clean, failures, closes = 0, 0, 0
    for k in range(1, MAX_K):
        got, closed = answers(nomem.port, k, batch)
        assert len(got) <= len(want), (k, got)
        wrong = [i for i, s in enumerate(got) if s != want[i]]
        assert len(wrong) <= 1 and all(got[i] == 500 for i in wrong), (k, got, want)
        assert closed or len(got) == len(want), (k, got)
        failures += bool(wrong)
        closes += closed
        # and the server still serves, on a new connection
        with Conn(nomem.port) as c:
            assert c.request("GET", "/disarm").body == b"ok"
            assert c.request("GET", "/").body == b"Hello world!"
        clean = clean + 1 if got == want else 0
        if clean == CLEAN_RUNS:
            break
    else:
        pytest.fail("allocations still failed after %d steps" % MAX_K)
    # the failures did land in the batch (a 500 or a close for some k)
    assert failures + closes > 0
