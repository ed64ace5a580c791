//! The forwarding editor: the outgoing form of a message as a list of
//! splices over the original buffer. Untouched ranges stay byte-exact and
//! are copied once, into the send buffer.

use std::io::Write;
use std::net::IpAddr;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::grammar::CommaSplit;
use crate::header::HeaderName;
use crate::message::Message;

/// `n` in decimal, without the formatting machinery (on every forward).
fn push_decimal(t: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        t.push(b'0' + n / 100);
    }
    if n >= 10 {
        t.push(b'0' + n / 10 % 10);
    }
    t.push(b'0' + n % 10);
}

#[derive(Clone, Copy, Debug)]
struct Splice {
    start: u32,
    end: u32,
    text_start: u32,
    text_end: u32,
}

/// Edits to one buffer: byte ranges of it replaced by new text, kept apart
/// from it until written out. Ranges never overlap; inserts at one offset
/// keep the order they were made in. Cleared and reused, it allocates
/// nothing once warm.
#[derive(Clone, Debug, Default)]
pub struct Splices {
    list: Vec<Splice>,
    text: Vec<u8>,
}

impl Splices {
    pub fn with_capacity(splices: usize, text: usize) -> Self {
        Splices {
            list: Vec::with_capacity(splices),
            text: Vec::with_capacity(text),
        }
    }

    pub fn clear(&mut self) {
        self.list.clear();
        self.text.clear();
    }

    /// Replaces `start..end` with what `write` appends to the text buffer.
    pub fn replace(&mut self, start: usize, end: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let text_start = self.text.len();
        write(&mut self.text);
        self.list.push(Splice {
            start: start as u32,
            end: end as u32,
            text_start: text_start as u32,
            text_end: self.text.len() as u32,
        });
    }

    pub fn insert(&mut self, at: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.replace(at, at, write);
    }

    pub fn remove(&mut self, start: usize, end: usize) {
        self.replace(start, end, |_| {});
    }

    /// The length of a buffer of `len` bytes once edited.
    pub fn len(&self, len: usize) -> usize {
        self.list.iter().fold(len, |n, s| {
            n + (s.text_end - s.text_start) as usize - (s.end - s.start) as usize
        })
    }

    /// Writes `buf[range]` edited into `out`; offsets are into `buf`.
    pub fn write_to(&mut self, buf: &[u8], range: Range<usize>, out: &mut BytesMut) {
        out.reserve(self.len(range.len()));
        self.put(buf, range, out);
    }

    /// `base` edited, in a buffer of exactly its size.
    pub fn apply(&mut self, base: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len(base.len()));
        self.put(base, 0..base.len(), &mut out);
        out.freeze()
    }

    fn put(&mut self, buf: &[u8], range: Range<usize>, out: &mut BytesMut) {
        // Stable: inserts at one offset stay in order.
        self.list.sort_by_key(|s| (s.start, s.end));
        let mut cursor = range.start;
        for s in &self.list {
            out.put_slice(&buf[cursor..s.start as usize]);
            out.put_slice(&self.text[s.text_start as usize..s.text_end as usize]);
            cursor = s.end as usize;
        }
        out.put_slice(&buf[cursor..range.end]);
    }
}

/// Edits to one message. Each operation applies to the original message;
/// the operations a proxy combines never touch the same bytes.
#[derive(Debug)]
pub struct Editor<'m> {
    msg: &'m Message,
    splices: Splices,
}

impl<'m> Editor<'m> {
    pub fn new(msg: &'m Message) -> Self {
        Editor {
            msg,
            splices: Splices::with_capacity(4, 256),
        }
    }

    fn splice(&mut self, start: usize, end: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.splices.replace(start, end, write);
    }

