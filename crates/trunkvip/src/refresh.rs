//! Looking Edge and carrier names up again while the daemon runs.
//!
//! Every carrier URI and every Edge URI whose host is a name is looked up
//! again (RFC 3263, as at start: [`crate::dns`]) when its answer's TTL is
//! over, clamped to [`MIN_INTERVAL`, `MAX_INTERVAL`], and at once on
//! SIGHUP ([`Shared::relookup`]).
//!
//! - **Carriers follow.** When a carrier URI's targets change, every
//!   worker's core gets the new carrier list (`Control::Carriers`, then
//!   `Core::set_carriers`): new Edge-originated dialogs use it, while
//!   transactions and dialogs in progress stay with the address they
//!   were set up with. An info line says old -> new.
//! - **A failure keeps the last good answer.** A lookup that fails or finds
//!   nothing is retried after [`RETRY_AFTER_FAILURE`] with a warning naming
//!   the URI and the error; the targets stay as they were (never empty).
//! - **Edges do not move.** An Edge's address is its identity (health,
//!   routing, source classification, the pair's records), so an Edge name
//!   that resolves elsewhere is only reported, once per change, with a
//!   warning to restart.
//!
//! - **What the transports derive follows too.** A new address of a
//!   carrier name gets that name as its TLS server name (the certificate
//!   is checked against the URI's domain, RFC 5922, as at start), and the
//!   connection limits' exemption of configured hosts (`[limits]`) moves
//!   to the carriers' current addresses. `carrier.allow` is configured as
//!   addresses, not names, and does not change.
//!
//! The decisions (when next, what changed, what to keep) are [`Refresher`],
//! plain code over a clock given to it; [`spawn`] is the task around it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{debug, info, warn};
use trunkvip_proxy::{CarrierTarget, Transport};

use crate::config::{Config, Resolved, SipTarget, TargetHost};
use crate::dns::{Resolution, Resolver};
use crate::transport::Transports;
use crate::worker::{self, Control};

/// The shortest wait between two lookups of a name: a TTL of 0 or a few
/// seconds (common behind load balancers) must not turn into a busy loop
/// of queries, and carriers announce address changes well ahead.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// The longest: a name with a day-long TTL is still checked every hour, so
/// a change made without lowering the TTL first is seen within the hour.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// After a failed lookup: soon, as the name may be needed, but no faster
/// than [`MIN_INTERVAL`], not to hammer a name server that is struggling.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// How long to wait before looking a name up again, given its answer's
/// TTL; an answer that gave none waits the longest.
pub fn interval(ttl: Option<Duration>) -> Duration {
    ttl.unwrap_or(MAX_INTERVAL)
        .clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// One place a name leads to, as the refresher compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: SocketAddr,
    pub transport: Transport,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.transport, self.address)
    }
}

/// `tcp 198.51.100.2:5070, udp 198.51.100.2:5060`.
pub fn list(targets: &[Target]) -> String {
    let v: Vec<String> = targets.iter().map(Target::to_string).collect();
    v.join(", ")
}

/// Whose URI a name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// `carrier.uris[index]`.
    Carrier(usize),
    /// An Edge, and the address it has used since start.
    Edge { name: String, in_use: Target },
}

/// One URI the refresher keeps: its last good answer and when to look
/// again.
#[derive(Clone, Debug)]
pub struct Entry {
    pub target: SipTarget,
    pub owner: Owner,
    /// The last good answer: a carrier's targets in order, an Edge's first
    /// target. Never empty.
    pub current: Vec<Target>,
    /// When to look up again; `None`: an address, never.
    pub next: Option<Instant>,
    /// The last lookup, good or not.
    pub looked_up: Option<Instant>,
    /// Its error, when it failed.
    pub error: Option<String>,
    pub failures: u64,
    pub changes: u64,
}

