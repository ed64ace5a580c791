//! TCP and TLS connections.
//!
//! Every connection, the peer's or ours, has one task that reads, frames
//! with [`StreamDecoder`], answers RFC 5626 CRLF keep-alives, and writes
//! what the workers queue for it. The [`Registry`] finds a connection by
//! its [`ConnectionId`] (responses go back on the connection the request
//! came on) or by the peer's address: the address it connects from, and
//! the Via sent-by of its requests when they carry `alias` (RFC 5923), so
//! in-dialog requests toward a peer reuse the connection it opened. A
//! message for a peer with no connection opens one (from the service
//! address, or from `host_address` for health probes); if that fails, the
//! workers hear of it through `Core::connection_failed`.
//!
//! # Limits (`[limits]`), and why this shape
//!
//! The goal is that the carrier's own connection gets in whatever else is
//! connecting, and that no peer can make us hold unbounded memory.
//!
//! - `carrier.allow` is checked at accept, before a TLS handshake costs
//!   any CPU.
//! - An inbound connection is *handshaking* until it has delivered one
//!   complete SIP message (a TLS connection does its TLS handshake first).
//!   Handshaking connections have a pool of their own,
//!   `max_handshaking`; when it is full one is closed to make room: of
//!   the least advanced (nothing yet; then a whole TLS ClientHello or, on
//!   TCP, some bytes; then a TLS handshake done), among the
//!   [`EVICT_SCAN`] oldest of them, the one whose source holds the most
//!   connections, else the oldest. So half-open TLS connections and silent
//!   senders push each other out, not a carrier whose ClientHello came
//!   whole (it sends it at once, and it is often there at accept).
//! - A connection that delivered a message is *established* and counts
//!   against `max_connections`.
//! - Per source (an IPv4 address, or an IPv6 /64, which one host usually
//!   owns whole) handshaking and established connections together are
//!   capped by `max_connections_per_source`, below the total, so one host
//!   cannot hold every slot.
//! - The hosts the configuration names (the Edges and the `carrier.uris`
//!   hosts) are never evicted and not counted against `max_connections`
//!   or `max_handshaking`: a flood from elsewhere cannot starve them.
//!   They keep the per-source cap, which bounds what they can hold too.
//! - Over a cap the connection is accepted and reset at once (no
//!   TIME_WAIT on our side), counted in
//!   `trunkvip_connections_refused_total`, and logged once per source a
//!   minute, not once per connection.
//! - Time: `handshake_timeout` bounds the TLS handshake (and our own
//!   connects); `message_timeout` bounds one message from its first byte
//!   to its last (a slow sender cannot hold a connection by dribbling);
//!   `idle_timeout` closes a connection with no traffic either way; a
//!   write stalled [`WRITE_STALL`] closes it too (a peer that does not
//!   read).
//! - Memory: the framer holds at most `max_buffered_bytes` of a message;
//!   a longer one closes the connection. What waits to be written to one
//!   connection is capped by `max_queued_bytes`; more is dropped. Each
//!   closing for a limit is counted in `trunkvip_connections_closed_total`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{rustls, LazyConfigAcceptor};
use tracing::{debug, info, warn};
use trunkvip_proxy::{ConnectionId, Incoming, Origin, Transmit, Transport};
use trunkvip_sip::{ErrorKind, Frame, Message, StreamDecoder};

use super::Transports;
use crate::worker::Control;

/// A write that makes no progress this long closes the connection: 64*T1,
/// by when every transaction it carried has timed out anyway.
pub const WRITE_STALL: Duration = Duration::from_secs(32);
/// Messages queued for one connection before new ones are dropped (the
/// byte cap, `max_queued_bytes`, usually comes first).
const QUEUE: usize = 4096;
/// Addresses one connection may answer for: where it connects from and
/// a few RFC 5923 aliases (a peer has one listening port, rarely more).
const MAX_KEYS: usize = 8;
/// A source is logged again, for the same reason, after this long.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Sources remembered for that; beyond, one line a minute for them all.
const LOG_SOURCES: usize = 256;
/// How many of the oldest handshaking connections an eviction looks at:
/// bounded work per accept, whatever `max_handshaking`.
pub const EVICT_SCAN: usize = 64;

/// The `[limits]` of TCP and TLS connections. The defaults are what we
/// ship: a trunk has a few carriers and Edges, each with a few
/// connections, so these leave room for a hundredfold of that while
/// bounding memory and descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Established inbound connections, all sources but the configured
    /// hosts.
    pub max_connections: usize,
    /// Inbound connections, handshaking or established, from one source
    /// (an IPv4 address or an IPv6 /64).
    pub max_connections_per_source: usize,
    /// Inbound connections that have not yet delivered a SIP message;
    /// the oldest is evicted when a new one arrives on a full pool.
    pub max_handshaking: usize,
    /// The TLS handshake, and our TCP connect, each direction.
    pub handshake_timeout: Duration,
    /// One message, from its first byte to its last.
    pub message_timeout: Duration,
    /// No traffic either way.
    pub idle_timeout: Duration,
    /// The longest message read from a connection.
    pub max_buffered_bytes: usize,
    /// Bytes waiting to be written to one connection.
    pub max_queued_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_connections: 2048,
            max_connections_per_source: 64,
            max_handshaking: 256,
            handshake_timeout: Duration::from_secs(5),
            message_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            // The SIP parser's own default for one message.
            max_buffered_bytes: 64 * 1024,
            max_queued_bytes: 1024 * 1024,
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    CarrierAllow,
    MaxConnections,
    PerSource,
}

impl Refusal {
    const ALL: [Refusal; 3] = [
        Refusal::CarrierAllow,
        Refusal::MaxConnections,
        Refusal::PerSource,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::CarrierAllow => "carrier_allow",
            Refusal::MaxConnections => "max_connections",
            Refusal::PerSource => "max_connections_per_source",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Refusal::CarrierAllow => "not in carrier.allow",
            Refusal::MaxConnections => "limits.max_connections reached",
            Refusal::PerSource => "limits.max_connections_per_source reached for this source",
        }
    }
}

