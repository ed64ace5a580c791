//! UDP: sockets made with socket2 (large buffers, IP_FREEBIND so a backup
//! host binds the VIP before it holds it, one socket of the service address
//! per worker with SO_REUSEPORT) and what a worker reads from them.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Interest, Registry, Token};
use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
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

/// The most datagrams one system call reads or sends.
pub const BATCH: usize = 32;

/// What a round's first read offers room for: a call's worth.
const FIRST_READ: usize = 8;

/// Room for the largest UDP datagram.
const SLOT: usize = 64 * 1024;

/// One thread's buffers and message headers for reading and sending up to
/// [`BATCH`] datagrams a system call (recvmmsg, sendmmsg): a round of a
/// busy worker costs two or three calls instead of two per datagram
/// (BENCHMARKS.md "Batched system calls"). The headers hold raw
/// pointers, so this is not `Send`: it lives on the worker thread's stack.
pub struct Scratch {
    /// One per address family, IPv4 then IPv6: the kernel leaves each
    /// header's address length at the last source's, and nix does not
    /// reset it, so an IPv6 source read through a header last used for
    /// IPv4 would come out cut to 16 bytes.
    recv: [MultiHeaders<SockaddrStorage>; 2],
    send: MultiHeaders<SockaddrStorage>,
    to: Vec<Option<SockaddrStorage>>,
    /// [`BATCH`] slots of [`SLOT`] bytes; untouched pages cost nothing.
    slots: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            recv: [(); 2].map(|_| MultiHeaders::preallocate(BATCH, None)),
            send: MultiHeaders::preallocate(BATCH, None),
            to: Vec::with_capacity(BATCH),
            slots: vec![0u8; BATCH * SLOT],
        }
    }
}

/// One UDP socket of a worker (its socket of the service address, or the
/// host socket), registered with the worker's event loop (mio, edge
/// triggered): read until a read would block or comes short; written in
/// batches, in order, at the end of the worker's round or, when the
/// kernel's buffer is full, once it drains.
#[derive(Debug)]
pub struct UdpIo {
    io: mio::net::UdpSocket,
    token: Token,
    /// The probe socket, whose answers belong to the probing worker.
    pub host_side: bool,
    local: SocketAddr,
    /// More may wait in the socket: only a read that would block or came
    /// short waits for the next readiness event.
    readable: bool,
    paused_until: Option<Instant>,
    /// Datagrams the last read got.
    last_read: usize,
    /// Waiting for the send buffer to drain (registered for writable).
    blocked: bool,
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
            last_read: 0,
            blocked: false,
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
    pub fn ready(
        &mut self,
        registry: &Registry,
        scratch: &mut Scratch,
        readable: bool,
        writable: bool,
    ) {
        if readable {
            self.readable = true;
        }
        if writable && self.blocked {
            self.send_pending(registry, scratch);
        }
    }

