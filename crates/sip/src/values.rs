//! Typed header values: Via, name-addr (From, To, Contact, Route,
//! Record-Route), CSeq. Each is a set of views into the message.

use crate::grammar::{
    any_ws, find_byte, hostport_len, is_hostport_char, is_token, is_ws, lws, parse_decimal,
    quoted_string, token_len, trim, ws_len,
};
use crate::method::Method;
use crate::params::{ParamKind, Params};
use crate::uri::{split_hostport, v4_hostport, Host, Uri, UriError};

/// The cookie that marks an RFC 3261 branch.
pub const BRANCH_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value.
#[derive(Clone, Copy, Debug)]
pub struct Via<'a> {
    /// The whole value as written.
    pub raw: &'a [u8],
    pub protocol_name: &'a [u8],
    pub protocol_version: &'a [u8],
    pub transport: &'a [u8],
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// The host and port as written (`sent-by`).
    pub sent_by: &'a [u8],
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn parse(raw: &'a [u8]) -> Option<Via<'a>> {
        let (via, rest) = Self::parse_prefix(raw)?;
        if !trim(rest).is_empty() {
            return None;
        }
        Some(Via { raw, ..via })
    }

    /// Parses a Via value at the start of `raw` and returns it (its `raw`
    /// up to the end of its parameters) with what follows. Inlined: the
    /// value is large, and `parse` would otherwise copy it once more.
    #[inline(always)]
    pub(crate) fn parse_prefix(raw: &'a [u8]) -> Option<(Via<'a>, &'a [u8])> {
        // sent-protocol = name SLASH version SLASH transport, where SLASH
        // is "/" with optional LWS around it.
        let token_at = |at: usize| -> Option<(usize, &'a [u8])> {
            let n = token_len(&raw[at..]);
            (n > 0).then(|| (at + n, &raw[at..at + n]))
        };
        let slash = |at: usize| -> Option<usize> {
            let at = at + ws_len(&raw[at..]);
            (raw.get(at) == Some(&b'/')).then(|| at + 1 + ws_len(&raw[at + 1..]))
        };
        let (at, name, version, transport) = match raw.first_chunk::<13>() {
            // As every stack writes it, with a three-letter transport and
            // one space: the general case finds the same.
            // `SIP/2.0/` as one word, not eight byte compares.
            Some(w)
                if u64::from_le_bytes(*w.first_chunk::<8>().expect("8 of 13"))
                    == u64::from_le_bytes(*b"SIP/2.0/")
                    && w[11] == b' '
                    && is_token(w[8])
                    && is_token(w[9])
                    && is_token(w[10])
                    && !is_ws(w[12]) =>
            {
                (12, &raw[..3], &raw[4..7], &raw[8..11])
            }
            _ => {
                let (at, name, version) = if raw.starts_with(b"SIP/2.0/") {
                    (8 + ws_len(&raw[8..]), &raw[..3], &raw[4..7])
                } else {
                    let (at, name) = token_at(ws_len(raw))?;
                    let (at, version) = token_at(slash(at)?)?;
                    (slash(at)?, name, version)
                };
                let (at, transport) = token_at(at)?;
                let ws = ws_len(&raw[at..]);
                if ws == 0 {
                    return None;
                }
                (at + ws, name, version, transport)
            }
        };
        let (host, port, n) = match sent_by_v4(&raw[at..]) {
            Some(v4) => v4,
            None => {
                let n = hostport_len(&raw[at..]);
                if n == 0 {
                    return None;
                }
                // LWS may also surround the colon of sent-by; it is rare
                // enough to allow only the compact form.
                let (host, port) = split_hostport(&raw[at..at + n])?;
                (host, port, n)
            }
        };
        let sent_by = &raw[at..at + n];
        let (rest, params) = Params::parse(&raw[at + n..], ParamKind::Header)?;
        let via = Via {
            raw: &raw[..raw.len() - rest.len()],
            protocol_name: name,
            protocol_version: version,
            transport,
            host,
            port,
            sent_by,
            params,
        };
        Some((via, rest))
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.get(b"branch").flatten()
    }

    /// True when the branch carries the RFC 3261 magic cookie (and more).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }

    pub fn received(&self) -> Option<&'a [u8]> {
        self.params.get(b"received").flatten()
    }

    /// `None`: no rport; `Some(None)`: rport asked for; `Some(Some(p))`: filled.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get(b"rport")
            .map(|v| v.and_then(|p| parse_decimal(p, 65535).map(|p| p as u16)))
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.get(b"maddr").flatten()
    }

    pub fn is_transport(&self, t: &str) -> bool {
        self.transport.eq_ignore_ascii_case(t.as_bytes())
    }
}

