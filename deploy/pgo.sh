#!/usr/bin/env bash
# deploy/pgo.sh: builds the production binary with profile-guided
# optimisation (PGO) into target/pgo/trunkvip (`make pgo`).
#
# 1. An instrumented build (-Cprofile-generate) in target/pgo/gen.
# 2. A training run on loopback: SIPp's built-in uac calls over UDP and
#    over TCP through that build, two workers, in front of two
#    `sipp -sn uas -aa` with OPTIONS probes every second.
# 3. llvm-profdata merges the counts; the final build (-Cprofile-use) in
#    target/pgo/use is copied to target/pgo/trunkvip.
#
# Why: a call's user-space work runs with caches that the kernel and the
# peers emptied since the last datagram, so where the hot code lies counts
# as much as how much of it there is; PGO lays the hot paths out together
# (BENCHMARKS.md, "Profile-guided build"). The code is the same as the plain
# release build's; only the compiler's layout and inlining choices differ.
#
# Needs sipp, curl, python3, ss (make deps) and llvm-profdata of the LLVM
# that rustc uses (Debian package llvm-N, installed here when run as root
# and missing). Knobs: CALLS (UDP calls, 12000), RATE (600), TCP_CALLS
# (2000), OUT (target/pgo), KEEP=1 (keep the scratch dir).
set -euo pipefail

here=$(cd "$(dirname "$0")/../bench" && pwd)
root=$(cd "$here/.." && pwd)
OUT=${OUT:-$root/target/pgo}
CALLS=${CALLS:-12000}
RATE=${RATE:-600}
TCP_CALLS=${TCP_CALLS:-2000}
CARGO=${CARGO:-cargo}

for tool in sipp curl python3 ss rustc; do
  command -v "$tool" >/dev/null || { echo "deploy/pgo.sh: $tool is missing (make deps)" >&2; exit 1; }
done

# ---- llvm-profdata of rustc's own LLVM --------------------------------------
llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=
for c in "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" "llvm-profdata-$llvm" "/usr/lib/llvm-$llvm/bin/llvm-profdata"; do
  if command -v "$c" >/dev/null 2>&1; then profdata=$c; break; fi
done
if [ -z "$profdata" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "deploy/pgo.sh: installing llvm-$llvm for llvm-profdata" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "llvm-$llvm" >/dev/null
  profdata=llvm-profdata-$llvm
fi
command -v "$profdata" >/dev/null 2>&1 || {
  echo "deploy/pgo.sh: no llvm-profdata for LLVM $llvm (rustc's): install llvm-$llvm or rustup's llvm-tools" >&2
  exit 1
}

scratch=$(mktemp -d /tmp/trunkvip-pgo.XXXXXX)
. "$here/lib.sh"

# ---- 1. instrumented build ----------------------------------------------------
rm -rf "$OUT/raw"
mkdir -p "$OUT/raw"
echo "deploy/pgo.sh: instrumented build (target/pgo/gen)" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$OUT/raw" \
  $CARGO build --release -p trunkvip --target-dir "$OUT/gen" --quiet
TRUNKVIP=$OUT/gen/release/trunkvip

# ---- 2. training --------------------------------------------------------------
random_port e1
random_port e2
random_port port
random_port admin
start_uas uas1 "$e1" "$scratch"
start_uas uas2 "$e2" "$scratch"
trunkvip_config "\"udp:127.0.0.1:$port\", \"tcp:127.0.0.1:$port\"" "$e1" "$e2" 2 "$admin" >"$scratch/trunkvip.toml"
start_trunkvip "$scratch" "$admin"
proxy=$PROXY_PID

echo "deploy/pgo.sh: training, $CALLS calls over UDP at $RATE/s" >&2
run_uac "$port" "$RATE" "$CALLS" "$scratch" udp
read -r ok failed _ <<<"$UAC"
echo "deploy/pgo.sh: UDP ok $ok failed $failed" >&2
# A failed training call does not spoil the profile: a warning, not an end.
[ "${ok:-0}" -gt 0 ] 2>/dev/null || { echo "deploy/pgo.sh: no UDP training call succeeded" >&2; KEEP=1; exit 1; }
[ "$failed" = 0 ] || echo "deploy/pgo.sh: warning: $failed UDP training calls failed" >&2

echo "deploy/pgo.sh: training, $TCP_CALLS calls over TCP" >&2
random_port tcp_local
(cd "$scratch" && timeout -k 5 120 sipp -sn uac -t t1 "127.0.0.1:$port" -i 127.0.0.1 -p "$tcp_local" \
  -r 200 -m "$TCP_CALLS" -nostdin -timeout 100s >"$scratch/tcp.log" 2>&1) ||
  echo "deploy/pgo.sh: warning: SIPp over TCP exited $? (some TCP training calls failed)" >&2

# The counts are written when the process exits.
kill -TERM "$proxy"
for ((n = 0; n < 100; n++)); do kill -0 "$proxy" 2>/dev/null || break; sleep 0.1; done
stop_all
ls "$OUT"/raw/*.profraw >/dev/null 2>&1 || { echo "deploy/pgo.sh: no profile written" >&2; exit 1; }

# ---- 3. merge and the final build ----------------------------------------------
"$profdata" merge -o "$OUT/merged.profdata" "$OUT"/raw/*.profraw
# Named by its content: cargo tracks RUSTFLAGS, not the file they name, so
# a new profile must be a new path for every crate to be built with it.
sum=$(sha256sum "$OUT/merged.profdata" | cut -c1-16)
rm -f "$OUT"/trunkvip-*.profdata
mv "$OUT/merged.profdata" "$OUT/trunkvip-$sum.profdata"
echo "deploy/pgo.sh: optimised build (target/pgo/use)" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$OUT/trunkvip-$sum.profdata" \
  $CARGO build --release -p trunkvip --target-dir "$OUT/use" --quiet
cp "$OUT/use/release/trunkvip" "$OUT/trunkvip"
echo "deploy/pgo.sh: $OUT/trunkvip (trained on $CALLS UDP and $TCP_CALLS TCP calls, LLVM $llvm)"
