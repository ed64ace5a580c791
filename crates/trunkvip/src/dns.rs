//! Name resolution for Edge and carrier URIs as RFC 3263 section 4 says:
//! NAPTR, then SRV, then A/AAAA, through hickory-resolver. The RFC's
//! choices (which records to keep, in what order, when to fall back) are
//! plain functions over records, tested without a network.
//!
//! Every answer says how long it holds (its TTL), and so does what is
//! found from it: a target reached through NAPTR, SRV and A holds for the
//! shortest of the three, and a URI's whole answer for the shortest of
//! every query it took, the ones that found nothing included (a NAPTR
//! record that appears changes the answer too). `crate::refresh` looks the
//! names up again when that time is over.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use trunkvip_proxy::Transport;

use crate::config::{SipTarget, TargetHost};

/// A NAPTR record, as far as RFC 3263 reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub service: String,
    pub replacement: String,
}

/// An SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// One place to send to, and how it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub address: SocketAddr,
    pub transport: Transport,
    /// The lookups that led here, e.g. `NAPTR -> SRV _sip._tcp.example.com
    /// -> sip1.example.com`; empty for an IP address in the URI.
    pub path: String,
    /// How long this holds: the shortest TTL of the records on `path`;
    /// `None` for an IP address in the URI (or records that gave none).
    pub ttl: Option<Duration>,
}

/// Every target of one URI, best first, and how long the whole answer
/// holds: the shortest TTL of every query it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub found: Vec<Found>,
    pub ttl: Option<Duration>,
}

/// The records of one query and how long they hold: the resolver's
/// `valid_until`, or for "no such record" the SOA minimum when the server
/// gave one. `None`: the answer did not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records<T> {
    pub records: Vec<T>,
    pub ttl: Option<Duration>,
}

impl<T> Records<T> {
    pub fn new(records: Vec<T>, ttl: Option<Duration>) -> Self {
        Records { records, ttl }
    }
}

/// The shorter of two TTLs; one not given does not count.
pub fn shorter(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The SRV service name of a transport (RFC 3263 4.1: TLS is `_sips._tcp`).
pub fn srv_prefix(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
    }
}

/// The transport of a NAPTR service field, or `None` for one we cannot use.
fn naptr_transport(service: &str) -> Option<Transport> {
    match service.to_ascii_uppercase().as_str() {
        "SIP+D2U" => Some(Transport::Udp),
        "SIP+D2T" => Some(Transport::Tcp),
        "SIPS+D2T" => Some(Transport::Tls),
        _ => None,
    }
}

/// The NAPTR records to follow, best first: flag "s", a SIP service over a
/// transport in `allowed`, by order then preference (RFC 3403). Each gives
/// the transport and the SRV name to look up.
pub fn usable_naptr(records: &[Naptr], allowed: &[Transport]) -> Vec<(Transport, String)> {
    let mut keep: Vec<&Naptr> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter(|r| naptr_transport(&r.service).is_some_and(|t| allowed.contains(&t)))
        .filter(|r| !r.replacement.is_empty() && r.replacement != ".")
        .collect();
    // Stable: records equal in both keep the server's order.
    keep.sort_by_key(|r| (r.order, r.preference));
    let mut out: Vec<(Transport, String)> = vec![];
    for r in keep {
        let t = naptr_transport(&r.service).expect("filtered above");
        let name = r.replacement.trim_end_matches('.').to_owned();
        if !out
            .iter()
            .any(|(ot, on)| *ot == t && on.eq_ignore_ascii_case(&name))
        {
            out.push((t, name));
        }
    }
    out
}

/// SRV records in the order we try them: priority ascending, then weight
/// descending, then target name. RFC 2782 allows a weighted random pick
/// among equal priorities; a fixed order is used instead so that `check`
/// shows what the daemon will do and every worker fails over alike. A
/// lone target "." (service not offered) leaves nothing.
pub fn sort_srv(mut records: Vec<Srv>) -> Vec<Srv> {
    records.retain(|r| !r.target.is_empty() && r.target != ".");
    for r in &mut records {
        r.target = r.target.trim_end_matches('.').to_owned();
    }
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then_with(|| a.target.cmp(&b.target))
    });
    records
}

