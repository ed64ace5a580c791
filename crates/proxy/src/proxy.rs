//! The transaction-stateful forwarder (RFC 3261 sections 16 and 17, RFC
//! 6026, RFC 3581): server transactions toward whoever sent a request,
//! client transactions toward the next hop, failover between Edges, and
//! the routing of in-dialog requests by Record-Route or Call-ID affinity.
//!
//! Three habits keep it cheap. Each message is parsed once into [`Facts`],
//! which holds what a proxy must check and nothing more (RFC 3261 16.3:
//! a proxy validates the fields it processes). A request and the branch
//! forwarding it share one entry, [`Txn`], which keeps one copy of the
//! request, as received: every branch, retransmission, CANCEL, ACK and
//! answer of ours is made from it. And what goes out is written by
//! splicing into the received bytes, with our Via, Record-Route and
//! numbers written in place, never through `format!`.

use std::collections::VecDeque;
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use siphasher::sip::SipHasher13;
use trunkvip_sip::{
    find_byte, find_byte2, CSeq, HeaderName, Host, Message, Method, NameAddr, Param, Scheme,
    Splices, Uri, Via, BRANCH_COOKIE,
};

use crate::config::{CarrierTarget, ConfigError, ProxyConfig};
use crate::dialogs::{Call, Dialog, DialogState, DialogTable};
use crate::edges::EdgePool;
use crate::hash::{fnv1a, random_key, Fnv, Gather, HashKeyed};
use crate::io::{ConnectionId, Incoming, Origin, Transmit, Transport};
use crate::metrics::{DropReason, Metrics};
use crate::pages::Pages;
use crate::timer::{Armed, TimerKind, TimerQueue, SWEEP};
use crate::wire::{self, off, push_dec, push_header};
use crate::Event;

/// The URI parameter of our Record-Route that names the dialog's Edge.
pub(crate) const EDGE_PARAM: &[u8] = b"tve";

/// Where a request goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    Edge(u16),
    Carrier(u16),
    /// An address a URI names (no flow label or scope: a `SocketAddr`
    /// would take 32 bytes for them).
    Addr(IpAddr, u16, Transport),
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    addr: SocketAddr,
    transport: Transport,
    connection: Option<ConnectionId>,
}

/// What the proxy reads of the top Via, with the parameters it needs
/// found in one pass (each lookup by name would walk them again). Small
/// enough to be moved without a call to memcpy, as a whole `Via` is not:
/// it goes from the parser down to `Facts` by value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopVia<'m> {
    /// The value as written.
    pub(crate) raw: &'m [u8],
    /// `sent-by` as written.
    sent_by: &'m [u8],
    /// The sent-by host, when it is an address.
    ip: Option<IpAddr>,
    port: Option<u16>,
    tls: bool,
    pub(crate) branch: Option<&'m [u8]>,
    /// The first `rport` as written, and whether it has a value.
    rport: Option<(&'m [u8], bool)>,
    /// The first `received` as written.
    received: Option<&'m [u8]>,
}

impl<'m> TopVia<'m> {
    /// `rport` and `received` matter on requests alone (where answers go,
    /// what a forwarded Via gets): a response's top Via is ours, read for
    /// its branch.
    #[inline]
    pub(crate) fn new(via: Via<'m>, request: bool) -> Self {
        let mut t = TopVia {
            raw: via.raw,
            sent_by: via.sent_by,
            ip: via.host.ip(),
            port: via.port,
            tls: via.is_transport("TLS"),
            // The parser noted the first branch: no walk for it.
            branch: via.params.get(b"branch").flatten(),
            rport: None,
            received: None,
        };
        if request {
            for p in ValidParams::new(via.params.as_bytes()) {
                match p.name.len() {
                    5 if t.rport.is_none() && p.name.eq_ignore_ascii_case(b"rport") => {
                        t.rport = Some((p.raw, p.value.is_some()));
                    }
                    8 if t.received.is_none() && p.name.eq_ignore_ascii_case(b"received") => {
                        t.received = Some(p.raw);
                    }
                    _ => {}
                }
            }
        }
        t
    }

    /// The top Via of `msg`.
    pub(crate) fn of(msg: &'m Message) -> Option<Self> {
        // No combinators on the way: each would move the large Via again.
        match msg.top_via() {
            Ok(v) => Some(TopVia::new(v, msg.is_request())),
            Err(_) => None,
        }
    }

    /// The branch carries the RFC 3261 magic cookie (and more).
    fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .is_some_and(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// The parameters of a list the parser validated (`Params::as_bytes`):
/// the same items as `Params::iter`, found by their delimiters alone.
struct ValidParams<'a> {
    rest: &'a [u8],
    /// No white space and no quoted string: `;` and `=` delimit all.
    plain: bool,
}

impl<'a> ValidParams<'a> {
    fn new(raw: &'a [u8]) -> Self {
        // Short lists: a loop beats setting up a vector search.
        let plain = !raw.iter().any(|&c| c == b'"' || is_ws(c));
        ValidParams { rest: raw, plain }
    }
}

impl<'a> Iterator for ValidParams<'a> {
    type Item = Param<'a>;
    fn next(&mut self) -> Option<Param<'a>> {
        let b = self.rest;
        if self.plain {
            let body = b.strip_prefix(b";")?;
            let end = find_byte(b';', body).map_or(b.len(), |n| n + 1);
            let item = &b[1..end];
            let (name, value) = match find_byte(b'=', item) {
                Some(n) => (&item[..n], Some(&item[n + 1..])),
                None => (item, None),
            };
            self.rest = &b[end..];
            return Some(Param {
                name,
                value,
                raw: &b[..end],
            });
        }
        let skip = |mut i: usize| {
            while b.get(i).copied().is_some_and(is_ws) {
                i += 1;
            }
            i
        };
        let start = skip(0);
        if b.get(start) != Some(&b';') {
            return None;
        }
        let name_at = skip(start + 1);
        let mut i = name_at;
        while b
            .get(i)
            .is_some_and(|&c| !is_ws(c) && c != b'=' && c != b';')
        {
            i += 1;
        }
        let name = &b[name_at..i];
        let eq = skip(i);
        let (end, value) = if b.get(eq) == Some(&b'=') {
            let v = skip(eq + 1);
            let mut j = v;
            if b.get(j) == Some(&b'"') {
                j += 1;
                while j < b.len() {
                    match b[j] {
                        b'\\' => j += 2,
                        b'"' => {
                            j += 1;
                            break;
                        }
                        _ => j += 1,
                    }
                }
                j = j.min(b.len());
            } else {
                while b.get(j).is_some_and(|&c| !is_ws(c) && c != b';') {
                    j += 1;
                }
            }
            (j, Some(&b[v..j]))
        } else {
            (i, None)
        };
        self.rest = &b[end..];
        Some(Param {
            name,
            value,
            raw: &b[start..end],
        })
    }
}