/// What a lookup's result means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The same as before.
    Same,
    /// A carrier's targets changed.
    Carrier { old: Vec<Target>, new: Vec<Target> },
    /// An Edge's name gives another address than last time; `in_use`: the
    /// one the Edge keeps until a restart (`new` may be it again).
    Edge {
        old: Target,
        new: Target,
        in_use: Target,
    },
    /// Failed or found nothing: `kept` stays.
    Failed { error: String, kept: Vec<Target> },
}

fn targets(r: &Resolution) -> Vec<Target> {
    r.found
        .iter()
        .map(|f| Target {
            address: f.address,
            transport: f.transport,
        })
        .collect()
}

/// Every carrier URI and Edge name, and when each is looked up next.
#[derive(Clone, Debug, Default)]
pub struct Refresher {
    /// The carrier URIs in the file's order, then the Edges with a name.
    pub entries: Vec<Entry>,
}

impl Refresher {
    /// From what start resolved (`now`: then).
    pub fn new(config: &Config, resolved: &Resolved, now: Instant) -> Refresher {
        let mut entries = vec![];
        for (n, c) in config.carriers.iter().enumerate() {
            let current: Vec<Target> = resolved
                .carriers
                .iter()
                .filter(|r| r.index == n)
                .map(|r| Target {
                    address: r.target.address,
                    transport: r.target.transport,
                })
                .collect();
            let ttl = resolved.carrier_ttls.get(n).copied().flatten();
            entries.push(Entry::new(c.clone(), Owner::Carrier(n), current, ttl, now));
        }
        for (n, e) in config.edges.iter().enumerate() {
            if !matches!(e.target.host, TargetHost::Name(_)) {
                continue;
            }
            let Some(f) = resolved.edges.get(n) else {
                continue;
            };
            let in_use = Target {
                address: f.address,
                transport: f.transport,
            };
            let owner = Owner::Edge {
                name: e.name.clone(),
                in_use,
            };
            let ttl = resolved.edge_ttls.get(n).copied().flatten();
            entries.push(Entry::new(e.target.clone(), owner, vec![in_use], ttl, now));
        }
        Refresher { entries }
    }

    /// The next time a name is due; `None`: no name at all.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.next).min()
    }

    /// The names due at `now`.
    pub fn due(&self, now: Instant) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&n| self.entries[n].next.is_some_and(|t| t <= now))
            .collect()
    }

    /// Every name due now (SIGHUP).
    pub fn all_due(&mut self, now: Instant) {
        for e in &mut self.entries {
            if e.next.is_some() {
                e.next = Some(now);
            }
        }
    }

    /// Takes the result of looking entry `n` up at `now`.
    pub fn record(
        &mut self,
        n: usize,
        now: Instant,
        result: Result<Resolution, String>,
    ) -> Outcome {
        let e = &mut self.entries[n];
        e.looked_up = Some(now);
        let result = result.and_then(|r| match r.found.is_empty() {
            true => Err("no target found".to_owned()),
            false => Ok(r),
        });
        let r = match result {
            Ok(r) => r,
            Err(error) => {
                e.failures += 1;
                e.error = Some(error.clone());
                e.next = Some(now + RETRY_AFTER_FAILURE);
                return Outcome::Failed {
                    error,
                    kept: e.current.clone(),
                };
            }
        };
        e.error = None;
        e.next = Some(now + interval(r.ttl));
        let mut new = targets(&r);
        match &e.owner {
            Owner::Carrier(_) => {
                if new == e.current {
                    return Outcome::Same;
                }
                e.changes += 1;
                let old = std::mem::replace(&mut e.current, new.clone());
                Outcome::Carrier { old, new }
            }
            Owner::Edge { in_use, .. } => {
                new.truncate(1);
                if new == e.current {
                    return Outcome::Same;
                }
                e.changes += 1;
                let old = std::mem::replace(&mut e.current, new.clone());
                Outcome::Edge {
                    old: old[0],
                    new: new[0],
                    in_use: *in_use,
                }
            }
        }
    }

    /// The core's carrier list: every carrier URI's current targets, in
    /// the file's order.
    pub fn carrier_targets(&self) -> Vec<CarrierTarget> {
        self.entries
            .iter()
            .filter(|e| matches!(e.owner, Owner::Carrier(_)))
            .flat_map(|e| {
                e.current.iter().map(|t| CarrierTarget {
                    uri: e.target.uri.clone(),
                    address: t.address,
                    transport: t.transport,
                })
            })
            .collect()
    }

    /// The carriers' rows of `GET /status`; `now` and `wall` are the same
    /// moment on the two clocks.
    pub fn rows(&self, now: Instant, wall: SystemTime) -> Vec<CarrierRow> {
        let unix = |t: Instant| {
            let at = wall
                .checked_sub(now.saturating_duration_since(t))
                .unwrap_or(wall);
            at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
        };
        self.entries
            .iter()
            .filter(|e| matches!(e.owner, Owner::Carrier(_)))
            .map(|e| CarrierRow {
                uri: e.target.uri.clone(),
                targets: e.current.iter().map(Target::to_string).collect(),
                looked_up_unix: e.looked_up.map(unix),
                next_lookup_in_s: e.next.map(|t| t.saturating_duration_since(now).as_secs()),
                error: e.error.clone(),
                failures: e.failures,
                changes: e.changes,
            })
            .collect()
    }
}

