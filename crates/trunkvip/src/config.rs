//! The TOML configuration file: its schema, the checks that give each
//! error its key and line, and the conversion to the core's
//! [`ProxyConfig`] once host names are resolved.
//!
//! Parsing is two steps: serde reads the file into the schema below
//! (unknown keys, wrong types and badly formed values fail there, each with
//! the span toml gives), then [`Config::from_file`] checks what spans
//! several keys (a tls listener needs `[tls]`, Edge names are unique...).
//! Every error names the key as a dotted path (`edge[2].uri`, arrays
//! counted from 1), the line, and what is wrong.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use trunkvip_proxy::{
    CarrierTarget, EdgeConfig, HealthConfig, ProxyConfig, RateLimit, Timers, Transport,
};
use trunkvip_sip::{Host, Scheme, Uri};

use crate::dns::Found;
use crate::transport::stream::StreamLimits;

/// Where `trunkvip run` looks when `--config` is not given, in order.
pub const DEFAULT_PATHS: [&str; 2] = ["./trunkvip.toml", "/etc/trunkvip/trunkvip.toml"];

/// The admin endpoint when `[admin]` says nothing.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9090";

/// An error in the configuration: the key, the line, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when the text came from one.
    pub file: Option<PathBuf>,
    /// Dotted path of the key, e.g. `health_check.interval` or `edge[2].uri`.
    pub key: Option<String>,
    /// 1-based line of the offending key or value.
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    fn plain(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            key: None,
            line: None,
            message: message.into(),
        }
    }

    /// Sets the file name shown before the line.
    pub fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: ", p.display())?,
            (Some(p), None) => write!(f, "{}: ", p.display())?,
            (None, Some(l)) => write!(f, "line {l}: ")?,
            (None, None) => {}
        }
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// Values that check themselves while serde reads them, so that toml's span
// points at the bad value.

/// A duration written `250ms`, `30s`, `5m`, `1h` or a sum such as `1m30s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// Parses the duration syntax of the file: one or more `<digits><unit>`
/// groups with no spaces, units `ms`, `s`, `m`, `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {s:?}: write a number and a unit, e.g. \"250ms\", \"30s\", \"5m\", \"1h\"")
    };
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let d = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += d;
    }
    Ok(total)
}

/// Writes a duration the way the file does.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 || ms == 0 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// One `listen` entry: `udp:IP:PORT`, `tcp:IP:PORT`, `tls:IP:PORT`; IPv6
/// in brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("invalid listen address {s:?}: {why} (write \"udp:192.0.2.10:5060\", \"tcp:[2001:db8::10]:5060\" or \"tls:...:5061\")")
        };
        let (t, addr) = s.split_once(':').ok_or_else(|| bad("no transport"))?;
        let transport = Transport::from_param(t.as_bytes())
            .ok_or_else(|| bad("the transport must be udp, tcp or tls"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| bad("expected an IP address and a port"))?;
        if addr.ip().is_unspecified() {
            return Err(bad(
                "an unspecified address cannot go in Via and Record-Route: listen on the service address (the VIP)",
            ));
        }
        if addr.port() == 0 {
            return Err(bad("port 0"));
        }
        Ok(Listen { transport, addr })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// Where a target's host is: an address, or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetHost {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetHost::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            TargetHost::Ip(a) => write!(f, "{a}"),
            TargetHost::Name(n) => f.write_str(n),
        }
    }
}

/// A `sip:` or `sips:` URI of an Edge or a carrier, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipTarget {
    /// As written.
    pub uri: String,
    pub host: TargetHost,
    /// The port written, or 5060 (5061 for TLS).
    pub port: u16,
    pub transport: Transport,
    /// The URI gives a port: a name is then looked up with A/AAAA only.
    pub port_given: bool,
    /// The URI says `;transport=`: a name without a port then skips NAPTR.
    pub transport_given: bool,
}

impl SipTarget {
    /// A name with neither port nor transport, `sip:` scheme: NAPTR and SRV
    /// records choose the transport (RFC 3263 4.1), so `transport` is only
    /// the last resort (UDP).
    pub fn dns_picks_transport(&self) -> bool {
        matches!(self.host, TargetHost::Name(_))
            && !self.port_given
            && !self.transport_given
            && self.transport != Transport::Tls
    }
}

impl FromStr for SipTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let uri = Uri::parse(s.as_bytes()).map_err(|_| {
            format!(
                "{s:?} is not a valid SIP URI (write e.g. \"sip:192.0.2.21:5060;transport=udp\")"
            )
        })?;
        let sips = match uri.scheme {
            Scheme::Sip => false,
            Scheme::Sips => true,
            _ => return Err(format!("{s:?}: only sip: and sips: URIs are supported")),
        };
        let transport = match uri.transport() {
            None if sips => Transport::Tls,
            None => Transport::Udp,
            Some(p) => match Transport::from_param(p) {
                Some(Transport::Udp) if sips => {
                    return Err(format!("{s:?}: a sips: URI cannot use transport=udp"))
                }
                Some(Transport::Tcp) if sips => Transport::Tls,
                Some(t) => t,
                None => {
                    return Err(format!(
                        "{s:?}: transport {:?} is not supported (udp, tcp or tls)",
                        String::from_utf8_lossy(p)
                    ))
                }
            },
        };
        if uri.maddr().is_some() {
            return Err(format!("{s:?}: maddr is not supported"));
        }
        let host = match uri.host {
            Some(Host::V4(a)) => TargetHost::Ip(a.into()),
            Some(Host::V6(a)) => TargetHost::Ip(a.into()),
            Some(Host::Domain(d)) => {
                TargetHost::Name(String::from_utf8_lossy(d).trim_end_matches('.').to_owned())
            }
            None => return Err(format!("{s:?}: the URI has no host")),
        };
        let port = uri.port.unwrap_or(match transport {
            Transport::Tls => 5061,
            _ => 5060,
        });
        if port == 0 {
            return Err(format!("{s:?}: port 0"));
        }
        Ok(SipTarget {
            uri: s.to_owned(),
            host,
            port,
            transport,
            port_given: uri.port.is_some(),
            transport_given: uri.transport().is_some(),
        })
    }
}

