//! Pair sync over TCP between the two hosts' own addresses.
//!
//! Both hosts listen on `host_address:port` (the port of `[pair] peer`);
//! the host with the lower address dials, the other accepts, so there is
//! one connection at a time. Frames are the core's authenticated,
//! replay-protected format (`trunkvip_proxy::pair`). On each connection
//! both sides send a Hello; on the peer's Hello we send a full snapshot
//! (every worker's dialogs and our Edge health view) between ResyncBegin
//! and ResyncEnd, then incremental records as the workers produce them.
//!
//! The call path never waits for the peer: workers hand records to a
//! bounded queue with `try_send`; what does not fit is counted and the
//! next snapshot covers it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use trunkvip_proxy::pair::{PairSession, Received, SyncRecord};

use crate::worker::{Control, WorkerHandle};

/// Records waiting for the peer before workers start dropping them.
pub const QUEUE: usize = 65_536;

/// The biggest frame we accept (records are tens of bytes).
const MAX_FRAME: usize = 4096;

#[derive(Clone, PartialEq, Eq)]
pub struct PairConfig {
    /// Where we listen: this host's own address and the pair port.
    pub listen: SocketAddr,
    pub peer: SocketAddr,
    pub secret: Vec<u8>,
    pub secret_file: std::path::PathBuf,
}

impl std::fmt::Debug for PairConfig {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairConfig")
            .field("listen", &self.listen)
            .field("peer", &self.peer)
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct PairCounters {
    pub connected: AtomicU64,
    pub connections: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub queue_full: AtomicU64,
    pub rejected_auth: AtomicU64,
    pub rejected_replay: AtomicU64,
    pub rejected_malformed: AtomicU64,
}

impl PairCounters {
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# TYPE trunkvip_pair_connected gauge\ntrunkvip_pair_connected {}",
            g(&self.connected)
        );
        for (name, v) in [
            ("connections_total", &self.connections),
            ("records_sent_total", &self.sent),
            ("records_received_total", &self.received),
            ("queue_full_total", &self.queue_full),
        ] {
            let _ = writeln!(
                out,
                "# TYPE trunkvip_pair_{name} counter\ntrunkvip_pair_{name} {}",
                g(v)
            );
        }
        let _ = writeln!(out, "# TYPE trunkvip_pair_rejected_total counter");
        for (reason, v) in [
            ("auth", &self.rejected_auth),
            ("replay", &self.rejected_replay),
            ("malformed", &self.rejected_malformed),
        ] {
            let _ = writeln!(
                out,
                "trunkvip_pair_rejected_total{{reason=\"{reason}\"}} {}",
                g(v)
            );
        }
    }
}

/// The link, once `[pair]` started it; workers publish through it.
pub static LINK: std::sync::OnceLock<PairLink> = std::sync::OnceLock::new();

/// What workers hold to publish records.
#[derive(Clone, Debug)]
pub struct PairLink {
    tx: mpsc::Sender<SyncRecord>,
    pub counters: Arc<PairCounters>,
}