/// Transports to try SRV for when no NAPTR record is usable: TLS, TCP,
/// UDP (RFC 3263 4.1), those we have a listener for.
pub fn fallback_transports(allowed: &[Transport]) -> Vec<Transport> {
    [Transport::Tls, Transport::Tcp, Transport::Udp]
        .into_iter()
        .filter(|t| allowed.contains(t))
        .collect()
}

/// The lookups a resolver does for us; no records means the name has no
/// such record (NXDOMAIN or no data), `Err` that the query failed.
pub(crate) trait Lookup {
    async fn naptr(&self, name: &str) -> Result<Records<Naptr>, String>;
    async fn srv(&self, name: &str) -> Result<Records<Srv>, String>;
    async fn ip(&self, name: &str) -> Result<Records<IpAddr>, String>;
}

/// Where the URI's listeners are: for each transport, whether its listener
/// is IPv6 (only that family is reachable from it).
#[derive(Clone, Debug)]
pub struct Listeners(pub Vec<(Transport, bool)>);

impl Listeners {
    fn v6(&self, t: Transport) -> Option<bool> {
        self.0.iter().find(|(l, _)| *l == t).map(|&(_, v6)| v6)
    }

    fn transports(&self) -> Vec<Transport> {
        self.0.iter().map(|&(t, _)| t).collect()
    }
}

fn family(v6: bool) -> &'static str {
    if v6 {
        "AAAA"
    } else {
        "A"
    }
}

/// Addresses of `name` in the family of `t`'s listener, on `port`, and
/// their TTL (folded into `ttl`, every query's).
async fn addresses<L: Lookup>(
    dns: &L,
    name: &str,
    port: u16,
    t: Transport,
    listeners: &Listeners,
    ttl: &mut Option<Duration>,
) -> Result<(Vec<SocketAddr>, Option<Duration>), String> {
    let v6 = listeners.v6(t).ok_or_else(|| {
        format!("{name} would be reached over {t}, but no {t} listener is configured")
    })?;
    let answer = dns
        .ip(name)
        .await
        .map_err(|e| format!("{} {name}: {e}", family(v6)))?;
    *ttl = shorter(*ttl, answer.ttl);
    let all = answer.records;
    let mine: Vec<SocketAddr> = all
        .iter()
        .filter(|a| a.is_ipv6() == v6)
        .map(|a| SocketAddr::new(*a, port))
        .collect();
    if mine.is_empty() {
        return Err(match all.first() {
            Some(a) => format!(
                "{name} resolves to {a} only, but the {t} listener is IPv{}",
                if v6 { 6 } else { 4 }
            ),
            None => format!("{} {name}: no such record", family(v6)),
        });
    }
    Ok((mine, answer.ttl))
}

/// What a lookup so far knows: the errors met (for the message if all
/// fails) and the shortest TTL of every answer.
#[derive(Default)]
struct Trail {
    errors: Vec<String>,
    ttl: Option<Duration>,
}

/// Follows one SRV name: its targets in order, each to its addresses.
/// `Ok(None)`: the name has no SRV record. `path`: how we came to the
/// name, and the shortest TTL on the way.
async fn follow_srv<L: Lookup>(
    dns: &L,
    srv_name: &str,
    t: Transport,
    listeners: &Listeners,
    path: (&str, Option<Duration>),
    trail: &mut Trail,
) -> Result<Option<Vec<Found>>, String> {
    let answer = dns
        .srv(srv_name)
        .await
        .map_err(|e| format!("SRV {srv_name}: {e}"))?;
    trail.ttl = shorter(trail.ttl, answer.ttl);
    let path_ttl = shorter(path.1, answer.ttl);
    let records = sort_srv(answer.records);
    if records.is_empty() {
        trail.errors.push(format!("SRV {srv_name}: none"));
        return Ok(None);
    }
    let mut out = vec![];
    for r in records {
        match addresses(dns, &r.target, r.port, t, listeners, &mut trail.ttl).await {
            Ok((a, ttl)) => out.extend(a.into_iter().map(|address| Found {
                address,
                transport: t,
                path: format!("{}SRV {srv_name} -> {}", path.0, r.target),
                ttl: shorter(path_ttl, ttl),
            })),
            // One dead target need not sink the others.
            Err(e) => trail.errors.push(e),
        }
    }
    if out.is_empty() {
        trail
            .errors
            .push(format!("SRV {srv_name}: no target has a usable address"));
        return Ok(None);
    }
    Ok(Some(out))
}

