//! Header names: the ones a proxy reads, with their compact forms.

use std::fmt;

use crate::grammar::{bytes_below, BYTES_ONE};

/// A header name as the proxy knows it. Names compare case-insensitively
/// and compact forms (RFC 3261 section 7.3.3) map to the full name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName {
    Via,
    CallId,
    CSeq,
    From,
    To,
    MaxForwards,
    ContentLength,
    Route,
    RecordRoute,
    Contact,
    ContentType,
    ProxyRequire,
    Require,
    Supported,
    Unsupported,
    Path,
    RetryAfter,
    Expires,
    Allow,
    Other,
}

impl HeaderName {
    /// Every name this crate knows, in declaration order (all but `Other`).
    pub const KNOWN: [HeaderName; 19] = [
        HeaderName::Via,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::From,
        HeaderName::To,
        HeaderName::MaxForwards,
        HeaderName::ContentLength,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Contact,
        HeaderName::ContentType,
        HeaderName::ProxyRequire,
        HeaderName::Require,
        HeaderName::Supported,
        HeaderName::Unsupported,
        HeaderName::Path,
        HeaderName::RetryAfter,
        HeaderName::Expires,
        HeaderName::Allow,
    ];
}

/// The longest full name this crate knows (`Content-Length`).
const MAX_KNOWN_LEN: usize = 14;

/// A known name (full or compact) as a little-endian word, lower-cased,
/// for matching the first 16 bytes of a line in a few operations.
#[derive(Clone, Copy, Debug)]
struct Pattern {
    name: HeaderName,
    len: usize,
    lower: u128,
    /// 0x20 at the letters only: OR-ing it lower-cases exactly the bytes
    /// that are that letter in either case, so a match is exact on any
    /// input (OR-ing it at the `-` would also let CR through).
    fold: u128,
    mask: u128,
}

impl Pattern {
    const fn new(name: HeaderName, s: &str) -> Pattern {
        let s = s.as_bytes();
        let (mut lower, mut fold) = (0u128, 0u128);
        let mut i = 0;
        while i < s.len() {
            lower |= (s[i].to_ascii_lowercase() as u128) << (8 * i);
            if s[i].is_ascii_alphabetic() {
                fold |= 0x20 << (8 * i);
            }
            i += 1;
        }
        Pattern {
            name,
            len: s.len(),
            lower,
            fold,
            mask: (1u128 << (8 * s.len())) - 1,
        }
    }

    #[inline]
    fn matches(&self, w: u128) -> bool {
        (w | self.fold) & self.mask == self.lower
    }
}

/// The known names by their first letter (lower-cased), most common first.
const fn patterns(first: u8) -> &'static [Pattern] {
    use HeaderName::*;
    const fn p(name: HeaderName, s: &str) -> Pattern {
        Pattern::new(name, s)
    }
    const A: &[Pattern] = &[p(Allow, "Allow")];
    const C: &[Pattern] = &[
        p(CallId, "Call-ID"),
        p(CSeq, "CSeq"),
        p(Contact, "Contact"),
        p(ContentLength, "Content-Length"),
        p(ContentType, "Content-Type"),
        p(ContentType, "c"),
    ];
    const E: &[Pattern] = &[p(Expires, "Expires")];
    const F: &[Pattern] = &[p(From, "From"), p(From, "f")];
    const I: &[Pattern] = &[p(CallId, "i")];
    const K: &[Pattern] = &[p(Supported, "k")];
    const L: &[Pattern] = &[p(ContentLength, "l")];
    const M: &[Pattern] = &[p(MaxForwards, "Max-Forwards"), p(Contact, "m")];
    const P: &[Pattern] = &[p(ProxyRequire, "Proxy-Require"), p(Path, "Path")];
    const R: &[Pattern] = &[
        p(Route, "Route"),
        p(RecordRoute, "Record-Route"),
        p(Require, "Require"),
        p(RetryAfter, "Retry-After"),
    ];
    const S: &[Pattern] = &[p(Supported, "Supported")];
    const T: &[Pattern] = &[p(To, "To"), p(To, "t")];
    const U: &[Pattern] = &[p(Unsupported, "Unsupported")];
    const V: &[Pattern] = &[p(Via, "Via"), p(Via, "v")];
    match first {
        b'a' => A,
        b'c' => C,
        b'e' => E,
        b'f' => F,
        b'i' => I,
        b'k' => K,
        b'l' => L,
        b'm' => M,
        b'p' => P,
        b'r' => R,
        b's' => S,
        b't' => T,
        b'u' => U,
        b'v' => V,
        _ => &[],
    }
}

