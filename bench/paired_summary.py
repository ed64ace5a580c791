#!/usr/bin/env python3
"""bench/paired_summary.py RAW_CSV: the medians of a bench/paired.sh run
(rounds where either side failed a call left out) and B/A round by round."""
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(r["round"], {})[r["side"]] = r
clean = [v for v in by.values() if all(s["failed"] == "0" and s["ok"] == s["calls"] for s in v.values())]
if not clean:
    sys.exit("no round without failed calls")
a = [float(v["A"]["cpu_us_per_call"]) for v in clean]
b = [float(v["B"]["cpu_us_per_call"]) for v in clean]
ratios = [y / x for x, y in zip(a, b)]
print(f"{len(clean)} of {len(by)} rounds without failed calls")
print(f"A {clean[0]['A']['target']}: median {statistics.median(a):.1f} us per call ({min(a):.1f}-{max(a):.1f})")
print(f"B {clean[0]['B']['target']}: median {statistics.median(b):.1f} us per call ({min(b):.1f}-{max(b):.1f})")
print(f"B/A per round: {' '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")