impl Entry {
    fn new(
        target: SipTarget,
        owner: Owner,
        current: Vec<Target>,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Entry {
        let name = matches!(target.host, TargetHost::Name(_));
        Entry {
            target,
            owner,
            current,
            next: name.then(|| now + interval(ttl)),
            // Start resolved it (an address: never).
            looked_up: name.then_some(now),
            error: None,
            failures: 0,
            changes: 0,
        }
    }
}

/// One carrier URI in `GET /status` (`carriers`, absent in versions
/// before it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierRow {
    pub uri: String,
    /// Where new Edge-originated calls go, in order: `tcp 198.51.100.2:5070`.
    pub targets: Vec<String>,
    /// The last lookup (start's included), Unix seconds; `null` for an
    /// address.
    pub looked_up_unix: Option<u64>,
    pub next_lookup_in_s: Option<u64>,
    /// The last lookup's error; the targets are then the last good ones.
    pub error: Option<String>,
    /// Lookups that failed since start.
    pub failures: u64,
    /// Changes of targets since start.
    pub changes: u64,
}

/// What the refresher task shares with the daemon and the admin endpoint.
#[derive(Debug, Default)]
pub struct Shared {
    kick: Notify,
    rows: Mutex<Vec<CarrierRow>>,
    failures: AtomicU64,
}

impl Shared {
    /// Looks every name up again now, with a new resolver (SIGHUP).
    pub fn relookup(&self) {
        self.kick.notify_one();
    }

    /// The carriers' rows, as of the last lookup.
    pub fn rows(&self) -> Vec<CarrierRow> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Prometheus text: failed lookups since start.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "# TYPE trunkvip_dns_relookup_failures_total counter\n\
             trunkvip_dns_relookup_failures_total {}\n",
            self.failures.load(Ordering::Relaxed)
        );
    }

    fn publish(&self, r: &Refresher) {
        let rows = r.rows(worker::now(), SystemTime::now());
        *self.rows.lock().unwrap_or_else(|e| e.into_inner()) = rows;
    }
}

/// Starts the task that looks names up again; it runs until the process
/// ends.
pub fn spawn(config: Config, resolved: &Resolved, transports: Arc<Transports>) -> Arc<Shared> {
    let refresher = Refresher::new(&config, resolved, worker::now());
    let shared = Arc::new(Shared::default());
    shared.publish(&refresher);
    tokio::spawn(run(config, refresher, shared.clone(), transports));
    shared
}

