"""Instructions per request, counted by valgrind's callgrind (make bench-instr).

    .venv/bin/python bench/instr.py [--scenarios hello,json,async-sleep] [-n 2000]

For each scenario the fulmen app (bench/apps/) runs three times under
`valgrind --tool=callgrind`, each time driven by one client connection:

    baseline : start, WARM warm-up requests one at a time, stop
    seq      : the same, then N requests one at a time (send, wait, send...)
    pipe     : the same, then N requests in pipelined batches of 24

and Ir/request = (Ir(run) - Ir(baseline)) / N, which removes interpreter
start-up, imports, the warm-up (first-request caches, freelists) and
shutdown.  The server counts as up when it prints its "listening" line, so no
readiness polling adds work; PYTHONHASHSEED=0 fixes dict ordering.  Apart
from timers that fire per second of wall time (a few thousand instructions),
the figures are deterministic: a change of 1% is a real change.

Whole-program counts: user-space instructions of the server process (the
kernel's share of each syscall is not counted).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import httpprobe  # noqa: E402
import run  # noqa: E402  (scenario definitions and checks)

WARM = 100


def callgrind_total(prefix):
    """Ir summed over every file callgrind wrote for one run: one per process
    (%p in the name, children traced) and any extra dump parts (.N)."""
    d, base = os.path.split(prefix)
    total, nfiles = 0, 0
    for name in os.listdir(d):
        if not name.startswith(base) or name.endswith(".log"):
            continue
        with open(os.path.join(d, name)) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total += int(line.split()[1])
                    nfiles += 1
                    break
    if not nfiles:
        raise RuntimeError("no callgrind output for %s" % prefix)
    return total


def drive(port, sc, n, depth):
    """WARM requests one at a time, then n in batches of depth; checks every answer."""
    req = httpprobe.build_request(sc["method"], sc["path"], port, sc["headers"], sc["body"])
    c = httpprobe.Conn(port, timeout=60)
    bad = 0
    try:
        for todo, d in ((WARM, 1), (n, depth)):
            while todo > 0:
                k = min(d, todo)
                c.send(req * k)
                got = c.recv_responses(k)
                if len(got) != k:
                    raise RuntimeError("got %d of %d responses" % (len(got), k))
                bad += sum(1 for r in got if not sc["check"](*r))
                todo -= k
    finally:
        c.close()
    return bad


def one_run(scenario, label, n, depth, outdir, py):
    """Run the app under callgrind, drive it, stop it; returns total Ir."""
    sc = run.SCENARIOS[scenario]
    port = run.free_port()
    prefix = os.path.join(outdir, "callgrind.%s.%s." % (scenario, label))
    for name in os.listdir(outdir):       # files of an earlier run
        if name.startswith(os.path.basename(prefix)):
            os.remove(os.path.join(outdir, name))
    cmd = ["valgrind", "--tool=callgrind", "-q", "--trace-children=yes",
           "--callgrind-out-file=" + prefix + "%p.out", "--log-file=" + prefix + "%p.log",
           py, os.path.join(run.APPS, sc["app"]), str(port)]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    env.update(run.FULMEN_ENV)
    p = subprocess.Popen(cmd, cwd=run.ROOT, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        line = b""
        while b"listening on" not in line:
            line = p.stderr.readline()
            if not line and p.poll() is not None:
                raise RuntimeError("server exited before listening")
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 180 s")
        bad = drive(port, sc, n, depth)
        if bad:
            raise RuntimeError("%d wrong answers" % bad)
        p.send_signal(signal.SIGINT)
        p.wait(180)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        p.stderr.close()
    return callgrind_total(prefix)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="hello,json,async-sleep")
    ap.add_argument("-n", type=int, default=2000, help="measured requests per run")
    ap.add_argument("--depth", type=int, default=run.DEPTH)
    ap.add_argument("--head", action="store_true",
                    help="count the committed HEAD (bench/out/head-<sha>/), not the working tree")
    args = ap.parse_args()
    commit = run.git_commit()
    if args.head:
        src, sha = run.head_snapshot()
        run.FULMEN_ENV["PYTHONPATH"] = src
        commit = sha + " (HEAD snapshot)"
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode:
        sys.exit("instr.py: valgrind is not installed (apt-get install valgrind)")
    outdir = os.path.join(run.OUT, "callgrind")
    os.makedirs(outdir, exist_ok=True)
    print("# callgrind: instructions (Ir) per request, fulmen %s, N=%d after %d warm-up "
          "requests, baseline subtracted" % (commit, args.n, WARM))
    print("%-10s %12s %14s %14s" % ("scenario", "baseline Ir", "Ir/req seq", "Ir/req pipe%d" % args.depth))
    rows = []
    try:
        for scenario in args.scenarios.split(","):
            if scenario not in run.SCENARIOS:
                sys.exit("unknown scenario %r" % scenario)
            base = one_run(scenario, "base", 0, 1, outdir, run.FULMEN_PY)
            seq = one_run(scenario, "seq", args.n, 1, outdir, run.FULMEN_PY)
            pipe = one_run(scenario, "pipe", args.n, args.depth, outdir, run.FULMEN_PY)
            r = (scenario, base, (seq - base) / args.n, (pipe - base) / args.n)
            rows.append(r)
            print("%-10s %12d %14.0f %14.0f" % r, flush=True)
    except KeyboardInterrupt:
        sys.exit(130)
    with open(os.path.join(run.OUT, "instr-latest.tsv"), "w") as f:
        f.write("scenario\tbaseline_ir\tir_per_req_seq\tir_per_req_pipe\n")
        for r in rows:
            f.write("%s\t%d\t%.0f\t%.0f\n" % r)
    print("# callgrind files: %s (callgrind_annotate FILE for a profile)" % outdir)


if __name__ == "__main__":
    main()
