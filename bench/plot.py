#!/usr/bin/env python3
"""plot.py: the report of bench/run.sh: reads the points (omfirehose.sh --json, tagged with their scenario) and the
scenario summaries, prints the table, writes results.json and an SVG plot of loss against offered rate.

Only the standard library: the SVG is written by hand (log-scale loss axis, zero loss drawn on the bottom line).
"""
import argparse
import json
import math
import sys

TARGETS = {"router": 250000, "agent": 120000, "drain": 150000}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
LOSS_FLOOR = 0.001  # % drawn at the bottom of the log axis (zero loss)


def read_jsonl(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def collect(points, summary):
    """Groups the points by scenario and derives each scenario's figures."""
    res = {"ceiling": None, "scenarios": {}}
    for s in summary:
        if s["scenario"] == "ceiling":
            res["ceiling"] = s
            continue
        sc = res["scenarios"].setdefault(s["scenario"], {"points": [], "latency": {}})
        sc["available"] = s.get("available", False)
        if "note" in s:
            sc["note"] = s["note"]
    for p in points:
        sc = res["scenarios"].setdefault(p.get("scenario", "?"), {"points": [], "latency": {}})
        if "best_rate" in p:
            if p.get("phase") == "search":  # the latency points' run ends with a "best" of its own: not a search
                sc["best_rate"] = p["best_rate"]
            continue
        if p.get("phase") == "latency":
            sc["latency"][str(p["rate"])] = {"p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"], "loss_pct": p["loss_pct"],
                                              "other_cpus": p["other_cpus"]}
        sc["points"].append(p)
    ceiling = (res["ceiling"] or {}).get("lines_per_s", 0)
    for name, sc in res["scenarios"].items():
        best = sc.get("best_rate", 0)
        at = [p for p in sc["points"] if p.get("phase") == "search" and p["rate"] == best]
        sc["at_best"] = at[-1] if at else None
        sc["fraction_of_ceiling"] = round(best / ceiling, 3) if ceiling and best else None
        for k, v in sc["latency"].items():
            v["rate_fraction_of_ceiling"] = round(int(k) / ceiling, 3) if ceiling else None
    return res


def fmt(v, spec="{}"):
    return "-" if v is None else spec.format(v)


def table(res, out):
    c = res["ceiling"]
    if c and c.get("lines_per_s"):
        out.write("rsyslog's ceiling (imptcp -> omfile, octet-counted lines of 200 bytes): %d lines/s, %.2f us/line, "
                  "%s MiB RSS, other %.2f CPUs\n\n" % (c["lines_per_s"], c["cpu_us"]["rsyslogd"],
                                                       c["rss_mib"]["rsyslogd"], c["other_cpus"]))
    else:
        out.write("rsyslog's ceiling: not measured\n\n")
    hdr = ("%-10s %9s %6s %7s %7s %7s %7s %7s %7s %7s %13s %13s %6s  %s\n" %
           ("scenario", "best/s", "ceil", "rout_us", "agnt_us", "recv_us", "gen_us", "routMiB", "recvMiB", "other",
            "p50/p99@10k", "p50/p99@100k", "@10k", "target"))
    out.write(hdr)
    for name, sc in res["scenarios"].items():
        if not sc.get("available", True) and not sc["points"]:
            out.write("%-10s %s\n" % (name, sc.get("note", "not available")))
            continue
        a = sc.get("at_best") or {}
        cpu = a.get("cpu_us", {})
        rss = a.get("rss_mib", {})
        lat = sc["latency"]
        l10, l100 = lat.get("10000"), lat.get("100000")
        topo = "agent" if name.startswith("agent") else "drain" if name.startswith("drain") else "router"
        target = TARGETS[topo] if name != "router100" else None
        best = sc.get("best_rate", 0)
        verdict = "-" if target is None else ("%d: %s" % (target, "met" if best >= target else "NOT met"))
        p99ok = "-" if not l10 else ("ok" if l10["p99_ms"] < 5 else "NOT")
        out.write("%-10s %9d %6s %7s %7s %7s %7s %7s %7s %7s %13s %13s %6s  %s\n" % (
            name, best, fmt(sc["fraction_of_ceiling"], "{:.0%}"), fmt(cpu.get("router")), fmt(cpu.get("agent")),
            fmt(cpu.get("receiver")), fmt(cpu.get("generator")), fmt(rss.get("router")), fmt(rss.get("receiver")),
            fmt(a.get("other_cpus")),
            "-" if not l10 else "%.2f/%.2f" % (l10["p50_ms"], l10["p99_ms"]),
            "-" if not l100 else "%.2f/%.2f%s" % (l100["p50_ms"], l100["p99_ms"], "*" if l100["loss_pct"] >= 0.1 else ""),
            p99ok, verdict))
        if sc.get("note"):
            out.write("%-10s   note: %s\n" % ("", sc["note"]))
    out.write("\nbest/s: highest offered rate with < 0.1 % loss; ceil: that rate as a fraction of rsyslog's ceiling;"
              " us: CPU microseconds per envelope of each process at that rate; p50/p99 in ms (* = the point lost"
              " >= 0.1 %); @10k: p99 < 5 ms at 10,000 envelopes/s; other: CPUs used by other processes.\n")


