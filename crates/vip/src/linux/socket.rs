//! The VRRP socket: raw IP, protocol 112, bound to one interface.
//!
//! - IPv4: a raw socket delivers the whole datagram, IP header included, so
//!   source, destination and TTL are read from the header.
//! - IPv6: the kernel strips the header; `IPV6_RECVPKTINFO` and
//!   `IPV6_RECVHOPLIMIT` return the destination and hop limit as control
//!   messages. The VRRP checksum (with the IPv6 pseudo-header) is computed by
//!   the codec, so `IPV6_CHECKSUM` is left off.
//!
//! Adverts go out with TTL / hop limit 255, from the primary address (set per
//! datagram with `IP_PKTINFO` / `IPV6_PKTINFO`, since binding a raw socket to
//! an address would also filter what it receives), to the VRRP multicast
//! group (joined on the interface, loopback off) or to each unicast peer.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::libc;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::packet::{Family, IPPROTO_VRRP, REQUIRED_TTL};

/// Where and how a VRRP message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Source address of the IP header.
    pub src: IpAddr,
    /// Destination address of the IP header.
    pub dst: IpAddr,
    /// TTL / hop limit it arrived with.
    pub ttl: u8,
}

/// A raw protocol-112 socket on one interface. See the module documentation.
///
/// The raw socket is registered with tokio's reactor as a
/// `tokio::net::UdpSocket`: readiness is all tokio looks at, and every read
/// and write goes through `recvmsg` / `sendmsg` on the descriptor. (The
/// alternative, `AsyncFd`, can now only be built with `unsafe`.)
#[derive(Debug)]
pub struct VrrpSocket {
    io: UdpSocket,
    family: Family,
    ifindex: u32,
    source: IpAddr,
    destinations: Vec<IpAddr>,
}

impl VrrpSocket {
    /// Opens the socket on interface `name` (index `ifindex`), sending from
    /// `source`. With `peers` empty it joins the VRRP multicast group and
    /// sends there; otherwise it sends to each peer.
    ///
    /// Needs `CAP_NET_RAW`. Must be called within a tokio runtime.
    pub fn open(name: &str, ifindex: u32, source: IpAddr, peers: &[IpAddr]) -> io::Result<Self> {
        let family = Family::of(source);
        if let Some(p) = peers.iter().find(|p| Family::of(**p) != family) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("peer {p} is not of the primary address's family"),
            ));
        }
        let domain = match family {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
        };
        let socket = Socket::new(
            domain,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        socket.bind_device(Some(name.as_bytes()))?;
        let group = family.multicast_group();
        match (family, group) {
            (Family::V4, IpAddr::V4(g)) => {
                socket.set_ttl_v4(u32::from(REQUIRED_TTL))?;
                socket.set_multicast_ttl_v4(u32::from(REQUIRED_TTL))?;
                socket.set_multicast_loop_v4(false)?;
                // Only the groups joined here, not every group of the host.
                socket.set_multicast_all_v4(false)?;
                if peers.is_empty() {
                    socket.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex))?;
                }
            }
            (Family::V6, IpAddr::V6(g)) => {
                socket.set_unicast_hops_v6(u32::from(REQUIRED_TTL))?;
                socket.set_multicast_hops_v6(u32::from(REQUIRED_TTL))?;
                socket.set_multicast_loop_v6(false)?;
                socket.set_multicast_if_v6(ifindex)?;
                socket.set_multicast_all_v6(false)?;
                socket.set_recv_hoplimit_v6(true)?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
                if peers.is_empty() {
                    socket.join_multicast_v6(&g, ifindex)?;
                }
            }
            _ => unreachable!("multicast_group is of the family"),
        }
        let destinations = if peers.is_empty() {
            vec![group]
        } else {
            peers.to_vec()
        };
        let io = UdpSocket::from_std(std::net::UdpSocket::from(std::os::fd::OwnedFd::from(
            socket,
        )))?;
        Ok(Self {
            io,
            family,
            ifindex,
            source,
            destinations,
        })
    }

    /// Where adverts go: the multicast group, or the unicast peers.
    pub fn destinations(&self) -> &[IpAddr] {
        &self.destinations
    }

    /// The source address of adverts.
    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// Waits for the next datagram; returns its addresses and TTL and the
    /// VRRP message, a slice of `buf`. Datagrams too short to carry an IP
    /// header, or truncated, are skipped.
    pub async fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<(Received, &'b [u8])> {
        let fd = self.io.as_raw_fd();
        loop {
            let r = match self.family {
                Family::V4 => {
                    let n = self.io.recv(buf).await?;
                    parse_ipv4(&buf[..n]).map(|(meta, start)| (meta, start, n))
                }
                Family::V6 => {
                    self.io
                        .async_io(Interest::READABLE, || recv_v6(fd, buf, MsgFlags::empty()))
                        .await?
                }
            };
            if let Some((meta, start, end)) = r {
                return Ok((meta, &buf[start..end]));
            }
        }
    }

    /// Like [`recv`](Self::recv) without waiting: `Ok(None)` when nothing is
    /// queued. Lets the runner read adverts that arrived while it was not
    /// scheduled before it acts on a timer that fell due meanwhile.
    ///
    /// Asks the kernel (`MSG_DONTWAIT`), not tokio's readiness cache: after
    /// SIGSTOP/SIGCONT `epoll_wait` fails with EINTR, so the timer can fire
    /// before the reactor has learnt that the socket is readable.
    pub fn try_recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<Option<(Received, &'b [u8])>> {
        let fd = self.io.as_raw_fd();
        loop {
            let r = match self.family {
                Family::V4 => match nix::sys::socket::recv(fd, buf, MsgFlags::MSG_DONTWAIT) {
                    Ok(n) => parse_ipv4(&buf[..n]).map(|(meta, start)| (meta, start, n)),
                    Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                    Err(e) => return Err(e.into()),
                },
                Family::V6 => match recv_v6(fd, buf, MsgFlags::MSG_DONTWAIT) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                },
            };
            if let Some((meta, start, end)) = r {
                return Ok(Some((meta, &buf[start..end])));
            }
        }
    }

    /// Sends one VRRP message to `dst`, from the primary address, out of the
    /// interface.
    pub fn send_to(&self, msg: &[u8], dst: IpAddr) -> io::Result<()> {
        let fd = self.io.as_raw_fd();
        let iov = [IoSlice::new(msg)];
        let ifindex = self.ifindex;
        let sent = match (self.source, dst) {
            (IpAddr::V4(src), IpAddr::V4(d)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: ifindex as libc::c_int,
                    ipi_spec_dst: in_addr(src),
                    ipi_addr: in_addr(Ipv4Addr::UNSPECIFIED),
                };
                let addr = SockaddrIn::from(SocketAddrV4::new(d, 0));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&addr),
                )
            }
            (IpAddr::V6(src), IpAddr::V6(d)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: ifindex,
                };
                let scope = if needs_scope(d) { ifindex } else { 0 };
                let addr = SockaddrIn6::from(SocketAddrV6::new(d, 0, 0, scope));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&addr),
                )
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "destination is not of the socket's family",
                ))
            }
        };
        sent.map(drop).map_err(io::Error::from)
    }
}

