//! SIP, SIPS and tel URIs; any other scheme is carried through as opaque.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::grammar::{
    find_byte, host_chars, is_password_char, is_uri_header_char, is_user_char, parse_decimal,
    plain_user_len, user_len,
};
use crate::params::{ParamKind, Params};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other scheme: the URI is kept whole and never interpreted.
    Other,
}

/// The host part of a URI or a Via sent-by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    Domain(&'a [u8]),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host<'_> {
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::V4(a) => Some(IpAddr::V4(a)),
            Host::V6(a) => Some(IpAddr::V6(a)),
            Host::Domain(_) => None,
        }
    }

    /// Case-insensitive for names, by value for addresses.
    pub fn matches(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            _ => self.ip().is_some() && self.ip() == other.ip(),
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(&String::from_utf8_lossy(d)),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Parses `hostname / IPv4address / IPv6reference`. The whole input must be
/// the host.
pub fn parse_host(s: &[u8]) -> Option<Host<'_>> {
    // The common case first: a dotted quad is all digits and dots, so the
    // general path below would read it the same way.
    if s.first().is_some_and(u8::is_ascii_digit) {
        if let Some(a) = parse_ipv4(s) {
            return Some(Host::V4(a));
        }
    }
    match s.first()? {
        b'[' => {
            let inner = s.strip_prefix(b"[")?.strip_suffix(b"]")?;
            let text = std::str::from_utf8(inner).ok()?;
            text.parse::<Ipv6Addr>().ok().map(Host::V6)
        }
        _ => {
            let (host_chars, digits_and_dots) = host_chars(s);
            if !host_chars {
                return None;
            }
            if digits_and_dots {
                // All digits and dots is an IPv4 address or nothing: a top
                // label must start with a letter.
                return parse_ipv4(s).map(Host::V4);
            }
            // No empty label, but the last one after a final dot.
            let labels_ok =
                s[0] != b'.' && (s.ends_with(b".") || !s.windows(2).any(|w| w == b".."));
            labels_ok.then_some(Host::Domain(s))
        }
    }
}

/// Dotted-quad IPv4 as `Ipv4Addr::from_str` reads it: four parts of one
/// to three digits, no leading zero, each <= 255.
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    ipv4_prefix(s).and_then(|(a, n)| (n == s.len()).then_some(a))
}

/// The dotted quad `s` starts with and its length. Part by part with at
/// most three digits each, rather than a state machine per byte, in a
/// 16-byte window (the longest quad is 15) so that no read is checked.
#[inline]
pub(crate) fn ipv4_prefix(s: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut padded = [0u8; 16];
    let w: &[u8; 16] = match s.first_chunk::<16>() {
        Some(w) => w,
        None => {
            // Zeros past the end stop the parse like the end does.
            padded[..s.len()].copy_from_slice(s);
            &padded
        }
    };
    let digit = |i: usize| {
        let d = w[i & 15].wrapping_sub(b'0');
        (d <= 9).then_some(d)
    };
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, o) in octets.iter_mut().enumerate() {
        if k > 0 {
            if w[i & 15] != b'.' {
                return None;
            }
            i += 1;
        }
        let mut v = u16::from(digit(i)?);
        i += 1;
        // A leading 0 is the whole part: a digit after it fails below.
        if v != 0 {
            if let Some(d) = digit(i) {
                v = v * 10 + u16::from(d);
                i += 1;
                if let Some(d) = digit(i) {
                    v = v * 10 + u16::from(d);
                    i += 1;
                }
            }
        }
        *o = u8::try_from(v).ok()?;
    }
    Some((Ipv4Addr::from(octets), i))
}