/// The known names of each length by first letter (`& 0x1f`): up to two
/// patterns each (only Call-ID and Contact share a slot), so a name of
/// known length is matched with one or two compares instead of a walk.
static BY_LEN: [[[Option<&Pattern>; 2]; 32]; MAX_KNOWN_LEN + 1] = {
    let mut t = [[[None; 2]; 32]; MAX_KNOWN_LEN + 1];
    let mut c = b'a';
    while c <= b'z' {
        let list = patterns(c);
        let mut i = 0;
        while i < list.len() {
            let p = &list[i];
            let slot = &mut t[p.len][(c & 0x1f) as usize];
            if slot[0].is_none() {
                slot[0] = Some(p);
            } else {
                assert!(slot[1].is_none(), "three names in one slot");
                slot[1] = Some(p);
            }
            i += 1;
        }
        c += 1;
    }
    t
};

/// The known name of exactly `len` bytes at the start of `w` (a
/// little-endian word of the first 16 bytes), if any.
#[inline]
fn known_of_len(w: u128, first: u8, len: usize) -> Option<HeaderName> {
    let [a, b] = BY_LEN.get(len)?[(first & 0x1f) as usize];
    match (a, b) {
        (Some(p), _) if p.matches(w) => Some(p.name),
        (_, Some(p)) if p.matches(w) => Some(p.name),
        _ => None,
    }
}

/// `name` (1 to 16 bytes) as a little-endian word, zero above it. Two
/// overlapping loads instead of a copy into a zeroed array, which is a
/// call to memcpy for a length known only at run time.
#[inline]
fn load_le(name: &[u8]) -> u128 {
    let n = name.len();
    debug_assert!((1..=16).contains(&n));
    if n >= 8 {
        let lo = u64::from_le_bytes(name[..8].try_into().expect("8 bytes"));
        let hi = u64::from_le_bytes(name[n - 8..].try_into().expect("8 bytes"));
        u128::from(lo) | u128::from(hi) << (8 * (n - 8))
    } else if n >= 4 {
        let lo = u32::from_le_bytes(name[..4].try_into().expect("4 bytes"));
        let hi = u32::from_le_bytes(name[n - 4..].try_into().expect("4 bytes"));
        u128::from(lo) | u128::from(hi) << (8 * (n - 4))
    } else {
        let (a, b, c) = (name[0], name[n / 2], name[n - 1]);
        u128::from(a) | u128::from(b) << (8 * (n / 2)) | u128::from(c) << (8 * (n - 1))
    }
}

/// The first `:` among the 8 bytes of `w`, as a byte index.
#[inline]
fn colon_in(w: u64) -> Option<usize> {
    // The first zero byte of `x` is the first colon.
    let z = bytes_below(w ^ (BYTES_ONE * u64::from(b':')), 1);
    (z != 0).then(|| (z.trailing_zeros() / 8) as usize)
}

/// A header line's name when its first 16 bytes hold it and the colon
/// right after it (no white space before the colon): the name and its
/// length, which is also where the colon is. `None` leaves the line to
/// the general scan, which then finds the same for such lines.
#[inline]
pub(crate) fn name_before_colon(line: &[u8; 16], line_len: usize) -> Option<(HeaderName, usize)> {
    // Two words: most names end in the first.
    let lo = u64::from_le_bytes(*line.first_chunk::<8>().expect("8 bytes"));
    let hi = u64::from_le_bytes(*line.last_chunk::<8>().expect("8 bytes"));
    let k = match colon_in(lo) {
        Some(k) => k,
        None => 8 + colon_in(hi)?,
    };
    if k == 0 || k >= line_len {
        return None;
    }
    let w = u128::from(lo) | u128::from(hi) << 64;
    if let Some(name) = known_of_len(w, lo as u8, k) {
        return Some((name, k));
    }
    // Any other token: no known name has this length and first letter.
    (crate::grammar::token_len(&line[..k]) == k).then_some((HeaderName::Other, k))
}

/// The known name at the start of `w` (the first 16 bytes of a header
/// line, little-endian) when it is followed by `:`, SP or HT, with its
/// length. `None` for other names, which the caller scans.
#[inline]
pub(crate) fn known_at(line: &[u8; 16]) -> Option<(HeaderName, usize)> {
    let w = u128::from_le_bytes(*line);
    for p in patterns(line[0] | 0x20) {
        if matches!(line[p.len], b':' | b' ' | b'\t') && p.matches(w) {
            return Some((p.name, p.len));
        }
    }
    None
}

impl HeaderName {
    /// The number of variants, `Other` included.
    pub(crate) const COUNT: usize = HeaderName::Other as usize + 1;

    /// `classify` kept out of line, for the first pass's rare path.
    #[inline(never)]
    pub(crate) fn classify_outlined(name: &[u8]) -> HeaderName {
        Self::classify(name)
    }

    #[inline]
    pub fn classify(name: &[u8]) -> HeaderName {
        if name.is_empty() || name.len() > MAX_KNOWN_LEN {
            return HeaderName::Other;
        }
        known_of_len(load_le(name), name[0], name.len()).unwrap_or(HeaderName::Other)
    }

