//! Announcing the VIP to the link: gratuitous ARP (IPv4) and unsolicited
//! Neighbor Advertisements (IPv6), as whole Ethernet frames sent through an
//! `AF_PACKET` socket bound to the interface.
//!
//! Both carry the interface's own MAC (the VIP lives on the real interface,
//! as with keepalived without `use_vmac`), so that a carrier whose neighbour
//! cache still points at the old Active switches to us at once:
//!
//! - ARP: a broadcast request with sender IP = target IP = the VIP. Linux
//!   treats such a packet as gratuitous and updates an existing entry even
//!   inside its `locktime`.
//! - NA (RFC 4861 §4.4, §7.2.6): to ff02::1 (Ethernet 33:33:00:00:00:01),
//!   hop limit 255, Override flag set, Solicited clear, target = the VIP, with
//!   the Target Link-Layer Address option. The ICMPv6 checksum is computed
//!   here, over the IPv6 pseudo-header.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use nix::ifaddrs::getifaddrs;
use nix::sys::socket::{bind, send, MsgFlags};
use socket2::{Domain, Socket, Type};

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub const BROADCAST_MAC: Mac = [0xff; 6];
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Length of a gratuitous ARP frame (Ethernet header + ARP for IPv4), before
/// the padding the NIC adds.
pub const ARP_FRAME_LEN: usize = 14 + 28;
/// Length of an unsolicited NA frame: Ethernet, IPv6, NA, one 8-byte option.
pub const NA_FRAME_LEN: usize = 14 + 40 + 24 + 8;
/// IPv6 all-nodes multicast group, the destination of unsolicited NAs.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
const IPPROTO_ICMPV6: u8 = 58;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LL_ADDR: u8 = 2;