/// An IPv4 address with an optional `:port` at the start of `s`, and
/// its length; the caller checks what follows. `None` when there is no
/// such prefix or the port is not a valid one.
#[inline]
pub(crate) fn v4_hostport(s: &[u8]) -> Option<(Ipv4Addr, Option<u16>, usize)> {
    let (a, mut n) = ipv4_prefix(s)?;
    let mut port = None;
    if s.get(n) == Some(&b':') {
        // The digits in one pass, as `parse_decimal(digits, 65535)` reads
        // them: at least one, at most 20, no more than 65535.
        let digits = &s[n + 1..];
        // Four digits (5060 and the like): one word, no per-digit checks.
        if let Some(p) = four_digits(digits) {
            if !digits.get(4).is_some_and(u8::is_ascii_digit) {
                return Some((a, Some(p), n + 5));
            }
        }
        let mut v: u32 = 0;
        let mut d = 0;
        while let Some(x) = digits
            .get(d)
            .map(|c| c.wrapping_sub(b'0'))
            .filter(|&x| x <= 9)
        {
            v = v * 10 + u32::from(x);
            if v > 65535 || d == 20 {
                return None;
            }
            d += 1;
        }
        if d == 0 {
            return None;
        }
        port = Some(v as u16);
        n += 1 + d;
    }
    Some((a, port, n))
}

/// The value of the four decimal digits at the start of `s`, if it
/// starts with four.
#[inline]
fn four_digits(s: &[u8]) -> Option<u16> {
    let w = u32::from_le_bytes(*s.first_chunk::<4>()?);
    // Each byte 0x30..=0x3f, and still so with 6 added: '0'..='9'.
    const HI: u32 = 0xf0f0_f0f0;
    const ZEROS: u32 = 0x3030_3030;
    if w & HI != ZEROS || (w + 0x0606_0606) & HI != ZEROS {
        return None;
    }
    // Little-endian: the first digit is the low byte. Pairs, then the
    // two pairs; no byte overflows into the next.
    let x = w - ZEROS;
    let x = (x * 10 + (x >> 8)) & 0x00ff_00ff;
    Some(((x * 100 + (x >> 16)) & 0xffff) as u16)
}

/// Splits `host[:port]`, IPv6 references included.
pub(crate) fn split_hostport(s: &[u8]) -> Option<(Host<'_>, Option<u16>)> {
    let (host, port) = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&c| c == b']')?;
        let (h, rest) = s.split_at(close + 1);
        match rest {
            [] => (h, None),
            [b':', p @ ..] => (h, Some(p)),
            _ => return None,
        }
    } else {
        match s.iter().position(|&c| c == b':') {
            Some(n) => (&s[..n], Some(&s[n + 1..])),
            None => (s, None),
        }
    };
    let host = parse_host(host)?;
    let port = match port {
        Some(p) => Some(u16::try_from(parse_decimal(p, 65535)?).ok()?),
        None => None,
    };
    Some((host, port))
}

/// A parsed URI, all parts views into the message.
#[derive(Clone, Copy, Debug)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The URI exactly as written.
    pub raw: &'a [u8],
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    /// `None` for tel and opaque schemes.
    pub host: Option<Host<'a>>,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// Text after `?`, escaped as written.
    pub headers: Option<&'a [u8]>,
}

/// Why a URI was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriError;

impl<'a> Uri<'a> {
    /// Parses a whole URI (no surrounding `<>` or white space).
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, UriError> {
        // `sip:` as nearly every URI starts: what the general path finds.
        if let Some(rest) = raw.strip_prefix(b"sip:").filter(|r| !r.is_empty()) {
            return Self::parse_sip(raw, Scheme::Sip, rest);
        }
        let colon = raw.iter().position(|&c| c == b':').ok_or(UriError)?;
        let (scheme_text, rest) = (&raw[..colon], &raw[colon + 1..]);
        let valid_scheme = scheme_text.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme_text
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !valid_scheme || rest.is_empty() {
            return Err(UriError);
        }
        let scheme = if scheme_text.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme_text.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme_text.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let opaque = |scheme| {
            // Opaque URIs still may not hold white space or brackets.
            if rest
                .iter()
                .any(|&c| c <= b' ' || matches!(c, b'<' | b'>' | b'"') || c >= 0x7f)
            {
                return Err(UriError);
            }
            Ok(Uri {
                scheme,
                raw,
                user: None,
                password: None,
                host: None,
                port: None,
                params: Params::empty(ParamKind::Uri),
                headers: None,
            })
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => Self::parse_sip(raw, scheme, rest),
            Scheme::Tel => {
                let mut uri = opaque(Scheme::Tel)?;
                let semi = rest.iter().position(|&c| c == b';').unwrap_or(rest.len());
                uri.user = Some(&rest[..semi]);
                let (left, params) =
                    Params::parse(&rest[semi..], ParamKind::Uri).ok_or(UriError)?;
                if !left.is_empty() {
                    return Err(UriError);
                }
                uri.params = params;
                Ok(uri)
            }
            Scheme::Other => opaque(Scheme::Other),
        }
    }

