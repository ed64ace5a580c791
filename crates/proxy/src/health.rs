//! Health checks: SIP OPTIONS to every Edge each `interval`, each allowed
//! `timeout`; Unhealthy after `failure_threshold` consecutive failures,
//! Healthy again after `recovery_threshold` consecutive successes.
//!
//! What counts as alive: any final response below 500. An Edge that
//! answers 403, 404 or 405 to OPTIONS has a running SIP stack and takes
//! calls; 5xx (503 above all) and 6xx, a timeout, or a transport error
//! count as failures. A failed-over INVITE counts as a failure too, so an
//! Edge that drops calls while still answering OPTIONS is taken out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkvip_sip::build::Builder;

use crate::config::{EdgeConfig, HealthConfig};
use crate::io::{Origin, Transmit, Transport};

/// The prefix of every probe branch: `z9hG4bK` + `tvp` + instance.
pub(crate) const PROBE_MARK: &[u8] = b"z9hG4bKtvp";

/// The prefix of every probe's Call-ID, so a shell can hand the answers
/// to the probing worker (see [`crate::shard_of`]).
const PROBE_CALL_ID: &str = "tvp-";

pub(crate) fn is_probe_call_id(call_id: &[u8]) -> bool {
    call_id.starts_with(PROBE_CALL_ID.as_bytes())
}

#[derive(Clone, Debug, Default)]
pub(crate) struct EdgeHealth {
    pub(crate) healthy: bool,
    pub(crate) consecutive_failures: u32,
    pub(crate) consecutive_successes: u32,
    pub(crate) last_rtt: Option<Duration>,
    /// The probe in flight: its sequence number, when it left, its deadline.
    outstanding: Option<(u32, Instant, Instant)>,
    next_probe: Option<Instant>,
}

/// A change of an Edge's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HealthChange {
    pub(crate) edge: usize,
    pub(crate) healthy: bool,
}

#[derive(Debug)]
pub(crate) struct HealthMonitor {
    cfg: HealthConfig,
    edges: Vec<EdgeConfig>,
    pub(crate) state: Vec<EdgeHealth>,
    instance: u32,
    source: SocketAddr,
    seq: u32,
    out: VecDeque<Transmit>,
    changes: VecDeque<HealthChange>,
    probing: bool,
}