/// Why a connection was closed by a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    HandshakeTimeout,
    HandshakeFailed,
    HandshakeEvicted,
    MessageTimeout,
    IdleTimeout,
    MaxBufferedBytes,
    FramingError,
    WriteStalled,
}

impl Close {
    const ALL: [Close; 8] = [
        Close::HandshakeTimeout,
        Close::HandshakeFailed,
        Close::HandshakeEvicted,
        Close::MessageTimeout,
        Close::IdleTimeout,
        Close::MaxBufferedBytes,
        Close::FramingError,
        Close::WriteStalled,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Close::HandshakeTimeout => "handshake_timeout",
            Close::HandshakeFailed => "handshake_failed",
            Close::HandshakeEvicted => "handshake_evicted",
            Close::MessageTimeout => "message_timeout",
            Close::IdleTimeout => "idle_timeout",
            Close::MaxBufferedBytes => "max_buffered_bytes",
            Close::FramingError => "framing_error",
            Close::WriteStalled => "write_stalled",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Close::HandshakeTimeout => "TLS handshake not done within limits.handshake_timeout",
            Close::HandshakeFailed => "TLS handshake failed",
            Close::HandshakeEvicted => {
                "evicted, still handshaking, to make room (limits.max_handshaking)"
            }
            Close::MessageTimeout => "a message did not arrive whole within limits.message_timeout",
            Close::IdleTimeout => "idle for limits.idle_timeout",
            Close::MaxBufferedBytes => "a message longer than limits.max_buffered_bytes",
            Close::FramingError => "framing lost",
            Close::WriteStalled => "the peer does not read: a write stalled",
        }
    }
}

/// Index of a stream transport in the counters.
fn tix(t: Transport) -> usize {
    usize::from(t == Transport::Tls)
}

const STREAMS: [Transport; 2] = [Transport::Tcp, Transport::Tls];

/// What sources are counted by: an IPv4 address, an IPv6 /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => {
            let s = a.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Whether to log an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Log {
    Quiet,
    /// About this source.
    Source,
    /// About this source and every other one this minute: too many to
    /// tell apart.
    Spray,
}

/// Who may be logged now: once per source and reason a minute.
#[derive(Debug, Default)]
struct LogLimiter {
    seen: HashMap<(IpAddr, &'static str), std::time::Instant>,
    swept: Option<std::time::Instant>,
    overflow: HashMap<&'static str, std::time::Instant>,
}

impl LogLimiter {
    fn allow(&mut self, source: IpAddr, what: &'static str) -> Log {
        let now = std::time::Instant::now();
        let recent = |t: &std::time::Instant| now.duration_since(*t) < LOG_EVERY;
        if self.seen.get(&(source, what)).is_some_and(recent) {
            return Log::Quiet;
        }
        let swept_lately = self
            .swept
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
        if self.seen.len() >= LOG_SOURCES && !swept_lately {
            self.seen.retain(|_, t| recent(t));
            self.swept = Some(now);
        }
        if self.seen.len() >= LOG_SOURCES {
            // A spray from more sources than we remember: one line a
            // minute for all of them.
            if self.overflow.get(what).is_some_and(recent) {
                return Log::Quiet;
            }
            self.overflow.insert(what, now);
            return Log::Spray;
        }
        self.seen.insert((source, what), now);
        Log::Source
    }
}

#[derive(Debug, Default)]
struct AdmissionState {
    /// Inbound connections by source key, handshaking and established.
    per_source: HashMap<IpAddr, usize>,
    /// Established, not from a configured host.
    established: usize,
    /// Handshaking, not from a configured host, by age.
    pending: BTreeMap<u64, Pending>,
    /// The same, by [`Progress`], oldest first.
    by_progress: [BTreeSet<u64>; 3],
    next: u64,
    log: LogLimiter,
}

#[derive(Debug)]
struct Pending {
    evict: oneshot::Sender<()>,
    ip: IpAddr,
    transport: Transport,
    progress: Progress,
}

/// How far a handshaking connection got: who is evicted first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    Nothing,
    /// A whole TLS ClientHello; on TCP, some bytes.
    Started,
    /// The TLS handshake done.
    Handshaken,
}

impl AdmissionState {
    /// Which handshaking connection makes room: see the module doc.
    fn victim(&self) -> Option<u64> {
        let level = self.by_progress.iter().find(|l| !l.is_empty())?;
        level
            .iter()
            .take(EVICT_SCAN)
            .min_by_key(|&&seq| {
                let held = self
                    .pending
                    .get(&seq)
                    .and_then(|p| self.per_source.get(&source_key(p.ip)));
                (std::cmp::Reverse(held.copied()), seq)
            })
            .copied()
    }

    fn add_pending(&mut self, seq: u64, p: Pending) {
        self.by_progress[p.progress as usize].insert(seq);
        self.pending.insert(seq, p);
    }

    fn take_pending(&mut self, seq: u64) -> Option<Pending> {
        let p = self.pending.remove(&seq)?;
        self.by_progress[p.progress as usize].remove(&seq);
        Some(p)
    }

