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
#   trunkvip-w1  TRUNKVIP_BIN (default target/release/trunkvip; `make
#                bench-proxy` passes the production build, target/pgo/trunkvip),
#                workers = 1
#   trunkvip-w2  the same, workers = 2
#   (also accepted in TARGETS, not run by default: trunkvip-wN-foD,
#   workers = N and health_check.failover_after = D; e.g. trunkvip-w1-fo2s
#   waits 2 s for an answer to a new INVITE before failing over, about
#   Kamailio's fr_timer, instead of the default 250 ms)
# and the relay floor (bench/floor/udp-floor.c: one recvfrom + one sendto).
#
# Each repeat runs "cpu" for every target, back to back, then "step" for
# every target, each time with a fresh proxy and a fresh uas pair:
#   cpu   CPU_CALLS calls at CPU_RATE calls/s (30000 at 2000/s, the run in
#         which the anchors measured Kamailio's 162 us per call); the
#         proxy's utime+stime (/proc/PID/stat of the process, all its
#         threads and all its descendant processes) before and after;
#         SIPp's ResponseTime1. The rate steps below give CPU per call at
#         the other rates (summarise.py's "along the clean rate steps").
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
CPU_CALLS=${CPU_CALLS:-30000}
CPU_RATE=${CPU_RATE:-2000}
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
  echo "trunkvip: $("$TRUNKVIP" --version) ($(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$([ "$dirty" = 0 ] || echo " + $dirty uncommitted files under crates/"), $TRUNKVIP_BIN)"
  echo "kamailio: $(kamailio -v | head -1)"
  echo "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*')"
  echo "params: REPEATS=$REPEATS CPU_CALLS=$CPU_CALLS CPU_RATE=$CPU_RATE RATE_START=$RATE_START RATE_STEP=$RATE_STEP RATE_MAX=$RATE_MAX STEP_CALLS=$STEP_CALLS STEP_SECONDS=$STEP_SECONDS SUSTAIN=$SUSTAIN"
  echo "targets: $TARGETS"
} >"$OUT/proxy-env.txt"
cat "$OUT/proxy-env.txt"

cc -O2 -o "$scratch/udp-floor" "$here/floor/udp-floor.c"
cc -O2 -o "$scratch/udp-relay" "$here/floor/udp-relay.c"

# A fresh uas pair and a fresh TARGET on random ports; sets dir and port.
fresh_target() {
  dir=$scratch/$1-$2-$3
  mkdir -p "$dir"
  random_port e1
  random_port e2
  random_port port
  start_uas uas1 "$e1" "$dir"
  start_uas uas2 "$e2" "$dir"
  start_proxy "$1" "$port" "$e1" "$e2" "$dir"
  [ "$1" = direct ] && port=$e1
  return 0
}

# One uac run against the current target, with the proxy's CPU over it;
# its row goes to the raw file. Sets UAC and cpu_delta's CPU_MS, USER_MS,
# SYS_MS.
measure() { # kind rate calls tag
  local kind=$1 rate=$2 calls=$3 c0 c1
  c0=$([ -n "$PROXY_PID" ] && cpu_ticks "$PROXY_PID" || true)
  run_uac "$port" "$rate" "$calls" "$dir" "$4"
  c1=$([ -n "$PROXY_PID" ] && cpu_ticks "$PROXY_PID" || true)
  cpu_delta "$c0" "$c1"
  set -- $UAC
  echo "$target,$rep,$kind,$rate,$calls,$1,$2,$3,$4,$5,$6,$7,$8,$9,$CPU_MS,$USER_MS,$SYS_MS" >>"$raw.tmp"
}

end_target() {
  if [ -n "$PROXY_PID" ] && ! kill -0 "$PROXY_PID" 2>/dev/null; then
    echo "[rep $2] $1: the proxy died" >&2
    tail -20 "$dir"/*.log >&2 || true
  fi
  stop_all
}

for ((rep = 1; rep <= REPEATS; rep++)); do
  # The floor, once a repeat: "datagrams=N size=S relay_cpu_us_per_datagram=X"
  f=$("$scratch/udp-floor" "$FLOOR_DATAGRAMS")
  echo "[rep $rep] floor: $f"
  us=${f##*=}
  echo "floor,$rep,floor,,$FLOOR_DATAGRAMS,,,,,,,,0,,$us,," >>"$raw.tmp"

  # The CPU runs of all targets first, back to back, so that the ratios
  # come from runs a minute apart: this VM's speed drifts by 10-20 % over
  # the ten minutes the rate steps take.
  for target in $TARGETS; do
    fresh_target "$target" "$rep" cpu
    measure cpu "$CPU_RATE" "$CPU_CALLS" cpu
    echo "[rep $rep] $target cpu: $CPU_CALLS calls at $CPU_RATE/s: ok failed retrans rt_ms rtt_mean rtt_p99 elapsed rc call_rate = $UAC; proxy cpu ${CPU_MS:-n/a} ms (user ${USER_MS:-n/a}, sys ${SYS_MS:-n/a})"
    end_target "$target" "$rep"
  done

  # The clean ceiling: rate steps until the first with a failed call.
  [ "$RATE_START" -le "$RATE_MAX" ] || continue
  for target in $TARGETS; do
    fresh_target "$target" "$rep" steps
    for ((rate = RATE_START; rate <= RATE_MAX; rate += RATE_STEP)); do
      calls=$((rate * STEP_SECONDS))
      [ "$calls" -gt "$STEP_CALLS" ] && calls=$STEP_CALLS
      sleep 1
      measure step "$rate" "$calls" "step-$rate"
      echo "[rep $rep] $target step $rate/s x $calls: $UAC; proxy cpu ${CPU_MS:-n/a} ms"
      set -- $UAC
      [ "$2" = 0 ] && [ "$1" = "$calls" ] && awk -v a="$9" -v r="$rate" -v k="$SUSTAIN" 'BEGIN { exit !(a >= k * r) }' || break
    done
    end_target "$target" "$rep"
  done
done

mv "$raw.tmp" "$raw"
echo
python3 "$here/summarise.py" "$raw" | tee "$OUT/proxy-summary.md"
# Debian's python3-matplotlib is for /usr/bin/python3, which may not be
# the python3 on PATH (pyenv).
plotter=""
for py in python3 /usr/bin/python3; do
  "$py" -c 'import matplotlib' 2>/dev/null && { plotter=$py; break; }
done
if [ -n "$plotter" ]; then
  "$plotter" "$here/plot.py" "$raw" "$OUT/proxy-cpu.png"
else
  echo "matplotlib missing (apt-get install python3-matplotlib): no plot" >&2
fi
