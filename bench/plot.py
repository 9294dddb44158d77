"""Bar charts of the latest bench run (make bench-plot).

    .venv/bin/python bench/plot.py [RESULTS.json]

Reads bench/out/latest.json (or the file given), writes
bench/out/plot-<scenario>.png: per server, server CPU µs/request in plain and
pipelined mode side by side (left) and requests/s (right).  Needs matplotlib,
which `make bench-plot` installs into the .venv when it is missing.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(OUT, "latest.json")
    if not os.path.exists(path):
        sys.exit("plot.py: %s not found; run `make bench` first" % path)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot.py: matplotlib is not installed (make bench-plot installs it)")
    with open(path) as f:
        data = json.load(f)
    meta, rows = data["meta"], data["rows"]
    scenarios, servers, modes = [], [], []
    vals = {}
    for r in rows:
        m = r.get("result") or {}
        if not m or m.get("us_per_req") is None:
            continue
        for lst, v in ((scenarios, r["scenario"]), (servers, r["server"]), (modes, r["mode"])):
            if v not in lst:
                lst.append(v)
        vals[r["scenario"], r["server"], r["mode"]] = m
    written = []
    for sc in scenarios:
        names = [s for s in servers if any((sc, s, m) in vals for m in modes)]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        width = 0.8 / max(1, len(modes))
        for ax, key, title in ((axes[0], "us_per_req", "server CPU µs / request (lower is better)"),
                               (axes[1], "rps", "requests / s (wrk-bound on 2 cores)")):
            for i, mode in enumerate(modes):
                ys = [(vals.get((sc, s, mode)) or {}).get(key) or 0 for s in names]
                xs = [j + (i - (len(modes) - 1) / 2) * width for j in range(len(names))]
                bars = ax.bar(xs, ys, width, label=mode)
                for b, y in zip(bars, ys):
                    if y:
                        label = "%.2f" % y if key == "us_per_req" else "%.0fk" % (y / 1000)
                        ax.annotate(label, (b.get_x() + b.get_width() / 2, y), ha="center",
                                    va="bottom", fontsize=7)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=20, fontsize=8)
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=8)
        fig.suptitle("%s  —  %s, commit %s, 1 worker on cpu %s, wrk -c%d on cpu %s"
                     % (sc, meta["date"][:16], meta["commit"], meta["server_cpu"], meta["conns"],
                        meta["wrk_cpu"]), fontsize=9)
        fig.tight_layout()
        out = os.path.join(OUT, "plot-%s.png" % sc)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    for w in written:
        print(w)
    if not written:
        print("plot.py: no measured rows in %s" % path)


if __name__ == "__main__":
    main()