/// What the proxy reads of a message, parsed once.
#[derive(Clone, Copy, Debug)]
struct Facts<'m> {
    via: TopVia<'m>,
    call_id: &'m [u8],
    cseq: CSeq<'m>,
    /// Requests only from here: the values as written, for our answers.
    from: &'m [u8],
    to: &'m [u8],
    cseq_raw: &'m [u8],
    from_tag: Option<&'m [u8]>,
    to_tag: Option<&'m [u8]>,
    max_forwards: Option<u8>,
    routes: Routes<'m>,
    /// A Via line names one of our hosts: the loop check must look.
    maybe_looped: bool,
    /// The Via lines, when there are at most `VIA_LINES`.
    via_lines: Option<([&'m [u8]; VIA_LINES], u8)>,
}

const VIA_LINES: usize = 4;

/// A fault that gets a 4xx answer: code and reason phrase.
type Refusal = (u16, String);

fn bad(what: &str) -> Refusal {
    (400, format!("Bad Request ({what})"))
}

fn refusal(e: trunkvip_sip::Error) -> Refusal {
    (e.status(), e.reason_phrase())
}

fn common_facts<'m>(msg: &'m Message, via: TopVia<'m>) -> Result<Facts<'m>, Refusal> {
    let call_id = msg.call_id().map_err(refusal)?;
    let cseq = msg.cseq().map_err(refusal)?;
    Ok(Facts {
        via,
        call_id,
        cseq,
        from: b"",
        to: b"",
        cseq_raw: b"",
        from_tag: None,
        to_tag: None,
        max_forwards: None,
        routes: Routes::default(),
        maybe_looped: false,
        via_lines: None,
    })
}

/// A kept request parsed again: failover, retransmission, CANCEL, ACK,
/// the paths off the common one.
fn reparse(request: &Bytes) -> Option<Message> {
    Message::parse(request.clone()).ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SState {
    Proceeding,
    /// Final non-2xx sent; waiting for the ACK (INVITE) or lingering.
    Completed,
    /// 2xx sent (RFC 6026): retransmissions of it are forwarded.
    Accepted,
    Confirmed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CState {
    Trying,
    Proceeding,
    Completed,
    Accepted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cancel {
    None,
    /// CANCEL asked for; it goes once a provisional arrives.
    Pending,
    /// Sent and retransmitted (its interval in `Client::interval`).
    Sent,
    Answered,
}

/// Hops still to try on failover, best first: Edges or carriers by index,
/// a few inline (no allocation for a typical pool).
#[derive(Debug)]
struct Candidates {
    list: List,
    next: u32,
    carriers: bool,
}

const INLINE: usize = 7;

#[derive(Debug)]
enum List {
    Inline(u8, [u16; INLINE]),
    Heap(Box<[u16]>),
}

impl Default for Candidates {
    fn default() -> Self {
        Candidates::new(false, &[])
    }
}

impl Candidates {
    fn new(carriers: bool, items: &[u16]) -> Self {
        Self::collect(carriers, items.iter().copied())
    }

    fn collect(carriers: bool, items: impl ExactSizeIterator<Item = u16>) -> Self {
        let list = if items.len() <= INLINE {
            let mut a = [0; INLINE];
            let mut n = 0;
            for (slot, x) in a.iter_mut().zip(items) {
                *slot = x;
                n += 1;
            }
            List::Inline(n, a)
        } else {
            List::Heap(items.collect())
        };
        Candidates {
            list,
            next: 0,
            carriers,
        }
    }

    fn items(&self) -> &[u16] {
        match &self.list {
            List::Inline(n, a) => &a[..usize::from(*n)],
            List::Heap(b) => b,
        }
    }

    /// The ones not tried yet.
    fn rest(&self) -> &[u16] {
        self.items().get(self.next as usize..).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    fn pop(&mut self) -> Option<Hop> {
        let n = *self.rest().first()?;
        self.next += 1;
        Some(if self.carriers {
            Hop::Carrier(n)
        } else {
            Hop::Edge(n)
        })
    }

    fn clear(&mut self) {
        *self = Candidates::default();
    }
}

/// The server side of a transaction: toward whoever sent the request.
#[derive(Debug)]
struct Server {
    state: SState,
    cancelled: bool,
    /// Timer G's current interval, in milliseconds.
    g_interval: u32,
    /// Our final non-2xx answer, for retransmissions.
    response: Option<Bytes>,
    candidates: Candidates,
}

/// The client side: the branch toward the next hop.
#[derive(Debug)]
struct Client {
    hop: Hop,
    state: CState,
    got_provisional: bool,
    cancel: Cancel,
    /// A request we made ourselves (a ghost BYE): `Txn::request` is sent
    /// as it is.
    own: bool,
    /// The current retransmission interval, in milliseconds.
    interval: u32,
    /// The ACK of a final non-2xx answer, re-sent on its retransmissions.
    ack: Option<Bytes>,
}

/// A request and the branch forwarding it. A branch given up on failover
/// keeps its entry (with no server side) to CANCEL or hang up a late
/// answer; the server side moves to a new entry with the next branch.
#[derive(Debug)]
struct Txn {
    /// The server side's key in `server_index`: a keyed hash of its
    /// RFC 3261 transaction key (17.2.3).
    skey: u64,
    /// The client side's key in `by_branch`: the tx part of its branch.
    tx: u64,
    /// The request as received; empty once no side needs it.
    request: Bytes,
    peer: Peer,
    /// The loop-detection hash of the request, for every branch.
    loop_hash: u32,
    /// The Edge the request came from, if it came from one.
    from_edge: Option<u16>,
    method: Method,
    new_dialog: bool,
    server: Option<Server>,
    client: Option<Client>,
    armed: Armed,
}

/// Of the Route values of a request, what routing needs.
#[derive(Clone, Copy, Debug, Default)]
struct Routes<'m> {
    /// The first value.
    first: Option<&'m [u8]>,
    /// How many leading values name us.
    ours: usize,
    /// The Edge our Record-Route named.
    edge: Option<usize>,
    /// The first URI that is not ours.
    next: Option<&'m [u8]>,
}

enum RouteValue<'m> {
    Ours(Option<&'m [u8]>),
    Other(&'m [u8]),
    BadUri,
    BadNameAddr,
}

pub(crate) struct Proxy {
    cfg: ProxyConfig,
    pub(crate) edges: EdgePool,
    pub(crate) dialogs: DialogTable,
    txns: Pages<Txn>,
    /// Server and client sides alive.
    servers: usize,
    clients: usize,
    server_index: HashKeyed<u32>,
    /// Client sides by the transaction part of their branch.
    by_branch: HashKeyed<u32>,
    timers: TimerQueue,
    out: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) metrics: Metrics,
    draining: bool,
    /// See [`Proxy::set_serving`].
    serving: bool,
    our_ips: Vec<IpAddr>,
    /// Our service addresses as our Vias write them, to find those cheaply.
    our_via_hosts: Vec<memchr::memmem::Finder<'static>>,
    to_tag: String,
    retry_after: String,
    limiter: crate::ratelimit::Limiter,
    /// Marks our branches: the instance, or the pair's shared id.
    branch_id: u32,
    /// Keys the transaction part of our branches (shared by a pair).
    branch_key: SipHasher13,
    /// Keys the server index (shared by a pair, as branches derive from it).
    server_key: SipHasher13,
    /// Per transport: `SIP/2.0/UDP host:port;branch=`.
    via_prefix: [Vec<u8>; 3],
    /// Per Edge and transport: our Record-Route (and Path) value.
    record_route: Vec<[Vec<u8>; 3]>,
    /// Per transport: our Record-Route up to the Edge name, to know our
    /// Route without parsing it.
    route_prefix: [Vec<u8>; 3],
    splices: Splices,
    /// Scratch for ordering the Edges of a new dialog.
    edge_order: Vec<(u8, f64, u16)>,
    ghost_seq: u64,
    /// Carrier targets a [`Proxy::set_carriers`] removed, newest last (at
    /// most [`RETIRED_CARRIERS`]): an in-dialog request to one still goes
    /// over its transport.
    retired_carriers: Vec<CarrierTarget>,
}

/// How many removed carrier targets are remembered. Each DNS change
/// retires a few; dialogs last hours at most, and a carrier whose names
/// change that often has few of them at a time.
const RETIRED_CARRIERS: usize = 64;

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("servers", &self.servers)
            .field("clients", &self.clients)
            .field("dialogs", &self.dialogs.len())
            .finish()
    }
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The longest an INVITE waits for its 100 (Trying) when the next hop has
/// not answered (RFC 3261 17.2.1): well before the sender's T1.
const TRYING_AFTER: Duration = Duration::from_millis(200);

fn ms(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

fn class(code: u16) -> usize {
    usize::from(code / 100).min(6)
}

fn fmt_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

const TRANSPORTS: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

/// The loop-detection half of our branch (RFC 3261 16.6 step 8): a hash of
/// what identifies the request, not of the Vias, so a request that comes
/// back unchanged is recognised.
fn loop_hash(msg: &Message, f: &Facts<'_>) -> u32 {
    let mut h = Fnv::new();
    h.write(msg.request_uri_bytes().unwrap_or_default());
    h.write(&[0]);
    h.write(f.from_tag.unwrap_or_default());
    h.write(&[0]);
    h.write(f.to_tag.unwrap_or_default());
    h.write(&[0]);
    h.write(f.call_id);
    h.write(&f.cseq.seq.to_le_bytes());
    if msg.header(HeaderName::ProxyRequire).is_some() {
        for p in msg.proxy_require().flatten() {
            h.write(p);
        }
    }
    h.finish() as u32
}

/// Where the headers of `msg` end (the empty line), in `msg.as_bytes()`.
fn headers_end(msg: &Message) -> usize {
    off(msg.as_bytes(), msg.body()) - 2
}

/// A URI parameter value we can match byte for byte, as we write names.
fn plain(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c))
}

impl Proxy {
    pub(crate) fn new(cfg: ProxyConfig, now: Instant) -> Self {
        let mut our_ips: Vec<IpAddr> = cfg.service.iter().map(|s| canonical(s.1.ip())).collect();
        our_ips.push(canonical(cfg.host_address));
        our_ips.dedup();
        // `host:port`, as `via_prefix` writes ours: a peer on our host
        // (one address, another port) is not taken for us.
        let mut hosts: Vec<Vec<u8>> = cfg
            .service
            .iter()
            .map(|s| s.1.to_string().into_bytes())
            .collect();
        hosts.dedup();
        let our_via_hosts = hosts
            .iter()
            .map(|h| memchr::memmem::Finder::new(h).into_owned())
            .collect();
        let mut timers = TimerQueue::new(now);
        timers.push_sweep(now, SWEEP_EVERY);
        // Both hosts of a pair derive the same keys from their secret, so
        // they give a request the same branch; alone, a random key.
        let sip_key = |purpose: &str| {
            let mut key = [0u8; 16];
            match &cfg.pair_secret {
                Some(s) => key.copy_from_slice(&crate::pair::derive_key(s, purpose)[..16]),
                None => key = random_key(),
            }
            SipHasher13::new_with_key(&key)
        };
        let service = |t: Transport| {
            cfg.service_addr(t)
                .or_else(|| cfg.service.first().map(|s| s.1))
                .expect("validated: at least one listener")
        };
        let via_prefix = TRANSPORTS
            .map(|t| format!("SIP/2.0/{} {};branch=", t.via_name(), service(t)).into_bytes());
        let route_prefix = TRANSPORTS.map(|t| {
            let a = service(t);
            let param = std::str::from_utf8(EDGE_PARAM).expect("ascii");
            format!(
                "<sip:{}:{};transport={};lr;{param}=",
                fmt_host(a.ip()),
                a.port(),
                t.param()
            )
            .into_bytes()
        });
        let record_route = cfg
            .edges
            .iter()
            .map(|e| {
                std::array::from_fn(|t| {
                    let mut v = route_prefix[t].clone();
                    v.extend_from_slice(e.name.as_bytes());
                    v.push(b'>');
                    v
                })
            })
            .collect();
        Proxy {
            edges: EdgePool::new(&cfg.edges),
            dialogs: {
                // Both hosts of a pair key the table alike (pair.rs).
                let key = cfg.pair_secret.as_ref().map(|s| {
                    let k = crate::pair::derive_key(s, "dialog key");
                    let mut out = [0u8; 16];
                    out.copy_from_slice(&k[..16]);
                    out
                });
                DialogTable::new(cfg.dialogs, cfg.edges.len(), key, cfg.pair_secret.is_some())
            },
            txns: Pages::default(),
            servers: 0,
            clients: 0,
            server_index: HashKeyed::default(),
            by_branch: HashKeyed::default(),
            timers,
            out: VecDeque::new(),
            events: VecDeque::new(),
            metrics: Metrics::default(),
            draining: false,
            serving: true,
            our_ips,
            our_via_hosts,
            to_tag: format!("tv{:x}", cfg.instance),
            limiter: crate::ratelimit::Limiter::new(cfg.rate_limit),
            branch_id: match &cfg.pair_secret {
                Some(s) => {
                    let k = crate::pair::derive_key(s, "branch id");
                    u32::from_le_bytes([k[0], k[1], k[2], k[3]])
                }
                None => cfg.instance,
            },
            branch_key: sip_key("branch key"),
            server_key: sip_key("server key"),
            via_prefix,
            record_route,
            route_prefix,
            splices: Splices::default(),
            edge_order: Vec::new(),
            ghost_seq: 0,
            retired_carriers: Vec::new(),
            retry_after: cfg.retry_after.to_string(),
            cfg,
        }
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    pub(crate) fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether this host holds the VIP (always, without one). A host that
    /// lost it still finishes what it has, but the Edges' answers now go to
    /// the peer: silence from an Edge says nothing, so no failover, no Edge
    /// failure, and no dialog change for the peer, which would otherwise
    /// move a call that rings on one Edge to another.
    pub(crate) fn set_serving(&mut self, serving: bool) {
        self.serving = serving;
        self.dialogs.set_publishing(serving);
    }

    /// Transactions still waiting for a final answer (lingering ones that
    /// only absorb retransmissions do not count).
    pub(crate) fn in_flight(&self) -> usize {
        self.txns
            .iter()
            .map(|(_, t)| {
                let s = t
                    .server
                    .as_ref()
                    .is_some_and(|s| s.state == SState::Proceeding);
                let c = t
                    .client
                    .as_ref()
                    .is_some_and(|c| matches!(c.state, CState::Trying | CState::Proceeding));
                usize::from(s) + usize::from(c)
            })
            .sum()
    }

    /// Transactions alive, lingering ones included.
    pub(crate) fn alive(&self) -> usize {
        self.servers + self.clients
    }

    pub(crate) fn transactions(&self) -> (usize, usize) {
        (self.servers, self.clients)
    }

    pub(crate) fn carriers(&self) -> &[CarrierTarget] {
        &self.cfg.carriers
    }

    /// See [`crate::Core::set_carriers`]. A `Hop::Carrier` is an index
    /// into the list, so every live branch that holds one is pinned to its
    /// address first (`Hop::Addr`: same destination and transport; its
    /// branch, computed when it was sent, is kept), and the untried
    /// carrier candidates of each transaction are mapped onto the new list
    /// by address and transport.
    pub(crate) fn set_carriers(&mut self, carriers: Vec<CarrierTarget>) -> Result<(), ConfigError> {
        self.cfg.check_carriers(&carriers)?;
        let old = std::mem::replace(&mut self.cfg.carriers, carriers);
        let same = |a: &CarrierTarget, b: &CarrierTarget| {
            a.address == b.address && a.transport == b.transport
        };
        let keys: Vec<usize> = self.txns.iter().map(|(k, _)| k).collect();
        for k in keys {
            let t = &mut self.txns[k];
            if let Some(c) = t.client.as_mut() {
                if let Hop::Carrier(n) = c.hop {
                    if let Some(o) = old.get(n as usize) {
                        c.hop = Hop::Addr(o.address.ip(), o.address.port(), o.transport);
                    }
                }
            }
            if let Some(s) = t.server.as_mut() {
                if s.candidates.carriers && !s.candidates.is_empty() {
                    let kept: Vec<u16> = s
                        .candidates
                        .rest()
                        .iter()
                        .filter_map(|&n| old.get(n as usize))
                        .filter_map(|o| self.cfg.carriers.iter().position(|c| same(c, o)))
                        .map(|n| n as u16)
                        .collect();
                    s.candidates = Candidates::new(true, &kept);
                }
            }
        }
        let new = &self.cfg.carriers;
        self.retired_carriers
            .retain(|r| !new.iter().any(|c| same(c, r)));
        for o in old {
            if !new.iter().any(|c| same(c, &o)) {
                self.retired_carriers.retain(|r| !same(r, &o));
                self.retired_carriers.push(o);
            }
        }
        let excess = self.retired_carriers.len().saturating_sub(RETIRED_CARRIERS);
        self.retired_carriers.drain(..excess);
        Ok(())
    }

    pub(crate) fn set_edge_health(&mut self, edge: usize, healthy: bool) {
        if let Some(e) = self.edges.edges.get_mut(edge) {
            e.healthy = healthy;
        }
    }

    fn send(
        &mut self,
        dest: SocketAddr,
        transport: Transport,
        connection: Option<ConnectionId>,
        payload: Bytes,
    ) {
        self.out.push_back(Transmit {
            destination: dest,
            transport,
            origin: Origin::Service,
            connection,
            payload,
        });
    }

    fn send_to(&mut self, peer: Peer, payload: Bytes) {
        self.send(peer.addr, peer.transport, peer.connection, payload);
    }

    fn hop_addr(&self, hop: Hop) -> (SocketAddr, Transport) {
        match hop {
            Hop::Edge(e) => {
                let c = &self.edges.edges[e as usize].config;
                (c.address, c.transport)
            }
            Hop::Carrier(n) => {
                let c = &self.cfg.carriers[n as usize];
                (c.address, c.transport)
            }
            Hop::Addr(ip, port, t) => (SocketAddr::new(ip, port), t),
        }
    }

    /// A destination that is one of our own listeners: sending there
    /// would loop.
    fn is_ourselves(&self, dest: SocketAddr) -> bool {
        let host = canonical(dest.ip()) == canonical(self.cfg.host_address)
            && dest.port() == self.cfg.host_port;
        host || self.cfg.service.iter().any(|s| s.1 == dest)
    }

    fn is_our_ip(&self, ip: IpAddr) -> bool {
        self.our_ips.contains(&canonical(ip))
    }

    fn is_our_uri(&self, uri: &Uri<'_>) -> bool {
        let Some(ip) = uri.host.as_ref().and_then(Host::ip) else {
            return false;
        };
        if !self.is_our_ip(ip) {
            return false;
        }
        let port = uri.port.unwrap_or(if uri.scheme == Scheme::Sips {
            5061
        } else {
            5060
        });
        self.cfg.service.iter().any(|s| s.1.port() == port) || port == self.cfg.host_port
    }

    fn is_our_via(&self, via: &Via<'_>) -> bool {
        self.is_our_sent_by(via.host.ip(), via.port)
    }

    fn is_our_sent_by(&self, ip: Option<IpAddr>, port: Option<u16>) -> bool {
        let Some(ip) = ip else {
            return false;
        };
        let port = port.unwrap_or(5060);
        self.is_our_ip(ip) && self.cfg.service.iter().any(|s| s.1.port() == port)
    }

    /// Where responses to a request go (RFC 3261 18.2.2, RFC 3581).
    fn response_peer(incoming: &Incoming, top: &TopVia<'_>) -> Peer {
        let addr = if incoming.transport.is_reliable() || top.rport.is_some() {
            incoming.source
        } else {
            let default = if top.tls { 5061 } else { 5060 };
            SocketAddr::new(incoming.source.ip(), top.port.unwrap_or(default))
        };
        Peer {
            addr,
            transport: incoming.transport,
            connection: incoming.connection,
        }
    }

    /// The checks of RFC 3261 16.3 step 1 on the fields a proxy processes,
    /// and what routing reads: one pass over the header lines.
    fn facts<'m>(&self, msg: &'m Message, via: TopVia<'m>) -> Result<Facts<'m>, Refusal> {
        let call_id = msg.call_id().map_err(refusal)?;
        let cseq = msg.cseq().map_err(refusal)?;
        let from = msg.from().map_err(refusal)?;
        let to = msg.to().map_err(refusal)?;
        const ONCE: [HeaderName; 5] = [
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::From,
            HeaderName::To,
            HeaderName::MaxForwards,
        ];
        let mut seen = [0u8; ONCE.len()];
        let (mut cseq_raw, mut maybe_looped) = (&b""[..], false);
        let (mut route_lines, mut route) = (0usize, &b""[..]);
        let (mut vias, mut n_vias) = ([&b""[..]; VIA_LINES], 0usize);
        for (h, value) in msg.header_lines() {
            match h {
                HeaderName::Via => {
                    maybe_looped =
                        maybe_looped || self.our_via_hosts.iter().any(|f| f.find(value).is_some());
                    if let Some(slot) = vias.get_mut(n_vias) {
                        *slot = value;
                    }
                    n_vias += 1;
                }
                HeaderName::Route => {
                    route_lines += 1;
                    route = value;
                }
                _ => {
                    if let Some(n) = ONCE.iter().position(|&o| o == h) {
                        if seen[n] == 0 && h == HeaderName::CSeq {
                            cseq_raw = value;
                        }
                        seen[n] = seen[n].saturating_add(1);
                    }
                }
            }
        }
        if let Some(n) = seen.iter().position(|&c| c > 1) {
            return Err(bad(&format!("more than one {}", ONCE[n])));
        }
        if Some(cseq.method_raw) != msg.method_bytes() {
            return Err(bad("CSeq method does not match"));
        }
        let max_forwards = msg.max_forwards().map_err(refusal)?;
        // Built once, in place: the struct is large and each move copies it.
        Ok(Facts {
            via,
            call_id,
            cseq,
            from: from.raw,
            to: to.raw,
            cseq_raw,
            from_tag: from.tag(),
            to_tag: to.tag(),
            max_forwards,
            routes: match route_lines {
                0 => Routes::default(),
                // One value alone on its line: no list to split.
                1 if find_byte2(b',', b'"', route).is_none() => {
                    self.routes_of(std::iter::once(route))
                }
                _ => self.routes(msg),
            },
            maybe_looped,
            via_lines: (n_vias <= VIA_LINES).then_some((vias, n_vias as u8)),
        })
    }

    /// The transaction key of a request (RFC 3261 section 17.2.3), hashed:
    /// branch, sent-by and method (ACK and CANCEL fold into INVITE's), or
    /// the RFC 2543 fallback when the branch lacks the cookie. The key is
    /// secret and 64 bits wide, so two live requests never share one in
    /// practice and nobody can make them.
    fn server_key(&self, msg: &Message, f: &Facts<'_>) -> u64 {
        let method = msg.method().unwrap_or(Method::Other);
        let mut h = Gather::new(self.server_key);
        match method {
            Method::Invite | Method::Ack | Method::Cancel => h.write(b"I"),
            _ => {
                h.write(b"N");
                h.write(msg.method_bytes().unwrap_or_default());
                h.write(b" ");
            }
        }
        match f.via.branch {
            Some(b) if f.via.has_rfc3261_branch() => {
                h.write(b);
                h.write(b" ");
                h.write(f.via.sent_by);
            }
            _ => {
                // RFC 2543: Request-URI, To tag, From tag, Call-ID, CSeq
                // number, top Via (the ACK's To tag and Request-URI may
                // differ from the INVITE's).
                if method != Method::Ack {
                    h.write(msg.request_uri_bytes().unwrap_or_default());
                    h.write(b" ");
                    h.write(f.to_tag.unwrap_or_default());
                }
                h.write(b" ");
                h.write(f.from_tag.unwrap_or_default());
                h.write(b" ");
                h.write(f.call_id);
                h.write(&f.cseq.seq.to_le_bytes());
                h.write(f.via.raw);
            }
        }
        h.finish()
    }

    /// The transaction part of a branch: the incoming transaction and the
    /// next hop under the pair's key (branch.rs).
    fn branch_tx(&self, skey: u64, hop: Hop) -> u64 {
        let mut h = self.branch_key;
        h.write(&skey.to_le_bytes());
        h.write(&hop_tag(hop));
        h.finish()
    }

    /// Our Via value: prefix, branch, `;rport`.
    fn write_via(&self, out: &mut Vec<u8>, t: Transport, tx: u64, loop_hash: u32) {
        out.extend_from_slice(&self.via_prefix[t as usize]);
        crate::branch::write(out, self.branch_id, tx, loop_hash);
        out.extend_from_slice(b";rport");
    }

    // ----- entry points -------------------------------------------------

    /// `via`: the top Via, parsed by the caller. `framed`: the message came
    /// on a stream, its buffer shared with the stream's; a request kept
    /// from it is copied out.
    pub(crate) fn handle_message(
        &mut self,
        now: Instant,
        incoming: Incoming,
        msg: &Message,
        via: Option<TopVia<'_>>,
        framed: bool,
    ) {
        let edge = self.edges.by_source(incoming.source);
        if let Some(e) = edge {
            self.edges.edges[e].last_heard = Some(now);
        }
        if edge.is_none() && !self.carrier_allowed(incoming.source.ip()) {
            self.metrics.drop(DropReason::NotAllowed);
            return;
        }
        if msg.is_request() {
            self.on_request(now, incoming, edge, msg, via, framed);
        } else {
            self.on_response(now, msg, via);
        }
    }

    fn carrier_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.cfg.carrier_allow.is_empty() || self.cfg.carrier_allow.iter().any(|n| n.contains(&ip))
    }

    /// An unparseable message: a request with a usable Via gets 400 (the
    /// lines needed to answer are salvaged), anything else is dropped.
    pub(crate) fn handle_unparseable(
        &mut self,
        incoming: Incoming,
        data: &[u8],
        err: &trunkvip_sip::Error,
    ) {
        self.metrics.parse_errors += 1;
        if !self.carrier_allowed(incoming.source.ip())
            && self.edges.by_source(incoming.source).is_none()
        {
            self.metrics.drop(DropReason::NotAllowed);
            return;
        }
        match crate::salvage::answer(data, err.status(), &err.reason_phrase()) {
            Some(resp) => {
                self.metrics.responses_local[class(err.status())] += 1;
                self.send(
                    incoming.source,
                    incoming.transport,
                    incoming.connection,
                    resp,
                );
            }
            None => self.metrics.drop(DropReason::Unparseable),
        }
    }

    // ----- our own answers ----------------------------------------------

    /// Answers a request ourselves (RFC 3261 8.2.6.2): its Vias, From, To
    /// (with our tag on an answer above 100 when it has none), Call-ID,
    /// CSeq, then `extra`. `f`: the request's facts, when it passed the
    /// checks. `fixed`: the top Via carries the `received` and `rport` its
    /// forwarded copy got (an answer to a request we forwarded).
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        req: &Message,
        f: Option<&Facts<'_>>,
        peer: Peer,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
        fixed: bool,
    ) -> Bytes {
        let mut b = Vec::with_capacity(req.as_bytes().len().min(1024) + 128);
        b.extend_from_slice(b"SIP/2.0 ");
        push_dec(&mut b, code.into());
        b.push(b' ');
        b.extend_from_slice(reason.as_bytes());
        b.extend_from_slice(b"\r\n");
        let top = f.map(|f| &f.via).filter(|_| fixed);
        let known = f.and_then(|f| f.via_lines);
        let lines = known
            .iter()
            .flat_map(|(l, n)| &l[..usize::from(*n)])
            .copied();
        let all = known
            .is_none()
            .then(|| req.headers())
            .into_iter()
            .flatten()
            .filter(|(name, _)| HeaderName::classify(name) == HeaderName::Via)
            .map(|(_, v)| v);
        for v in lines.chain(all) {
            match top {
                Some(t) if wire::contains(v, t.raw) => {
                    let (received, rport) = via_fixes(t, peer);
                    let mut s = Splices::default();
                    via_fix_splices(&mut s, v, t, received, rport);
                    push_header(&mut b, b"Via", &s.apply(v));
                }
                _ => push_header(&mut b, b"Via", v),
            }
        }
        let tag = (code > 100).then_some(self.to_tag.as_bytes());
        match f {
            Some(f) => {
                push_header(&mut b, b"From", f.from);
                b.extend_from_slice(b"To: ");
                b.extend_from_slice(f.to);
                if let (Some(tag), None) = (tag, f.to_tag) {
                    b.extend_from_slice(b";tag=");
                    b.extend_from_slice(tag);
                }
                b.extend_from_slice(b"\r\n");
                push_header(&mut b, b"Call-ID", f.call_id);
                push_header(&mut b, b"CSeq", f.cseq_raw);
            }
            None => {
                for v in req.header_values(HeaderName::From) {
                    push_header(&mut b, b"From", v);
                }
                match (req.header(HeaderName::To), tag) {
                    (Some(to), Some(tag)) if req.to().is_ok_and(|t| t.tag().is_none()) => {
                        b.extend_from_slice(b"To: ");
                        b.extend_from_slice(to);
                        b.extend_from_slice(b";tag=");
                        b.extend_from_slice(tag);
                        b.extend_from_slice(b"\r\n");
                    }
                    _ => {
                        for v in req.header_values(HeaderName::To) {
                            push_header(&mut b, b"To", v);
                        }
                    }
                }
                for v in req.header_values(HeaderName::CallId) {
                    push_header(&mut b, b"Call-ID", v);
                }
                for v in req.header_values(HeaderName::CSeq) {
                    push_header(&mut b, b"CSeq", v);
                }
            }
        }
        for (n, v) in extra {
            push_header(&mut b, n.as_bytes(), v);
        }
        b.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let resp = Bytes::from(b);
        self.metrics.responses_local[class(code)] += 1;
        self.send_to(peer, resp.clone());
        resp
    }

    /// 503 with our Retry-After, outside any transaction.
    fn unavailable(&mut self, req: &Message, f: &Facts<'_>, peer: Peer) {
        let ra = self.retry_after();
        let extra = [("Retry-After", &ra[..])];
        self.answer(
            req,
            Some(f),
            peer,
            503,
            "Service Unavailable",
            &extra,
            false,
        );
    }

    fn retry_after(&self) -> Vec<u8> {
        self.retry_after.as_bytes().to_vec()
    }

    // ----- requests -----------------------------------------------------

    fn on_request(
        &mut self,
        now: Instant,
        incoming: Incoming,
        from_edge: Option<usize>,
        msg: &Message,
        via: Option<TopVia<'_>>,
        framed: bool,
    ) {
        let method = msg.method().unwrap_or(Method::Other);
        self.metrics.requests_in[method as usize] += 1;
        let Some(via) = via else {
            // No Via to answer to.
            self.metrics.parse_errors += 1;
            self.metrics.drop(DropReason::Unparseable);
            return;
        };
        let peer = Self::response_peer(&incoming, &via);
        let f = match self.facts(msg, via) {
            Ok(f) => f,
            Err((code, reason)) => {
                self.metrics.parse_errors += 1;
                if method != Method::Ack {
                    self.answer(msg, None, peer, code, &reason, &[], false);
                }
                return;
            }
        };
        match method {
            Method::Ack => return self.on_ack(now, incoming, from_edge, msg, &f),
            Method::Cancel => return self.on_cancel(now, peer, msg, &f),
            _ => {}
        }
        let skey = self.server_key(msg, &f);
        if let Some(&id) = self.server_index.get(&skey) {
            // A retransmission: the final answer again, or 100 again.
            self.metrics.retransmissions_absorbed += 1;
            let t = &self.txns[id as usize];
            let p = t.peer;
            match t.server.as_ref().map(|s| (&s.response, s.state)) {
                Some((Some(r), _)) => {
                    let r = r.clone();
                    self.metrics.retransmissions_sent += 1;
                    self.send_to(p, r);
                }
                Some((None, SState::Proceeding)) if method == Method::Invite => {
                    self.txns[id as usize].armed.clear(TimerKind::Trying);
                    self.answer(msg, Some(&f), p, 100, "Trying", &[], false);
                }
                _ => {}
            }
            return;
        }
        // Requests of a dialog we hold were admitted with its INVITE; the
        // limit is on new work (a forged To tag with an unknown Call-ID
        // still counts).
        let call = self.dialogs.call(f.call_id);
        // Looked up once, for this and for routing.
        let dialog = self.dialogs.get(call).copied();
        if method == Method::Invite
            && f.to_tag.is_none()
            && dialog.is_some_and(|d| d.state == DialogState::Confirmed)
        {
            // The INVITE of a call that is up, without a transaction here:
            // a retransmission that crossed the 2xx (after a takeover, the
            // peer's). The Edge has answered it; sent again, it would only
            // confuse it.
            self.metrics.retransmissions_absorbed += 1;
            return;
        }
        let known_dialog = f.to_tag.is_some() && dialog.is_some();
        if from_edge.is_none() && !known_dialog {
            match self.limiter.check(now, incoming.source.ip()) {
                crate::ratelimit::Verdict::Pass => {}
                crate::ratelimit::Verdict::Refuse => {
                    self.metrics.rate_limited_503 += 1;
                    self.unavailable(msg, &f, peer);
                    return;
                }
                crate::ratelimit::Verdict::Silence => {
                    self.metrics.drop(DropReason::RateLimited);
                    return;
                }
            }
        }
        // A sip: Request-URI may not carry headers (RFC 3261 19.1.5).
        let ruri = match msg.request_uri() {
            Some(Ok(u)) if !(u.headers.is_some() && u.is_sip()) => u,
            _ => {
                self.answer(
                    msg,
                    Some(&f),
                    peer,
                    400,
                    "Bad Request (bad Request-URI)",
                    &[],
                    false,
                );
                return;
            }
        };
        // RFC 3261 16.3: Max-Forwards, our own OPTIONS, Proxy-Require, scheme, loops.
        let mf = f.max_forwards;
        let for_us = f.to_tag.is_none()
            && ruri.user.is_none()
            && ruri
                .host
                .and_then(|h| h.ip())
                .is_some_and(|ip| self.is_our_ip(ip));
        if method == Method::Options && (for_us || mf == Some(0)) {
            // The carrier's keepalive: 200 while an Edge can take calls,
            // 503 otherwise, so the carrier's own failover acts.
            if self.edges.any_healthy() && !self.draining {
                self.answer(msg, Some(&f), peer, 200, "OK", &[("Allow", b"INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, PRACK, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, MESSAGE")], false);
            } else {
                self.unavailable(msg, &f, peer);
            }
            return;
        }
        if mf == Some(0) {
            self.answer(msg, Some(&f), peer, 483, "Too Many Hops", &[], false);
            return;
        }
        if msg.header(HeaderName::ProxyRequire).is_some() {
            let unsupported: Vec<&[u8]> = msg.proxy_require().flatten().collect();
            if !unsupported.is_empty() {
                let list = unsupported.join(&b", "[..]);
                self.answer(
                    msg,
                    Some(&f),
                    peer,
                    420,
                    "Bad Extension",
                    &[("Unsupported", &list)],
                    false,
                );
                return;
            }
        }
        if matches!(ruri.scheme, Scheme::Other) {
            self.answer(
                msg,
                Some(&f),
                peer,
                416,
                "Unsupported URI Scheme",
                &[],
                false,
            );
            return;
        }
        let lh = loop_hash(msg, &f);
        if f.maybe_looped && self.looped(msg, lh) {
            self.metrics.loops_detected += 1;
            self.answer(msg, Some(&f), peer, 482, "Loop Detected", &[], false);
            return;
        }
        let from_edge = from_edge.map(|e| e as u16);
        let txn = |request: Bytes, new_dialog: bool, candidates: Candidates| Txn {
            skey,
            tx: 0,
            request,
            peer,
            loop_hash: lh,
            from_edge,
            method,
            new_dialog,
            server: Some(Server {
                state: SState::Proceeding,
                cancelled: false,
                g_interval: 0,
                response: None,
                candidates,
            }),
            client: None,
            armed: Armed::default(),
        };
        let in_dialog = f.to_tag.is_some();
        let (first, rest, new_dialog) = match self.route(msg, &f, from_edge, in_dialog, dialog) {
            Ok(x) => x,
            Err((code, reason)) => {
                let resp = if code == 503 {
                    self.metrics.no_edge_503 += 1;
                    let ra = self.retry_after();
                    self.answer(
                        msg,
                        Some(&f),
                        peer,
                        code,
                        reason,
                        &[("Retry-After", &ra)],
                        false,
                    )
                } else {
                    self.answer(msg, Some(&f), peer, code, reason, &[], false)
                };
                if method == Method::Invite {
                    // Through a server transaction (RFC 3261 16.3, 17.2.1):
                    // a retransmitted INVITE gets this answer again rather
                    // than a new try once an Edge is back, Timer G re-sends
                    // it and the ACK is absorbed.
                    let id = self
                        .txns
                        .insert(txn(Bytes::new(), false, Candidates::default()));
                    self.servers += 1;
                    self.server_index.insert(skey, id as u32);
                    self.server_final(now, id, &resp, code, Some(f.call_id));
                }
                return;
            }
        };
        self.metrics.transactions_created += 1;
        // Kept for the life of the transaction: a stream's buffer is shared
        // with the stream, so its request is copied out.
        let request = if framed {
            Bytes::copy_from_slice(msg.as_bytes())
        } else {
            msg.to_bytes()
        };
        let id = self.txns.insert(txn(request, new_dialog, rest));
        self.servers += 1;
        self.server_index.insert(skey, id as u32);
        if method == Method::Invite {
            // The 100 waits for the next hop's first answer, or 200 ms:
            // a 100 stops the sender's retransmissions, so sent before the
            // next hop has the INVITE it would strand the call if this
            // host died now; unsent, the retransmission finds the peer.
            self.arm(id, TimerKind::Trying, now, TRYING_AFTER);
        }
        self.forward_next(now, id, Some(first), Some((msg, &f, call)));
    }

    /// RFC 3261 16.3 step 4: a Via of ours whose branch carries this very
    /// request's loop hash means the request came back unchanged.
    fn looped(&self, msg: &Message, lh: u32) -> bool {
        msg.header_values(HeaderName::Via).any(|raw| {
            self.our_via_hosts.iter().any(|h| h.find(raw).is_some())
                && Via::parse(raw).is_some_and(|v| {
                    self.is_our_via(&v)
                        && v.branch()
                            .and_then(crate::branch::parse)
                            .is_some_and(|b| b.id == self.branch_id && b.loop_hash == lh)
                })
        })
    }

    /// One Route value: ours (with the Edge it names), or the next hop's.
    /// Our own Record-Route comes back byte for byte and is known without
    /// parsing it.
    fn route_value<'m>(&self, v: &'m [u8]) -> RouteValue<'m> {
        for p in &self.route_prefix {
            if let Some(name) = v.strip_prefix(&p[..]).and_then(|r| r.strip_suffix(b">")) {
                if plain(name) {
                    return RouteValue::Ours(Some(name));
                }
            }
        }
        let Some(n) = NameAddr::parse(v) else {
            return RouteValue::BadNameAddr;
        };
        let Ok(u) = n.parsed_uri() else {
            return RouteValue::BadUri;
        };
        if self.is_our_uri(&u) {
            RouteValue::Ours(u.param(EDGE_PARAM).flatten())
        } else {
            RouteValue::Other(n.uri)
        }
    }

    /// Our Record-Route comes back as the top Route(s).
    fn routes<'m>(&self, msg: &'m Message) -> Routes<'m> {
        self.routes_of(msg.header_values(HeaderName::Route))
    }

    fn routes_of<'m>(&self, values: impl Iterator<Item = &'m [u8]>) -> Routes<'m> {
        let mut r = Routes::default();
        let mut leading = true;
        for v in values {
            r.first = r.first.or(Some(v));
            match self.route_value(v) {
                RouteValue::Ours(name) => {
                    r.ours += usize::from(leading);
                    if let Some(name) = name {
                        r.edge = self.edges.by_name(name);
                    }
                }
                RouteValue::Other(uri) => {
                    r.next = Some(uri);
                    break;
                }
                RouteValue::BadUri => break,
                // Skipped for routing, but ours end there.
                RouteValue::BadNameAddr => leading = false,
            }
        }
        r
    }

    /// Picks the hops of a request: the Edges of a new dialog from the
    /// carrier, the carriers for a new dialog from an Edge, and for an
    /// in-dialog request the one hop its Route or its Call-ID names.
    /// `dialog`: the Call-ID's entry, which the caller looked up. Returns
    /// the first hop, the rest for failover, and whether the request starts
    /// a dialog.
    #[allow(clippy::type_complexity)]
    fn route(
        &mut self,
        msg: &Message,
        f: &Facts<'_>,
        from_edge: Option<u16>,
        in_dialog: bool,
        dialog: Option<Dialog>,
    ) -> Result<(Hop, Candidates, bool), (u16, &'static str)> {
        let call_id = f.call_id;
        let r = f.routes;
        let one = |h| Ok((h, Candidates::default(), false));
        if in_dialog || r.edge.is_some() {
            let edge = r.edge.map(|e| e as u16).or(dialog.map(|d| d.edge));
            return match from_edge {
                None => match edge {
                    Some(e) => one(Hop::Edge(e)),
                    None => Err((481, "Call/Transaction Does Not Exist")),
                },
                Some(_) => {
                    let target = r.next.or(msg.request_uri_bytes());
                    let hop = self.hop_for_uri(target);
                    if self.is_ourselves(self.hop_addr(hop).0) {
                        return Err((482, "Loop Detected"));
                    }
                    one(hop)
                }
            };
        }
        // A new INVITE whose Call-ID we know keeps its Edge: re-sent with a
        // new branch, or a retransmission reaching the peer host after a
        // takeover. That Edge may hold this very INVITE, so even when we
        // believe it down it is tried first (silence fails over): another
        // Edge would ring the same call twice.
        if let Some(d) = dialog {
            if d.state != DialogState::Ended && !d.from_edge && from_edge.is_none() {
                let bound = d.edge;
                if self.edges.edges[bound as usize].healthy {
                    return Ok((Hop::Edge(bound), Candidates::default(), true));
                }
                let mut c = std::mem::take(&mut self.edge_order);
                // The healthy ones: `bound` is not among them.
                self.edges.candidates_into(call_id, &mut c);
                let rest = Candidates::collect(false, c.iter().map(|x| x.2));
                self.edge_order = c;
                return Ok((Hop::Edge(bound), rest, true));
            }
        }
        if self.draining {
            return Err((503, "Service Unavailable"));
        }
        match from_edge {
            None => {
                let mut c = std::mem::take(&mut self.edge_order);
                self.edges.candidates_into(call_id, &mut c);
                let picked = match c.split_first() {
                    Some((first, rest)) => {
                        let rest = Candidates::collect(false, rest.iter().map(|x| x.2));
                        Ok((Hop::Edge(first.2), rest, true))
                    }
                    None => Err((503, "Service Unavailable")),
                };
                self.edge_order = c;
                picked
            }
            Some(_) => {
                if let Some(r) = r.next {
                    return Ok((self.hop_for_uri(Some(r)), Candidates::default(), true));
                }
                let n = self.cfg.carriers.len() as u16;
                if n == 0 {
                    return Err((503, "Service Unavailable"));
                }
                Ok((Hop::Carrier(0), Candidates::collect(true, 1..n), true))
            }
        }
    }

    /// A hop toward the carrier side from a URI: its IP and port when it
    /// names one, else the first configured carrier.
    fn hop_for_uri(&self, uri: Option<&[u8]>) -> Hop {
        if let Some(Ok(u)) = uri.map(Uri::parse) {
            if let Some(ip) = u.host.and_then(|h| h.ip()) {
                let sips = u.scheme == Scheme::Sips;
                let transport = u
                    .transport()
                    .and_then(Transport::from_param)
                    .unwrap_or(if sips { Transport::Tls } else { Transport::Udp });
                let port = u.port.unwrap_or(if transport == Transport::Tls {
                    5061
                } else {
                    5060
                });
                let addr = SocketAddr::new(ip, port);
                if let Some(n) = self.cfg.carriers.iter().position(|c| c.address == addr) {
                    return Hop::Carrier(n as u16);
                }
                // A carrier target DNS no longer gives, still in dialogs.
                let mut newest_first = self.retired_carriers.iter().rev();
                if let Some(r) = newest_first.find(|c| c.address == addr) {
                    return Hop::Addr(ip, port, r.transport);
                }
                return Hop::Addr(ip, port, transport);
            }
        }
        Hop::Carrier(0)
    }

    /// Drops the candidate Edges of a new dialog that turned Unhealthy
    /// since its request came (they were picked then).
    fn prune_candidates(&mut self, id: usize) {
        let t = &mut self.txns[id];
        let Some(s) = t.server.as_mut() else { return };
        if t.new_dialog && !s.candidates.carriers {
            let edges = &self.edges.edges;
            let c = &mut s.candidates;
            if c.rest().iter().any(|e| !edges[*e as usize].healthy) {
                let kept: Vec<u16> = c
                    .rest()
                    .iter()
                    .copied()
                    .filter(|e| edges[*e as usize].healthy)
                    .collect();
                *c = Candidates::new(false, &kept);
            }
        }
    }

    /// Moves the server side of `id` to a new entry, leaving its branch
    /// behind (given up on): returns the new entry.
    fn split_server(&mut self, now: Instant, id: usize) -> usize {
        let t = &mut self.txns[id];
        let server = t.server.take();
        let owes_trying = t.armed.is_armed(TimerKind::Trying);
        // The other server timers are armed only once it answered: none
        // moves.
        t.armed.clear_where(TimerKind::is_server);
        let moved = Txn {
            skey: t.skey,
            tx: 0,
            request: t.request.clone(),
            peer: t.peer,
            loop_hash: t.loop_hash,
            from_edge: t.from_edge,
            method: t.method,
            new_dialog: t.new_dialog,
            server,
            client: None,
            armed: Armed::default(),
        };
        let skey = moved.skey;
        let new = self.txns.insert(moved);
        self.server_index.insert(skey, new as u32);
        self.release_request(id);
        if owes_trying {
            // Owed until the next branch's hop has the INVITE too.
            self.arm(new, TimerKind::Trying, now, TRYING_AFTER);
        }
        new
    }

    /// The forwarded form of a request (RFC 3261 16.6): our Via on top,
    /// `received` and `rport` on the sender's (18.2.1, RFC 3581),
    /// Max-Forwards less one, our Route popped, our Record-Route (twice
    /// when the legs differ in transport, RFC 5658), and Path for a
    /// REGISTER from an Edge that supports it.
    fn forwarded(&mut self, msg: &Message, f: &Facts<'_>, id: usize) -> Bytes {
        let t = &self.txns[id];
        let hop = t.client.as_ref().expect("a branch").hop;
        let (_, transport) = self.hop_addr(hop);
        let (method, new_dialog, from_edge, peer) = (t.method, t.new_dialog, t.from_edge, t.peer);
        let mut s = std::mem::take(&mut self.splices);
        s.clear();
        let base = msg.as_bytes();
        let via_at = wire::line_start(base, off(base, f.via.raw));
        s.insert(via_at, |o| {
            o.extend_from_slice(b"Via: ");
            self.write_via(o, transport, t.tx, t.loop_hash);
            o.extend_from_slice(b"\r\n");
        });
        let (received, rport) = via_fixes(&f.via, peer);
        via_fix_splices(&mut s, base, &f.via, received, rport);
        let mf = f.max_forwards.map_or(70, |m| m.saturating_sub(1));
        let end = headers_end(msg);
        match msg.header(HeaderName::MaxForwards) {
            Some(v) => {
                let at = off(base, v);
                s.replace(at, at + v.len(), |o| push_dec(o, mf.into()));
            }
            None => s.insert(end, |o| {
                o.extend_from_slice(b"Max-Forwards: ");
                push_dec(o, mf.into());
                o.extend_from_slice(b"\r\n");
            }),
        }
        pop_routes(&mut s, msg, &f.routes);
        let dialog_edge = match hop {
            Hop::Edge(e) => Some(e),
            _ => from_edge,
        };
        if let (true, Some(e)) = (new_dialog && method.creates_dialog(), dialog_edge) {
            let at = msg
                .header(HeaderName::RecordRoute)
                .map_or(end, |v| wire::line_start(base, off(base, v)));
            let rr = &self.record_route[e as usize];
            s.insert(at, |o| {
                push_header(o, b"Record-Route", &rr[transport as usize])
            });
            if peer.transport != transport {
                s.insert(at, |o| {
                    push_header(o, b"Record-Route", &rr[peer.transport as usize])
                });
            }
        }
        if let (Method::Register, Some(e)) = (method, from_edge) {
            let supports_path = msg
                .header_values(HeaderName::Supported)
                .any(|v| v.eq_ignore_ascii_case(b"path"));
            if supports_path {
                let rr = &self.record_route[e as usize][transport as usize];
                s.insert(end, |o| push_header(o, b"Path", rr));
            }
        }
        let out = s.apply(base);
        self.splices = s;
        out
    }

    /// Sends the request of transaction `id` to `first`, or to its next
    /// candidate, or answers it 503 when none is left. `live`: the request
    /// as just received; without it the kept copy is parsed again.
    fn forward_next(
        &mut self,
        now: Instant,
        mut id: usize,
        first: Option<Hop>,
        live: Option<(&Message, &Facts<'_>, Call<'_>)>,
    ) {
        let held;
        let held_facts;
        let (msg, f, call) = match live {
            Some((m, f, call)) => (m, f, Some(call)),
            None => {
                let t = &self.txns[id];
                let Some(m) = reparse(&t.request) else { return };
                held = m;
                let Some(hf) = TopVia::of(&held).and_then(|v| self.facts(&held, v).ok()) else {
                    return;
                };
                held_facts = hf;
                (&held, &held_facts, None)
            }
        };
        if self.txns[id].client.is_some() {
            // The branch in progress is given up: late answers to it are
            // CANCELled or hung up.
            id = self.split_server(now, id);
        }
        let hop = match first {
            Some(h) => Some(h),
            None => {
                self.prune_candidates(id);
                self.txns[id]
                    .server
                    .as_mut()
                    .and_then(|s| s.candidates.pop())
            }
        };
        let Some(hop) = hop else {
            let peer = self.txns[id].peer;
            let ra = self.retry_after();
            self.metrics.no_edge_503 += 1;
            let extra: &[(&str, &[u8])] = &[("Retry-After", &ra)];
            let r = self.answer(msg, Some(f), peer, 503, "Service Unavailable", extra, true);
            self.server_final(now, id, &r, 503, Some(f.call_id));
            return;
        };
        let (dest, transport) = self.hop_addr(hop);
        let t = &self.txns[id];
        let (invite, new_dialog, from_edge, peer) = (
            t.method == Method::Invite,
            t.new_dialog,
            t.from_edge,
            t.peer,
        );
        let tx = self.branch_tx(t.skey, hop);
        let t = &mut self.txns[id];
        t.tx = tx;
        t.client = Some(Client {
            hop,
            state: CState::Trying,
            got_provisional: false,
            cancel: Cancel::None,
            own: false,
            interval: ms(self.cfg.timers.t1),
            ack: None,
        });
        self.clients += 1;
        let payload = self.forwarded(msg, f, id);
        let dialog_edge = match hop {
            Hop::Edge(e) => Some(e),
            _ => from_edge,
        };
        if let (true, Some(e)) = (new_dialog && invite, dialog_edge) {
            if self
                .dialogs
                .bind(
                    now,
                    call.unwrap_or_else(|| self.dialogs.call(f.call_id)),
                    e,
                    from_edge.is_some(),
                )
                .is_err()
            {
                let t = &mut self.txns[id];
                t.client = None;
                self.clients -= 1;
                let ra = self.retry_after();
                let r = self.answer(
                    msg,
                    Some(f),
                    peer,
                    503,
                    "Service Unavailable",
                    &[("Retry-After", &ra)],
                    true,
                );
                self.server_final(now, id, &r, 503, Some(f.call_id));
                return;
            }
        }
        // A lingering client of an earlier, identical transaction loses
        // its entry: the new one takes the answers.
        self.by_branch.insert(tx, id as u32);
        self.send(dest, transport, None, payload);
        let t = self.cfg.timers;
        if !transport.is_reliable() {
            self.arm(id, TimerKind::Retransmit, now, t.t1);
        }
        self.arm(id, TimerKind::Timeout, now, t.t1 * 64);
        if invite {
            // Timer C runs from the moment the INVITE is proxied (RFC 3261
            // 16.6 step 11): a branch that only ever gets 100 ends too.
            self.arm(id, TimerKind::TimerC, now, t.timer_c);
        }
        if invite && new_dialog {
            self.arm(id, TimerKind::Failover, now, t.failover_after);
        }
    }

    fn arm(&mut self, id: usize, kind: TimerKind, now: Instant, delay: Duration) {
        let t = &mut self.txns[id];
        self.timers.arm(&mut t.armed, kind, id as u32, now, delay);
    }

    /// Moves a server side to its state after a final response, and ends
    /// a new dialog that failed or a dialog whose BYE was answered. `resp`
    /// is shared only where it is kept: the first clone of a fresh buffer
    /// allocates.
    fn server_final(
        &mut self,
        now: Instant,
        id: usize,
        resp: &Bytes,
        code: u16,
        call_id: Option<&[u8]>,
    ) {
        let tm = self.cfg.timers;
        let t = &mut self.txns[id];
        let Some(s) = t.server.as_mut() else { return };
        t.armed.clear(TimerKind::Trying);
        s.candidates.clear();
        let reliable = t.peer.transport.is_reliable();
        let ends_dialog =
            (t.method == Method::Invite && t.new_dialog && code >= 300) || t.method == Method::Bye;
        if t.method == Method::Invite {
            if (200..300).contains(&code) {
                s.state = SState::Accepted;
                // Timer L: 2xx retransmissions are forwarded for 64*T1.
                self.arm(id, TimerKind::ServerLinger, now, tm.t1 * 64);
            } else {
                s.state = SState::Completed;
                s.response = Some(resp.clone());
                s.g_interval = ms(tm.t1);
                if !reliable {
                    self.arm(id, TimerKind::ServerRetransmit, now, tm.t1);
                }
                // Timer H: wait for the ACK.
                self.arm(id, TimerKind::ServerLinger, now, tm.t1 * 64);
            }
        } else {
            s.state = SState::Completed;
            s.response = Some(resp.clone());
            // Timer J: absorb retransmissions (0 on reliable transports).
            let j = if reliable { Duration::ZERO } else { tm.t1 * 64 };
            self.arm(id, TimerKind::ServerLinger, now, j);
        }
        if ends_dialog {
            match call_id {
                Some(cid) => self.dialogs.end(now, cid),
                None => {
                    let held = reparse(&self.txns[id].request);
                    if let Some(cid) = held.as_ref().and_then(|m| m.call_id().ok()) {
                        self.dialogs.end(now, cid);
                    }
                }
            }
        }
        self.release_request(id);
    }

    /// Lets go of the request once neither side can need it again: the
    /// server side answered, and the branch has its final answer and no
    /// CANCEL still going.
    fn release_request(&mut self, id: usize) {
        let t = &mut self.txns[id];
        let server_done = t
            .server
            .as_ref()
            .is_none_or(|s| s.state != SState::Proceeding);
        let client_done = t.client.as_ref().is_none_or(|c| {
            c.own
                || (matches!(c.state, CState::Completed | CState::Accepted)
                    && c.cancel != Cancel::Sent)
        });
        if server_done && client_done && !t.request.is_empty() {
            t.request = Bytes::new();
        }
    }

    fn remove_client(&mut self, id: usize) -> Option<Client> {
        let t = &mut self.txns[id];
        let c = t.client.take()?;
        t.armed.clear_where(|k| !k.is_server());
        let tx = t.tx;
        self.clients -= 1;
        if self.by_branch.get(&tx) == Some(&(id as u32)) {
            self.by_branch.remove(&tx);
        }
        if self.txns[id].server.is_none() {
            self.txns.remove(id);
        }
        Some(c)
    }

    fn remove_server(&mut self, id: usize) {
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        if t.server.take().is_none() {
            return;
        }
        t.armed.clear_where(TimerKind::is_server);
        let skey = t.skey;
        self.servers -= 1;
        if self.server_index.get(&skey) == Some(&(id as u32)) {
            self.server_index.remove(&skey);
        }
        if self.txns[id].client.is_none() {
            self.txns.remove(id);
        } else {
            self.release_request(id);
        }
    }

    fn on_ack(
        &mut self,
        now: Instant,
        incoming: Incoming,
        from_edge: Option<usize>,
        msg: &Message,
        f: &Facts<'_>,
    ) {
        // ACK for a non-2xx final: hop by hop, absorbed here.
        let key = self.server_key(msg, f);
        if let Some(&id) = self.server_index.get(&key) {
            let id = id as usize;
            let t4 = self.cfg.timers.t4;
            let t = &mut self.txns[id];
            let reliable = t.peer.transport.is_reliable();
            match t.server.as_mut() {
                Some(s) if s.state == SState::Completed && t.method == Method::Invite => {
                    s.state = SState::Confirmed;
                    t.armed.clear(TimerKind::ServerRetransmit);
                    let i = if reliable { Duration::ZERO } else { t4 };
                    self.arm(id, TimerKind::ServerLinger, now, i);
                }
                _ => self.metrics.retransmissions_absorbed += 1,
            }
            return;
        }
        // An ACK for one of our own answers (its To tag is ours) ends here.
        if f.to_tag == Some(self.to_tag.as_bytes()) {
            return;
        }
        if f.max_forwards == Some(0) {
            self.metrics.drop(DropReason::StrayAck);
            return;
        }
        // ACK for a 2xx: end to end, routed like any in-dialog request,
        // statelessly (it gets no response).
        let from_edge = from_edge.map(|e| e as u16);
        let dialog = self.dialogs.get(self.dialogs.call(f.call_id)).copied();
        let Ok((hop, _, _)) = self.route(msg, f, from_edge, true, dialog) else {
            self.metrics.drop(DropReason::StrayAck);
            return;
        };
        let (dest, transport) = self.hop_addr(hop);
        if self.is_ourselves(dest) {
            self.metrics.loops_detected += 1;
            return;
        }
        // A stateless branch: the same ACK always gets the same one.
        let h = fnv1a(f.via.branch.unwrap_or(f.via.raw));
        let mut s = std::mem::take(&mut self.splices);
        s.clear();
        let base = msg.as_bytes();
        let via_at = wire::line_start(base, off(base, f.via.raw));
        s.insert(via_at, |o| {
            o.extend_from_slice(b"Via: ");
            o.extend_from_slice(&self.via_prefix[transport as usize]);
            crate::branch::write_stateless(o, self.branch_id, h);
            o.extend_from_slice(b";rport\r\n");
        });
        let source_ip = incoming.source.ip();
        if f.via.ip.map(canonical) != Some(canonical(source_ip)) {
            via_fix_splices(&mut s, base, &f.via, Some(source_ip), None);
        }
        let mf = f.max_forwards.map_or(70, |m| m.saturating_sub(1));
        match msg.header(HeaderName::MaxForwards) {
            Some(v) => {
                let at = off(base, v);
                s.replace(at, at + v.len(), |o| push_dec(o, mf.into()));
            }
            None => s.insert(headers_end(msg), |o| {
                o.extend_from_slice(b"Max-Forwards: ");
                push_dec(o, mf.into());
                o.extend_from_slice(b"\r\n");
            }),
        }
        pop_routes(&mut s, msg, &f.routes);
        let payload = s.apply(base);
        self.splices = s;
        self.send(dest, transport, None, payload);
    }

    fn on_cancel(&mut self, now: Instant, peer: Peer, msg: &Message, f: &Facts<'_>) {
        let key = self.server_key(msg, f);
        // CANCEL is answered at once either way (RFC 3261 16.10).
        let Some(&id) = self.server_index.get(&key) else {
            self.answer(
                msg,
                Some(f),
                peer,
                481,
                "Call/Transaction Does Not Exist",
                &[],
                false,
            );
            return;
        };
        let id = id as usize;
        self.answer(msg, Some(f), peer, 200, "OK", &[], false);
        let Some(s) = self.txns[id].server.as_mut() else {
            return;
        };
        if s.state != SState::Proceeding || s.cancelled {
            return;
        }
        s.cancelled = true;
        s.candidates.clear();
        if self.txns[id].client.is_some() {
            self.cancel_branch(now, id);
        }
    }

    /// A request derived from the one a branch forwarded (RFC 3261 9.1,
    /// 17.1.1.3): same Request-URI, the branch's Via only, same From,
    /// Call-ID, CSeq number and the Route it went with; To from the
    /// response for an ACK.
    fn derived(&self, id: usize, method: &[u8], to: Option<&[u8]>) -> Option<Bytes> {
        let t = &self.txns[id];
        let c = t.client.as_ref()?;
        let req = reparse(&t.request)?;
        let (_, transport) = self.hop_addr(c.hop);
        let mut b = Vec::with_capacity(512);
        b.extend_from_slice(method);
        b.push(b' ');
        b.extend_from_slice(req.request_uri_bytes().unwrap_or_default());
        b.extend_from_slice(b" SIP/2.0\r\nVia: ");
        self.write_via(&mut b, transport, t.tx, t.loop_hash);
        b.extend_from_slice(b"\r\nMax-Forwards: 70\r\n");
        for v in req.header_values(HeaderName::From) {
            push_header(&mut b, b"From", v);
        }
        match to {
            Some(v) => push_header(&mut b, b"To", v),
            None => {
                for v in req.header_values(HeaderName::To) {
                    push_header(&mut b, b"To", v);
                }
            }
        }
        for v in req.header_values(HeaderName::CallId) {
            push_header(&mut b, b"Call-ID", v);
        }
        b.extend_from_slice(b"CSeq: ");
        push_dec(&mut b, req.cseq().map_or(1, |c| c.seq).into());
        b.push(b' ');
        b.extend_from_slice(method);
        b.extend_from_slice(b"\r\n");
        if req.header(HeaderName::Route).is_some() {
            let ours = self.routes(&req).ours;
            for v in req.header_values(HeaderName::Route).skip(ours) {
                push_header(&mut b, b"Route", v);
            }
        }
        b.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        Some(Bytes::from(b))
    }

    /// CANCELs an INVITE branch: at once when it had a provisional, else
    /// as soon as one comes (RFC 3261 section 9.1).
    fn cancel_branch(&mut self, now: Instant, id: usize) {
        let t = &mut self.txns[id];
        let invite = t.method == Method::Invite;
        let Some(c) = t.client.as_mut() else { return };
        if !invite
            || c.own
            || c.cancel != Cancel::None
            || matches!(c.state, CState::Completed | CState::Accepted)
        {
            return;
        }
        t.armed.clear(TimerKind::Failover);
        if !c.got_provisional {
            c.cancel = Cancel::Pending;
            return;
        }
        let Some(cancel) = self.derived(id, b"CANCEL", None) else {
            return;
        };
        let t1 = self.cfg.timers.t1;
        let c = self.txns[id].client.as_mut().expect("checked above");
        c.cancel = Cancel::Sent;
        c.interval = ms(t1);
        let hop = c.hop;
        let (dest, transport) = self.hop_addr(hop);
        self.send(dest, transport, None, cancel);
        if !transport.is_reliable() {
            self.arm(id, TimerKind::CancelRetransmit, now, t1);
        }
    }

    // ----- responses ----------------------------------------------------

    fn on_response(&mut self, now: Instant, msg: &Message, via: Option<TopVia<'_>>) {
        let code = msg.status().unwrap_or(0);
        self.metrics.responses_in[class(code)] += 1;
        let Some(Ok(f)) = via.map(|v| common_facts(msg, v)) else {
            self.metrics.drop(DropReason::BadResponse);
            return;
        };
        let parsed = f
            .via
            .branch
            .and_then(crate::branch::parse)
            .filter(|b| b.id == self.branch_id);
        let Some(b) = parsed else {
            // Not our transaction: maybe one of the peer host's, in flight
            // when it died. Forward it statelessly by its Via.
            if self.is_our_sent_by(f.via.ip, f.via.port) {
                return self.forward_stateless_response(now, msg, &f);
            }
            self.metrics.drop(DropReason::Unmatched);
            return;
        };
        let Some(&id) = self.by_branch.get(&b.tx) else {
            // Ours but no transaction here: the peer host's, in flight when
            // it died, or one of ours that ended (a stray 2xx, RFC 6026).
            // Either way it goes on by its Via; the carrier's transaction
            // absorbs what it has seen.
            if self.is_our_sent_by(f.via.ip, f.via.port) {
                return self.forward_stateless_response(now, msg, &f);
            }
            self.metrics.retransmissions_absorbed += 1;
            return;
        };
        let id = id as usize;
        if f.cseq.method == Method::Cancel {
            // The answer to our CANCEL: stop retransmitting it.
            let t = &mut self.txns[id];
            if let Some(c) = t.client.as_mut().filter(|c| c.cancel == Cancel::Sent) {
                c.cancel = Cancel::Answered;
                t.armed.clear(TimerKind::CancelRetransmit);
                self.release_request(id);
            }
            return;
        }
        self.client_response(now, id, msg, &f, code);
    }

    fn forward_stateless_response(&mut self, now: Instant, msg: &Message, f: &Facts<'_>) {
        let Some(Ok(next)) = msg.vias().nth(1) else {
            self.metrics.drop(DropReason::BadNextHop);
            return;
        };
        let Some(dest) = via_destination(&next) else {
            self.metrics.drop(DropReason::BadNextHop);
            return;
        };
        let transport = Transport::from_param(next.transport).unwrap_or(Transport::Udp);
        if f.cseq.method == Method::Invite && msg.status().is_some_and(|c| (200..300).contains(&c))
        {
            // The call is up: the INVITE's retransmissions are absorbed.
            self.dialogs.confirm(now, f.call_id);
        }
        let payload = without_top_via(msg, f.via.raw);
        self.send(dest, transport, None, payload);
    }

    fn client_response(
        &mut self,
        now: Instant,
        id: usize,
        msg: &Message,
        f: &Facts<'_>,
        code: u16,
    ) {
        let tm = self.cfg.timers;
        let t = &mut self.txns[id];
        let invite = t.method == Method::Invite;
        let has_server = t.server.is_some();
        let Some(c) = t.client.as_ref() else { return };
        let (hop, state) = (c.hop, c.state);
        // Any response stops request retransmission and the failover clock.
        t.armed.clear(TimerKind::Retransmit);
        t.armed.clear(TimerKind::Failover);
        if code < 200 {
            return self.client_provisional(now, id, msg, f, code);
        }
        t.armed.clear(TimerKind::TimerC);
        t.armed.clear(TimerKind::Timeout);
        let (dest, transport) = self.hop_addr(hop);
        if matches!(state, CState::Completed | CState::Accepted) {
            // A retransmitted final: ACK again, forward a 2xx again.
            let ack = self.txns[id].client.as_ref().and_then(|c| c.ack.clone());
            if let Some(ack) = ack {
                self.send(dest, transport, None, ack);
            }
            if state == CState::Accepted && (200..300).contains(&code) && has_server {
                self.relay_up(now, id, msg, f, code);
            } else {
                self.metrics.retransmissions_absorbed += 1;
            }
            return;
        }
        if invite && (200..300).contains(&code) {
            if let Some(c) = self.txns[id].client.as_mut() {
                c.state = CState::Accepted;
            }
            // Timer M: 2xx retransmissions are still forwarded.
            self.arm(id, TimerKind::ClientLinger, now, tm.t1 * 64);
            if has_server {
                self.dialogs.confirm(now, f.call_id);
                self.relay_up(now, id, msg, f, code);
            } else {
                self.ghost_2xx(now, id, msg);
            }
            self.release_request(id);
            return;
        }
        let linger = if transport.is_reliable() {
            Duration::ZERO
        } else if invite {
            // Timer D: absorb final retransmissions.
            Duration::from_secs(32)
        } else {
            tm.t4
        };
        if invite {
            // Hop-by-hop ACK for a non-2xx final.
            if let Some(ack) = self.derived(id, b"ACK", msg.header(HeaderName::To)) {
                let c = self.txns[id].client.as_mut().expect("checked above");
                c.ack = Some(ack.clone());
                self.send(dest, transport, None, ack);
            }
        }
        let c = self.txns[id].client.as_mut().expect("checked above");
        c.state = CState::Completed;
        self.arm(id, TimerKind::ClientLinger, now, linger);
        let t = &self.txns[id];
        let Some(s) = t.server.as_ref() else {
            self.release_request(id);
            return;
        };
        // 503 on a new dialog: the next Edge, if any.
        if code == 503
            && t.new_dialog
            && !s.cancelled
            && s.state == SState::Proceeding
            && self.serving
        {
            if let Hop::Edge(e) = hop {
                self.events
                    .push_back(Event::EdgeFailure { edge: e as usize });
            }
            self.metrics.failovers += 1;
            self.forward_next(now, id, None, None);
            return;
        }
        self.relay_up(now, id, msg, f, code);
        self.release_request(id);
    }

    fn client_provisional(
        &mut self,
        now: Instant,
        id: usize,
        msg: &Message,
        f: &Facts<'_>,
        code: u16,
    ) {
        let tm = self.cfg.timers;
        let hop = self.txns[id].client.as_ref().expect("a branch").hop;
        let (_, transport) = self.hop_addr(hop);
        let t = &mut self.txns[id];
        let invite = t.method == Method::Invite;
        let has_server = t.server.is_some();
        let c = t.client.as_mut().expect("a branch");
        if c.state == CState::Trying {
            c.state = CState::Proceeding;
        }
        if invite {
            // Timer B runs in Calling only; Timer C takes over.
            t.armed.clear(TimerKind::Timeout);
        } else if !transport.is_reliable() {
            // Non-INVITE: Timer E goes on at T2 in Proceeding.
            c.interval = ms(tm.t2);
            self.arm(id, TimerKind::Retransmit, now, tm.t2);
        }
        if code == 100 || !invite {
            if code > 100 && has_server {
                self.relay_up(now, id, msg, f, code);
            } else if code == 100 {
                // The next hop has the INVITE: the 100 we owe goes now.
                self.send_trying(id);
            }
            return;
        }
        let c = self.txns[id].client.as_mut().expect("a branch");
        c.got_provisional = true;
        let pending = c.cancel == Cancel::Pending;
        if pending {
            c.cancel = Cancel::None;
        }
        self.arm(id, TimerKind::TimerC, now, tm.timer_c);
        if pending {
            self.cancel_branch(now, id);
        }
        if has_server {
            self.relay_up(now, id, msg, f, code);
        } else {
            // A ghost branch that rings: CANCEL it.
            if self.txns[id]
                .client
                .as_ref()
                .is_some_and(|c| c.cancel == Cancel::None)
            {
                self.metrics.ghost_cancels += 1;
            }
            self.cancel_branch(now, id);
        }
    }

    /// Forwards a response upstream on the server side of `id`.
    fn relay_up(&mut self, now: Instant, id: usize, msg: &Message, f: &Facts<'_>, code: u16) {
        let t = &self.txns[id];
        let Some(s) = t.server.as_ref() else { return };
        let (peer, state) = (t.peer, s.state);
        // After a final answer only 2xx retransmissions of an INVITE pass.
        if state != SState::Proceeding && !(state == SState::Accepted && (200..300).contains(&code))
        {
            self.metrics.retransmissions_absorbed += 1;
            return;
        }
        // What goes up now stands in for the 100 we owe.
        self.txns[id].armed.clear(TimerKind::Trying);
        let payload = without_top_via(msg, f.via.raw);
        if code >= 200 && state == SState::Proceeding {
            self.server_final(now, id, &payload, code, Some(f.call_id));
        }
        self.send_to(peer, payload);
    }

    /// A 2xx on an abandoned branch: ACK it and hang up, so no ghost call
    /// stays up on that Edge.
    fn ghost_2xx(&mut self, now: Instant, id: usize, resp: &Message) {
        let t = &self.txns[id];
        let Some(c) = t.client.as_ref() else { return };
        let Some(req) = reparse(&t.request) else {
            return;
        };
        let hop = c.hop;
        let (dest, transport) = self.hop_addr(hop);
        let (tx, lh) = (t.tx, t.loop_hash);
        let target = resp
            .contacts()
            .next()
            .and_then(|c| c.ok().flatten())
            .map(|c| c.uri)
            .or(req.request_uri_bytes())
            .unwrap_or_default();
        let to = resp.header(HeaderName::To).unwrap_or_default();
        let seq = req.cseq().map(|c| c.seq).unwrap_or(1);
        let mk = |p: &Proxy, method: &[u8], seq: u32, branch: &dyn Fn(&mut Vec<u8>)| {
            let mut b = Vec::with_capacity(512);
            b.extend_from_slice(method);
            b.push(b' ');
            b.extend_from_slice(target);
            b.extend_from_slice(b" SIP/2.0\r\nVia: ");
            b.extend_from_slice(&p.via_prefix[transport as usize]);
            branch(&mut b);
            b.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\n");
            for v in req.header_values(HeaderName::From) {
                push_header(&mut b, b"From", v);
            }
            push_header(&mut b, b"To", to);
            for v in req.header_values(HeaderName::CallId) {
                push_header(&mut b, b"Call-ID", v);
            }
            b.extend_from_slice(b"CSeq: ");
            push_dec(&mut b, seq.into());
            b.push(b' ');
            b.extend_from_slice(method);
            b.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
            Bytes::from(b)
        };
        let id_mark = self.branch_id;
        let ack = mk(self, b"ACK", seq, &|b| {
            crate::branch::write_stateless(b, id_mark, crate::hash::mix(tx))
        });
        // The BYE is a client transaction of our own.
        self.ghost_seq += 1;
        let btx = {
            let mut h = self.branch_key;
            h.write(b"ghost BYE");
            h.write(&self.cfg.instance.to_le_bytes());
            h.write(&self.ghost_seq.to_le_bytes());
            h.finish()
        };
        let bye = mk(self, b"BYE", seq.wrapping_add(1), &|b| {
            crate::branch::write(b, id_mark, btx, lh)
        });
        drop(req);
        if let Some(c) = self.txns[id].client.as_mut() {
            c.ack = Some(ack.clone());
        }
        self.send(dest, transport, None, ack);
        let bid = self.txns.insert(Txn {
            skey: 0,
            tx: btx,
            request: bye.clone(),
            peer: self.txns[id].peer,
            loop_hash: lh,
            from_edge: None,
            method: Method::Bye,
            new_dialog: false,
            server: None,
            client: Some(Client {
                hop,
                state: CState::Trying,
                got_provisional: false,
                cancel: Cancel::None,
                own: true,
                interval: ms(self.cfg.timers.t1),
                ack: None,
            }),
            armed: Armed::default(),
        });
        self.clients += 1;
        self.by_branch.insert(btx, bid as u32);
        self.metrics.ghost_byes += 1;
        self.send(dest, transport, None, bye);
        let t = self.cfg.timers;
        if !transport.is_reliable() {
            self.arm(bid, TimerKind::Retransmit, now, t.t1);
        }
        self.arm(bid, TimerKind::Timeout, now, t.t1 * 64);
    }

    /// The shell could not send toward `dest`: every branch waiting there
    /// fails over now, as on a 503.
    pub(crate) fn connection_failed(
        &mut self,
        now: Instant,
        dest: SocketAddr,
        transport: Transport,
    ) {
        let hit: Vec<usize> = self
            .txns
            .iter()
            .filter(|(_, t)| {
                t.client.as_ref().is_some_and(|c| {
                    c.state == CState::Trying && self.hop_addr(c.hop) == (dest, transport)
                })
            })
            .map(|(k, _)| k)
            .collect();
        for id in hit {
            self.branch_failed(now, id);
        }
    }

    /// A branch that gave nothing: abandon it and try the next hop.
    fn branch_failed(&mut self, now: Instant, id: usize) {
        let t = &mut self.txns[id];
        t.armed.clear(TimerKind::Failover);
        if !self.serving {
            // Its answers go to the VIP's new holder: let it run out.
            return;
        }
        let invite = t.method == Method::Invite;
        let Some(hop) = t.client.as_ref().map(|c| c.hop) else {
            return;
        };
        if t.server.is_none() {
            return;
        }
        if let Hop::Edge(e) = hop {
            self.events
                .push_back(Event::EdgeFailure { edge: e as usize });
        }
        let t = &self.txns[id];
        let Some(s) = t.server.as_ref() else { return };
        if s.cancelled || s.state != SState::Proceeding || !t.new_dialog {
            return;
        }
        self.prune_candidates(id);
        let s = self.txns[id].server.as_ref().expect("checked above");
        if s.candidates.is_empty() && invite {
            // Nobody else to try: let this branch run to Timer B.
            return;
        }
        self.metrics.failovers += 1;
        self.forward_next(now, id, None, None);
    }

    // ----- timers -------------------------------------------------------

    /// Drops cancelled entries from the front of the timer queue, so that
    /// `poll_timeout` names a timer that will act: a transaction answered
    /// in time leaves its failover and retransmission entries behind, and
    /// each would otherwise wake the worker for nothing.
    pub(crate) fn prune_timers(&mut self) {
        while let Some((slot, ticket)) = self.timers.first() {
            let live = slot == SWEEP
                || self
                    .txns
                    .get(slot as usize)
                    .is_some_and(|t| t.armed.holds(ticket));
            if live {
                break;
            }
            self.timers.pop_first();
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some((slot, ticket)) = self.timers.pop_due(now) {
            if slot == SWEEP {
                self.dialogs.sweep(now);
                self.limiter.sweep(now);
                self.timers.push_sweep(now, SWEEP_EVERY);
                continue;
            }
            let id = slot as usize;
            let Some(kind) = self.txns.get_mut(id).and_then(|t| t.armed.take(ticket)) else {
                continue;
            };
            if kind.is_server() {
                self.server_timer(now, id, kind);
            } else {
                self.client_timer(now, id, kind);
            }
        }
    }

    fn client_timer(&mut self, now: Instant, id: usize, kind: TimerKind) {
        let tm = self.cfg.timers;
        let Some(hop) = self.txns[id].client.as_ref().map(|c| c.hop) else {
            return;
        };
        let (d, tr) = self.hop_addr(hop);
        let t = &mut self.txns[id];
        let invite = t.method == Method::Invite;
        let Some(c) = t.client.as_mut() else { return };
        match kind {
            TimerKind::Retransmit => {
                c.interval = if invite {
                    c.interval * 2
                } else {
                    (c.interval * 2).min(ms(tm.t2))
                };
                let next = Duration::from_millis(c.interval.into());
                let payload = if c.own {
                    Some(t.request.clone())
                } else {
                    reparse(&t.request).and_then(|m| {
                        let f = self.facts(&m, TopVia::of(&m)?).ok()?;
                        Some(self.forwarded(&m, &f, id))
                    })
                };
                if let Some(p) = payload {
                    self.metrics.retransmissions_sent += 1;
                    self.send(d, tr, None, p);
                }
                self.arm(id, TimerKind::Retransmit, now, next);
            }
            TimerKind::CancelRetransmit if c.cancel == Cancel::Sent => {
                c.interval = (c.interval * 2).min(ms(tm.t2));
                let next = Duration::from_millis(c.interval.into());
                if let Some(r) = self.derived(id, b"CANCEL", None) {
                    self.metrics.retransmissions_sent += 1;
                    self.send(d, tr, None, r);
                }
                self.arm(id, TimerKind::CancelRetransmit, now, next);
            }
            TimerKind::Failover => {
                // Silence means a dead Edge only if the Edge is silent: one
                // that answered anything since this INVITE left is alive
                // and busy, and failing over would add load exactly when
                // there is too much (a retry storm). Its INVITE waits for
                // Timer A's retransmission and Timer B instead; a dead Edge
                // still fails over now, and a 503 at once.
                let alive = match hop {
                    Hop::Edge(e) => self.edges.edges[e as usize]
                        .last_heard
                        .is_some_and(|t| t + tm.failover_after > now),
                    _ => false,
                };
                if alive {
                    self.metrics.failovers_held += 1;
                } else {
                    self.branch_failed(now, id);
                }
            }
            TimerKind::TimerC => {
                if c.got_provisional {
                    // Ringing too long: CANCEL it; the 487 ends the call.
                    self.cancel_branch(now, id);
                    self.arm(id, TimerKind::Timeout, now, tm.t1 * 64);
                } else {
                    // Nothing but 100: as if the branch timed out (16.8).
                    self.client_timer(now, id, TimerKind::Timeout);
                }
            }
            TimerKind::Timeout => {
                // Timer B or F: no final answer. 408 upstream (RFC 3261
                // 16.8), or the next Edge first for a new dialog.
                let Some(c) = self.remove_client(id) else {
                    return;
                };
                let Some(t) = self.txns.get(id) else { return };
                let Some(s) = t.server.as_ref() else { return };
                if s.state != SState::Proceeding {
                    return;
                }
                if let Hop::Edge(e) = c.hop {
                    if !c.got_provisional && self.serving {
                        self.events
                            .push_back(Event::EdgeFailure { edge: e as usize });
                    }
                }
                let cancelled = s.cancelled;
                if t.new_dialog && !cancelled && !s.candidates.is_empty() && self.serving {
                    self.metrics.failovers += 1;
                    self.forward_next(now, id, None, None);
                    return;
                }
                let (code, reason) = if cancelled {
                    (487, "Request Terminated")
                } else {
                    (408, "Request Timeout")
                };
                let peer = t.peer;
                let Some(req) = reparse(&t.request) else {
                    return;
                };
                let Some(f) = TopVia::of(&req).and_then(|v| self.facts(&req, v).ok()) else {
                    return;
                };
                let r = self.answer(&req, Some(&f), peer, code, reason, &[], true);
                let cid = Some(f.call_id);
                self.server_final(now, id, &r, code, cid);
            }
            TimerKind::ClientLinger => {
                self.remove_client(id);
            }
            _ => {}
        }
    }

    fn server_timer(&mut self, now: Instant, id: usize, kind: TimerKind) {
        let tm = self.cfg.timers;
        match kind {
            TimerKind::ServerRetransmit => {
                let t = &mut self.txns[id];
                let p = t.peer;
                let Some(s) = t.server.as_mut() else { return };
                if s.state != SState::Completed {
                    return;
                }
                s.g_interval = (s.g_interval * 2).min(ms(tm.t2));
                let next = Duration::from_millis(s.g_interval.into());
                if let Some(r) = s.response.clone() {
                    self.metrics.retransmissions_sent += 1;
                    self.send_to(p, r);
                }
                self.arm(id, TimerKind::ServerRetransmit, now, next);
            }
            TimerKind::ServerLinger => self.remove_server(id),
            // Taken off `armed` as it fired: owed until now.
            TimerKind::Trying => self.trying(id),
            _ => {}
        }
    }

    /// Sends the 100 (Trying) the server side of `id` owes, if it still
    /// owes one: built from the request kept for retransmissions.
    fn send_trying(&mut self, id: usize) {
        let t = &mut self.txns[id];
        if !t.armed.is_armed(TimerKind::Trying) {
            return;
        }
        t.armed.clear(TimerKind::Trying);
        self.trying(id);
    }

    fn trying(&mut self, id: usize) {
        let t = &self.txns[id];
        let peer = t.peer;
        if t.server
            .as_ref()
            .is_none_or(|s| s.state != SState::Proceeding)
        {
            return;
        }
        let Some(req) = reparse(&t.request) else {
            return;
        };
        let Some(f) = TopVia::of(&req).and_then(|v| self.facts(&req, v).ok()) else {
            return;
        };
        self.answer(&req, Some(&f), peer, 100, "Trying", &[], false);
    }

    /// Approximate bytes held by live transactions (buffers included).
    pub(crate) fn transaction_bytes(&self) -> usize {
        let t: usize = self
            .txns
            .iter()
            .map(|(_, t)| {
                std::mem::size_of::<Txn>()
                    + t.request.len()
                    + t.server.as_ref().map_or(0, |s| {
                        s.response.as_ref().map_or(0, Bytes::len)
                            + match &s.candidates.list {
                                List::Heap(b) => b.len() * 2,
                                List::Inline(..) => 0,
                            }
                    })
                    + t.client
                        .as_ref()
                        .map_or(0, |c| c.ack.as_ref().map_or(0, Bytes::len))
            })
            .sum();
        let slot = std::mem::size_of::<(u64, u32)>() + 1;
        t + (self.server_index.len() + self.by_branch.len()) * slot
    }

    /// Sources the rate limiter tracks.
    pub(crate) fn limited_sources(&self) -> usize {
        self.limiter.sources()
    }

    pub(crate) fn timers_len(&self) -> usize {
        self.timers.len()
    }
}