    fn set_progress(&mut self, seq: u64, to: Progress) {
        if let Some(p) = self.pending.get_mut(&seq) {
            self.by_progress[p.progress as usize].remove(&seq);
            p.progress = to;
            self.by_progress[to as usize].insert(seq);
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    refused: [[AtomicU64; 3]; 2],
    closed: [[AtomicU64; 8]; 2],
    queue_dropped: [AtomicU64; 2],
}

/// Admission of inbound connections, and the counters of every limit.
#[derive(Debug)]
pub struct Admission {
    limits: StreamLimits,
    /// The Edges' and `carrier.uris` hosts' addresses; a carrier name
    /// looked up again replaces its part ([`Admission::set_trusted`]).
    trusted: std::sync::RwLock<HashSet<IpAddr>>,
    state: Mutex<AdmissionState>,
    counters: Counters,
}

/// Where an admitted connection stands.
#[derive(Debug)]
enum Stage {
    Pending(u64),
    Established,
    /// Only the per-source count to give back: a configured host, or a
    /// connection refused at its first message.
    Uncounted,
}

/// An admitted inbound connection; dropping it gives its slot back.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    transport: Transport,
    stage: Stage,
    /// Fires when evicted from the handshaking pool.
    evict: Option<oneshot::Receiver<()>>,
    /// Progress noted in the pool already.
    progress: Progress,
}

/// The outcome of a connection's first message.
#[derive(Debug, PartialEq, Eq)]
enum Promotion {
    Done,
    Evicted,
    Full,
}

impl Admission {
    pub fn new(limits: StreamLimits, trusted: impl IntoIterator<Item = IpAddr>) -> Self {
        Admission {
            limits,
            trusted: std::sync::RwLock::new(trusted.into_iter().collect()),
            state: Mutex::new(AdmissionState::default()),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AdmissionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let t = self.trusted.read().unwrap_or_else(|e| e.into_inner());
        t.contains(&ip)
    }

    /// The configured hosts' addresses from now on (the Edges and the
    /// carriers' current targets). Connections already admitted keep the
    /// slot they were counted in.
    pub fn set_trusted(&self, ips: impl IntoIterator<Item = IpAddr>) {
        let new = ips.into_iter().collect();
        *self.trusted.write().unwrap_or_else(|e| e.into_inner()) = new;
    }

    /// Admits a connection from `ip`, or counts and logs why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, transport: Transport) -> Option<Ticket> {
        let key = source_key(ip);
        let trusted = self.is_trusted(ip);
        let mut evicted = None;
        let mut st = self.lock();
        let n = st.per_source.get(&key).copied().unwrap_or(0);
        let refusal = if n >= self.limits.max_connections_per_source {
            Some(Refusal::PerSource)
        } else if !trusted && st.established >= self.limits.max_connections {
            Some(Refusal::MaxConnections)
        } else {
            None
        };
        if let Some(r) = refusal {
            let log = st.log.allow(key, r.name());
            drop(st);
            self.count_refusal(ip, transport, r, log);
            return None;
        }
        if !trusted && st.pending.len() >= self.limits.max_handshaking {
            if let Some(old) = st.victim().and_then(|seq| st.take_pending(seq)) {
                let _ = old.evict.send(());
                let log = st
                    .log
                    .allow(source_key(old.ip), Close::HandshakeEvicted.name());
                evicted = Some((old.ip, old.transport, log));
            }
        }
        *st.per_source.entry(key).or_insert(0) += 1;
        let (stage, evict) = if trusted {
            (Stage::Uncounted, None)
        } else {
            st.next += 1;
            let seq = st.next;
            let (tx, rx) = oneshot::channel();
            st.add_pending(
                seq,
                Pending {
                    evict: tx,
                    ip,
                    transport,
                    progress: Progress::Nothing,
                },
            );
            (Stage::Pending(seq), Some(rx))
        };
        drop(st);
        if let Some((old_ip, old_t, log)) = evicted {
            self.count_close(old_ip, old_t, Close::HandshakeEvicted, log);
        }
        Some(Ticket {
            admission: self.clone(),
            ip,
            transport,
            stage,
            evict,
            progress: Progress::Nothing,
        })
    }

    /// Counts and logs a refusal; `carrier.allow` refusals come here
    /// straight from the accept loop.
    pub fn refuse(&self, ip: IpAddr, transport: Transport, r: Refusal) {
        let log = self.lock().log.allow(source_key(ip), r.name());
        self.count_refusal(ip, transport, r, log);
    }

    fn count_refusal(&self, ip: IpAddr, transport: Transport, r: Refusal, log: Log) {
        self.counters.refused[tix(transport)][r as usize].fetch_add(1, Ordering::Relaxed);
        match log {
            Log::Quiet => {}
            Log::Source => warn!(
                peer = %ip, %transport, reason = r.name(),
                "carrier side: {transport} connection from {ip} refused: {} (counted in trunkvip_connections_refused_total; logged once a minute per source)",
                r.why()
            ),
            Log::Spray => warn!(
                peer = %ip, %transport, reason = r.name(),
                "carrier side: {transport} connections from {ip} and from more than {LOG_SOURCES} other sources refused this minute: {} (counted in trunkvip_connections_refused_total; no further lines this minute)",
                r.why()
            ),
        }
    }

    /// Counts and logs (once a minute per source) a connection closed by
    /// a limit.
    pub fn closed(&self, ip: IpAddr, transport: Transport, c: Close, detail: &str) {
        let log = self.lock().log.allow(source_key(ip), c.name());
        self.count_close(ip, transport, c, log);
        if !detail.is_empty() {
            debug!(peer = %ip, %transport, "connection closed: {}: {detail}", c.why());
        }
    }

    fn count_close(&self, ip: IpAddr, transport: Transport, c: Close, log: Log) {
        self.counters.closed[tix(transport)][c as usize].fetch_add(1, Ordering::Relaxed);
        // The Edges and carrier.uris hosts are named as such.
        let side = if self.is_trusted(ip) {
            "configured host"
        } else {
            "carrier side"
        };
        match log {
            Log::Quiet => {}
            Log::Source => info!(
                peer = %ip, %transport, reason = c.name(),
                "{side}: {transport} connection with {ip} closed: {} (counted in trunkvip_connections_closed_total; logged once a minute per source)",
                c.why()
            ),
            Log::Spray => info!(
                peer = %ip, %transport, reason = c.name(),
                "{side}: {transport} connections with {ip} and more than {LOG_SOURCES} other sources closed this minute: {} (counted in trunkvip_connections_closed_total; no further lines this minute)",
                c.why()
            ),
        }
    }

