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

use trunkvip_sip::find_byte;

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
    // Three dot-separated hex fields of 1 to 16 digits: a dot in the last
    // is not a digit.
    let dot = find_byte(b'.', rest)?;
    let (id, rest) = (&rest[..dot], &rest[dot + 1..]);
    let dot = find_byte(b'.', rest)?;
    let (tx, loop_hash) = (&rest[..dot], &rest[dot + 1..]);
    Some(Branch {
        id: u32::try_from(hex(id)?).ok()?,
        tx: hex(tx)?,
        loop_hash: u32::try_from(hex(loop_hash)?).ok()?,
    })
}

/// The value of 1 to 16 hex digits; one test for them all, at the end.
fn hex(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 16 {
        return None;
    }
    let (mut v, mut seen) = (0u64, 0u8);
    for &c in field {
        let d = HEX[usize::from(c)];
        seen |= d;
        v = v << 4 | u64::from(d & 0xf);
    }
    (seen & 0xf0 == 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parser as it was, one byte at a time: the reference.
    fn parse_bytewise(b: &[u8]) -> Option<Branch> {
        let rest = b.strip_prefix(PREFIX)?;
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

    #[test]
    fn parses_as_the_bytewise_reader() {
        let mut base = vec![];
        write(&mut base, 0x1234_abcd, 0xfedc_ba98_7654_3210, 0x0bad_cafe);
        let mut inputs = vec![base.clone()];
        // Every byte of a real branch replaced by each interesting byte,
        // and every length of it.
        for at in 0..base.len() {
            for c in [
                b'.', b'0', b'9', b'a', b'f', b'g', b'A', b'F', b'G', b'/', b':', b'@', b'`', 0xff,
                0,
            ] {
                let mut v = base.clone();
                v[at] = c;
                inputs.push(v);
            }
            inputs.push(base[..at].to_vec());
            let mut v = base.clone();
            v.insert(at, b'0');
            inputs.push(v);
        }
        for s in [
            &b"z9hG4bKtv1.0000000000000000.1"[..],
            b"z9hG4bKtv100000000.1.1",
            b"z9hG4bKtvffffffff.1.ffffffff",
            b"z9hG4bKtv1.2.3.",
            b"z9hG4bKtv...",
        ] {
            inputs.push(s.to_vec());
        }
        let mut parsed = 0;
        for v in &inputs {
            assert_eq!(
                parse(v),
                parse_bytewise(v),
                "{}",
                String::from_utf8_lossy(v)
            );
            parsed += usize::from(parse(v).is_some());
        }
        assert!(parsed > 100, "{parsed}");
    }

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
