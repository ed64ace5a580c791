//! UDP: sockets made with socket2 (large buffers, IP_FREEBIND so a backup
//! host binds the VIP before it holds it, one socket of the service address
//! per worker with SO_REUSEPORT) and what a worker reads from them.

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
    UdpSocket::from_std(bind_std(addr, freebind, false)?)
}

/// The service address bound `n` times with SO_REUSEPORT, one socket per
/// worker: the kernel spreads sources over them by address and port, so
/// each source's datagrams reach one worker, in order, with no receive
/// task between (see [`crate::worker`]).
///
/// A group would let any process of the same user join it and take a
/// share of the datagrams, a second trunkvip started by mistake among
/// them; so the address is first bound once without SO_REUSEPORT, which
/// fails with "address in use" if anyone holds it, group or not.
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let alone = bind_std(addr, true, false)?;
    if n <= 1 {
        return Ok(vec![alone]);
    }
    // Port 0 is chosen once, by the lone bind.
    let addr = alone.local_addr()?;
    drop(alone);
    (0..n).map(|_| bind_std(addr, true, true)).collect()
}

fn bind_std(addr: SocketAddr, freebind: bool, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
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
    Ok(sock.into())
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
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

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
    /// 64 KiB buffer would pin all of it). A poll, so a worker drains its
    /// sockets in one wake-up without a future per datagram.
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

/// The debug log line of a datagram a worker read from its socket.
pub fn log_in(transports: &Transports, incoming: &Incoming, data: &Bytes) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        if let Ok(m) = trunkvip_sip::Message::parse_datagram(data.clone(), &transports.limits) {
            transports.log_in(&m, incoming);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_each_source_sticks_to_one_socket() {
        // Port 0: the lone bind picks it, the group joins it.
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let to = group[0].local_addr().unwrap();
        assert!(group.iter().all(|s| s.local_addr().unwrap() == to));
        let mut sockets_seen = std::collections::HashSet::new();
        for _ in 0..16 {
            let source = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for n in 0..5u8 {
                source.send_to(&[n], to).unwrap();
            }
            // Loopback delivers within send_to: all five wait in one
            // socket of the group, in order.
            let mut got = vec![];
            let mut buf = [0u8; 4];
            for (i, s) in group.iter().enumerate() {
                while let Ok((_, from)) = s.recv_from(&mut buf) {
                    assert_eq!(from, source.local_addr().unwrap());
                    got.push((i, buf[0]));
                }
            }
            let socket = got.first().expect("nothing received").0;
            assert_eq!(got, (0..5).map(|n| (socket, n)).collect::<Vec<_>>());
            sockets_seen.insert(socket);
        }
        // Nobody else joins the group: a second one cannot bind.
        let again = bind_group(to, 3).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse);
        // 16 sources over 3 sockets all on one: the kernel ignored
        // SO_REUSEPORT (odds otherwise 3 in 43 million).
        assert!(sockets_seen.len() > 1, "{sockets_seen:?}");
    }
}
