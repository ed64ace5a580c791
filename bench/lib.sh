# bench/lib.sh: what bench/proxy.sh and bench/paired.sh share: processes
# killed on exit, free ports, CPU time of a process tree, SIPp and the
# proxies (trunkvip, Kamailio, the zero-work relay) started on loopback.
# Sourced after the caller sets here (bench/), scratch (a directory of its
# own) and TRUNKVIP (the binary).

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

cpu_ns() { # pid: nanoseconds on CPU of pid (all its threads) and its descendants (schedstat)
  local total=0 p t run rest
  for p in "$1" $(descendants "$1"); do
    for t in /proc/"$p"/task/*/schedstat; do
      { read -r run rest <"$t"; } 2>/dev/null || continue
      total=$((total + run))
    done
  done
  echo "$total"
}

# ---- the pieces -----------------------------------------------------------
# PIN=1: the proxies on CPU 0 and SIPp on CPU 1 (taskset), as on a proxy
# host whose carrier and Edges are other machines: SIPp, woken by a
# proxy's send, does not preempt that proxy on its own CPU.
if [ "${PIN:-0}" = 1 ]; then
  command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  PROXY_ON=(taskset -c 0)
  SIPP_ON=(taskset -c 1)
else
  PROXY_ON=()
  SIPP_ON=()
fi

start_uas() { # name port dir: sipp -sn uas -aa, pid appended to PIDS
  "${SIPP_ON[@]}" sipp -sn uas -aa -nostdin -i 127.0.0.1 -p "$2" >"$3/$1.log" 2>&1 &
  PIDS+=($!)
  wait_udp_bound "$2" 10
}

# trunkvip's configuration for the benches: listeners, two Edges (priority
# 1 and 2) probed the way the Kamailio anchor probes them (every second, 3
# failures down, 5 up), the admin endpoint, and any extra health_check keys.
trunkvip_config() { # listen_list e1 e2 workers admin_port extra_health_check_lines
  cat <<EOF
listen = [$1]
host_address = "127.0.0.1"
workers = $4

[[edge]]
name = "EDGE-1"
uri = "sip:127.0.0.1:$2;transport=udp"
priority = 1

[[edge]]
name = "EDGE-2"
uri = "sip:127.0.0.1:$3;transport=udp"
priority = 2

# As the Kamailio anchor probes: every second, 3 failures down, 5 up.
[health_check]
interval = "1s"
timeout = "500ms"
failure_threshold = 3
recovery_threshold = 5
${6:-}

[admin]
listen = "127.0.0.1:$5"
EOF
}

# Starts $TRUNKVIP on dir/trunkvip.toml and waits (bounded) for both Edges
# Healthy; sets PROXY_PID.
start_trunkvip() { # dir admin_port
  local n
  "${PROXY_ON[@]}" "$TRUNKVIP" run --config "$1/trunkvip.toml" >"$1/trunkvip.log" 2>&1 &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  for ((n = 0; n < 200; n++)); do
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$1/trunkvip.log" >&2; return 1; }
    if curl -s -m 1 "http://127.0.0.1:$2/status" 2>/dev/null |
      python3 -c 'import json,sys; e=json.load(sys.stdin)["edges"]; sys.exit(0 if len(e)==2 and all(x["healthy"] for x in e) else 1)' 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "trunkvip: Edges never Healthy" >&2
  cat "$1/trunkvip.log" >&2
  return 1
}

# Starts PROXY in front of uas ports $3 $4 on port $2; sets PROXY_PID.
start_proxy() { # target port e1 e2 dir
  local target=$1 port=$2 e1=$3 e2=$4 dir=$5 n
  PROXY_PID=
  case $target in
  direct) ;;
  relay)
    "${PROXY_ON[@]}" "$scratch/udp-relay" "$port" "$e1" 2>"$dir/relay.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_udp_bound "$port" 10
    ;;
  kamailio)
    printf '1 sip:127.0.0.1:%s 0 10\n1 sip:127.0.0.1:%s 0 5\n' "$e1" "$e2" >"$dir/dispatcher.list"
    sed "s#LISTEN#127.0.0.1:$port#; s#DSLIST#$dir/dispatcher.list#; s#PROXYHOST#127.0.0.1#" \
      "$here/kamailio/kamailio.cfg" >"$dir/kamailio.cfg"
    # As ../shared/anchors/kamailio/run.sh starts it.
    "${PROXY_ON[@]}" kamailio -f "$dir/kamailio.cfg" -P "$dir/kam.pid" -w "$dir" -m 2048 -M 32 -x tlsf \
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
    trunkvip_config "\"udp:127.0.0.1:$port\"" "$e1" "$e2" "${spec%%-*}" "$admin" "$failover" >"$dir/trunkvip.toml"
    start_trunkvip "$dir" "$admin"
    ;;
  *)
    echo "unknown target $target" >&2
    return 1
    ;;
  esac
}

# Runs SIPp's built-in uac; sets UAC to
# "ok failed retrans rt_ms rtt_mean_ms rtt_p99_ms elapsed_s rc call_rate".
run_uac() { # target_port rate calls dir tag [local_port]
  local port=$1 rate=$2 calls=$3 dir=$4 tag=$5 local_port=${6:-} limit rc=0
  [ -n "$local_port" ] || random_port local_port
  limit=$((calls / rate + 40))
  mkdir -p "$dir/$tag"
  # In its own directory: -trace_rtt writes uac_PID_rtt.csv there.
  (cd "$dir/$tag" && exec "${SIPP_ON[@]}" timeout -k 5 $((limit + 10)) sipp -sn uac "127.0.0.1:$port" \
    -i 127.0.0.1 -p "$local_port" -r "$rate" -m "$calls" -nostdin -timeout "${limit}s" \
    -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1000 \
    -trace_err -error_file errors.log >uac.log 2>&1) &
  PIDS+=($!)
  wait $! || rc=$?
  UAC=$(python3 "$here/summarise.py" --sipp-stat "$dir/$tag" "$calls" "$rc")
}