/// RFC 3263 section 4 for one URI: every target, best first. An IP
/// address needs no lookup; a port means A/AAAA only; a transport without
/// a port means SRV for it, then A/AAAA; neither means NAPTR, then SRV for
/// each transport we listen on (TLS, TCP, UDP), then A/AAAA over UDP (TLS
/// for sips:). The errors say what was looked up and what failed; a
/// success has one target or more.
pub(crate) async fn resolve_target<L: Lookup>(
    dns: &L,
    target: &SipTarget,
    listeners: &Listeners,
) -> Result<Resolution, String> {
    let name = match &target.host {
        TargetHost::Ip(ip) => {
            return Ok(Resolution {
                found: vec![Found {
                    address: SocketAddr::new(*ip, target.port),
                    transport: target.transport,
                    path: String::new(),
                    ttl: None,
                }],
                ttl: None,
            })
        }
        TargetHost::Name(n) => n.as_str(),
    };
    let mut trail = Trail::default();
    let found = lookups(dns, name, target, listeners, &mut trail).await;
    match found {
        Ok(found) => Ok(Resolution {
            found,
            ttl: trail.ttl,
        }),
        Err(e) => Err(e),
    }
}

/// [`resolve_target`] for a name.
async fn lookups<L: Lookup>(
    dns: &L,
    name: &str,
    target: &SipTarget,
    listeners: &Listeners,
    trail: &mut Trail,
) -> Result<Vec<Found>, String> {
    let v6 = |t: Transport| listeners.v6(t).unwrap_or(false);
    let default_port = |t: Transport| if t == Transport::Tls { 5061 } else { 5060 };
    // A/AAAA of the name itself: the last resort, or all when a port is given.
    let by_address = async |t: Transport, port: u16, trail: &mut Trail| {
        let (a, ttl) = addresses(dns, name, port, t, listeners, &mut trail.ttl).await?;
        let path = format!("{} {name}", family(v6(t)));
        Ok::<_, String>(
            a.into_iter()
                .map(|address| Found {
                    address,
                    transport: t,
                    path: path.clone(),
                    ttl,
                })
                .collect::<Vec<_>>(),
        )
    };
    if target.port_given {
        return by_address(target.transport, target.port, trail).await;
    }
    let last_resort =
        async |t: Transport, trail: &mut Trail| match by_address(t, default_port(t), trail).await {
            Ok(f) => Ok(f),
            Err(e) => {
                trail.errors.push(e);
                Err(trail.errors.join("; "))
            }
        };

    if target.transport_given {
        let t = target.transport;
        let srv = format!("{}.{name}", srv_prefix(t));
        if let Some(f) = follow_srv(dns, &srv, t, listeners, ("", None), trail).await? {
            return Ok(f);
        }
        return last_resort(t, trail).await;
    }

    // sips: goes over TLS only (RFC 3263 4.1).
    let allowed = if target.transport == Transport::Tls {
        vec![Transport::Tls]
    } else {
        listeners.transports()
    };
    let naptr = dns
        .naptr(name)
        .await
        .map_err(|e| format!("NAPTR {name}: {e}"))?;
    trail.ttl = shorter(trail.ttl, naptr.ttl);
    let usable = usable_naptr(&naptr.records, &allowed);
    if usable.is_empty() {
        trail.errors.push(if naptr.records.is_empty() {
            format!("NAPTR {name}: none")
        } else {
            format!("NAPTR {name}: no SIP record over a transport we listen on")
        });
    }
    let mut out: Vec<Found> = vec![];
    for (t, srv) in &usable {
        let path = ("NAPTR -> ", naptr.ttl);
        if let Some(f) = follow_srv(dns, srv, *t, listeners, path, trail).await? {
            for x in f {
                if !out
                    .iter()
                    .any(|o| o.address == x.address && o.transport == x.transport)
                {
                    out.push(x);
                }
            }
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    for t in fallback_transports(&allowed) {
        let srv = format!("{}.{name}", srv_prefix(t));
        if let Some(f) = follow_srv(dns, &srv, t, listeners, ("", None), trail).await? {
            return Ok(f);
        }
    }
    last_resort(target.transport, trail).await
}

/// A resolver: the system's (`/etc/resolv.conf`) or the `[dns] servers`.
#[derive(Debug)]
pub struct Resolver {
    inner: TokioResolver,
    /// Shown in errors, so that a failure says whom we asked.
    servers: String,
}

impl Resolver {
    /// The system's name servers when `servers` is empty, else those:
    /// UDP, and TCP for an answer truncated over UDP (RFC 7766), as for the
    /// system's. A NAPTR or SRV set for many hosts can outgrow a datagram.
    pub fn new(servers: &[SocketAddr]) -> Result<Resolver, String> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                format!("cannot read the system's resolver configuration (/etc/resolv.conf): {e}")
            })?
        } else {
            let mut group = NameServerConfigGroup::with_capacity(2 * servers.len());
            for s in servers {
                group.push(NameServerConfig::new(*s, Protocol::Udp));
                group.push(NameServerConfig::new(*s, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                TokioConnectionProvider::default(),
            )
        };
        // Both families: the listener of the target's transport decides.
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // The cache keeps nothing longer than the refresher waits at most,
        // so its hourly look at a name with a long TTL asks again.
        builder.options_mut().positive_max_ttl = Some(crate::refresh::MAX_INTERVAL);
        builder.options_mut().negative_max_ttl = Some(crate::refresh::MAX_INTERVAL);
        let mut shown = String::new();
        if servers.is_empty() {
            shown.push_str("the system's name servers");
        } else {
            for (n, s) in servers.iter().enumerate() {
                let _ = write!(shown, "{}{s}", if n == 0 { "" } else { ", " });
            }
        }
        Ok(Resolver {
            inner: builder.build(),
            servers: shown,
        })
    }

    /// "No such record" is an answer (with the SOA minimum as its TTL
    /// when the server gave an SOA); anything else failed.
    fn error<T>(&self, e: ResolveError) -> Result<Records<T>, String> {
        if e.is_no_records_found() || e.is_nx_domain() {
            let ttl = match e.proto().map(|p| p.kind()) {
                Some(ProtoErrorKind::NoRecordsFound { negative_ttl, .. }) => {
                    negative_ttl.map(|s| Duration::from_secs(s.into()))
                }
                _ => None,
            };
            Ok(Records::new(vec![], ttl))
        } else {
            Err(format!("{e} (asked {})", self.servers))
        }
    }

    async fn records(&self, name: &str, rtype: RecordType) -> Result<Records<RData>, String> {
        // Names from a URI or a record are absolute: no search domains.
        let mut fqdn =
            Name::from_utf8(name).map_err(|e| format!("{name:?} is not a domain name: {e}"))?;
        fqdn.set_fqdn(true);
        match self.inner.lookup(fqdn, rtype).await {
            Ok(l) => Ok(Records::new(
                l.iter().cloned().collect(),
                Some(until(l.valid_until())),
            )),
            Err(e) => self.error(e),
        }
    }
}

