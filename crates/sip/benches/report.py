#!/usr/bin/env python3
"""Prints the BENCHMARKS.md table of the `parse` bench from criterion's output.

Run `cargo bench -p trunkvip-sip --bench parse` first, then

    python3 crates/sip/benches/report.py [CRITERION_DIR...]

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion
of the workspace. Each benchmark's median is the `median.point_estimate` of
its `new/estimates.json` (nanoseconds); the ratio is rsip over trunkvip.
Given several directories (copies of target/criterion from separate runs),
each benchmark gets the lowest of its medians: on a shared machine the run
least disturbed by other work.
The goals checked: trunkvip at least 5x faster than rsip everywhere, and
the INVITE parse-and-locate under 1 us.
"""

import json
import os
import sys
from pathlib import Path

GROUPS = ["parse_locate/invite", "parse_locate/200ok", "edit/forward_invite"]
PARSERS = ["trunkvip", "rsip"]
SPEEDUP_GOAL = 5.0
INVITE_GOAL_NS = 1000.0


def default_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return Path(target) / "criterion"
    # crates/sip/benches/report.py -> the workspace root
    return Path(__file__).resolve().parents[3] / "target" / "criterion"


def medians(root: Path) -> dict:
    """(group, function) -> median ns, from every new/ result under root."""
    found = {}
    for bench in root.rglob("new/benchmark.json"):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        found[(meta["group_id"], meta.get("function_id"))] = est["median"][
            "point_estimate"
        ]
    return found


def fmt(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main() -> int:
    roots = [Path(a) for a in sys.argv[1:]] or [default_dir()]
    m = {}
    for root in roots:
        if not root.is_dir():
            print(f"no criterion results in {root}: run the bench first", file=sys.stderr)
            return 1
        for key, ns in medians(root).items():
            m[key] = min(ns, m.get(key, ns))
    if len(roots) > 1:
        print(f"Lowest median of {len(roots)} runs.\n")
    print("| benchmark | trunkvip-sip (median) | rsip 0.4 (median) | rsip / trunkvip |")
    print("|---|---:|---:|---:|")
    ok = True
    for g in GROUPS:
        ours, theirs = m.get((g, "trunkvip")), m.get((g, "rsip"))
        if ours is None or theirs is None:
            print(f"| `{g}` | missing | missing | |")
            ok = False
            continue
        ratio = theirs / ours
        ok &= ratio >= SPEEDUP_GOAL
        print(f"| `{g}` | {fmt(ours)} | {fmt(theirs)} | {ratio:.1f}x |")
    invite = m.get(("parse_locate/invite", "trunkvip"))
    print()
    print(f"Goal: rsip / trunkvip >= {SPEEDUP_GOAL:.0f}x in every row: "
          + ("met" if ok else "NOT met"))
    if invite is not None:
        met = invite < INVITE_GOAL_NS
        ok &= met
        print(f"Goal: INVITE parse-and-locate < 1 µs: {fmt(invite)}, "
              + ("met" if met else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
