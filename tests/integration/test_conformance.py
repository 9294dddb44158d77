"""The external llhttp-derived conformance corpus, replayed over sockets."""
import base64
import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest

from .rawhttp import Conn
from .server import REPO

REPLAY = os.path.join(REPO, "..", "shared", "conformance", "replay.py")
CASES = os.path.join(os.path.dirname(REPLAY), "llhttp_cases.jsonl")
needs_replay = pytest.mark.skipif(not os.path.exists(REPLAY),
                                  reason="shared/conformance/replay.py not present")


def _is_head(case):
    return any(m.get("method") == "HEAD" for m in case["messages"])


def _load_replay():
    spec = importlib.util.spec_from_file_location("conformance_replay", REPLAY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# replay.py reads every answer as if it followed a GET, so the Content-Length
# of a HEAD answer (RFC 9110 9.3.2: the length a GET body would have) reads
# there as a body that never comes.  Its HEAD cases are replayed separately,
# by a client that knows it sent HEAD (RFC 9112 6.3: such an answer has no
# body, whatever its Content-Length says).

@needs_replay
def test_conformance_replay(basic, tmp_path):
    cases = tmp_path / "cases.jsonl"
    with open(CASES, encoding="utf-8") as src, open(cases, "w", encoding="utf-8") as dst:
        dst.writelines(line for line in src if not _is_head(json.loads(line)))
    proc = subprocess.run([sys.executable, REPLAY, "127.0.0.1", str(basic.port),
                           "--cases", str(cases)],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert lines, "replay printed nothing; stderr:\n" + proc.stderr
    assert lines[-1].split(",")[1].strip() == "0 failed", proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_replay
def test_conformance_head_cases(basic):
    replay = _load_replay()
    cases, _ = replay.load_cases(CASES)
    heads = [c for c in cases if _is_head(c)]
    assert heads, "the corpus has no HEAD case left to check"
    for c in heads:
        assert c["verdict"] == "accept", c["id"]
        raw = replay.add_host(c, base64.b64decode(c["raw_b64"]))
        with Conn(basic.port) as conn:
            conn.send(raw)
            conn.sock.shutdown(socket.SHUT_WR)
            for m in c["messages"]:
                if not m["complete"]:
                    continue
                r = conn.read_final(head=m.get("method") == "HEAD")
                assert r.status not in replay.FRAMING_ERRORS, (c["id"], r)
            assert conn.at_eof(), (c["id"], bytes(conn.buf[:100]))