/// What is left of a resolver's `valid_until` (its cache counts a record's
/// TTL down from when it was fetched).
fn until(valid_until: Instant) -> Duration {
    valid_until.saturating_duration_since(Instant::now())
}

impl Lookup for Resolver {
    async fn naptr(&self, name: &str) -> Result<Records<Naptr>, String> {
        let rs = self.records(name, RecordType::NAPTR).await?;
        let records = rs
            .records
            .into_iter()
            .filter_map(|r| match r {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order(),
                    preference: n.preference(),
                    flags: String::from_utf8_lossy(n.flags()).into_owned(),
                    service: String::from_utf8_lossy(n.services()).into_owned(),
                    replacement: n.replacement().to_ascii(),
                }),
                _ => None,
            })
            .collect();
        Ok(Records::new(records, rs.ttl))
    }

    async fn srv(&self, name: &str) -> Result<Records<Srv>, String> {
        let rs = self.records(name, RecordType::SRV).await?;
        let records = rs
            .records
            .into_iter()
            .filter_map(|r| match r {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority(),
                    weight: s.weight(),
                    port: s.port(),
                    target: s.target().to_ascii(),
                }),
                _ => None,
            })
            .collect();
        Ok(Records::new(records, rs.ttl))
    }

    async fn ip(&self, name: &str) -> Result<Records<IpAddr>, String> {
        // As written: lookup_ip reads /etc/hosts and, for a short name,
        // the search domains, as getaddrinfo did before.
        match self.inner.lookup_ip(name).await {
            Ok(l) => Ok(Records::new(
                l.iter().collect(),
                Some(until(l.valid_until())),
            )),
            Err(e) => self.error(e),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
