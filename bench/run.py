"""fulmen's performance lab: fulmen and its peers, side by side, under wrk.

    .venv/bin/python bench/run.py                  # make bench: hello (examples/hello.py) + peers
    .venv/bin/python bench/run.py --all            # every scenario
    .venv/bin/python bench/run.py --scenarios params,post-json --servers fulmen,uvicorn
    .venv/bin/python bench/run.py --quick          # 2 s runs, for a smoke test
    .venv/bin/python bench/run.py --scenarios ws-echo   # make bench-ws: WebSocket echo


For each scenario and server: start the server pinned to CPU 0 (taskset) in
its own process group, wait until it answers, check its answers (one request,
then 24 pipelined in one write), run wrk pinned to CPU 1 with 100 connections
in plain keep-alive mode and 24-deep pipelined mode, and read the server's CPU
time (utime+stime of its whole process tree, /proc/PID/stat) before and after.
`--modes close` adds (or, alone, runs) a mode for GET scenarios where every
request says `Connection: close`: a new connection per request.
Scenario `tls` is hello over each server's own TLS (wrk's OpenSSL against a
self-signed certificate that run.py makes with the openssl command).

The figure to quote is `us/req`, the server's CPU time per response: on a
2-core machine wrk is the ceiling for requests/s, so fast servers all show
the same rps while their CPU cost per request still differs.  CPU used by
*other* processes during a run is measured too; above --noise-max % of one
core the run is repeated (--retries) and the least-disturbed attempt kept.

The WebSocket scenario (ws-echo; not part of --all) runs the HTTP peers'
WebSocket servers (uvicorn's needs the websockets package) and two more
peers, websockets and picows, under its own load generator, bench/ws_load
(make bench/ws_load):
100 connections keep `depth` 64-byte binary messages in flight each, in
modes depth1 and depth16 (any depthN works); the probe (bench/wsprobe.py)
checks one echo, then 16 sent in one write.  The figures are messages/s and
server CPU us per message, read over exactly the measured window (ws_load
prints a line when it starts and ends; handshakes and warm-up are outside).

Results: a table on stdout and bench/out/results-<stamp>.{json,tsv}
(bench/out/latest.json points at the newest).  Only the standard library is
used; the peers run with $PEERS_VENV/bin/python (/tmp/fulmen-peers).
"""
import argparse
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = os.path.join(HERE, "apps")
PEER_APPS = os.path.join(APPS, "peers")
OUT = os.path.join(HERE, "out")
SHARED = os.environ.get("BENCH_SHARED", os.path.join(os.path.dirname(ROOT), "shared", "bench"))
PEERS_VENV = os.environ.get("PEERS_VENV", "/tmp/fulmen-peers")
PEER_PY = os.path.join(PEERS_VENV, "bin", "python")
FULMEN_PY = os.environ.get("FULMEN_PY", os.path.join(ROOT, ".venv", "bin", "python"))
SERVER_CPU, WRK_CPU = "0", "1"
CONNS, DEPTH = 100, 24
HZ = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, APPS)
sys.path.insert(0, HERE)
import httpprobe  # noqa: E402
import routes200  # noqa: E402
import static_asset  # noqa: E402
import wsprobe  # noqa: E402

WS_LOAD = os.path.join(HERE, "ws_load")
WS_CONNS, WS_SIZE, WS_PROBE_DEPTH = 100, 64, 16

with open(os.path.join(HERE, "payload-1k.json"), "rb") as _f:
    PAYLOAD = _f.read()

# ---------------------------------------------------------------------------
# Scenarios: what wrk sends, and what a correct answer is.

HELLO_TEXT = b"Hello world!"


def _is_text(h):
    return h.get("content-type", "").startswith("text/plain")


def _is_json(h):
    return h.get("content-type", "").startswith("application/json")


def check_hello(status, headers, body):
    return status == 200 and body == HELLO_TEXT and _is_text(headers)


def check_json(status, headers, body):
    try:
        return status == 200 and _is_json(headers) and \
            json.loads(body) == {"message": "Hello, World!"}
    except ValueError:
        return False


def check_params(status, headers, body):
    return status == 200 and body == routes200.EXPECTED_BODY and _is_text(headers)


_PAYLOAD_OBJ = json.loads(PAYLOAD)


def check_post(status, headers, body):
    try:
        return status == 200 and _is_json(headers) and json.loads(body) == _PAYLOAD_OBJ
    except ValueError:
        return False


_STATIC_BODY = static_asset.content()


def check_static(status, headers, body):
    return (status == 200 and body == _STATIC_BODY and
            headers.get("content-type", "").split(";")[0] in ("text/javascript",
                                                              "application/javascript"))


UPLOAD = bytes((i * 31 + (i >> 9)) & 0xFF for i in range(256 * 1024))


