#!/usr/bin/env python3
"""Results of `make bench`: one JSON object per figure row.

    report.py add FILE KEY=VALUE ...   append a row; values that parse as
                                       numbers are numbers; *_runs values
                                       are space-separated lists whose
                                       median becomes the figure
    report.py print FILE [MACHINE]     the table, then one JSON line per row

Row kinds (the "kind" key):
  ratio     popbridge_runs, direct_runs -> popbridge_s, direct_s (medians),
            ratio (median of the per-repetition ratios: each popbridge run
            over the direct run just before it), ratio_of_medians;
            met = ratio <= target
  floor     as ratio, for a copying relay in popbridge's place (the cost
            of one more hop); no target
  reference pop3_runs, direct_runs (Dovecot's POP3 over imapc)
            -> dovecot_pop3_s, direct_s, ratio (paired, as above); compared with popbridge's
            ratio from the row named by "compare"
  rtt       time_runs (seconds), rtt_ms -> seconds (median), rtts (that over
            the round trip); met = rtts <= target, a reference without one
            (side=dovecot_pop3: Dovecot's POP3, shown as the reference)
  idle      sessions, state, rss_before_kb, rss_after_kb
            -> per_session_kb; met = per_session_kb <= target
  rss       peak_small_kb, peak_large_kb -> diff_kb; met = diff <= target
  skipped   reason
"""

import json
import statistics
import sys


def num(v):
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def add(path, pairs):
    row = {}
    for p in pairs:
        k, _, v = p.partition("=")
        if k.endswith("_runs"):
            row[k] = [float(x) for x in v.split()]
        else:
            row[k] = num(v)
    kind = row.get("kind")
    if kind in ("ratio", "floor"):
        row["popbridge_s"] = round(statistics.median(row["popbridge_runs"]), 4)
        row["direct_s"] = round(statistics.median(row["direct_runs"]), 4)
        # Each popbridge run against the direct run just before it (the
        # same moment of a machine whose speed drifts), then the median.
        row["ratio"] = round(statistics.median(
            p / d for p, d in zip(row["popbridge_runs"], row["direct_runs"])), 3)
        row["ratio_of_medians"] = round(row["popbridge_s"] / row["direct_s"], 3)
        if kind == "ratio":
            row["met"] = row["ratio"] <= row["target"]
        if row.get("popbridge_cpu_runs"):
            row["popbridge_cpu_s"] = round(
                statistics.median(row["popbridge_cpu_runs"]), 3)
    elif kind == "reference":
        row["dovecot_pop3_s"] = round(statistics.median(row["pop3_runs"]), 4)
        row["direct_s"] = round(statistics.median(row["direct_runs"]), 4)
        row["ratio"] = round(statistics.median(
            p / d for p, d in zip(row["pop3_runs"], row["direct_runs"])), 3)
        if row.get("dovecot_pop3_first_s"):
            row["first_ratio"] = round(
                row["dovecot_pop3_first_s"] / row["direct_s"], 3)
    elif kind == "rtt":
        row["seconds"] = round(statistics.median(row["time_runs"]), 4)
        row["rtts"] = round(row["seconds"] / (row["rtt_ms"] / 1000.0), 2)
        if "target" in row:
            row["met"] = row["rtts"] <= row["target"]
    elif kind == "idle":
        ok = row["sessions_ok"]
        row["per_session_kb"] = round(
            (row["rss_after_kb"] - row["rss_before_kb"]) / ok, 2) if ok else None
        row["met"] = (row["per_session_kb"] is not None and
                      row["sessions_ok"] == row["sessions"] and
                      row["per_session_kb"] <= row["target"])
    elif kind == "rss":
        row["diff_kb"] = row["peak_large_kb"] - row["peak_small_kb"]
        row["met"] = row["diff_kb"] <= row["target"]
    if row.get("path_cpu_runs") and row.get("direct_path_cpu_runs"):
        a = statistics.median(row["path_cpu_runs"])
        b = statistics.median(row["direct_path_cpu_runs"])
        row["path_cpu_s"] = round(a, 3)
        row["direct_path_cpu_s"] = round(b, 3)
        if b > 0:
            row["cpu_ratio"] = round(a / b, 3)
    # The figure and name first, for whoever reads the JSON lines.
    head = {"figure": row.pop("figure"), "name": row.pop("name")}
    head.update(row)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(head) + "\n")


