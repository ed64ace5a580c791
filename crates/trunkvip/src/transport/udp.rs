//! UDP: sockets made with socket2 (large buffers, IP_FREEBIND so a backup
//! host binds the VIP before it holds it) and the receive loop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::time::Sleep;
use tracing::{debug, warn};
use trunkvip_proxy::{Incoming, Transport};

use super::Transports;

/// What we ask of the kernel for each direction; it caps the receive side
/// at net.core.rmem_max.
const BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Binds a UDP socket. With `freebind` the address need not be on an
/// interface yet (IP_FREEBIND, IPV6_FREEBIND).
pub fn bind(addr: SocketAddr, freebind: bool) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    // Best effort: an unprivileged process gets what rmem_max allows.
    let _ = sock.set_recv_buffer_size(BUFFER_BYTES);
    let _ = sock.set_send_buffer_size(BUFFER_BYTES);
    if freebind {
        set_freebind(&sock, addr)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

pub(crate) fn set_freebind(sock: &Socket, addr: SocketAddr) -> io::Result<()> {
    if addr.is_ipv6() {
        sock.set_freebind_v6(true)
    } else {
        sock.set_freebind_v4(true)
    }
}

/// Sends one datagram; errors (an ICMP port unreachable reported on a
/// later send, a full buffer) are the network's to lose.
pub async fn send(sock: &UdpSocket, payload: &[u8], to: SocketAddr) {
    if let Some(c) = crate::capture::get() {
        if let Some(local) = crate::capture::udp_local(sock) {
            c.message(Transport::Udp, local, to, Bytes::copy_from_slice(payload));
        }
    }
    let r = match sock.try_send_to(payload, to) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.send_to(payload, to).await,
        r => r,
    };
    if let Err(e) = r {
        debug!(destination = %to, "udp send failed: {e}");
    }
}

/// One UDP socket being read: what a receive task or a lone worker polls.
#[derive(Debug)]
pub struct UdpInput {
    sock: Arc<UdpSocket>,
    /// This is the probe socket, whose answers belong to the probing
    /// worker.
    pub host_side: bool,
    local: Option<SocketAddr>,
    buf: Vec<u8>,
    /// After an unexpected receive error: a pause, so a socket that keeps
    /// failing does not spin.
    pause: Option<Pin<Box<Sleep>>>,
}

impl UdpInput {
    pub fn new(sock: Arc<UdpSocket>, host_side: bool) -> Self {
        let local = sock.local_addr().ok();
        Self {
            sock,
            host_side,
            local,
            buf: vec![0u8; 65536],
            pause: None,
        }
    }

    /// The next datagram worth proxying, copied out of the receive buffer
    /// (a message may live as long as its transaction; a slice of a shared
    /// 64 KiB buffer would pin all of it).
    pub async fn recv(&mut self) -> (Incoming, Bytes) {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Self::recv`] as a poll: a worker drains its sockets in one wake-up
    /// without a future per datagram.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<(Incoming, Bytes)> {
        loop {
            if let Some(p) = self.pause.as_mut() {
                ready!(p.as_mut().poll(cx));
                self.pause = None;
            }
            let mut rb = ReadBuf::new(&mut self.buf);
            let source = match ready!(self.sock.poll_recv_from(cx, &mut rb)) {
                Ok(source) => source,
                Err(e) => {
                    // ECONNREFUSED and the like, reported for an earlier send.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) {
                        warn!("udp receive: {e}");
                        self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(10))));
                    }
                    continue;
                }
            };
            let data = rb.filled();
            // RFC 5626 keep-alives and stray CRLFs carry nothing to proxy.
            if data.iter().all(|c| matches!(c, b'\r' | b'\n' | b' ')) {
                continue;
            }
            let data = Bytes::copy_from_slice(data);
            if let Some(local) = self.local {
                crate::capture::record(Transport::Udp, source, local, || data.clone());
            }
            return Poll::Ready((Incoming::udp(source), data));
        }
    }
}

/// The debug log line of a datagram a lone worker read itself (others are
/// logged by [`Transports::dispatch_datagram`]).
pub fn log_in(transports: &Transports, incoming: &Incoming, data: &Bytes) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        if let Ok(m) = trunkvip_sip::Message::parse_datagram(data.clone(), &transports.limits) {
            transports.log_in(&m, incoming);
        }
    }
}

/// Reads datagrams and hands each to its worker (with several workers;
/// a lone worker reads its sockets itself, see [`crate::worker::run`]).
pub async fn receive(mut input: UdpInput, transports: Arc<Transports>) {
    loop {
        let (incoming, data) = input.recv().await;
        transports
            .dispatch_datagram(incoming, data, input.host_side)
            .await;
    }
}