impl<'de> Deserialize<'de> for SipTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// An address block of `carrier.allow`: `198.51.100.0/24`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net(pub IpNet);

impl FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(n) = s.parse::<IpNet>() {
            if n.trunc() != n {
                return Err(format!(
                    "{s:?} has host bits set: did you mean \"{}\"?",
                    n.trunc()
                ));
            }
            return Ok(Net(n));
        }
        s.parse::<IpAddr>().map(|a| Net(IpNet::from(a))).map_err(|_| {
            format!("{s:?} is not an address block (write e.g. \"198.51.100.0/24\" or \"2001:db8::/32\")")
        })
    }
}

/// An IP address written as a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map(Ip)
            .map_err(|_| de::Error::custom(format!("{s:?} is not an IP address")))
    }
}

/// A socket address written as a string (`127.0.0.1:9090`, `[::1]:9090`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr(pub SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Addr).map_err(|_| {
            de::Error::custom(format!(
                "{s:?} is not an address and port (write e.g. \"127.0.0.1:9090\" or \"[::1]:9090\")"
            ))
        })
    }
}

/// An integer within bounds, with an error that says the bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: u64, const MAX: u64>;
        impl<const MIN: u64, const MAX: u64> de::Visitor<'_> for V<MIN, MAX> {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an integer from {MIN} to {MAX}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                match u64::try_from(v) {
                    Ok(v) if (MIN..=MAX).contains(&v) => Ok(v),
                    _ => Err(E::custom(format!(
                        "{v} is out of range: expected an integer from {MIN} to {MAX}"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                if (MIN..=MAX).contains(&v) {
                    Ok(v)
                } else {
                    Err(E::custom(format!(
                        "{v} is out of range: expected an integer from {MIN} to {MAX}"
                    )))
                }
            }
        }
        d.deserialize_i64(V::<MIN, MAX>).map(Bounded)
    }
}

// ---------------------------------------------------------------------------
// The schema: the keys of the file, exactly.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    // Arrays of strings are parsed after serde: toml's errors inside an
    // array point at the whole array, and each element has its own line.
    listen: Spanned<Vec<Spanned<String>>>,
    host_address: Option<Spanned<Ip>>,
    workers: Option<Bounded<1, 1024>>,
    tls: Option<Spanned<TlsSection>>,
    #[serde(default)]
    edge: Vec<Spanned<EdgeSection>>,
    #[serde(default)]
    health_check: HealthSection,
    #[serde(default)]
    carrier: CarrierSection,
    #[serde(default)]
    admin: AdminSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    dns: DnsSection,
    vip: Option<Spanned<VipSection>>,
    pair: Option<Spanned<PairSection>>,
    debug: Option<Spanned<DebugSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PairSection {
    peer: Spanned<String>,
    secret_file: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
    client_ca: Option<Spanned<PathBuf>>,
    edge_ca: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeSection {
    name: Spanned<String>,
    uri: Spanned<SipTarget>,
    priority: Bounded<1, 255>,
    weight: Option<Bounded<1, 1_000_000>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthSection {
    interval: Option<Spanned<Dur>>,
    timeout: Option<Spanned<Dur>>,
    failure_threshold: Option<Bounded<1, 1000>>,
    recovery_threshold: Option<Bounded<1, 1000>>,
    failover_after: Option<Spanned<Dur>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CarrierSection {
    #[serde(default)]
    uris: Vec<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    rate_limit: Option<Bounded<1, 1_000_000>>,
    rate_burst: Option<Spanned<Bounded<1, 1_000_000>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSection {
    listen: Option<Addr>,
}

/// `[limits]`: TCP and TLS connections (see `transport::stream`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_connections: Option<Spanned<Bounded<1, 1_000_000>>>,
    max_connections_per_source: Option<Spanned<Bounded<1, 1_000_000>>>,
    max_handshaking: Option<Bounded<1, 1_000_000>>,
    handshake_timeout: Option<Spanned<Dur>>,
    message_timeout: Option<Spanned<Dur>>,
    idle_timeout: Option<Spanned<Dur>>,
    max_buffered_bytes: Option<Bounded<4096, { 16 << 20 }>>,
    max_queued_bytes: Option<Bounded<{ 64 << 10 }, { 1 << 30 }>>,
}

/// `[dns]`: the name servers that resolve Edge and carrier names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsSection {
    servers: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DebugSection {
    hep: Option<Spanned<String>>,
    pcap: Option<Spanned<PathBuf>>,
    pcap_max_bytes: Option<Bounded<4096, { 1 << 40 }>>,
    keylog: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VipSection {
    address: Spanned<String>,
    interface: Spanned<String>,
    vrid: Bounded<1, 255>,
    priority: Bounded<1, 254>,
    advert_interval: Option<Spanned<Dur>>,
    preempt: Option<bool>,
    preempt_delay: Option<Spanned<Dur>>,
    peers: Option<Spanned<Vec<Spanned<String>>>>,
    track_edges_penalty: Option<Bounded<0, 254>>,
    announce_count: Option<Bounded<0, 100>>,
    announce_spacing: Option<Spanned<Dur>>,
    checksum: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// The effective configuration.

/// Certificate files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Our certificate chain (PEM), shown to carriers and to TLS Edges.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, carriers must show a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
    /// CAs that sign the certificates of TLS Edges (default: the system's).
    pub edge_ca: Option<PathBuf>,
}

/// One `[[edge]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub name: String,
    pub target: SipTarget,
    pub priority: u8,
    pub weight: u32,
}

/// The checked configuration, defaults filled in, names not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub listen: Vec<Listen>,
    pub host_address: IpAddr,
    pub workers: usize,
    pub tls: Option<TlsFiles>,
    pub edges: Vec<Edge>,
    pub health: HealthConfig,
    pub failover_after: Duration,
    pub carriers: Vec<SipTarget>,
    pub carrier_allow: Vec<IpNet>,
    /// `carrier.rate_limit` and `rate_burst`: new requests per carrier-side
    /// source; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    pub admin: SocketAddr,
    /// `[limits]`: caps and timeouts of TCP and TLS connections.
    pub limits: StreamLimits,
    /// `[dns] servers`: name servers (UDP, TCP for truncated answers);
    /// empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
    /// `[debug]`: the debug capture, off when `None`.
    pub debug: Option<crate::capture::Settings>,
    /// `[vip]`: the floating VIP; `None`: a plain proxy.
    pub vip: Option<crate::vip::Settings>,
    /// `[pair]`: state sync with the other host.
    pub pair: Option<crate::pair::PairConfig>,
}

/// Turns byte offsets into lines and key paths.
struct Locator<'t> {
    text: &'t str,
    /// Every key, value and array element with its dotted path.
    spans: Vec<(String, std::ops::Range<usize>)>,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str) -> Self {
        let mut spans = vec![];
        if let Ok(t) = DeTable::parse(text) {
            walk(t.get_ref(), "", &mut spans);
        }
        Locator { text, spans }
    }

    fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
            + 1
    }

    /// The innermost key whose key, value or element holds `offset`.
    fn key_at(&self, offset: usize) -> Option<String> {
        self.spans
            .iter()
            .filter(|(_, r)| {
                r.start <= offset && (offset < r.end || r.is_empty() && offset == r.start)
            })
            .min_by_key(|(path, r)| (r.len(), std::cmp::Reverse(path.len())))
            .map(|(p, _)| p.clone())
    }

    fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (key, line) = match span {
            Some(s) => (self.key_at(s.start), Some(self.line(s.start))),
            None => (None, None),
        };
        ConfigError {
            file: None,
            key,
            line,
            message: message.into(),
        }
    }

    fn at<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error(Some(s.span()), message)
    }
}

