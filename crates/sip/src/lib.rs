//! trunkvip-sip: a zero-copy SIP message parser, stream framer and
//! splicing editor, with no I/O.
//!
//! A [`Message`] owns one [`bytes::Bytes`] buffer. A first pass finds the
//! start line, the header boundaries and the body; typed accessors
//! ([`Message::vias`], [`Message::cseq`], [`Message::from`]...) parse the
//! RFC 3261 grammar on demand and hand out views into the buffer, never
//! copies. [`StreamDecoder`] frames messages on TCP and TLS, and
//! [`Editor`] produces the forwarded form of a message by splicing, so the
//! untouched parts are copied once into the send buffer and never
//! re-parsed. [`build`] writes the messages a proxy makes itself.
//!
//! What it is not: a user agent or a transaction layer; those live in
//! `trunkvip-proxy`.

#![forbid(unsafe_code)]

pub mod build;
mod edit;
mod error;
mod grammar;
mod header;
mod message;
mod method;
mod params;
mod stream;
mod uri;
mod values;

pub use edit::{Editor, Splices};
pub use error::{Error, ErrorKind, HeaderSet};
/// Short byte searches, inlined (what the parser uses; see `find_byte`).
pub use grammar::{find_byte, find_byte2, rfind_byte};
pub use header::HeaderName;
pub use message::{HeaderIndex, Limits, Message};
pub use method::Method;
pub use params::{Param, ParamIter, Params};
pub use stream::{Frame, StreamDecoder};
pub use uri::{parse_host, Host, Scheme, Uri, UriError};
pub use values::{CSeq, NameAddr, Via, BRANCH_COOKIE};
