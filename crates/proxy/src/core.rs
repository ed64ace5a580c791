//! `Core`: one forwarder and one health monitor driven together, the unit
//! a worker of the daemon runs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkvip_sip::{HeaderIndex, Message, Method};

use crate::config::{CarrierTarget, ConfigError, ProxyConfig};
use crate::health::HealthMonitor;
use crate::io::{Incoming, Transmit, Transport};
use crate::metrics::{method_label, Metrics, DROP_REASONS};
use crate::pair::SyncRecord;
use crate::proxy::{Proxy, TopVia};
use crate::Event;

/// One Edge's row of `trunkvip status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeStatus {
    pub name: String,
    pub uri: String,
    pub priority: u8,
    pub weight: u32,
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_rtt: Option<Duration>,
    pub active_dialogs: usize,
    /// The peer host's view of this Edge, when there is a pair.
    pub peer_healthy: Option<bool>,
}

#[derive(Debug)]
pub struct Core {
    proxy: Proxy,
    health: HealthMonitor,
    events: std::collections::VecDeque<Event>,
    probing: bool,
    /// The configured parser limits (`ProxyConfig::limits`).
    limits: trunkvip_sip::Limits,
    /// The last datagram's header index, for the next.
    spare: HeaderIndex,
    pair: bool,
    /// Health changes for the peer host.
    health_feed: std::collections::VecDeque<SyncRecord>,
    peer_health: Vec<Option<bool>>,
}

impl Core {
    pub fn new(config: ProxyConfig, now: Instant) -> Result<Core, ConfigError> {
        config.validate()?;
        let source = SocketAddr::new(config.host_address, config.host_port);
        let health = HealthMonitor::new(
            config.health,
            &config.edges,
            source,
            config.instance,
            config.health_probing,
            now,
        );
        let probing = config.health_probing;
        let pair = config.pair_secret.is_some();
        let limits = config.limits;
        let peer_health = vec![None; config.edges.len()];
        Ok(Core {
            proxy: Proxy::new(config, now),
            health,
            events: Default::default(),
            probing,
            limits,
            spare: HeaderIndex::default(),
            pair,
            health_feed: Default::default(),
            peer_health,
        })
    }

    /// One UDP datagram. The core may keep `data` (the request of a
    /// transaction): give it a buffer of the datagram's own size.
    pub fn handle(&mut self, now: Instant, incoming: Incoming, data: Bytes) {
        match Message::parse_datagram_in(data, &self.limits, &mut self.spare) {
            Ok(msg) => {
                self.dispatch(now, incoming, &msg, false);
                msg.recycle(&mut self.spare);
            }
            Err((e, data)) => self.proxy.handle_unparseable(incoming, &data, &e),
        }
        self.pump();
    }

    /// One framed TCP or TLS message.
    pub fn handle_message(&mut self, now: Instant, incoming: Incoming, msg: Message) {
        self.dispatch(now, incoming, &msg, true);
        self.pump();
    }