fn walk(t: &DeTable<'_>, prefix: &str, out: &mut Vec<(String, std::ops::Range<usize>)>) {
    for (k, v) in t.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.push((path.clone(), k.span()));
        out.push((path.clone(), v.span()));
        walk_value(v.get_ref(), &path, out);
    }
}

fn walk_value(v: &DeValue<'_>, path: &str, out: &mut Vec<(String, std::ops::Range<usize>)>) {
    match v {
        DeValue::Table(t) => walk(t, path, out),
        DeValue::Array(a) => {
            for (n, e) in a.iter().enumerate() {
                let p = format!("{path}[{}]", n + 1);
                out.push((p.clone(), e.span()));
                walk_value(e.get_ref(), &p, out);
            }
        }
        _ => {}
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::plain(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Checks the text of a file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let loc = Locator::new(text);
        let file: File = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_owned();
            let msg = msg
                .strip_prefix("unknown field")
                .map(|rest| format!("unknown key{rest}"))
                .or_else(|| {
                    msg.strip_prefix("missing field")
                        .map(|r| format!("missing key{r}"))
                })
                .unwrap_or(msg);
            loc.error(e.span(), msg)
        })?;
        Config::from_file(file, &loc)
    }

    fn from_file(file: File, loc: &Locator<'_>) -> Result<Config, ConfigError> {
        // listen
        if file.listen.get_ref().is_empty() {
            return Err(loc.at(&file.listen, "at least one listen address is needed"));
        }
        let mut listen: Vec<Listen> = vec![];
        for l in file.listen.get_ref() {
            let this: Listen = l.get_ref().parse().map_err(|m| loc.at(l, m))?;
            if listen.iter().any(|o| o.transport == this.transport) {
                return Err(loc.at(
                    l,
                    format!(
                        "a second {} listener is not supported: one address per transport (the service address)",
                        this.transport
                    ),
                ));
            }
            listen.push(this);
        }

        let host_address = match &file.host_address {
            Some(h) => {
                if h.get_ref().0.is_unspecified() {
                    return Err(
                        loc.at(h, "must be this host's own address, not an unspecified one")
                    );
                }
                h.get_ref().0
            }
            None => listen[0].addr.ip(),
        };

        // vip
        let vip = match &file.vip {
            Some(v) => Some(check_vip(v, loc, &listen, file.host_address.as_ref())?),
            None => None,
        };

        // tls
        let tls = file.tls.as_ref().map(|t| {
            let s = t.get_ref();
            TlsFiles {
                cert: s.cert.get_ref().clone(),
                key: s.key.get_ref().clone(),
                client_ca: s.client_ca.as_ref().map(|p| p.get_ref().clone()),
                edge_ca: s.edge_ca.as_ref().map(|p| p.get_ref().clone()),
            }
        });
        if let Some(t) = &file.tls {
            for p in [&t.get_ref().cert, &t.get_ref().key]
                .into_iter()
                .chain(t.get_ref().client_ca.as_ref())
                .chain(t.get_ref().edge_ca.as_ref())
            {
                if p.get_ref().as_os_str().is_empty() {
                    return Err(loc.at(p, "empty path"));
                }
            }
        }
        if tls.is_none() {
            if let Some(n) = listen.iter().position(|l| l.transport == Transport::Tls) {
                let l = &file.listen.get_ref()[n];
                return Err(loc.at(l, "a tls listener needs a [tls] section with cert and key"));
            }
        }

        // edges
        if file.edge.is_empty() {
            return Err(loc.error(None, "no [[edge]]: at least one Edge is needed"));
        }
        let mut edges: Vec<Edge> = vec![];
        for e in &file.edge {
            let s = e.get_ref();
            let name = s.name.get_ref();
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
            if !ok {
                return Err(loc.at(
                    &s.name,
                    format!("{name:?}: a name has 1 to 64 letters, digits, '-', '_' or '.'"),
                ));
            }
            if edges.iter().any(|o| &o.name == name) {
                return Err(loc.at(&s.name, format!("{name:?} is the name of an earlier Edge")));
            }
            let target = s.uri.get_ref().clone();
            if !target.dns_picks_transport()
                && !listen.iter().any(|l| l.transport == target.transport)
            {
                return Err(loc.at(
                    &s.uri,
                    format!(
                        "this Edge uses {} but no {} listener is configured: add \"{}:...\" to listen",
                        target.transport, target.transport, target.transport
                    ),
                ));
            }
            if target.transport == Transport::Tls && tls.is_none() {
                return Err(loc.at(&s.uri, "a tls Edge needs a [tls] section with cert and key"));
            }
            if let Some(o) = edges
                .iter()
                .find(|o| o.target.host == target.host && o.target.port == target.port)
            {
                return Err(loc.at(&s.uri, format!("same address as Edge {:?}", o.name)));
            }
            edges.push(Edge {
                name: name.clone(),
                target,
                priority: s.priority.0 as u8,
                weight: s.weight.map_or(1, |w| w.0 as u32),
            });
        }

        // health_check
        let h = &file.health_check;
        let defaults = HealthConfig::default();
        let min = Duration::from_millis(100);
        let dur = |d: &Option<Spanned<Dur>>, default: Duration, min: Duration| match d {
            None => Ok(default),
            Some(s) if s.get_ref().0 < min => Err(loc.at(
                s,
                format!(
                    "{} is too short: at least {}",
                    format_duration(s.get_ref().0),
                    format_duration(min)
                ),
            )),
            Some(s) => Ok(s.get_ref().0),
        };
        let health = HealthConfig {
            interval: dur(&h.interval, defaults.interval, min)?,
            timeout: dur(&h.timeout, defaults.timeout, min)?,
            failure_threshold: h
                .failure_threshold
                .map_or(defaults.failure_threshold, |v| v.0 as u32),
            recovery_threshold: h
                .recovery_threshold
                .map_or(defaults.recovery_threshold, |v| v.0 as u32),
        };
        let failover_after = dur(
            &h.failover_after,
            Timers::default().failover_after,
            Duration::from_millis(10),
        )?;

        // carrier
        let mut carriers = vec![];
        for c in &file.carrier.uris {
            let t: SipTarget = c.get_ref().parse().map_err(|m| loc.at(c, m))?;
            let t = &t;
            if !t.dns_picks_transport() && !listen.iter().any(|l| l.transport == t.transport) {
                return Err(loc.at(
                    c,
                    format!(
                        "this carrier uses {} but no {} listener is configured",
                        t.transport, t.transport
                    ),
                ));
            }
            if t.transport == Transport::Tls && tls.is_none() {
                return Err(loc.at(c, "a tls carrier needs a [tls] section with cert and key"));
            }
            carriers.push(t.clone());
        }
        let mut carrier_allow = vec![];
        for a in &file.carrier.allow {
            let n: Net = a.get_ref().parse().map_err(|m| loc.at(a, m))?;
            carrier_allow.push(n.0);
        }
        let rate_limit = match (file.carrier.rate_limit, &file.carrier.rate_burst) {
            (None, None) => None,
            (None, Some(b)) => {
                return Err(loc.at(b, "rate_burst needs carrier.rate_limit"));
            }
            (Some(r), b) => {
                let burst = b.as_ref().map_or(2 * r.0, |b| b.get_ref().0);
                if burst < r.0 {
                    let b = b.as_ref().expect("only a given burst is below the rate");
                    return Err(loc.at(
                        b,
                        format!(
                            "{burst} is below rate_limit ({}): a burst holds at least one second",
                            r.0
                        ),
                    ));
                }
                Some(RateLimit {
                    per_second: r.0 as u32,
                    burst: burst as u32,
                })
            }
        };

        let admin = file
            .admin
            .listen
            .map_or_else(|| DEFAULT_ADMIN.parse().expect("valid"), |a| a.0);

        let limits = check_limits(&file.limits, loc)?;
        let dns_servers = check_dns(&file.dns, loc)?;

        // debug
        let mut debug = None;
        if let Some(d) = &file.debug {
            let d = d.get_ref();
            let mut s = crate::capture::Settings::default();
            if let Some(h) = &d.hep {
                s.hep = match h.get_ref().as_str() {
                    "off" => None,
                    a => Some(a.parse().map_err(|_| {
                        loc.at(
                            h,
                            format!("{a:?} is not an address and port (write e.g. \"127.0.0.1:9060\", or \"off\")"),
                        )
                    })?),
                };
            }
            for p in [&d.pcap, &d.keylog].into_iter().flatten() {
                if p.get_ref().as_os_str().is_empty() {
                    return Err(loc.at(p, "empty path"));
                }
            }
            if let (Some(p), Some(k)) = (&d.pcap, &d.keylog) {
                if p.get_ref() == k.get_ref() {
                    return Err(loc.at(k, "the same file as debug.pcap"));
                }
            }
            s.pcap = d.pcap.as_ref().map(|p| p.get_ref().clone());
            s.keylog = d.keylog.as_ref().map(|p| p.get_ref().clone());
            if let Some(m) = d.pcap_max_bytes {
                s.pcap_max_bytes = m.0;
            }
            debug = Some(s);
        }

        // pair
        let pair = match &file.pair {
            None => None,
            Some(p) => Some(check_pair(p.get_ref(), host_address, loc)?),
        };

        Ok(Config {
            pair,
            listen,
            host_address,
            workers: file.workers.map_or_else(default_workers, |w| w.0 as usize),
            tls,
            edges,
            health,
            failover_after,
            carriers,
            carrier_allow,
            rate_limit,
            admin,
            limits,
            dns_servers,
            debug,
            vip,
        })
    }

    /// The service address of a transport.
    pub fn listen_addr(&self, t: Transport) -> Option<SocketAddr> {
        self.listen
            .iter()
            .find(|l| l.transport == t)
            .map(|l| l.addr)
    }

    /// The effective configuration, as a file that gives the same result,
    /// with resolved addresses as comments.
    pub fn render(&self, resolved: Option<&Resolved>) -> String {
        let mut o = String::new();
        let q = |s: &str| toml_string(s);
        let list = |v: Vec<String>| v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            o,
            "listen = [{}]",
            list(self.listen.iter().map(|l| l.to_string()).collect())
        );
        let _ = writeln!(o, "host_address = {}", q(&self.host_address.to_string()));
        let _ = writeln!(o, "workers = {}", self.workers);
        if let Some(t) = &self.tls {
            let _ = writeln!(o, "\n[tls]");
            let _ = writeln!(o, "cert = {}", q(&t.cert.display().to_string()));
            let _ = writeln!(o, "key = {}", q(&t.key.display().to_string()));
            if let Some(c) = &t.client_ca {
                let _ = writeln!(o, "client_ca = {}", q(&c.display().to_string()));
            }
            if let Some(c) = &t.edge_ca {
                let _ = writeln!(o, "edge_ca = {}", q(&c.display().to_string()));
            }
        }
        for (n, e) in self.edges.iter().enumerate() {
            let _ = writeln!(o, "\n[[edge]]");
            let _ = writeln!(o, "name = {}", q(&e.name));
            let _ = write!(o, "uri = {}", q(&e.target.uri));
            match resolved.and_then(|r| r.edges.get(n)) {
                Some(f) => {
                    let _ = writeln!(o, "   # {}", render_found(f));
                }
                None => o.push('\n'),
            }
            let _ = writeln!(o, "priority = {}", e.priority);
            let _ = writeln!(o, "weight = {}", e.weight);
        }
        let h = &self.health;
        let _ = writeln!(o, "\n[health_check]");
        let _ = writeln!(o, "interval = {}", q(&format_duration(h.interval)));
        let _ = writeln!(o, "timeout = {}", q(&format_duration(h.timeout)));
        let _ = writeln!(o, "failure_threshold = {}", h.failure_threshold);
        let _ = writeln!(o, "recovery_threshold = {}", h.recovery_threshold);
        let _ = writeln!(
            o,
            "failover_after = {}",
            q(&format_duration(self.failover_after))
        );
        let _ = writeln!(o, "\n[carrier]");
        match resolved {
            // One URI a line, each followed by what it resolved to.
            Some(r) if !self.carriers.is_empty() => {
                let _ = writeln!(o, "uris = [");
                for (n, c) in self.carriers.iter().enumerate() {
                    let _ = writeln!(o, "  {},", q(&c.uri));
                    for t in r.carriers.iter().filter(|t| t.index == n) {
                        let _ = writeln!(o, "    # {}", render_found(&t.target));
                    }
                }
                let _ = writeln!(o, "]");
            }
            _ => {
                let _ = writeln!(
                    o,
                    "uris = [{}]",
                    list(self.carriers.iter().map(|c| c.uri.clone()).collect())
                );
            }
        }
        if self.carrier_allow.is_empty() {
            let _ = writeln!(o, "# allow: omitted, any source is accepted");
        } else {
            let _ = writeln!(
                o,
                "allow = [{}]",
                list(self.carrier_allow.iter().map(|n| n.to_string()).collect())
            );
        }
        match self.rate_limit {
            Some(r) => {
                let _ = writeln!(o, "rate_limit = {}", r.per_second);
                let _ = writeln!(o, "rate_burst = {}", r.burst);
            }
            None => {
                let _ = writeln!(o, "# rate_limit: omitted, no per-source limit");
            }
        }
        let _ = writeln!(o, "\n[admin]");
        let _ = writeln!(o, "listen = {}", q(&self.admin.to_string()));
        render_limits(&mut o, &self.limits);
        let _ = writeln!(o, "\n[dns]");
        if self.dns_servers.is_empty() {
            let _ = writeln!(
                o,
                "# servers: omitted, the system's name servers (/etc/resolv.conf)"
            );
        } else {
            let _ = writeln!(
                o,
                "servers = [{}]",
                list(self.dns_servers.iter().map(|a| a.to_string()).collect())
            );
        }
        if let Some(d) = &self.debug {
            let _ = writeln!(o, "\n[debug]");
            let hep = d.hep.map_or_else(|| "off".to_owned(), |a| a.to_string());
            let _ = writeln!(o, "hep = {}", q(&hep));
            if let Some(p) = &d.pcap {
                let _ = writeln!(o, "pcap = {}", q(&p.display().to_string()));
            }
            let _ = writeln!(o, "pcap_max_bytes = {}", d.pcap_max_bytes);
            if let Some(k) = &d.keylog {
                let _ = writeln!(o, "keylog = {}", q(&k.display().to_string()));
            }
        }
        if let Some(v) = &self.vip {
            render_vip(&mut o, v);
        }
        if let Some(p) = &self.pair {
            let _ = writeln!(o, "\n[pair]\npeer = {}", q(&p.peer.to_string()));
            let _ = writeln!(
                o,
                "secret_file = {}",
                q(&p.secret_file.display().to_string())
            );
        }
        o
    }

    /// Resolves the host names of Edges and carriers as RFC 3263 section 4
    /// says (NAPTR, SRV, then A/AAAA: see [`crate::dns`]), through
    /// `[dns] servers` or the system's name servers (`/etc/resolv.conf`).
    /// A carrier URI gives every target it resolves to, in order, so the
    /// core fails over through all of them; an Edge is one address (its
    /// identity in routing, health and status): the first target. The
    /// daemon resolves every name at start (so does `check`) and looks
    /// them up again while it runs ([`crate::refresh`]): a carrier follows
    /// its new answer, an Edge does not (a warning says to restart).
    pub async fn resolve(&self) -> Result<Resolved, ConfigError> {
        let dns = crate::dns::Resolver::new(&self.dns_servers).map_err(|m| ConfigError {
            key: Some("dns.servers".into()),
            ..ConfigError::plain(m)
        })?;
        self.resolve_with(&dns).await
    }

    /// [`Config::resolve`] with any resolver (the tests' is a table).
    pub(crate) async fn resolve_with<L: crate::dns::Lookup>(
        &self,
        dns: &L,
    ) -> Result<Resolved, ConfigError> {
        let listeners = self.listeners();
        let mut edges = vec![];
        let mut edge_ttls = vec![];
        for (n, e) in self.edges.iter().enumerate() {
            let r = crate::dns::resolve_target(dns, &e.target, &listeners)
                .await
                .map_err(|m| ConfigError {
                    key: Some(format!("edge[{}].uri", n + 1)),
                    ..ConfigError::plain(format!(
                        "Edge {:?}: cannot resolve {}: {m}",
                        e.name, e.target.uri
                    ))
                })?;
            edge_ttls.push(r.ttl);
            let first = r
                .found
                .into_iter()
                .next()
                .expect("resolve_target gives one or more");
            // The address is the Edge's identity: two cannot share one.
            if let Some(o) = edges
                .iter()
                .position(|o: &Found| o.address == first.address)
            {
                return Err(ConfigError {
                    key: Some(format!("edge[{}].uri", n + 1)),
                    ..ConfigError::plain(format!(
                        "Edge {:?}: {} resolves to {}, the address of Edge {:?}",
                        e.name, e.target.uri, first.address, self.edges[o].name
                    ))
                });
            }
            edges.push(first);
        }
        let mut carriers = vec![];
        let mut carrier_ttls = vec![];
        for (n, c) in self.carriers.iter().enumerate() {
            let r = crate::dns::resolve_target(dns, c, &listeners)
                .await
                .map_err(|m| ConfigError {
                    key: Some(format!("carrier.uris[{}]", n + 1)),
                    ..ConfigError::plain(format!("carrier: cannot resolve {}: {m}", c.uri))
                })?;
            carrier_ttls.push(r.ttl);
            carriers.extend(
                r.found
                    .into_iter()
                    .map(|target| ResolvedCarrier { index: n, target }),
            );
        }
        Ok(Resolved {
            edges,
            carriers,
            edge_ttls,
            carrier_ttls,
        })
    }

    /// Our listeners as name resolution sees them: each transport's
    /// family decides between A and AAAA.
    pub(crate) fn listeners(&self) -> crate::dns::Listeners {
        crate::dns::Listeners(
            self.listen
                .iter()
                .map(|l| (l.transport, l.addr.is_ipv6()))
                .collect(),
        )
    }

    /// The core's carrier targets: every target of every URI, the URIs in
    /// the file's order.
    pub fn carrier_targets(&self, carriers: &[ResolvedCarrier]) -> Vec<CarrierTarget> {
        carriers
            .iter()
            .map(|c| CarrierTarget {
                uri: self.carriers[c.index].uri.clone(),
                address: c.target.address,
                transport: c.target.transport,
            })
            .collect()
    }

    /// The core's configuration for one worker. `host_port` is the port
    /// the probe socket got; `instance` tells this process's branches apart.
    pub fn proxy_config(
        &self,
        resolved: &Resolved,
        host_port: u16,
        instance: u32,
        health_probing: bool,
    ) -> ProxyConfig {
        let service = self.listen.iter().map(|l| (l.transport, l.addr)).collect();
        let mut pc = ProxyConfig::new(service, self.host_address);
        pc.host_port = host_port;
        pc.edges = self
            .edges
            .iter()
            .zip(&resolved.edges)
            .map(|(e, f)| EdgeConfig {
                name: e.name.clone(),
                uri: e.target.uri.clone(),
                address: f.address,
                transport: f.transport,
                priority: e.priority,
                weight: e.weight,
            })
            .collect();
        pc.carriers = self.carrier_targets(&resolved.carriers);
        pc.carrier_allow = self.carrier_allow.clone();
        // Each worker sees its share of a source's dialogs (by Call-ID), so
        // each gets its share of the limit.
        pc.rate_limit = self.rate_limit.map(|r| {
            let n = self.workers.max(1) as u32;
            RateLimit {
                per_second: r.per_second.div_ceil(n),
                burst: r.burst.div_ceil(n),
            }
        });
        pc.health = self.health;
        pc.timers.failover_after = self.failover_after;
        pc.instance = instance;
        pc.health_probing = health_probing;
        pc.pair_secret = self.pair.as_ref().map(|p| p.secret.clone());
        pc
    }
}

