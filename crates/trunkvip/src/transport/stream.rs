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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{debug, info, warn};
use trunkvip_proxy::{ConnectionId, Incoming, Origin, Transmit, Transport};
use trunkvip_sip::{Frame, Message, StreamDecoder};

use super::Transports;
use crate::worker::Control;

/// A connection with no traffic either way this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// TCP connect plus TLS handshake, either direction.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one connection before new ones are dropped.
const QUEUE: usize = 4096;

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
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<u64, Conn>,
    by_peer: HashMap<PeerKey, u64>,
}

/// The open connections.
#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU64,
    inner: Mutex<Inner>,
}

enum Route {
    Queued,
    Open(u64, mpsc::Receiver<Bytes>),
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection found under `key`.
    fn register(&self, key: PeerKey) -> (u64, mpsc::Receiver<Bytes>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut inner = self.lock();
        inner.by_id.insert(
            id,
            Conn {
                tx,
                keys: vec![key],
            },
        );
        // The newest connection from an address wins.
        inner.by_peer.insert(key, id);
        (id, rx)
    }

    /// Another address the connection answers for (RFC 5923 alias).
    fn alias(&self, id: u64, key: PeerKey) {
        let mut inner = self.lock();
        if inner.by_peer.get(&key) == Some(&id) {
            return;
        }
        if let Some(c) = inner.by_id.get_mut(&id) {
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
        let mut inner = self.lock();
        let candidates = [t.connection.map(|c| c.0), inner.by_peer.get(&key).copied()];
        for id in candidates.into_iter().flatten() {
            let Some(c) = inner.by_id.get(&id) else {
                continue;
            };
            match c.tx.try_send(t.payload.clone()) {
                Ok(()) => return Route::Queued,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(peer = %t.destination, "connection queue full: message dropped");
                    return Route::Queued;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
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
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(QUEUE);
        let _ = tx.try_send(t.payload.clone());
        inner.by_id.insert(
            id,
            Conn {
                tx,
                keys: vec![key],
            },
        );
        inner.by_peer.insert(key, id);
        Route::Open(id, rx)
    }
}

/// Sends a TCP or TLS message, opening a connection when needed.
pub fn send(transports: &Arc<Transports>, t: Transmit) {
    if let Route::Open(id, rx) = transports.conns.route(&t) {
        let host_side = t.origin == Origin::Host;
        tokio::spawn(connect(
            transports.clone(),
            id,
            t.destination,
            t.transport,
            host_side,
            rx,
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
    id: u64,
    dest: SocketAddr,
    transport: Transport,
    host_side: bool,
    rx: mpsc::Receiver<Bytes>,
) {
    let local = local_ip(&transports, transport, host_side);
    let tcp = match timeout(HANDSHAKE_TIMEOUT, open_tcp(local, dest)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(&transports, id, dest, transport, e.to_string()),
        Err(_) => return failed(&transports, id, dest, transport, "connect timed out".into()),
    };
    debug!(peer = %dest, %transport, "connected");
    let local = capture_local(&tcp);
    if transport == Transport::Tcp {
        return run(transports, tcp, id, dest, local, transport, host_side, rx).await;
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
        .tls_names
        .get(&dest)
        .cloned()
        .unwrap_or_else(|| ServerName::IpAddress(dest.ip().into()));
    match timeout(HANDSHAKE_TIMEOUT, tls.connector().connect(name, tcp)).await {
        Ok(Ok(s)) => run(transports, s, id, dest, local, transport, host_side, rx).await,
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
            "TLS handshake timed out".into(),
        ),
    }
}

fn failed(transports: &Transports, id: u64, dest: SocketAddr, transport: Transport, why: String) {
    warn!(peer = %dest, %transport, "connection failed: {why}");
    transports.conns.remove(id);
    transports.broadcast(None, || Control::ConnectionFailed(dest, transport));
}

/// Accepts TCP or TLS connections on a service listener.
pub async fn accept(listener: TcpListener, transports: Arc<Transports>, transport: Transport) {
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
        if !transports.accepts(peer.ip()) {
            debug!(%peer, "connection refused: not in carrier.allow");
            continue;
        }
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
                let (id, rx) = transports.conns.register(key);
                return run(transports, tcp, id, peer, local, transport, false, rx).await;
            }
            let Some(tls) = transports.tls.clone() else {
                return;
            };
            match timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
                Ok(Ok(s)) => {
                    let (id, rx) = transports.conns.register(key);
                    run(transports, s, id, peer, local, transport, false, rx).await;
                }
                Ok(Err(e)) => info!(%peer, "TLS handshake failed: {e}"),
                Err(_) => info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Our end of a connection, for the debug capture; not asked for when the
/// capture is off.
fn capture_local(tcp: &TcpStream) -> Option<SocketAddr> {
    crate::capture::get()?;
    tcp.local_addr().ok()
}

/// The life of one connection. `local` is our end, given when the debug
/// capture is on: each message read (as framed, after TLS) and written is
/// recorded.
#[allow(clippy::too_many_arguments)]
async fn run<S>(
    transports: Arc<Transports>,
    mut stream: S,
    id: u64,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    transport: Transport,
    host_side: bool,
    mut rx: mpsc::Receiver<Bytes>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    debug!(%peer, %transport, id, "connection open");
    let mut decoder = StreamDecoder::new(transports.limits);
    let incoming = Incoming {
        source: peer,
        transport,
        connection: Some(ConnectionId(id)),
    };
    let mut deadline = Instant::now() + IDLE_TIMEOUT;
    let why = 'conn: loop {
        let buf = decoder.buffer_mut();
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            r = stream.read_buf(decoder.buffer_mut()) => {
                match r {
                    Ok(0) => break 'conn "closed by peer".to_string(),
                    Ok(_) => {}
                    Err(e) => break 'conn e.to_string(),
                }
                deadline = Instant::now() + IDLE_TIMEOUT;
                loop {
                    match decoder.decode() {
                        Ok(None) => break,
                        Ok(Some(Frame::Message(m))) => {
                            if let Some(local) = local {
                                crate::capture::record(transport, peer, local, || m.to_bytes());
                            }
                            note_alias(&transports, id, &m, transport);
                            transports.dispatch_message(incoming, m, host_side).await;
                        }
                        Ok(Some(Frame::Ping)) => {
                            // RFC 5626 section 4.4.1: a CRLF answers.
                            if let Err(e) = write(&mut stream, b"\r\n").await {
                                break 'conn e.to_string();
                            }
                        }
                        Ok(Some(Frame::Pong)) => {}
                        Err(e) => break 'conn format!("framing lost: {e}"),
                    }
                }
            }
            m = rx.recv() => {
                let Some(first) = m else { break 'conn "shut down".to_string() };
                deadline = Instant::now() + IDLE_TIMEOUT;
                if let Some(local) = local {
                    crate::capture::record(transport, local, peer, || first.clone());
                }
                if let Err(e) = stream.write_all(&first).await {
                    break 'conn e.to_string();
                }
                while let Ok(more) = rx.try_recv() {
                    if let Some(local) = local {
                        crate::capture::record(transport, local, peer, || more.clone());
                    }
                    if let Err(e) = stream.write_all(&more).await {
                        break 'conn e.to_string();
                    }
                }
                if let Err(e) = stream.flush().await {
                    break 'conn e.to_string();
                }
            }
            _ = sleep_until(deadline) => break 'conn "idle".to_string(),
        }
    };
    debug!(%peer, %transport, id, "connection closed: {why}");
    transports.conns.remove(id);
    let _ = stream.shutdown().await;
}

async fn write<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> std::io::Result<()> {
    s.write_all(data).await?;
    s.flush().await
}

/// RFC 5923: a request whose top Via carries `alias` lets us reuse this
/// connection for requests toward its sent-by.
fn note_alias(transports: &Transports, id: u64, m: &Message, transport: Transport) {
    if !m.is_request() {
        return;
    }
    let Ok(via) = m.top_via() else { return };
    if !via.params.contains(b"alias") {
        return;
    }
    let Some(ip) = via.host.ip() else { return };
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
