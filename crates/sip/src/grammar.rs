//! Character classes and the small nom parsers the typed accessors share.
//!
//! Inside a header value the first pass already joined folded lines, so a
//! CR or LF seen here is always part of linear white space.

use nom::error::{Error as NomError, ErrorKind as NomKind};
use nom::IResult;

pub(crate) type PResult<'a, O> = IResult<&'a [u8], O, NomError<&'a [u8]>>;

pub(crate) fn fail<'a, O>(i: &'a [u8]) -> PResult<'a, O> {
    Err(nom::Err::Error(NomError::new(i, NomKind::Verify)))
}

// Character classes, one bit each in a table indexed by the byte: the
// hot loops of the parser test one class per byte.
const TOKEN: u16 = 1;
const WS: u16 = 1 << 1;
const UNRESERVED: u16 = 1 << 2;
const USER: u16 = 1 << 3;
const PASSWORD: u16 = 1 << 4;
const URI_PARAM: u16 = 1 << 5;
const URI_HEADER: u16 = 1 << 6;
const GEN_VALUE: u16 = 1 << 7;
const HOST: u16 = 1 << 8;
/// Bytes a Via sent-by may hold: host characters, `:` and IPv6 brackets.
const HOSTPORT: u16 = 1 << 9;
/// Bytes `CommaSplit` must look at: quotes, escapes, brackets, commas.
const SPLIT: u16 = 1 << 10;
const DIGIT_OR_DOT: u16 = 1 << 11;
/// `USER` but `%`: a run of these needs no escape check.
const PLAIN_USER: u16 = 1 << 12;

const fn classes(c: u8) -> u16 {
    let alnum = c.is_ascii_alphanumeric();
    let token = alnum
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        );
    let ws = matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    // `unreserved` of RFC 3261 (alphanum / mark).
    let unreserved = alnum
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
    // A URI user part: unreserved, escaped and user-unreserved.
    let user = unreserved
        || matches!(
            c,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        );
    let password = unreserved || matches!(c, b'%' | b'&' | b'=' | b'+' | b'$' | b',');
    // `paramchar` of a URI parameter name or value.
    let uri_param =
        unreserved || matches!(c, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$');
    // `hnv-unreserved` / unreserved / escaped: URI header names and values.
    let uri_header =
        unreserved || matches!(c, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$');
    // Header parameter values: token, host (with IPv6 brackets).
    let gen_value = token || matches!(c, b':' | b'[' | b']');
    let host = alnum || matches!(c, b'-' | b'.' | b'_');
    bit(token, TOKEN)
        | bit(ws, WS)
        | bit(unreserved, UNRESERVED)
        | bit(user, USER)
        | bit(password, PASSWORD)
        | bit(uri_param, URI_PARAM)
        | bit(uri_header, URI_HEADER)
        | bit(gen_value, GEN_VALUE)
        | bit(host, HOST)
        | bit(host || matches!(c, b':' | b'[' | b']'), HOSTPORT)
        | bit(matches!(c, b'"' | b'\\' | b'<' | b'>' | b','), SPLIT)
        | bit(c.is_ascii_digit() || c == b'.', DIGIT_OR_DOT)
        | bit(user && c != b'%', PLAIN_USER)
}

const fn bit(b: bool, class: u16) -> u16 {
    if b {
        class
    } else {
        0
    }
}

static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut n = 0;
    while n < 256 {
        t[n] = classes(n as u8);
        n += 1;
    }
    t
};

#[inline(always)]
fn has(c: u8, class: u16) -> bool {
    CLASS[c as usize] & class != 0
}

/// `memchr` for the short searches of the parser. SSE2 is part of
/// x86_64, so its searcher inlines here, where `memchr` dispatches at run
/// time through a function pointer: most of the cost of a short search.
#[inline(always)]
pub fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(one) = memchr::arch::x86_64::sse2::memchr::One::new(needle) {
        return one.find(haystack);
    }
    memchr::memchr(needle, haystack)
}

/// `find_byte` for the last occurrence.
#[inline(always)]
pub fn rfind_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(one) = memchr::arch::x86_64::sse2::memchr::One::new(needle) {
        return one.rfind(haystack);
    }
    memchr::memrchr(needle, haystack)
}

/// `find_byte` for either of two bytes.
#[inline(always)]
pub fn find_byte2(a: u8, b: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(two) = memchr::arch::x86_64::sse2::memchr::Two::new(a, b) {
        return two.find(haystack);
    }
    memchr::memchr2(a, b, haystack)
}