/// An IPv4 sent-by with an optional port, in one pass: what the general
/// path (`hostport_len`, then `split_hostport`) finds for it, with its
/// length. `None` sends any other form, and any doubt, to that path.
#[inline]
fn sent_by_v4(s: &[u8]) -> Option<(Host<'_>, Option<u16>, usize)> {
    let (a, port, n) = v4_hostport(s)?;
    // The sent-by must end here, as `hostport_len` would see it.
    if s.get(n).is_some_and(|&c| is_hostport_char(c)) {
        return None;
    }
    Some((Host::V4(a), port, n))
}

/// A name-addr or addr-spec with its header parameters.
#[derive(Clone, Copy, Debug)]
pub struct NameAddr<'a> {
    pub raw: &'a [u8],
    /// The display name as written (quotes kept), if any.
    pub display: Option<&'a [u8]>,
    /// The URI text, without angle brackets.
    pub uri: &'a [u8],
    /// Whether the URI was enclosed in `<>`.
    pub bracketed: bool,
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (the caller splits lists on commas).
    pub fn parse(raw: &'a [u8]) -> Option<NameAddr<'a>> {
        // Values from the message are already trimmed.
        let v = match raw {
            [first, .., last] if !is_ws(*first) && !is_ws(*last) => raw,
            _ => trim(raw),
        };
        let (display, after_display) = if v.first() == Some(&b'"') {
            let (rest, d) = quoted_string(v).ok()?;
            // Nearly always one space (or none) before the `<`.
            let rest = match rest {
                [b'<', ..] => rest,
                [b' ', b'<', ..] => &rest[1..],
                _ => lws(rest).ok()?.0,
            };
            if rest.first() != Some(&b'<') {
                return None;
            }
            (Some(d), rest)
        } else {
            // A token display name holds no `;` or `"`: a `<` after one
            // of them is inside a parameter of an addr-spec, such as
            // `sip:a@h;+sip.instance="<urn:...>"`.
            match v.iter().position(|&c| matches!(c, b'<' | b';' | b'"')) {
                Some(lt) if v[lt] == b'<' => {
                    let d = trim(&v[..lt]);
                    if !d.iter().all(|&c| is_token(c) || is_ws(c)) {
                        return None;
                    }
                    ((!d.is_empty()).then_some(d), &v[lt..])
                }
                _ => (None, v),
            }
        };
        let (uri, bracketed, rest) = if let Some(inner) = after_display.strip_prefix(b"<") {
            // Up to the first `>`, with no white space on the way.
            let gt = find_byte(b'>', inner)?;
            if gt == 0 || any_ws(&inner[..gt]) {
                return None;
            }
            let uri = &inner[..gt];
            (uri, true, &inner[gt + 1..])
        } else {
            // addr-spec: no white space, and no `;`, `,` or `?` in the URI
            // (RFC 3261 section 20: those force the name-addr form).
            let end = after_display
                .iter()
                .position(|&c| c == b';' || is_ws(c))
                .unwrap_or(after_display.len());
            let uri = &after_display[..end];
            if uri.is_empty()
                || uri
                    .iter()
                    .any(|&c| c == b'?' || c == b',' || c == b'<' || c == b'>')
            {
                return None;
            }
            (uri, false, &after_display[end..])
        };
        // Only the scheme here: `parsed_uri` (and `Message::validate`)
        // check the URI itself, so a proxy that reads a tag pays nothing
        // for the URI it does not read.
        // `sip:` as nearly every URI starts: a valid scheme, no scan.
        if !uri.starts_with(b"sip:") {
            let colon = uri.iter().position(|&c| c == b':')?;
            let scheme_ok = uri[0].is_ascii_alphabetic()
                && uri[..colon]
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
            if !scheme_ok {
                return None;
            }
        }
        let (rest, params) = Params::parse(rest, ParamKind::Header)?;
        if !trim(rest).is_empty() {
            return None;
        }
        Some(NameAddr {
            raw: v,
            display,
            uri,
            bracketed,
            params,
        })
    }

    pub fn parsed_uri(&self) -> Result<Uri<'a>, UriError> {
        Uri::parse(self.uri)
    }

    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.get(b"tag").flatten()
    }
}

