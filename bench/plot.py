#!/usr/bin/env python3
"""bench/plot.py RAW.csv OUT.png: the figure of bench/proxy.sh.

Left: CPU per call of each proxy (bar: median of the repeats; dots: each
repeat), with the relay floor, Kamailio x 0.5 (goal) and 60 us (stretch).
Middle: the clean ceiling (highest step rate with 0 failed calls) with
SIPp direct and 90 % of it (goal). Right: CPU per call along the rate steps
(median over repeats of the clean steps).
"""

import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import summarise as s  # noqa: E402


def main():
    raw, out = sys.argv[1], sys.argv[2]
    rows = s.load(raw)
    res, floor = s.results(rows)
    cpu_rate = next((r["rate"] for r in rows if r["kind"] == "cpu"), None)
    cpu_calls = next((r["calls"] for r in rows if r["kind"] == "cpu"), None)
    reps = len({r["rep"] for r in rows})
    colors = {"kamailio": "tab:orange", "direct": "tab:gray"}
    palette = iter(["tab:blue", "tab:green", "tab:purple", "tab:cyan", "tab:olive", "tab:red"])
    for t in res:
        if t not in colors:
            colors[t] = next(palette, "tab:blue")
    def short(t):
        """Tick labels: 'trunkvip\nworkers 1\nfailover 2s'."""
        return (s.label(t).replace("SIPp uac -> uas direct (no proxy)", "SIPp direct")
                .replace("zero-work UDP relay (wake-up floor)", "zero-work relay\n(wake-up floor)")
                .replace(", ", "\n").replace(" = ", " ").replace("failover_after", "failover"))

    fig, ax = plt.subplots(1, 3, figsize=(18, 6.2), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})

    # CPU per call.
    a = ax[0]
    proxies = [t for t in res if t != "direct" and res[t]["cpu_us"]]
    for i, t in enumerate(proxies):
        xs = res[t]["cpu_us"]
        # One bar: /proc's utime/stime split is sampled at the tick, and
        # for a process that sleeps between datagrams it says little.
        a.bar(i, statistics.median(xs), color=colors[t], alpha=0.75)
        a.scatter([i] * len(xs), xs, color="black", s=12, zorder=3)
        a.annotate(f"{statistics.median(xs):.0f}", (i, statistics.median(xs)),
                   ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    kam = res.get("kamailio")
    if kam and kam["cpu_us"]:
        k = statistics.median(kam["cpu_us"])
        a.axhline(k * s.CPU_RATIO_GOAL, color="tab:orange", ls="--",
                  label=f"goal: {s.CPU_RATIO_GOAL} x Kamailio = {k * s.CPU_RATIO_GOAL:.0f} us")
    a.axhline(s.CPU_STRETCH_US, color="tab:green", ls=":", label=f"stretch: {s.CPU_STRETCH_US:.0f} us")
    if floor:
        f = statistics.median(floor) * s.MESSAGES_PER_CALL
        a.axhline(f, color="black", ls="-.",
                  label=f"relay floor: {s.MESSAGES_PER_CALL} x recvfrom+sendto = {f:.0f} us")
    a.set_xticks(range(len(proxies)), [short(t) for t in proxies], fontsize=8)
    a.set_ylim(0, a.get_ylim()[1] * 1.4)  # room for the legend above the bars
    a.set_ylabel("proxy CPU per call, us (utime+stime)")
    a.set_title(f"CPU per call ({cpu_calls} calls at {cpu_rate}/s)")
    a.legend(fontsize=8, loc="upper right")

    # Clean ceiling.
    a = ax[1]
    targets = [t for t in res if res[t]["ceiling"]]
    for i, t in enumerate(targets):
        xs = res[t]["ceiling"]
        a.bar(i, statistics.median(xs), color=colors[t], alpha=0.75)
        a.scatter([i] * len(xs), xs, color="black", s=12, zorder=3)
        a.annotate(f"{statistics.median(xs):.0f}", (i, statistics.median(xs)),
                   ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    d = res.get("direct")
    if d and d["ceiling"]:
        m = statistics.median(d["ceiling"])
        a.axhline(m * s.CEILING_GOAL, color="tab:gray", ls="--",
                  label=f"goal: {100 * s.CEILING_GOAL:.0f} % of SIPp direct = {m * s.CEILING_GOAL:.0f}/s")
        a.legend(fontsize=8, loc="upper left")
    a.set_ylim(0, a.get_ylim()[1] * 1.15)
    a.set_xticks(range(len(targets)), [short(t) for t in targets], fontsize=8)
    a.set_ylabel("highest step with 0 failed calls, calls/s")
    a.set_title("Clean ceiling")

    # CPU per call along the steps.
    a = ax[2]
    for t in proxies:
        st = res[t]["steps"]
        if not st:
            continue
        rates = sorted(st)
        a.plot(rates, [statistics.median(st[r]) for r in rates], "o-", color=colors[t], label=short(t).replace("\n", ", "))
    if floor:
        a.axhline(statistics.median(floor) * s.MESSAGES_PER_CALL, color="black", ls="-.")
    a.set_xlabel("offered rate, calls/s")
    a.set_ylabel("proxy CPU per call, us")
    a.set_title("CPU per call along the clean rate steps")
    a.set_ylim(bottom=0)
    a.legend(fontsize=7)

    fig.suptitle(f"SIPp uac -> proxy -> 2 x SIPp uas, UDP on loopback: medians of {reps} repeats, same run")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