/// `find_byte` for any of three bytes.
#[inline(always)]
pub(crate) fn find_byte3(a: u8, b: u8, c: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(three) = memchr::arch::x86_64::sse2::memchr::Three::new(a, b, c) {
        return three.find(haystack);
    }
    memchr::memchr3(a, b, c, haystack)
}

/// The length of the prefix of `s` whose bytes are all in `class`.
#[inline]
fn run_of(s: &[u8], class: u16) -> usize {
    s.iter().position(|&c| !has(c, class)).unwrap_or(s.len())
}

/// `run_of` for runs that are often long (parameter values, hosts): eight
/// bytes per step while they all match, then byte by byte.
#[inline(always)]
fn long_run_of(s: &[u8], class: u16) -> usize {
    let mut n = 0;
    for chunk in s.chunks_exact(8) {
        let chunk: &[u8; 8] = chunk.try_into().expect("8 bytes");
        if chunk.iter().fold(class, |all, &c| all & CLASS[c as usize]) == 0 {
            break;
        }
        n += 8;
    }
    // Then four at a time once, which halves the byte loop's steps.
    if let Some(q) = s[n..].first_chunk::<4>() {
        if q.iter().fold(class, |all, &c| all & CLASS[c as usize]) != 0 {
            n += 4;
        }
    }
    n + run_of(&s[n..], class)
}

/// Each byte of a word set to 1.
pub(crate) const BYTES_ONE: u64 = 0x0101_0101_0101_0101;

/// The bytes of `w` below `n` (at most 0x80), each flagged by its high
/// bit, eight at a time. The lowest flag is exact and none is set without
/// such a byte; bytes above the lowest may be flagged falsely.
#[inline(always)]
pub(crate) fn bytes_below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(BYTES_ONE * u64::from(n)) & !w & (BYTES_ONE << 7)
}

/// Whether `s` holds white space. The callers expect none: a word at a
/// time, any byte below 0x21 (all four are) flags the exact test.
#[inline]
pub(crate) fn any_ws(s: &[u8]) -> bool {
    let low_in = |w: u64| bytes_below(w, 0x21) != 0;
    let low = match s.last_chunk::<8>() {
        // The last eight bytes as one more word, overlapping the others,
        // instead of a byte loop over the remainder.
        Some(last) => {
            let mut low = low_in(u64::from_le_bytes(*last));
            for c in s.chunks_exact(8) {
                low |= low_in(u64::from_le_bytes(c.try_into().expect("8 bytes")));
            }
            low
        }
        None => s.iter().any(|&c| c < 0x21),
    };
    low && s.iter().any(|&c| is_ws(c))
}

/// RFC 3261 `token` characters.
#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    has(c, TOKEN)
}

/// SP, HT, CR or LF. A compare against a bit mask: cheaper than the
/// table for a class this small.
#[inline]
pub(crate) fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// `unreserved` of RFC 3261 (alphanum / mark).
#[cfg(test)]
pub(crate) fn is_unreserved(c: u8) -> bool {
    has(c, UNRESERVED)
}

/// Characters of a URI user part: unreserved, escaped and user-unreserved.
#[inline]
pub(crate) fn is_user_char(c: u8) -> bool {
    has(c, USER)
}

#[inline]
pub(crate) fn is_password_char(c: u8) -> bool {
    has(c, PASSWORD)
}

/// `hnv-unreserved` / unreserved / escaped: URI header names and values.
#[inline]
pub(crate) fn is_uri_header_char(c: u8) -> bool {
    has(c, URI_HEADER)
}

#[cfg(test)]
pub(crate) fn is_host_char(c: u8) -> bool {
    has(c, HOST)
}

/// Whether every byte of `s` is a host character, and whether every one
/// is a digit or a dot (one pass for both).
#[inline]
pub(crate) fn host_chars(s: &[u8]) -> (bool, bool) {
    let all = s
        .iter()
        .fold(HOST | DIGIT_OR_DOT, |all, &c| all & CLASS[c as usize]);
    (all & HOST != 0, all & DIGIT_OR_DOT != 0)
}

/// A Via sent-by character (`hostport_len`).
#[inline]
pub(crate) fn is_hostport_char(c: u8) -> bool {
    has(c, HOSTPORT)
}

/// Length of the leading Via sent-by characters of `s`.
#[inline]
pub(crate) fn hostport_len(s: &[u8]) -> usize {
    long_run_of(s, HOSTPORT)
}

/// Length of the leading white space of `s`.
#[inline]
pub(crate) fn ws_len(s: &[u8]) -> usize {
    s.iter().position(|&c| !is_ws(c)).unwrap_or(s.len())
}