/// The CSeq header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method,
    pub method_raw: &'a [u8],
}

impl<'a> CSeq<'a> {
    pub fn parse(raw: &'a [u8]) -> Option<CSeq<'a>> {
        // Values from the message are already trimmed.
        let v = match raw {
            [first, .., last] if !is_ws(*first) && !is_ws(*last) => raw,
            _ => trim(raw),
        };
        // RFC 3261 section 8.1.1.5: less than 2**31.
        const MAX: u64 = (1 << 31) - 1;
        // The digits and their value in one pass; past 19 digits (which
        // might overflow) parse_decimal decides, as it does for all.
        let (mut value, mut digits) = (0u64, 0);
        while let Some(d) = v
            .get(digits)
            .map(|c| c.wrapping_sub(b'0'))
            .filter(|&d| d <= 9)
        {
            value = value.wrapping_mul(10).wrapping_add(u64::from(d));
            digits += 1;
        }
        let seq = if digits <= 19 {
            (digits > 0 && value <= MAX).then_some(value)?
        } else {
            parse_decimal(&v[..digits], MAX)?
        } as u32;
        let rest = &v[digits..];
        // Nearly always one space, then the method.
        let ws = match rest {
            [b' ', c, ..] if !is_ws(*c) => 1,
            _ => ws_len(rest),
        };
        // LWS, then a method token and nothing else.
        let m = &rest[ws..];
        // Every known method name is a token: only others are scanned.
        let method = Method::from_bytes(m);
        if ws == 0 || (method == Method::Other && (m.is_empty() || token_len(m) != m.len())) {
            return None;
        }
        Some(CSeq {
            seq,
            method,
            method_raw: m,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_via() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, Host::V4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.has_rfc3261_branch());
    }

    #[test]
    fn sent_protocol_forms() {
        for (text, transport, host) in [
            ("SIP/2.0/UDP h", "UDP", "h"),
            ("SIP/2.0/udp h", "udp", "h"),
            ("SIP/2.0/UDP  h", "UDP", "h"),
            ("SIP/2.0/UDP\r\n h", "UDP", "h"),
            ("SIP/2.0/SCTP h", "SCTP", "h"),
            ("SIP/2.0/WS h", "WS", "h"),
            ("SIP/2.0/ UDP h", "UDP", "h"),
            ("SIP/2.0/U-P h;x", "U-P", "h"),
        ] {
            let v = Via::parse(text.as_bytes()).unwrap();
            assert_eq!(
                (v.transport, v.sent_by),
                (transport.as_bytes(), host.as_bytes())
            );
            assert_eq!(
                (v.protocol_name, v.protocol_version),
                (&b"SIP"[..], &b"2.0"[..])
            );
        }
        for bad in [
            "SIP/2.0/UDP",
            "SIP/2.0/UD\"h",
            "SIP/2.0/UDPh",
            "SIP/2.0/U;P h",
        ] {
            assert!(Via::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn via_params() {
        let v = Via::parse(
            b"SIP/2.0/UDP [2001:db8::9]:5062;rport;branch=z9hG4bKx;received=198.51.100.1",
        )
        .unwrap();
        assert_eq!(v.port, Some(5062));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"198.51.100.1"[..]));
        assert!(v.has_rfc3261_branch());
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;,;,,").is_none());
        assert!(Via::parse(b"SIP/2.0/UDP").is_none());
    }

    #[test]
    fn v4_sent_by_as_the_general_path_reads_it() {
        for sent_by in crate::uri::V4_HOSTPORTS {
            for after in ["", ";branch=z9hG4bK1", " ;rport", ",x"] {
                let v = format!("SIP/2.0/UDP {sent_by}{after}");
                fn general(s: &[u8]) -> Option<(Host<'_>, Option<u16>, usize)> {
                    let n = hostport_len(s);
                    (n > 0)
                        .then(|| split_hostport(&s[..n]).map(|(h, p)| (h, p, n)))
                        .flatten()
                }
                let s = &v.as_bytes()[12..];
                let fast = sent_by_v4(s);
                if fast.is_some() {
                    assert_eq!(fast, general(s), "{v}");
                }
                let via = Via::parse_prefix(v.as_bytes());
                assert_eq!(
                    via.map(|(v, _)| (v.host, v.port, v.sent_by)),
                    general(s).map(|(h, p, n)| (h, p, &s[..n])),
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(n.tag(), Some(&b"98asjd8"[..]));
        assert_eq!(n.uri, b"sip:jdrosen@example.com");
        let a = NameAddr::parse(b"sip:caller@example.net;tag=134").unwrap();
        assert!(!a.bracketed);
        assert_eq!(a.uri, b"sip:caller@example.net");
        assert_eq!(a.tag(), Some(&b"134"[..]));
        let d = NameAddr::parse(b"\"caller\"<sip:caller@example.com>;tag=1").unwrap();
        // A quoted parameter of an addr-spec may hold angle brackets.
        let o = NameAddr::parse(b"sip:a@192.0.2.4;+sip.instance=\"<urn:uuid:1>\";q=1").unwrap();
        assert!(!o.bracketed);
        assert_eq!(o.uri, b"sip:a@192.0.2.4");
        assert_eq!(
            o.params.get(b"+sip.instance"),
            Some(Some(&b"\"<urn:uuid:1>\""[..]))
        );
        assert_eq!(d.display, Some(&b"\"caller\""[..]));
        for bad in [
            &b"\"Mr. J. User <sip:j.user@example.com>"[..],
            b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            b"\"Watson, Thomas\" < sip:t.watson@example.org >",
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            b"\"Joe\" <sip:joe@example.org>;;;;",
        ] {
            assert!(
                NameAddr::parse(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cseq_known_methods_are_tokens() {
        // CSeq skips the token scan for a known method.
        // (White space is trimmed or skipped before the method is read.)
        for b in (0..=255u8).filter(|&b| !is_ws(b)) {
            for name in [
                "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
            ] {
                let m = name.as_bytes();
                assert_eq!(token_len(m), m.len());
                for at in 0..m.len() {
                    let mut v = b"1 ".to_vec();
                    v.extend_from_slice(m);
                    v[2 + at] = b;
                    let method = &v[2..];
                    let scanned = !method.is_empty() && token_len(method) == method.len();
                    assert_eq!(CSeq::parse(&v).is_some(), scanned, "{v:?}");
                }
            }
        }
        for m in Method::ALL.into_iter().filter_map(Method::as_str) {
            assert_eq!(token_len(m.as_bytes()), m.len());
            assert_ne!(Method::from_bytes(m.as_bytes()), Method::Other);
        }
        assert!(CSeq::parse(b"1 INV ITE").is_none());
        assert!(CSeq::parse(b"1 INVITE;").is_none());
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse(b"0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert!(CSeq::parse(b"36893488147419103232 REGISTER").is_none());
        assert!(CSeq::parse(b"2147483648 INVITE").is_none());
        assert!(CSeq::parse(b"1INVITE").is_none());
        assert!(CSeq::parse(b"").is_none());
        assert!(CSeq::parse(b" INVITE").is_none());
        assert_eq!(CSeq::parse(b"2147483647 BYE").unwrap().seq, (1 << 31) - 1);
        assert_eq!(CSeq::parse(b"00000000000000000001 ACK").unwrap().seq, 1);
        assert!(CSeq::parse(b"000000000000000000001 ACK").is_none());
        assert!(CSeq::parse(b"99999999999999999999 ACK").is_none());
        assert!(CSeq::parse(b"1 INV ITE").is_none());
        assert_eq!(CSeq::parse(b"1 \tFOO").unwrap().method_raw, b"FOO");
    }
}
