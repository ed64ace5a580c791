//! The transaction-stateful forwarder (RFC 3261 sections 16 and 17, RFC
//! 6026, RFC 3581): server transactions toward whoever sent a request,
//! client transactions toward the next hop, failover between Edges, and
//! the routing of in-dialog requests by Record-Route or Call-ID affinity.
//!
//! Two habits keep it cheap. Each message is parsed once into [`Facts`],
//! which holds what a proxy must check and nothing more (RFC 3261 16.3:
//! a proxy validates the fields it processes). And a transaction keeps one
//! copy of its request, the forwarded one: it is retransmitted as is, it is
//! the template of CANCEL and ACK, of the next branch on failover, and of
//! our own final answers.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use slab::Slab;
use trunkvip_sip::build::{response_to, Builder};
use trunkvip_sip::{CSeq, Editor, HeaderName, Host, Message, Method, Scheme, Uri, Via};

use crate::config::ProxyConfig;
use crate::dialogs::{DialogState, DialogTable};
use crate::edges::EdgePool;
use crate::hash::{fnv1a, Fnv};
use crate::io::{ConnectionId, Incoming, Origin, Transmit, Transport};
use crate::metrics::{method_index, DropReason, Metrics};
use crate::timer::{Armed, Owner, TimerKind, TimerQueue};
use crate::Event;

/// The URI parameter of our Record-Route that names the dialog's Edge.
pub(crate) const EDGE_PARAM: &[u8] = b"tve";

/// Where a request goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    Edge(u16),
    Carrier(u16),
    Addr(SocketAddr, Transport),
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    addr: SocketAddr,
    transport: Transport,
    connection: Option<ConnectionId>,
}

/// What the proxy reads of a message, parsed once.
#[derive(Clone, Copy, Debug)]
struct Facts<'m> {
    via: Via<'m>,
    call_id: &'m [u8],
    cseq: CSeq<'m>,
    from_tag: Option<&'m [u8]>,
    to_tag: Option<&'m [u8]>,
    max_forwards: Option<u8>,
}

/// A fault that gets a 4xx answer: code and reason phrase.
type Refusal = (u16, String);

fn bad(what: &str) -> Refusal {
    (400, format!("Bad Request ({what})"))
}

/// The checks of RFC 3261 16.3 step 1 on the fields a proxy processes.
fn request_facts(msg: &Message) -> Result<Facts<'_>, Refusal> {
    let f = common_facts(msg)?;
    let from = msg.from().map_err(|e| (e.status(), e.reason_phrase()))?;
    let to = msg.to().map_err(|e| (e.status(), e.reason_phrase()))?;
    for name in [
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::From,
        HeaderName::To,
        HeaderName::MaxForwards,
    ] {
        if msg.header_values(name).nth(1).is_some() {
            return Err(bad(&format!("more than one {name}")));
        }
    }
    if Some(f.cseq.method_raw) != msg.method_bytes() {
        return Err(bad("CSeq method does not match"));
    }
    let max_forwards = msg
        .max_forwards()
        .map_err(|e| (e.status(), e.reason_phrase()))?;
    Ok(Facts {
        from_tag: from.tag(),
        to_tag: to.tag(),
        max_forwards,
        ..f
    })
}

fn common_facts(msg: &Message) -> Result<Facts<'_>, Refusal> {
    let via = msg.top_via().map_err(|e| (e.status(), e.reason_phrase()))?;
    let call_id = msg.call_id().map_err(|e| (e.status(), e.reason_phrase()))?;
    let cseq = msg.cseq().map_err(|e| (e.status(), e.reason_phrase()))?;
    Ok(Facts {
        via,
        call_id,
        cseq,
        from_tag: None,
        to_tag: None,
        max_forwards: None,
    })
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

#[derive(Debug)]
struct ServerTxn {
    gen: u32,
    key: Box<[u8]>,
    method: Method,
    peer: Peer,
    state: SState,
    /// Our final non-2xx answer, for retransmissions.
    last_response: Option<Bytes>,
    /// The branch in progress.
    client: Option<(usize, u32)>,
    /// Hops still to try on failover, best first.
    candidates: Vec<Hop>,
    new_dialog: bool,
    /// The Edge the request came from, if it came from one.
    from_edge: Option<u16>,
    cancelled: bool,
    /// The loop-detection hash of the request, for new branches.
    loop_hash: u32,
    /// Timer G's current interval, in milliseconds.
    g_interval: u32,
    armed: Armed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CState {
    Trying,
    Proceeding,
    Completed,
    Accepted,
}

#[derive(Debug)]
enum Cancel {
    None,
    /// CANCEL asked for; it goes once a provisional arrives.
    Pending,
    /// Sent and retransmitted (its interval in `ClientTxn::interval`).
    Sent(Bytes),
    Answered,
}

#[derive(Debug)]
struct ClientTxn {
    gen: u32,
    /// The transaction part of its branch.
    tx: u64,
    /// The server transaction this branch serves; `None` once abandoned
    /// (failover) or for requests we make ourselves.
    server: Option<(usize, u32)>,
    hop: Hop,
    dest: SocketAddr,
    transport: Transport,
    /// The request as sent; emptied once a final answer makes it useless.
    request: Bytes,
    /// How many Record-Route lines of ours `request` starts with.
    rr_lines: u8,
    invite: bool,
    state: CState,
    got_provisional: bool,
    cancel: Cancel,
    /// The ACK of a final answer, re-sent on its retransmissions.
    ack: Option<Bytes>,
    /// The current retransmission interval, in milliseconds.
    interval: u32,
    armed: Armed,
}

/// What the next branch is made from.
enum Template<'a> {
    /// The request as received, with its facts.
    Incoming(&'a Message, &'a Facts<'a>),
    /// The request of the previous branch, as we sent it.
    Previous(Bytes, u8),
}

pub(crate) struct Proxy {
    cfg: ProxyConfig,
    pub(crate) edges: EdgePool,
    pub(crate) dialogs: DialogTable,
    servers: Slab<ServerTxn>,
    server_index: HashMap<Box<[u8]>, usize>,
    clients: Slab<ClientTxn>,
    timers: TimerQueue,
    gen: u32,
    out: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) metrics: Metrics,
    draining: bool,
    our_ips: Vec<IpAddr>,
    /// Our service hosts as written in a Via, to find our Vias cheaply.
    our_via_hosts: Vec<Vec<u8>>,
    to_tag: String,
    retry_after: String,
    limiter: crate::ratelimit::Limiter,
    /// Marks our branches: the instance, or the pair's shared id.
    branch_id: u32,
    /// Keys the transaction part of our branches (shared by a pair).
    branch_key: siphasher::sip::SipHasher13,
    /// Client transactions by the transaction part of their branch.
    by_branch: HashMap<u64, usize>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("servers", &self.servers.len())
            .field("clients", &self.clients.len())
            .field("dialogs", &self.dialogs.len())
            .finish()
    }
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);

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

