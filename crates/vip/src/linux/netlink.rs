//! rtnetlink: the interface (index, MAC, oper state, addresses), adding and
//! removing the VIP, and link up/down events.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{AddressMessageBuilder, Handle, MulticastGroup};

use super::announce::Mac;
use crate::packet::Family;

/// What the runner needs to know about its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address (all zero if the link has none).
    pub mac: Mac,
    /// Administratively up, and operationally up (carrier, lower layers).
    pub up: bool,
}

/// A link up/down notification for one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEvent {
    /// Interface index.
    pub index: u32,
    /// See [`LinkInfo::up`]. A deleted link is reported down.
    pub up: bool,
}

/// Errors from netlink, as `io::Error` (the kernel's errno when it sent
/// one).
fn nl_err(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// A route-netlink connection, its driver task spawned on the current
/// tokio runtime.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a connection. Must be called within a tokio runtime.
    pub fn new() -> io::Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Looks an interface up by name.
    pub async fn link_by_name(&self, name: &str) -> io::Result<LinkInfo> {
        let msg = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await
            .map_err(nl_err)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {name}")))?;
        Ok(link_info(&msg))
    }

    /// Looks an interface up by index.
    pub async fn link_by_index(&self, index: u32) -> io::Result<LinkInfo> {
        let msg = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(nl_err)?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no link index {index}"))
            })?;
        Ok(link_info(&msg))
    }

    /// The usable (not tentative, not failed DAD) addresses of the
    /// interface, with prefix length and flags, in kernel order (primary
    /// IPv4 addresses first).
    pub async fn addresses(&self, index: u32) -> io::Result<Vec<(IpNet, AddressFlags)>> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = s.try_next().await.map_err(nl_err)? {
            let mut addr = None;
            let mut local = None;
            let mut flags = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
            for a in &m.attributes {
                match a {
                    AddressAttribute::Address(ip) => addr = Some(*ip),
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Flags(f) => flags = *f,
                    _ => {}
                }
            }
            // For IPv4, IFA_LOCAL is the interface's address (IFA_ADDRESS is
            // the peer's on point-to-point links).
            let Some(ip) = local.or(addr) else { continue };
            if flags.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed) {
                continue;
            }
            if let Ok(net) = IpNet::new(ip, m.header.prefix_len) {
                out.push((net, flags));
            }
        }
        Ok(out)
    }

    /// The address adverts are sent from: for IPv4 the first primary
    /// (non-secondary) IPv4 address other than `vip`; for IPv6 the
    /// link-local address (RFC 5798 §5.1.2.1). `None` if there is none yet.
    pub async fn primary_address(&self, index: u32, vip: IpAddr) -> io::Result<Option<IpAddr>> {
        let addrs = self.addresses(index).await?;
        let pick = match Family::of(vip) {
            Family::V4 => addrs
                .iter()
                .filter(|(n, _)| n.addr().is_ipv4() && n.addr() != vip)
                .min_by_key(|(_, f)| f.contains(AddressFlags::Secondary))
                .map(|(n, _)| n.addr()),
            Family::V6 => addrs
                .iter()
                .map(|(n, _)| n.addr())
                .find(|a| matches!(a, IpAddr::V6(v6) if is_link_local(*v6))),
        };
        Ok(pick)
    }

    /// Whether the interface has `ip` as one of its addresses.
    pub async fn has_address(&self, index: u32, ip: IpAddr) -> io::Result<bool> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .execute();
        Ok(s.try_next().await.map_err(nl_err)?.is_some())
    }

    /// Adds `vip` to the interface. Already present is not an error. IPv6
    /// addresses are added with `nodad`: the VIP must answer at once, and
    /// the peer that held it a moment ago would fail duplicate detection.
    pub async fn add_address(&self, index: u32, vip: IpNet) -> io::Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, vip.addr(), vip.prefix_len());
        if vip.addr().is_ipv6() {
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc_errno::EEXIST) => Ok(()),
            Err(e) => Err(nl_err(e)),
        }
    }

    /// Removes `vip` from the interface. Absent is not an error.
    pub async fn remove_address(&self, index: u32, vip: IpNet) -> io::Result<()> {
        let msg = address_message(index, vip);
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    errno_of(&e),
                    Some(libc_errno::ENOENT | libc_errno::EADDRNOTAVAIL | libc_errno::ENODEV)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(nl_err(e)),
        }
    }
}

mod libc_errno {
    pub use nix::libc::{EADDRNOTAVAIL, EEXIST, ENODEV, ENOENT};
}

fn address_message(index: u32, vip: IpNet) -> AddressMessage {
    match vip.addr() {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a, vip.prefix_len())
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a, vip.prefix_len())
            .build(),
    }
}

/// fe80::/10.
pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Extracts what we need from a link message.
pub fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut name = String::new();
    let mut mac = [0u8; 6];
    let mut oper = None;
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => name.clone_from(n),
            LinkAttribute::Address(b) if b.len() == 6 => mac.copy_from_slice(b),
            LinkAttribute::OperState(s) => oper = Some(*s),
            _ => {}
        }
    }
    let flags = msg.header.flags;
    let admin_up = flags.contains(LinkFlags::Up);
    // IFF_RUNNING mirrors "operationally up" (RFC 2863); fall back on the
    // oper state attribute when present. Unknown (no carrier reporting, as
    // for dummy devices) counts as up, as the kernel does.
    let oper_up = match oper {
        Some(State::Up | State::Unknown) => true,
        Some(_) => false,
        None => flags.contains(LinkFlags::Running),
    };
    LinkInfo {
        index: msg.header.index,
        name,
        mac,
        up: admin_up && oper_up,
    }
}

/// Link notifications (`RTNLGRP_LINK`), as a stream of [`LinkEvent`]s for
/// every interface of the namespace.
#[derive(Debug)]
pub struct LinkWatch {
    messages: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
}

impl LinkWatch {
    /// Subscribes. Must be called within a tokio runtime.
    pub fn new() -> io::Result<Self> {
        let (conn, _handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
        tokio::spawn(conn);
        Ok(Self { messages })
    }

    /// The next link event; `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<LinkEvent> {
        loop {
            let (msg, _) = self.messages.next().await?;
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    let info = link_info(&l);
                    return Some(LinkEvent {
                        index: info.index,
                        up: info.up,
                    });
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                    return Some(LinkEvent {
                        index: l.header.index,
                        up: false,
                    });
                }
                _ => {}
            }
        }
    }
}
