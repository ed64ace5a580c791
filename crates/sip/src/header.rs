//! Header names: the ones a proxy reads, with their compact forms.

use std::fmt;

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
    pub fn classify(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Via,
                b'i' => CallId,
                b'f' => From,
                b't' => To,
                b'l' => ContentLength,
                b'm' => Contact,
                b'c' => ContentType,
                b'k' => Supported,
                _ => Other,
            };
        }
        let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            2 if eq("To") => To,
            3 if eq("Via") => Via,
            4 if eq("CSeq") => CSeq,
            4 if eq("From") => From,
            4 if eq("Path") => Path,
            5 if eq("Route") => Route,
            5 if eq("Allow") => Allow,
            7 if eq("Call-ID") => CallId,
            7 if eq("Contact") => Contact,
            7 if eq("Require") => Require,
            7 if eq("Expires") => Expires,
            9 if eq("Supported") => Supported,
            11 if eq("Unsupported") => Unsupported,
            11 if eq("Retry-After") => RetryAfter,
            12 if eq("Max-Forwards") => MaxForwards,
            12 if eq("Record-Route") => RecordRoute,
            12 if eq("Content-Type") => ContentType,
            13 if eq("Proxy-Require") => ProxyRequire,
            14 if eq("Content-Length") => ContentLength,
            _ => Other,
        }
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
    }
}