/// The `received` and `rport` a request's top Via gets when forwarded
/// (RFC 3261 18.2.1, RFC 3581): received when the sent-by is not the
/// source, rport filled in when asked for.
fn via_fixes(top: &TopVia<'_>, peer: Peer) -> (Option<IpAddr>, Option<u16>) {
    let source_ip = peer.addr.ip();
    let received = (top.ip.map(canonical) != Some(canonical(source_ip))).then_some(source_ip);
    let rport = top.rport.is_some().then_some(peer.addr.port());
    (received, rport)
}

/// Splices `received` and `rport` into `via`, a slice of `base`. A
/// `received` the sender wrote itself is replaced, not kept ahead of ours:
/// responses are routed by the first one.
fn via_fix_splices(
    s: &mut Splices,
    base: &[u8],
    top: &TopVia<'_>,
    received: Option<IpAddr>,
    rport: Option<u16>,
) {
    if let (Some(port), Some((raw, false))) = (rport, top.rport) {
        let at = off(base, raw);
        s.replace(at, at + raw.len(), |o| {
            o.extend_from_slice(b";rport=");
            push_dec(o, port.into());
        });
    }
    if let Some(ip) = received {
        let (start, end) = match top.received {
            Some(raw) => {
                let at = off(base, raw);
                (at, at + raw.len())
            }
            None => {
                let end = off(base, top.raw) + top.raw.len();
                (end, end)
            }
        };
        s.replace(start, end, |o| {
            o.extend_from_slice(b";received=");
            wire::push_host(o, ip);
        });
    }
}