/// Where the Edges and carriers are, once names are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// One per [`Config::edges`], in order: the first target of each.
    pub edges: Vec<Found>,
    /// Every target of every carrier URI: the URIs in the file's order,
    /// each one's targets in RFC 3263 order, the order the core tries them.
    pub carriers: Vec<ResolvedCarrier>,
    /// How long each Edge's answer holds (`None`: an address, no lookup).
    pub edge_ttls: Vec<Option<Duration>>,
    /// How long each carrier URI's answer holds.
    pub carrier_ttls: Vec<Option<Duration>>,
}

/// One target of a carrier URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedCarrier {
    /// Which of [`Config::carriers`], from 0.
    pub index: usize,
    pub target: Found,
}

/// `# tcp 198.51.100.2:5070`, after the lookups that found it if any.
fn render_found(f: &Found) -> String {
    if f.path.is_empty() {
        format!("{} {}", f.transport, f.address)
    } else {
        format!("{} -> {} {}", f.path, f.transport, f.address)
    }
}

/// Checks `[vip]`: every key, and that the VIP is the service address of
/// every listener while `host_address` is this host's own.
fn check_vip(
    v: &Spanned<VipSection>,
    loc: &Locator<'_>,
    listen: &[Listen],
    host_address: Option<&Spanned<Ip>>,
) -> Result<crate::vip::Settings, ConfigError> {
    let s = v.get_ref();
    let text = s.address.get_ref();
    let address: IpNet = match text.parse() {
        Ok(n) => n,
        Err(_) => {
            let why = if text.parse::<IpAddr>().is_ok() {
                format!("{text:?} has no prefix length: write the VIP with its network's, e.g. \"198.51.100.10/24\" or \"2001:db8::10/64\"")
            } else {
                format!("{text:?} is not an address with a prefix length (write e.g. \"198.51.100.10/24\" or \"2001:db8::10/64\")")
            };
            return Err(loc.at(&s.address, why));
        }
    };
    let ip = address.addr();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(loc.at(
            &s.address,
            format!("{ip} cannot be a VIP: write a unicast address of the carrier-facing network"),
        ));
    }
    if address.prefix_len() < address.max_prefix_len().saturating_sub(1)
        && (ip == address.network() || (ip.is_ipv4() && ip == address.broadcast()))
    {
        return Err(loc.at(
            &s.address,
            format!("{ip} is the network's own address in {}: write the VIP's address, e.g. \"198.51.100.10/24\"", address.trunc()),
        ));
    }
    for (n, l) in listen.iter().enumerate() {
        if l.addr.ip() != ip {
            return Err(loc.at(
                &s.address,
                format!(
                    "the VIP {ip} is not the address of listen[{}] ({l}): every listener binds the VIP, the one service address the carrier sends to",
                    n + 1
                ),
            ));
        }
    }
    let host = match host_address {
        None => {
            return Err(loc.at(
                v,
                format!("with [vip], set host_address to this host's own address: health probes and VRRP adverts leave from it, while the VIP {ip} moves between the hosts"),
            ))
        }
        Some(h) => {
            let a = h.get_ref().0;
            if a == ip {
                return Err(loc.at(
                    h,
                    format!("{a} is the VIP: host_address must be this host's own address, which stays when the VIP moves"),
                ));
            }
            if a.is_ipv4() != ip.is_ipv4() {
                return Err(loc.at(
                    h,
                    format!("{a} is not of the VIP's address family ({ip}): VRRP adverts leave from host_address"),
                ));
            }
            a
        }
    };

    let name = s.interface.get_ref();
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if !ok {
        return Err(loc.at(
            &s.interface,
            format!("{name:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces; e.g. \"eth0\")"),
        ));
    }

    let mut out =
        crate::vip::Settings::new(address, name.clone(), s.vrid.0 as u8, s.priority.0 as u8);
    if let Some(d) = &s.advert_interval {
        let ms = d.get_ref().0.as_millis();
        if !(10..=40_950).contains(&ms) {
            return Err(loc.at(
                d,
                format!(
                    "{} is out of range: VRRPv3 adverts are 10ms to 40950ms apart",
                    format_duration(d.get_ref().0)
                ),
            ));
        }
        if ms % 10 != 0 {
            return Err(loc.at(
                d,
                format!("{} is not a whole number of centiseconds, which VRRPv3 carries: write a multiple of 10ms", format_duration(d.get_ref().0)),
            ));
        }
        out.advert_interval = d.get_ref().0;
    }
    if let Some(p) = s.preempt {
        out.preempt = p;
    }
    if let Some(d) = &s.preempt_delay {
        if d.get_ref().0 > Duration::from_secs(3600) {
            return Err(loc.at(
                d,
                format!("{} is too long: at most 1h", format_duration(d.get_ref().0)),
            ));
        }
        out.preempt_delay = d.get_ref().0;
    }
    if let Some(peers) = &s.peers {
        if peers.get_ref().is_empty() {
            return Err(loc.at(
                peers,
                "empty: name the other host, or leave peers out for multicast",
            ));
        }
        for p in peers.get_ref() {
            let a: IpAddr = p
                .get_ref()
                .parse()
                .map_err(|_| loc.at(p, format!("{:?} is not an IP address", p.get_ref())))?;
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err(loc.at(
                    p,
                    format!("{a} cannot be a peer: write the other host's own address"),
                ));
            }
            if a.is_ipv4() != ip.is_ipv4() {
                return Err(loc.at(p, format!("{a} is not of the VIP's address family ({ip})")));
            }
            if a == ip {
                return Err(loc.at(
                    p,
                    format!("{a} is the VIP: write the other host's own address"),
                ));
            }
            if a == host {
                return Err(loc.at(
                    p,
                    format!("{a} is this host's host_address: write the other host's"),
                ));
            }
            if out.peers.contains(&a) {
                return Err(loc.at(p, format!("{a} is named twice")));
            }
            out.peers.push(a);
        }
    }
    if let Some(t) = s.track_edges_penalty {
        out.track_edges_penalty = t.0 as u8;
    }
    if let Some(c) = s.announce_count {
        out.announce_count = c.0 as u32;
    }
    if let Some(d) = &s.announce_spacing {
        let g = d.get_ref().0;
        if g < Duration::from_millis(10) || g > Duration::from_secs(10) {
            return Err(loc.at(
                d,
                format!("{} is out of range: 10ms to 10s", format_duration(g)),
            ));
        }
        out.announce_spacing = g;
    }
    if let Some(c) = &s.checksum {
        out.checksum = match c.get_ref().as_str() {
            "pseudo-header" => trunkvip_vip::ChecksumMode::PseudoHeader,
            "no-pseudo-header" if ip.is_ipv6() => {
                return Err(loc.at(c, "an IPv6 VIP's adverts always carry the pseudo-header: remove checksum or write \"pseudo-header\""));
            }
            "no-pseudo-header" => trunkvip_vip::ChecksumMode::NoPseudoHeader,
            other => {
                return Err(loc.at(
                    c,
                    format!("{other:?}: write \"pseudo-header\" (keepalived's default) or \"no-pseudo-header\" (RFC 9568)"),
                ))
            }
        };
    }
    Ok(out)
}