    fn parse_sip(raw: &'a [u8], scheme: Scheme, rest: &'a [u8]) -> Result<Uri<'a>, UriError> {
        // `@` cannot appear unescaped after the userinfo, so the first one
        // ends it even when the user part holds `;`, `?` or `:`.
        let (user, password, hostpart) = match find_byte(b'@', rest) {
            Some(at) => {
                let info = &rest[..at];
                // No password (`:` is no user character): a run of user
                // characters, the escapes checked when there is a `%`.
                if !info.is_empty() && plain_user_len(info) == info.len() {
                    // No `%`, so no escape to check.
                    (Some(info), None, &rest[at + 1..])
                } else if !info.is_empty() && user_len(info) == info.len() {
                    if find_byte(b'%', info).is_some() {
                        check_escapes(info)?;
                    }
                    (Some(info), None, &rest[at + 1..])
                } else {
                    // One pass: user characters up to a `:`, password ones after.
                    let mut colon = None;
                    let mut escaped = false;
                    for (n, &c) in info.iter().enumerate() {
                        escaped |= c == b'%';
                        let ok = if colon.is_none() {
                            if c == b':' {
                                colon = Some(n);
                                continue;
                            }
                            is_user_char(c)
                        } else {
                            is_password_char(c)
                        };
                        if !ok {
                            return Err(UriError);
                        }
                    }
                    let (user, password) = match colon {
                        Some(c) => (&info[..c], Some(&info[c + 1..])),
                        None => (info, None),
                    };
                    if user.is_empty() {
                        return Err(UriError);
                    }
                    if escaped {
                        check_escapes(info)?;
                    }
                    (Some(user), password, &rest[at + 1..])
                }
            }
            None => (None, None, rest),
        };
        // An IPv4 host first, in one pass: the general path below finds
        // the same when a `;`, a `?` or the end follows it.
        let v4 = v4_hostport(hostpart)
            .filter(|&(_, _, n)| matches!(hostpart.get(n), None | Some(b';') | Some(b'?')));
        let (host, port, end_of_hostport) = match v4 {
            Some((a, port, n)) => (Host::V4(a), port, n),
            None => Self::hostport(hostpart)?,
        };
        let (after, params) =
            Params::parse(&hostpart[end_of_hostport..], ParamKind::Uri).ok_or(UriError)?;
        check_escapes(params.as_bytes())?;
        let headers = match after {
            [] => None,
            [b'?', h @ ..] => {
                if h.is_empty()
                    || !h
                        .iter()
                        .all(|&c| is_uri_header_char(c) || c == b'&' || c == b'=')
                {
                    return Err(UriError);
                }
                check_escapes(h)?;
                Some(h)
            }
            _ => return Err(UriError),
        };
        Ok(Uri {
            scheme,
            raw,
            user,
            password,
            host: Some(host),
            port,
            params,
            headers,
        })
    }

    /// The host and port at the start of `hostpart` (up to the first `;`
    /// or `?` after any IPv6 reference) and where they end.
    fn hostport(hostpart: &'a [u8]) -> Result<(Host<'a>, Option<u16>, usize), UriError> {
        let end_of_hostport = if hostpart.first() == Some(&b'[') {
            let close = hostpart.iter().position(|&c| c == b']').ok_or(UriError)?;
            close
                + hostpart[close..]
                    .iter()
                    .position(|&c| c == b';' || c == b'?')
                    .unwrap_or(hostpart.len() - close)
        } else {
            hostpart
                .iter()
                .position(|&c| c == b';' || c == b'?')
                .unwrap_or(hostpart.len())
        };
        let (host, port) = split_hostport(&hostpart[..end_of_hostport]).ok_or(UriError)?;
        Ok((host, port, end_of_hostport))
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params.get(name)
    }

    /// The `transport` parameter, lower-cased comparison left to the caller.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.params.get(b"transport").flatten()
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.get(b"maddr").flatten()
    }

    pub fn has_lr(&self) -> bool {
        self.params.contains(b"lr")
    }

    /// URI equivalence as RFC 3261 section 19.1.4 defines it for SIP and
    /// SIPS URIs: escapes decoded, host case-insensitive, the parameters
    /// `user`, `ttl`, `method`, `maddr` and `transport` must agree when
    /// either side has them, others only when both do; headers compared.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        if !self.is_sip() {
            return self.raw.eq_ignore_ascii_case(other.raw);
        }
        let eq_opt = |a: Option<&[u8]>, b: Option<&[u8]>, ci: bool| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => unescaped_eq(a, b, ci),
            _ => false,
        };
        if !eq_opt(self.user, other.user, false) || !eq_opt(self.password, other.password, false) {
            return false;
        }
        match (self.host, other.host) {
            (Some(a), Some(b)) if a.matches(&b) => {}
            _ => return false,
        }
        if self.port != other.port {
            return false;
        }
        for (a, b) in [(self, other), (other, self)] {
            for p in a.params.iter() {
                let mine = p.value;
                let special = [&b"user"[..], b"ttl", b"method", b"maddr", b"transport"]
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(p.name));
                match b.params.get(p.name) {
                    Some(theirs) if !eq_opt(mine, theirs, true) => return false,
                    None if special => return false,
                    _ => {}
                }
            }
        }
        eq_opt(self.headers, other.headers, true)
    }
}