    fn count_queue_drop(&self, transport: Transport) {
        self.counters.queue_dropped[tix(transport)].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals so far, for tests and metrics.
    pub fn refused(&self, transport: Transport, r: Refusal) -> u64 {
        self.counters.refused[tix(transport)][r as usize].load(Ordering::Relaxed)
    }

    /// Closings so far, for tests and metrics.
    pub fn closed_count(&self, transport: Transport, c: Close) -> u64 {
        self.counters.closed[tix(transport)][c as usize].load(Ordering::Relaxed)
    }

    /// (handshaking, established) connections counted against the caps.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.pending.len(), st.established)
    }

    /// Prometheus text of every limit's counters.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let (pending, established) = self.counts();
        let _ = writeln!(
            out,
            "# HELP trunkvip_connections_handshaking Inbound TCP/TLS connections without a SIP message yet (limits.max_handshaking; configured hosts not counted).\n\
             # TYPE trunkvip_connections_handshaking gauge\ntrunkvip_connections_handshaking {pending}\n\
             # HELP trunkvip_connections_established Inbound TCP/TLS connections counted against limits.max_connections.\n\
             # TYPE trunkvip_connections_established gauge\ntrunkvip_connections_established {established}"
        );
        by_reason(
            out,
            "trunkvip_connections_refused_total",
            "TCP/TLS connections refused at accept, by reason.",
            &Refusal::ALL,
            |r| r.name(),
            |t, r| self.refused(t, r),
        );
        by_reason(
            out,
            "trunkvip_connections_closed_total",
            "TCP/TLS connections closed by a limit, by reason.",
            &Close::ALL,
            |c| c.name(),
            |t, c| self.closed_count(t, c),
        );
        let _ = writeln!(
            out,
            "# HELP trunkvip_connection_queue_dropped_total Messages not sent because their connection's queue was full (limits.max_queued_bytes).\n\
             # TYPE trunkvip_connection_queue_dropped_total counter"
        );
        for t in STREAMS {
            let _ = writeln!(
                out,
                "trunkvip_connection_queue_dropped_total{{transport=\"{t}\"}} {}",
                self.counters.queue_dropped[tix(t)].load(Ordering::Relaxed)
            );
        }
    }
}

/// One counter family labelled by stream transport and reason.
fn by_reason<R: Copy>(
    out: &mut String,
    family: &str,
    help: &str,
    reasons: &[R],
    name: impl Fn(R) -> &'static str,
    value: impl Fn(Transport, R) -> u64,
) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
    for t in STREAMS {
        for &r in reasons {
            let _ = writeln!(
                out,
                "{family}{{transport=\"{t}\",reason=\"{}\"}} {}",
                name(r),
                value(t, r)
            );
        }
    }
}

impl Ticket {
    fn is_pending(&self) -> bool {
        matches!(self.stage, Stage::Pending(_))
    }

    /// Notes how far the connection got: evicted after those that have
    /// not got that far.
    fn progressed(&mut self, to: Progress) {
        let Stage::Pending(seq) = self.stage else {
            return;
        };
        if self.progress >= to {
            return;
        }
        self.progress = to;
        self.admission.lock().set_progress(seq, to);
    }

    /// The connection delivered its first message: it leaves the
    /// handshaking pool for an established slot.
    fn promote(&mut self) -> Promotion {
        let Stage::Pending(seq) = self.stage else {
            return Promotion::Done;
        };
        let a = self.admission.clone();
        let mut st = a.lock();
        if st.take_pending(seq).is_none() {
            // Evicted a moment ago; the eviction was counted.
            return Promotion::Evicted;
        }
        self.evict = None;
        if st.established >= a.limits.max_connections {
            // Admitted while there was room, but others got there first.
            self.stage = Stage::Uncounted;
            let log = st
                .log
                .allow(source_key(self.ip), Refusal::MaxConnections.name());
            drop(st);
            a.count_refusal(self.ip, self.transport, Refusal::MaxConnections, log);
            return Promotion::Full;
        }
        st.established += 1;
        self.stage = Stage::Established;
        Promotion::Done
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let key = source_key(self.ip);
        let mut st = self.admission.lock();
        if let Some(n) = st.per_source.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.per_source.remove(&key);
            }
        }
        match self.stage {
            Stage::Pending(seq) => {
                st.take_pending(seq);
            }
            Stage::Established => st.established = st.established.saturating_sub(1),
            Stage::Uncounted => {}
        }
    }
}

/// Resolves when the ticket is evicted from the handshaking pool; never
/// for a ticket that is not handshaking.
async fn evicted(ticket: Option<&mut Ticket>) {
    match ticket.and_then(|t| t.evict.as_mut()) {
        Some(rx) => {
            let _ = rx.await;
        }
        None => std::future::pending().await,
    }
}

/// How a connection is found by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PeerKey {
    addr: SocketAddr,
    transport: Transport,
    /// Opened for health probes, from `host_address`.
    host_side: bool,
}

#[derive(Debug)]
struct Conn {
    tx: mpsc::Sender<Bytes>,
    keys: Vec<PeerKey>,
    /// Bytes queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    /// A drop for a full queue was logged already.
    warned: bool,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<u64, Conn>,
    by_peer: HashMap<PeerKey, u64>,
}

/// The open connections, and the admission of inbound ones.
#[derive(Debug)]
pub struct Registry {
    next: AtomicU64,
    inner: Mutex<Inner>,
    admission: Arc<Admission>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(StreamLimits::default(), [])
    }
}

/// A registered connection's end of the registry.
#[derive(Debug)]
struct Slot {
    id: u64,
    rx: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

enum Route {
    Queued,
    Open(Slot),
}

impl Registry {
    /// `trusted`: the Edges' and the `carrier.uris` hosts' addresses,
    /// never evicted nor counted against the totals.
    pub fn new(limits: StreamLimits, trusted: impl IntoIterator<Item = IpAddr>) -> Self {
        Registry {
            next: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
            admission: Arc::new(Admission::new(limits, trusted)),
        }
    }

