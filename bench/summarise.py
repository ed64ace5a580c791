#!/usr/bin/env python3
"""bench/summarise.py: the table of bench/proxy.sh.

  summarise.py RAW.csv
      Medians over the repeats of bench/results/proxy-raw.csv, ratios
      trunkvip / Kamailio from the same run, the goals and whether they
      are met, as Markdown.
  summarise.py --sipp-stat UAC_DIR CALLS RC
      Used by proxy.sh: one uac run (its -trace_stat and -trace_rtt
      files) as "ok failed retrans rt_ms rtt_mean_ms rtt_p99_ms elapsed_s
      rc" (a missing file or a short count counts every missing call as
      failed).
"""

import csv
import glob
import os
import statistics
import sys

# The goals of issue 4 ("Performance").
CPU_RATIO_GOAL = 0.5  # trunkvip CPU per call <= 0.5 x Kamailio's
CPU_STRETCH_US = 60.0  # stretch: <= 60 us per call
CEILING_GOAL = 0.9  # clean ceiling >= 90 % of SIPp uac -> uas direct
# A rate step counts only if SIPp's achieved call rate is at least this
# share of the rate asked for (bench/proxy.sh's SUSTAIN).
SUSTAIN = float(os.environ.get("SUSTAIN", "0.9"))
# SIP messages of one call of SIPp's built-in scenario through a stateful
# proxy (INVITE, 100, 180, 200, ACK, BYE, 200), as the anchor counts them
# to turn the per-datagram floor into a per-call floor.
MESSAGES_PER_CALL = 7

LABELS = {
    "direct": "SIPp uac -> uas direct (no proxy)",
    "kamailio": "Kamailio 5.6, children=1",
    "relay": "zero-work UDP relay (wake-up floor)",
}


def label(t):
    if t in LABELS:
        return LABELS[t]
    if t.startswith("trunkvip-w"):
        spec = t[len("trunkvip-w"):]
        workers, _, fo = spec.partition("-fo")
        return f"trunkvip, workers = {workers}" + (f", failover_after = {fo}" if fo else "")
    return t


def sipp_time(text):
    """SIPp's hh:mm:ss:usec (or hh:mm:ss) as seconds."""
    p = text.strip().split(":")
    s = int(p[0]) * 3600 + int(p[1]) * 60 + float(p[2])
    if len(p) > 3:
        s += int(p[3]) / 1e6
    return s


def sipp_stat(d, calls, rc):
    """d: the directory of one uac run (stat.csv, uac_PID_rtt.csv)."""
    try:
        rows = [r for r in csv.reader(open(os.path.join(d, "stat.csv")), delimiter=";") if r]
        head, last = rows[0], rows[-1]
        g = lambda k: last[head.index(k)]
        ok, failed = int(g("SuccessfulCall(C)")), int(g("FailedCall(C)"))
        missing = max(0, calls - ok - failed)
        retrans = int(g("Retransmissions(C)"))
        rt_ms = sipp_time(g("ResponseTime1(C)")) * 1000
        elapsed = sipp_time(g("ElapsedTime(C)"))
        call_rate = float(g("CallRate(C)"))  # calls made / time to the end of the last
    except (OSError, IndexError, ValueError):
        print(f"0 {calls} 0 nan nan nan 0 {rc} 0")
        return
    # SIPp keeps times in whole milliseconds: ResponseTime1 is a whole
    # number of ms. The mean of the per-call samples of -trace_rtt (each
    # whole ms too, but their phase is random) resolves below 1 ms.
    samples = []
    for f in glob.glob(os.path.join(d, "*_rtt.csv")):
        for r in list(csv.reader(open(f), delimiter=";"))[1:]:
            try:
                samples.append(float(r[1]))
            except (IndexError, ValueError):
                pass
    if samples:
        samples.sort()
        mean = sum(samples) / len(samples)
        p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
        rtt = f"{mean:.3f} {p99:.0f}"
    else:
        rtt = "nan nan"
    print(f"{ok} {failed + missing} {retrans} {rt_ms:.0f} {rtt} {elapsed:.3f} {rc} {call_rate:.1f}")


def load(path):
    rows = list(csv.DictReader(open(path)))
    for r in rows:
        r["rep"] = int(r["rep"])
        for k in ("rate", "calls", "ok", "failed", "retrans", "rc"):
            r[k] = int(r[k]) if r[k] not in ("", None) else None
        for k in ("rt_ms", "rtt_mean_ms", "rtt_p99_ms", "elapsed_s", "call_rate", "cpu_ms", "user_ms", "sys_ms"):
            v = r.get(k)
            r[k] = float(v) if v not in ("", None, "nan") else None
    return rows


