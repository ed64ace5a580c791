//! The sockets around the cores: what comes in is handed to the worker
//! that owns its Call-ID, what the cores send goes out on the right socket
//! or connection.
//!
//! - [`udp`]: the service sockets (the VIP, one per worker) and the host
//!   socket that health probes leave from, through socket2 with large
//!   buffers and IP_FREEBIND.
//! - [`stream`]: TCP and TLS connections, inbound and outbound, in one
//!   registry so that responses and in-dialog requests go back over the
//!   connection the peer opened.
//!   The caps and timeouts of `[limits]` and the admission of inbound
//!   connections live there too.

pub mod stream;
pub mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{debug, enabled, warn, Level};
use trunkvip_proxy::{Incoming, Transmit, Transport};
use trunkvip_sip::Message;

use crate::tls::TlsState;
use crate::worker::{Control, Work, WorkerHandle};

/// Everything a worker or a receive task needs to move messages.
#[derive(Debug)]
pub struct Transports {
    pub workers: Vec<WorkerHandle>,
    pub conns: stream::Registry,
    pub tls: Option<Arc<TlsState>>,
    /// The service addresses, per transport.
    pub service: Vec<(Transport, SocketAddr)>,
    pub host_address: IpAddr,
    pub limits: trunkvip_sip::Limits,
    /// Edge names by address, for logs.
    pub edge_names: HashMap<SocketAddr, String>,
    /// The names TLS certificates of Edges and carriers are checked
    /// against, by address (the URI's host); a carrier name looked up
    /// again adds its new addresses ([`Transports::add_tls_names`]).
    pub tls_names: std::sync::RwLock<HashMap<SocketAddr, ServerName<'static>>>,
    /// Addresses of the Edges, always accepted.
    pub edge_ips: Vec<IpAddr>,
    /// `carrier.allow`; empty accepts any source.
    pub carrier_allow: Vec<IpNet>,
    /// Set by SIGTERM.
    pub draining: std::sync::atomic::AtomicBool,
    /// Datagrams dropped because the worker that owns them was full.
    pub inbox_full: AtomicU64,
}

impl Transports {
    /// Whether a TCP or TLS connection from `ip` is worth accepting: an
    /// Edge, or a source `carrier.allow` accepts (the core checks every
    /// message again).
    pub fn accepts(&self, ip: IpAddr) -> bool {
        self.carrier_allow.is_empty()
            || self.edge_ips.contains(&ip)
            || self.carrier_allow.iter().any(|n| n.contains(&ip))
    }

    /// The name a TLS peer at `dest` must show a certificate for, when its
    /// URI named a host.
    pub fn tls_name(&self, dest: &SocketAddr) -> Option<ServerName<'static>> {
        let names = self.tls_names.read().unwrap_or_else(|e| e.into_inner());
        names.get(dest).cloned()
    }

    /// Names for new addresses of a carrier name (RFC 5922: the
    /// certificate shows the URI's domain, not the SRV target). Addresses
    /// it no longer has keep theirs: calls in progress may still use them.
    pub fn add_tls_names(
        &self,
        names: impl IntoIterator<Item = (SocketAddr, ServerName<'static>)>,
    ) {
        let mut t = self.tls_names.write().unwrap_or_else(|e| e.into_inner());
        t.extend(names);
    }

    /// The worker for a message: the probing worker (0) for probe answers
    /// and anything arriving at the host socket, else by Call-ID.
    pub fn shard(&self, data: &[u8], host_side: bool) -> usize {
        if host_side {
            0
        } else {
            trunkvip_proxy::shard_of(data, self.workers.len())
        }
    }

    /// Hands a datagram read by another worker to worker `n`, without
    /// waiting: a worker never blocks on another. A full inbox drops the
    /// datagram, as a full socket buffer would have (the sender
    /// retransmits), and counts it.
    pub fn hand_off(&self, n: usize, incoming: Incoming, data: Bytes) {
        match self.workers[n]
            .work
            .try_send(Work::Datagram(incoming, data))
        {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.inbox_full.fetch_add(1, Ordering::Relaxed) + 1;
                // One line per thousand: a storm must not flood the log.
                if dropped % 1000 == 1 {
                    warn!(worker = n, dropped, "worker inbox full: datagram dropped");
                }
            }
            // A closed inbox means shutdown.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub async fn dispatch_message(&self, incoming: Incoming, msg: Message, host_side: bool) {
        let n = self.shard(msg.as_bytes(), host_side);
        if enabled!(Level::DEBUG) {
            self.log_in(&msg, &incoming);
        }
        let _ = self.workers[n]
            .work
            .send(Work::Message(incoming, msg))
            .await;
    }

    /// Sends a control message to every worker but `except`.
    pub fn broadcast(&self, except: Option<usize>, make: impl Fn() -> Control) {
        for (n, w) in self.workers.iter().enumerate() {
            if Some(n) != except {
                let _ = w.control.send(make());
            }
        }
    }

    /// The debug log line of a message a worker sends.
    pub fn log_transmit(&self, t: &Transmit) {
        if let Ok(m) = Message::parse_datagram(t.payload.clone(), &self.limits) {
            self.log_out(&m, t);
        }
    }

    fn peer_name(&self, addr: &SocketAddr) -> String {
        self.edge_names
            .get(addr)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    fn log_in(&self, m: &Message, from: &Incoming) {
        let who = self.peer_name(&from.source);
        let cid = String::from_utf8_lossy(m.call_id().unwrap_or(b"-"));
        match m.status() {
            Some(code) => debug!(
                "<- {code} {} call-id={cid} from {who} ({})",
                String::from_utf8_lossy(m.reason().unwrap_or_default()),
                from.transport
            ),
            None => debug!(
                "<- {} {} call-id={cid} from {who} ({})",
                String::from_utf8_lossy(m.method_bytes().unwrap_or_default()),
                String::from_utf8_lossy(m.request_uri_bytes().unwrap_or_default()),
                from.transport
            ),
        }
    }

    fn log_out(&self, m: &Message, t: &Transmit) {
        let who = self.peer_name(&t.destination);
        let cid = String::from_utf8_lossy(m.call_id().unwrap_or(b"-"));
        match m.status() {
            Some(code) => debug!(
                "-> {code} {} call-id={cid} to {who} ({})",
                String::from_utf8_lossy(m.reason().unwrap_or_default()),
                t.transport
            ),
            None => debug!(
                "-> {} {} call-id={cid} to {who} ({})",
                String::from_utf8_lossy(m.method_bytes().unwrap_or_default()),
                String::from_utf8_lossy(m.request_uri_bytes().unwrap_or_default()),
                t.transport
            ),
        }
    }
}
