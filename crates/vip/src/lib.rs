//! Sans-IO VRRPv3 core for trunkvip's floating VIP.
//!
//! trunkvip runs on two Linux hosts that share a virtual IP; this crate decides
//! which of them holds it, following VRRPv3 (RFC 5798, renamed and clarified by
//! RFC 9568) closely enough to interoperate with keepalived:
//!
//! - [`packet`]: the advertisement codec, including the IPv4 checksum
//!   pseudo-header quirk ([`ChecksumMode`]).
//! - [`machine`]: the state machine [`Instance`] (Initialize / Backup /
//!   Active), with SIP-aware priority tracking, preempt delay, announcement
//!   repeats and split-brain re-announcing.
//!
//! Like `quinn-proto`, it does no I/O and reads no clock: time comes in as a
//! `now: Instant` argument, received adverts are handed in, and the work to do
//! comes out of [`Instance::poll_action`] and [`Instance::poll_timeout`]. That
//! makes every timing rule testable on virtual time.
//!
//! The Linux side (raw socket for protocol 112, netlink to add and remove the
//! address, gratuitous ARP / unsolicited NA) is the tokio shell in `linux`
//! (Linux only): [`linux::VipRunner`] drives an [`Instance`] there.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(target_os = "linux")]
pub mod linux;
pub mod machine;
pub mod packet;

pub use machine::{
    active_down_interval, skew_time, Action, AnnounceConfig, Config, ConfigError, Instance,
    PeerInfo, Reason, State, Stats, Status,
};
pub use packet::{Advert, ChecksumMode, DecodeError, EncodeError, Family};