fn in_addr(a: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(a.octets()),
    }
}

/// Link-local and multicast destinations need the interface as scope.
fn needs_scope(a: Ipv6Addr) -> bool {
    a.is_multicast() || a.segments()[0] & 0xffc0 == 0xfe80
}

type RecvResult = io::Result<Option<(Received, usize, usize)>>;

/// Source, destination, TTL and payload offset of an IPv4 datagram as a raw
/// socket returns it (header included).
pub(crate) fn parse_ipv4(d: &[u8]) -> Option<(Received, usize)> {
    if d.len() < 20 || d[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(d[0] & 0x0f) * 4;
    if ihl < 20 || d.len() < ihl {
        return None;
    }
    let src = Ipv4Addr::new(d[12], d[13], d[14], d[15]);
    let dst = Ipv4Addr::new(d[16], d[17], d[18], d[19]);
    Some((
        Received {
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            ttl: d[8],
        },
        ihl,
    ))
}

fn recv_v6(fd: RawFd, buf: &mut [u8], flags: MsgFlags) -> RecvResult {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), flags)?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Ok(None);
    }
    let Some(src) = msg.address.map(|a| a.ip()) else {
        return Ok(None);
    };
    let mut dst = None;
    let mut ttl = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            ControlMessageOwned::Ipv6HopLimit(h) => ttl = u8::try_from(h).ok(),
            _ => {}
        }
    }
    let n = msg.bytes;
    match (dst, ttl) {
        (Some(dst), Some(ttl)) => Ok(Some((
            Received {
                src: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                ttl,
            },
            0,
            n,
        ))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_fields() {
        let mut d = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0, 198, 51, 100, 11, 224, 0, 0, 18,
        ];
        d.extend_from_slice(&[0x31, 51, 150, 1, 0, 10, 0, 0]);
        let (meta, start) = parse_ipv4(&d).unwrap();
        assert_eq!(meta.src, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11)));
        assert_eq!(meta.dst, IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)));
        assert_eq!(meta.ttl, 255);
        assert_eq!(start, 20);
        assert_eq!(d[start], 0x31);
    }

    #[test]
    fn ipv4_header_with_options_and_garbage() {
        let mut d = vec![
            0x46, 0, 0, 32, 0, 0, 0, 0, 64, 112, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        d.extend_from_slice(&[1, 1, 1, 0]); // 4 bytes of options
        let (meta, start) = parse_ipv4(&d).unwrap();
        assert_eq!(start, 24);
        assert_eq!(meta.ttl, 64);
        assert!(parse_ipv4(&d[..19]).is_none());
        assert!(parse_ipv4(&[0x65; 20]).is_none(), "not version 4");
        let mut short = d.clone();
        short[0] = 0x4f; // IHL 60 > length
        assert!(parse_ipv4(&short).is_none());
    }

    #[test]
    fn scope_needed() {
        assert!(needs_scope("ff02::12".parse().unwrap()));
        assert!(needs_scope("fe80::1".parse().unwrap()));
        assert!(!needs_scope("2001:db8::12".parse().unwrap()));
    }
}
