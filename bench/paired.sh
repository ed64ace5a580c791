#!/usr/bin/env bash
# bench/paired.sh: two proxies side by side, each with its own SIPp uac and
# uas pair at the same rate, so that both run under the same machine
# conditions; the ratio of their CPU per call is read round by round.
#
#   SIPp uac -> A -> two `sipp -sn uas -aa`
#   SIPp uac -> B -> two `sipp -sn uas -aa`     (at the same time)
#
# bench/proxy.sh runs one proxy at a time; on a shared VM whose speed drifts
# by 10-20 % within minutes, two builds measured a few minutes apart differ
# by more than most changes do. Side by side, the drift hits both sides of a
# round alike.
#
# PAIR names two targets of bench/proxy.sh (kamailio, relay, trunkvip-wN,
# trunkvip-wN-foD), A first; default "kamailio trunkvip-w1". A_BIN and B_BIN
# are the trunkvip binaries of each side (default: target/release/trunkvip),
# so PAIR="trunkvip-w1 trunkvip-w1" A_BIN=old B_BIN=new compares two builds.
# At most one side may be kamailio. Each round starts everything afresh on
# random high ports of 127.0.0.1 and starts the two proxies in alternating
# order. CPU is the time on CPU of each proxy's process tree (schedstat, in
# nanoseconds) over the calls. Rounds where either side failed a call are
# left out of the medians. Knobs: ROUNDS (6), RATE (1000), CALLS (15000),
# OUT (bench/results), KEEP=1 (keep the scratch dir), PIN=1 (both proxies
# on CPU 0, every SIPp on CPU 1: see bench/lib.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
PAIR=${PAIR:-"kamailio trunkvip-w1"}
ROUNDS=${ROUNDS:-6}
RATE=${RATE:-1000}
CALLS=${CALLS:-15000}
OUT=${OUT:-$here/results}
read -r A B <<<"$PAIR"
[ -n "${B:-}" ] || { echo "bench/paired.sh: PAIR needs two targets" >&2; exit 1; }
[ "$A" = kamailio ] && [ "$B" = kamailio ] && { echo "bench/paired.sh: at most one side may be kamailio" >&2; exit 1; }

tools="sipp cc python3 ss curl"
case " $A $B " in *" kamailio "*) tools="$tools kamailio" ;; esac
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "bench/paired.sh: $tool is missing" >&2; exit 1; }
done
A_BIN=${A_BIN:-$root/target/release/trunkvip}
B_BIN=${B_BIN:-$root/target/release/trunkvip}
for b in "$A_BIN" "$B_BIN"; do
  [ -x "$b" ] || { echo "bench/paired.sh: no $b (cargo build --release -p trunkvip)" >&2; exit 1; }
done

scratch=$(mktemp -d /tmp/trunkvip-paired.XXXXXX)
# Our own copies: others may rebuild target/ while this runs.
cp "$A_BIN" "$scratch/trunkvip-a"
cp "$B_BIN" "$scratch/trunkvip-b"
TRUNKVIP=$scratch/trunkvip-a
. "$here/lib.sh"
cc -O2 -o "$scratch/udp-relay" "$here/floor/udp-relay.c"

mkdir -p "$OUT"
raw=$OUT/paired-raw.csv
echo "round,side,target,binary,calls,ok,failed,cpu_us_per_call" >"$raw.tmp"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "pair: A=$A ($A_BIN) B=$B ($B_BIN); $ROUNDS rounds of $CALLS calls at $RATE calls/s each side$([ "${PIN:-0}" = 1 ] && echo "; PIN=1: proxies on CPU 0, SIPp on CPU 1")"
  echo "trunkvip at $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?'); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/paired-env.txt"

declare -A PORT E1 E2 PID0 DIR C0 C1
for ((round = 1; round <= ROUNDS; round++)); do
  for side in A B; do
    DIR[$side]=$scratch/$round-$side
    mkdir -p "${DIR[$side]}"
    random_port e1
    random_port e2
    random_port port
    PORT[$side]=$port E1[$side]=$e1 E2[$side]=$e2
    start_uas uas1 "$e1" "${DIR[$side]}"
    start_uas uas2 "$e2" "${DIR[$side]}"
  done
  # Alternate which proxy starts first.
  order="A B"
  [ $((round % 2)) = 0 ] && order="B A"
  for side in $order; do
    target=$A bin=$scratch/trunkvip-a
    [ "$side" = B ] && target=$B bin=$scratch/trunkvip-b
    TRUNKVIP=$bin
    start_proxy "$target" "${PORT[$side]}" "${E1[$side]}" "${E2[$side]}" "${DIR[$side]}"
    PID0[$side]=$PROXY_PID
  done
  for side in A B; do C0[$side]=$(cpu_ns "${PID0[$side]}"); done
  for side in A B; do
    # Picked here: the two subshells do not share the ports handed out.
    random_port uac_port
    (run_uac "${PORT[$side]}" "$RATE" "$CALLS" "${DIR[$side]}" cpu "$uac_port" && echo "$UAC" >"${DIR[$side]}/result") &
    PIDS+=($!)
  done
  wait "${PIDS[@]: -2}" || true
  for side in A B; do C1[$side]=$(cpu_ns "${PID0[$side]}"); done
  line="[round $round]"
  for side in A B; do
    target=$A bin=$A_BIN
    [ "$side" = B ] && target=$B bin=$B_BIN
    case $target in trunkvip-*) ;; *) bin=- ;; esac
    read -r ok failed _ <"${DIR[$side]}/result" 2>/dev/null || { ok=0 failed=$CALLS; }
    us=$(awk -v d=$((C1[$side] - C0[$side])) -v n="$CALLS" 'BEGIN { printf "%.1f", d / 1000 / n }')
    echo "$round,$side,$target,$bin,$CALLS,$ok,$failed,$us" >>"$raw.tmp"
    line="$line $side $target: $us us/call (ok $ok, failed $failed);"
  done
  echo "$line"
  stop_all
done

mv "$raw.tmp" "$raw"
python3 "$here/paired_summary.py" "$raw" | tee "$OUT/paired-summary.txt"