/// The transaction key of a request (RFC 3261 section 17.2.3): branch,
/// sent-by and method (ACK folds into INVITE's), or the RFC 2543 fallback
/// when the branch lacks the cookie.
fn server_key(msg: &Message, f: &Facts<'_>) -> Box<[u8]> {
    let method = msg.method().unwrap_or(Method::Other);
    let mut k = Vec::with_capacity(64);
    match method {
        Method::Invite | Method::Ack | Method::Cancel => k.push(b'I'),
        _ => {
            k.push(b'N');
            k.extend_from_slice(msg.method_bytes().unwrap_or_default());
            k.push(b' ');
        }
    }
    if f.via.has_rfc3261_branch() {
        k.extend_from_slice(f.via.branch().unwrap_or_default());
        k.push(b' ');
        k.extend_from_slice(f.via.sent_by);
    } else {
        // RFC 2543: Request-URI, To tag, From tag, Call-ID, CSeq number, top
        // Via (the ACK's To tag and Request-URI may differ from the INVITE's).
        if method != Method::Ack {
            k.extend_from_slice(msg.request_uri_bytes().unwrap_or_default());
            k.push(b' ');
            k.extend_from_slice(f.to_tag.unwrap_or_default());
        }
        k.push(b' ');
        k.extend_from_slice(f.from_tag.unwrap_or_default());
        k.push(b' ');
        k.extend_from_slice(f.call_id);
        k.extend_from_slice(&f.cseq.seq.to_le_bytes());
        k.extend_from_slice(f.via.raw);
    }
    k.into_boxed_slice()
}

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

impl Proxy {
    pub(crate) fn new(cfg: ProxyConfig, now: Instant) -> Self {
        let mut our_ips: Vec<IpAddr> = cfg.service.iter().map(|s| canonical(s.1.ip())).collect();
        our_ips.push(canonical(cfg.host_address));
        our_ips.dedup();
        let mut our_via_hosts: Vec<Vec<u8>> = cfg
            .service
            .iter()
            .map(|s| fmt_host(s.1.ip()).into_bytes())
            .collect();
        our_via_hosts.dedup();
        let mut timers = TimerQueue::default();
        timers.push(now + SWEEP_EVERY, Owner::Sweep, TimerKind::ServerLinger, 0);
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
            servers: Slab::new(),
            server_index: HashMap::new(),
            clients: Slab::new(),
            timers,
            gen: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            metrics: Metrics::default(),
            draining: false,
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
            branch_key: {
                let k = match &cfg.pair_secret {
                    Some(s) => crate::pair::derive_key(s, "branch key"),
                    None => crate::pair::derive_key(&cfg.instance.to_le_bytes(), "branch key"),
                };
                let mut key = [0u8; 16];
                key.copy_from_slice(&k[..16]);
                siphasher::sip::SipHasher13::new_with_key(&key)
            },
            by_branch: HashMap::new(),
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

    /// Transactions still waiting for a final answer (lingering ones that
    /// only absorb retransmissions do not count).
    pub(crate) fn in_flight(&self) -> usize {
        let servers = self
            .servers
            .iter()
            .filter(|(_, s)| s.state == SState::Proceeding);
        let clients = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(c.state, CState::Trying | CState::Proceeding));
        servers.count() + clients.count()
    }