def clean(r):
    """0 failed calls, every call made and, for a rate step, SIPp kept up
    with the rate asked for (past its limit it runs late instead)."""
    ok = r["failed"] == 0 and r["ok"] == r["calls"]
    if r["kind"] == "step" and r.get("call_rate") is not None:
        ok = ok and r["call_rate"] >= SUSTAIN * r["rate"]
    return ok


def results(rows):
    """Per target: lists over repeats of cpu_us, ceiling, rt_ms, ... ."""
    out = {}
    targets = [t for t in dict.fromkeys(r["target"] for r in rows) if t != "floor"]
    reps = sorted({r["rep"] for r in rows})
    for t in targets:
        d = {"cpu_us": [], "ceiling": [], "capped": [], "rt_ms": [], "rtt_mean": [],
             "rtt_p99": [], "failed": 0, "calls": 0, "retrans": 0, "steps": {}}
        for rep in reps:
            mine = [r for r in rows if r["target"] == t and r["rep"] == rep]
            cpu = [r for r in mine if r["kind"] == "cpu"]
            d["cpu_runs"] = d.get("cpu_runs", 0) + len(cpu)
            # A run with failed calls did less work per call (a 503 is
            # cheaper than a call): its CPU and times are left out.
            d["cpu_clean"] = d.get("cpu_clean", 0) + sum(1 for r in cpu if clean(r))
            for r in cpu:
                d["failed"] += r["failed"]
                d["calls"] += r["calls"]
                d["retrans"] += r["retrans"]
                if not clean(r):
                    continue
                if r["cpu_ms"] is not None:
                    d["cpu_us"].append(r["cpu_ms"] * 1000 / r["calls"])
                for k, v in (("rt_ms", "rt_ms"), ("rtt_mean", "rtt_mean_ms"), ("rtt_p99", "rtt_p99_ms")):
                    if r[v] is not None:
                        d[k].append(r[v])
            steps = sorted((r for r in mine if r["kind"] == "step"), key=lambda r: r["rate"])
            if not steps:
                continue
            best = 0
            for r in steps:
                if not clean(r):
                    break
                best = r["rate"]
                if r["cpu_ms"] is not None:
                    d["steps"].setdefault(r["rate"], []).append(r["cpu_ms"] * 1000 / r["calls"])
            d["ceiling"].append(best)
            d["capped"].append(clean(steps[-1]))  # never failed: the ceiling is higher
        out[t] = d
    floor = [r["cpu_ms"] for r in rows if r["kind"] == "floor" and r["cpu_ms"] is not None]
    return out, floor


def med(xs):
    return statistics.median(xs) if xs else None


def spread(xs, fmt):
    if not xs:
        return "n/a"
    m = med(xs)
    if len(xs) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def by_rate(res, kam):
    """CPU per call at each clean rate step, against Kamailio's at the same
    step: the ratio moves with the rate, because a proxy that batches its
    system calls (trunkvip) finds more datagrams per wake-up as the rate
    grows, while Kamailio makes one recvfrom and one sendto per datagram."""
    if not kam or not kam["steps"]:
        return
    proxies = [t for t, d in res.items() if t != "direct" and d["steps"]]
    rates = sorted({r for t in proxies for r in res[t]["steps"]})
    if not rates:
        return
    print()
    print("CPU per call along the clean rate steps (us, median over the repeats whose step was clean;")
    print("each step min(STEP_CALLS, 10 s worth) calls), and against Kamailio at the same step:")
    print()
    print("| calls/s | " + " | ".join(label(t) for t in proxies) + " |")
    print("| ---: |" + " ---: |" * len(proxies))
    for rate in rates:
        k = med(kam["steps"].get(rate, []))
        cells = []
        for t in proxies:
            v = med(res[t]["steps"].get(rate, []))
            if v is None:
                cells.append("-")
            elif t == "kamailio" or k is None:
                cells.append(f"{v:.1f}")
            else:
                cells.append(f"{v:.1f} ({v / k:.2f}x)")
        print(f"| {rate} | " + " | ".join(cells) + " |")


