//! The Linux shell around [`Instance`](crate::Instance): what the sans-IO
//! core leaves out.
//!
//! - [`socket`]: the raw protocol-112 socket (multicast 224.0.0.18 /
//!   ff02::12 or unicast peers, TTL / hop limit 255 both ways).
//! - [`netlink`]: the interface (index, MAC, oper state, addresses) and the
//!   VIP, added and removed with rtnetlink, idempotently.
//! - [`announce`]: gratuitous ARP and unsolicited Neighbor Advertisements
//!   through an `AF_PACKET` socket, with the interface's MAC.
//! - [`runner`]: [`VipRunner`], the tokio task tying them to the machine,
//!   with a command channel ([`VipHandle`]) and a status watch
//!   ([`RunnerStatus`]).
//!
//! Everything here needs `CAP_NET_RAW` and `CAP_NET_ADMIN` (the daemon runs
//! as root). No `unsafe`: socket options, `sendmsg` / `recvmsg` with control
//! messages and the packet socket's bind go through socket2 and nix.

pub mod announce;
pub mod netlink;
pub mod runner;
pub mod socket;

pub use ipnet::IpNet;
pub use runner::{
    Command, RunnerConfig, RunnerError, RunnerStatus, Transition, VipHandle, VipRunner,
};
