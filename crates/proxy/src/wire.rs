//! Writing messages without `format!`: numbers and addresses straight into
//! a buffer, and edits to a received message as a list of splices over it,
//! written out in one pass (the same idea as `trunkvip_sip::Editor`, with
//! scratch space the proxy reuses and the offsets its facts already hold).

use std::io::Write as _;
use std::net::IpAddr;

use trunkvip_sip::{find_byte, rfind_byte};

/// Offset of `sub` in `base`; `sub` must be a slice of `base`.
pub(crate) fn off(base: &[u8], sub: &[u8]) -> usize {
    let o = (sub.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    debug_assert!(o + sub.len() <= base.len(), "not a slice of the message");
    o
}

/// Whether `sub` lies inside `base`.
pub(crate) fn contains(base: &[u8], sub: &[u8]) -> bool {
    let (b, p) = (base.as_ptr() as usize, sub.as_ptr() as usize);
    p >= b && p + sub.len() <= b + base.len()
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t')
}

/// Start of the header line holding offset `at`: after the last LF that is
/// not a fold (a fold's LF is followed by SP or HT).
pub(crate) fn line_start(buf: &[u8], at: usize) -> usize {
    let mut i = at;
    while let Some(p) = rfind_byte(b'\n', &buf[..i]) {
        if !buf.get(p + 1).copied().is_some_and(is_ws) {
            return p + 1;
        }
        i = p;
    }
    0
}

/// The range to cut to remove the first value of the header line whose
/// first value is `value`: up to the next value when the line holds more,
/// else the whole line with its CRLF.
pub(crate) fn first_value_cut(buf: &[u8], value: &[u8]) -> (usize, usize) {
    let start = off(buf, value);
    let mut i = start + value.len();
    // White space, folds included: a comma may start the next line.
    loop {
        match buf.get(i..i + 3) {
            Some([b'\r', b'\n', c]) if is_ws(*c) => i += 3,
            _ if buf.get(i).is_some_and(|&c| is_ws(c)) => i += 1,
            _ => break,
        }
    }
    if buf.get(i) == Some(&b',') {
        i += 1;
        while buf
            .get(i)
            .is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        {
            i += 1;
        }
        return (start, i);
    }
    // The end of the line: its CRLF (the value is trimmed, folds inside).
    let end = find_byte(b'\n', &buf[i..]).map_or(buf.len(), |n| i + n + 1);
    (line_start(buf, start), end)
}

pub(crate) fn push_dec(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

pub(crate) fn push_hex(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - (n | 1).leading_zeros()).div_ceil(4) as usize;
    let mut tmp = [0u8; 16];
    for (k, d) in tmp[..digits].iter_mut().rev().enumerate() {
        *d = HEX[((n >> (4 * k)) & 0xf) as usize];
    }
    out.extend_from_slice(&tmp[..digits]);
}

/// An address as a Via `received` or a URI host writes it (IPv6 in brackets).
pub(crate) fn push_host(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (n, o) in a.octets().iter().enumerate() {
                if n > 0 {
                    out.push(b'.');
                }
                push_dec(out, u64::from(*o));
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "[{a}]");
        }
    }
}

/// One header line.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for n in [0u64, 7, 10, 255, 65535, u64::MAX] {
            let mut v = vec![];
            push_dec(&mut v, n);
            assert_eq!(v, n.to_string().as_bytes());
            let mut v = vec![];
            push_hex(&mut v, n);
            assert_eq!(v, format!("{n:x}").as_bytes());
        }
        let mut v = vec![];
        push_host(&mut v, "198.51.100.2".parse().unwrap());
        push_host(&mut v, "2001:db8::1".parse().unwrap());
        assert_eq!(v, b"198.51.100.2[2001:db8::1]");
    }

    #[test]
    fn lines_and_first_values() {
        let m = b"X y\r\nVia: a;b=1 , c\r\nVia: d\r\n e\r\nTo: f\r\n\r\n";
        let a = &m[10..15];
        assert_eq!(a, b"a;b=1");
        assert_eq!(line_start(m, 12), 5);
        let (s, e) = first_value_cut(m, a);
        assert_eq!(&m[s..e], b"a;b=1 , ");
        assert_eq!(&m[26..31], b"d\r\n e");
        let (s, e) = first_value_cut(m, &m[26..31]);
        assert_eq!(&m[s..e], b"Via: d\r\n e\r\n");
        assert_eq!(line_start(m, 30), 21);
        let m = b"Via: a\r\n , b\r\nTo: x\r\n\r\n";
        let (s, e) = first_value_cut(m, &m[5..6]);
        assert_eq!(&m[s..e], b"a\r\n , ");
    }
}
