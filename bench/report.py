"""Markdown tables of a bench run (make bench-report), for bench/RESULTS.md.

    .venv/bin/python bench/report.py [RESULTS.json]

Reads bench/out/latest.json (or the file given) and prints, per scenario, one
table with every server's figures in plain and pipelined mode side by side:
requests/s, server CPU µs per request, p50 and p99 latency, errors (socket
errors / non-2xx answers), and x, the server's µs/req divided by fulmen's in
the same run and mode.  A header gives the run's commit, date, machine and
versions, so a table pasted into RESULTS.md carries its provenance.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


def num(v, f):
    return "—" if v is None else f % v


def cell(m, fus, why="not run"):
    """The five figures of one server in one mode, and x; why: what to say
    when the mode has no figures."""
    if not m or m.get("us_per_req") is None:
        why = (m or {}).get("error", why)
        return ["—", "—", "—", "—", why, "—"]
    us = m["us_per_req"]
    x = us / fus if fus else None
    return [
        "{:,.0f}".format(m["rps"]),
        ("**%.2f**" % us) if x is not None and abs(x - 1) < 1e-9 else "%.2f" % us,
        num(m.get("p50_ms"), "%.2f"),
        num(m.get("p99_ms"), "%.2f"),
        "%d/%d" % (m.get("errors", 0), m.get("non2xx", 0)),
        num(x, "%.1f"),
    ]


def report(data):
    meta, rows = data["meta"], data["rows"]
    lines = []
    v = meta.get("versions", {})
    lines.append("Run of %s at fulmen `%s`: %d s runs after %s s warm-up, %d connections, "
                 "pipelined %d deep, server on CPU %s, wrk on CPU %s (%s, %s CPUs, kernel %s)."
                 % (meta.get("date", "?"), meta.get("commit", "?"), meta.get("duration_s", 0),
                    meta.get("warmup_s", "?"), meta.get("conns", 0), meta.get("depth", 0),
                    meta.get("server_cpu", "?"), meta.get("wrk_cpu", "?"), meta.get("host", "?"),
                    meta.get("cpus", "?"), meta.get("kernel", "?")))
    lines.append("Command: `bench/run.py %s`." % " ".join(meta.get("argv", [])))
    for k in sorted(v):
        lines.append("- %s: %s" % (k, v[k]))
    order, idx, checks = [], {}, {}
    for r in rows:
        sc = r["scenario"]
        if sc not in order:
            order.append(sc)
        idx.setdefault(sc, {}).setdefault(r["server"], {})[r["mode"]] = r.get("result") or {}
        if str(r.get("check", "")).startswith("FAIL"):
            checks[sc, r["server"]] = r["check"]
    for sc in order:
        servers = idx[sc]
        modes = [m for m in ("plain", "pipe", "close", "depth1", "depth16")
                 if any(m in s for s in servers.values())]
        unit = "msg" if sc.startswith("ws") else "req"
        lines.append("")
        lines.append("### %s" % sc)
        lines.append("")
        hdr, sep = ["server"], ["---"]
        for mode in modes:
            hdr += ["%s %s/s" % (mode, unit), "µs/%s" % unit, "p50 ms", "p99 ms", "err", "x"]
            sep += ["---:"] * 6
        lines.append("| " + " | ".join(hdr) + " |")
        lines.append("|" + "|".join(sep) + "|")
        names = sorted(servers, key=lambda n: (n != "fulmen", n))
        for name in names:
            row = [name]
            for mode in modes:
                f = servers.get("fulmen", {}).get(mode, {})
                row += cell(servers[name].get(mode), f.get("us_per_req"),
                            checks.get((sc, name), "not run"))
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("err = socket errors / non-2xx answers; x = µs per request (or message) "
                 "÷ fulmen's in the same run and mode; p50/p99 in pipelined mode are per "
                 "24-request batch; a server that fails the pipelined probe is measured "
                 "plain only.")
    return "\n".join(lines)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(OUT, "latest.json")
    if not os.path.exists(path):
        sys.exit("report.py: %s not found; run `make bench` first" % path)
    with open(path) as f:
        print(report(json.load(f)))


if __name__ == "__main__":
    main()