    pub fn limits(&self) -> &StreamLimits {
        &self.admission.limits
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Every limit's counters, for `/metrics`.
    pub fn metrics(&self, out: &mut String) {
        self.admission.metrics(out);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, inner: &mut Inner, key: PeerKey) -> (Slot, mpsc::Sender<Bytes>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        inner.by_id.insert(
            id,
            Conn {
                tx: tx.clone(),
                keys: vec![key],
                queued: queued.clone(),
                warned: false,
            },
        );
        // The newest connection from an address wins.
        inner.by_peer.insert(key, id);
        (Slot { id, rx, queued }, tx)
    }

    /// Registers a connection found under `key`.
    fn register(&self, key: PeerKey) -> Slot {
        let mut inner = self.lock();
        self.insert(&mut inner, key).0
    }

    /// Another address the connection answers for (RFC 5923 alias).
    fn alias(&self, id: u64, key: PeerKey) {
        let mut inner = self.lock();
        if inner.by_peer.get(&key) == Some(&id) {
            return;
        }
        if let Some(c) = inner.by_id.get_mut(&id) {
            // Bounded: a peer cycling Via ports cannot grow the table.
            if c.keys.len() >= MAX_KEYS {
                return;
            }
            c.keys.push(key);
            inner.by_peer.insert(key, id);
        }
    }

    fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(c) = inner.by_id.remove(&id) {
            for k in c.keys {
                if inner.by_peer.get(&k) == Some(&id) {
                    inner.by_peer.remove(&k);
                }
            }
        }
    }

    /// Open connections, for metrics.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Queues on the connection the core named, else on the peer's,
    /// else on a new one the caller must open.
    fn route(&self, t: &Transmit) -> Route {
        let key = PeerKey {
            addr: t.destination,
            transport: t.transport,
            host_side: t.origin == Origin::Host,
        };
        let max = self.admission.limits.max_queued_bytes;
        let mut inner = self.lock();
        let candidates = [t.connection.map(|c| c.0), inner.by_peer.get(&key).copied()];
        for id in candidates.into_iter().flatten() {
            let Some(c) = inner.by_id.get_mut(&id) else {
                continue;
            };
            let len = t.payload.len();
            let sent = if c.queued.load(Ordering::Relaxed) + len > max {
                Err(true)
            } else {
                c.tx.try_send(t.payload.clone())
                    .map_err(|e| matches!(e, mpsc::error::TrySendError::Full(_)))
            };
            match sent {
                Ok(()) => {
                    c.queued.fetch_add(len, Ordering::Relaxed);
                    return Route::Queued;
                }
                // Full, by bytes or by count.
                Err(true) => {
                    self.admission.count_queue_drop(t.transport);
                    if !c.warned {
                        c.warned = true;
                        warn!(peer = %t.destination, transport = %t.transport,
                            "connection queue full (limits.max_queued_bytes): the peer does not read; messages dropped, counted in trunkvip_connection_queue_dropped_total");
                    }
                    return Route::Queued;
                }
                // Closed: its task ended.
                Err(false) => {
                    let keys = inner.by_id.remove(&id).map(|c| c.keys).unwrap_or_default();
                    for k in keys {
                        if inner.by_peer.get(&k) == Some(&id) {
                            inner.by_peer.remove(&k);
                        }
                    }
                }
            }
        }
        // Open a new one, registered now so that what follows queues
        // behind this message instead of opening a second connection.
        let (slot, tx) = self.insert(&mut inner, key);
        if tx.try_send(t.payload.clone()).is_ok() {
            slot.queued.fetch_add(t.payload.len(), Ordering::Relaxed);
        }
        Route::Open(slot)
    }
}

/// Sends a TCP or TLS message, opening a connection when needed.
pub fn send(transports: &Arc<Transports>, t: Transmit) {
    if let Route::Open(slot) = transports.conns.route(&t) {
        let host_side = t.origin == Origin::Host;
        tokio::spawn(connect(
            transports.clone(),
            slot,
            t.destination,
            t.transport,
            host_side,
        ));
    }
}

/// The local address outbound connections leave from: the service
/// address of that transport (the VIP), or `host_address` for probes.
fn local_ip(transports: &Transports, transport: Transport, host_side: bool) -> Option<IpAddr> {
    if host_side {
        return Some(transports.host_address);
    }
    transports
        .service
        .iter()
        .find(|s| s.0 == transport)
        .or(transports.service.first())
        .map(|s| s.1.ip())
}

async fn open_tcp(local: Option<IpAddr>, dest: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = local.filter(|ip| ip.is_ipv6() == dest.is_ipv6()) {
        super::udp::set_freebind(&sock, dest)?;
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    sock.set_tcp_nodelay(true)?;
    sock.set_nonblocking(true)?;
    let sock = TcpSocket::from_std_stream(sock.into());
    sock.connect(dest).await
}

async fn connect(
    transports: Arc<Transports>,
    slot: Slot,
    dest: SocketAddr,
    transport: Transport,
    host_side: bool,
) {
    let id = slot.id;
    let limit = transports.conns.limits().handshake_timeout;
    let local = local_ip(&transports, transport, host_side);
    let tcp = match timeout(limit, open_tcp(local, dest)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(&transports, id, dest, transport, e.to_string()),
        Err(_) => return failed(&transports, id, dest, transport, "connect timed out".into()),
    };
    debug!(peer = %dest, %transport, "connected");
    let local = capture_local(&tcp);
    if transport == Transport::Tcp {
        return run(
            transports, tcp, slot, dest, local, transport, host_side, None,
        )
        .await;
    }
    let Some(tls) = transports.tls.clone() else {
        return failed(
            &transports,
            id,
            dest,
            transport,
            "no [tls] configured".into(),
        );
    };
    let name = transports
        .tls_name(&dest)
        .unwrap_or_else(|| ServerName::IpAddress(dest.ip().into()));
    match timeout(limit, tls.connector().connect(name, tcp)).await {
        Ok(Ok(s)) => run(transports, s, slot, dest, local, transport, host_side, None).await,
        Ok(Err(e)) => failed(
            &transports,
            id,
            dest,
            transport,
            format!("TLS handshake: {e}"),
        ),
        Err(_) => failed(
            &transports,
            id,
            dest,
            transport,
            "TLS handshake timed out (limits.handshake_timeout)".into(),
        ),
    }
}

fn failed(transports: &Transports, id: u64, dest: SocketAddr, transport: Transport, why: String) {
    warn!(peer = %dest, %transport, "connection failed: {why}");
    transports.conns.remove(id);
    transports.broadcast(None, || Control::ConnectionFailed(dest, transport));
}

/// Closes an accepted connection at once with a reset: no TIME_WAIT left
/// on our side for a connection we refuse.
fn reset(tcp: TcpStream) {
    let _ = SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    drop(tcp);
}

/// Accepts TCP or TLS connections on a service listener.
pub async fn accept(listener: TcpListener, transports: Arc<Transports>, transport: Transport) {
    let admission = transports.conns.admission().clone();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                warn!("{transport} accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Before anything costs CPU, the TLS handshake above all.
        if !transports.accepts(peer.ip()) {
            admission.refuse(peer.ip(), transport, Refusal::CarrierAllow);
            reset(tcp);
            continue;
        }
        let Some(mut ticket) = admission.admit(peer.ip(), transport) else {
            reset(tcp);
            continue;
        };
        ticket.progressed(arrived(&tcp, transport));
        let _ = tcp.set_nodelay(true);
        let transports = transports.clone();
        tokio::spawn(async move {
            let key = PeerKey {
                addr: peer,
                transport,
                host_side: false,
            };
            let local = capture_local(&tcp);
            if transport == Transport::Tcp {
                let slot = transports.conns.register(key);
                return run(
                    transports,
                    tcp,
                    slot,
                    peer,
                    local,
                    transport,
                    false,
                    Some(ticket),
                )
                .await;
            }
            let Some(tls) = transports.tls.clone() else {
                return;
            };
            let admission = transports.conns.admission().clone();
            let deadline = Instant::now() + transports.conns.limits().handshake_timeout;
            // The ClientHello first: a whole one tells a client from a
            // half-open connection, before any key exchange.
            let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            let r = tokio::select! {
                r = timeout_at(deadline, hello) => r,
                // Counted when evicted.
                _ = evicted(Some(&mut ticket)) => return,
            };
            let start = match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return admission.closed(
                        peer.ip(),
                        transport,
                        Close::HandshakeFailed,
                        &e.to_string(),
                    )
                }
                Err(_) => {
                    return admission.closed(peer.ip(), transport, Close::HandshakeTimeout, "")
                }
            };
            ticket.progressed(Progress::Started);
            let r = tokio::select! {
                r = timeout_at(deadline, start.into_stream(tls.server_config())) => r,
                _ = evicted(Some(&mut ticket)) => return,
            };
            match r {
                Ok(Ok(s)) => {
                    ticket.progressed(Progress::Handshaken);
                    let slot = transports.conns.register(key);
                    run(
                        transports,
                        s,
                        slot,
                        peer,
                        local,
                        transport,
                        false,
                        Some(ticket),
                    )
                    .await;
                }
                Ok(Err(e)) => {
                    admission.closed(peer.ip(), transport, Close::HandshakeFailed, &e.to_string())
                }
                Err(_) => admission.closed(peer.ip(), transport, Close::HandshakeTimeout, ""),
            }
        });
    }
}

