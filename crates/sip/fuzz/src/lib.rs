//! What the fuzz targets do with one input, shared with the property tests
//! (crates/sip/tests/roundtrip.rs includes this file as a module).
//!
//! Besides "never panics", the checks here hold the parser to what it
//! promises: a message that `validate()` accepts has every typed accessor
//! succeed, its forwarded form (after the edits a proxy makes) parses and
//! validates again, and a message framed by the stream decoder is the same
//! message when parsed as a datagram.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use trunkvip_sip::{Frame, HeaderName, Limits, Message, NameAddr, Params, StreamDecoder, Uri, Via};

/// Limits far above anything an edit adds, for re-parsing edited output
/// (an input just under the default limits may grow past them).
pub fn relaxed_limits() -> Limits {
    Limits {
        max_message_size: 1 << 22,
        max_headers: 1 << 12,
        max_line_length: 1 << 22,
    }
}

pub fn exercise_params(p: &Params<'_>) {
    black_box(p.as_bytes());
    black_box(p.is_empty());
    for param in p.iter() {
        black_box(param);
        black_box(p.get(param.name));
    }
    black_box(p.contains(b"lr"));
}

pub fn exercise_uri(u: &Uri<'_>) {
    black_box(u.is_sip());
    black_box(u.transport());
    black_box(u.maddr());
    black_box(u.has_lr());
    black_box(u.param(b"user"));
    if let Some(h) = u.host {
        black_box(h.ip());
        black_box(h.to_string());
        black_box(h.matches(&h));
    }
    exercise_params(&u.params);
    black_box(u.equivalent(u));
}

pub fn exercise_via(v: &Via<'_>) {
    black_box(v.branch());
    black_box(v.has_rfc3261_branch());
    black_box(v.received());
    black_box(v.rport());
    black_box(v.maddr());
    black_box(v.is_transport("udp"));
    black_box(v.host.ip());
    black_box(v.host.to_string());
    black_box((v.protocol_name, v.protocol_version, v.sent_by, v.port));
    exercise_params(&v.params);
}

/// Returns whether the URI parses (`NameAddr::parse` checks only the
/// structure; `validate` requires the URI too).
pub fn exercise_name_addr(n: &NameAddr<'_>) -> bool {
    black_box((n.display, n.bracketed, n.tag()));
    exercise_params(&n.params);
    match n.parsed_uri() {
        Ok(u) => {
            exercise_uri(&u);
            true
        }
        Err(_) => false,
    }
}

/// Reads everything `m` offers. Returns whether `validate()` accepted it;
/// when it did, every accessor that validation covers must succeed.
pub fn exercise(m: &Message) -> bool {
    let valid = match m.validate() {
        Ok(()) => true,
        Err(e) => {
            black_box((e.status(), e.reason_phrase(), e.to_string(), e.offset()));
            false
        }
    };
    black_box((m.is_request(), m.method(), m.method_bytes(), m.status()));
    black_box((m.reason(), m.request_uri_bytes(), m.header_count()));
    let ruri = m.request_uri();
    if let Some(Ok(u)) = &ruri {
        exercise_uri(u);
    }
    for (name, value) in m.headers() {
        black_box(value);
        black_box(m.header_named(name));
        assert!(m.header_named(name).is_some());
    }
    for name in HeaderName::KNOWN.into_iter().chain([HeaderName::Other]) {
        black_box(m.header(name));
        for v in m.header_values(name) {
            black_box(v);
        }
    }
    let vias: Vec<_> = m.vias().collect();
    for v in vias.iter().flatten() {
        exercise_via(v);
    }
    black_box(m.top_via().is_ok());
    let call_id = m.call_id();
    let cseq = m.cseq();
    let from = m.from();
    let to = m.to();
    let mut uris_ok = true;
    for n in [&from, &to].into_iter().flatten() {
        uris_ok &= exercise_name_addr(n);
    }
    let max_forwards = m.max_forwards();
    black_box((m.content_length(), m.content_type(), &call_id, &cseq));
    let routes: Vec<_> = m.routes().collect();
    let record_routes: Vec<_> = m.record_routes().collect();
    let paths: Vec<_> = m.paths().collect();
    for n in routes.iter().chain(&record_routes).chain(&paths).flatten() {
        uris_ok &= exercise_name_addr(n);
    }
    let contacts: Vec<_> = m.contacts().collect();
    for n in contacts.iter().flatten().flatten() {
        uris_ok &= exercise_name_addr(n);
    }
    let require: Vec<_> = m.require().chain(m.proxy_require()).collect();
    black_box(&require);
    black_box((m.body(), m.body_bytes(), m.as_bytes(), m.to_bytes()));
    assert_eq!(m.to_bytes(), m.as_bytes());
    if let Some(cl) = m.content_length() {
        assert_eq!(m.body().len(), cl);
    }

    if valid {
        assert!(!vias.is_empty(), "validated without Via");
        assert!(vias.iter().all(Result::is_ok), "validated with a bad Via");
        assert!(m.top_via().is_ok());
        assert!(call_id.is_ok() && cseq.is_ok() && from.is_ok() && to.is_ok());
        assert!(max_forwards.is_ok());
        assert!(routes
            .iter()
            .chain(&record_routes)
            .chain(&paths)
            .all(Result::is_ok));
        assert!(contacts.iter().all(Result::is_ok));
        assert!(
            uris_ok,
            "validated with a name-addr whose URI does not parse"
        );
        assert!(require.iter().all(Result::is_ok));
        if m.is_request() {
            assert!(
                matches!(ruri, Some(Ok(_))),
                "validated with a bad Request-URI"
            );
            let cseq = cseq.expect("checked");
            assert_eq!(Some(cseq.method_raw), m.method_bytes());
        }
    }
    valid
}