def svg(res, note):
    """Loss (log scale) against offered rate, one polyline per scenario."""
    w, h, ml, mr, mt, mb = 760, 420, 70, 170, 40, 50
    series = []
    for name, sc in res["scenarios"].items():
        pts = sorted((p["offered_per_s"], p["loss_pct"]) for p in sc["points"] if p.get("phase") == "search")
        if pts:
            series.append((name, pts))
    xmax = max([x for _, pts in series for x, _ in pts] + [1000])
    ceiling = (res["ceiling"] or {}).get("lines_per_s", 0)
    xmax = max(xmax, ceiling) * 1.05
    ymin, ymax = math.log10(LOSS_FLOOR), math.log10(100)

    def X(x):
        return ml + (w - ml - mr) * x / xmax

    def Y(loss):
        v = math.log10(max(loss, LOSS_FLOOR))
        return mt + (h - mt - mb) * (ymax - v) / (ymax - ymin)

    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (w, h),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="20" font-size="14">Loss against offered rate (%s)</text>' % (ml, escape(note))]
    for e in range(int(ymin), int(ymax) + 1):
        y = Y(10 ** e)
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (ml, y, w - mr, y))
        label = ("%g" % (10 ** e)) + " %"
        o.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (ml - 6, y + 4, "0 / " + label if e == int(ymin) else label))
    step = nice_step(xmax)
    x = 0
    while x <= xmax:
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>' % (X(x), mt, X(x), h - mb))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (X(x), h - mb + 16, "%dk" % (x // 1000)))
        x += step
    o.append('<text x="%d" y="%d" text-anchor="middle">offered envelopes/s</text>' % ((ml + w - mr) // 2, h - 12))
    o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888" stroke-dasharray="4,3"/>' % (ml, Y(0.1), w - mr, Y(0.1)))
    o.append('<text x="%d" y="%.1f" fill="#888">0.1 %%</text>' % (w - mr + 4, Y(0.1) + 4))
    if ceiling:
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-dasharray="2,2"/>' % (X(ceiling), mt, X(ceiling), h - mb))
        o.append('<text x="%.1f" y="%d" text-anchor="end">rsyslog ceiling</text>' % (X(ceiling) - 4, mt + 12))
    for i, (name, pts) in enumerate(series):
        col = COLOURS[i % len(COLOURS)]
        o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (
            col, " ".join("%.1f,%.1f" % (X(x), Y(l)) for x, l in pts)))
        for x, l in pts:
            o.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (X(x), Y(l), col))
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (w - mr + 10, mt + 20 * i + 30, col))
        o.append('<text x="%d" y="%d">%s</text>' % (w - mr + 28, mt + 20 * i + 40, escape(name)))
    o.append("</svg>")
    return "\n".join(o) + "\n"


def nice_step(xmax):
    raw = xmax / 8
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", required=True)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    res = collect(read_jsonl(a.points), read_jsonl(a.summary))
    res["note"] = a.note
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    with open(a.svg, "w") as f:
        f.write(svg(res, a.note))
    sys.stdout.write("\n%s\n" % a.note)
    table(res, sys.stdout)


if __name__ == "__main__":
    main()