/// What already waits on a connection just accepted: under a flood the
/// accept queue is long, and a client's ClientHello is there by the time
/// we take its connection, while its task may not run for a while. A
/// whole first TLS record (the ClientHello), or any byte on TCP, puts it
/// behind the half-open ones for eviction from the start.
fn arrived(tcp: &TcpStream, transport: Transport) -> Progress {
    let mut buf = [0u8; 4096];
    let mut rb = tokio::io::ReadBuf::new(&mut buf);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // Not ready yet: the connection's task reads it when it runs.
    let n = match tcp.poll_peek(&mut cx, &mut rb) {
        std::task::Poll::Ready(Ok(n)) => n,
        _ => return Progress::Nothing,
    };
    let data = &buf[..n];
    let whole_record = data.len() >= 5
        && data[0] == 0x16
        && data.len() >= 5 + usize::from(u16::from_be_bytes([data[3], data[4]]));
    match transport {
        Transport::Tls if whole_record => Progress::Started,
        Transport::Tcp if n > 0 => Progress::Started,
        _ => Progress::Nothing,
    }
}

/// Our end of a connection, for the debug capture; not asked for when the
/// capture is off.
fn capture_local(tcp: &TcpStream) -> Option<SocketAddr> {
    crate::capture::get()?;
    tcp.local_addr().ok()
}

