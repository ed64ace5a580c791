//! UDP: sockets made with socket2 (large buffers, IP_FREEBIND so a backup
//! host binds the VIP before it holds it, one socket of the service address
//! per worker with SO_REUSEPORT) and what a worker reads from them.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};
use trunkvip_proxy::{Incoming, Transport};

use super::Transports;

/// What we ask of the kernel for each direction; it caps the receive side
/// at net.core.rmem_max.
const BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Binds a UDP socket, non-blocking. With `freebind` the address need
/// not be on an interface yet (IP_FREEBIND, IPV6_FREEBIND).
pub fn bind(addr: SocketAddr, freebind: bool) -> io::Result<std::net::UdpSocket> {
    bind_std(addr, freebind, false)
}

/// The service address bound `n` times with SO_REUSEPORT, one socket per
/// worker to send from, and every datagram steered to the first one (a
/// one-instruction classic BPF program as the group's selector), so one
/// worker reads them all, in order (see [`crate::worker`]). The kernel's
/// own spread, by source address and port, would put a call's carrier
/// side on one socket and its Edge side on another, and each call would
/// then cross between two threads (11 % more CPU per call, BENCHMARKS.md
/// "One reader"). Where the program cannot be attached, that spread is
/// the fallback.
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
    let group: Vec<_> = (0..n)
        .map(|_| bind_std(addr, true, true))
        .collect::<io::Result<_>>()?;
    if let Err(e) = steer_to_first(&group[0]) {
        warn!(%addr, "udp: cannot steer the service address to one reader, the kernel spreads sources over the workers: {e}");
    }
    Ok(group)
}