def check_upload(status, headers, body):
    return status == 200 and body == b"%d" % len(UPLOAD) and _is_text(headers)


def upload_file():
    """UPLOAD in a file, for wrk-post.lua."""
    path = os.path.join(OUT, "upload-256k.bin")
    if not os.path.exists(path) or os.path.getsize(path) != len(UPLOAD):
        os.makedirs(OUT, exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(UPLOAD)
        os.replace(path + ".tmp", path)
    return path


GET = {"method": "GET", "path": "/", "headers": (), "body": b""}
SCENARIOS = {
    "hello": dict(GET, check=check_hello, app="hello.py",
                  doc='sync view, text "Hello world!"'),
    "json": dict(GET, check=check_json, app="json_msg.py",
                 doc='sync view, Response(json={"message": "Hello, World!"})'),
    "params": dict(GET, path=routes200.REQUEST_PATH, headers=(routes200.REQUEST_HEADER,),
                   check=check_params, app="params.py",
                   doc="200 routes, the middle one; one query parameter, one header"),
    "post-json": dict(GET, method="POST", headers=(("Content-Type", "application/json"),),
                      body=PAYLOAD, check=check_post, app="post_json.py",
                      doc="POST 1 KB JSON, parsed and echoed with Response(json=...)"),
    "async": dict(GET, check=check_hello, app="async_nothing.py",
                  doc='async def view awaiting nothing, text "Hello world!"'),
    "async-sleep": dict(GET, check=check_hello, app="async_sleep.py",
                        doc="async def view, await asyncio.sleep(0), same text"),
    "static": dict(GET, path=static_asset.PATH, check=check_static, app="static_file.py",
                   doc="a 16 KiB script from a directory of static files"),
    "upload": dict(GET, method="POST", headers=(("Content-Type", "application/octet-stream"),),
                   body=UPLOAD, body_file=upload_file, check=check_upload, app="upload.py",
                   doc="POST a 256 KiB body, answered with the length of request.body"),
    "tls": dict(GET, check=check_hello, app="hello.py", tls=True,
                doc="hello over TLS, each server's own (fulmen: TLS in C, docs/tls.md); "
                "a self-signed P-256 certificate"),
}
SCENARIOS["ws-echo"] = dict(kind="ws", path="/ws", app="ws_echo.py",
                            doc="WebSocket echo at /ws, %d-byte binary messages, %d connections, "
                            "no compression" % (WS_SIZE, WS_CONNS))
# --scenarios async reports the sync hello next to both async variants
GROUPS = {"async": ["hello", "async", "async-sleep"]}
ALL_SCENARIOS = ["hello", "json", "params", "post-json", "async", "async-sleep", "static",
                 "upload", "tls"]

# ---------------------------------------------------------------------------
# Servers

PEERS = {
    # name: (import that must work, launcher script in apps/peers/)
    "uvicorn": ("uvicorn, httptools, uvloop", "uvicorn_run.py"),
    "granian-asgi": ("granian", "granian_asgi.py"),
    "granian-rsgi": ("granian", "granian_rsgi.py"),
    "socketify": ("socketify", "socketify_app.py"),
}
WS_PEERS = {
    # WebSocket servers, for the ws-echo scenario only
    "websockets": ("websockets, uvloop", "websockets_echo.py"),
    "picows": ("picows, uvloop", "picows_echo.py"),
}
# What an HTTP peer needs beyond PEERS' import to serve ws-echo: uvicorn
# takes its WebSocket protocol from the websockets package.
WS_NEEDS = {"uvicorn": "websockets"}
ALL_SERVERS = ["fulmen"] + list(PEERS) + list(WS_PEERS)
_available = {}


def kind(scenario):
    return SCENARIOS[scenario].get("kind", "http")


def serves(name, scenario):
    """Whether the server takes part in the scenario: every HTTP peer does,
    and the WebSocket-only peers in ws-echo."""
    return name == "fulmen" or name in PEERS or (kind(scenario) == "ws" and name in WS_PEERS)


def peer(name):
    return PEERS.get(name) or WS_PEERS[name]


def server_available(name, scenario):
    """None when the server can run the scenario, else why not."""
    if kind(scenario) == "ws" and name in WS_NEEDS:
        name_ws = name + " (ws)"
        if name_ws not in _available:
            why = server_available(name, "hello")
            if why is None:
                r = subprocess.run([PEER_PY, "-c", "import " + WS_NEEDS[name]],
                                   capture_output=True, text=True)
                if r.returncode:
                    why = "no WebSocket support (%s)" % r.stderr.strip().splitlines()[-1]
            _available[name_ws] = why
        return _available[name_ws]
    if name in _available:
        return _available[name]
    if SCENARIOS[scenario].get("tls") and tls_files() is None:
        return "no openssl command to make a test certificate"
    why = None
    if name == "fulmen":
        if not os.access(FULMEN_PY, os.X_OK):
            why = "%s missing (make build)" % FULMEN_PY
    elif not os.access(PEER_PY, os.X_OK):
        why = "%s missing (run /work/shared/bench/setup-peers.sh)" % PEER_PY
    else:
        r = subprocess.run([PEER_PY, "-c", "import " + peer(name)[0]],
                           capture_output=True, text=True)
        if r.returncode:
            why = "not installed (%s)" % r.stderr.strip().splitlines()[-1]
    _available[name] = why
    return why


def server_cmd(name, scenario, port, fulmen_hello):
    if name == "fulmen":
        if scenario == "hello" and fulmen_hello:
            return [FULMEN_PY, fulmen_hello, "--port", str(port)]
        return [FULMEN_PY, os.path.join(APPS, SCENARIOS[scenario]["app"]), str(port)]
    return [PEER_PY, os.path.join(PEER_APPS, peer(name)[1]), str(port), scenario]


FULMEN_ENV = {}   # {"PYTHONPATH": <tree>/src} when measuring a snapshot (--head)


def server_env(name, scenario):
    env = dict(FULMEN_ENV) if name == "fulmen" else {}
    if SCENARIOS[scenario].get("tls"):
        env["BENCH_TLS_CERT"], env["BENCH_TLS_KEY"] = tls_files()
    return env


_tls = []


def tls_files():
    """(certfile, keyfile) of a self-signed P-256 certificate for 127.0.0.1 in
    bench/out/tls/, made once with the openssl command; None without it."""
    if not _tls:
        d = os.path.join(OUT, "tls")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        if not (os.path.exists(cert) and os.path.exists(key)):
            os.makedirs(d, exist_ok=True)
            try:
                r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                                    "-subj", "/CN=127.0.0.1", "-addext",
                                    "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                                   capture_output=True)
            except FileNotFoundError:
                r = None
            if r is None or r.returncode:
                _tls.append(None)
                return None
        _tls.append((cert, key))
    return _tls[0]


def tls_context(sc):
    """The probes' client context for a TLS scenario (no certificate check)."""
    if not sc.get("tls"):
        return None
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def head_snapshot():
    """Build the committed HEAD (not the working tree) into bench/out/head-<sha>/.

    Other people edit and rebuild the working tree while benchmarks run; a
    snapshot keeps the measured code fixed and named.  Returns (src dir, sha).
    """
    sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=True).stdout.strip()
    tree = os.path.join(OUT, "head-" + sha)
    stamp = os.path.join(tree, ".built")
    if not os.path.exists(stamp):
        subprocess.run("rm -rf '%s' && mkdir -p '%s' && git -C '%s' archive HEAD | tar -x -C '%s'"
                       % (tree, tree, ROOT, tree), shell=True, check=True)
        subprocess.run([FULMEN_PY, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                       check=True, stdout=subprocess.DEVNULL)
        open(stamp, "w").close()
    return os.path.join(tree, "src"), sha


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A server process in its own session, pinned to SERVER_CPU."""

    def __init__(self, cmd, log_path, extra_env=None):
        self.log = open(log_path, "wb")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPATH", None)
        env.update(extra_env or {})
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """TERM the whole process group, KILL it after 5 s."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:   # children (granian workers) may outlive the leader
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        self.log.close()


_running = []


def _stop_all():
    while _running:
        _running.pop().stop()


def _on_signal(signum, frame):
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------
# CPU accounting from /proc

def tree_pids(root):
    """root and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def tree_ticks(root):
    """(utime, stime) clock ticks summed over the process tree."""
    u = s = 0
    for p in tree_pids(root):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        u += int(fields[11])
        s += int(fields[12])
    return u, s


def busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]   # user nice system irq softirq steal


# ---------------------------------------------------------------------------
# Probes and wrk

def ws_messages(n):
    """n distinct 64-byte messages, binary and text (UTF-8, some non-ASCII)."""
    out = []
    for i in range(n):
        if i % 2:
            out.append((1, ("#%03d héllo wörld " % i).encode().ljust(WS_SIZE, b".")))
        else:
            out.append((2, bytes((i * 7 + j) & 0xFF for j in range(WS_SIZE))))
    return out


def probe_ws(port, sc):
    for stage, n in (("single", 1), ("pipelined", WS_PROBE_DEPTH)):
        sent = ws_messages(n)
        try:
            got = wsprobe.exchange(port, sent, sc["path"])
        except (OSError, ValueError) as e:
            return "FAIL %s: %s: %s" % (stage, type(e).__name__, e)
        good = sum(1 for a, b in zip(sent, got) if a == b)
        if good != n:
            bad = next((b for a, b in zip(sent, got) if a != b), None)
            return "FAIL %s: %d/%d echoed exactly, e.g. opcode %s %r" % (
                stage, good, n, bad[0], bad[1][:40])
    return "ok"


def probe(port, sc, depth=DEPTH):
    """Check one answer, then `depth` pipelined in one write.

    Returns "ok", "FAIL single: ..." (wrong answer: the server is not measured)
    or "FAIL pipelined: ..." (measured in plain mode only).
    """
    if sc.get("kind") == "ws":
        return probe_ws(port, sc)
    req = httpprobe.build_request(sc["method"], sc["path"], port, sc["headers"], sc["body"])
    for stage, n in (("single", 1), ("pipelined", depth)):
        try:
            r = httpprobe.exchange(port, req * n, n, tls=tls_context(sc))
        except (OSError, ValueError) as e:
            return "FAIL %s: %s: %s" % (stage, type(e).__name__, e)
        good = sum(1 for x in r if sc["check"](*x))
        if good != n:
            bad = next((x for x in r if not sc["check"](*x)), None)
            why = "%d/%d good" % (good, n)
            if bad is not None:
                why += ", e.g. %d %r %r" % (bad[0], bad[1].get("content-type"), bad[2][:60])
            return "FAIL %s: %s" % (stage, why)
    return "ok"


def wait_ready(srv, port, sc, timeout=20.0):
    deadline = time.monotonic() + timeout
    if sc.get("kind") == "ws":
        while time.monotonic() < deadline and srv.alive():
            try:
                wsprobe.Conn(port, sc["path"], timeout=1.0).close()
                return True
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        return False
    req = httpprobe.build_request(sc["method"], sc["path"], port, sc["headers"], sc["body"])
    while time.monotonic() < deadline and srv.alive():
        try:
            if httpprobe.exchange(port, req, 1, timeout=1.0, tls=tls_context(sc)):
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def wrk_cmd(port, sc, mode, seconds):
    url = "%s://127.0.0.1:%d%s" % ("https" if sc.get("tls") else "http", port, sc["path"])
    cmd = ["taskset", "-c", WRK_CPU, "wrk", "-t1", "-c%d" % CONNS, "-d%ss" % seconds,
           "--latency", "--timeout", "5s"]
    for k, v in sc["headers"]:
        if sc["method"] == "GET":          # wrk-post.lua sets its own Content-Type
            cmd += ["-H", "%s: %s" % (k, v)]
    env = dict(os.environ)
    if sc["method"] == "POST":
        env["BENCH_WRKSTATS"] = os.path.join(SHARED, "wrkstats.lua")
        env["BENCH_DEPTH"] = str(DEPTH if mode == "pipe" else 1)
        env["BENCH_CTYPE"] = dict(sc["headers"]).get("Content-Type", "application/json")
        if "body_file" in sc:
            env["BENCH_BODY"] = sc["body_file"]()
        cmd += ["-s", os.path.join(HERE, "wrk-post.lua"), url, "--", str(CONNS)]
    elif mode == "pipe":
        cmd += ["-s", os.path.join(SHARED, "pipeline.lua"), url, "--", str(DEPTH), str(CONNS)]
    else:
        if mode == "close":                 # a connection per request
            cmd += ["-H", "Connection: close"]
        cmd += ["-s", os.path.join(SHARED, "stats.lua"), url, "--", str(CONNS)]
    return cmd, env


def run_wrk(cmd, env, seconds):
    """Run wrk; returns (stdout, wall seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = t0 + float(seconds) + 15
    out = b""
    try:
        out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    wall = time.monotonic() - t0
    return out.decode(errors="replace"), wall


def parse_wrkstats(text):
    for line in text.splitlines():
        if line.startswith("WRKSTATS "):
            return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return None


def ws_depth(mode):
    """depthN -> N (a ws-echo mode), else None."""
    if mode.startswith("depth") and mode[5:].isdigit() and int(mode[5:]) > 0:
        return int(mode[5:])
    return None


def ws_load_once(srv_pid, port, sc, mode, args):
    """One ws_load run (its own warm-up, then the measured window).

    Samples the server tree's, ws_load's and the whole machine's CPU ticks
    when ws_load says the measurement starts and ends.  Returns a result dict.
    """
    cmd = ["taskset", "-c", WRK_CPU, WS_LOAD, "-p", str(port), "-P", sc["path"],
           "-c", str(WS_CONNS), "-D", str(ws_depth(mode)), "-s", str(WS_SIZE),
           "-d", str(args.duration), "-w", str(args.warmup)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, marks = [], {}
    # bounded: 5 s handshake + warm-up + run + 2 s teardown, and some slack
    timer = threading.Timer(args.duration + args.warmup + 20, p.kill)
    timer.start()
    try:
        for line in p.stdout:
            lines.append(line)
            if line.startswith("WSLOAD phase="):
                marks[line.split("=", 1)[1].strip()] = (
                    time.monotonic(), tree_ticks(srv_pid), tree_ticks(p.pid), busy_ticks())
        p.wait()
    finally:
        timer.cancel()
    text = "".join(lines)
    st = None
    for line in lines:
        if line.startswith("WSSTATS "):
            st = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    if st is None or "measure" not in marks or "done" not in marks:
        return {"error": "ws_load produced no stats: " + text.strip()[-300:]}
    (t0, (su0, sy0), (lu0, ly0), b0), (t1, (su1, sy1), (lu1, ly1), b1) = marks["measure"], marks["done"]
    wall = t1 - t0
    srv_s = ((su1 - su0) + (sy1 - sy0)) / HZ
    load_s = ((lu1 - lu0) + (ly1 - ly0)) / HZ
    busy_s = (b1 - b0) / HZ
    msgs = st["messages"]
    return {
        "rps": st["rate"],
        "us_per_req": srv_s * 1e6 / msgs if msgs else None,
        "p50_ms": st["p50_us"] / 1000 if msgs else None,
        "p99_ms": st["p99_us"] / 1000 if msgs else None,
        "requests": int(msgs),
        "bytes_per_resp": WS_SIZE + 2,   # an unmasked server frame: 2-byte header + payload
        "errors": int(st["errors"]),
        "non2xx": 0,
        "srv_cpu_pct": srv_s / wall * 100,
        "srv_user_pct": (su1 - su0) / HZ / wall * 100,
        "srv_sys_pct": (sy1 - sy0) / HZ / wall * 100,
        "wrk_cpu_pct": load_s / wall * 100,
        "other_cpu_pct": max(0.0, busy_s - srv_s - load_s) / wall * 100,
        "unit": "message", "conns_open": int(st["open"]), "depth": ws_depth(mode),
    }


def measure_ws(srv, port, sc, mode, args):
    """Like measure(), with bench/ws_load instead of wrk."""
    best = None
    for attempt in range(1 + args.retries):
        res = ws_load_once(srv.pid, port, sc, mode, args)
        if "error" in res:
            return res
        res["attempts"] = attempt + 1
        if best is None or res["other_cpu_pct"] < best["other_cpu_pct"]:
            best = res
        if res["other_cpu_pct"] <= args.noise_max:
            break
        print("    (%s attempt %d: other processes used %.0f%% CPU, repeating)"
              % (mode, attempt + 1, res["other_cpu_pct"]), file=sys.stderr, flush=True)
    best["attempts"] = attempt + 1
    return best


def measure(srv, port, sc, mode, args):
    """One mode against a running server: warm up, then up to 1+retries attempts."""
    if sc.get("kind") == "ws":
        return measure_ws(srv, port, sc, mode, args)
    if args.warmup > 0:
        cmd, env = wrk_cmd(port, sc, mode, args.warmup)
        run_wrk(cmd, env, args.warmup)
    best = None
    for attempt in range(1 + args.retries):
        cmd, env = wrk_cmd(port, sc, mode, args.duration)
        ru0 = os.times()
        su0, sy0 = tree_ticks(srv.pid)
        b0 = busy_ticks()
        text, wall = run_wrk(cmd, env, args.duration)
        b1 = busy_ticks()
        su1, sy1 = tree_ticks(srv.pid)
        ru1 = os.times()
        st = parse_wrkstats(text)
        if st is None:
            return {"error": "wrk produced no stats: " + text.strip()[-300:]}
        wrk_s = (ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)
        srv_s = ((su1 - su0) + (sy1 - sy0)) / HZ
        busy_s = (b1 - b0) / HZ
        other = max(0.0, busy_s - srv_s - wrk_s) / wall * 100
        rps = st["rps"]
        requests = st["requests"]
        res = {
            "rps": rps,
            "us_per_req": srv_s * 1e6 / requests if requests else None,
            "p50_ms": st["raw_p50_us"] / 1000 if st["raw_samples"] > 0 else None,
            "p99_ms": st["raw_p99_us"] / 1000 if st["raw_samples"] > 0 else None,
            "requests": int(requests),
            "bytes_per_resp": st["bytes"] / requests if requests else None,
            "errors": int(st["err_connect"] + st["err_read"] + st["err_write"] + st["err_timeout"]),
            "non2xx": int(st["err_status"]),
            "srv_cpu_pct": srv_s / wall * 100,
            "srv_user_pct": (su1 - su0) / HZ / wall * 100,
            "srv_sys_pct": (sy1 - sy0) / HZ / wall * 100,
            "wrk_cpu_pct": wrk_s / wall * 100,
            "other_cpu_pct": other,
            "attempts": attempt + 1,
        }
        if best is None or res["other_cpu_pct"] < best["other_cpu_pct"]:
            best = res
        if other <= args.noise_max:
            break
        print("    (%s attempt %d: other processes used %.0f%% CPU, repeating)"
              % (mode, attempt + 1, other), file=sys.stderr, flush=True)
    best["attempts"] = attempt + 1
    return best


# ---------------------------------------------------------------------------
# Reporting

def fmt(v, f):
    return "-" if v is None else f % v


ROW = "%-12s %-13s %-7s %10s %8s %8s %8s %9s %6s  %s"


def print_row_header(ws=False):
    print(ROW % ("scenario", "server", "mode", "req/s", "us/req", "p50 ms", "p99 ms",
                 "err/non2xx", "other%", "check"))
    if ws:
        print("%-12s (ws-echo: req/s and us/req are per message, p50/p99 per message round trip)" % "")


def print_row(r):
    m = r.get("result") or {}
    if "error" in m or not m:
        print(ROW % (r["scenario"], r["server"], r["mode"], "-", "-", "-", "-", "-", "-",
                     m.get("error", r.get("note", ""))), flush=True)
        return
    print(ROW % (r["scenario"], r["server"], r["mode"], fmt(m["rps"], "%.0f"),
                 fmt(m["us_per_req"], "%.2f"), fmt(m["p50_ms"], "%.2f"), fmt(m["p99_ms"], "%.2f"),
                 "%d/%d" % (m["errors"], m["non2xx"]), "%.0f" % m["other_cpu_pct"],
                 r.get("check", "")), flush=True)


def summary(rows, scenarios, servers, modes_of):
    """Side by side per scenario: its modes, and each peer's cost / fulmen's."""
    idx = {(r["scenario"], r["server"], r["mode"]): r.get("result") or {} for r in rows}
    print("\n# summary: server CPU us/request (lower is better) and req/s; "
          "x = us/req relative to fulmen in the same run")
    for sc in scenarios:
        modes = modes_of(sc)
        unit = "msg" if kind(sc) == "ws" else "req"
        print("\n## %s: %s" % (sc, SCENARIOS[sc]["doc"]))
        hdr = "%-13s" % "server"
        for mode in modes:
            hdr += " | %-7s %9s %8s %6s" % (mode, unit + "/s", "us/" + unit, "x")
        print(hdr)
        for name in servers:
            if not serves(name, sc):
                continue
            line = "%-13s" % name
            have = False
            for mode in modes:
                m = idx.get((sc, name, mode), {})
                f = idx.get((sc, "fulmen", mode), {})
                us, fus = m.get("us_per_req"), f.get("us_per_req")
                ratio = us / fus if us and fus else None
                have = have or us is not None
                line += " | %-7s %9s %8s %6s" % ("", fmt(m.get("rps"), "%.0f"), fmt(us, "%.2f"),
                                                 fmt(ratio, "%.2f"))
            if have:
                print(line)
    if "hello" in scenarios and "async" in scenarios:
        print()
        for mode in modes_of("hello"):
            h = idx.get(("hello", "fulmen", mode), {}).get("us_per_req")
            for v in ("async", "async-sleep"):
                a = idx.get((v, "fulmen", mode), {}).get("us_per_req")
                if h and a:
                    tag = ""
                    if v == "async":
                        tag = "  (target <= 1.15: %s)" % ("met" if a / h <= 1.15 else "NOT met")
                    print("fulmen %-5s %-11s / sync hello = %.2f us / %.2f us = %.2f%s"
                          % (mode, v, a, h, a / h, tag))


def git_commit():
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    head = r.stdout.strip() if r.returncode == 0 else "no commit yet"
    r = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"], capture_output=True, text=True)
    return head + (" (dirty tree)" if r.stdout.strip() else "")


def versions(servers, scenarios):
    r = subprocess.run([FULMEN_PY, "-c", "import sys, uvloop, fulmen; print(sys.version.split()[0], "
                        "'uvloop', uvloop.__version__, 'fulmen from', fulmen.__file__)"],
                       capture_output=True, text=True, env=dict(os.environ, **FULMEN_ENV))
    v = {"python(fulmen)": r.stdout.strip() or r.stderr.strip().splitlines()[-1]}
    if any(s != "fulmen" for s in servers) and os.access(PEER_PY, os.X_OK):
        code = ("import importlib, sys\nout=[sys.version.split()[0]]\n"
                "for m in ('uvloop','httptools','uvicorn','granian','socketify','websockets',\n"
                "          'picows','aiofastnet'):\n"
                "  try: out.append('%s %s' % (m, importlib.metadata.version(m)))\n"
                "  except Exception: pass\nprint(', '.join(out))")
        v["python(peers)"] = subprocess.run([PEER_PY, "-c", "import importlib.metadata\n" + code],
                                            capture_output=True, text=True).stdout.strip()
    if any(kind(s) == "http" for s in scenarios):
        v["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True,
                                  text=True).stdout.split("\n")[0]
    if any(kind(s) == "ws" for s in scenarios):
        v["ws_load"] = "bench/ws_load (bench/ws_load.c, this tree)"
    return v


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", help="comma list of %s (default: hello, served by "
                    "examples/hello.py)" % ",".join(ALL_SCENARIOS))
    ap.add_argument("--all", action="store_true", help="every HTTP scenario (not ws-echo)")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma list (default: %(default)s)")
    ap.add_argument("--modes", help="HTTP: plain,pipe (the default), close (GET scenarios, "
                    "Connection: close); ws-echo: depth1,depth16 (the default; any depthN); "
                    "each scenario takes the modes of its kind")
    ap.add_argument("--duration", type=float, default=5, help="seconds per measured run")
    ap.add_argument("--warmup", type=float, default=1,
                    help="seconds of wrk before each mode (ws-echo: of ws_load before each run)")
    ap.add_argument("--quick", action="store_true", help="2 s runs, 0.5 s warm-up, 1 retry")
    ap.add_argument("--noise-max", type=float, default=15,
                    help="%% of one core other processes may use before a run is repeated")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--check-only", action="store_true", help="start, probe, stop; no wrk")
    ap.add_argument("--head", action="store_true",
                    help="measure the committed HEAD, built into bench/out/head-<sha>/, "
                    "instead of the working tree")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.retries = 2, 0.5, min(args.retries, 1)
    args.duration = int(args.duration) if args.duration == int(args.duration) else args.duration

    fulmen_hello = None
    if args.all:
        scenarios = list(ALL_SCENARIOS)
    elif args.scenarios:
        scenarios = []
        for s in args.scenarios.split(","):
            for x in GROUPS.get(s.strip(), [s.strip()]):
                if x not in SCENARIOS:
                    ap.error("unknown scenario %r" % x)
                if x not in scenarios:
                    scenarios.append(x)
    else:   # make bench: the engine issue's run
        scenarios = ["hello"]
        fulmen_hello = os.path.join(ROOT, "examples", "hello.py")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in ALL_SERVERS:
            ap.error("unknown server %r (known: %s)" % (s, ", ".join(ALL_SERVERS)))
    modes = [m.strip() for m in (args.modes or "").split(",") if m.strip()]
    for m in modes:
        if m not in ("plain", "pipe", "close") and not ws_depth(m):
            ap.error("unknown mode %r" % m)

    def modes_of(scenario):
        if kind(scenario) == "ws":
            return [m for m in modes if ws_depth(m)] or (["depth1", "depth16"] if not modes else [])
        http = [m for m in modes if not ws_depth(m)
                and (m != "close" or SCENARIOS[scenario]["method"] == "GET")]
        return http or (["plain", "pipe"] if not modes else [])

    for s in scenarios:
        if not modes_of(s):
            ap.error("no mode in --modes applies to %s" % s)
    if any(kind(s) == "http" for s in scenarios):
        for f in ("stats.lua", "pipeline.lua", "wrkstats.lua"):
            if not os.path.exists(os.path.join(SHARED, f)):
                sys.exit("run.py: %s not found; set BENCH_SHARED to the shared bench directory"
                         % os.path.join(SHARED, f))
    if any(kind(s) == "ws" for s in scenarios) and not os.access(WS_LOAD, os.X_OK):
        sys.exit("run.py: %s not found; build it with: make bench/ws_load" % WS_LOAD)

    commit = git_commit()
    if args.head:
        src, sha = head_snapshot()
        FULMEN_ENV["PYTHONPATH"] = src
        commit = sha + " (HEAD snapshot)"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = os.path.join(OUT, "logs-" + stamp)
    os.makedirs(logdir, exist_ok=True)
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit, "host": os.uname().nodename, "cpus": os.cpu_count(),
        "kernel": os.uname().release, "duration_s": args.duration, "warmup_s": args.warmup,
        "conns": CONNS, "depth": DEPTH, "server_cpu": SERVER_CPU, "wrk_cpu": WRK_CPU,
        "noise_max_pct": args.noise_max, "argv": sys.argv[1:],
        "versions": versions(servers, scenarios),
    }
    print("# fulmen bench %s  commit=%s  cpus=%s  duration=%ss warmup=%ss conns=%d depth=%d  "
          "server on cpu %s, wrk on cpu %s" % (meta["date"], meta["commit"], meta["cpus"],
                                               args.duration, args.warmup, CONNS, DEPTH,
                                               SERVER_CPU, WRK_CPU))
    if any(kind(s) == "ws" for s in scenarios):
        meta["ws"] = {"conns": WS_CONNS, "size": WS_SIZE, "opcode": "binary",
                      "modes": modes_of("ws-echo"), "load": "bench/ws_load"}
        print("# ws-echo: bench/ws_load on cpu %s, %d connections, %d-byte binary messages, "
              "modes %s" % (WRK_CPU, WS_CONNS, WS_SIZE, ",".join(modes_of("ws-echo"))))
    for k, v in meta["versions"].items():
        print("# %s: %s" % (k, v))
    print("# logs: %s" % logdir)
    signal.signal(signal.SIGTERM, _on_signal)
    rows = []
    print_row_header(any(kind(s) == "ws" for s in scenarios))
    try:
        for sc_name in scenarios:
            sc = SCENARIOS[sc_name]
            for name in servers:
                if not serves(name, sc_name):
                    continue
                why = server_available(name, sc_name)
                if why:
                    print("%-12s %-13s skipped: %s" % (sc_name, name, why), flush=True)
                    rows.append({"scenario": sc_name, "server": name, "mode": "-",
                                 "note": "skipped: " + why})
                    continue
                port = free_port()
                cmd = server_cmd(name, sc_name, port, fulmen_hello)
                srv = Server(cmd, os.path.join(logdir, "%s-%s.log" % (sc_name, name)),
                             server_env(name, sc_name))
                _running.append(srv)
                try:
                    if not wait_ready(srv, port, sc):
                        with open(srv.log.name, "rb") as f:
                            tail = f.read()[-400:].decode(errors="replace").strip()
                        print("%-12s %-13s did not come up: %s" % (sc_name, name, tail), flush=True)
                        rows.append({"scenario": sc_name, "server": name, "mode": "-",
                                     "note": "did not come up"})
                        continue
                    check = probe(port, sc)
                    if check.startswith("FAIL pipelined") and not args.check_only:
                        # the failed probe may have wedged it (socketify stops
                        # listening): measure plain mode on a fresh server
                        srv.stop()
                        _running.remove(srv)
                        port = free_port()
                        cmd = server_cmd(name, sc_name, port, fulmen_hello)
                        srv = Server(cmd, os.path.join(logdir, "%s-%s.2.log" % (sc_name, name)),
                                     server_env(name, sc_name))
                        _running.append(srv)
                        wait_ready(srv, port, sc)
                    if args.check_only:
                        print("%-12s %-13s check: %s" % (sc_name, name, check), flush=True)
                        rows.append({"scenario": sc_name, "server": name, "mode": "-",
                                     "check": check, "cmd": cmd})
                        continue
                    for mode in modes_of(sc_name):
                        r = {"scenario": sc_name, "server": name, "mode": mode, "check": check,
                             "cmd": " ".join(cmd)}
                        # wrong answers are not measured; a server that fails only
                        # the pipelined probe is measured in plain mode only
                        if check.startswith("FAIL single") or \
                                ((mode == "pipe" or (ws_depth(mode) or 1) > 1) and check != "ok"):
                            r["note"] = "not measured: " + check
                            rows.append(r)
                            print_row(r)
                            continue
                        r["result"] = measure(srv, port, sc, mode, args)
                        rows.append(r)
                        print_row(r)
                finally:
                    srv.stop()
                    _running.remove(srv)
                time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping servers", file=sys.stderr)
        _stop_all()
        raise SystemExit(130)
    finally:
        _stop_all()

    if not args.check_only:
        summary(rows, scenarios, servers, modes_of)
    path = os.path.join(OUT, "results-%s.json" % stamp)
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    with open(os.path.join(OUT, "results-%s.tsv" % stamp), "w") as f:
        cols = ["rps", "us_per_req", "p50_ms", "p99_ms", "errors", "non2xx", "bytes_per_resp",
                "srv_cpu_pct", "srv_user_pct", "srv_sys_pct", "wrk_cpu_pct", "other_cpu_pct",
                "attempts"]
        f.write("\t".join(["scenario", "server", "mode"] + cols + ["check"]) + "\n")
        for r in rows:
            m = r.get("result") or {}
            f.write("\t".join([r["scenario"], r["server"], r["mode"]] +
                              ["" if m.get(c) is None else str(round(m[c], 3)) for c in cols] +
                              [r.get("check", r.get("note", ""))]) + "\n")
    latest = os.path.join(OUT, "latest.json")
    try:
        os.remove(latest)
    except FileNotFoundError:
        pass
    os.symlink(os.path.basename(path), latest)
    print("\n# results: %s (and .tsv); logs: %s" % (path, logdir))


if __name__ == "__main__":
    main()