/// Length of the leading token characters of `s`.
#[inline]
pub(crate) fn token_len(s: &[u8]) -> usize {
    run_of(s, TOKEN)
}

/// Length of the leading URI user characters of `s`.
#[inline]
pub(crate) fn user_len(s: &[u8]) -> usize {
    long_run_of(s, USER)
}

/// `user_len` for user characters other than `%`.
#[inline]
pub(crate) fn plain_user_len(s: &[u8]) -> usize {
    long_run_of(s, PLAIN_USER)
}

/// Length of the leading header-parameter value characters of `s`.
#[inline]
pub(crate) fn gen_value_len(s: &[u8]) -> usize {
    long_run_of(s, GEN_VALUE)
}

/// Length of the leading URI parameter characters of `s`.
#[inline]
pub(crate) fn uri_param_len(s: &[u8]) -> usize {
    long_run_of(s, URI_PARAM)
}

pub(crate) fn lws(i: &[u8]) -> PResult<'_, &[u8]> {
    let n = ws_len(i);
    Ok((&i[n..], &i[..n]))
}

pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// `s` equals `lower`, a lower-case name of letters only, in any case.
/// Exact on any input: only a letter OR 0x20 gives a lower-case letter.
#[inline]
pub(crate) fn eq_lower(s: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(u8::is_ascii_lowercase));
    if s.len() != lower.len() {
        return false;
    }
    // Names of 4 to 8 letters (branch, received, rport...): two
    // overlapping 4-byte words, OR-ed per byte as the byte loop does.
    let n = s.len();
    if (4..=8).contains(&n) {
        let word =
            |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        const FOLD: u32 = 0x2020_2020;
        return (word(s, 0) | FOLD) == word(lower, 0)
            && (word(s, n - 4) | FOLD) == word(lower, n - 4);
    }
    s.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b)
}

/// `s` without trailing white space.
#[inline]
pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let mut n = s.len();
    while n > 0 && is_ws(s[n - 1]) {
        n -= 1;
    }
    &s[..n]
}

/// A quoted string, quotes included. Quoted pairs may escape any octet but
/// CR and LF; an unterminated string is an error.
pub(crate) fn quoted_string(i: &[u8]) -> PResult<'_, &[u8]> {
    match quoted_len(i) {
        Some(n) => Ok((&i[n..], &i[..n])),
        None => fail(i),
    }
}

/// The length of the quoted string `i` starts with, quotes included.
#[inline]
pub(crate) fn quoted_len(i: &[u8]) -> Option<usize> {
    if i.first() != Some(&b'"') {
        return None;
    }
    let mut n = 1;
    loop {
        n += find_byte2(b'"', b'\\', &i[n..])?;
        if i[n] == b'"' {
            return Some(n + 1);
        }
        match i.get(n + 1) {
            Some(b'\r') | Some(b'\n') | None => return None,
            Some(_) => n += 2,
        }
    }
}

