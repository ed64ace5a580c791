//! The core's configuration, already validated and resolved to addresses
//! (the daemon reads TOML and resolves names; the core never does I/O).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::io::Transport;

/// One SIP trunk endpoint, as in the vendor guide's Trunk Group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Shown in status and logs, and carried in our Record-Route: letters,
    /// digits, `-`, `_` and `.` only.
    pub name: String,
    /// The URI as configured, used as the Request-URI of health probes.
    pub uri: String,
    pub address: SocketAddr,
    pub transport: Transport,
    /// 1 is the highest, as in the Trunk Group.
    pub priority: u8,
    /// Share of new dialogs among Edges of equal priority.
    pub weight: u32,
}

/// Where Edge-originated calls go, in order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarrierTarget {
    pub uri: String,
    pub address: SocketAddr,
    pub transport: Transport,
}

/// The vendor guide's health check settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub recovery_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            failure_threshold: 3,
            recovery_threshold: 5,
        }
    }
}

/// RFC 3261 timer bases and the proxy's own timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Timer C: over three minutes (RFC 3261 section 16.6 step 11).
    pub timer_c: Duration,
    /// A new INVITE with no response at all this long goes to the next Edge.
    pub failover_after: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(181),
            failover_after: Duration::from_millis(250),
        }
    }
}

/// The affinity table's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialogConfig {
    pub max_dialogs: usize,
    /// How long an ended dialog is remembered (late BYE retransmissions).
    pub grace: Duration,
    /// The longest a dialog is kept without ending.
    pub lifetime: Duration,
}

impl Default for DialogConfig {
    fn default() -> Self {
        DialogConfig {
            max_dialogs: 1_000_000,
            grace: Duration::from_secs(32),
            lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// Everything the core needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The carrier-facing addresses we listen on (the VIP on a pair), one
    /// per transport; they go in our Via and Record-Route.
    pub service: Vec<(Transport, SocketAddr)>,
    /// This host's own address: health probes leave from it.
    pub host_address: IpAddr,
    /// The port probes leave from on `host_address`.
    pub host_port: u16,
    pub edges: Vec<EdgeConfig>,
    pub carriers: Vec<CarrierTarget>,
    /// Carrier-side sources accepted; empty means any.
    pub carrier_allow: Vec<IpNet>,
    pub health: HealthConfig,
    pub timers: Timers,
    pub dialogs: DialogConfig,
    /// Retry-After of our 503 answers, in seconds.
    pub retry_after: u32,
    /// Distinguishes this process's branches from any other's (the peer
    /// host of a pair, an earlier run): the shell draws it at random.
    pub instance: u32,
    /// Whether this core sends the health probes. With several workers
    /// only one probes and the others learn Edge health from it.
    pub health_probing: bool,
    /// The pair's shared secret: turns pair sync on (see `pair`).
    pub pair_secret: Option<Vec<u8>>,
    /// New requests per second per carrier-side source; `None`: no limit.
    pub rate_limit: Option<crate::ratelimit::RateLimit>,
    pub limits: trunkvip_sip::Limits,
}

/// A configuration the core cannot run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ProxyConfig {
    /// A configuration with the defaults and no Edges, for builders.
    pub fn new(service: Vec<(Transport, SocketAddr)>, host_address: IpAddr) -> Self {
        let host_port = service.first().map_or(5060, |s| s.1.port());
        ProxyConfig {
            service,
            host_address,
            host_port,
            edges: vec![],
            carriers: vec![],
            carrier_allow: vec![],
            health: HealthConfig::default(),
            timers: Timers::default(),
            dialogs: DialogConfig::default(),
            retry_after: 5,
            instance: 1,
            health_probing: true,
            pair_secret: None,
            rate_limit: None,
            limits: trunkvip_sip::Limits::default(),
        }
    }

    pub fn service_addr(&self, t: Transport) -> Option<SocketAddr> {
        self.service.iter().find(|s| s.0 == t).map(|s| s.1)
    }

    /// Every carrier target needs a listener of its transport (our Via
    /// and Record-Route name it).
    pub fn check_carriers(&self, carriers: &[CarrierTarget]) -> Result<(), ConfigError> {
        for c in carriers {
            if self.service_addr(c.transport).is_none() {
                return Err(ConfigError(format!(
                    "carrier {}: transport {} needs a listener",
                    c.uri, c.transport
                )));
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = |s: String| Err(ConfigError(s));
        if self.service.is_empty() {
            return e("no listen address".into());
        }
        if self.edges.is_empty() {
            return e("no Edge configured".into());
        }
        if self.edges.len() > u16::MAX as usize {
            return e("too many Edges".into());
        }
        for (n, edge) in self.edges.iter().enumerate() {
            let ok = !edge.name.is_empty()
                && edge
                    .name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
            if !ok {
                return e(format!(
                    "edge {}: name {:?} may hold only letters, digits, '-', '_' and '.'",
                    n + 1,
                    edge.name
                ));
            }
            if self.edges[..n].iter().any(|o| o.name == edge.name) {
                return e(format!("edge {}: name {:?} used twice", n + 1, edge.name));
            }
            if edge.priority == 0 {
                return e(format!("edge {}: priority must be 1 or more", edge.name));
            }
            if edge.weight == 0 {
                return e(format!("edge {}: weight must be 1 or more", edge.name));
            }
            if self.service_addr(edge.transport).is_none() {
                return e(format!(
                    "edge {}: transport {} needs a {} listener",
                    edge.name, edge.transport, edge.transport
                ));
            }
        }
        self.check_carriers(&self.carriers)?;
        let h = &self.health;
        let min = std::time::Duration::from_millis(100);
        if h.interval < min || h.timeout < min {
            return e("health_check: interval and timeout must be at least 100ms".into());
        }
        if h.failure_threshold == 0 || h.recovery_threshold == 0 {
            return e("health_check: thresholds must be at least 1".into());
        }
        if self.timers.failover_after < std::time::Duration::from_millis(10) {
            return e("health_check.failover_after must be at least 10ms".into());
        }
        if self.dialogs.max_dialogs == 0 {
            return e("max_dialogs must be at least 1".into());
        }
        Ok(())
    }
}