    pub fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Via => "Via",
            CallId => "Call-ID",
            CSeq => "CSeq",
            From => "From",
            To => "To",
            MaxForwards => "Max-Forwards",
            ContentLength => "Content-Length",
            Route => "Route",
            RecordRoute => "Record-Route",
            Contact => "Contact",
            ContentType => "Content-Type",
            ProxyRequire => "Proxy-Require",
            Require => "Require",
            Supported => "Supported",
            Unsupported => "Unsupported",
            Path => "Path",
            RetryAfter => "Retry-After",
            Expires => "Expires",
            Allow => "Allow",
            Other => "(other)",
        }
    }

    /// Headers that take a comma-separated list of values.
    pub fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Route
                | RecordRoute
                | Contact
                | ProxyRequire
                | Require
                | Supported
                | Unsupported
                | Path
                | Allow
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case() {
        assert_eq!(HeaderName::classify(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::classify(b"I"), HeaderName::CallId);
        assert_eq!(
            HeaderName::classify(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::classify(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::classify(b"s"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"Call-Info"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b""), HeaderName::Other);
        // Case folding by OR 0x20 must not let other bytes through.
        assert_eq!(HeaderName::classify(b"Call\rID"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::classify(b"Vi\x01"), HeaderName::Other);
    }

    #[test]
    fn known_at_line_starts() {
        let w = |s: &[u8]| {
            let mut b = [0u8; 16];
            b[..s.len()].copy_from_slice(s);
            b
        };
        assert_eq!(
            known_at(&w(b"Via: SIP/2.0/UDP")),
            Some((HeaderName::Via, 3))
        );
        assert_eq!(
            known_at(&w(b"v :SIP/2.0/UDP h")),
            Some((HeaderName::Via, 1))
        );
        assert_eq!(
            known_at(&w(b"cALL-iD\t: abc")),
            Some((HeaderName::CallId, 7))
        );
        assert_eq!(
            known_at(&w(b"Content-Length:0")),
            Some((HeaderName::ContentLength, 14))
        );
        assert_eq!(known_at(&w(b"Call\rID: x")), None);
        assert_eq!(known_at(&w(b"Vias: x")), None);
        assert_eq!(known_at(&w(b"Via\x01: x")), None);
        assert_eq!(known_at(&w(b"User-Agent: x")), None);
        assert_eq!(known_at(&w(b"Call-Info: x")), None);
    }

    #[test]
    fn name_before_colon_agrees_with_the_scan() {
        // What the general path of `parse_head` finds: a token name, then
        // optional SP/HT, then the colon.
        fn scan(line: &[u8]) -> Option<(HeaderName, usize)> {
            let n = crate::grammar::token_len(line);
            (n > 0 && line.get(n) == Some(&b':')).then(|| (HeaderName::classify(&line[..n]), n))
        }
        let mut names: Vec<Vec<u8>> = HeaderName::KNOWN
            .iter()
            .map(|n| n.as_str().as_bytes().to_vec())
            .collect();
        names.extend(
            [
                "v",
                "I",
                "c",
                "l",
                "User-Agent",
                "Session-Expires",
                "X",
                "Via ",
                "V\ta",
            ]
            .map(|s| s.as_bytes().to_vec()),
        );
        for name in names {
            for at in 0..=name.len() {
                for c in [0u8, b'\r', b'\n', b' ', b':', b'-', b'A', b'z', 0x80, 0xff] {
                    let mut n = name.clone();
                    if at < n.len() {
                        n[at] = c;
                    }
                    let mut line = n.clone();
                    line.extend_from_slice(b": value\r\nTo: x\r\n");
                    let line_len = line.iter().position(|&c| c == b'\r').unwrap_or(0);
                    let w: [u8; 16] = line[..16].try_into().unwrap();
                    if let Some(fast) = name_before_colon(&w, line_len) {
                        assert_eq!(Some(fast), scan(&line[..line_len]), "{line:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn load_le_is_the_padded_word() {
        let text = b"ABCDEFGHIJKLMNOP";
        for n in 1..=16 {
            let mut b = [0u8; 16];
            b[..n].copy_from_slice(&text[..n]);
            assert_eq!(load_le(&text[..n]), u128::from_le_bytes(b), "{n}");
        }
    }

    #[test]
    fn every_name_and_one_byte_off() {
        for name in HeaderName::KNOWN {
            let text = name.as_str().as_bytes();
            assert_eq!(HeaderName::classify(text), name);
            assert_eq!(HeaderName::classify(&text.to_ascii_uppercase()), name);
            // Any single byte changed to anything that is not the same
            // letter in the other case gives Other.
            for at in 0..text.len() {
                for c in 0..=255u8 {
                    let mut t = text.to_vec();
                    t[at] = c;
                    let same = c.eq_ignore_ascii_case(&text[at]);
                    assert_eq!(HeaderName::classify(&t) == name, same, "{t:?}");
                }
            }
        }
    }
}
