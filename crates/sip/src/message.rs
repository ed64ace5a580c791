//! The message: one `Bytes` buffer, a first pass that finds the start line,
//! header boundaries and body, and typed accessors that parse on demand.

use bytes::Bytes;

use crate::error::{Error, ErrorKind, HeaderSet};
use crate::grammar::{
    any_ws, find_byte, find_byte3, is_token, is_ws, offset_in, parse_decimal, rfind_byte,
    token_len, trim_end, ws_len, CommaSplit,
};
use crate::header::{known_at, name_before_colon, HeaderName};
use crate::method::Method;
use crate::uri::{Scheme, Uri};
use crate::values::{CSeq, NameAddr, Via};

/// Bounds that hold on any input: no allocation grows past them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_headers: usize,
    pub max_line_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            max_headers: 128,
            max_line_length: 8 * 1024,
        }
    }
}

/// A byte range of the message buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        // Limits keep messages far below 4 GiB.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderEntry {
    pub(crate) name: HeaderName,
    /// The whole line, folds and the final CRLF included.
    pub(crate) line: Span,
    /// The name is `line.start..name_end`.
    pub(crate) name_end: u32,
    /// The value without surrounding white space (folds inside kept).
    pub(crate) value: Span,
}

impl HeaderEntry {
    pub(crate) fn name_span(&self) -> Span {
        Span {
            start: self.line.start,
            end: self.name_end,
        }
    }
}

/// No header of that name (in `Head::first`).
const ABSENT: u8 = u8::MAX;

#[derive(Clone, Copy, Debug)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
    },
    Response {
        code: u16,
        reason: Span,
    },
}

/// What the first pass finds before the body.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) start: StartLine,
    /// Where the start line begins (leading CRLFs are skipped).
    pub(crate) origin: u32,
    pub(crate) headers: Vec<HeaderEntry>,
    /// Index of the first header of each name, or `ABSENT`; headers at
    /// index `ABSENT` and above are not recorded.
    pub(crate) first: [u8; HeaderName::COUNT],
    /// Offset of the empty line that ends the headers.
    pub(crate) headers_end: u32,
    /// At most `u32::MAX`; u32 keeps `Message` within 128 bytes, which
    /// the compiler moves inline rather than with a call to memcpy.
    pub(crate) content_length: Option<u32>,
}

impl Head {
    /// An empty head for `parse_head` to fill.
    pub(crate) fn new() -> Head {
        Head::with_index(Vec::with_capacity(16))
    }

    /// An empty head over `headers`, an empty index.
    fn with_index(headers: Vec<HeaderEntry>) -> Head {
        Head {
            start: StartLine::Response {
                code: 0,
                reason: Span::default(),
            },
            origin: 0,
            headers,
            first: [ABSENT; HeaderName::COUNT],
            headers_end: 0,
            content_length: None,
        }
    }

    pub(crate) fn body_start(&self) -> usize {
        self.headers_end as usize + 2
    }

    /// The first header line of that name.
    #[inline]
    pub(crate) fn first_of(&self, name: HeaderName) -> Option<&HeaderEntry> {
        match self.first[name as usize] {
            ABSENT if self.headers.len() > ABSENT as usize => self.headers[ABSENT as usize..]
                .iter()
                .find(|h| h.name == name),
            ABSENT => None,
            i => Some(&self.headers[i as usize]),
        }
    }
}

/// A header index given back by [`Message::recycle`] for the next
/// [`Message::parse_datagram_in`]: one allocation less per message.
#[derive(Debug, Default)]
pub struct HeaderIndex(Vec<HeaderEntry>);

/// A parsed SIP message. Cheap to clone (the buffer is shared).
#[derive(Clone, Debug)]
pub struct Message {
    buf: Bytes,
    head: Head,
    body: Span,
}

fn err<T>(kind: ErrorKind, offset: usize) -> Result<T, Error> {
    Err(Error::new(kind, offset))
}