    /// Transactions alive, lingering ones included.
    pub(crate) fn alive(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    pub(crate) fn transactions(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    pub(crate) fn set_edge_health(&mut self, edge: usize, healthy: bool) {
        if let Some(e) = self.edges.edges.get_mut(edge) {
            e.healthy = healthy;
        }
    }

    fn next_gen(&mut self) -> u32 {
        self.gen = self.gen.wrapping_add(1);
        self.gen
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

    fn service_addr(&self, t: Transport) -> SocketAddr {
        self.cfg
            .service_addr(t)
            .or_else(|| self.cfg.service.first().map(|s| s.1))
            .expect("validated: at least one listener")
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
            Hop::Addr(a, t) => (a, t),
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
        let Some(ip) = via.host.ip() else {
            return false;
        };
        let port = via.port.unwrap_or(5060);
        self.is_our_ip(ip) && self.cfg.service.iter().any(|s| s.1.port() == port)
    }

    /// Where responses to a request go (RFC 3261 18.2.2, RFC 3581).
    fn response_peer(incoming: &Incoming, via: &Via<'_>) -> Peer {
        let addr = if incoming.transport.is_reliable() || via.rport().is_some() {
            incoming.source
        } else {
            let default = if via.is_transport("TLS") { 5061 } else { 5060 };
            SocketAddr::new(incoming.source.ip(), via.port.unwrap_or(default))
        };
        Peer {
            addr,
            transport: incoming.transport,
            connection: incoming.connection,
        }
    }

    // ----- entry points -------------------------------------------------

    pub(crate) fn handle_message(&mut self, now: Instant, incoming: Incoming, msg: Message) {
        let edge = self.edges.by_source(incoming.source);
        if let Some(e) = edge {
            self.edges.edges[e].last_heard = Some(now);
        }
        if edge.is_none() && !self.carrier_allowed(incoming.source.ip()) {
            self.metrics.drop(DropReason::NotAllowed);
            return;
        }
        if msg.is_request() {
            self.on_request(now, incoming, edge, &msg);
        } else {
            self.on_response(now, &msg);
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

    /// Answers a request we hold as received.
    fn answer(
        &mut self,
        req: &Message,
        peer: Peer,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) -> Bytes {
        let tag = (code > 100).then_some(self.to_tag.as_bytes());
        let mut b = response_to(req, code, reason, tag);
        for (n, v) in extra {
            b.push(n, v);
        }
        let resp = b.finish();
        self.metrics.responses_local[class(code)] += 1;
        self.send(peer.addr, peer.transport, peer.connection, resp.clone());
        resp
    }

    /// Answers a request from the copy we forwarded: its Vias but ours.
    fn answer_forwarded(
        &mut self,
        fwd: &Bytes,
        peer: Peer,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) -> Option<Bytes> {
        let fwd = Message::parse(fwd.clone()).ok()?;
        let mut b = Builder::response(code, reason);
        for v in fwd.header_values(HeaderName::Via).skip(1) {
            b.push("Via", v);
        }
        b.copy_from(&fwd, HeaderName::From);
        let to = fwd.header(HeaderName::To).unwrap_or_default();
        if fwd.to().ok().and_then(|t| t.tag()).is_none() && code > 100 {
            let mut v = to.to_vec();
            v.extend_from_slice(b";tag=");
            v.extend_from_slice(self.to_tag.as_bytes());
            b.push("To", &v);
        } else {
            b.push("To", to);
        }
        b.copy_from(&fwd, HeaderName::CallId);
        b.copy_from(&fwd, HeaderName::CSeq);
        for (n, v) in extra {
            b.push(n, v);
        }
        let resp = b.finish();
        self.metrics.responses_local[class(code)] += 1;
        self.send(peer.addr, peer.transport, peer.connection, resp.clone());
        Some(resp)
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
    ) {
        let method = msg.method().unwrap_or(Method::Other);
        self.metrics.requests_in[method_index(method)] += 1;
        let Ok(via) = msg.top_via() else {
            // No Via to answer to.
            self.metrics.parse_errors += 1;
            self.metrics.drop(DropReason::Unparseable);
            return;
        };
        let peer = Self::response_peer(&incoming, &via);
        let f = match request_facts(msg) {
            Ok(f) => f,
            Err((code, reason)) => {
                self.metrics.parse_errors += 1;
                if method != Method::Ack {
                    self.answer(msg, peer, code, &reason, &[]);
                }
                return;
            }
        };
        match method {
            Method::Ack => return self.on_ack(now, incoming, from_edge, msg, &f),
            Method::Cancel => return self.on_cancel(now, peer, msg, &f),
            _ => {}
        }
        let key = server_key(msg, &f);
        if let Some(&id) = self.server_index.get(&key) {
            // A retransmission: the final answer again, or 100 again.
            self.metrics.retransmissions_absorbed += 1;
            let st = &self.servers[id];
            let p = st.peer;
            match (&st.last_response, st.state) {
                (Some(r), _) => {
                    let r = r.clone();
                    self.metrics.retransmissions_sent += 1;
                    self.send(p.addr, p.transport, p.connection, r);
                }
                (None, SState::Proceeding) if method == Method::Invite => {
                    self.answer(msg, p, 100, "Trying", &[]);
                }
                _ => {}
            }
            return;
        }
        if from_edge.is_none() {
            match self.limiter.check(now, incoming.source.ip()) {
                crate::ratelimit::Verdict::Pass => {}
                crate::ratelimit::Verdict::Refuse => {
                    self.metrics.rate_limited_503 += 1;
                    let ra = self.retry_after();
                    self.answer(
                        msg,
                        peer,
                        503,
                        "Service Unavailable",
                        &[("Retry-After", &ra)],
                    );
                    return;
                }
                crate::ratelimit::Verdict::Silence => {
                    self.metrics.drop(DropReason::RateLimited);
                    return;
                }
            }
        }
        let ruri = match msg.request_uri() {
            Some(Ok(u)) => u,
            _ => {
                self.answer(msg, peer, 400, "Bad Request (bad Request-URI)", &[]);
                return;
            }
        };
        if ruri.headers.is_some() && ruri.is_sip() {
            self.answer(msg, peer, 400, "Bad Request (bad Request-URI)", &[]);
            return;
        }
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
                self.answer(msg, peer, 200, "OK", &[("Allow", b"INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, PRACK, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, MESSAGE")]);
            } else {
                let ra = self.retry_after();
                self.answer(
                    msg,
                    peer,
                    503,
                    "Service Unavailable",
                    &[("Retry-After", &ra)],
                );
            }
            return;
        }
        if mf == Some(0) {
            self.answer(msg, peer, 483, "Too Many Hops", &[]);
            return;
        }
        if msg.header(HeaderName::ProxyRequire).is_some() {
            let unsupported: Vec<&[u8]> = msg.proxy_require().flatten().collect();
            if !unsupported.is_empty() {
                let list = unsupported.join(&b", "[..]);
                self.answer(msg, peer, 420, "Bad Extension", &[("Unsupported", &list)]);
                return;
            }
        }
        if matches!(ruri.scheme, Scheme::Other) {
            self.answer(msg, peer, 416, "Unsupported URI Scheme", &[]);
            return;
        }
        let lh = loop_hash(msg, &f);
        if self.looped(msg, lh) {
            self.metrics.loops_detected += 1;
            self.answer(msg, peer, 482, "Loop Detected", &[]);
            return;
        }
        let from_edge_u16 = from_edge.map(|e| e as u16);
        let (hops, new_dialog) = match self.route(msg, &f, from_edge_u16, f.to_tag.is_some()) {
            Ok(x) => x,
            Err((code, reason)) => {
                let resp = if code == 503 {
                    self.metrics.no_edge_503 += 1;
                    let ra = self.retry_after();
                    self.answer(msg, peer, code, reason, &[("Retry-After", &ra)])
                } else {
                    self.answer(msg, peer, code, reason, &[])
                };
                if method == Method::Invite {
                    // Through a server transaction (RFC 3261 16.3, 17.2.1):
                    // a retransmitted INVITE gets this answer again rather
                    // than a new try once an Edge is back, Timer G re-sends
                    // it and the ACK is absorbed.
                    let gen = self.next_gen();
                    let id = self.servers.insert(ServerTxn {
                        gen,
                        key: key.clone(),
                        method,
                        peer,
                        state: SState::Proceeding,
                        last_response: None,
                        client: None,
                        candidates: Vec::new(),
                        new_dialog: false,
                        from_edge: from_edge_u16,
                        cancelled: false,
                        loop_hash: lh,
                        g_interval: ms(self.cfg.timers.t1),
                        armed: Armed::default(),
                    });
                    self.server_index.insert(key, id);
                    self.server_final(now, id, resp, code, None);
                }
                return;
            }
        };
        if method == Method::Invite {
            self.answer(msg, peer, 100, "Trying", &[]);
        }
        self.metrics.transactions_created += 1;
        let gen = self.next_gen();
        let id = self.servers.insert(ServerTxn {
            gen,
            key: key.clone(),
            method,
            peer,
            state: SState::Proceeding,
            last_response: None,
            client: None,
            candidates: hops,
            new_dialog,
            from_edge: from_edge_u16,
            cancelled: false,
            loop_hash: lh,
            g_interval: ms(self.cfg.timers.t1),
            armed: Armed::default(),
        });
        self.server_index.insert(key, id);
        self.forward_next(now, id, Template::Incoming(msg, &f));
    }

    /// RFC 3261 16.3 step 4: a Via of ours whose branch carries this very
    /// request's loop hash means the request came back unchanged.
    fn looped(&self, msg: &Message, lh: u32) -> bool {
        msg.header_values(HeaderName::Via).any(|raw| {
            self.our_via_hosts
                .iter()
                .any(|h| memchr::memmem::find(raw, h).is_some())
                && Via::parse(raw).is_some_and(|v| {
                    self.is_our_via(&v)
                        && v.branch()
                            .and_then(crate::branch::parse)
                            .is_some_and(|b| b.id == self.branch_id && b.loop_hash == lh)
                })
        })
    }

    /// Picks the hops of a request: the Edges of a new dialog from the
    /// carrier, the carriers for a new dialog from an Edge, and for an
    /// in-dialog request the one hop its Route or its Call-ID names.
    #[allow(clippy::type_complexity)]
    fn route(
        &mut self,
        msg: &Message,
        f: &Facts<'_>,
        from_edge: Option<u16>,
        in_dialog: bool,
    ) -> Result<(Vec<Hop>, bool), (u16, &'static str)> {
        let call_id = f.call_id;
        // Our Record-Route comes back as the top Route(s).
        let mut route_edge = None;
        let mut next_route = None;
        if msg.header(HeaderName::Route).is_some() {
            for r in msg.routes().flatten() {
                let Ok(u) = r.parsed_uri() else { break };
                if self.is_our_uri(&u) {
                    if let Some(Some(e)) = u.param(EDGE_PARAM) {
                        route_edge = self.edges.by_name(e);
                    }
                } else {
                    next_route = Some(r.uri);
                    break;
                }
            }
        }
        let dialog = self.dialogs.get(call_id).copied();
        if in_dialog || route_edge.is_some() {
            let edge = route_edge.map(|e| e as u16).or(dialog.map(|d| d.edge));
            return match from_edge {
                None => match edge {
                    Some(e) => Ok((vec![Hop::Edge(e)], false)),
                    None => Err((481, "Call/Transaction Does Not Exist")),
                },
                Some(_) => {
                    let target = next_route.or(msg.request_uri_bytes());
                    let hop = self.hop_for_uri(target);
                    if self.is_ourselves(self.hop_addr(hop).0) {
                        return Err((482, "Loop Detected"));
                    }
                    Ok((vec![hop], false))
                }
            };
        }
        // A new INVITE whose Call-ID we know (re-sent with a new branch)
        // keeps its Edge while that Edge is healthy.
        if let Some(d) = dialog {
            if d.state != DialogState::Ended
                && !d.from_edge
                && from_edge.is_none()
                && self.edges.edges[d.edge as usize].healthy
            {
                return Ok((vec![Hop::Edge(d.edge)], true));
            }
        }
        if self.draining {
            return Err((503, "Service Unavailable"));
        }
        match from_edge {
            None => {
                let c = self.edges.candidates(call_id);
                if c.is_empty() {
                    return Err((503, "Service Unavailable"));
                }
                Ok((c.into_iter().map(Hop::Edge).collect(), true))
            }
            Some(_) => {
                if let Some(r) = next_route {
                    return Ok((vec![self.hop_for_uri(Some(r))], true));
                }
                if self.cfg.carriers.is_empty() {
                    return Err((503, "Service Unavailable"));
                }
                Ok((
                    (0..self.cfg.carriers.len() as u16)
                        .map(Hop::Carrier)
                        .collect(),
                    true,
                ))
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
                return Hop::Addr(addr, transport);
            }
        }
        Hop::Carrier(0)
    }

    fn record_route(&self, t: Transport, name: &str) -> String {
        let a = self.service_addr(t);
        format!(
            "<sip:{}:{};transport={};lr;tve={name}>",
            fmt_host(a.ip()),
            a.port(),
            t.param()
        )
    }

    /// Drops the candidate Edges of a new dialog that turned Unhealthy
    /// since its request came (they were picked then).
    fn prune_candidates(&mut self, id: usize) {
        let st = &mut self.servers[id];
        if st.new_dialog {
            let edges = &self.edges.edges;
            st.candidates
                .retain(|h| !matches!(h, Hop::Edge(e) if !edges[*e as usize].healthy));
        }
    }

    /// Sends the request of server transaction `id` to its next candidate,
    /// or answers it 503 when none is left.
    fn forward_next(&mut self, now: Instant, id: usize, template: Template<'_>) {
        self.prune_candidates(id);
        let st = &mut self.servers[id];
        let Some(hop) = (!st.candidates.is_empty()).then(|| st.candidates.remove(0)) else {
            let peer = st.peer;
            let ra = self.retry_after();
            self.metrics.no_edge_503 += 1;
            let extra: &[(&str, &[u8])] = &[("Retry-After", &ra)];
            let resp = match template {
                Template::Incoming(msg, _) => {
                    Some(self.answer(msg, peer, 503, "Service Unavailable", extra))
                }
                Template::Previous(prev, _) => {
                    self.answer_forwarded(&prev, peer, 503, "Service Unavailable", extra)
                }
            };
            if let Some(r) = resp {
                self.server_final(now, id, r, 503, None);
            }
            return;
        };
        let (dest, transport) = self.hop_addr(hop);
        let st = &self.servers[id];
        let (invite, new_dialog, src_transport, from_edge, peer, lh) = (
            st.method == Method::Invite,
            st.new_dialog,
            st.peer.transport,
            st.from_edge,
            st.peer,
            st.loop_hash,
        );
        let method = st.method;
        let dialog_edge = match hop {
            Hop::Edge(e) => Some(e),
            _ => from_edge,
        };
        let gen = self.next_gen();
        let slot = self.clients.vacant_key();
        let tx = {
            use std::hash::Hasher;
            let mut h = self.branch_key;
            h.write(&self.servers[id].key);
            h.write(&hop_tag(hop));
            h.finish()
        };
        let branch = crate::branch::make(self.branch_id, tx, lh);
        let ours = self.service_addr(transport);
        let via = format!(
            "SIP/2.0/{} {ours};branch={branch};rport",
            transport.via_name()
        );
        let rr = match (new_dialog && method.creates_dialog(), dialog_edge) {
            (true, Some(e)) => {
                let name = &self.edges.edges[e as usize].config.name;
                let mut v = vec![self.record_route(transport, name)];
                // Double Record-Route (RFC 5658) when the legs differ in transport.
                if src_transport != transport {
                    v.push(self.record_route(src_transport, name));
                }
                v
            }
            _ => vec![],
        };
        let mut call_id: Vec<u8> = Vec::new();
        let payload = match template {
            Template::Incoming(req, f) => {
                if new_dialog && method == Method::Invite {
                    call_id.extend_from_slice(f.call_id);
                }
                let mut ed = Editor::new(req);
                ed.push_via(via.as_bytes());
                // received when the sent-by is not the source (18.2.1), rport filled (RFC 3581).
                let source_ip = peer.addr.ip();
                let received = (f.via.host.ip().map(canonical) != Some(canonical(source_ip)))
                    .then_some(source_ip);
                let rport = f.via.rport().is_some().then_some(peer.addr.port());
                if received.is_some() || rport.is_some() {
                    ed.set_top_via_received(received, rport);
                }
                ed.set_max_forwards(f.max_forwards.map_or(70, |m| m.saturating_sub(1)));
                if req.header(HeaderName::Route).is_some() {
                    self.pop_our_routes(req, &mut ed);
                }
                for r in &rr {
                    ed.insert_record_route(r.as_bytes());
                }
                if method == Method::Register && from_edge.is_some() {
                    let supports_path = req
                        .header_values(HeaderName::Supported)
                        .any(|v| v.eq_ignore_ascii_case(b"path"));
                    if let (true, Some(e)) = (supports_path, from_edge) {
                        let name = self.edges.edges[e as usize].config.name.clone();
                        ed.add_header("Path", self.record_route(transport, &name).as_bytes());
                    }
                }
                let mut buf = BytesMut::with_capacity(ed.len());
                ed.write_to(&mut buf);
                buf.freeze()
            }
            Template::Previous(prev, rr_lines) => {
                let Ok(prev) = Message::parse(prev) else {
                    return;
                };
                if new_dialog && method == Method::Invite {
                    call_id.extend_from_slice(prev.call_id().unwrap_or_default());
                }
                let mut ed = Editor::new(&prev);
                ed.pop_via();
                ed.push_via(via.as_bytes());
                ed.remove_first_lines(HeaderName::RecordRoute, usize::from(rr_lines));
                for r in &rr {
                    ed.insert_record_route(r.as_bytes());
                }
                ed.to_bytes()
            }
        };
        if new_dialog && method == Method::Invite {
            if let Some(e) = dialog_edge {
                if self
                    .dialogs
                    .bind(now, &call_id, e, from_edge.is_some())
                    .is_err()
                {
                    let ra = self.retry_after();
                    if let Some(r) = self.answer_forwarded(
                        &payload,
                        peer,
                        503,
                        "Service Unavailable",
                        &[("Retry-After", &ra)],
                    ) {
                        self.server_final(now, id, r, 503, None);
                    }
                    return;
                }
            }
        }
        let sgen = self.servers[id].gen;
        let key = self.clients.insert(ClientTxn {
            gen,
            tx,
            server: Some((id, sgen)),
            hop,
            dest,
            transport,
            request: payload.clone(),
            rr_lines: rr.len() as u8,
            invite,
            state: CState::Trying,
            got_provisional: false,
            cancel: Cancel::None,
            ack: None,
            interval: ms(self.cfg.timers.t1),
            armed: Armed::default(),
        });
        debug_assert_eq!(key, slot);
        // A lingering client of an earlier, identical transaction loses
        // its entry: the new one takes the answers.
        self.by_branch.insert(tx, slot);
        self.servers[id].client = Some((slot, gen));
        self.send(dest, transport, None, payload);
        let t = self.cfg.timers;
        if !transport.is_reliable() {
            self.arm_client(slot, TimerKind::Retransmit, now + t.t1);
        }
        self.arm_client(slot, TimerKind::Timeout, now + t.t1 * 64);
        if invite {
            // Timer C runs from the moment the INVITE is proxied (RFC 3261
            // 16.6 step 11): a branch that only ever gets 100 ends too.
            self.arm_client(slot, TimerKind::TimerC, now + t.timer_c);
        }
        if invite && new_dialog {
            self.arm_client(slot, TimerKind::Failover, now + t.failover_after);
        }
    }

    /// Removes the top Route values that name us.
    fn pop_our_routes(&self, req: &Message, ed: &mut Editor<'_>) {
        let ours = req
            .routes()
            .map_while(|r| {
                r.ok()
                    .and_then(|r| r.parsed_uri().ok())
                    .filter(|u| self.is_our_uri(u))
            })
            .count();
        if ours == 1 {
            ed.pop_route();
        } else if ours > 1 {
            let rest: Vec<&[u8]> = req.header_values(HeaderName::Route).skip(ours).collect();
            ed.remove_header(HeaderName::Route);
            if !rest.is_empty() {
                ed.add_header("Route", &rest.join(&b", "[..]));
            }
        }
    }

    fn arm_client(&mut self, slot: usize, kind: TimerKind, at: Instant) {
        let c = &mut self.clients[slot];
        let ticket = c.armed.set(kind);
        let owner = Owner::Client {
            slot: slot as u32,
            gen: c.gen,
        };
        self.timers.push(at, owner, kind, ticket);
    }

    fn arm_server(&mut self, id: usize, kind: TimerKind, at: Instant) {
        let s = &mut self.servers[id];
        let ticket = s.armed.set(kind);
        let owner = Owner::Server {
            slot: id as u32,
            gen: s.gen,
        };
        self.timers.push(at, owner, kind, ticket);
    }

    /// Moves a server transaction to its state after a final response, and
    /// ends a new dialog that failed or a dialog whose BYE was answered.
    fn server_final(
        &mut self,
        now: Instant,
        id: usize,
        resp: Bytes,
        code: u16,
        call_id: Option<&[u8]>,
    ) {
        let t = self.cfg.timers;
        let st = &mut self.servers[id];
        st.candidates = Vec::new();
        let reliable = st.peer.transport.is_reliable();
        let ends_dialog = (st.method == Method::Invite && st.new_dialog && code >= 300)
            || st.method == Method::Bye;
        if st.method == Method::Invite {
            if (200..300).contains(&code) {
                st.state = SState::Accepted;
                // Timer L: 2xx retransmissions are forwarded for 64*T1.
                self.arm_server(id, TimerKind::ServerLinger, now + t.t1 * 64);
            } else {
                st.state = SState::Completed;
                st.last_response = Some(resp);
                st.g_interval = ms(t.t1);
                if !reliable {
                    self.arm_server(id, TimerKind::ServerRetransmit, now + t.t1);
                }
                // Timer H: wait for the ACK.
                self.arm_server(id, TimerKind::ServerLinger, now + t.t1 * 64);
            }
        } else {
            st.state = SState::Completed;
            st.last_response = Some(resp);
            // Timer J: absorb retransmissions (0 on reliable transports).
            let j = if reliable { Duration::ZERO } else { t.t1 * 64 };
            self.arm_server(id, TimerKind::ServerLinger, now + j);
        }
        if ends_dialog {
            match call_id {
                Some(cid) => self.dialogs.end(now, cid),
                None => {
                    if let Some(cid) = self.server_call_id(id) {
                        self.dialogs.end(now, &cid);
                    }
                }
            }
        }
    }

    /// The Call-ID of a server transaction, from its last answer.
    fn server_call_id(&self, id: usize) -> Option<Vec<u8>> {
        let r = self.servers[id].last_response.clone()?;
        Message::parse(r).ok()?.call_id().ok().map(<[u8]>::to_vec)
    }

    fn remove_client(&mut self, slot: usize) -> ClientTxn {
        let c = self.clients.remove(slot);
        if self.by_branch.get(&c.tx) == Some(&slot) {
            self.by_branch.remove(&c.tx);
        }
        c
    }

    fn remove_server(&mut self, id: usize) {
        if self.servers.contains(id) {
            let st = self.servers.remove(id);
            self.server_index.remove(&st.key);
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
        let key = server_key(msg, f);
        if let Some(&id) = self.server_index.get(&key) {
            let st = &mut self.servers[id];
            if st.state == SState::Completed && st.method == Method::Invite {
                st.state = SState::Confirmed;
                st.armed.clear(TimerKind::ServerRetransmit);
                let i = if st.peer.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    self.cfg.timers.t4
                };
                self.arm_server(id, TimerKind::ServerLinger, now + i);
            } else {
                self.metrics.retransmissions_absorbed += 1;
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
        let Ok((hops, _)) = self.route(msg, f, from_edge, true) else {
            self.metrics.drop(DropReason::StrayAck);
            return;
        };
        let (dest, transport) = self.hop_addr(hops[0]);
        if self.is_ourselves(dest) {
            self.metrics.loops_detected += 1;
            return;
        }
        // A stateless branch: the same ACK always gets the same one.
        let h = fnv1a(f.via.branch().unwrap_or(f.via.raw));
        let branch = crate::branch::make_stateless(self.branch_id, h);
        let ours = self.service_addr(transport);
        let mut ed = Editor::new(msg);
        ed.push_via(
            format!(
                "SIP/2.0/{} {ours};branch={branch};rport",
                transport.via_name()
            )
            .as_bytes(),
        );
        let source_ip = incoming.source.ip();
        if f.via.host.ip().map(canonical) != Some(canonical(source_ip)) {
            ed.set_top_via_received(Some(source_ip), None);
        }
        ed.set_max_forwards(f.max_forwards.map_or(70, |m| m.saturating_sub(1)));
        if msg.header(HeaderName::Route).is_some() {
            self.pop_our_routes(msg, &mut ed);
        }
        let payload = ed.to_bytes();
        self.send(dest, transport, None, payload);
    }

    fn on_cancel(&mut self, now: Instant, peer: Peer, msg: &Message, f: &Facts<'_>) {
        let key = server_key(msg, f);
        // CANCEL is answered at once either way (RFC 3261 16.10).
        let Some(&id) = self.server_index.get(&key) else {
            self.answer(msg, peer, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        self.answer(msg, peer, 200, "OK", &[]);
        let st = &mut self.servers[id];
        if st.state != SState::Proceeding || st.cancelled {
            return;
        }
        st.cancelled = true;
        st.candidates = Vec::new();
        if let Some((slot, gen)) = st.client {
            self.cancel_branch(now, slot, gen);
        }
    }

    /// CANCELs a client INVITE branch: at once when it had a provisional,
    /// else as soon as one comes (RFC 3261 section 9.1).
    fn cancel_branch(&mut self, now: Instant, slot: usize, gen: u32) {
        let Some(c) = self.clients.get_mut(slot).filter(|c| c.gen == gen) else {
            return;
        };
        if !c.invite
            || !matches!(c.cancel, Cancel::None)
            || matches!(c.state, CState::Completed | CState::Accepted)
        {
            return;
        }
        c.armed.clear(TimerKind::Failover);
        if !c.got_provisional {
            c.cancel = Cancel::Pending;
            return;
        }
        let Ok(req) = Message::parse(c.request.clone()) else {
            return;
        };
        let cancel = derived_request(&req, b"CANCEL", None);
        let (dest, transport) = (c.dest, c.transport);
        c.cancel = Cancel::Sent(cancel.clone());
        c.interval = ms(self.cfg.timers.t1);
        self.send(dest, transport, None, cancel);
        if !transport.is_reliable() {
            let t1 = self.cfg.timers.t1;
            self.arm_client(slot, TimerKind::CancelRetransmit, now + t1);
        }
    }

    // ----- responses ----------------------------------------------------

    fn on_response(&mut self, now: Instant, msg: &Message) {
        let code = msg.status().unwrap_or(0);
        self.metrics.responses_in[class(code)] += 1;
        let Ok(f) = common_facts(msg) else {
            self.metrics.drop(DropReason::BadResponse);
            return;
        };
        let parsed = f
            .via
            .branch()
            .and_then(crate::branch::parse)
            .filter(|b| b.id == self.branch_id);
        let Some(b) = parsed else {
            // Not our transaction: maybe one of the peer host's, in flight
            // when it died. Forward it statelessly by its Via.
            if self.is_our_via(&f.via) {
                return self.forward_stateless_response(msg);
            }
            self.metrics.drop(DropReason::Unmatched);
            return;
        };
        let Some(&slot) = self.by_branch.get(&b.tx) else {
            // Ours but no transaction here: the peer host's, in flight when
            // it died, or one of ours that ended (a stray 2xx, RFC 6026).
            // Either way it goes on by its Via; the carrier's transaction
            // absorbs what it has seen.
            if self.is_our_via(&f.via) {
                return self.forward_stateless_response(msg);
            }
            self.metrics.retransmissions_absorbed += 1;
            return;
        };
        if f.cseq.method == Method::Cancel {
            // The answer to our CANCEL: stop retransmitting it.
            let c = &mut self.clients[slot];
            if matches!(c.cancel, Cancel::Sent(_)) {
                c.cancel = Cancel::Answered;
                c.armed.clear(TimerKind::CancelRetransmit);
            }
            return;
        }
        self.client_response(now, slot, msg, &f, code);
    }

    fn forward_stateless_response(&mut self, msg: &Message) {
        let mut vias = msg.vias();
        let _ours = vias.next();
        let Some(Ok(next)) = vias.next() else {
            self.metrics.drop(DropReason::BadNextHop);
            return;
        };
        let Some(dest) = via_destination(&next) else {
            self.metrics.drop(DropReason::BadNextHop);
            return;
        };
        let transport = Transport::from_param(next.transport).unwrap_or(Transport::Udp);
        let mut ed = Editor::new(msg);
        ed.pop_via();
        let payload = ed.to_bytes();
        self.send(dest, transport, None, payload);
    }

    fn client_response(
        &mut self,
        now: Instant,
        slot: usize,
        msg: &Message,
        f: &Facts<'_>,
        code: u16,
    ) {
        let t = self.cfg.timers;
        let c = &mut self.clients[slot];
        let server = c.server;
        // Any response stops request retransmission and the failover clock.
        c.armed.clear(TimerKind::Retransmit);
        c.armed.clear(TimerKind::Failover);
        if code < 200 {
            return self.client_provisional(now, slot, msg, f, code);
        }
        let invite = c.invite;
        let state = c.state;
        c.armed.clear(TimerKind::TimerC);
        c.armed.clear(TimerKind::Timeout);
        if matches!(state, CState::Completed | CState::Accepted) {
            // A retransmitted final: ACK again, forward a 2xx again.
            if let Some(ack) = c.ack.clone() {
                let (d, tr) = (c.dest, c.transport);
                self.send(d, tr, None, ack);
            }
            if state == CState::Accepted && (200..300).contains(&code) && server.is_some() {
                self.relay_up(now, server, msg, f, code);
            } else {
                self.metrics.retransmissions_absorbed += 1;
            }
            return;
        }
        if invite && (200..300).contains(&code) {
            c.state = CState::Accepted;
            // Timer M: 2xx retransmissions are still forwarded.
            self.arm_client(slot, TimerKind::ClientLinger, now + t.t1 * 64);
            if server.is_none() {
                self.ghost_2xx(now, slot, msg);
            } else {
                self.dialogs.confirm(now, f.call_id);
                self.relay_up(now, server, msg, f, code);
            }
            self.clients[slot].request = Bytes::new();
            return;
        }
        if invite {
            // Hop-by-hop ACK for a non-2xx final.
            if let Ok(req) = Message::parse(c.request.clone()) {
                let ack = derived_request(&req, b"ACK", msg.header(HeaderName::To));
                let (d, tr) = (c.dest, c.transport);
                c.ack = Some(ack.clone());
                self.send(d, tr, None, ack);
            }
            let c = &mut self.clients[slot];
            c.state = CState::Completed;
            // Timer D: absorb final retransmissions.
            let d = if c.transport.is_reliable() {
                Duration::ZERO
            } else {
                Duration::from_secs(32)
            };
            self.arm_client(slot, TimerKind::ClientLinger, now + d);
        } else {
            c.state = CState::Completed;
            let k = if c.transport.is_reliable() {
                Duration::ZERO
            } else {
                t.t4
            };
            self.arm_client(slot, TimerKind::ClientLinger, now + k);
        }
        let request = std::mem::take(&mut self.clients[slot].request);
        let rr_lines = self.clients[slot].rr_lines;
        let Some((sid, sgen)) = server else { return };
        if self.servers.get(sid).is_none_or(|s| s.gen != sgen) {
            return;
        }
        // 503 on a new dialog: the next Edge, if any.
        let hop = self.clients[slot].hop;
        let st = &self.servers[sid];
        if code == 503 && st.new_dialog && !st.cancelled && st.state == SState::Proceeding {
            if let Hop::Edge(e) = hop {
                self.events
                    .push_back(Event::EdgeFailure { edge: e as usize });
            }
            self.metrics.failovers += 1;
            self.servers[sid].client = None;
            self.clients[slot].server = None;
            self.forward_next(now, sid, Template::Previous(request, rr_lines));
            return;
        }
        self.relay_up(now, server, msg, f, code);
    }

    fn client_provisional(
        &mut self,
        now: Instant,
        slot: usize,
        msg: &Message,
        f: &Facts<'_>,
        code: u16,
    ) {
        let t = self.cfg.timers;
        let c = &mut self.clients[slot];
        let server = c.server;
        if c.state == CState::Trying {
            c.state = CState::Proceeding;
        }
        if c.invite {
            // Timer B runs in Calling only; Timer C takes over.
            c.armed.clear(TimerKind::Timeout);
        } else if !c.transport.is_reliable() {
            // Non-INVITE: Timer E goes on at T2 in Proceeding.
            c.interval = ms(t.t2);
            self.arm_client(slot, TimerKind::Retransmit, now + t.t2);
        }
        let c = &mut self.clients[slot];
        if code == 100 || !c.invite {
            if code > 100 && server.is_some() {
                self.relay_up(now, server, msg, f, code);
            }
            return;
        }
        c.got_provisional = true;
        self.arm_client(slot, TimerKind::TimerC, now + t.timer_c);
        let gen = self.clients[slot].gen;
        if matches!(self.clients[slot].cancel, Cancel::Pending) {
            self.clients[slot].cancel = Cancel::None;
            self.cancel_branch(now, slot, gen);
        }
        match server {
            // A ghost branch that rings: CANCEL it.
            None => {
                if matches!(self.clients[slot].cancel, Cancel::None) {
                    self.metrics.ghost_cancels += 1;
                }
                self.cancel_branch(now, slot, gen);
            }
            Some(_) => self.relay_up(now, server, msg, f, code),
        }
    }

    /// Forwards a response upstream on its server transaction.
    fn relay_up(
        &mut self,
        now: Instant,
        server: Option<(usize, u32)>,
        msg: &Message,
        f: &Facts<'_>,
        code: u16,
    ) {
        let Some((sid, sgen)) = server else { return };
        let Some(st) = self.servers.get(sid).filter(|s| s.gen == sgen) else {
            return;
        };
        let (peer, state) = (st.peer, st.state);
        // After a final answer only 2xx retransmissions of an INVITE pass.
        if state != SState::Proceeding && !(state == SState::Accepted && (200..300).contains(&code))
        {
            self.metrics.retransmissions_absorbed += 1;
            return;
        }
        let mut ed = Editor::new(msg);
        ed.pop_via();
        let payload = ed.to_bytes();
        self.send(peer.addr, peer.transport, peer.connection, payload.clone());
        if code >= 200 && state == SState::Proceeding {
            self.server_final(now, sid, payload, code, Some(f.call_id));
        }
    }

    /// A 2xx on an abandoned branch: ACK it and hang up, so no ghost call
    /// stays up on that Edge.
    fn ghost_2xx(&mut self, now: Instant, slot: usize, resp: &Message) {
        let ours = self.service_addr(self.clients[slot].transport);
        let c = &mut self.clients[slot];
        let Ok(req) = Message::parse(c.request.clone()) else {
            return;
        };
        let (dest, transport) = (c.dest, c.transport);
        let target = resp
            .contacts()
            .next()
            .and_then(|c| c.ok().flatten())
            .map(|c| c.uri.to_vec())
            .unwrap_or_else(|| req.request_uri_bytes().unwrap_or_default().to_vec());
        let to = resp.header(HeaderName::To).unwrap_or_default();
        let seq = req.cseq().map(|c| c.seq).unwrap_or(1);
        let lh = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().and_then(crate::branch::parse))
            .map_or(0, |b| b.loop_hash);
        let mk = |branch: &str, method: &[u8], seq: u32| {
            let mut b = Builder::request(method, &target);
            b.push(
                "Via",
                format!(
                    "SIP/2.0/{} {ours};branch={branch};rport",
                    transport.via_name()
                )
                .as_bytes(),
            );
            b.push("Max-Forwards", b"70");
            b.copy_from(&req, HeaderName::From);
            b.push("To", to);
            b.copy_from(&req, HeaderName::CallId);
            b.push_display(
                "CSeq",
                format_args!("{seq} {}", String::from_utf8_lossy(method)),
            );
            b.finish()
        };
        let ack_branch = crate::branch::make_stateless(self.branch_id, fnv1a(&c.request));
        let ack = mk(&ack_branch, b"ACK", seq);
        c.ack = Some(ack.clone());
        self.send(dest, transport, None, ack);
        // The BYE is a client transaction of our own.
        let gen = self.next_gen();
        let bslot = self.clients.vacant_key();
        let tx = {
            use std::hash::Hasher;
            let mut h = self.branch_key;
            h.write(b"ghost BYE");
            h.write(&self.cfg.instance.to_le_bytes());
            h.write(&(bslot as u64).to_le_bytes());
            h.write(&gen.to_le_bytes());
            h.finish()
        };
        let branch = crate::branch::make(self.branch_id, tx, lh);
        let bye = mk(&branch, b"BYE", seq.wrapping_add(1));
        let hop = self.clients[slot].hop;
        self.by_branch.insert(tx, bslot);
        self.clients.insert(ClientTxn {
            gen,
            tx,
            server: None,
            hop,
            dest,
            transport,
            request: bye.clone(),
            rr_lines: 0,
            invite: false,
            state: CState::Trying,
            got_provisional: false,
            cancel: Cancel::None,
            ack: None,
            interval: ms(self.cfg.timers.t1),
            armed: Armed::default(),
        });
        self.metrics.ghost_byes += 1;
        self.send(dest, transport, None, bye);
        let t = self.cfg.timers;
        if !transport.is_reliable() {
            self.arm_client(bslot, TimerKind::Retransmit, now + t.t1);
        }
        self.arm_client(bslot, TimerKind::Timeout, now + t.t1 * 64);
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
            .clients
            .iter()
            .filter(|(_, c)| {
                c.dest == dest && c.transport == transport && matches!(c.state, CState::Trying)
            })
            .map(|(k, _)| k)
            .collect();
        for slot in hit {
            self.branch_failed(now, slot);
        }
    }

    /// A branch that gave nothing: abandon it and try the next hop.
    fn branch_failed(&mut self, now: Instant, slot: usize) {
        let c = &mut self.clients[slot];
        c.armed.clear(TimerKind::Failover);
        let hop = c.hop;
        let invite = c.invite;
        let Some((sid, sgen)) = c.server else { return };
        if let Hop::Edge(e) = hop {
            self.events
                .push_back(Event::EdgeFailure { edge: e as usize });
        }
        let Some(st) = self.servers.get(sid).filter(|s| s.gen == sgen) else {
            return;
        };
        if st.cancelled || st.state != SState::Proceeding || !st.new_dialog {
            return;
        }
        self.prune_candidates(sid);
        let st = &self.servers[sid];
        if st.candidates.is_empty() && invite {
            // Nobody else to try: let this branch run to Timer B.
            return;
        }
        self.metrics.failovers += 1;
        // Abandoned: late answers are CANCELled or hung up.
        self.clients[slot].server = None;
        self.servers[sid].client = None;
        let (prev, rr) = (
            self.clients[slot].request.clone(),
            self.clients[slot].rr_lines,
        );
        self.forward_next(now, sid, Template::Previous(prev, rr));
    }

    // ----- timers -------------------------------------------------------

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some((owner, kind, ticket)) = self.timers.pop_due(now) {
            match owner {
                Owner::Sweep => {
                    self.dialogs.sweep(now);
                    self.limiter.sweep(now);
                    self.timers
                        .push(now + SWEEP_EVERY, Owner::Sweep, TimerKind::ServerLinger, 0);
                }
                Owner::Client { slot, gen } => {
                    let slot = slot as usize;
                    let live = self
                        .clients
                        .get_mut(slot)
                        .filter(|c| c.gen == gen)
                        .is_some_and(|c| c.armed.take_if(kind, ticket));
                    if live {
                        self.client_timer(now, slot, kind);
                    }
                }
                Owner::Server { slot, gen } => {
                    let id = slot as usize;
                    let live = self
                        .servers
                        .get_mut(id)
                        .filter(|s| s.gen == gen)
                        .is_some_and(|s| s.armed.take_if(kind, ticket));
                    if live {
                        self.server_timer(now, id, kind);
                    }
                }
            }
        }
    }

    fn client_timer(&mut self, now: Instant, slot: usize, kind: TimerKind) {
        let t = self.cfg.timers;
        match kind {
            TimerKind::Retransmit => {
                let c = &mut self.clients[slot];
                let (d, tr, r) = (c.dest, c.transport, c.request.clone());
                c.interval = if c.invite {
                    c.interval * 2
                } else {
                    (c.interval * 2).min(ms(t.t2))
                };
                let next = now + Duration::from_millis(c.interval.into());
                self.metrics.retransmissions_sent += 1;
                self.send(d, tr, None, r);
                self.arm_client(slot, TimerKind::Retransmit, next);
            }
            TimerKind::CancelRetransmit => {
                let c = &mut self.clients[slot];
                if let Cancel::Sent(request) = &c.cancel {
                    c.interval = (c.interval * 2).min(ms(t.t2));
                    let next = now + Duration::from_millis(c.interval.into());
                    let (d, tr, r) = (c.dest, c.transport, request.clone());
                    self.metrics.retransmissions_sent += 1;
                    self.send(d, tr, None, r);
                    self.arm_client(slot, TimerKind::CancelRetransmit, next);
                }
            }
            TimerKind::Failover => {
                // Silence means a dead Edge only if the Edge is silent: one
                // that answered anything since this INVITE left is alive
                // and busy, and failing over would add load exactly when
                // there is too much (a retry storm). Its INVITE waits for
                // Timer A's retransmission and Timer B instead; a dead Edge
                // still fails over now, and a 503 at once.
                let alive = match self.clients[slot].hop {
                    Hop::Edge(e) => self.edges.edges[e as usize]
                        .last_heard
                        .is_some_and(|t| t + self.cfg.timers.failover_after > now),
                    _ => false,
                };
                if alive {
                    self.metrics.failovers_held += 1;
                } else {
                    self.branch_failed(now, slot);
                }
            }
            TimerKind::TimerC => {
                if self.clients[slot].got_provisional {
                    // Ringing too long: CANCEL it; the 487 ends the call.
                    let gen = self.clients[slot].gen;
                    self.cancel_branch(now, slot, gen);
                    self.arm_client(slot, TimerKind::Timeout, now + t.t1 * 64);
                } else {
                    // Nothing but 100: as if the branch timed out (16.8).
                    self.client_timer(now, slot, TimerKind::Timeout);
                }
            }
            TimerKind::Timeout => {
                // Timer B or F: no final answer. 408 upstream (RFC 3261
                // 16.8), or the next Edge first for a new dialog.
                let c = self.remove_client(slot);
                let Some((sid, sgen)) = c.server else { return };
                let Some(st) = self.servers.get(sid).filter(|s| s.gen == sgen) else {
                    return;
                };
                if st.state != SState::Proceeding {
                    return;
                }
                if let Hop::Edge(e) = c.hop {
                    if !c.got_provisional {
                        self.events
                            .push_back(Event::EdgeFailure { edge: e as usize });
                    }
                }
                let cancelled = st.cancelled;
                if st.new_dialog && !cancelled && !st.candidates.is_empty() {
                    self.metrics.failovers += 1;
                    self.servers[sid].client = None;
                    self.forward_next(now, sid, Template::Previous(c.request, c.rr_lines));
                    return;
                }
                let peer = st.peer;
                let (code, reason) = if cancelled {
                    (487, "Request Terminated")
                } else {
                    (408, "Request Timeout")
                };
                if let Some(r) = self.answer_forwarded(&c.request, peer, code, reason, &[]) {
                    self.server_final(now, sid, r, code, None);
                }
            }
            TimerKind::ClientLinger => {
                self.remove_client(slot);
            }
            _ => {}
        }
    }

    fn server_timer(&mut self, now: Instant, id: usize, kind: TimerKind) {
        let t = self.cfg.timers;
        match kind {
            TimerKind::ServerRetransmit => {
                let st = &mut self.servers[id];
                if st.state != SState::Completed {
                    return;
                }
                st.g_interval = (st.g_interval * 2).min(ms(t.t2));
                let next = now + Duration::from_millis(st.g_interval.into());
                if let Some(r) = st.last_response.clone() {
                    let p = st.peer;
                    self.metrics.retransmissions_sent += 1;
                    self.send(p.addr, p.transport, p.connection, r);
                }
                self.arm_server(id, TimerKind::ServerRetransmit, next);
            }
            TimerKind::ServerLinger => self.remove_server(id),
            _ => {}
        }
    }

    /// Approximate bytes held by live transactions (buffers included).
    pub(crate) fn transaction_bytes(&self) -> usize {
        let s: usize = self
            .servers
            .iter()
            .map(|(_, s)| {
                std::mem::size_of::<ServerTxn>()
                    + s.key.len()
                    + s.last_response.as_ref().map_or(0, Bytes::len)
                    + s.candidates.capacity() * std::mem::size_of::<Hop>()
            })
            .sum();
        let c: usize = self
            .clients
            .iter()
            .map(|(_, c)| {
                std::mem::size_of::<ClientTxn>()
                    + c.request.len()
                    + c.ack.as_ref().map_or(0, Bytes::len)
            })
            .sum();
        s + c + self.server_index.len() * (std::mem::size_of::<(Box<[u8]>, usize)>() + 1)
    }

    /// Sources the rate limiter tracks.
    pub(crate) fn limited_sources(&self) -> usize {
        self.limiter.sources()
    }

    pub(crate) fn timers_len(&self) -> usize {
        self.timers.len()
    }
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
        Hop::Addr(a, tr) => {
            t[0] = 3 + tr as u8;
            match a.ip() {
                IpAddr::V4(v) => t[1..5].copy_from_slice(&v.octets()),
                IpAddr::V6(v) => t[1..17].copy_from_slice(&v.octets()),
            }
            t[17..19].copy_from_slice(&a.port().to_le_bytes());
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

/// CANCEL or ACK built from the INVITE we sent (RFC 3261 9.1, 17.1.1.3):
/// same Request-URI, our top Via only, same From, Call-ID, CSeq number and
/// Route; To from the response for an ACK.
fn derived_request(invite: &Message, method: &[u8], to: Option<&[u8]>) -> Bytes {
    let mut b = Builder::request(method, invite.request_uri_bytes().unwrap_or_default());
    if let Some(v) = invite.header_values(HeaderName::Via).next() {
        b.push("Via", v);
    }
    b.push("Max-Forwards", b"70");
    b.copy_from(invite, HeaderName::From);
    match to {
        Some(t) => b.push("To", t),
        None => b.copy_from(invite, HeaderName::To),
    }
    b.copy_from(invite, HeaderName::CallId);
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
    b.push_display(
        "CSeq",
        format_args!("{seq} {}", String::from_utf8_lossy(method)),
    );
    b.copy_from(invite, HeaderName::Route);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_structs_stay_small() {
        let (s, c, h) = (
            std::mem::size_of::<ServerTxn>(),
            std::mem::size_of::<ClientTxn>(),
            std::mem::size_of::<Hop>(),
        );
        eprintln!("ServerTxn {s} ClientTxn {c} Hop {h}");
        assert!(s <= 256 && c <= 256, "ServerTxn {s} ClientTxn {c}");
    }
}