/// The edits a proxy makes, then a re-parse of the output. When the input
/// validated, the output must parse and validate again (a response whose
/// only Via was popped excepted) with the edits visible.
pub fn edit_round_trip(m: &Message, valid: bool) {
    let mut e = trunkvip_sip::Editor::new(m);
    const VIA: &[u8] = b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKfuzz;rport";
    const RR: &[u8] = b"<sip:192.0.2.10;lr>";
    const RURI: &[u8] = b"sip:fuzz@[2001:db8::10]:5070;transport=tcp";
    let request = m.is_request();
    let popped;
    let mf = m
        .max_forwards()
        .ok()
        .flatten()
        .unwrap_or(71)
        .saturating_sub(1);
    if request {
        e.push_via(VIA);
        e.set_top_via_received(Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))), Some(5062));
        popped = e.pop_route();
        e.insert_record_route(RR);
        e.set_max_forwards(mf);
        e.set_request_uri(RURI);
        e.add_header("X-Fuzz", b"1");
    } else {
        popped = e.pop_via();
    }
    let n = e.len();
    black_box(e.is_empty());
    let out = e.to_bytes();
    assert_eq!(out.len(), n, "Editor::len disagrees with the output");
    let again = Message::parse_datagram(out.clone(), &relaxed_limits());
    if !valid {
        if let Ok(again) = again {
            exercise(&again);
        }
        return;
    }
    let again = again.unwrap_or_else(|e| {
        panic!(
            "edited output of a valid message does not parse: {e}\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(again.body(), m.body());
    let old_vias = m.vias().count();
    if request {
        assert!(popped == (m.routes().count() > 0));
        if let Err(e) = again.validate() {
            panic!(
                "edited output of a valid request does not validate: {e}\n{}",
                String::from_utf8_lossy(&out)
            );
        }
        assert_eq!(again.top_via().unwrap().raw, VIA);
        assert_eq!(again.vias().count(), old_vias + 1);
        let second = again.vias().nth(1).unwrap().unwrap();
        assert_eq!(second.received(), Some(&b"198.51.100.7"[..]));
        assert_eq!(again.record_routes().next().unwrap().unwrap().raw, RR);
        assert_eq!(again.max_forwards().unwrap(), Some(mf));
        assert_eq!(again.request_uri_bytes(), Some(RURI));
        assert_eq!(again.call_id().unwrap(), m.call_id().unwrap());
        assert_eq!(again.cseq().unwrap(), m.cseq().unwrap());
        assert_eq!(again.header_named(b"x-fuzz"), Some(&b"1"[..]));
        let old_routes = m.routes().count();
        assert_eq!(again.routes().count(), old_routes.saturating_sub(1));
    } else {
        assert!(popped);
        assert_eq!(again.vias().count(), old_vias - 1);
        if old_vias > 1 {
            again.validate().unwrap_or_else(|e| {
                panic!(
                    "edited output of a valid response does not validate: {e}\n{}",
                    String::from_utf8_lossy(&out)
                )
            });
        }
    }
    exercise(&again);
}

/// The datagram target: parse, read everything, edit.
pub fn datagram(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(m) = Message::parse(buf.clone()) {
        let valid = exercise(&m);
        edit_round_trip(&m, valid);
    }
    // Tight limits reach the limit checks at every position.
    let tight = Limits {
        max_message_size: 512,
        max_headers: 8,
        max_line_length: 64,
    };
    if let Ok(m) = Message::parse_datagram(buf, &tight) {
        exercise(&m);
    }
    // The free-standing value parsers on the raw input.
    black_box(Uri::parse(data).is_ok());
    black_box(Via::parse(data).is_some());
    black_box(NameAddr::parse(data).is_some());
    black_box(trunkvip_sip::CSeq::parse(data).is_some());
    black_box(trunkvip_sip::parse_host(data).is_some());
}

/// Feeds `data` to a decoder in chunks of the given sizes (cycled; zero
/// counts as one) and handles every frame. Stops at the first error, as a
/// connection would. Returns the frames and whether an error ended it.
pub fn decode_chunked(data: &[u8], sizes: &[usize], limits: Limits) -> (Vec<Frame>, bool) {
    let mut d = StreamDecoder::new(limits);
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < data.len() {
        let size = sizes
            .get(k % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        k += 1;
        let end = (pos + size).min(data.len());
        d.extend_from_slice(&data[pos..end]);
        pos = end;
        loop {
            match d.decode() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    black_box(e.to_string());
                    return (frames, true);
                }
            }
        }
        black_box(d.buffered());
    }
    (frames, false)
}

/// The chunk sizes the stream target uses for `data`: eight sizes of 1 to
/// 97 bytes read from spread-out positions of the input itself, so that
/// the input is fed whole (a seed is a plain message) and a mutation also
/// moves the split points.
pub fn chunk_sizes(data: &[u8]) -> Vec<usize> {
    if data.is_empty() {
        return vec![1];
    }
    (0..8)
        .map(|k| usize::from(data[(k * 131 + 17) % data.len()] % 97) + 1)
        .collect()
}

/// The stream target: the whole input fed in chunks.
pub fn stream(data: &[u8]) {
    let sizes = chunk_sizes(data);
    let tight = Limits {
        max_message_size: 2048,
        max_headers: 16,
        max_line_length: 256,
    };
    for limits in [Limits::default(), tight] {
        let (frames, _) = decode_chunked(data, &sizes, limits);
        for f in &frames {
            if let Frame::Message(m) = f {
                check_stream_message(m, &limits);
            }
        }
    }
    // The whole input in one piece frames the same messages.
    let (one, one_failed) = decode_chunked(data, &[data.len().max(1)], Limits::default());
    let (chunked, chunked_failed) = decode_chunked(data, &sizes, Limits::default());
    assert_eq!(one.len(), chunked.len(), "framing depends on chunking");
    assert_eq!(one_failed, chunked_failed, "framing depends on chunking");
    for (a, b) in one.iter().zip(&chunked) {
        match (a, b) {
            (Frame::Message(a), Frame::Message(b)) => assert_eq!(a.as_bytes(), b.as_bytes()),
            (Frame::Ping, Frame::Ping) | (Frame::Pong, Frame::Pong) => {}
            _ => panic!("framing depends on chunking: {a:?} / {b:?}"),
        }
    }
}

/// A stream-framed message is the datagram parse of its own bytes.
pub fn check_stream_message(m: &Message, limits: &Limits) {
    let valid = exercise(m);
    edit_round_trip(m, valid);
    let d = Message::parse_datagram(m.to_bytes(), limits)
        .expect("a stream-framed message parses as a datagram");
    assert_eq!(d.as_bytes(), m.as_bytes());
    assert_eq!(d.body(), m.body());
    assert!(d.headers().eq(m.headers()));
    assert_eq!(d.validate().is_ok(), valid);
}
