//! Our Via branches: `z9hG4bKtv{id}.{tx}.{loop}`, all hex.
//!
//! `tx` names the client transaction. It is a keyed hash of the incoming
//! transaction (its server key) and the next hop, not a counter, so the
//! two hosts of a pair, which share the key, give a request the same
//! branch: when the carrier retransmits a request through the host that
//! took the VIP over, the Edge sees a retransmission of the transaction it
//! already answered, not a new one (RFC 3261 16.11 computes stateless
//! branches the same way). `loop` is the loop-detection hash (RFC 3261
//! 16.6 step 8), `id` tells our branches (both hosts' when paired) from
//! anyone else's.

use std::fmt::Write;

const PREFIX: &str = "z9hG4bKtv";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Branch {
    pub(crate) id: u32,
    pub(crate) tx: u64,
    pub(crate) loop_hash: u32,
}

pub(crate) fn make(id: u32, tx: u64, loop_hash: u32) -> String {
    let mut s = String::with_capacity(44);
    let _ = write!(s, "{PREFIX}{id:x}.{tx:x}.{loop_hash:x}");
    s
}

/// A branch for requests forwarded statelessly (ACK for 2xx): a function
/// of the incoming branch, so retransmissions get the same one.
pub(crate) fn make_stateless(id: u32, hash: u64) -> String {
    format!("{PREFIX}{id:x}.s.{hash:x}")
}

pub(crate) fn parse(b: &[u8]) -> Option<Branch> {
    let rest = std::str::from_utf8(b.strip_prefix(PREFIX.as_bytes())?).ok()?;
    let mut it = rest.split('.');
    let id = u32::from_str_radix(it.next()?, 16).ok()?;
    let tx = u64::from_str_radix(it.next()?, 16).ok()?;
    let loop_hash = u32::from_str_radix(it.next()?, 16).ok()?;
    it.next().is_none().then_some(Branch { id, tx, loop_hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = make(0xabc, u64::MAX, 12);
        assert!(b.starts_with("z9hG4bK"));
        assert_eq!(
            parse(b.as_bytes()),
            Some(Branch {
                id: 0xabc,
                tx: u64::MAX,
                loop_hash: 12
            })
        );
        assert_eq!(parse(make_stateless(1, 99).as_bytes()), None);
        assert_eq!(parse(b"z9hG4bKtvp1.0.1"), None);
        assert_eq!(parse(b"z9hG4bK776asdhds"), None);
    }
}
