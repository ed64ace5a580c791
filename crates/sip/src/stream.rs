//! Stream framing for TCP and TLS (RFC 3261 section 18.3): Content-Length
//! is mandatory, reads may split or join messages anywhere, and CRLF
//! keep-alives (RFC 5626 section 3.5.1) come between messages.

use bytes::BytesMut;
use memchr::memmem;

use crate::error::{Error, ErrorKind};
use crate::message::{parse_head, Head, Limits, Message};

/// What the decoder yields.
#[derive(Debug)]
pub enum Frame {
    Message(Message),
    /// A double CRLF: the peer asks for a single CRLF back.
    Ping,
    /// A single CRLF: the answer to our ping.
    Pong,
}

/// An incremental decoder. Feed it bytes as they arrive and call
/// [`StreamDecoder::decode`] until it returns `Ok(None)`. An error is fatal
/// for the connection: framing is lost.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: BytesMut,
    limits: Limits,
    /// The head of a message whose body is still arriving, and its length.
    pending: Option<(Head, usize)>,
    /// How far the search for the end of headers has already looked.
    scanned: usize,
}

impl StreamDecoder {
    pub fn new(limits: Limits) -> Self {
        StreamDecoder {
            buf: BytesMut::with_capacity(4096),
            limits,
            pending: None,
            scanned: 0,
        }
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The receive buffer, for `read_buf`-style reads straight into it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes held and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn decode(&mut self) -> Result<Option<Frame>, Error> {
        if let Some((_, total)) = &self.pending {
            if self.buf.len() < *total {
                return Ok(None);
            }
            let (head, total) = self.pending.take().expect("checked above");
            let bytes = self.buf.split_to(total).freeze();
            return Ok(Some(Frame::Message(Message::from_head(bytes, head))));
        }
        if self.buf.starts_with(b"\r\n") {
            match self.buf.get(2..4) {
                Some(b"\r\n") => {
                    let _ = self.buf.split_to(4);
                    self.scanned = 0;
                    return Ok(Some(Frame::Ping));
                }
                Some(_) => {
                    let _ = self.buf.split_to(2);
                    self.scanned = 0;
                    return Ok(Some(Frame::Pong));
                }
                None if self.buf.get(2).is_some_and(|&c| c != b'\r') => {
                    let _ = self.buf.split_to(2);
                    return Ok(Some(Frame::Pong));
                }
                None => return Ok(None),
            }
        }
        let from = self.scanned.saturating_sub(3);
        let Some(end) = memmem::find(&self.buf[from..], b"\r\n\r\n").map(|n| n + from) else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.limits.max_message_size {
                return Err(Error::new(
                    ErrorKind::TooLarge {
                        limit: self.limits.max_message_size,
                    },
                    self.limits.max_message_size,
                ));
            }
            return Ok(None);
        };
        self.scanned = 0;
        let head_len = end + 4;
        if head_len > self.limits.max_message_size {
            return Err(Error::new(
                ErrorKind::TooLarge {
                    limit: self.limits.max_message_size,
                },
                self.limits.max_message_size,
            ));
        }
        let mut head = Head::new();
        parse_head(&self.buf[..head_len], &self.limits, &mut head)?;
        let cl = head
            .content_length
            .ok_or(Error::new(ErrorKind::MissingContentLength, end))? as usize;
        let total = head_len + cl;
        if total > self.limits.max_message_size {
            return Err(Error::new(
                ErrorKind::TooLarge {
                    limit: self.limits.max_message_size,
                },
                self.limits.max_message_size,
            ));
        }
        self.pending = Some((head, total));
        self.decode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";

    fn drain(d: &mut StreamDecoder) -> Vec<Frame> {
        let mut out = vec![];
        while let Some(f) = d.decode().unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn byte_at_a_time() {
        let mut input = b"\r\n\r\n".to_vec();
        input.extend_from_slice(MSG);
        input.extend_from_slice(MSG);
        let mut d = StreamDecoder::new(Limits::default());
        let mut frames = vec![];
        for b in &input {
            d.extend_from_slice(&[*b]);
            frames.extend(drain(&mut d));
        }
        assert!(matches!(frames[0], Frame::Ping));
        let msgs: Vec<_> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Message(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].as_bytes(), MSG);
        assert_eq!(msgs[1].body(), b"hello");
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn content_length_is_mandatory() {
        let mut d = StreamDecoder::new(Limits::default());
        d.extend_from_slice(b"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n");
        assert_eq!(
            d.decode().unwrap_err().kind(),
            &ErrorKind::MissingContentLength
        );
    }

    #[test]
    fn unbounded_head_is_refused() {
        let mut d = StreamDecoder::new(Limits {
            max_message_size: 1000,
            ..Limits::default()
        });
        for _ in 0..20 {
            d.extend_from_slice(&[b'a'; 100]);
            if let Err(e) = d.decode() {
                assert!(matches!(e.kind(), ErrorKind::TooLarge { .. }));
                return;
            }
        }
        panic!("no error");
    }

    #[test]
    fn pong() {
        let mut d = StreamDecoder::new(Limits::default());
        d.extend_from_slice(b"\r\nOPT");
        assert!(matches!(d.decode().unwrap(), Some(Frame::Pong)));
        assert!(d.decode().unwrap().is_none());
    }
}