/// Every datagram to the group's first socket: a classic BPF program of
/// one instruction, `ret #0`, as the group's selector.
fn steer_to_first(sock: &std::net::UdpSocket) -> io::Result<()> {
    use nix::libc::{sock_filter, sock_fprog, BPF_K, BPF_RET};
    let mut prog = [sock_filter {
        code: (BPF_RET | BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::AttachReusePortCbpf, &fprog)
        .map_err(io::Error::from)
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

/// Datagrams a socket holds back while the kernel's send buffer is full;
/// past this the newest are dropped (the sender retransmits), so a peer
/// that stops reading cannot grow the worker without bound.
const PENDING_MAX: usize = 4096;

/// After an unexpected receive error, the socket is left alone this long,
/// so one that keeps failing does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// One UDP socket of a worker (its socket of the service address, or the
/// host socket), registered with the worker's event loop (mio, edge
/// triggered): read until it would block, written at once or, when the
/// kernel's buffer is full, in order once it drains.
#[derive(Debug)]
pub struct UdpIo {
    io: mio::net::UdpSocket,
    token: Token,
    /// The probe socket, whose answers belong to the probing worker.
    pub host_side: bool,
    local: SocketAddr,
    /// More may wait in the socket: only a read that would block waits
    /// for the next readiness event.
    readable: bool,
    paused_until: Option<Instant>,
    pending: VecDeque<(Bytes, SocketAddr)>,
    dropped: u64,
}

impl UdpIo {
    pub fn new(sock: std::net::UdpSocket, host_side: bool, token: Token) -> io::Result<Self> {
        let local = sock.local_addr()?;
        sock.set_nonblocking(true)?;
        Ok(Self {
            io: mio::net::UdpSocket::from_std(sock),
            token,
            host_side,
            local,
            readable: true,
            paused_until: None,
            pending: VecDeque::new(),
            dropped: 0,
        })
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.io, self.token, Interest::READABLE)
    }

    /// Readable always; writable too while a full send buffer holds
    /// datagrams back (else every datagram sent would wake the worker).
    fn interest(&mut self, registry: &Registry, writable: bool) -> io::Result<()> {
        let want = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        registry.reregister(&mut self.io, self.token, want)
    }

    /// Whether a read may find a datagram now, without waiting for an
    /// event.
    pub fn may_read(&self, now: Instant) -> bool {
        self.readable && self.paused_until.is_none_or(|t| now >= t)
    }

    /// Noted from a readiness event.
    pub fn ready(&mut self, registry: &Registry, readable: bool, writable: bool) {
        if readable {
            self.readable = true;
        }
        if writable {
            self.flush(registry);
        }
    }

    /// When a paused socket is worth reading again.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until.filter(|_| self.readable)
    }

    /// The next datagram worth proxying, copied out of `buf` (a message may
    /// live as long as its transaction; a slice of a shared 64 KiB buffer
    /// would pin all of it); `None` once the socket would block.
    pub fn recv(&mut self, buf: &mut [u8], now: Instant) -> Option<(Incoming, Bytes)> {
        if !self.may_read(now) {
            return None;
        }
        self.paused_until = None;
        loop {
            let (n, source) = match self.io.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return None;
                }
                // ECONNREFUSED and the like, reported for an earlier send.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    warn!(local = %self.local, "udp receive: {e}");
                    self.paused_until = Some(now + ERROR_PAUSE);
                    return None;
                }
            };
            let data = &buf[..n];
            // RFC 5626 keep-alives and stray CRLFs carry nothing to proxy.
            if data.iter().all(|c| matches!(c, b'\r' | b'\n' | b' ')) {
                continue;
            }
            let data = Bytes::copy_from_slice(data);
            crate::capture::record(Transport::Udp, source, self.local, || data.clone());
            return Some((Incoming::udp(source), data));
        }
    }

    /// Sends one datagram, after any held back. Errors other than a full
    /// buffer (an ICMP port unreachable reported on a later send) are the
    /// network's to lose.
    pub fn send(&mut self, registry: &Registry, payload: Bytes, to: SocketAddr) {
        if let Some(c) = crate::capture::get() {
            c.message(Transport::Udp, self.local, to, payload.clone());
        }
        if self.pending.is_empty() {
            match self.io.send_to(&payload, to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Told when the buffer drains.
                    if let Err(e) = self.interest(registry, true) {
                        warn!(local = %self.local, "udp: cannot wait for the send buffer: {e}");
                    }
                }
                Err(e) => {
                    debug!(destination = %to, "udp send failed: {e}");
                    return;
                }
                Ok(_) => return,
            }
        }
        if self.pending.len() >= PENDING_MAX {
            self.dropped += 1;
            // One line per thousand: a storm must not flood the log.
            if self.dropped % 1000 == 1 {
                warn!(local = %self.local, dropped = self.dropped, "udp send buffer full: datagram dropped");
            }
            return;
        }
        self.pending.push_back((payload, to));
    }

    fn flush(&mut self, registry: &Registry) {
        while let Some((payload, to)) = self.pending.front() {
            match self.io.send_to(payload, *to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => debug!(destination = %to, "udp send failed: {e}"),
                Ok(_) => {}
            }
            self.pending.pop_front();
        }
        // Drained: a writable event after every datagram sent would only
        // wake the worker for nothing.
        if let Err(e) = self.interest(registry, false) {
            warn!(local = %self.local, "udp: cannot reregister: {e}");
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
    use std::collections::HashSet;

    use super::*;

    /// 16 sources send five datagrams each to `group`'s address; each
    /// source's must all wait in one socket, in order (loopback delivers
    /// within `send_to`). The sockets that got some.
    fn sixteen_sources(group: &[std::net::UdpSocket]) -> HashSet<usize> {
        let to = group[0].local_addr().unwrap();
        let mut sockets_seen = HashSet::new();
        for _ in 0..16 {
            let source = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for n in 0..5u8 {
                source.send_to(&[n], to).unwrap();
            }
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
        sockets_seen
    }

    #[test]
    fn a_group_shares_one_port_and_its_first_socket_reads_every_source() {
        // Port 0: the lone bind picks it, the group joins it.
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let to = group[0].local_addr().unwrap();
        assert!(group.iter().all(|s| s.local_addr().unwrap() == to));
        // All on the first socket: the steering program holds (the
        // kernel's own spread over 3 sockets would do that once in 43
        // million runs).
        assert_eq!(sixteen_sources(&group), [0].into());
        // Nobody else joins the group: a second one cannot bind.
        let again = bind_group(to, 3).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn without_the_program_the_kernel_spreads_sources() {
        // What the steering replaces, and its fallback: each source still
        // sticks to one socket, in order, and 16 land on more than one.
        let to = bind_std("127.0.0.1:0".parse().unwrap(), false, false)
            .unwrap()
            .local_addr()
            .unwrap();
        let group: Vec<_> = (0..3).map(|_| bind_std(to, false, true).unwrap()).collect();
        let seen = sixteen_sources(&group);
        assert!(seen.len() > 1, "{seen:?}");
    }
}