/// The response without its top Via (`top`, ours), to go upstream.
fn without_top_via(msg: &Message, top: &[u8]) -> Bytes {
    let base = msg.as_bytes();
    let (a, b) = wire::first_value_cut(base, top);
    // One cut: both sides into a buffer of their size, which becomes
    // `Bytes` as it is.
    let mut out = Vec::with_capacity(base.len() - (b - a));
    out.extend_from_slice(&base[..a]);
    out.extend_from_slice(&base[b..]);
    Bytes::from(out)
}

/// Removes the `ours` leading Route values (RFC 3261 16.4): one by
/// cutting it from its line, more by writing the rest as one line.
fn pop_routes(s: &mut Splices, msg: &Message, r: &Routes<'_>) {
    let base = msg.as_bytes();
    let ours = r.ours;
    if ours == 1 {
        if let Some(first) = r.first {
            let (a, b) = wire::first_value_cut(base, first);
            s.remove(a, b);
        }
    } else if ours > 1 {
        let mut last_line = None;
        for v in msg.header_values(HeaderName::Route) {
            let (start, end) = wire::first_value_cut(base, v);
            let line = wire::line_start(base, start);
            if last_line != Some(line) {
                last_line = Some(line);
                // The whole line: from its start to the CRLF after its end.
                let (_, end) = whole_line(base, line, end);
                s.remove(line, end);
            }
        }
        let rest: Vec<&[u8]> = msg.header_values(HeaderName::Route).skip(ours).collect();
        if !rest.is_empty() {
            s.insert(headers_end(msg), |o| {
                push_header(o, b"Route", &rest.join(&b", "[..]))
            });
        }
    }
}

