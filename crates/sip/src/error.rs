//! The one error type of the parser: what is wrong and at which byte.

use std::fmt;

use crate::header::HeaderName;

/// What is wrong with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The message is larger than the configured maximum.
    TooLarge { limit: usize },
    /// More header lines than the configured maximum.
    TooManyHeaders { limit: usize },
    /// A header line (folded lines included) longer than the maximum.
    LineTooLong { limit: usize },
    /// The header section does not end with an empty line.
    Truncated,
    /// The start line is neither a Request-Line nor a Status-Line.
    BadStartLine,
    /// A SIP version other than 2.0 (answered 505).
    UnsupportedVersion,
    /// A status code outside 100-699.
    BadStatusCode,
    /// The Request-URI does not parse, or carries headers.
    BadRequestUri,
    /// A header line without a valid name and colon.
    BadHeaderLine,
    /// Mandatory headers absent (all of them are listed).
    Missing(HeaderSet),
    /// A header that may appear once appears more than once.
    Duplicate(HeaderName),
    /// A header value that does not follow its grammar or range.
    BadValue(HeaderName),
    /// Content-Length larger than the data that follows the headers.
    ContentLengthExceedsData,
    /// A stream-framed message without Content-Length.
    MissingContentLength,
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
}

/// A small set of header names, for reporting every missing header at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderSet(u32);

impl HeaderSet {
    const ORDER: [HeaderName; 6] = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
    ];

    fn bit(h: HeaderName) -> u32 {
        Self::ORDER
            .iter()
            .position(|&x| x == h)
            .map_or(0, |n| 1 << n)
    }

    pub fn insert(&mut self, h: HeaderName) {
        self.0 |= Self::bit(h);
    }

    pub fn contains(&self, h: HeaderName) -> bool {
        self.0 & Self::bit(h) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = HeaderName> + '_ {
        Self::ORDER.into_iter().filter(|h| self.contains(*h))
    }
}

/// A parse or validation error with the byte offset where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    offset: usize,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, offset: usize) -> Self {
        Error { kind, offset }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Byte offset in the message (or stream buffer) where the fault is.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The status code a proxy answers a request with this fault.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::UnsupportedVersion => 505,
            ErrorKind::TooLarge { .. } => 513,
            _ => 400,
        }
    }

    /// A reason phrase for that answer, such as
    /// "Bad Request (missing Call-ID)".
    pub fn reason_phrase(&self) -> String {
        match self.status() {
            505 => "Version Not Supported".to_string(),
            513 => "Message Too Large".to_string(),
            _ => format!("Bad Request ({})", self.what()),
        }
    }

    fn what(&self) -> String {
        match &self.kind {
            ErrorKind::TooLarge { limit } => format!("message over {limit} bytes"),
            ErrorKind::TooManyHeaders { limit } => format!("more than {limit} headers"),
            ErrorKind::LineTooLong { limit } => format!("header line over {limit} bytes"),
            ErrorKind::Truncated => "header section not terminated".into(),
            ErrorKind::BadStartLine => "malformed start line".into(),
            ErrorKind::UnsupportedVersion => "unsupported SIP version".into(),
            ErrorKind::BadStatusCode => "bad status code".into(),
            ErrorKind::BadRequestUri => "bad Request-URI".into(),
            ErrorKind::BadHeaderLine => "malformed header line".into(),
            ErrorKind::Missing(set) => {
                let names: Vec<_> = set.iter().map(HeaderName::as_str).collect();
                format!("missing {}", names.join(", "))
            }
            ErrorKind::Duplicate(h) => format!("more than one {h}"),
            ErrorKind::BadValue(h) => format!("bad {h}"),
            ErrorKind::ContentLengthExceedsData => "Content-Length exceeds data".into(),
            ErrorKind::MissingContentLength => "missing Content-Length".into(),
            ErrorKind::CSeqMethodMismatch => "CSeq method does not match".into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what(), self.offset)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_every_missing_header() {
        let mut set = HeaderSet::default();
        set.insert(HeaderName::CallId);
        set.insert(HeaderName::From);
        let e = Error::new(ErrorKind::Missing(set), 0);
        assert_eq!(e.status(), 400);
        assert_eq!(e.reason_phrase(), "Bad Request (missing From, Call-ID)");
        let v = Error::new(ErrorKind::UnsupportedVersion, 30);
        assert_eq!(
            (v.status(), v.reason_phrase().as_str()),
            (505, "Version Not Supported")
        );
        assert_eq!(v.to_string(), "unsupported SIP version at byte 30");
    }
}