/// The Ethernet multicast MAC of an IPv6 multicast group (RFC 2464 §7).
pub fn ipv6_multicast_mac(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// A gratuitous ARP request for `vip` from `mac`: broadcast, sender and
/// target protocol address both `vip`, target hardware address zero
/// (RFC 5227 §2.3).
pub fn garp_frame(mac: Mac, vip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let arp = &mut f[14..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    arp[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes()); // protocol type
    arp[4] = 6; // hardware address length
    arp[5] = 4; // protocol address length
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // operation: request
    arp[8..14].copy_from_slice(&mac); // sender hardware address
    arp[14..18].copy_from_slice(&vip.octets()); // sender protocol address
                                                // target hardware address: zero
    arp[24..28].copy_from_slice(&vip.octets()); // target protocol address
    f
}

/// An unsolicited Neighbor Advertisement for `target` (the VIP) from `mac`,
/// sent from `src` (an address of the interface, normally its link-local
/// one) to all nodes.
pub fn unsolicited_na_frame(mac: Mac, src: Ipv6Addr, target: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&ipv6_multicast_mac(ALL_NODES));
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());

    let icmp_len: u16 = 24 + 8;
    let ip = &mut f[14..54];
    ip[0] = 0x60; // version 6, traffic class 0, flow label 0
    ip[4..6].copy_from_slice(&icmp_len.to_be_bytes());
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = 255; // hop limit: receivers drop NDP with anything else
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());

    let icmp = &mut f[54..];
    icmp[0] = ICMPV6_NEIGHBOR_ADVERT;
    icmp[1] = 0; // code
                 // checksum at 2..4, below
    icmp[4] = NA_FLAG_OVERRIDE; // R = 0, S = 0, O = 1, reserved
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = ND_OPT_TARGET_LL_ADDR;
    icmp[25] = 1; // option length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);

    let sum = icmpv6_checksum(src, ALL_NODES, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum of `msg` (its checksum field zero or to be verified)
/// sent from `src` to `dst` (RFC 4443 §2.3, RFC 8200 §8.1).
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for c in bytes.chunks(2) {
            let hi = u32::from(c[0]) << 8;
            let lo = c.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    add(&len.to_be_bytes());
    add(&[0, 0, 0, IPPROTO_ICMPV6]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An `AF_PACKET` socket bound to one interface, for sending whole frames.
///
/// It is opened with protocol 0, so it receives nothing.
#[derive(Debug)]
pub struct Announcer {
    socket: Socket,
    ifindex: u32,
    mac: Mac,
}

impl Announcer {
    /// Opens a packet socket on interface `ifindex` (named `name`), whose
    /// MAC is `mac`.
    pub fn open(name: &str, ifindex: u32, mac: Mac) -> io::Result<Self> {
        let socket = Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)?;
        // Binding needs a sockaddr_ll for the interface. nix builds that type
        // only from what the kernel returns, so take the one getifaddrs gives
        // for the interface's AF_PACKET entry (its index, protocol 0).
        let link = getifaddrs()
            .map_err(io::Error::from)?
            .filter(|ifa| ifa.interface_name == name)
            .find_map(|ifa| ifa.address.and_then(|a| a.as_link_addr().copied()))
            .filter(|l| l.ifindex() == ifindex as usize)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no link-layer address for interface {name} (index {ifindex})"),
                )
            })?;
        bind(socket.as_raw_fd(), &link).map_err(io::Error::from)?;
        Ok(Self {
            socket,
            ifindex,
            mac,
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The MAC announcements carry.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// Sends one gratuitous ARP for `vip`.
    pub fn garp(&self, vip: Ipv4Addr) -> io::Result<()> {
        self.send(&garp_frame(self.mac, vip))
    }

    /// Sends one unsolicited NA for `target` from `src`.
    pub fn unsolicited_na(&self, src: Ipv6Addr, target: Ipv6Addr) -> io::Result<()> {
        self.send(&unsolicited_na_frame(self.mac, src, target))
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        send(self.socket.as_raw_fd(), frame, MsgFlags::empty()).map_err(io::Error::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn garp_fields() {
        let vip = Ipv4Addr::new(198, 51, 100, 10);
        let f = garp_frame(MAC, vip);
        assert_eq!(f.len(), 42);
        // Ethernet
        assert_eq!(&f[0..6], &[0xff; 6], "destination: broadcast");
        assert_eq!(&f[6..12], &MAC, "source: our MAC");
        assert_eq!(&f[12..14], &[0x08, 0x06], "EtherType ARP");
        // ARP
        assert_eq!(&f[14..16], &[0x00, 0x01], "htype Ethernet");
        assert_eq!(&f[16..18], &[0x08, 0x00], "ptype IPv4");
        assert_eq!(f[18], 6, "hlen");
        assert_eq!(f[19], 4, "plen");
        assert_eq!(&f[20..22], &[0x00, 0x01], "op request");
        assert_eq!(&f[22..28], &MAC, "sender MAC");
        assert_eq!(&f[28..32], &[198, 51, 100, 10], "sender IP = VIP");
        assert_eq!(&f[32..38], &[0; 6], "target MAC zero");
        assert_eq!(&f[38..42], &[198, 51, 100, 10], "target IP = VIP");
    }

    #[test]
    fn na_fields() {
        let src: Ipv6Addr = "fe80::1:2".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let f = unsolicited_na_frame(MAC, src, target);
        assert_eq!(f.len(), 86);
        // Ethernet
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1], "all-nodes MAC");
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x86, 0xdd], "EtherType IPv6");
        // IPv6
        let ip = &f[14..54];
        assert_eq!(ip[0] >> 4, 6, "version");
        assert_eq!(
            &ip[0..4],
            &[0x60, 0, 0, 0],
            "traffic class and flow label 0"
        );
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 32, "payload length");
        assert_eq!(ip[6], 58, "next header ICMPv6");
        assert_eq!(ip[7], 255, "hop limit");
        assert_eq!(&ip[8..24], &src.octets());
        assert_eq!(&ip[24..40], &ALL_NODES.octets(), "to ff02::1");
        // ICMPv6 NA
        let icmp = &f[54..];
        assert_eq!(icmp[0], 136, "type NA");
        assert_eq!(icmp[1], 0, "code");
        assert_eq!(icmp[4] & 0x80, 0, "R clear");
        assert_eq!(icmp[4] & 0x40, 0, "S clear: unsolicited");
        assert_eq!(icmp[4] & 0x20, 0x20, "O set");
        assert_eq!(&icmp[4..8], &[0x20, 0, 0, 0], "reserved zero");
        assert_eq!(&icmp[8..24], &target.octets(), "target = VIP");
        assert_eq!(icmp[24], 2, "option: target link-layer address");
        assert_eq!(icmp[25], 1, "option length 1 (8 bytes)");
        assert_eq!(&icmp[26..32], &MAC);
        // The checksum verifies: summing over the message with its checksum
        // gives zero after complementing.
        assert_eq!(icmpv6_checksum(src, ALL_NODES, icmp), 0);
        assert_ne!(&icmp[2..4], &[0, 0]);
    }

    #[test]
    fn icmpv6_checksum_known_value() {
        // An echo request from ::1 to ::1, id 0x1234, seq 1, no data. The
        // 16-bit words of the pseudo-header (::1, ::1, length 8, next header
        // 58) and of the message (0x8000, 0, 0x1234, 1) sum to
        // 1 + 1 + 8 + 58 + 0x8000 + 0x1234 + 1 = 0x9279, no carry.
        let lo = Ipv6Addr::LOCALHOST;
        let msg = [0x80, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(icmpv6_checksum(lo, lo, &msg), !0x9279);
    }

    #[test]
    fn multicast_mac() {
        let g: Ipv6Addr = "ff02::12".parse().unwrap();
        assert_eq!(ipv6_multicast_mac(g), [0x33, 0x33, 0, 0, 0, 0x12]);
    }
}
