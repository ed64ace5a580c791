#!/usr/bin/env bash
# bench/proxy.sh: trunkvip against Kamailio as a UDP SIP proxy, on loopback.
#
#   SIPp's built-in uac -> PROXY -> two `sipp -sn uas -aa` (priority 1 and 2)
#
# with PROXY, in the same run and interleaved repeat by repeat:
#   direct       no proxy: uac -> uas straight (the ceiling SIPp itself sets)
#   kamailio     Kamailio (Debian package), bench/kamailio/kamailio.cfg,
#                children=1, as ../shared/anchors/kamailio does
#   relay        bench/floor/udp-relay.c: relays the datagrams to the first
#                uas and back with no SIP work at all, the wake-up floor
#                any forwarder pays for this call flow on this machine
#   trunkvip-w1  target/release/trunkvip, workers = 1
#   trunkvip-w2  target/release/trunkvip, workers = 2
#   (also accepted in TARGETS, not run by default: trunkvip-wN-foD,
#   workers = N and health_check.failover_after = D; e.g. trunkvip-w1-fo2s
#   waits 2 s for an answer to a new INVITE before failing over, about
#   Kamailio's fr_timer, instead of the default 250 ms)
# and the relay floor (bench/floor/udp-floor.c: one recvfrom + one sendto).
#
# For each target and repeat, with a fresh proxy and fresh uas pair:
#   cpu   CPU_CALLS calls at CPU_RATE calls/s; the proxy's utime+stime
#         (/proc/PID/stat of the process, all its threads and all its
#         descendant processes) before and after; SIPp's ResponseTime1.
#   step  rates RATE_START, +RATE_STEP, ... up to RATE_MAX, each
#         min(STEP_CALLS, rate*STEP_SECONDS) calls; stops at the first
#         step that is not clean: a failed (or missing) call, or SIPp's
#         achieved call rate (CallRate(C): calls made / time to the last
#         call's end) below SUSTAIN (0.9) x the rate asked for (past its
#         own limit SIPp just runs late, and "0 failed" would mean nothing).
# Raw rows go to bench/results/proxy-raw.csv; bench/summarise.py prints
# the table (medians over repeats, ratios from this run) and bench/plot.py
# draws bench/results/proxy-cpu.png.
#
# Everything on 127.0.0.1, on high ports picked at random for each
# (target, repeat); every process started here is killed on exit; every
# wait is bounded. Environment knobs (defaults below): REPEATS, CPU_CALLS,
# CPU_RATE, RATE_START, RATE_STEP, RATE_MAX, STEP_CALLS, STEP_SECONDS,
# SUSTAIN, TARGETS, FLOOR_DATAGRAMS, OUT, KEEP=1 (keep the scratch dir).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
REPEATS=${REPEATS:-3}
CPU_CALLS=${CPU_CALLS:-20000}
CPU_RATE=${CPU_RATE:-1000}
RATE_START=${RATE_START:-500}
RATE_STEP=${RATE_STEP:-500}
RATE_MAX=${RATE_MAX:-8000}
STEP_CALLS=${STEP_CALLS:-20000}
STEP_SECONDS=${STEP_SECONDS:-10}
SUSTAIN=${SUSTAIN:-0.9}
TARGETS=${TARGETS:-"direct relay kamailio trunkvip-w1 trunkvip-w2"}
FLOOR_DATAGRAMS=${FLOOR_DATAGRAMS:-200000}
OUT=${OUT:-$here/results}

for tool in sipp kamailio cc python3 ss curl; do
  command -v "$tool" >/dev/null || { echo "bench/proxy.sh: $tool is missing" >&2; exit 1; }
done
TRUNKVIP_BIN=${TRUNKVIP_BIN:-$root/target/release/trunkvip}
[ -x "$TRUNKVIP_BIN" ] || { echo "bench/proxy.sh: no $TRUNKVIP_BIN (cargo build --release -p trunkvip)" >&2; exit 1; }

scratch=$(mktemp -d /tmp/trunkvip-bench.XXXXXX)
# Our own copy: others may rebuild target/ while this runs.
cp "$TRUNKVIP_BIN" "$scratch/trunkvip"
TRUNKVIP=$scratch/trunkvip

. "$here/lib.sh"

