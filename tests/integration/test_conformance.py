"""The external llhttp-derived conformance corpus, replayed over sockets."""
import os
import subprocess
import sys

import pytest

from .server import REPO

REPLAY = os.path.join(REPO, "..", "shared", "conformance", "replay.py")


@pytest.mark.skipif(not os.path.exists(REPLAY), reason="shared/conformance/replay.py not present")
def test_conformance_replay(basic):
    proc = subprocess.run([sys.executable, REPLAY, "127.0.0.1", str(basic.port)],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert lines, "replay printed nothing; stderr:\n" + proc.stderr
    assert lines[-1].split(",")[1].strip() == "0 failed", proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
