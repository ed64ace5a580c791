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

use crate::wire::push_hex;

pub(crate) const PREFIX: &[u8] = b"z9hG4bKtv";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Branch {
    pub(crate) id: u32,
    pub(crate) tx: u64,
    pub(crate) loop_hash: u32,
}

/// Appends the branch; `out` usually holds our Via prefix up to `PREFIX`.
pub(crate) fn write(out: &mut Vec<u8>, id: u32, tx: u64, loop_hash: u32) {
    out.extend_from_slice(PREFIX);
    push_hex(out, id.into());
    out.push(b'.');
    push_hex(out, tx);
    out.push(b'.');
    push_hex(out, loop_hash.into());
}

/// A branch for requests forwarded statelessly (ACK for 2xx): a function
/// of the incoming branch, so retransmissions get the same one.
pub(crate) fn write_stateless(out: &mut Vec<u8>, id: u32, hash: u64) {
    out.extend_from_slice(PREFIX);
    push_hex(out, id.into());
    out.extend_from_slice(b".s.");
    push_hex(out, hash);
}

/// Each byte's hex digit value, or `NOT_HEX`.
const HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => NOT_HEX,
        };
        c += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

pub(crate) fn parse(b: &[u8]) -> Option<Branch> {
    let rest = b.strip_prefix(PREFIX)?;
    // One pass: three dot-separated hex fields of at most 16 digits.
    let mut fields = [0u64; 3];
    let (mut field, mut digits) = (0, 0);
    for &c in rest {
        if c == b'.' {
            if digits == 0 || field == 2 {
                return None;
            }
            field += 1;
            digits = 0;
            continue;
        }
        let d = HEX[usize::from(c)];
        if d == NOT_HEX || digits == 16 {
            return None;
        }
        fields[field] = fields[field] << 4 | u64::from(d);
        digits += 1;
    }
    if field != 2 || digits == 0 {
        return None;
    }
    Some(Branch {
        id: u32::try_from(fields[0]).ok()?,
        tx: fields[1],
        loop_hash: u32::try_from(fields[2]).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = vec![];
        write(&mut b, 0xabc, u64::MAX, 12);
        assert!(b.starts_with(b"z9hG4bK"));
        assert_eq!(
            parse(&b),
            Some(Branch {
                id: 0xabc,
                tx: u64::MAX,
                loop_hash: 12
            })
        );
        let mut s = vec![];
        write_stateless(&mut s, 1, 99);
        assert_eq!(parse(&s), None);
        assert_eq!(parse(b"z9hG4bKtv1.10000000000000000.1"), None);
        assert_eq!(parse(b"z9hG4bKtvp1.0.1"), None);
        assert_eq!(parse(b"z9hG4bK776asdhds"), None);
        for bad in [
            &b"z9hG4bKtv"[..],
            b"z9hG4bKtv1.2",
            b"z9hG4bKtv1.2.",
            b"z9hG4bKtv1..3",
            b"z9hG4bKtv.2.3",
            b"z9hG4bKtv1.2.3.4",
            b"z9hG4bKtv100000000.2.3",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse(b"z9hG4bKtvA.fF.0"),
            Some(Branch {
                id: 10,
                tx: 255,
                loop_hash: 0
            })
        );
    }
}