/// The line starting at `line`, through the CRLF that is not a fold.
fn whole_line(base: &[u8], line: usize, from: usize) -> (usize, usize) {
    let mut i = from.max(line);
    while let Some(n) = find_byte(b'\n', &base[i..]) {
        let end = i + n + 1;
        if !matches!(base.get(end), Some(b' ' | b'\t')) {
            return (line, end);
        }
        i = end;
    }
    (line, base.len())
}

/// The next hop's part of a branch key.
fn hop_tag(hop: Hop) -> [u8; 20] {
    let mut t = [0u8; 20];
    match hop {
        Hop::Edge(e) => {
            t[0] = 1;
            t[1..3].copy_from_slice(&e.to_le_bytes());
        }
        Hop::Carrier(n) => {
            t[0] = 2;
            t[1..3].copy_from_slice(&n.to_le_bytes());
        }
        Hop::Addr(ip, port, tr) => {
            t[0] = 3 + tr as u8;
            match ip {
                IpAddr::V4(v) => t[1..5].copy_from_slice(&v.octets()),
                IpAddr::V6(v) => t[1..17].copy_from_slice(&v.octets()),
            }
            t[17..19].copy_from_slice(&port.to_le_bytes());
        }
    }
    t
}

/// Where a response goes by a Via: received, rport, sent-by (RFC 3261
/// 18.2.2). Broadcast and unspecified addresses are refused.
fn via_destination(v: &Via<'_>) -> Option<SocketAddr> {
    let ip: IpAddr = match v.received() {
        Some(r) => {
            let r = std::str::from_utf8(r).ok()?;
            r.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()?
        }
        None => v.host.ip()?,
    };
    let bad = match ip {
        IpAddr::V4(a) => a.is_broadcast() || a.is_unspecified() || a.is_multicast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    if bad {
        return None;
    }
    let port = v.rport().flatten().or(v.port).unwrap_or(5060);
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_params_match_the_parser() {
        for v in [
            &b"SIP/2.0/UDP a;branch=z9hG4bK1;rport"[..],
            b"SIP/2.0/UDP a:5060 ; rport = 5062 ;received=[2001:db8::1];branch=z9hG4bK2 ",
            b"SIP/2.0/UDP a;x=\"q;u\\\"o=t\";branch=1;lr",
            b"SIP/2.0/UDP a;\r\n branch\r\n =\r\n z9hG4bK3;RPORT",
            b"SIP/2.0/UDP a",
            b"SIP/2.0/UDP [::1]:5060;received=[::2];maddr=x;ttl=1",
        ] {
            let via = Via::parse(v).unwrap();
            let ours: Vec<Param<'_>> = ValidParams::new(via.params.as_bytes()).collect();
            let theirs: Vec<Param<'_>> = via.params.iter().collect();
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(v));
        }
        let msg = Message::parse(Bytes::from_static(
            b"OPTIONS sip:x SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bKx ,SIP/2.0/UDP b\r\nl: 0\r\n\r\n",
        ))
        .unwrap();
        let top = TopVia::of(&msg).unwrap();
        assert_eq!(top.raw, msg.top_via().unwrap().raw);
        assert_eq!(top.branch, Some(&b"z9hG4bKx"[..]));
    }

    #[test]
    fn top_via_as_the_list_reader_finds_it() {
        // What `TopVia::of` did before it read `Message::top_via`: the
        // first value up to a comma when the line holds no quote or angle.
        fn split_first(msg: &Message) -> Option<Via<'_>> {
            let line = msg.header(HeaderName::Via)?;
            if find_byte2(b'"', b'<', line).is_none() {
                let first = find_byte(b',', line).map_or(line, |n| &line[..n]);
                let t: &[u8] = &b" \t\r\n"[..];
                let start = first.iter().position(|c| !t.contains(c));
                let end = first.iter().rposition(|c| !t.contains(c));
                if let (Some(a), Some(b)) = (start, end) {
                    if let Some(v) = Via::parse(&first[a..=b]) {
                        return Some(v);
                    }
                }
            }
            msg.top_via().ok()
        }
        let mut found = [0; 2];
        for line in [
            &b"SIP/2.0/UDP a;branch=z9hG4bK1;rport"[..],
            b"SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/UDP b",
            b"SIP/2.0/UDP a;branch=z9hG4bK1,SIP/2.0/UDP b",
            b"SIP/2.0/UDP a;branch=z9hG4bK1\r\n ,SIP/2.0/UDP b",
            b"SIP/2.0/UDP a;x=\"q,u\";branch=z9hG4bK2, SIP/2.0/UDP b",
            b"SIP/2.0/UDP a;x=\"<\";branch=z9hG4bK2",
            b"SIP/2.0/UDP a;x=\"open, SIP/2.0/UDP b",
            b"SIP/2.0/UDP a;branch=<z9hG4bK3>, SIP/2.0/UDP b",
            b"SIP/2.0/UDP <a>;branch=z9hG4bK3",
            b"SIP/2.0/UDP a;branch=z9hG4bK4 junk, SIP/2.0/UDP b",
            b"SIP/2.0/UDP a;branch=z9hG4bK4;, SIP/2.0/UDP b",
            b"SIP/2.0/UDP a;branch=, SIP/2.0/UDP b",
            b", SIP/2.0/UDP b",
            b"SIP/2.0/UDP a:99999;branch=z9hG4bK5",
            b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK6;received=192.0.2.9",
            b"SIP / 2.0 / TCP a ;branch = z9hG4bK7 ;rport, SIP/2.0/UDP b",
            b"SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK8",
            b"SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK8",
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDPa;branch=z9hG4bK9",
            b"garbage",
        ] {
            let mut m = b"OPTIONS sip:x SIP/2.0\r\nVia: ".to_vec();
            m.extend_from_slice(line);
            m.extend_from_slice(b"\r\nVia: SIP/2.0/UDP c;branch=z9hG4bKc\r\nl: 0\r\n\r\n");
            let Ok(msg) = Message::parse(Bytes::from(m)) else {
                continue;
            };
            let ours = TopVia::of(&msg).map(|t| (t.raw, t.branch, t.sent_by));
            let before = split_first(&msg).map(|v| (v.raw, v.branch(), v.sent_by));
            let listed = msg
                .vias()
                .next()
                .and_then(Result::ok)
                .map(|v| (v.raw, v.branch(), v.sent_by));
            let line = String::from_utf8_lossy(line);
            assert_eq!(ours, before, "{line}");
            assert_eq!(ours, listed, "{line}");
            found[usize::from(ours.is_some())] += 1;
        }
        assert!(found[0] >= 5 && found[1] >= 5, "{found:?}");
    }

    #[test]
    fn top_via_cut_as_splices_make_it() {
        for vias in [
            &b"Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b\r\n"[..],
            b"Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b\r\n",
            b"v: SIP/2.0/UDP a;branch=z9hG4bK1 ,\r\n SIP/2.0/UDP b\r\n",
            b"Via: SIP/2.0/UDP a\r\n ;branch=z9hG4bK1\r\n",
        ] {
            let mut m = b"SIP/2.0 200 OK\r\n".to_vec();
            m.extend_from_slice(vias);
            m.extend_from_slice(b"CSeq: 1 BYE\r\nContent-Length: 2\r\n\r\nok");
            let msg = Message::parse(Bytes::from(m)).unwrap();
            let top = msg.top_via().unwrap().raw;
            let base = msg.as_bytes();
            let (a, b) = wire::first_value_cut(base, top);
            let mut s = Splices::default();
            s.remove(a, b);
            assert_eq!(without_top_via(&msg, top), s.apply(base));
        }
    }

    #[test]
    fn transaction_entry_stays_small() {
        let (t, s, c, h) = (
            std::mem::size_of::<Txn>(),
            std::mem::size_of::<Server>(),
            std::mem::size_of::<Client>(),
            std::mem::size_of::<Hop>(),
        );
        eprintln!("Txn {t} (Server {s}, Client {c}, Hop {h})");
        assert!(t <= 320, "Txn {t}");
    }

    #[test]
    fn top_via_moves_without_memcpy() {
        // Moved by value from the parser to `Facts`: up to 128 bytes the
        // compiler copies inline, past that with a call to memcpy.
        let n = std::mem::size_of::<TopVia<'_>>();
        assert!(n <= 128, "TopVia {n}");
    }
}
