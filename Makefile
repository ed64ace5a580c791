# trunkvip: the commands the README gives. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: all build pgo test lint unit deps demo certs fuzz fuzz-deps bench bench-parse bench-core bench-paired bench-vip bench-vip-soak drill soak clean

all: build

build:
	$(CARGO) build --release --workspace

# The production binary, built with profile-guided optimisation:
# target/pgo/trunkvip (an instrumented build, a training run of SIPp calls
# over UDP and TCP on loopback, then the optimised build; about 8 minutes).
pgo: deps
	deploy/pgo.sh

# Everything CI checks: formatting, clippy, every test of the workspace.
test: deps lint unit

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# What the tests need from Debian, installed once (CI runs as root):
# SIPp and stunnel for crates/trunkvip/tests.
DEBS := sip-tester stunnel4 iproute2 keepalived sngrep tshark
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The proxy on 127.0.0.1:5060 (UDP and TCP) in front of two simulated
# Edges, health checks every second, a status table every few seconds.
demo:
	$(CARGO) build --release -p trunkvip
	./target/release/trunkvip demo

# Development certificates (CA, server, client) into certs/; the private
# keys are gitignored.
certs:
	$(CARGO) run --release -p trunkvip -- gen-certs --out certs

# Coverage-guided fuzzing of the datagram parser and the stream decoder,
# FUZZ_SECONDS each (nightly toolchain and cargo-fuzz from crates.io).
fuzz-deps:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	@rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal

fuzz: fuzz-deps
	cd crates/sip/fuzz && for t in datagram stream; do \
	  mkdir -p corpus/$$t && \
	  $(CARGO) +nightly fuzz run $$t corpus/$$t corpus/seed-$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=70000 || exit 1; \
	done

# Criterion: our parser and editor against rsip on the same messages.
bench-parse:
	$(CARGO) bench -p trunkvip-sip --bench parse

# The forwarder core with no sockets: CPU per complete call (criterion)
# and heap per transaction and per dialog (counted by the allocator).
bench-core:
	$(CARGO) bench -p trunkvip-proxy --bench core
	$(CARGO) bench -p trunkvip-proxy --bench memory

# VIP failover in a network-namespace lab, keepalived beside trunkvip in
# the same run (root; about 3 minutes).
bench-vip: deps
	$(CARGO) build --release -p trunkvip-vip --example vrrpd
	$(CARGO) test --release -p trunkvip-vip --test lab -- --ignored --nocapture --test-threads=1 bench_vip_failover

# SIPp uac -> proxy -> two SIPp uas on loopback: trunkvip (workers 1 and 2)
# against Kamailio (children=1) and SIPp direct in the same run, plus the
# relay floor; table in bench/results/, plot bench/results/proxy-cpu.png.
# It measures the binary deploy/README.md installs, the `make pgo` build.
bench-proxy: pgo
	TRUNKVIP_BIN=target/pgo/trunkvip bench/proxy.sh

# Two proxies side by side, each with its own SIPp uac and uas pair, so the
# machine's drift hits both alike: Kamailio against the `make pgo` build by
# default, or two trunkvip builds (PAIR="trunkvip-w1 trunkvip-w1" A_BIN=...
# B_BIN=...).
bench-paired: pgo
	A_BIN=$${A_BIN:-target/pgo/trunkvip} B_BIN=$${B_BIN:-target/pgo/trunkvip} bench/paired.sh

# No false takeover under load: 20 ms adverts, SIPp at 500 calls/s through
# a trunkvip pair in a namespace lab for SOAK_SECONDS (default 600; root).
bench-vip-soak: deps
	$(CARGO) test --release -p trunkvip --test pair_lab -- --ignored --nocapture soak_no_false_takeover_under_load

# Issue #6's pair drills in a namespace lab (root): Edge failure, Active
# host failure, graceful stop, Edge recovery, split brain, host failure
# with INVITEs in flight, graceful stop with answers lost, each at 200
# calls/s for DRILL_SECONDS (default 20); one DRILL line of figures each.
drill: deps
	$(CARGO) test --release -p trunkvip --test drill -- --nocapture --test-threads=1 drill_

# Issue #8's soak (root): SIPp at 200 calls/s through the pair while
# examples/hostile.rs sends 1M malformed datagrams a minute, an INVITE flood
# from outside carrier.allow, one over the rate limit, 5000 half-open TLS
# connections and forged VRRP, for SOAK_SECONDS (60) at SOAK_SCALE (1).
SOAK_SECONDS ?= 60
SOAK_SCALE ?= 1
soak: deps
	$(CARGO) build --release -p trunkvip --example hostile
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_SCALE=$(SOAK_SCALE) \
	  $(CARGO) test --release -p trunkvip --test soak -- --nocapture

bench: bench-parse bench-core bench-proxy

clean:
	$(CARGO) clean