# ---- the run --------------------------------------------------------------
mkdir -p "$OUT"
raw=$OUT/proxy-raw.csv
echo "target,rep,kind,rate,calls,ok,failed,retrans,rt_ms,rtt_mean_ms,rtt_p99_ms,elapsed_s,rc,call_rate,cpu_ms,user_ms,sys_ms" >"$raw.tmp"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  dirty=$(cd "$root" && git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null | wc -l)
  echo "trunkvip: $("$TRUNKVIP" --version) ($(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$([ "$dirty" = 0 ] || echo " + $dirty uncommitted files under crates/"), release build)"
  echo "kamailio: $(kamailio -v | head -1)"
  echo "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*')"
  echo "params: REPEATS=$REPEATS CPU_CALLS=$CPU_CALLS CPU_RATE=$CPU_RATE RATE_START=$RATE_START RATE_STEP=$RATE_STEP RATE_MAX=$RATE_MAX STEP_CALLS=$STEP_CALLS STEP_SECONDS=$STEP_SECONDS SUSTAIN=$SUSTAIN"
  echo "targets: $TARGETS"
} >"$OUT/proxy-env.txt"
cat "$OUT/proxy-env.txt"

cc -O2 -o "$scratch/udp-floor" "$here/floor/udp-floor.c"
cc -O2 -o "$scratch/udp-relay" "$here/floor/udp-relay.c"

for ((rep = 1; rep <= REPEATS; rep++)); do
  # The floor, once a repeat: "datagrams=N size=S relay_cpu_us_per_datagram=X"
  f=$("$scratch/udp-floor" "$FLOOR_DATAGRAMS")
  echo "[rep $rep] floor: $f"
  us=${f##*=}
  echo "floor,$rep,floor,,$FLOOR_DATAGRAMS,,,,,,,,0,,$us,," >>"$raw.tmp"

  for target in $TARGETS; do
    dir=$scratch/$target-$rep
    mkdir -p "$dir"
    random_port e1
    random_port e2
    random_port port
    start_uas uas1 "$e1" "$dir"
    start_uas uas2 "$e2" "$dir"
    start_proxy "$target" "$port" "$e1" "$e2" "$dir"
    [ "$target" = direct ] && port=$e1

    # CPU per call at a fixed rate.
    c0=$([ -n "$PROXY_PID" ] && cpu_ticks "$PROXY_PID" || true)
    run_uac "$port" "$CPU_RATE" "$CPU_CALLS" "$dir" cpu
    r=$UAC
    c1=$([ -n "$PROXY_PID" ] && cpu_ticks "$PROXY_PID" || true)
    cpu_delta "$c0" "$c1"
    echo "[rep $rep] $target cpu: $CPU_CALLS calls at $CPU_RATE/s: ok failed retrans rt_ms rtt_mean rtt_p99 elapsed rc call_rate = $r; proxy cpu ${CPU_MS:-n/a} ms (user ${USER_MS:-n/a}, sys ${SYS_MS:-n/a})"
    set -- $r
    echo "$target,$rep,cpu,$CPU_RATE,$CPU_CALLS,$1,$2,$3,$4,$5,$6,$7,$8,$9,$CPU_MS,$USER_MS,$SYS_MS" >>"$raw.tmp"

    # The clean ceiling: rate steps until the first with a failed call.
    for ((rate = RATE_START; rate <= RATE_MAX; rate += RATE_STEP)); do
      calls=$((rate * STEP_SECONDS))
      [ "$calls" -gt "$STEP_CALLS" ] && calls=$STEP_CALLS
      sleep 1
      c0=$([ -n "$PROXY_PID" ] && cpu_ticks "$PROXY_PID" || true)
      run_uac "$port" "$rate" "$calls" "$dir" "step-$rate"
      r=$UAC
      c1=$([ -n "$PROXY_PID" ] && cpu_ticks "$PROXY_PID" || true)
      cpu_delta "$c0" "$c1"
      echo "[rep $rep] $target step $rate/s x $calls: $r; proxy cpu ${CPU_MS:-n/a} ms"
      set -- $r
      echo "$target,$rep,step,$rate,$calls,$1,$2,$3,$4,$5,$6,$7,$8,$9,$CPU_MS,$USER_MS,$SYS_MS" >>"$raw.tmp"
      [ "$2" = 0 ] && [ "$1" = "$calls" ] && awk -v a="$9" -v r="$rate" -v k="$SUSTAIN" 'BEGIN { exit !(a >= k * r) }' || break
    done
    if [ -n "$PROXY_PID" ] && ! kill -0 "$PROXY_PID" 2>/dev/null; then
      echo "[rep $rep] $target: the proxy died" >&2
      tail -20 "$dir"/*.log >&2 || true
    fi
    stop_all
  done
done

mv "$raw.tmp" "$raw"
echo
python3 "$here/summarise.py" "$raw" | tee "$OUT/proxy-summary.md"
if python3 -c 'import matplotlib' 2>/dev/null; then
  python3 "$here/plot.py" "$raw" "$OUT/proxy-cpu.png"
else
  echo "matplotlib missing (pip install matplotlib): no plot" >&2
fi