impl PairLink {
    /// Never waits: a full queue drops the record (the next snapshot has it).
    pub fn publish(&self, r: SyncRecord) {
        if self.tx.try_send(r).is_err() {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the pair task; returns the link workers publish through.
pub fn spawn(cfg: PairConfig, workers: Vec<WorkerHandle>) -> PairLink {
    let (tx, rx) = mpsc::channel(QUEUE);
    let counters = Arc::new(PairCounters::default());
    let link = PairLink {
        tx,
        counters: counters.clone(),
    };
    tokio::spawn(run(cfg, workers, rx, counters));
    link
}

async fn run(
    cfg: PairConfig,
    workers: Vec<WorkerHandle>,
    mut rx: mpsc::Receiver<SyncRecord>,
    counters: Arc<PairCounters>,
) {
    let listener = match bind(cfg.listen).await {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(listen = %cfg.listen, error = %e, "pair: cannot listen; dialing only");
            None
        }
    };
    let dial = cfg.listen.ip() < cfg.peer.ip();
    loop {
        let stream = if dial {
            match tokio::time::timeout(Duration::from_secs(2), connect(cfg.listen, cfg.peer)).await
            {
                Ok(Ok(s)) => Some(s),
                _ => None,
            }
        } else if let Some(l) = &listener {
            match tokio::time::timeout(Duration::from_secs(2), l.accept()).await {
                Ok(Ok((s, from))) if from.ip() == cfg.peer.ip() => Some(s),
                Ok(Ok((_, from))) => {
                    // Only the peer's address may speak on this port.
                    counters.rejected_auth.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, "pair: connection from a stranger refused");
                    None
                }
                _ => None,
            }
        } else {
            None
        };
        // Records produced while no peer listens are dropped: the snapshot
        // on the next connection carries the state instead.
        while rx.try_recv().is_ok() {}
        let Some(stream) = stream else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        counters.connected.store(1, Ordering::Relaxed);
        info!(peer = %cfg.peer, "pair: connected");
        let r = session(stream, &cfg, &workers, &mut rx, &counters).await;
        counters.connected.store(0, Ordering::Relaxed);
        info!(peer = %cfg.peer, reason = %r.err().map_or("closed".to_string(), |e| e.to_string()), "pair: disconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4)
}

async fn connect(local: SocketAddr, peer: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = match peer {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // From our own address: the pair channel never uses the VIP.
    sock.bind(SocketAddr::new(local.ip(), 0))?;
    sock.connect(peer).await
}

async fn snapshot(workers: &[WorkerHandle]) -> Vec<SyncRecord> {
    let mut out = vec![];
    for w in workers {
        let (tx, rx) = oneshot::channel();
        if w.control.send(Control::SyncSnapshot(tx)).is_ok() {
            if let Ok(v) = rx.await {
                out.extend(v);
            }
        }
    }
    out
}

fn deliver(workers: &[WorkerHandle], r: SyncRecord) {
    match r {
        SyncRecord::Dialog { route, .. } if route != 0 => {
            let w = &workers[(route % workers.len() as u64) as usize];
            let _ = w.control.send(Control::Sync(r));
        }
        // Snapshot records carry no route and health concerns everyone.
        _ => {
            for w in workers {
                let _ = w.control.send(Control::Sync(r));
            }
        }
    }
}

async fn session(
    mut stream: TcpStream,
    cfg: &PairConfig,
    workers: &[WorkerHandle],
    rx: &mut mpsc::Receiver<SyncRecord>,
    counters: &PairCounters,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let nonce = u64::from_ne_bytes(nonce);
    let mut s = PairSession::new(&cfg.secret, nonce);
    stream.write_all(&s.hello()).await?;
    let mut buf = Vec::with_capacity(MAX_FRAME);
    let mut chunk = [0u8; 4096];
    let idle = Duration::from_secs(30);
    loop {
        tokio::select! {
            n = tokio::time::timeout(idle, stream.read(&mut chunk)) => {
                let n = n.map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer silent"))??;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(len) = PairSession::frame_len(&buf) {
                    if len > MAX_FRAME {
                        counters.rejected_malformed.fetch_add(1, Ordering::Relaxed);
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "oversized frame"));
                    }
                    if buf.len() < len {
                        break;
                    }
                    let frame: Vec<u8> = buf.drain(..len).collect();
                    match s.decode(&frame) {
                        Ok(Received::Hello) => {
                            let mut out = Vec::new();
                            for r in std::iter::once(SyncRecord::ResyncBegin)
                                .chain(snapshot(workers).await)
                                .chain(std::iter::once(SyncRecord::ResyncEnd))
                            {
                                if let Some(f) = s.encode(&r) {
                                    out.extend_from_slice(&f);
                                    counters.sent.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            stream.write_all(&out).await?;
                        }
                        Ok(Received::Record(r)) => {
                            counters.received.fetch_add(1, Ordering::Relaxed);
                            deliver(workers, r);
                        }
                        Err(e) => {
                            let c = match e {
                                trunkvip_proxy::pair::PairError::BadTag => &counters.rejected_auth,
                                trunkvip_proxy::pair::PairError::Replay => &counters.rejected_replay,
                                trunkvip_proxy::pair::PairError::Malformed => &counters.rejected_malformed,
                            };
                            c.fetch_add(1, Ordering::Relaxed);
                            warn!(error = %e, "pair: frame dropped");
                        }
                    }
                }
            }
            r = rx.recv() => {
                let Some(r) = r else { return Ok(()) };
                let mut batch = vec![r];
                while batch.len() < 1024 {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let mut out = Vec::new();
                for r in &batch {
                    if let Some(f) = s.encode(r) {
                        out.extend_from_slice(&f);
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if batch.contains(&SyncRecord::ResyncBegin) {
                    // A worker's queue overflowed: follow with a snapshot.
                    for r in snapshot(workers).await.iter().chain(std::iter::once(&SyncRecord::ResyncEnd)) {
                        if let Some(f) = s.encode(r) {
                            out.extend_from_slice(&f);
                        }
                    }
                }
                stream.write_all(&out).await?;
            }
        }
    }
}