    /// When a paused socket is worth reading again.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until.filter(|_| self.readable)
    }

    /// Reads up to `room` datagrams (at most [`BATCH`]) in one system call
    /// and gives `f` each one worth proxying, copied out of the scratch
    /// slot (a message may live as long as its transaction). How many
    /// were read; 0 once the socket would block or a read came short.
    pub fn recv(
        &mut self,
        scratch: &mut Scratch,
        now: Instant,
        room: usize,
        mut f: impl FnMut(Incoming, Bytes),
    ) -> usize {
        if !self.may_read(now) || room == 0 {
            return 0;
        }
        self.paused_until = None;
        let mut got = [(0usize, None::<SocketAddr>); BATCH];
        // Each slot offered costs work in the call whether filled or not:
        // a round's first read offers a few, more after a full read.
        let ask = room.min(BATCH).min((2 * self.last_read).max(FIRST_READ));
        let n = loop {
            let mut bufs: Vec<[IoSliceMut<'_>; 1]> = Vec::with_capacity(ask);
            bufs.extend(
                scratch
                    .slots
                    .chunks_mut(SLOT)
                    .take(ask)
                    .map(|s| [IoSliceMut::new(s)]),
            );
            let read = recvmmsg(
                self.io.as_raw_fd(),
                &mut scratch.recv[usize::from(self.local.is_ipv6())],
                bufs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            );
            match read {
                Ok(read) => {
                    let mut n = 0;
                    for m in read {
                        got[n] = (m.bytes, m.address.and_then(std_addr));
                        n += 1;
                    }
                    self.last_read = n;
                    // Short of what was asked: the call met an empty queue
                    // (or an error raised meanwhile, which raised an event
                    // too), so the next datagram brings an event of its
                    // own and reading on would only meet EAGAIN.
                    if n < ask {
                        self.readable = false;
                    }
                    break n;
                }
                Err(Errno::EAGAIN) => {
                    self.readable = false;
                    self.last_read = 0;
                    return 0;
                }
                // ECONNREFUSED and the like, reported for an earlier send.
                Err(Errno::ECONNREFUSED | Errno::ECONNRESET | Errno::EINTR) => continue,
                Err(e) => {
                    warn!(local = %self.local, "udp receive: {e}");
                    self.paused_until = Some(now + ERROR_PAUSE);
                    return 0;
                }
            }
        };
        for (i, &(len, source)) in got[..n].iter().enumerate() {
            let Some(source) = source else { continue };
            let data = &scratch.slots[i * SLOT..][..len];
            // RFC 5626 keep-alives and stray CRLFs carry nothing to proxy.
            if data.iter().all(|c| matches!(c, b'\r' | b'\n' | b' ')) {
                continue;
            }
            let data = Bytes::copy_from_slice(data);
            crate::capture::record(Transport::Udp, source, self.local, || data.clone());
            f(Incoming::udp(source), data);
        }
        n
    }

    /// Queues one datagram, sent with the others of the round by
    /// [`UdpIo::flush`].
    pub fn send(&mut self, payload: Bytes, to: SocketAddr) {
        if let Some(c) = crate::capture::get() {
            c.message(Transport::Udp, self.local, to, payload.clone());
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

    /// Sends what is queued, in order, [`BATCH`] datagrams a system call;
    /// while the kernel's buffer is full, nothing until it drains.
    pub fn flush(&mut self, registry: &Registry, scratch: &mut Scratch) {
        if !self.blocked {
            self.send_pending(registry, scratch);
        }
    }

    /// Errors other than a full buffer (an unreachable network) lose that
    /// datagram only.
    fn send_pending(&mut self, registry: &Registry, scratch: &mut Scratch) {
        while !self.pending.is_empty() {
            let mut bufs = [[IoSlice::new(&[])]; BATCH];
            scratch.to.clear();
            for (buf, (payload, to)) in bufs.iter_mut().zip(self.pending.iter()) {
                *buf = [IoSlice::new(payload)];
                scratch.to.push(Some(SockaddrStorage::from(*to)));
            }
            let n = scratch.to.len();
            let sent = sendmmsg(
                self.io.as_raw_fd(),
                &mut scratch.send,
                &bufs[..n],
                &scratch.to,
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            // nix gives the number sent only as its results' length.
            .map(Iterator::count);
            match sent {
                Ok(n) => {
                    self.pending.drain(..n.clamp(1, self.pending.len()));
                }
                Err(Errno::EAGAIN) => {
                    // Told when the buffer drains.
                    if !self.blocked {
                        self.blocked = true;
                        if let Err(e) = self.interest(registry, true) {
                            warn!(local = %self.local, "udp: cannot wait for the send buffer: {e}");
                        }
                    }
                    return;
                }
                Err(e) => {
                    if let Some((_, to)) = self.pending.pop_front() {
                        debug!(destination = %to, "udp send failed: {e}");
                    }
                }
            }
        }
        if self.blocked {
            self.blocked = false;
            // A writable event after every datagram sent would only wake
            // the worker for nothing.
            if let Err(e) = self.interest(registry, false) {
                warn!(local = %self.local, "udp: cannot reregister: {e}");
            }
        }
    }
}

fn std_addr(a: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        Some(SocketAddr::V4((*v4).into()))
    } else {
        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
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

    /// Everything `io` reads until it would block, `room` at a time.
    fn read_all(io: &mut UdpIo, scratch: &mut Scratch, room: usize) -> Vec<(SocketAddr, Bytes)> {
        let mut got = vec![];
        let now = Instant::now();
        while io.recv(scratch, now, room, |from, data| {
            got.push((from.source, data))
        }) > 0
        {}
        got
    }

    #[test]
    fn reads_in_batches_in_order_and_sources_of_both_families_intact() {
        let mut scratch = Scratch::default();
        // IPv4 first: each header keeps the address length of its last
        // read, and an IPv6 source read after must still be whole.
        for (n, local) in ["127.0.0.1:0", "[::1]:0"].into_iter().enumerate() {
            let sock = bind(local.parse().unwrap(), false).unwrap();
            let to = sock.local_addr().unwrap();
            let mut io = UdpIo::new(sock, false, Token(n)).unwrap();
            let source = std::net::UdpSocket::bind(SocketAddr::new(to.ip(), 0)).unwrap();
            // More than a batch, a keep-alive among them.
            for i in 0..(BATCH as u8 + 9) {
                source.send_to(&[b'a', i], to).unwrap();
                if i == 3 {
                    source.send_to(b"\r\n\r\n", to).unwrap();
                }
            }
            let got = read_all(&mut io, &mut scratch, BATCH);
            assert!(
                got.iter()
                    .all(|(from, _)| *from == source.local_addr().unwrap()),
                "{got:?}"
            );
            let payloads: Vec<_> = got.iter().map(|(_, d)| d[1]).collect();
            assert_eq!(payloads, (0..(BATCH as u8 + 9)).collect::<Vec<_>>());
            assert!(!io.may_read(Instant::now()), "read until it would block");
        }
    }

    #[test]
    fn a_short_read_waits_for_the_next_event_which_brings_what_came_since() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(8);
        let mut scratch = Scratch::default();
        let sock = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let to = sock.local_addr().unwrap();
        let mut io = UdpIo::new(sock, false, Token(0)).unwrap();
        io.register(poll.registry()).unwrap();
        let source = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let wait = |poll: &mut mio::Poll, events: &mut mio::Events| {
            poll.poll(events, Some(Duration::from_secs(5))).unwrap();
            events.iter().any(|e| e.is_readable())
        };
        source.send_to(b"a1", to).unwrap();
        source.send_to(b"a2", to).unwrap();
        assert!(wait(&mut poll, &mut events));
        io.ready(poll.registry(), &mut scratch, true, false);
        let mut got = vec![];
        let n = io.recv(&mut scratch, Instant::now(), BATCH, |_, d| got.push(d));
        assert_eq!((n, got.len()), (2, 2), "two of the {FIRST_READ} asked for");
        // Short: the queue was empty, so no second read (no EAGAIN call).
        assert!(!io.may_read(Instant::now()));
        source.send_to(b"a3", to).unwrap();
        assert_eq!(io.recv(&mut scratch, Instant::now(), BATCH, |_, _| {}), 0);
        // The datagram that came since raised an event of its own.
        assert!(
            wait(&mut poll, &mut events),
            "no event for the new datagram"
        );
        io.ready(poll.registry(), &mut scratch, true, false);
        let n = io.recv(&mut scratch, Instant::now(), BATCH, |_, d| got.push(d));
        assert_eq!(n, 1);
        assert_eq!(got, [&b"a1"[..], b"a2", b"a3"]);
    }

    #[test]
    fn a_round_of_sends_leaves_in_batches_in_order() {
        let poll = mio::Poll::new().unwrap();
        let mut scratch = Scratch::default();
        let mut io = UdpIo::new(
            bind("127.0.0.1:0".parse().unwrap(), false).unwrap(),
            false,
            Token(0),
        )
        .unwrap();
        io.register(poll.registry()).unwrap();
        let peers: Vec<_> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for p in &peers {
            p.set_nonblocking(true).unwrap();
        }
        let n = 2 * BATCH + 5;
        for i in 0..n {
            io.send(
                Bytes::from(vec![i as u8]),
                peers[i % 2].local_addr().unwrap(),
            );
        }
        // Queued until the round ends.
        let mut buf = [0u8; 8];
        assert!(peers[0].recv_from(&mut buf).is_err());
        io.flush(poll.registry(), &mut scratch);
        for (p, peer) in peers.iter().enumerate() {
            let mut got = vec![];
            while let Ok((_, from)) = peer.recv_from(&mut buf) {
                assert_eq!(from, io.local);
                got.push(buf[0] as usize);
            }
            assert_eq!(got, (0..n).filter(|i| i % 2 == p).collect::<Vec<_>>());
        }
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