def status(row):
    if row.get("kind") == "skipped":
        return "SKIPPED"
    if "met" not in row:
        return "reference"
    return "met" if row["met"] else "MISSED"


def fmt_s(v):
    return "%.3f s" % v


def table(rows):
    by_name = {r["name"]: r for r in rows}
    out = []
    hdr = ("fig", "measure", "popbridge", "reference", "result", "target", "status")
    for r in rows:
        k = r.get("kind")
        if k in ("ratio", "floor"):
            cpu = " (%.2f s CPU)" % r["popbridge_cpu_s"] if "popbridge_cpu_s" in r else ""
            cr = " (CPU %.2f)" % r["cpu_ratio"] if "cpu_ratio" in r else ""
            who = "relay " if k == "floor" else ""
            out.append((r["figure"], r["label"], who + fmt_s(r["popbridge_s"]) + cpu,
                        fmt_s(r["direct_s"]) + " IMAP",
                        "ratio %.2f%s" % (r["ratio"], cr),
                        "<= %.2f" % r["target"] if k == "ratio" else "-",
                        status(r)))
        elif k == "reference":
            other = by_name.get(r.get("compare", ""), {})
            pb = "; popbridge %.2f" % other["ratio"] if "ratio" in other else ""
            first = ", first session %.1f" % r["first_ratio"] if "first_ratio" in r else ""
            if "cpu_ratio" in r:
                first = ", CPU %.2f" % r["cpu_ratio"] + first
            out.append((r["figure"], r["label"],
                        "-", fmt_s(r["dovecot_pop3_s"]) + " Dovecot POP3",
                        "ratio %.2f (%s)" % (r["ratio"], (first.lstrip(", ") + pb).lstrip("; "))
                        if first or pb else "ratio %.2f" % r["ratio"],
                        "-", status(r)))
        elif k == "rtt":
            if r.get("side") == "dovecot_pop3":
                who = ("-", "%s Dovecot POP3 (RTT %g ms)" % (fmt_s(r["seconds"]), r["rtt_ms"]))
            else:
                who = (fmt_s(r["seconds"]), "RTT %g ms" % r["rtt_ms"])
            out.append((r["figure"], r["label"]) + who +
                       ("%.2f RTT" % r["rtts"],
                        "<= %g RTT" % r["target"] if "target" in r else "-",
                        status(r)))
        elif k == "idle":
            per = r["per_session_kb"]
            out.append((r["figure"], r["label"],
                        "%d -> %d KB" % (r["rss_before_kb"], r["rss_after_kb"]),
                        "%d/%d open" % (r["sessions_ok"], r["sessions"]),
                        "%.1f KB/session" % per if per is not None else "-",
                        "<= %d KB" % r["target"], status(r)))
        elif k == "rss":
            out.append((r["figure"], r["label"],
                        "%d KB peak" % r["peak_large_kb"],
                        "%d KB peak (5 KB msg)" % r["peak_small_kb"],
                        "+%d KB" % r["diff_kb"], "<= %d KB" % r["target"],
                        status(r)))
        else:
            out.append((r["figure"], r.get("label", r["name"]), "-", "-",
                        r.get("reason", ""), "-", status(r)))
    cols = [hdr] + [tuple(str(c) for c in row) for row in out]
    w = [max(len(c[i]) for c in cols) for i in range(len(hdr))]
    lines = ["| " + " | ".join(c[i].ljust(w[i]) for i in range(len(hdr))) + " |"
             for c in cols]
    lines.insert(1, "|" + "|".join("-" * (x + 2) for x in w) + "|")
    return "\n".join(lines)


def show(path, machine):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    if machine:
        print(machine)
        print()
    print(table(rows))
    print()
    missed = [r for r in rows if r.get("met") is False]
    for r in missed:
        print("MISSED: figure %s %s" % (r["figure"], r["label"]))
    if not missed:
        print("all targets met")
    print()
    for r in rows:
        print(json.dumps(r))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "add":
        add(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "print":
        show(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