async fn run(
    config: Config,
    mut refresher: Refresher,
    shared: Arc<Shared>,
    transports: Arc<Transports>,
) {
    let listeners = config.listeners();
    let mut dns = Resolver::new(&config.dns_servers);
    let mut sent = refresher.carrier_targets();
    loop {
        let wake = refresher.next_due();
        tokio::select! {
            _ = sleep_until(wake) => {}
            _ = shared.kick.notified() => {
                refresher.all_due(worker::now());
                // A new resolver: an empty cache, /etc/resolv.conf read again.
                dns = Resolver::new(&config.dns_servers);
            }
        }
        for n in refresher.due(worker::now()) {
            let target = refresher.entries[n].target.clone();
            let result = match &dns {
                Ok(dns) => crate::dns::resolve_target(dns, &target, &listeners).await,
                Err(e) => Err(e.clone()),
            };
            let outcome = refresher.record(n, worker::now(), result);
            if matches!(outcome, Outcome::Failed { .. }) {
                shared.failures.fetch_add(1, Ordering::Relaxed);
            }
            log(&refresher.entries[n], &outcome, &transports);
        }
        let now = refresher.carrier_targets();
        if now != sent {
            let carriers = now.iter().map(|c| c.address.ip());
            let edges = transports.edge_ips.iter().copied();
            transports
                .conns
                .admission()
                .set_trusted(edges.chain(carriers));
            transports.broadcast(None, || Control::Carriers(now.clone()));
            sent = now;
        }
        shared.publish(&refresher);
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// The names the TLS targets among `new` must show certificates for: the
/// URI's host name (RFC 5922), never an SRV target's; none for an address
/// or a transport without TLS. `Err`: a host that is no TLS server name.
fn tls_names(
    host: &TargetHost,
    new: &[Target],
) -> Result<Vec<(SocketAddr, ServerName<'static>)>, String> {
    let TargetHost::Name(name) = host else {
        return Ok(vec![]);
    };
    let sn = ServerName::try_from(name.clone()).map_err(|_| name.clone())?;
    Ok(new
        .iter()
        .filter(|t| t.transport == Transport::Tls)
        .map(|t| (t.address, sn.clone()))
        .collect())
}

fn log(e: &Entry, outcome: &Outcome, transports: &Transports) {
    let uri = &e.target.uri;
    match (outcome, &e.owner) {
        (Outcome::Same, _) => {}
        (Outcome::Carrier { old, new }, _) => {
            info!(
                carrier = %uri,
                "carrier {uri}: {} -> {} (new calls from the Edges go there; calls in progress stay)",
                list(old),
                list(new)
            );
            match tls_names(&e.target.host, new) {
                Ok(names) => transports.add_tls_names(names),
                Err(name) => debug!(carrier = %uri, "{name} is no TLS server name"),
            }
        }
        (Outcome::Edge { old, new, in_use }, Owner::Edge { name, .. }) => {
            if new == in_use {
                info!(edge = %name, "Edge {name}: {uri} resolves to {new} again, the address in use");
            } else {
                warn!(
                    edge = %name,
                    "Edge {name}: {uri} now resolves to {new} (was {old}), but the Edge stays at \
                     {in_use}: restart trunkvip to follow it"
                );
            }
        }
        (Outcome::Failed { error, kept }, Owner::Carrier(_)) => warn!(
            carrier = %uri,
            "carrier {uri}: looking it up again failed, keeping {} (next try in {}s): {error}",
            list(kept),
            RETRY_AFTER_FAILURE.as_secs()
        ),
        (Outcome::Failed { error, .. }, Owner::Edge { name, in_use }) => warn!(
            edge = %name,
            "Edge {name}: looking {uri} up again failed (the Edge stays at {in_use}; next try in \
             {}s): {error}",
            RETRY_AFTER_FAILURE.as_secs()
        ),
        (Outcome::Edge { .. }, Owner::Carrier(_)) => {}
    }
}

#[cfg(test)]
mod tests;