def table(path):
    rows = load(path)
    res, floor = results(rows)
    reps = len({r["rep"] for r in rows})
    kam = res.get("kamailio")
    direct = res.get("direct")
    kam_cpu = med(kam["cpu_us"]) if kam else None
    kam_rt = med(kam["rtt_mean"]) if kam else None
    dir_ceiling = med(direct["ceiling"]) if direct else None
    cpu_rate = next((r["rate"] for r in rows if r["kind"] == "cpu"), None)
    cpu_calls = next((r["calls"] for r in rows if r["kind"] == "cpu"), None)

    print(f"Medians of {reps} repeats (min-max in brackets); ratios are of the medians of this run.")
    print("CPU per call and response times count only CPU runs with 0 failed calls (a 503 costs")
    print("less than a call); the last column says how many runs failed calls.")
    print(f"CPU per call and response times: {cpu_calls} calls at {cpu_rate} calls/s. "
          "Clean ceiling: highest step rate with 0 failed calls\n"
          f"and SIPp's achieved call rate >= {SUSTAIN} x the rate asked for.")
    print("Response time: INVITE to 200 as SIPp sees it; SIPp keeps whole milliseconds, so")
    print("ResponseTime1 (its -trace_stat average) is whole ms; 'mean' is the mean of the per-call")
    print("samples of -trace_rtt, which resolves below 1 ms.")
    print()
    # /proc's utime/stime split is sampled at the tick: for a process that
    # sleeps between datagrams it is noise (all "user" one run, all "sys"
    # the next), so the table gives the total only; the raw file keeps both.
    print("| proxy | CPU per call (us) | CPU vs Kamailio |"
          + " clean ceiling (calls/s) | ceiling vs direct "
          "| ResponseTime1 (ms) | mean RT (ms) | mean RT vs Kamailio | p99 RT (ms) | failed / calls (CPU runs) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t, d in res.items():
        cpu = med(d["cpu_us"])
        ceil = med(d["ceiling"])
        rt = med(d["rtt_mean"])
        ceil_txt = spread(d["ceiling"], "{:.0f}")
        if d["capped"] and all(d["capped"]):
            ceil_txt = ">= " + ceil_txt + " (no step failed)"
        cells = [
            label(t),
            spread(d["cpu_us"], "{:.1f}") if t != "direct" else "-",
            f"{cpu / kam_cpu:.2f}x" if cpu is not None and kam_cpu else "-",
            ceil_txt,
            f"{100 * ceil / dir_ceiling:.0f} %" if ceil is not None and dir_ceiling else "-",
            spread(d["rt_ms"], "{:.0f}"),
            spread(d["rtt_mean"], "{:.2f}"),
            f"{rt / kam_rt:.2f}x" if rt is not None and kam_rt else "-",
            spread(d["rtt_p99"], "{:.0f}"),
            f"{d['failed']} / {d['calls']}"
            + (f" ({d['cpu_runs'] - d['cpu_clean']} of {d['cpu_runs']} runs failed calls)"
               if d["cpu_clean"] < d["cpu_runs"] else ""),
        ]
        print("| " + " | ".join(cells) + " |")
    if floor:
        f = med(floor)
        vs = f"{f * MESSAGES_PER_CALL / kam_cpu:.2f}x" if kam_cpu else "-"
        print(f"| relay floor (udp-floor.c: recvfrom + sendto), {MESSAGES_PER_CALL} datagrams "
              f"| {f * MESSAGES_PER_CALL:.1f} ({spread(floor, '{:.2f}')} per datagram) "
              f"| {vs} | | | | | | | |")
    by_rate(res, kam)
    print()
    print(f"Goals (issue 4), at {cpu_rate} calls/s:")
    for t, d in res.items():
        if not t.startswith("trunkvip"):
            continue
        cpu, ceil = med(d["cpu_us"]), med(d["ceiling"])
        name = label(t)
        if cpu is not None and kam_cpu:
            r = cpu / kam_cpu
            print(f"- {name}: CPU per call {cpu:.1f} us = {r:.2f}x Kamailio's "
                  f"(goal <= {CPU_RATIO_GOAL}x): {'met' if r <= CPU_RATIO_GOAL else 'NOT met'}; "
                  f"stretch <= {CPU_STRETCH_US:.0f} us: {'met' if cpu <= CPU_STRETCH_US else 'not met'}")
        if ceil is not None and dir_ceiling:
            r = ceil / dir_ceiling
            print(f"- {name}: clean ceiling {ceil:.0f} calls/s = {100 * r:.0f} % of direct "
                  f"({dir_ceiling:.0f}) (goal >= {100 * CEILING_GOAL:.0f} %): "
                  f"{'met' if r >= CEILING_GOAL else 'NOT met'}")
        if d["failed"]:
            print(f"- {name}: {d['failed']} failed calls in the CPU runs")


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--sipp-stat":
        sipp_stat(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 2:
        table(sys.argv[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