fn check_version(v: &[u8], offset: usize) -> Result<(), Error> {
    if v == b"SIP/2.0" || v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.len() > 4 && v[..4].eq_ignore_ascii_case(b"SIP/") && {
        let mut parts = v[4..].split(|&c| c == b'.');
        let ok =
            |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
        ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
    };
    if well_formed {
        err(ErrorKind::UnsupportedVersion, offset)
    } else {
        err(ErrorKind::BadStartLine, offset)
    }
}

fn parse_start_line(buf: &[u8], origin: usize, eol: usize) -> Result<StartLine, Error> {
    let line = &buf[origin..eol];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // `SIP/2.0 ` as every stack writes it; the search finds the same.
        let sp = if line.starts_with(b"SIP/2.0 ") {
            7
        } else {
            let sp = find_byte(b' ', line).ok_or(Error::new(ErrorKind::BadStartLine, origin))?;
            check_version(&line[..sp], origin)?;
            sp
        };
        let rest = &line[sp + 1..];
        let code_off = origin + sp + 1;
        // Three characters, then the end or a space; a space among the
        // three fails the digit check below.
        if rest.len() < 3 || rest.get(3).is_some_and(|&c| c != b' ') {
            return err(ErrorKind::BadStatusCode, code_off);
        }
        let code = parse_decimal(&rest[..3], 699)
            .filter(|&c| c >= 100)
            .ok_or(Error::new(ErrorKind::BadStatusCode, code_off))? as u16;
        let reason_start = (code_off + 4).min(eol);
        return Ok(StartLine::Response {
            code,
            reason: Span::new(reason_start, eol),
        });
    }
    let bad = || Error::new(ErrorKind::BadStartLine, origin);
    let (method, m_end) = match Method::common_prefix(line) {
        Some(common) => common,
        None => {
            let m_end = token_len(line);
            if m_end == 0 || line.get(m_end) != Some(&b' ') {
                return Err(bad());
            }
            (Method::from_bytes(&line[..m_end]), m_end)
        }
    };
    // ` SIP/2.0` at the end as every stack writes it: the last space is
    // the one before it, and the version is good.
    let common = line.ends_with(b" SIP/2.0");
    let last_sp = if common {
        line.len() - 8
    } else {
        rfind_byte(b' ', line).ok_or_else(bad)?
    };
    if last_sp <= m_end + 1 || last_sp + 1 == line.len() {
        return Err(bad());
    }
    let uri = &line[m_end + 1..last_sp];
    // Exactly one SP between elements: any other white space in the
    // Request-URI is an error (RFC 4475 lwsruri, lwsstart, trws). The line
    // holds no LF.
    if find_byte3(b' ', b'\t', b'\r', uri).is_some() {
        return err(ErrorKind::BadRequestUri, origin + m_end + 1);
    }
    if !common {
        check_version(&line[last_sp + 1..], origin + last_sp + 1)?;
    }
    Ok(StartLine::Request {
        method,
        method_span: Span::new(origin, origin + m_end),
        uri: Span::new(origin + m_end + 1, origin + last_sp),
    })
}

/// Where the CRLF ending the line that starts at `from` is.
#[inline]
fn line_end(buf: &[u8], from: usize) -> Result<usize, Error> {
    let nl =
        find_byte(b'\n', &buf[from..]).ok_or(Error::new(ErrorKind::Truncated, buf.len()))? + from;
    if nl == 0 || buf[nl - 1] != b'\r' {
        return err(ErrorKind::BadHeaderLine, nl);
    }
    Ok(nl - 1)
}

