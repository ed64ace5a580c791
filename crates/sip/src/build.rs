//! Writing the messages a proxy makes itself: responses to a request
//! (100 Trying, 4xx, 5xx), and requests such as OPTIONS probes, CANCEL,
//! ACK and BYE.

use std::fmt::Display;
use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::HeaderName;
use crate::message::Message;

/// Writes a message header by header; `finish` adds Content-Length.
#[derive(Debug)]
pub struct Builder {
    buf: BytesMut,
}

impl Builder {
    pub fn request(method: &[u8], uri: &[u8]) -> Builder {
        let mut buf = BytesMut::with_capacity(512);
        buf.put_slice(method);
        buf.put_u8(b' ');
        buf.put_slice(uri);
        buf.put_slice(b" SIP/2.0\r\n");
        Builder { buf }
    }

    pub fn response(code: u16, reason: &str) -> Builder {
        let mut buf = BytesMut::with_capacity(512);
        let _ = write!((&mut buf).writer(), "SIP/2.0 {code} {reason}\r\n");
        Builder { buf }
    }

    pub fn header(mut self, name: &str, value: &[u8]) -> Builder {
        self.push(name, value);
        self
    }

    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b": ");
        self.buf.put_slice(value);
        self.buf.put_slice(b"\r\n");
    }

    pub fn push_display(&mut self, name: &str, value: impl Display) {
        let _ = write!((&mut self.buf).writer(), "{name}: {value}\r\n");
    }

    /// Copies every line of `name` from `msg` as written.
    pub fn copy_from(&mut self, msg: &Message, name: HeaderName) {
        for h in msg.entries().iter().filter(|h| h.name == name) {
            self.buf.put_slice(&msg.buffer()[h.line.range()]);
        }
    }

    pub fn finish(self) -> Bytes {
        self.finish_with_body(None, b"")
    }

    pub fn finish_with_body(mut self, content_type: Option<&str>, body: &[u8]) -> Bytes {
        if let Some(ct) = content_type {
            self.push("Content-Type", ct.as_bytes());
        }
        self.push_display("Content-Length", body.len());
        self.buf.put_slice(b"\r\n");
        self.buf.put_slice(body);
        self.buf.freeze()
    }
}

/// A response to `req` as RFC 3261 section 8.2.6.2 says: Via, From,
/// Call-ID and CSeq copied, To copied with `to_tag` added when the request
/// had none. `extra` headers follow; the caller finishes the builder.
pub fn response_to(req: &Message, code: u16, reason: &str, to_tag: Option<&[u8]>) -> Builder {
    let mut b = Builder::response(code, reason);
    b.copy_from(req, HeaderName::Via);
    b.copy_from(req, HeaderName::From);
    match (req.header(HeaderName::To), to_tag) {
        (Some(to), Some(tag)) if req.to().map(|t| t.tag().is_none()).unwrap_or(false) => {
            let mut v = Vec::with_capacity(to.len() + tag.len() + 5);
            v.extend_from_slice(to);
            v.extend_from_slice(b";tag=");
            v.extend_from_slice(tag);
            b.push("To", &v);
        }
        _ => b.copy_from(req, HeaderName::To),
    }
    b.copy_from(req, HeaderName::CallId);
    b.copy_from(req, HeaderName::CSeq);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_copies_and_tags() {
        let req = Message::parse(Bytes::from_static(
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nv: SIP/2.0/UDP c;branch=z9hG4bK2\r\nFrom: <sip:a@h>;tag=x\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let mut b = response_to(&req, 503, "Service Unavailable", Some(b"t1"));
        b.push("Retry-After", b"5");
        let r = Message::parse(b.finish()).unwrap();
        r.validate().unwrap();
        assert_eq!(r.status(), Some(503));
        assert_eq!(r.vias().count(), 2);
        assert_eq!(r.to().unwrap().tag(), Some(&b"t1"[..]));
        assert_eq!(r.header(HeaderName::RetryAfter), Some(&b"5"[..]));
        assert_eq!(r.content_length(), Some(0));
    }
}