/// Decimal digits into a u64, refusing overflow and more than `max`.
pub(crate) fn parse_decimal(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s.len() < 20 {
        // Below 10^19 < 2^64: no overflow to check per digit.
        let mut v: u64 = 0;
        for &c in s {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + u64::from(d);
        }
        return (v <= max).then_some(v);
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    (v <= max).then_some(v)
}

/// Offset of `sub` inside `base`; `sub` must be a sub-slice of `base`.
#[inline]
pub(crate) fn offset_in(base: &[u8], sub: &[u8]) -> usize {
    let off = (sub.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    debug_assert!(off <= base.len() && off + sub.len() <= base.len());
    off
}

/// Splits a header value into comma-separated values, honouring quoted
/// strings and angle brackets. Values are trimmed; empty ones are kept so
/// the caller can reject them.
#[derive(Debug, Clone)]
pub(crate) struct CommaSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        CommaSplit { rest: Some(s) }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut in_quote = false;
        let mut in_angle = false;
        let mut n = 0;
        while n < s.len() {
            let c = s[n];
            if !has(c, SPLIT) {
                n += 1;
                continue;
            }
            if in_quote {
                if c == b'\\' {
                    n += 1;
                } else if c == b'"' {
                    in_quote = false;
                }
            } else {
                match c {
                    b'"' => in_quote = true,
                    b'<' => in_angle = true,
                    b'>' => in_angle = false,
                    b',' if !in_angle => {
                        self.rest = Some(&s[n + 1..]);
                        return Some(trim(&s[..n]));
                    }
                    _ => {}
                }
            }
            n += 1;
        }
        self.rest = None;
        Some(trim(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings() {
        assert_eq!(
            quoted_string(b"\"a\\\"b\" rest").unwrap(),
            (&b" rest"[..], &b"\"a\\\"b\""[..])
        );
        assert!(quoted_string(b"\"open").is_err());
        assert!(quoted_string(b"\"bad\\\r\n\"").is_err());
    }

    #[test]
    fn class_table() {
        for c in 0..=255u8 {
            let alnum = c.is_ascii_alphanumeric();
            assert_eq!(is_token(c), alnum || b"-.!%*_+`'~".contains(&c));
            assert_eq!(is_ws(c), b" \t\r\n".contains(&c));
            assert_eq!(is_unreserved(c), alnum || b"-_.!~*'()".contains(&c));
            assert_eq!(is_host_char(c), alnum || b"-._".contains(&c));
            assert_eq!(gen_value_len(&[c]) == 1, is_token(c) || b":[]".contains(&c));
            assert_eq!(
                is_user_char(c),
                is_unreserved(c) || b"%&=+$,;?/".contains(&c)
            );
        }
        assert_eq!(token_len(b"INVITE sip:x"), 6);
        for n in 0..40 {
            let mut v = vec![b'a'; n];
            assert_eq!(gen_value_len(&v), n);
            v.push(b';');
            v.extend_from_slice(b"abcdefghijklmnop");
            assert_eq!(gen_value_len(&v), n);
            assert_eq!(uri_param_len(&v), n);
            for ws in [b' ', b'\t', b'\r', b'\n'] {
                v[n] = ws;
                assert!(any_ws(&v));
            }
            v[n] = b'x';
            assert!(!any_ws(&v));
        }
        assert_eq!(ws_len(b" \r\n\tx"), 4);
    }

    #[test]
    fn any_ws_is_exact() {
        for len in 1..20 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = c;
                    assert_eq!(any_ws(&v), is_ws(c), "{len} {at} {c}");
                }
            }
        }
        assert!(!any_ws(b""));
    }

    #[test]
    fn plain_user_is_user_but_percent() {
        for c in 0..=255u8 {
            assert_eq!(has(c, PLAIN_USER), is_user_char(c) && c != b'%', "{c}");
        }
        assert_eq!(plain_user_len(b"+15551230000@h"), 12);
        assert_eq!(plain_user_len(b"a%20b"), 1);
    }

    #[test]
    fn eq_lower_is_exact() {
        for c in 0..=255u8 {
            assert_eq!(eq_lower(&[c], b"t"), c == b't' || c == b'T', "{c}");
        }
        assert!(eq_lower(b"BrAnCh", b"branch"));
        for lower in [
            &b"tag"[..],
            b"lr",
            b"rport",
            b"branch",
            b"received",
            b"transport",
        ] {
            for at in 0..lower.len() {
                for c in 0..=255u8 {
                    let mut s = lower.to_vec();
                    s[at] = c;
                    let bytes = s.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b);
                    assert_eq!(eq_lower(&s, lower), bytes, "{s:?}");
                }
            }
        }
        assert!(!eq_lower(b"branc", b"branch"));
    }

    #[test]
    fn decimal_limits() {
        assert_eq!(parse_decimal(b"0068", 255), Some(68));
        assert_eq!(parse_decimal(b"300", 255), None);
        assert_eq!(parse_decimal(b"36893488147419103232", u64::MAX), None);
        assert_eq!(parse_decimal(b"-1", 10), None);
        assert_eq!(parse_decimal(b"", 10), None);
        assert_eq!(
            parse_decimal(b"9999999999999999999", u64::MAX),
            Some(9999999999999999999)
        );
        assert_eq!(
            parse_decimal(b"18446744073709551615", u64::MAX),
            Some(u64::MAX)
        );
        assert_eq!(parse_decimal(b"18446744073709551616", u64::MAX), None);
        assert_eq!(parse_decimal(b"000000000000000000001", u64::MAX), None);
        assert_eq!(parse_decimal(b"00000000000000000001", 1), Some(1));
        assert_eq!(parse_decimal(b"12a", 1000), None);
        assert_eq!(parse_decimal(b"65536", 65535), None);
    }

    #[test]
    fn comma_split_respects_quotes_and_brackets() {
        let v: Vec<_> = CommaSplit::new(b"\"a,b\" <sip:x,y@h>;p=1 , <sip:z@h>").collect();
        assert_eq!(v, vec![&b"\"a,b\" <sip:x,y@h>;p=1"[..], &b"<sip:z@h>"[..]]);
    }
}