fn check_escapes(s: &[u8]) -> Result<(), UriError> {
    let mut n = 0;
    while n < s.len() {
        if s[n] == b'%' {
            let ok =
                s.len() > n + 2 && s[n + 1].is_ascii_hexdigit() && s[n + 2].is_ascii_hexdigit();
            if !ok {
                return Err(UriError);
            }
            n += 3;
        } else {
            n += 1;
        }
    }
    Ok(())
}

fn unescape_iter(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut n = 0;
    std::iter::from_fn(move || {
        let c = *s.get(n)?;
        if c == b'%' && n + 2 < s.len() {
            let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            if let (Some(h), Some(l)) = (hex(s[n + 1]), hex(s[n + 2])) {
                n += 3;
                return Some(h << 4 | l);
            }
        }
        n += 1;
        Some(c)
    })
}

fn unescaped_eq(a: &[u8], b: &[u8], case_insensitive: bool) -> bool {
    let mut x = unescape_iter(a);
    let mut y = unescape_iter(b);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) => {
                let same = if case_insensitive {
                    p.eq_ignore_ascii_case(&q)
                } else {
                    p == q
                };
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// IPv4 host-and-port texts, good and bad, for the tests that hold the
/// one-pass IPv4 readers (URI host, Via sent-by) to the general path.
#[cfg(test)]
pub(crate) const V4_HOSTPORTS: &[&str] = &[
    "192.0.2.1",
    "192.0.2.1:5060",
    "192.0.2.1:05060",
    "192.0.2.1:9999",
    "192.0.2.1:50600",
    "192.0.2.1:506",
    "192.0.2.1:65535",
    "192.0.2.1:65536",
    "192.0.2.1:",
    "192.0.2.1:5060:1",
    "192.0.2.1:50a",
    "192.0.2.1.5",
    "192.0.2.1a",
    "192.0.2.01",
    "192.0.2.256",
    "192.0.2",
    "1.2.3.4:99999999999999999999999",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts() {
        let u = Uri::parse(b"sip:alice:pw@[2001:db8::5]:5070;transport=tcp;lr?subject=x").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"pw"[..]));
        assert_eq!(u.host, Some(Host::V6("2001:db8::5".parse().unwrap())));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert!(u.has_lr());
        assert_eq!(u.headers, Some(&b"subject=x"[..]));
    }

    #[test]
    fn user_part_may_hold_semicolons() {
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, Some(Host::Domain(b"example.com")));
        assert!(u.params.is_empty());
    }

    #[test]
    fn refused_uris() {
        for bad in [
            &b"<sip:user@example.com>"[..],
            b"sip:user@example.com; lr",
            b"sip:",
            b"sip:user@host:99999",
            b"sip:user@256.1.1.1",
            b"sip:us%zzer@host",
            b"1sip:host",
        ] {
            assert!(Uri::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn ipv4_as_std_reads_it() {
        for s in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "01.1.1.1",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "00.1.1.1",
            "1.2.3.04",
            "1.2.3.4.",
            "999.1.1.1",
            "1000.1.1.1",
            "",
            ".",
            "1.2.3.",
            ".1.2.3",
            "0.0.0.00",
            "1.2.3.4a",
            "a.1.2.3",
            "1.2:3.4",
            "255.255.255.256",
            "10.0.0.255",
        ] {
            assert_eq!(parse_ipv4(s.as_bytes()), s.parse::<Ipv4Addr>().ok(), "{s}");
        }
    }

    #[test]
    fn ipv4_every_short_string() {
        // Every string of up to 8 bytes over digits, dots and a letter.
        let alphabet = b"0125.9a";
        let mut s = Vec::new();
        for len in 0..=8u32 {
            for mut k in 0..alphabet.len().pow(len) {
                s.clear();
                for _ in 0..len {
                    s.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let text = std::str::from_utf8(&s).unwrap();
                assert_eq!(parse_ipv4(&s), text.parse::<Ipv4Addr>().ok(), "{text}");
            }
        }
    }

    #[test]
    fn four_digits_is_parse_decimal() {
        for s in [
            &b"5060"[..],
            b"0000",
            b"9999",
            b"0123",
            b"506",
            b"50a0",
            b"/060",
            b":060",
            b"5060x",
        ] {
            let want = match s.first_chunk::<4>() {
                Some(d) => parse_decimal(d, 9999).map(|v| v as u16),
                None => None,
            };
            assert_eq!(four_digits(s), want, "{s:?}");
        }
        for a in 0..=255u8 {
            for at in 0..4 {
                let mut s = *b"1234";
                s[at] = a;
                assert_eq!(
                    four_digits(&s),
                    parse_decimal(&s, 9999).map(|v| v as u16),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn v4_hostport_as_the_general_path_reads_it() {
        for host in V4_HOSTPORTS {
            for after in ["", ";lr", "?x=1", ";transport=tcp?h=v", ":", "@x", " "] {
                let hostpart = format!("{host}{after}");
                let h = hostpart.as_bytes();
                let fast = v4_hostport(h)
                    .filter(|&(_, _, n)| matches!(h.get(n), None | Some(b';') | Some(b'?')));
                if let Some((a, port, n)) = fast {
                    assert_eq!(Uri::hostport(h), Ok((Host::V4(a), port, n)), "{hostpart}");
                }
                let uri = format!("sip:u@{hostpart}");
                let general = Uri::hostport(h).and_then(|(host, port, n)| {
                    let (after, _) = Params::parse(&h[n..], ParamKind::Uri).ok_or(UriError)?;
                    Ok((host, port, after))
                });
                let parsed = Uri::parse(uri.as_bytes());
                match (general, parsed) {
                    (Err(_), parsed) => assert!(parsed.is_err(), "{uri}"),
                    (Ok((host, port, _)), Ok(u)) => {
                        assert_eq!((u.host, u.port), (Some(host), port), "{uri}")
                    }
                    (Ok(_), Err(_)) => {}
                }
            }
        }
    }

    #[test]
    fn opaque_and_tel() {
        let u = Uri::parse(b"soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme, Scheme::Other);
        let t = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.user, Some(&b"+1-201-555-0123"[..]));
        assert!(t.params.contains(b"phone-context"));
    }

    #[test]
    fn equivalence_decodes_escapes() {
        let a = Uri::parse(b"sip:%75se%72@example.com").unwrap();
        let b = Uri::parse(b"sip:user@EXAMPLE.com").unwrap();
        assert!(a.equivalent(&b));
        let c = Uri::parse(b"sip:user@example.com;transport=tcp").unwrap();
        assert!(!b.equivalent(&c));
        let d = Uri::parse(b"sip:user@example.com;foo=bar").unwrap();
        assert!(b.equivalent(&d));
    }
}