impl HealthMonitor {
    pub(crate) fn new(
        cfg: HealthConfig,
        edges: &[EdgeConfig],
        source: SocketAddr,
        instance: u32,
        probing: bool,
        now: Instant,
    ) -> Self {
        let n = edges.len();
        let state = (0..n)
            .map(|i| EdgeHealth {
                healthy: true,
                // Spread the first probes over a tenth of the interval so
                // a large Trunk Group does not probe in one burst.
                next_probe: probing.then(|| now + cfg.interval / 10 * i as u32 / n.max(1) as u32),
                ..EdgeHealth::default()
            })
            .collect();
        HealthMonitor {
            cfg,
            edges: edges.to_vec(),
            state,
            instance,
            source,
            seq: 0,
            out: VecDeque::new(),
            changes: VecDeque::new(),
            probing,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.state
            .iter()
            .flat_map(|s| [s.outstanding.map(|o| o.2), s.next_probe])
            .flatten()
            .min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for edge in 0..self.state.len() {
            if let Some((_, _, deadline)) = self.state[edge].outstanding {
                if now >= deadline {
                    self.state[edge].outstanding = None;
                    self.record(edge, false);
                }
            }
            let due = self.state[edge].next_probe.is_some_and(|t| now >= t);
            if due && self.state[edge].outstanding.is_none() {
                self.send_probe(edge, now);
            }
        }
    }

    fn send_probe(&mut self, edge: usize, now: Instant) {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let e = &self.edges[edge];
        let host = match self.source {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => a.to_string(),
        };
        let via = format!(
            "SIP/2.0/{} {host};branch={}{:x}.{edge}.{seq};rport",
            e.transport.via_name(),
            std::str::from_utf8(PROBE_MARK).expect("ascii"),
            self.instance
        );
        let ip = self.source.ip();
        let mut b = Builder::request(b"OPTIONS", e.uri.as_bytes());
        b.push("Via", via.as_bytes());
        b.push("Max-Forwards", b"70");
        b.push_display(
            "From",
            format_args!("<sip:trunkvip@{}>;tag=tvp{:x}", bracket(ip), self.instance),
        );
        b.push_display("To", format_args!("<{}>", e.uri));
        b.push_display(
            "Call-ID",
            format_args!(
                "{PROBE_CALL_ID}{:x}-{edge}-{seq}@{}",
                self.instance,
                bracket(ip)
            ),
        );
        b.push_display("CSeq", format_args!("{seq} OPTIONS"));
        b.push("Accept", b"application/sdp");
        let payload: Bytes = b.finish();
        self.out.push_back(Transmit {
            destination: e.address,
            transport: e.transport,
            origin: Origin::Host,
            connection: None,
            payload,
        });
        let st = &mut self.state[edge];
        st.outstanding = Some((seq, now, now + self.cfg.timeout));
        st.next_probe = Some(now + self.cfg.interval);
    }

    /// Takes a response if it answers one of our probes: its code and the
    /// branch of its top Via.
    pub(crate) fn handle_response(&mut self, now: Instant, code: u16, branch: &[u8]) -> bool {
        let Some((instance, edge, seq)) = parse_probe_branch(branch) else {
            return false;
        };
        if instance != self.instance || edge >= self.state.len() {
            return false;
        }
        if code < 200 {
            return true;
        }
        let st = &mut self.state[edge];
        match st.outstanding {
            Some((s, sent, _)) if s == seq => {
                st.outstanding = None;
                st.last_rtt = Some(now.saturating_duration_since(sent));
                self.record(edge, code < 500);
            }
            // A late answer to a probe already counted as failed.
            _ => {}
        }
        true
    }

    /// A failed-over INVITE or a transport error counts against the Edge.
    pub(crate) fn report_failure(&mut self, edge: usize) {
        if edge < self.state.len() {
            self.record(edge, false);
        }
    }

    /// A transport error toward `dest` fails the probe in flight there.
    pub(crate) fn transport_failed(&mut self, dest: SocketAddr, transport: Transport) {
        for edge in 0..self.edges.len() {
            let e = &self.edges[edge];
            if e.address == dest
                && e.transport == transport
                && self.state[edge].outstanding.is_some()
            {
                self.state[edge].outstanding = None;
                self.record(edge, false);
            }
        }
    }

    fn record(&mut self, edge: usize, alive: bool) {
        let cfg = self.cfg;
        let st = &mut self.state[edge];
        if alive {
            st.consecutive_failures = 0;
            st.consecutive_successes = st.consecutive_successes.saturating_add(1);
            if !st.healthy && st.consecutive_successes >= cfg.recovery_threshold {
                st.healthy = true;
                self.changes.push_back(HealthChange {
                    edge,
                    healthy: true,
                });
            }
        } else {
            st.consecutive_successes = 0;
            st.consecutive_failures = st.consecutive_failures.saturating_add(1);
            if st.healthy && st.consecutive_failures >= cfg.failure_threshold {
                st.healthy = false;
                self.changes.push_back(HealthChange {
                    edge,
                    healthy: false,
                });
            }
        }
    }

    /// Another worker's view: only workers that do not probe take these.
    pub(crate) fn set_healthy(&mut self, edge: usize, healthy: bool) {
        if !self.probing {
            if let Some(st) = self.state.get_mut(edge) {
                st.healthy = healthy;
            }
        }
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub(crate) fn poll_change(&mut self) -> Option<HealthChange> {
        self.changes.pop_front()
    }
}

fn bracket(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// `z9hG4bKtvp{instance:x}.{edge}.{seq}`
pub(crate) fn parse_probe_branch(b: &[u8]) -> Option<(u32, usize, u32)> {
    let rest = std::str::from_utf8(b.strip_prefix(PROBE_MARK)?).ok()?;
    let mut it = rest.split('.');
    let instance = u32::from_str_radix(it.next()?, 16).ok()?;
    let edge = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    it.next().is_none().then_some((instance, edge, seq))
}
