//! Request methods.

use std::fmt;

/// The methods a proxy treats specially, plus `Other` for the rest (the raw
/// name stays in the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Subscribe,
    Notify,
    Publish,
    Info,
    Refer,
    Message,
    Update,
    Other,
}

impl Method {
    /// Every variant, in declaration order (`Other` last), so that
    /// `m as usize` indexes it.
    pub const ALL: [Method; 15] = [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Options,
        Method::Register,
        Method::Prack,
        Method::Subscribe,
        Method::Notify,
        Method::Publish,
        Method::Info,
        Method::Refer,
        Method::Message,
        Method::Update,
        Method::Other,
    ];

    /// Methods are case-sensitive (RFC 3261 section 7.1).
    #[inline]
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => Method::Other,
        }
    }

    /// The method starting `line` and its length, when it is one of the
    /// common ones followed by a space: one word compare instead of the
    /// token scan and the name match, which find the same.
    #[inline]
    pub(crate) fn common_prefix(line: &[u8]) -> Option<(Method, usize)> {
        let w = u64::from_le_bytes(*line.first_chunk::<8>()?);
        let word = |s: &[u8; 8]| u64::from_le_bytes(*s);
        const LOW7: u64 = 0x00ff_ffff_ffff_ffff;
        const LOW4: u64 = 0xffff_ffff;
        if w & LOW7 == word(b"INVITE \0") {
            Some((Method::Invite, 6))
        } else if w & LOW4 == word(b"ACK \0\0\0\0") {
            Some((Method::Ack, 3))
        } else if w & LOW4 == word(b"BYE \0\0\0\0") {
            Some((Method::Bye, 3))
        } else if w & LOW7 == word(b"CANCEL \0") {
            Some((Method::Cancel, 6))
        } else if w == word(b"OPTIONS ") {
            Some((Method::Options, 7))
        } else {
            None
        }
    }

    /// The canonical name; `None` for `Other`, whose name lives in the message.
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Other => return None,
        })
    }

    /// Requests that may create a dialog and so get Record-Route.
    pub fn creates_dialog(self) -> bool {
        matches!(
            self,
            Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str().unwrap_or("(extension)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_in_order_and_named() {
        for (n, m) in Method::ALL.into_iter().enumerate() {
            assert_eq!(m as usize, n);
            match m.as_str() {
                Some(name) => assert_eq!(Method::from_bytes(name.as_bytes()), m),
                None => assert_eq!(m, Method::Other),
            }
        }
    }

    #[test]
    fn common_prefix_is_the_scan() {
        // What the start-line parser otherwise does: a token, then a space.
        let scan = |line: &[u8]| {
            let n = crate::grammar::token_len(line);
            (n > 0 && line.get(n) == Some(&b' ')).then(|| (Method::from_bytes(&line[..n]), n))
        };
        for name in [
            "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO",
        ] {
            let line = format!("{name} sip:a@b SIP/2.0");
            let line = line.as_bytes();
            for at in 0..=name.len() {
                for c in 0..=255u8 {
                    let mut l = line.to_vec();
                    l[at] = c;
                    if let Some(fast) = Method::common_prefix(&l) {
                        assert_eq!(Some(fast), scan(&l), "{l:?}");
                    }
                }
            }
            if name != "REGISTER" && name != "INFO" {
                assert!(Method::common_prefix(line).is_some(), "{name}");
            }
        }
        assert_eq!(Method::common_prefix(b"ACK"), None);
        assert_eq!(Method::common_prefix(b"invite sip:a SIP/2.0"), None);
    }
}