    /// The top Via is parsed here once, for the health monitor and the
    /// forwarder both.
    fn dispatch(&mut self, now: Instant, incoming: Incoming, msg: &Message, framed: bool) {
        let via = TopVia::of(msg);
        if let (Some(code), Some(branch)) = (msg.status(), via.and_then(|v| v.branch)) {
            if self.health.handle_response(now, code, branch) {
                return;
            }
        }
        self.proxy.handle_message(now, incoming, msg, via, framed);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.health.handle_timeout(now);
        self.proxy.handle_timeout(now);
        self.pump();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.health.poll_timeout(), self.proxy.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.proxy
            .poll_transmit()
            .or_else(|| self.health.poll_transmit())
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn connection_failed(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        transport: Transport,
    ) {
        self.health.transport_failed(destination, transport);
        self.proxy.connection_failed(now, destination, transport);
        self.pump();
    }

    /// Edge health learned from the worker that probes.
    pub fn set_edge_health(&mut self, edge: usize, healthy: bool) {
        if !self.probing {
            self.health.set_healthy(edge, healthy);
            self.proxy.set_edge_health(edge, healthy);
        }
    }

    /// A failover seen by another worker, counted by the one that probes.
    pub fn report_edge_failure(&mut self, _now: Instant, edge: usize) {
        if self.probing {
            self.health.report_failure(edge);
            self.pump();
        }
    }

    /// New carrier targets (a carrier name looked up again), in the order
    /// new Edge-originated dialogs try them; an error, naming a target with
    /// no listener of its transport, changes nothing. What is in progress
    /// stays where it is: a branch already sent keeps its address, and an
    /// in-dialog request follows its Route or Request-URI as before (a
    /// target no longer in the list still gets its transport). Only the
    /// failover candidates of a new dialog not tried yet follow the new
    /// list: those it still holds, in their order; those it dropped are
    /// not tried.
    pub fn set_carriers(&mut self, carriers: Vec<CarrierTarget>) -> Result<(), ConfigError> {
        self.proxy.set_carriers(carriers)
    }

    /// Where new Edge-originated dialogs go, in order.
    pub fn carriers(&self) -> &[CarrierTarget] {
        self.proxy.carriers()
    }

    /// Stop taking new dialogs (503); transactions in flight finish.
    pub fn drain(&mut self, _now: Instant) {
        self.proxy.drain();
    }

    /// Whether this host holds the VIP (true without `[vip]`, and until
    /// told otherwise). While it does not, transactions left from when it
    /// did run out without failing over, and nothing goes to the peer.
    pub fn set_serving(&mut self, serving: bool) {
        self.proxy.set_serving(serving);
    }

    /// Transactions still waiting for a final answer: what a graceful
    /// stop waits for.
    pub fn in_flight(&self) -> usize {
        self.proxy.in_flight()
    }

    /// Transactions alive, including those lingering to absorb
    /// retransmissions.
    pub fn transactions_alive(&self) -> usize {
        self.proxy.alive()
    }

    pub fn dialogs(&self) -> usize {
        self.proxy.dialogs.len()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.proxy.metrics
    }

    /// Bytes held by live transactions, buffers included.
    pub fn transaction_bytes(&self) -> usize {
        self.proxy.transaction_bytes()
    }

    /// (server, client) transactions alive.
    pub fn transactions(&self) -> (usize, usize) {
        self.proxy.transactions()
    }

    /// Timer entries queued (cancelled ones included until they come due).
    pub fn timers_queued(&self) -> usize {
        self.proxy.timers_len()
    }

    /// Bytes the affinity table holds per dialog, from its layout.
    pub fn dialog_bytes() -> usize {
        crate::dialogs::DialogTable::approx_bytes_per_entry()
    }

    pub fn status(&self) -> Vec<EdgeStatus> {
        self.proxy
            .edges
            .edges
            .iter()
            .enumerate()
            .map(|(n, e)| {
                let h = &self.health.state[n];
                EdgeStatus {
                    name: e.config.name.clone(),
                    uri: e.config.uri.clone(),
                    priority: e.config.priority,
                    weight: e.config.weight,
                    healthy: e.healthy,
                    consecutive_failures: h.consecutive_failures,
                    consecutive_successes: h.consecutive_successes,
                    last_rtt: h.last_rtt,
                    active_dialogs: self.proxy.dialogs.active_on(n),
                    peer_healthy: self.peer_health[n],
                }
            })
            .collect()
    }

    /// Moves health changes into the forwarder and failures into the
    /// monitor, and queues both as events for the shell.
    fn pump(&mut self) {
        self.proxy.prune_timers();
        while let Some(ev) = self.proxy.events.pop_front() {
            if let Event::EdgeFailure { edge } = ev {
                if self.probing {
                    self.health.report_failure(edge);
                }
            }
            self.events.push_back(ev);
        }
        while let Some(c) = self.health.poll_change() {
            self.proxy.set_edge_health(c.edge, c.healthy);
            if self.pair && self.health_feed.len() < 1024 {
                self.health_feed.push_back(SyncRecord::Health {
                    edge: c.edge as u16,
                    healthy: c.healthy,
                });
            }
            let name = self.proxy.edges.edges[c.edge].config.name.clone();
            self.events.push_back(Event::EdgeHealth {
                edge: c.edge,
                name,
                healthy: c.healthy,
            });
        }
    }

    // ----- pair sync ---------------------------------------------------

    /// The next record for the peer host (empty without a pair). On
    /// `ResyncBegin` send `sync_snapshot` then `ResyncEnd`.
    pub fn poll_sync(&mut self) -> Option<SyncRecord> {
        self.health_feed
            .pop_front()
            .or_else(|| self.proxy.dialogs.poll_change())
    }

    /// Every dialog this core holds, and its view of each Edge.
    pub fn sync_snapshot(&self, now: Instant) -> Vec<SyncRecord> {
        let mut v = self.proxy.dialogs.snapshot(now);
        if self.probing {
            v.extend(
                self.status()
                    .iter()
                    .enumerate()
                    .map(|(n, e)| SyncRecord::Health {
                        edge: n as u16,
                        healthy: e.healthy,
                    }),
            );
        }
        v
    }

    /// A record from the peer host.
    pub fn apply_sync(&mut self, now: Instant, r: &SyncRecord) {
        match *r {
            SyncRecord::Dialog { .. } => self.proxy.dialogs.apply(now, r),
            SyncRecord::Health { edge, healthy } => {
                if let Some(p) = self.peer_health.get_mut(edge as usize) {
                    *p = Some(healthy);
                }
            }
            SyncRecord::ResyncBegin | SyncRecord::ResyncEnd => {}
        }
    }

    /// Prometheus text exposition of the metrics and Edge health.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let m = &self.proxy.metrics;
        let _ = writeln!(out, "# TYPE trunkvip_requests_received_total counter");
        for method in Method::ALL {
            let _ = writeln!(
                out,
                "trunkvip_requests_received_total{{method=\"{}\"}} {}",
                method_label(method),
                m.requests_in[method as usize]
            );
        }
        let _ = writeln!(out, "# TYPE trunkvip_responses_received_total counter");
        for c in 1..=6 {
            let _ = writeln!(
                out,
                "trunkvip_responses_received_total{{class=\"{c}xx\"}} {}",
                m.responses_in[c]
            );
        }
        let _ = writeln!(out, "# TYPE trunkvip_responses_generated_total counter");
        for c in 1..=6 {
            let _ = writeln!(
                out,
                "trunkvip_responses_generated_total{{class=\"{c}xx\"}} {}",
                m.responses_local[c]
            );
        }
        let _ = writeln!(out, "# TYPE trunkvip_dropped_total counter");
        for (n, (_, name)) in DROP_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "trunkvip_dropped_total{{reason=\"{name}\"}} {}",
                m.drops[n]
            );
        }
        for (name, v) in [
            ("parse_errors_total", m.parse_errors),
            ("retransmissions_absorbed_total", m.retransmissions_absorbed),
            ("retransmissions_sent_total", m.retransmissions_sent),
            ("failovers_total", m.failovers),
            ("failovers_held_total", m.failovers_held),
            ("no_edge_503_total", m.no_edge_503),
            ("transactions_created_total", m.transactions_created),
            ("ghost_cancels_total", m.ghost_cancels),
            ("ghost_byes_total", m.ghost_byes),
            ("loops_detected_total", m.loops_detected),
            ("rate_limited_503_total", m.rate_limited_503),
        ] {
            let _ = writeln!(out, "# TYPE trunkvip_{name} counter\ntrunkvip_{name} {v}");
        }
        let (s, c) = self.proxy.transactions();
        let _ = writeln!(out, "# TYPE trunkvip_transactions gauge\ntrunkvip_transactions{{side=\"server\"}} {s}\ntrunkvip_transactions{{side=\"client\"}} {c}");
        let _ = writeln!(
            out,
            "# TYPE trunkvip_dialogs gauge\ntrunkvip_dialogs {}",
            self.proxy.dialogs.len()
        );
        let _ = writeln!(
            out,
            "# TYPE trunkvip_rate_limit_sources gauge\ntrunkvip_rate_limit_sources {}",
            self.proxy.limited_sources()
        );
        let _ = writeln!(out, "# TYPE trunkvip_edge_healthy gauge");
        let status = self.status();
        for e in &status {
            let _ = writeln!(
                out,
                "trunkvip_edge_healthy{{edge=\"{}\"}} {}",
                e.name,
                u8::from(e.healthy)
            );
        }
        let _ = writeln!(out, "# TYPE trunkvip_edge_probe_rtt_seconds gauge");
        for e in &status {
            if let Some(rtt) = e.last_rtt {
                let _ = writeln!(
                    out,
                    "trunkvip_edge_probe_rtt_seconds{{edge=\"{}\"}} {:.6}",
                    e.name,
                    rtt.as_secs_f64()
                );
            }
        }
        let _ = writeln!(out, "# TYPE trunkvip_edge_dialogs gauge");
        for e in &status {
            let _ = writeln!(
                out,
                "trunkvip_edge_dialogs{{edge=\"{}\"}} {}",
                e.name, e.active_dialogs
            );
        }
    }
}
