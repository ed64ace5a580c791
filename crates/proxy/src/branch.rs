//! Our Via branches. A client transaction's branch names its slot and
//! generation, so a response finds its transaction with no lookup, and
//! carries the loop-detection hash (RFC 3261 16.6 step 8) and the process
//! instance, so branches never collide with the peer host's or an earlier
//! run's: `z9hG4bKtv{instance}.{slot}.{gen}.{loop}`, all hex.

use std::fmt::Write;

const PREFIX: &str = "z9hG4bKtv";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Branch {
    pub(crate) instance: u32,
    pub(crate) slot: u32,
    pub(crate) gen: u32,
    pub(crate) loop_hash: u32,
}

pub(crate) fn make(instance: u32, slot: u32, gen: u32, loop_hash: u32) -> String {
    let mut s = String::with_capacity(40);
    let _ = write!(s, "{PREFIX}{instance:x}.{slot:x}.{gen:x}.{loop_hash:x}");
    s
}

/// A branch for requests forwarded statelessly (ACK for 2xx): a function
/// of the incoming branch, so retransmissions get the same one.
pub(crate) fn make_stateless(instance: u32, hash: u64) -> String {
    format!("{PREFIX}{instance:x}.s.{hash:x}")
}

pub(crate) fn parse(b: &[u8]) -> Option<Branch> {
    let rest = std::str::from_utf8(b.strip_prefix(PREFIX.as_bytes())?).ok()?;
    let mut it = rest.split('.');
    let mut next = || u32::from_str_radix(it.next()?, 16).ok();
    let br = Branch {
        instance: next()?,
        slot: next()?,
        gen: next()?,
        loop_hash: next()?,
    };
    it.next().is_none().then_some(br)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = make(0xabc, 7, 0xffff_ffff, 12);
        assert!(b.starts_with("z9hG4bK"));
        assert_eq!(
            parse(b.as_bytes()),
            Some(Branch {
                instance: 0xabc,
                slot: 7,
                gen: 0xffff_ffff,
                loop_hash: 12
            })
        );
        assert_eq!(parse(make_stateless(1, 99).as_bytes()), None);
        assert_eq!(parse(b"z9hG4bKtvp1.0.1"), None);
        assert_eq!(parse(b"z9hG4bK776asdhds"), None);
    }
}