/// The first pass over `buf`: start line, header lines, end of headers and
/// Content-Length, into `head` (a `Head::new()`). Stops at the empty line;
/// the body is the caller's.
pub(crate) fn parse_head(buf: &[u8], limits: &Limits, head: &mut Head) -> Result<(), Error> {
    // RFC 3261 section 7.5: CRLFs before the start line are ignored.
    let mut origin = 0;
    while buf[origin..].starts_with(b"\r\n") {
        origin += 2;
    }
    let eol = line_end(buf, origin)?;
    if eol - origin > limits.max_line_length {
        return err(
            ErrorKind::LineTooLong {
                limit: limits.max_line_length,
            },
            origin,
        );
    }
    head.start = parse_start_line(buf, origin, eol)?;
    head.origin = origin as u32;
    // Moved out and back: a local Vec keeps its length in a register
    // instead of storing it to the Head on every push. (On an error the
    // Head is dropped.)
    let mut headers = std::mem::take(&mut head.headers);
    let first = &mut head.first;
    let mut content_length = None;
    let mut pos = eol + 2;
    loop {
        match buf.get(pos..pos + 2) {
            Some(b"\r\n") => break,
            None => return err(ErrorKind::Truncated, pos),
            _ => {}
        }
        let index = headers.len();
        if index == limits.max_headers {
            return err(
                ErrorKind::TooManyHeaders {
                    limit: limits.max_headers,
                },
                pos,
            );
        }
        let line_start = pos;
        let mut end = line_end(buf, pos)?;
        // A CRLF followed by SP or HT folds the line (rare: tested once
        // before the loop that follows folds).
        if let Some(b' ') | Some(b'\t') | None = buf.get(end + 2) {
            loop {
                match buf.get(end + 2) {
                    Some(b' ') | Some(b'\t') => end = line_end(buf, end + 2)?,
                    Some(_) => break,
                    None => return err(ErrorKind::Truncated, buf.len()),
                }
                if end - line_start > limits.max_line_length {
                    break;
                }
            }
        }
        if end - line_start > limits.max_line_length {
            return err(
                ErrorKind::LineTooLong {
                    limit: limits.max_line_length,
                },
                line_start,
            );
        }
        let line = &buf[line_start..end];
        // Names are matched in the line's first 16 bytes at once: first
        // up to a colon found there, else known names followed by white
        // space; the others are scanned (a match implies what the scan
        // checks).
        let first16: Option<&[u8; 16]> = buf
            .get(line_start..line_start + 16)
            .map(|w| w.try_into().expect("16 bytes"));
        let (name, name_len, colon) = match first16.and_then(|w| name_before_colon(w, line.len())) {
            Some((name, n)) => (name, n, n),
            None => {
                let (name, name_len) = match first16.and_then(known_at) {
                    Some(k) => k,
                    None => {
                        let n = token_len(line);
                        (HeaderName::classify_outlined(&line[..n]), n)
                    }
                };
                let colon = name_len
                    + line[name_len..]
                        .iter()
                        .take_while(|&&c| matches!(c, b' ' | b'\t'))
                        .count();
                if name_len == 0 || line.get(colon) != Some(&b':') {
                    return err(ErrorKind::BadHeaderLine, line_start);
                }
                (name, name_len, colon)
            }
        };
        let after = &line[colon + 1..];
        // Nearly always one space, then the value.
        let lead = match after {
            [b' ', c, ..] if !is_ws(*c) => 1,
            _ => ws_len(after),
        };
        let vstart = colon + 1 + lead;
        let value = &line[vstart..];
        let value = match value.last() {
            Some(&c) if !is_ws(c) => value,
            _ => trim_end(value),
        };
        if name == HeaderName::ContentLength {
            if content_length.is_some() {
                return err(ErrorKind::Duplicate(name), line_start);
            }
            // `0` on most messages without a body: no call.
            let v = match value {
                b"0" => 0,
                _ => parse_decimal(value, u32::MAX as u64)
                    .ok_or(Error::new(ErrorKind::BadValue(name), line_start + vstart))?,
            };
            content_length = Some(v as u32);
        }
        let slot = &mut first[name as usize];
        if *slot == ABSENT && index < ABSENT as usize {
            *slot = index as u8;
        }
        headers.push(HeaderEntry {
            name,
            line: Span::new(line_start, end + 2),
            name_end: (line_start + name_len) as u32,
            value: Span::new(line_start + vstart, line_start + vstart + value.len()),
        });
        pos = end + 2;
    }
    head.headers = headers;
    head.headers_end = pos as u32;
    head.content_length = content_length;
    Ok(())
}

/// A name-addr whose URI parses too: what `validate` requires. The
/// accessors check only the structure and leave the URI to `parsed_uri`.
fn full_name_addr(v: &[u8]) -> bool {
    NameAddr::parse(v).is_some_and(|n| n.parsed_uri().is_ok())
}