/// Why a connection ended.
enum End {
    /// Not a limit: logged at debug only.
    Quiet(String),
    /// A limit: counted and logged.
    Limit(Close, String),
    /// Evicted or refused at its first message: counted already.
    Counted(&'static str),
}

/// The life of one connection. `local` is our end, given when the debug
/// capture is on: each message read (as framed, after TLS) and written is
/// recorded. `ticket` is the admission of an inbound connection.
#[allow(clippy::too_many_arguments)]
async fn run<S>(
    transports: Arc<Transports>,
    mut stream: S,
    slot: Slot,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    transport: Transport,
    host_side: bool,
    mut ticket: Option<Ticket>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Slot { id, mut rx, queued } = slot;
    debug!(%peer, %transport, id, "connection open");
    let limits = *transports.conns.limits();
    // The framer refuses a message longer than what we may buffer.
    let mut decoder = StreamDecoder::new(trunkvip_sip::Limits {
        max_message_size: limits.max_buffered_bytes,
        ..transports.limits
    });
    let incoming = Incoming {
        source: peer,
        transport,
        connection: Some(ConnectionId(id)),
    };
    let mut idle = Instant::now() + limits.idle_timeout;
    // When the message being received must be whole.
    let mut partial: Option<Instant> = None;
    let end = 'conn: loop {
        let buf = decoder.buffer_mut();
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let pending = ticket.as_ref().is_some_and(Ticket::is_pending);
        tokio::select! {
            r = stream.read_buf(decoder.buffer_mut()) => {
                match r {
                    Ok(0) => break 'conn End::Quiet("closed by peer".into()),
                    Ok(_) => {}
                    Err(e) => break 'conn End::Quiet(e.to_string()),
                }
                if let Some(t) = ticket.as_mut() {
                    t.progressed(Progress::Started);
                }
                let now = Instant::now();
                idle = now + limits.idle_timeout;
                let mut framed = false;
                loop {
                    match decoder.decode() {
                        Ok(None) => break,
                        Ok(Some(Frame::Message(m))) => {
                            framed = true;
                            match ticket.as_mut().map(Ticket::promote) {
                                Some(Promotion::Evicted) => break 'conn End::Counted("evicted"),
                                Some(Promotion::Full) => break 'conn End::Counted("max_connections"),
                                _ => {}
                            }
                            if let Some(local) = local {
                                crate::capture::record(transport, peer, local, || m.to_bytes());
                            }
                            note_alias(&transports, id, peer, &m, transport);
                            transports.dispatch_message(incoming, m, host_side).await;
                        }
                        Ok(Some(Frame::Ping)) => {
                            framed = true;
                            // RFC 5626 section 4.4.1: a CRLF answers.
                            match timeout(WRITE_STALL, write(&mut stream, b"\r\n")).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => break 'conn End::Quiet(e.to_string()),
                                Err(_) => break 'conn End::Limit(Close::WriteStalled, String::new()),
                            }
                        }
                        Ok(Some(Frame::Pong)) => framed = true,
                        Err(e) if matches!(e.kind(), ErrorKind::TooLarge { .. }) => {
                            break 'conn End::Limit(Close::MaxBufferedBytes, e.to_string())
                        }
                        Err(e) => break 'conn End::Limit(Close::FramingError, e.to_string()),
                    }
                }
                // A message under way must be whole by its deadline, set
                // at its first byte; a frame done starts the clock again.
                partial = match (decoder.buffered(), partial) {
                    (0, _) => None,
                    (_, Some(d)) if !framed => Some(d),
                    _ => Some(now + limits.message_timeout),
                };
            }
            m = rx.recv() => {
                let Some(first) = m else { break 'conn End::Quiet("shut down".into()) };
                idle = Instant::now() + limits.idle_timeout;
                queued.fetch_sub(first.len(), Ordering::Relaxed);
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    queued.fetch_sub(more.len(), Ordering::Relaxed);
                    batch.push(more);
                }
                let writes = async {
                    for m in &batch {
                        if let Some(local) = local {
                            crate::capture::record(transport, local, peer, || m.clone());
                        }
                        stream.write_all(m).await?;
                    }
                    stream.flush().await
                };
                match timeout(WRITE_STALL, writes).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break 'conn End::Quiet(e.to_string()),
                    Err(_) => break 'conn End::Limit(Close::WriteStalled, String::new()),
                }
            }
            _ = evicted(ticket.as_mut()), if pending => break 'conn End::Counted("evicted"),
            _ = sleep_until(idle) => break 'conn End::Limit(Close::IdleTimeout, String::new()),
            _ = sleep_until(partial.unwrap_or(idle)), if partial.is_some() => {
                break 'conn End::Limit(Close::MessageTimeout, format!("{} bytes of it", decoder.buffered()))
            }
        }
    };
    match &end {
        End::Quiet(why) => debug!(%peer, %transport, id, "connection closed: {why}"),
        End::Limit(c, detail) => {
            transports
                .conns
                .admission()
                .closed(peer.ip(), transport, *c, detail);
        }
        End::Counted(why) => debug!(%peer, %transport, id, "connection closed: {why}"),
    }
    transports.conns.remove(id);
    drop(ticket);
    // A peer that does not read must not hold us here either.
    let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
}

async fn write<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> std::io::Result<()> {
    s.write_all(data).await?;
    s.flush().await
}

