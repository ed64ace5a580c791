//! Character classes and the small nom parsers the typed accessors share.
//!
//! Inside a header value the first pass already joined folded lines, so a
//! CR or LF seen here is always part of linear white space.

use nom::bytes::complete::{take_while, take_while1};
use nom::error::{Error as NomError, ErrorKind as NomKind};
use nom::IResult;

pub(crate) type PResult<'a, O> = IResult<&'a [u8], O, NomError<&'a [u8]>>;

pub(crate) fn fail<'a, O>(i: &'a [u8]) -> PResult<'a, O> {
    Err(nom::Err::Error(NomError::new(i, NomKind::Verify)))
}

/// RFC 3261 `token` characters.
#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

#[inline]
pub(crate) fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// `unreserved` of RFC 3261 (alphanum / mark).
#[inline]
pub(crate) fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Characters of a URI user part: unreserved, escaped and user-unreserved.
#[inline]
pub(crate) fn is_user_char(c: u8) -> bool {
    is_unreserved(c)
        || matches!(
            c,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        )
}

#[inline]
pub(crate) fn is_password_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'&' | b'=' | b'+' | b'$' | b',')
}

/// `paramchar` of a URI parameter name or value.
#[inline]
pub(crate) fn is_uri_param_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// `hnv-unreserved` / unreserved / escaped: URI header names and values.
#[inline]
pub(crate) fn is_uri_header_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// Header parameter values: token, host (with IPv6 brackets) or quoted string.
#[inline]
pub(crate) fn is_gen_value_char(c: u8) -> bool {
    is_token(c) || matches!(c, b':' | b'[' | b']')
}

#[inline]
pub(crate) fn is_host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')
}

pub(crate) fn lws(i: &[u8]) -> PResult<'_, &[u8]> {
    take_while(is_ws)(i)
}

pub(crate) fn token(i: &[u8]) -> PResult<'_, &[u8]> {
    take_while1(is_token)(i)
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

/// A quoted string, quotes included. Quoted pairs may escape any octet but
/// CR and LF; an unterminated string is an error.
pub(crate) fn quoted_string(i: &[u8]) -> PResult<'_, &[u8]> {
    if i.first() != Some(&b'"') {
        return fail(i);
    }
    let mut n = 1;
    while n < i.len() {
        match i[n] {
            b'"' => return Ok((&i[n + 1..], &i[..n + 1])),
            b'\\' => {
                match i.get(n + 1) {
                    Some(b'\r') | Some(b'\n') | None => return fail(&i[n..]),
                    Some(_) => n += 2,
                }
                continue;
            }
            _ => n += 1,
        }
    }
    fail(i)
}

/// Decimal digits into a u64, refusing overflow and more than `max`.
pub(crate) fn parse_decimal(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
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
    fn decimal_limits() {
        assert_eq!(parse_decimal(b"0068", 255), Some(68));
        assert_eq!(parse_decimal(b"300", 255), None);
        assert_eq!(parse_decimal(b"36893488147419103232", u64::MAX), None);
        assert_eq!(parse_decimal(b"-1", 10), None);
        assert_eq!(parse_decimal(b"", 10), None);
    }

    #[test]
    fn comma_split_respects_quotes_and_brackets() {
        let v: Vec<_> = CommaSplit::new(b"\"a,b\" <sip:x,y@h>;p=1 , <sip:z@h>").collect();
        assert_eq!(v, vec![&b"\"a,b\" <sip:x,y@h>;p=1"[..], &b"<sip:z@h>"[..]]);
    }
}
