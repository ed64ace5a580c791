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

# ---- processes: every pid started here, killed on exit -------------------
PIDS=()
KAM_PIDS=() # Kamailio daemonizes: its main pid and descendants, from its pid file

kill_list() { # pids...: TERM, up to 3 s, then KILL
  local p alive n
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for ((n = 0; n < 30; n++)); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}

stop_all() {
  [ ${#PIDS[@]} -gt 0 ] && kill_list "${PIDS[@]}"
  [ ${#KAM_PIDS[@]} -gt 0 ] && kill_list "${KAM_PIDS[@]}"
  PIDS=()
  KAM_PIDS=()
  wait 2>/dev/null || true
}

cleanup() {
  stop_all
  if [ "${KEEP:-0}" = 1 ]; then echo "scratch kept: $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- ports ----------------------------------------------------------------
declare -A TAKEN=()
port_free() { # port: nothing bound on it (UDP or TCP) and not handed out yet
  [ -z "${TAKEN[$1]:-}" ] && [ -z "$(ss -Hanu "sport = :$1" 2>/dev/null)" ] &&
    [ -z "$(ss -Hant "sport = :$1" 2>/dev/null)" ]
}
random_port() { # VAR: sets VAR to a free port in 20000-59999
  local p n
  for ((n = 0; n < 200; n++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if port_free "$p"; then TAKEN[$p]=1; printf -v "$1" %s "$p"; return 0; fi
  done
  echo "no free port" >&2
  return 1
}

wait_udp_bound() { # port seconds
  local n
  for ((n = 0; n < $2 * 10; n++)); do
    [ -n "$(ss -Hanu "sport = :$1" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  echo "nothing bound on udp port $1 after $2 s" >&2
  return 1
}

# ---- CPU time of a process tree, in clock ticks ---------------------------
descendants() { # pid: its descendants, from the ppid of every process
  local top=$1 f line rest ppid kids=() p k
  declare -A children=()
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    rest=${line##*) }
    set -- $rest
    p=${f#/proc/}
    p=${p%/stat}
    ppid=$2
    children[$ppid]+="$p "
  done
  local queue=("$top")
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    for k in ${children[$p]:-}; do
      kids+=("$k")
      queue+=("$k")
    done
  done
  echo "${kids[@]:-}"
}

cpu_ticks() { # pid: "utime stime" of pid (all its threads) and its descendants
  local user=0 sys=0 p line rest
  for p in "$1" $(descendants "$1"); do
    { read -r line <"/proc/$p/stat"; } 2>/dev/null || continue
    rest=${line##*) } # fields from 3 (state) on: utime is field 14, stime 15
    set -- $rest
    user=$((user + ${12}))
    sys=$((sys + ${13}))
  done
  echo "$user $sys"
}

# Sets CPU_MS, USER_MS, SYS_MS from two cpu_ticks readings (empty with no proxy).
cpu_delta() { # "u0 s0" "u1 s1"
  CPU_MS= USER_MS= SYS_MS=
  [ -n "$PROXY_PID" ] || return 0
  local a=($1) b=($2)
  USER_MS=$(((b[0] - a[0]) * 1000 / TCK))
  SYS_MS=$(((b[1] - a[1]) * 1000 / TCK))
  CPU_MS=$((USER_MS + SYS_MS))
}
TCK=$(getconf CLK_TCK)

# ---- the pieces -----------------------------------------------------------
start_uas() { # name port dir: sipp -sn uas -aa, pid appended to PIDS
  sipp -sn uas -aa -nostdin -i 127.0.0.1 -p "$2" >"$3/$1.log" 2>&1 &
  PIDS+=($!)
  wait_udp_bound "$2" 10
}

# Starts PROXY in front of uas ports $3 $4 on port $2; sets PROXY_PID.
start_proxy() { # target port e1 e2 dir
  local target=$1 port=$2 e1=$3 e2=$4 dir=$5 n
  PROXY_PID=
  case $target in
  direct) ;;
  relay)
    "$scratch/udp-relay" "$port" "$e1" 2>"$dir/relay.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_udp_bound "$port" 10
    ;;
  kamailio)
    printf '1 sip:127.0.0.1:%s 0 10\n1 sip:127.0.0.1:%s 0 5\n' "$e1" "$e2" >"$dir/dispatcher.list"
    sed "s#LISTEN#127.0.0.1:$port#; s#DSLIST#$dir/dispatcher.list#; s#PROXYHOST#127.0.0.1#" \
      "$here/kamailio/kamailio.cfg" >"$dir/kamailio.cfg"
    # As ../shared/anchors/kamailio/run.sh starts it.
    kamailio -f "$dir/kamailio.cfg" -P "$dir/kam.pid" -w "$dir" -m 2048 -M 32 -x tlsf \
      2>"$dir/kam.log" >/dev/null
    for ((n = 0; n < 100; n++)); do [ -s "$dir/kam.pid" ] && break; sleep 0.1; done
    PROXY_PID=$(cat "$dir/kam.pid")
    KAM_PIDS=("$PROXY_PID")
    wait_udp_bound "$port" 10
    # Its processes are all forked by now; remember them to kill them all.
    KAM_PIDS+=($(descendants "$PROXY_PID"))
    # A first OPTIONS round (ds_ping_interval 1 s) before calls.
    sleep 2
    ;;
  trunkvip-w*)
    # trunkvip-wN: workers = N; trunkvip-wN-foD: also failover_after = D.
    local admin spec=${target#trunkvip-w} failover=""
    case $spec in *-fo*) failover="failover_after = \"${spec#*-fo}\"" ;; esac
    random_port admin
    cat >"$dir/trunkvip.toml" <<EOF
listen = ["udp:127.0.0.1:$port"]
host_address = "127.0.0.1"
workers = ${spec%%-*}

[[edge]]
name = "EDGE-1"
uri = "sip:127.0.0.1:$e1;transport=udp"
priority = 1

[[edge]]
name = "EDGE-2"
uri = "sip:127.0.0.1:$e2;transport=udp"
priority = 2

# As the Kamailio anchor probes: every second, 3 failures down, 5 up.
[health_check]
interval = "1s"
timeout = "500ms"
failure_threshold = 3
recovery_threshold = 5
$failover

[admin]
listen = "127.0.0.1:$admin"
EOF
    "$TRUNKVIP" run --config "$dir/trunkvip.toml" >"$dir/trunkvip.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    # Both Edges Healthy before calls (bounded).
    for ((n = 0; n < 200; n++)); do
      kill -0 "$PROXY_PID" 2>/dev/null || { cat "$dir/trunkvip.log" >&2; return 1; }
      if curl -s -m 1 "http://127.0.0.1:$admin/status" 2>/dev/null |
        python3 -c 'import json,sys; e=json.load(sys.stdin)["edges"]; sys.exit(0 if len(e)==2 and all(x["healthy"] for x in e) else 1)' 2>/dev/null; then
        break
      fi
      sleep 0.1
    done
    [ "$n" -lt 200 ] || { echo "trunkvip: Edges never Healthy" >&2; cat "$dir/trunkvip.log" >&2; return 1; }
    ;;
  *)
    echo "unknown target $target" >&2
    return 1
    ;;
  esac
}

# Runs SIPp's built-in uac; sets UAC to
# "ok failed retrans rt_ms rtt_mean_ms rtt_p99_ms elapsed_s rc call_rate".
run_uac() { # target_port rate calls dir tag
  local port=$1 rate=$2 calls=$3 dir=$4 tag=$5 local_port limit rc=0
  random_port local_port
  limit=$((calls / rate + 40))
  mkdir -p "$dir/$tag"
  # In its own directory: -trace_rtt writes uac_PID_rtt.csv there.
  (cd "$dir/$tag" && exec timeout -k 5 $((limit + 10)) sipp -sn uac "127.0.0.1:$port" \
    -i 127.0.0.1 -p "$local_port" -r "$rate" -m "$calls" -nostdin -timeout "${limit}s" \
    -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1000 \
    -trace_err -error_file errors.log >uac.log 2>&1) &
  PIDS+=($!)
  wait $! || rc=$?
  UAC=$(python3 "$here/summarise.py" --sipp-stat "$dir/$tag" "$calls" "$rc")
}

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