/// `[pair]`: the peer's address and a secret read from a file.
fn check_pair(
    p: &PairSection,
    host_address: IpAddr,
    loc: &Locator<'_>,
) -> Result<crate::pair::PairConfig, ConfigError> {
    let peer: SocketAddr = p.peer.get_ref().parse().map_err(|_| {
        loc.at(
            &p.peer,
            "not an address and port, such as \"198.51.100.12:5099\"",
        )
    })?;
    if peer.ip() == host_address {
        return Err(loc.at(&p.peer, "is this host's own address: name the other host"));
    }
    if peer.is_ipv4() != host_address.is_ipv4() {
        return Err(loc.at(&p.peer, "must be of the same family as host_address"));
    }
    if peer.port() == 0 {
        return Err(loc.at(&p.peer, "needs a port"));
    }
    let path = p.secret_file.get_ref();
    let secret = std::fs::read(path).map_err(|e| {
        loc.at(
            &p.secret_file,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let secret = secret.trim_ascii().to_vec();
    if secret.len() < 16 {
        return Err(loc.at(
            &p.secret_file,
            format!("{} holds {} bytes: a shared secret needs at least 16 (e.g. `head -c 32 /dev/urandom | base64`)", path.display(), secret.len()),
        ));
    }
    Ok(crate::pair::PairConfig {
        listen: SocketAddr::new(host_address, peer.port()),
        peer,
        secret,
        secret_file: path.clone(),
    })
}

/// `[limits]`: each key within its range, and one source below the total.
fn check_limits(s: &LimitsSection, loc: &Locator<'_>) -> Result<StreamLimits, ConfigError> {
    let mut out = StreamLimits::default();
    let dur = |d: &Option<Spanned<Dur>>, default: Duration, min: Duration, max: Duration| match d {
        None => Ok(default),
        Some(s) if s.get_ref().0 < min => Err(loc.at(
            s,
            format!(
                "{} is too short: at least {}",
                format_duration(s.get_ref().0),
                format_duration(min)
            ),
        )),
        Some(s) if s.get_ref().0 > max => Err(loc.at(
            s,
            format!(
                "{} is too long: at most {}",
                format_duration(s.get_ref().0),
                format_duration(max)
            ),
        )),
        Some(s) => Ok(s.get_ref().0),
    };
    let ms = Duration::from_millis;
    let secs = Duration::from_secs;
    out.handshake_timeout = dur(
        &s.handshake_timeout,
        out.handshake_timeout,
        ms(100),
        secs(300),
    )?;
    out.message_timeout = dur(&s.message_timeout, out.message_timeout, ms(100), secs(3600))?;
    out.idle_timeout = dur(&s.idle_timeout, out.idle_timeout, secs(1), secs(86_400))?;
    if let Some(n) = &s.max_connections {
        out.max_connections = n.get_ref().0 as usize;
    }
    if let Some(n) = s.max_handshaking {
        out.max_handshaking = n.0 as usize;
    }
    if let Some(n) = s.max_buffered_bytes {
        out.max_buffered_bytes = n.0 as usize;
    }
    if let Some(n) = s.max_queued_bytes {
        out.max_queued_bytes = n.0 as usize;
    }
    if let Some(n) = &s.max_connections_per_source {
        out.max_connections_per_source = n.get_ref().0 as usize;
    }
    if out.max_connections_per_source >= out.max_connections {
        let why = format!(
            "{} is not below max_connections ({}): one source could take every slot",
            out.max_connections_per_source, out.max_connections
        );
        return Err(match (&s.max_connections_per_source, &s.max_connections) {
            (Some(p), _) => loc.at(p, why),
            (None, Some(m)) => loc.at(
                m,
                format!(
                    "{} is not above max_connections_per_source ({}, its default): one source could take every slot",
                    out.max_connections, out.max_connections_per_source
                ),
            ),
            (None, None) => loc.error(None, why),
        });
    }
    Ok(out)
}

/// `[dns] servers`: each an IP address and port, none twice.
fn check_dns(s: &DnsSection, loc: &Locator<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
    let Some(servers) = &s.servers else {
        return Ok(vec![]);
    };
    if servers.get_ref().is_empty() {
        return Err(loc.at(
            servers,
            "empty: name at least one server, or leave servers out for the system's (/etc/resolv.conf)",
        ));
    }
    let mut out: Vec<SocketAddr> = vec![];
    for v in servers.get_ref() {
        let text = v.get_ref();
        let a: SocketAddr = text.parse().map_err(|_| {
            loc.at(
                v,
                format!("{text:?} is not an address and port (write e.g. \"127.0.0.1:53\" or \"[2001:db8::53]:53\")"),
            )
        })?;
        if a.ip().is_unspecified() || a.ip().is_multicast() {
            return Err(loc.at(
                v,
                format!("{a} cannot be a name server: write its own address"),
            ));
        }
        if a.port() == 0 {
            return Err(loc.at(v, format!("{text:?}: port 0 (name servers listen on 53)")));
        }
        if out.contains(&a) {
            return Err(loc.at(v, format!("{a} is named twice")));
        }
        out.push(a);
    }
    Ok(out)
}

fn render_limits(o: &mut String, l: &StreamLimits) {
    let q = |d: Duration| toml_string(&format_duration(d));
    let _ = writeln!(o, "\n[limits]");
    let _ = writeln!(o, "max_connections = {}", l.max_connections);
    let _ = writeln!(
        o,
        "max_connections_per_source = {}",
        l.max_connections_per_source
    );
    let _ = writeln!(o, "max_handshaking = {}", l.max_handshaking);
    let _ = writeln!(o, "handshake_timeout = {}", q(l.handshake_timeout));
    let _ = writeln!(o, "message_timeout = {}", q(l.message_timeout));
    let _ = writeln!(o, "idle_timeout = {}", q(l.idle_timeout));
    let _ = writeln!(o, "max_buffered_bytes = {}", l.max_buffered_bytes);
    let _ = writeln!(o, "max_queued_bytes = {}", l.max_queued_bytes);
}

fn render_vip(o: &mut String, v: &crate::vip::Settings) {
    let q = |s: &str| toml_string(s);
    let _ = writeln!(o, "\n[vip]");
    let _ = writeln!(o, "address = {}", q(&v.address.to_string()));
    let _ = writeln!(o, "interface = {}", q(&v.interface));
    let _ = writeln!(o, "vrid = {}", v.vrid);
    let _ = writeln!(o, "priority = {}", v.priority);
    let _ = writeln!(
        o,
        "advert_interval = {}",
        q(&format_duration(v.advert_interval))
    );
    let _ = writeln!(o, "preempt = {}", v.preempt);
    let _ = writeln!(
        o,
        "preempt_delay = {}",
        q(&format_duration(v.preempt_delay))
    );
    if v.peers.is_empty() {
        let _ = writeln!(o, "# peers: omitted, adverts go to the multicast group");
    } else {
        let peers: Vec<String> = v.peers.iter().map(|p| q(&p.to_string())).collect();
        let _ = writeln!(o, "peers = [{}]", peers.join(", "));
    }
    let _ = writeln!(o, "track_edges_penalty = {}", v.track_edges_penalty);
    let _ = writeln!(o, "announce_count = {}", v.announce_count);
    let _ = writeln!(
        o,
        "announce_spacing = {}",
        q(&format_duration(v.announce_spacing))
    );
    let checksum = match v.checksum {
        trunkvip_vip::ChecksumMode::NoPseudoHeader => "no-pseudo-header",
        _ => "pseudo-header",
    };
    let _ = writeln!(o, "checksum = {}", q(checksum));
}

fn toml_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests;