impl Message {
    /// Parses one datagram with the default limits.
    pub fn parse(buf: Bytes) -> Result<Message, Error> {
        Self::parse_datagram(buf, &Limits::default())
    }

    /// Datagram framing (RFC 3261 section 18.3): octets beyond
    /// Content-Length are ignored; without Content-Length the body is the
    /// rest of the datagram; a Content-Length beyond the datagram is an error.
    pub fn parse_datagram(buf: Bytes, limits: &Limits) -> Result<Message, Error> {
        Self::parse_datagram_in(buf, limits, &mut HeaderIndex::default()).map_err(|(e, _)| e)
    }

    /// `parse_datagram`, with the header index kept in `spare` by
    /// [`Message::recycle`] (a new one when there is none). A datagram
    /// that does not parse comes back with the error, for an answer to it:
    /// the caller need not keep a second handle on every datagram, whose
    /// first clone costs an allocation.
    pub fn parse_datagram_in(
        buf: Bytes,
        limits: &Limits,
        spare: &mut HeaderIndex,
    ) -> Result<Message, (Error, Bytes)> {
        if buf.len() > limits.max_message_size {
            let e = Error::new(
                ErrorKind::TooLarge {
                    limit: limits.max_message_size,
                },
                limits.max_message_size,
            );
            return Err((e, buf));
        }
        let mut headers = std::mem::take(&mut spare.0);
        if headers.capacity() == 0 {
            headers = Vec::with_capacity(16);
        }
        headers.clear();
        let mut m = Message {
            buf,
            head: Head::with_index(headers),
            body: Span::default(),
        };
        match m.frame_datagram(limits) {
            Ok(()) => Ok(m),
            Err(e) => Err((e, m.recycle_into_buf(spare))),
        }
    }

    /// Ends the message, keeping its header index for the next
    /// `parse_datagram_in`.
    pub fn recycle(self, spare: &mut HeaderIndex) {
        self.recycle_into_buf(spare);
    }

    /// `recycle`, handing back the datagram.
    fn recycle_into_buf(self, spare: &mut HeaderIndex) -> Bytes {
        let Message { buf, head, .. } = self;
        let mut headers = head.headers;
        headers.clear();
        spare.0 = headers;
        buf
    }

    fn frame_datagram(&mut self, limits: &Limits) -> Result<(), Error> {
        parse_head(&self.buf, limits, &mut self.head)?;
        let body_start = self.head.body_start();
        let body_end = match self.head.content_length {
            Some(cl) => {
                let cl = cl as usize;
                let end = body_start + cl;
                if end > self.buf.len() {
                    return err(ErrorKind::ContentLengthExceedsData, self.buf.len());
                }
                end
            }
            None => self.buf.len(),
        };
        self.body = Span::new(body_start, body_end);
        Ok(())
    }

    /// Builds a message from a head found by the stream decoder.
    pub(crate) fn from_head(buf: Bytes, head: Head) -> Message {
        let body = Span::new(head.body_start(), buf.len());
        Message { buf, head, body }
    }

    pub(crate) fn head(&self) -> &Head {
        &self.head
    }

    pub(crate) fn buffer(&self) -> &Bytes {
        &self.buf
    }

    pub(crate) fn body_span(&self) -> Span {
        self.body
    }

    fn at(&self, s: Span) -> &[u8] {
        &self.buf[s.range()]
    }

