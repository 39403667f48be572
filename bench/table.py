#!/usr/bin/env python3
"""Prints bench/run's measurements (one JSON object per line) as one table:

    figure | banger | baseline | ratio

Each cell is the median of the repeated runs with their min-max after it; the ratio is
banger's median over the baseline's. Standard library only.
"""

import json
import statistics
import sys
from collections import OrderedDict, defaultdict

# (value key, label, scale) per measurement kind, recognised by the keys it has.
ROUNDTRIP = [("p50_us", "p50 (µs)", 1), ("p99_us", "p99 (µs)", 1)]
STORM = [("errors", "errors", 1), ("wall_ms", "wall (ms)", 1), ("p99_us", "call p99 (µs)", 1)]
SPAWN = [("median_ms", "wall (ms)", 1)]
MEMORY = [("rss_kib", "RSS (MiB)", 1 / 1024), ("pss_kib", "PSS (MiB)", 1 / 1024)]
THROUGHPUT = [("mb_per_s", "MB/s", 1)]
SECONDS = [("seconds", "wall (s)", 1)]
LOOP = [("errors", "errors", 1), ("calls", "calls made", 1), ("slowest_ms", "slowest call (ms)", 1)]
# Figures whose n-th banger run and n-th baseline run were measured in the same round, one right
# after the other: they also get the median of the per-round ratios, which a drift of the
# machine's speed from one round to the next does not move.
PAIRED = {"download+verify vs curl -o + sync"}


def kind(value):
    if "p50_us" in value:
        return ROUNDTRIP
    if "clients" in value:
        return STORM
    if "median_ms" in value:
        return SPAWN
    if "rss_kib" in value:
        return MEMORY
    if "first_errors" in value:
        return LOOP
    if "mb_per_s" in value:
        return THROUGHPUT
    if "seconds" in value:
        return SECONDS
    raise ValueError("unknown measurement: %r" % value)


def figure_format(x):
    return ("%.0f" % x) if abs(x) >= 100 or x == int(x) else ("%.2f" % x)


def ratio_format(x):
    return "%.2f" % x


def cell(values, f=figure_format):
    if not values:
        return "-"
    med = statistics.median(values)
    lo, hi = min(values), max(values)

    if lo == hi:
        return f(med)
    return "%s (%s–%s)" % (f(med), f(lo), f(hi))


def main(path):
    # figure -> side -> [values]
    seen = OrderedDict()
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            m = json.loads(line)
            seen.setdefault(m["figure"], defaultdict(list))[m["side"]].append(m["value"])
    rows = []
    for figure, sides in seen.items():
        baseline = sides.get("baseline", [])
        for side, runs in sides.items():
            if side == "baseline":
                continue
            failed = sum(r.get("failed", 0) for r in runs + baseline)
            for key, label, scale in kind(runs[0]):
                ours = [r[key] * scale for r in runs]
                theirs = [r[key] * scale for r in baseline]
                name = "%s, %s" % (figure, label)
                if side != "banger":
                    name = "%s, %s, %s" % (figure, side, label)
                if failed:
                    name += " [%d runs exited non-zero]" % failed
                ratio = "-"
                if theirs and statistics.median(theirs) > 0:
                    ratio = "%.2f×" % (statistics.median(ours) / statistics.median(theirs))
                base = cell(theirs) if theirs else ("0 (target)" if key == "errors" else "-")
                rows.append((name, cell(ours), base, ratio))
                if figure in PAIRED and side == "banger" and len(ours) == len(theirs) and all(theirs):
                    per_round = [a / b for a, b in zip(ours, theirs)]
                    rows.append((
                        "%s, banger / baseline in each round" % figure,
                        cell(per_round, ratio_format),
                        "-",
                        "%.2f×" % statistics.median(per_round),
                    ))
    header = ("figure", "banger", "baseline", "ratio")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