    fn first_line_of(&self, name: HeaderName) -> Option<usize> {
        self.msg
            .entries()
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.line.start as usize)
    }

    fn first_header_start(&self) -> usize {
        self.msg
            .entries()
            .first()
            .map_or(self.msg.head().headers_end as usize, |h| {
                h.line.start as usize
            })
    }

    fn insert_line(&mut self, at: usize, name: &str, value: &[u8]) {
        self.splice(at, at, |t| {
            t.extend_from_slice(name.as_bytes());
            t.extend_from_slice(b": ");
            t.extend_from_slice(value);
            t.extend_from_slice(b"\r\n");
        });
    }

    /// Adds a Via above all others: `value` is e.g.
    /// `SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK...;rport`.
    pub fn push_via(&mut self, value: &[u8]) {
        let at = self
            .first_line_of(HeaderName::Via)
            .unwrap_or_else(|| self.first_header_start());
        self.insert_line(at, "Via", value);
    }

    /// Removes the first value of a list header: the whole line when it
    /// holds one value. Returns false when there is none.
    fn pop_first_value(&mut self, name: HeaderName) -> bool {
        let Some(h) = self.msg.entries().iter().find(|h| h.name == name).copied() else {
            return false;
        };
        let value = &self.msg.buffer()[h.value.range()];
        let mut split = CommaSplit::new(value);
        split.next();
        match split.next() {
            Some(second) => {
                let cut = self.msg.offset_of(second);
                self.splice(h.value.start as usize, cut, |_| {});
            }
            None => self.splice(h.line.start as usize, h.line.end as usize, |_| {}),
        }
        true
    }

    /// Removes our own Via from a response before it goes upstream.
    pub fn pop_via(&mut self) -> bool {
        self.pop_first_value(HeaderName::Via)
    }

    /// Removes the top Route value (the one naming us).
    pub fn pop_route(&mut self) -> bool {
        self.pop_first_value(HeaderName::Route)
    }

    /// RFC 3261 section 18.2.1 and RFC 3581: `received` when the sent-by
    /// differs from the source, and `rport` filled in when asked for.
    pub fn set_top_via_received(&mut self, received: Option<IpAddr>, rport: Option<u16>) {
        let Ok(via) = self.msg.top_via() else {
            return;
        };
        if let (Some(port), Some(p)) = (rport, via.params.find(b"rport")) {
            if p.value.is_none() {
                let start = self.msg.offset_of(p.raw);
                self.splice(start, start + p.raw.len(), |t| {
                    let _ = write!(t, ";rport={port}");
                });
            }
        }
        if let Some(ip) = received {
            // A `received` the sender wrote itself is replaced, not kept
            // ahead of ours: responses are routed by the first one.
            let (start, end) = match via.params.find(b"received") {
                Some(p) => {
                    let start = self.msg.offset_of(p.raw);
                    (start, start + p.raw.len())
                }
                None => {
                    let end = self.msg.offset_of(via.raw) + via.raw.len();
                    (end, end)
                }
            };
            self.splice(start, end, |t| match ip {
                IpAddr::V4(a) => {
                    let _ = write!(t, ";received={a}");
                }
                IpAddr::V6(a) => {
                    let _ = write!(t, ";received=[{a}]");
                }
            });
        }
    }

    /// Adds our Record-Route above any others.
    pub fn insert_record_route(&mut self, value: &[u8]) {
        let at = self
            .first_line_of(HeaderName::RecordRoute)
            .unwrap_or(self.msg.head().headers_end as usize);
        self.insert_line(at, "Record-Route", value);
    }

    /// Replaces Max-Forwards, or inserts it when absent.
    pub fn set_max_forwards(&mut self, n: u8) {
        match self
            .msg
            .entries()
            .iter()
            .find(|h| h.name == HeaderName::MaxForwards)
            .copied()
        {
            Some(h) => self.splice(h.value.start as usize, h.value.end as usize, |t| {
                push_decimal(t, n)
            }),
            None => {
                let at = self.msg.head().headers_end as usize;
                self.splice(at, at, |t| {
                    t.extend_from_slice(b"Max-Forwards: ");
                    push_decimal(t, n);
                    t.extend_from_slice(b"\r\n");
                });
            }
        }
    }

    /// Replaces the Request-URI of a request.
    pub fn set_request_uri(&mut self, uri: &[u8]) {
        if let Some(old) = self.msg.request_uri_bytes() {
            let start = self.msg.offset_of(old);
            self.splice(start, start + old.len(), |t| t.extend_from_slice(uri));
        }
    }

    /// Appends a header line after the existing ones.
    pub fn add_header(&mut self, name: &str, value: &[u8]) {
        let at = self.msg.head().headers_end as usize;
        self.insert_line(at, name, value);
    }

    /// Removes the first `n` lines of a header (a proxy's own
    /// Record-Route lines, which it always writes one value per line).
    pub fn remove_first_lines(&mut self, name: HeaderName, n: usize) {
        let lines: Vec<_> = self
            .msg
            .entries()
            .iter()
            .filter(|h| h.name == name)
            .take(n)
            .map(|h| h.line)
            .collect();
        for l in lines {
            self.splice(l.start as usize, l.end as usize, |_| {});
        }
    }

    /// Removes every line of a header.
    pub fn remove_header(&mut self, name: HeaderName) {
        let lines: Vec<_> = self
            .msg
            .entries()
            .iter()
            .filter(|h| h.name == name)
            .map(|h| h.line)
            .collect();
        for l in lines {
            self.splice(l.start as usize, l.end as usize, |_| {});
        }
    }

    /// The length of the edited message.
    pub fn len(&self) -> usize {
        self.splices.len(self.msg.as_bytes().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the edited message into `out`.
    pub fn write_to(&mut self, out: &mut BytesMut) {
        let range = self.msg.head().origin as usize..self.msg.body_span().end as usize;
        self.splices.write_to(self.msg.buffer(), range, out);
    }

    pub fn to_bytes(mut self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        self.write_to(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_in_order() {
        let base = b"abcdef";
        let mut s = Splices::default();
        s.insert(2, |t| t.extend_from_slice(b"1"));
        s.replace(4, 5, |t| t.extend_from_slice(b"XY"));
        s.insert(2, |t| t.extend_from_slice(b"2"));
        s.remove(0, 1);
        assert_eq!(s.len(base.len()), 8);
        assert_eq!(&s.apply(base)[..], b"b12cdXYf");
    }

    const REQ: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bKaaa;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKbbb\r\n\
Route: <sip:198.51.100.10;lr>, <sip:other.example.com;lr>\r\n\
Max-Forwards: 70\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
From: <sip:a@example.com>;tag=1\r\n\
To: <sip:b@example.com>\r\n\
Content-Length: 2\r\n\
\r\n\
hi";

    fn msg(b: &'static [u8]) -> Message {
        Message::parse(Bytes::from_static(b)).unwrap()
    }

    #[test]
    fn forwarding_edits() {
        let m = msg(REQ);
        let mut e = Editor::new(&m);
        e.push_via(b"SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKnew;rport");
        e.set_top_via_received(Some("198.51.100.7".parse().unwrap()), Some(5062));
        e.pop_route();
        e.set_max_forwards(69);
        e.insert_record_route(b"<sip:198.51.100.10;lr>");
        e.set_request_uri(b"sip:bob@198.51.100.21:5060");
        let n = e.len();
        let out = e.to_bytes();
        assert_eq!(out.len(), n);
        let f = Message::parse(out).unwrap();
        f.validate().unwrap();
        let vias: Vec<_> = f.vias().map(|v| v.unwrap().raw.to_vec()).collect();
        assert_eq!(
            vias[0],
            b"SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKnew;rport"
        );
        assert_eq!(
            vias[1],
            b"SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bKaaa;rport=5062;received=198.51.100.7"
        );
        assert_eq!(vias.len(), 3);
        let routes: Vec<_> = f.routes().map(|r| r.unwrap().uri.to_vec()).collect();
        assert_eq!(routes, vec![b"sip:other.example.com;lr".to_vec()]);
        assert_eq!(f.max_forwards().unwrap(), Some(69));
        assert_eq!(
            f.record_routes().next().unwrap().unwrap().uri,
            b"sip:198.51.100.10;lr"
        );
        assert_eq!(
            f.request_uri_bytes().unwrap(),
            b"sip:bob@198.51.100.21:5060"
        );
        assert_eq!(f.body(), b"hi");
    }

    #[test]
    fn pop_via_of_response_and_insert_max_forwards() {
        let m = msg(b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nl: 0\r\n\r\n");
        let mut e = Editor::new(&m);
        assert!(e.pop_via());
        let out = e.to_bytes();
        assert_eq!(
            &out[..],
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nl: 0\r\n\r\n"
        );
        let m = msg(b"OPTIONS sip:x SIP/2.0\r\nl: 0\r\n\r\n");
        let mut e = Editor::new(&m);
        e.set_max_forwards(70);
        assert_eq!(
            &e.to_bytes()[..],
            b"OPTIONS sip:x SIP/2.0\r\nl: 0\r\nMax-Forwards: 70\r\n\r\n"
        );
    }

    #[test]
    fn received_from_the_sender_is_replaced() {
        let m = msg(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP a;received=203.0.113.66 ;rport;branch=z9hG4bK1\r\nl: 0\r\n\r\n");
        let mut e = Editor::new(&m);
        e.set_top_via_received(Some("198.51.100.7".parse().unwrap()), Some(5062));
        let f = Message::parse(e.to_bytes()).unwrap();
        let via = f.top_via().unwrap();
        assert_eq!(
            via.raw,
            b"SIP/2.0/UDP a;received=198.51.100.7 ;rport=5062;branch=z9hG4bK1"
        );
        assert_eq!(
            via.params.iter().filter(|p| p.name == b"received").count(),
            1
        );
    }

    #[test]
    fn remove_first_lines_keeps_the_rest() {
        let m = msg(b"INVITE sip:x SIP/2.0\r\nRecord-Route: <sip:a;lr>\r\nRecord-Route: <sip:b;lr>\r\nRecord-Route: <sip:c;lr>\r\nl: 0\r\n\r\n");
        let mut e = Editor::new(&m);
        e.remove_first_lines(HeaderName::RecordRoute, 2);
        e.insert_record_route(b"<sip:n;lr>");
        let out = Message::parse(e.to_bytes()).unwrap();
        let rr: Vec<_> = out
            .record_routes()
            .map(|r| r.unwrap().uri.to_vec())
            .collect();
        assert_eq!(rr, vec![b"sip:n;lr".to_vec(), b"sip:c;lr".to_vec()]);
    }

    #[test]
    fn decimals() {
        for n in 0..=255u8 {
            let mut t = vec![];
            push_decimal(&mut t, n);
            assert_eq!(t, n.to_string().as_bytes());
        }
    }

    #[test]
    fn untouched_message_is_byte_exact() {
        let m = msg(REQ);
        assert_eq!(&Editor::new(&m).to_bytes()[..], REQ);
    }
}