    /// The message as framed: start line to the end of the body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.head.origin as usize..self.body.end as usize]
    }

    /// The framed message as a shared slice of the buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.buf
            .slice(self.head.origin as usize..self.body.end as usize)
    }

    /// A shared `Bytes` for any slice this message handed out.
    pub fn slice_ref(&self, sub: &[u8]) -> Bytes {
        self.buf.slice_ref(sub)
    }

    /// Offset of a slice this message handed out, in the buffer.
    pub fn offset_of(&self, sub: &[u8]) -> usize {
        offset_in(&self.buf, sub)
    }

    pub fn is_request(&self) -> bool {
        matches!(self.head.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<Method> {
        match self.head.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn method_bytes(&self) -> Option<&[u8]> {
        match self.head.start {
            StartLine::Request { method_span, .. } => Some(self.at(method_span)),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri_bytes(&self) -> Option<&[u8]> {
        match self.head.start {
            StartLine::Request { uri, .. } => Some(self.at(uri)),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<Result<Uri<'_>, Error>> {
        let raw = self.request_uri_bytes()?;
        Some(Uri::parse(raw).map_err(|_| Error::new(ErrorKind::BadRequestUri, self.offset_of(raw))))
    }

    pub fn status(&self) -> Option<u16> {
        match self.head.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&[u8]> {
        match self.head.start {
            StartLine::Response { reason, .. } => Some(self.at(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// Every header line as (name as written, value).
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.head
            .headers
            .iter()
            .map(|h| (self.at(h.name_span()), self.at(h.value)))
    }

    /// Every header line as (name, value), named as the first pass
    /// classified it: no second look at the name.
    pub fn header_lines(&self) -> impl Iterator<Item = (HeaderName, &[u8])> + '_ {
        self.head.headers.iter().map(|h| (h.name, self.at(h.value)))
    }

    pub fn header_count(&self) -> usize {
        self.head.headers.len()
    }

    /// The value of the first header of that name.
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.head.first_of(name).map(|h| self.at(h.value))
    }

    /// The first header whose name is `name` (case-insensitive), for
    /// headers this crate has no name for.
    pub fn header_named(&self, name: &[u8]) -> Option<&[u8]> {
        let known = HeaderName::classify(name);
        if known != HeaderName::Other {
            return self.header(known);
        }
        self.head
            .headers
            .iter()
            .find(|h| h.name == known && self.at(h.name_span()).eq_ignore_ascii_case(name))
            .map(|h| self.at(h.value))
    }

    /// Every value of a header: list headers are split on commas.
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        let list = name.is_list();
        self.head
            .headers
            .iter()
            .filter(move |h| h.name == name)
            .flat_map(move |h| {
                let v = self.at(h.value);
                let mut split = CommaSplit::new(v);
                let mut whole = Some(v);
                std::iter::from_fn(move || if list { split.next() } else { whole.take() })
            })
    }

    fn bad(&self, name: HeaderName, v: &[u8]) -> Error {
        Error::new(ErrorKind::BadValue(name), self.offset_of(v))
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, Error>> + '_ {
        self.header_values(HeaderName::Via)
            .map(|v| Via::parse(v).ok_or_else(|| self.bad(HeaderName::Via, v)))
    }

    pub fn top_via(&self) -> Result<Via<'_>, Error> {
        // The first value parsed where it starts, without splitting the
        // line on commas first: a Via holds no comma, `<` or `"` outside
        // its quoted parameter values, so when it is followed by a comma
        // or the end, that is exactly the first value `vias` would find.
        if let Some(h) = self.head.first_of(HeaderName::Via) {
            if let Some((via, rest)) = Via::parse_prefix(self.at(h.value)) {
                let rest = &rest[ws_len(rest)..];
                if rest.is_empty() || rest[0] == b',' {
                    return Ok(via);
                }
            }
        }
        self.vias().next().unwrap_or_else(|| {
            let mut m = HeaderSet::default();
            m.insert(HeaderName::Via);
            err(ErrorKind::Missing(m), self.head.headers_end as usize)
        })
    }

    fn required(&self, name: HeaderName) -> Result<&[u8], Error> {
        self.header(name).ok_or_else(|| {
            let mut m = HeaderSet::default();
            m.insert(name);
            Error::new(ErrorKind::Missing(m), self.head.headers_end as usize)
        })
    }

    pub fn call_id(&self) -> Result<&[u8], Error> {
        let v = self.required(HeaderName::CallId)?;
        if v.is_empty() || any_ws(v) {
            return Err(self.bad(HeaderName::CallId, v));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq<'_>, Error> {
        let v = self.required(HeaderName::CSeq)?;
        CSeq::parse(v).ok_or_else(|| self.bad(HeaderName::CSeq, v))
    }

    pub fn from(&self) -> Result<NameAddr<'_>, Error> {
        let v = self.required(HeaderName::From)?;
        NameAddr::parse(v).ok_or_else(|| self.bad(HeaderName::From, v))
    }

    pub fn to(&self) -> Result<NameAddr<'_>, Error> {
        let v = self.required(HeaderName::To)?;
        NameAddr::parse(v).ok_or_else(|| self.bad(HeaderName::To, v))
    }

    /// `Ok(None)` when absent (a proxy then inserts 70).
    pub fn max_forwards(&self) -> Result<Option<u8>, Error> {
        match self.header(HeaderName::MaxForwards) {
            None => Ok(None),
            // Two digits (70 and below) as most requests carry: no call.
            Some(&[a, b]) if a.is_ascii_digit() && b.is_ascii_digit() => {
                Ok(Some((a - b'0') * 10 + (b - b'0')))
            }
            Some(v) => parse_decimal(v, 255)
                .map(|n| Some(n as u8))
                .ok_or_else(|| self.bad(HeaderName::MaxForwards, v)),
        }
    }

    pub fn content_length(&self) -> Option<usize> {
        self.head.content_length.map(|n| n as usize)
    }

    pub fn content_type(&self) -> Option<&[u8]> {
        self.header(HeaderName::ContentType)
    }

    fn name_addrs(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr<'_>, Error>> + '_ {
        self.header_values(name)
            .map(move |v| NameAddr::parse(v).ok_or_else(|| self.bad(name, v)))
    }

    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, Error>> + '_ {
        self.name_addrs(HeaderName::Route)
    }

    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, Error>> + '_ {
        self.name_addrs(HeaderName::RecordRoute)
    }

    pub fn paths(&self) -> impl Iterator<Item = Result<NameAddr<'_>, Error>> + '_ {
        self.name_addrs(HeaderName::Path)
    }

    /// Contact values; a lone `*` (REGISTER) is returned as `Ok(None)`.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Option<NameAddr<'_>>, Error>> + '_ {
        self.header_values(HeaderName::Contact).map(move |v| {
            if v == b"*" {
                Ok(None)
            } else {
                NameAddr::parse(v)
                    .map(Some)
                    .ok_or_else(|| self.bad(HeaderName::Contact, v))
            }
        })
    }

    fn option_tags(&self, name: HeaderName) -> impl Iterator<Item = Result<&[u8], Error>> + '_ {
        self.header_values(name).map(move |v| {
            if !v.is_empty() && v.iter().all(|&c| is_token(c)) {
                Ok(v)
            } else {
                Err(self.bad(name, v))
            }
        })
    }

    pub fn proxy_require(&self) -> impl Iterator<Item = Result<&[u8], Error>> + '_ {
        self.option_tags(HeaderName::ProxyRequire)
    }

    pub fn require(&self) -> impl Iterator<Item = Result<&[u8], Error>> + '_ {
        self.option_tags(HeaderName::Require)
    }

    pub fn body(&self) -> &[u8] {
        self.at(self.body)
    }

    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body.range())
    }

    /// The checks a proxy makes before it forwards: mandatory headers
    /// present and single, every header it reads well formed, CSeq method
    /// equal to the request method, the Request-URI parseable and free of
    /// headers. The first fault is returned; missing headers are all named.
    pub fn validate(&self) -> Result<(), Error> {
        let mut seen = HeaderSet::default();
        for h in self.head.headers.iter() {
            let v = self.at(h.value);
            let single = matches!(
                h.name,
                HeaderName::CallId
                    | HeaderName::CSeq
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::MaxForwards
            );
            if single {
                if seen.contains(h.name) {
                    return err(ErrorKind::Duplicate(h.name), h.line.start as usize);
                }
                seen.insert(h.name);
            }
            let ok = match h.name {
                HeaderName::Via => {
                    seen.insert(HeaderName::Via);
                    CommaSplit::new(v).all(|x| Via::parse(x).is_some())
                }
                HeaderName::CallId => !v.is_empty() && !v.iter().any(|&c| is_ws(c)),
                HeaderName::CSeq => CSeq::parse(v).is_some(),
                HeaderName::From | HeaderName::To => full_name_addr(v),
                HeaderName::MaxForwards => parse_decimal(v, 255).is_some(),
                HeaderName::Route | HeaderName::RecordRoute | HeaderName::Path => {
                    CommaSplit::new(v).all(full_name_addr)
                }
                HeaderName::Contact => v == b"*" || CommaSplit::new(v).all(full_name_addr),
                HeaderName::ProxyRequire | HeaderName::Require => {
                    CommaSplit::new(v).all(|x| !x.is_empty() && x.iter().all(|&c| is_token(c)))
                }
                _ => true,
            };
            if !ok {
                return err(ErrorKind::BadValue(h.name), h.value.start as usize);
            }
        }
        let mut missing = HeaderSet::default();
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            if !seen.contains(name) {
                missing.insert(name);
            }
        }
        if !missing.is_empty() {
            return err(ErrorKind::Missing(missing), self.head.headers_end as usize);
        }
        if let StartLine::Request {
            method_span, uri, ..
        } = self.head.start
        {
            let raw = self.at(uri);
            let parsed = Uri::parse(raw)
                .map_err(|_| Error::new(ErrorKind::BadRequestUri, uri.start as usize))?;
            // Headers are never allowed in a Request-URI (RFC 3261 19.1.1).
            if parsed.headers.is_some() && matches!(parsed.scheme, Scheme::Sip | Scheme::Sips) {
                return err(ErrorKind::BadRequestUri, uri.start as usize);
            }
            let cseq = self.cseq()?;
            if cseq.method_raw != self.at(method_span) {
                let v = self.required(HeaderName::CSeq)?;
                return err(ErrorKind::CSeqMethodMismatch, self.offset_of(v));
            }
        }
        Ok(())
    }

    /// The raw value span of a header, for the editor.
    pub(crate) fn entries(&self) -> &[HeaderEntry] {
        &self.head.headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@198.51.100.21 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@198.51.100.2>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn request_fields() {
        let m = Message::parse(Bytes::from_static(INVITE)).unwrap();
        m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:bob@198.51.100.21"[..]));
        assert_eq!(m.call_id().unwrap(), b"a84b4c76e66710@pc33.example.com");
        assert_eq!(m.cseq().unwrap().seq, 314159);
        assert_eq!(m.from().unwrap().tag(), Some(&b"1928301774"[..]));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(
            m.top_via().unwrap().branch(),
            Some(&b"z9hG4bK776asdhds"[..])
        );
        assert_eq!(m.body(), b"v=0\n");
        assert_eq!(m.header_count(), 9);
    }

    #[test]
    fn datagram_framing() {
        let mut extra = INVITE.to_vec();
        extra.extend_from_slice(b"trailing junk");
        let m = Message::parse(Bytes::from(extra)).unwrap();
        assert_eq!(m.body(), b"v=0\n");
        assert_eq!(m.as_bytes(), INVITE);
        let short = &INVITE[..INVITE.len() - 2];
        let e = Message::parse(Bytes::copy_from_slice(short)).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::ContentLengthExceedsData);
    }

    #[test]
    fn limits_are_typed_errors() {
        let l = Limits {
            max_message_size: 100,
            ..Limits::default()
        };
        let e = Message::parse_datagram(Bytes::from_static(INVITE), &l).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::TooLarge { limit: 100 });
        let l = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let e = Message::parse_datagram(Bytes::from_static(INVITE), &l).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::TooManyHeaders { limit: 3 });
        let l = Limits {
            max_line_length: 30,
            ..Limits::default()
        };
        let e = Message::parse_datagram(Bytes::from_static(INVITE), &l).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::LineTooLong { .. }));
    }

    #[test]
    fn responses() {
        let m = Message::parse(Bytes::from_static(
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some(&b"Ringing"[..]));
        assert!(Message::parse(Bytes::from_static(b"SIP/2.0 99 X\r\n\r\n")).is_err());
        assert!(Message::parse(Bytes::from_static(b"SIP/2.0 700 X\r\n\r\n")).is_err());
    }

    #[test]
    fn headers_past_the_first_index_are_found() {
        let mut m = b"OPTIONS sip:h SIP/2.0\r\n".to_vec();
        for n in 0..300 {
            match n {
                10 | 290 => m.extend_from_slice(format!("To: <sip:t{n}@h>\r\n").as_bytes()),
                280 => m.extend_from_slice(b"Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"),
                _ => m.extend_from_slice(format!("X-{n}: {n}\r\n").as_bytes()),
            }
        }
        m.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let l = Limits {
            max_headers: 400,
            ..Limits::default()
        };
        let m = Message::parse_datagram(Bytes::from(m), &l).unwrap();
        assert_eq!(m.header_count(), 301);
        assert_eq!(m.header(HeaderName::To), Some(&b"<sip:t10@h>"[..]));
        assert!(m.header(HeaderName::Via).is_some());
        assert_eq!(m.content_length(), Some(0));
        assert_eq!(m.header(HeaderName::From), None);
    }

    #[test]
    fn content_length_zero_as_parse_decimal_reads_it() {
        for (cl, want) in [
            ("0", Ok(Some(0))),
            ("00", Ok(Some(0))),
            ("0 ", Ok(Some(0))),
            ("0x", Err(())),
            ("01", Ok(Some(1))),
            ("-0", Err(())),
        ] {
            let m = format!("BYE sip:a@h SIP/2.0\r\nContent-Length: {cl}\r\n\r\nx");
            let got = Message::parse(Bytes::from(m)).map(|m| m.content_length());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{cl}"),
                (Err(_), Err(())) => {}
                (g, w) => panic!("{cl}: {g:?} {w:?}"),
            }
        }
    }

    #[test]
    fn max_forwards_as_parse_decimal_reads_it() {
        for mf in [
            "70", "07", "00", "99", "7", "255", "256", "7a", "a7", "0070", "7 0",
        ] {
            let m = format!("BYE sip:a@h SIP/2.0\r\nMax-Forwards: {mf}\r\n\r\n");
            let m = Message::parse(Bytes::from(m)).unwrap();
            let want = parse_decimal(mf.as_bytes(), 255).map(|n| n as u8);
            assert_eq!(m.max_forwards().ok().flatten(), want, "{mf}");
            assert_eq!(m.max_forwards().is_ok(), want.is_some(), "{mf}");
        }
    }

    #[test]
    fn a_recycled_index_parses_as_a_new_one() {
        let mut many = b"OPTIONS sip:h SIP/2.0\r\n".to_vec();
        for n in 0..40 {
            many.extend_from_slice(format!("X-{n}: {n}\r\n").as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let inputs: Vec<Bytes> = vec![
            Bytes::from(many),
            Bytes::from_static(INVITE),
            Bytes::copy_from_slice(&INVITE[..INVITE.len() / 2]),
            Bytes::from_static(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h\r\n\r\n"),
            Bytes::from_static(b"BYE sip:a@h SIP/2.0\r\nTo: <sip:a@h>\r\nBad Line\r\n\r\n"),
            Bytes::from_static(INVITE),
        ];
        let mut spare = HeaderIndex::default();
        for round in 0..2 {
            for data in &inputs {
                let fresh = Message::parse(data.clone());
                let reused =
                    Message::parse_datagram_in(data.clone(), &Limits::default(), &mut spare);
                match (fresh, reused) {
                    (Ok(a), Ok(b)) => {
                        assert!(a.header_lines().eq(b.header_lines()), "{round} {data:?}");
                        assert_eq!(a.body(), b.body());
                        assert_eq!(a.header(HeaderName::To), b.header(HeaderName::To));
                        b.recycle(&mut spare);
                    }
                    (Err(a), Err((b, back))) => {
                        assert_eq!(a.kind(), b.kind(), "{data:?}");
                        assert_eq!(&back, data, "the datagram comes back whole");
                    }
                    (a, b) => panic!("{data:?}: {a:?} {b:?}"),
                }
            }
        }
    }

    #[test]
    fn truncated_inputs_never_panic() {
        for n in 0..INVITE.len() {
            let _ = Message::parse(Bytes::copy_from_slice(&INVITE[..n]));
        }
    }
}