/// RFC 5923: a request whose top Via carries `alias` lets us reuse this
/// connection for requests toward its sent-by. Only toward the address
/// the connection comes from (another port of it): a connection must not
/// claim another host's address, an Edge's above all, and draw its
/// traffic.
fn note_alias(
    transports: &Transports,
    id: u64,
    peer: SocketAddr,
    m: &Message,
    transport: Transport,
) {
    if !m.is_request() {
        return;
    }
    let Ok(via) = m.top_via() else { return };
    if !via.params.contains(b"alias") {
        return;
    }
    let Some(ip) = via.host.ip() else { return };
    if ip != peer.ip() {
        return;
    }
    let port = via.port.unwrap_or(if transport == Transport::Tls {
        5061
    } else {
        5060
    });
    transports.conns.alias(
        id,
        PeerKey {
            addr: SocketAddr::new(ip, port),
            transport,
            host_side: false,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_source: usize, handshaking: usize) -> StreamLimits {
        StreamLimits {
            max_connections: total,
            max_connections_per_source: per_source,
            max_handshaking: handshaking,
            ..StreamLimits::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const T: Transport = Transport::Tcp;

    #[test]
    fn per_source_total_and_configured_hosts() {
        let a = Arc::new(Admission::new(limits(4, 2, 100), [ip("192.0.2.9")]));
        let mut x1 = a.admit(ip("198.51.100.1"), T).unwrap();
        let mut x2 = a.admit(ip("198.51.100.1"), T).unwrap();
        assert!(a.admit(ip("198.51.100.1"), T).is_none());
        assert_eq!(a.refused(T, Refusal::PerSource), 1);
        let mut y1 = a.admit(ip("198.51.100.2"), T).unwrap();
        let mut y2 = a.admit(ip("198.51.100.2"), T).unwrap();
        assert_eq!(a.counts(), (4, 0));
        for t in [&mut x1, &mut x2, &mut y1, &mut y2] {
            assert_eq!(t.promote(), Promotion::Done);
        }
        assert_eq!(a.counts(), (0, 4));
        assert!(a.admit(ip("198.51.100.3"), Transport::Tls).is_none());
        assert_eq!(a.refused(Transport::Tls, Refusal::MaxConnections), 1);
        // A configured host gets in over the total, uncounted, but not
        // over its own per-source cap.
        let h1 = a.admit(ip("192.0.2.9"), T).unwrap();
        let h2 = a.admit(ip("192.0.2.9"), T).unwrap();
        assert!(a.admit(ip("192.0.2.9"), T).is_none());
        assert_eq!(a.counts(), (0, 4));
        drop((h1, h2));
        // A slot given back is free again.
        drop(y2);
        assert!(a.admit(ip("198.51.100.3"), T).is_some());
        drop((x1, x2, y1));
        let st = a.lock();
        assert!(st.per_source.is_empty(), "{:?}", st.per_source);
    }

    #[test]
    fn a_carrier_that_moves_takes_its_exemption_along() {
        // Totals of 1: one ordinary connection fills them.
        let a = Arc::new(Admission::new(limits(1, 2, 100), [ip("192.0.2.9")]));
        let mut x = a.admit(ip("198.51.100.1"), T).unwrap();
        assert_eq!(x.promote(), Promotion::Done);
        assert!(a.admit(ip("203.0.113.7"), T).is_none());
        let old = a.admit(ip("192.0.2.9"), T).unwrap();
        // The carrier's name now points at 203.0.113.7.
        a.set_trusted([ip("203.0.113.7")]);
        assert!(a.admit(ip("203.0.113.7"), T).is_some());
        assert!(a.admit(ip("192.0.2.9"), T).is_none());
        // What was admitted before keeps its (uncounted) slot.
        assert_eq!(a.counts(), (0, 1));
        drop(old);
        assert_eq!(a.counts(), (0, 1));
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let a = Arc::new(Admission::new(limits(100, 2, 100), []));
        let _t1 = a.admit(ip("2001:db8:0:1::1"), T).unwrap();
        let _t2 = a.admit(ip("2001:db8:0:1::ffff:2"), T).unwrap();
        assert!(a.admit(ip("2001:db8:0:1:8000::3"), T).is_none());
        assert!(a.admit(ip("2001:db8:0:2::1"), T).is_some());
    }

    #[test]
    fn eviction_takes_the_least_advanced_then_the_busiest_source() {
        let a = Arc::new(Admission::new(limits(100, 10, 4), []));
        let mut first = a.admit(ip("198.51.100.1"), T).unwrap();
        let mut done = a.admit(ip("198.51.100.2"), Transport::Tls).unwrap();
        done.progressed(Progress::Handshaken);
        let mut busy1 = a.admit(ip("198.51.100.3"), T).unwrap();
        let mut busy2 = a.admit(ip("198.51.100.3"), T).unwrap();
        // Full: the new one evicts the older of the busiest source's.
        let mut d = a.admit(ip("198.51.100.4"), T).unwrap();
        assert!(busy1.evict.as_mut().unwrap().try_recv().is_ok());
        assert!(first.evict.as_mut().unwrap().try_recv().is_err());
        assert_eq!(busy1.promote(), Promotion::Evicted);
        drop(busy1);
        // All at one connection each: the oldest of the least advanced.
        let _e = a.admit(ip("198.51.100.5"), T).unwrap();
        assert!(first.evict.as_mut().unwrap().try_recv().is_ok());
        drop(first);
        let _f = a.admit(ip("198.51.100.6"), T).unwrap();
        assert!(busy2.evict.as_mut().unwrap().try_recv().is_ok());
        drop(busy2);
        // Bytes seen: behind the silent ones.
        d.progressed(Progress::Started);
        let _g = a.admit(ip("198.51.100.7"), T).unwrap();
        assert!(d.evict.as_mut().unwrap().try_recv().is_err());
        // The handshake done goes last of all.
        assert!(done.evict.as_mut().unwrap().try_recv().is_err());
        assert_eq!(a.closed_count(T, Close::HandshakeEvicted), 4);
        assert_eq!(a.counts().0, 4);
    }

    #[test]
    fn a_full_table_refuses_at_the_first_message() {
        let a = Arc::new(Admission::new(limits(1, 1, 10), []));
        let mut x = a.admit(ip("198.51.100.1"), T).unwrap();
        let mut y = a.admit(ip("198.51.100.2"), T).unwrap();
        assert_eq!(x.promote(), Promotion::Done);
        assert_eq!(y.promote(), Promotion::Full);
        assert_eq!(a.refused(T, Refusal::MaxConnections), 1);
        drop(y);
        assert_eq!(a.counts(), (0, 1));
    }

    #[test]
    fn logged_once_per_source_and_reason() {
        let mut l = LogLimiter::default();
        let s = ip("198.51.100.1");
        assert_eq!(l.allow(s, "a"), Log::Source);
        assert_eq!(l.allow(s, "a"), Log::Quiet);
        assert_eq!(l.allow(s, "b"), Log::Source);
        for n in 0..LOG_SOURCES as u32 - 2 {
            let other = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert_eq!(l.allow(other, "a"), Log::Source);
        }
        // More sources than remembered: one line for them all, then quiet.
        assert_eq!(l.allow(ip("203.0.113.1"), "a"), Log::Spray);
        assert_eq!(l.allow(ip("203.0.113.2"), "a"), Log::Quiet);
        assert_eq!(l.allow(ip("203.0.113.2"), "c"), Log::Spray);
        assert_eq!(l.seen.len(), LOG_SOURCES);
    }
}
