//! Parse-and-locate and forwarding benchmarks, trunkvip-sip against rsip.
//!
//! `cargo bench -p trunkvip-sip --bench parse`; `benches/report.py` turns
//! the criterion estimates into the table of BENCHMARKS.md.
//!
//! Both parsers do the same work per iteration: parse the message from a
//! `Bytes` (a refcount bump, as a receive path hands it over), then locate
//! what a proxy reads for every message: the top Via branch, Call-ID, CSeq,
//! From tag, To tag, Max-Forwards and Content-Length. rsip parses its typed
//! headers on demand too (`typed()`, `tag()`, `num()`), so each side pays
//! for exactly these fields. Before measuring, both are checked to find the
//! same values.

use std::fmt::Write as _;
use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use rsip::prelude::*;
use trunkvip_sip::{Editor, Message};

/// An INVITE as a carrier SBC sends it (941 bytes, 301 of them SDP).
const INVITE: &str = concat!(
    "INVITE sip:+15559870002@trunk.example.com:5060;user=phone SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bK-524287-1---8f3a2b1c9d4e5f60;rport\r\n",
    "Max-Forwards: 70\r\n",
    "From: \"Alice Carrier\" <sip:+15551230001@carrier.example.net;user=phone>;tag=8c3f2a91\r\n",
    "To: <sip:+15559870002@trunk.example.com;user=phone>\r\n",
    "Call-ID: 5f2c1e0a9b7d4e3f8a6b2c1d0e9f8a7b@198.51.100.2\r\n",
    "CSeq: 1 INVITE\r\n",
    "Contact: <sip:+15551230001@198.51.100.2:5060;transport=udp>\r\n",
    "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY\r\n",
    "Supported: timer, 100rel, replaces\r\n",
    "User-Agent: CarrierSBC/7.2.1\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 301\r\n",
    "\r\n",
    "v=0\r\n",
    "o=CarrierSBC 1732505423 1732505423 IN IP4 198.51.100.2\r\n",
    "s=SBC Call\r\n",
    "c=IN IP4 198.51.100.2\r\n",
    "t=0 0\r\n",
    "m=audio 31234 RTP/AVP 0 8 18 101\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:18 G729/8000\r\n",
    "a=fmtp:18 annexb=no\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
    "a=sendrecv\r\n",
);

/// A 200 OK to a BYE as it comes back through the proxy (422 bytes).
const OK200: &str = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK7e1d0c5b4a39;rport=5060\r\n",
    "Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bK-524287-1---0d9c8b7a6f5e4d3c;rport=5060\r\n",
    "From: \"Alice Carrier\" <sip:+15551230001@carrier.example.net>;tag=8c3f2a91\r\n",
    "To: <sip:+15559870002@trunk.example.com>;tag=as5e1f0c2d\r\n",
    "Call-ID: 5f2c1e0a9b7d4e3f8a6b2c1d0e9f8a7b@198.51.100.2\r\n",
    "CSeq: 2 BYE\r\n",
    "Server: TrunkPBX/3.4\r\n",
    "Content-Length: 0\r\n",
    "\r\n",
);

const OUR_VIA: &[u8] = b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK7e1d0c5b4a39;rport";
const OUR_RR: &[u8] = b"<sip:192.0.2.10;lr>";

/// What both parsers locate, as owned values for the cross-check.
#[derive(Debug, PartialEq, Eq)]
struct Located {
    branch: String,
    call_id: String,
    cseq: u32,
    from_tag: Option<String>,
    to_tag: Option<String>,
    max_forwards: Option<u32>,
    content_length: Option<u32>,
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// --- trunkvip-sip ---------------------------------------------------------

/// Parse and locate; returns a digest so nothing is optimised away.
fn trunkvip_parse_locate(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("parses");
    let via = m.top_via().expect("via");
    let branch = via.branch().expect("branch");
    let call_id = m.call_id().expect("call-id");
    let cseq = m.cseq().expect("cseq");
    let from = m.from().expect("from");
    let to = m.to().expect("to");
    let max_forwards = m.max_forwards().expect("max-forwards");
    let content_length = m.content_length();
    black_box((
        branch,
        call_id,
        cseq.seq,
        cseq.method,
        from.tag(),
        to.tag(),
        max_forwards,
        content_length,
    ));
    branch.len() + call_id.len()
}

fn trunkvip_located(buf: &Bytes) -> Located {
    let m = Message::parse(buf.clone()).unwrap();
    Located {
        branch: utf8(m.top_via().unwrap().branch().unwrap()),
        call_id: utf8(m.call_id().unwrap()),
        cseq: m.cseq().unwrap().seq,
        from_tag: m.from().unwrap().tag().map(utf8),
        to_tag: m.to().unwrap().tag().map(utf8),
        max_forwards: m.max_forwards().unwrap().map(u32::from),
        content_length: m.content_length().map(|n| n as u32),
    }
}

fn trunkvip_forward(buf: &Bytes, out: &mut BytesMut) {
    let m = Message::parse(buf.clone()).expect("parses");
    let max_forwards = m.max_forwards().expect("max-forwards").unwrap_or(70);
    let mut e = Editor::new(&m);
    e.push_via(OUR_VIA);
    e.insert_record_route(OUR_RR);
    e.set_max_forwards(max_forwards.saturating_sub(1));
    out.clear();
    e.write_to(out);
}

// --- rsip -----------------------------------------------------------------

fn rsip_content_length(m: &rsip::SipMessage) -> Option<u32> {
    m.headers().iter().find_map(|h| match h {
        rsip::Header::ContentLength(cl) => cl.length().ok(),
        _ => None,
    })
}

fn rsip_parse_locate(buf: &Bytes) -> usize {
    let m = rsip::SipMessage::try_from(buf.clone()).expect("parses");
    let via = m.via_header().expect("via").typed().expect("typed via");
    let branch = via.branch().expect("branch").to_string();
    let call_id = m.call_id_header().expect("call-id").value();
    let cseq = m.cseq_header().expect("cseq").typed().expect("typed cseq");
    let from_tag = m.from_header().expect("from").tag().expect("from tag");
    let to_tag = m.to_header().expect("to").tag().expect("to tag");
    let max_forwards = m.max_forwards_header().ok().map(|h| h.num().expect("num"));
    let content_length = rsip_content_length(&m);
    black_box((
        &branch,
        call_id,
        cseq.seq,
        &cseq.method,
        &from_tag,
        &to_tag,
        max_forwards,
        content_length,
    ));
    branch.len() + call_id.len()
}

fn rsip_located(buf: &Bytes) -> Located {
    let m = rsip::SipMessage::try_from(buf.clone()).unwrap();
    let via = m.via_header().unwrap().typed().unwrap();
    Located {
        branch: via.branch().unwrap().to_string(),
        call_id: m.call_id_header().unwrap().value().to_string(),
        cseq: m.cseq_header().unwrap().typed().unwrap().seq,
        from_tag: m
            .from_header()
            .unwrap()
            .tag()
            .unwrap()
            .map(|t| t.to_string()),
        to_tag: m.to_header().unwrap().tag().unwrap().map(|t| t.to_string()),
        max_forwards: m.max_forwards_header().ok().map(|h| h.num().unwrap()),
        content_length: rsip_content_length(&m),
    }
}

fn rsip_forward(buf: &Bytes, out: &mut BytesMut) {
    let mut m = rsip::SipMessage::try_from(buf.clone()).expect("parses");
    let max_forwards = m
        .max_forwards_header()
        .map(|h| h.num().expect("num"))
        .unwrap_or(70);
    let via = rsip::Header::Via(rsip::headers::Via::new(
        std::str::from_utf8(OUR_VIA).unwrap(),
    ));
    let rr = rsip::Header::RecordRoute(rsip::headers::RecordRoute::new(
        std::str::from_utf8(OUR_RR).unwrap(),
    ));
    let headers = m.headers_mut();
    let mut list: Vec<rsip::Header> = std::mem::take(headers).into();
    let first_via = list
        .iter()
        .position(|h| matches!(h, rsip::Header::Via(_)))
        .unwrap_or(0);
    list.insert(first_via, via);
    let mut replaced = false;
    for h in list.iter_mut() {
        if let rsip::Header::MaxForwards(mf) = h {
            *mf = rsip::headers::MaxForwards::from(max_forwards.saturating_sub(1));
            replaced = true;
        }
    }
    if !replaced {
        list.push(rsip::headers::MaxForwards::from(max_forwards.saturating_sub(1)).into());
    }
    let first_rr = list
        .iter()
        .position(|h| matches!(h, rsip::Header::RecordRoute(_)))
        .unwrap_or(list.len());
    list.insert(first_rr, rr);
    *headers = list.into();
    out.clear();
    write!(out, "{m}").expect("fmt");
}

// --- the benchmarks -------------------------------------------------------

fn cross_check() {
    for msg in [INVITE, OK200] {
        let buf = Bytes::from_static(msg.as_bytes());
        let ours = trunkvip_located(&buf);
        let theirs = rsip_located(&buf);
        assert_eq!(ours, theirs, "the parsers disagree on\n{msg}");
    }
    assert_eq!(INVITE.len(), 941);
    assert_eq!(OK200.len(), 422);
    // Both forwarded INVITEs carry the edits and parse again.
    let buf = Bytes::from_static(INVITE.as_bytes());
    let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
    trunkvip_forward(&buf, &mut a);
    rsip_forward(&buf, &mut b);
    for out in [a.freeze(), b.freeze()] {
        let m = Message::parse(out).expect("forwarded INVITE parses");
        m.validate().expect("forwarded INVITE validates");
        assert_eq!(m.top_via().unwrap().raw, OUR_VIA);
        assert_eq!(m.vias().count(), 2);
        assert_eq!(m.max_forwards().unwrap(), Some(69));
        assert_eq!(m.record_routes().next().unwrap().unwrap().raw, OUR_RR);
        assert_eq!(m.body().len(), 301);
    }
}

fn benches(c: &mut Criterion) {
    cross_check();
    for (name, msg) in [("invite", INVITE), ("200ok", OK200)] {
        let buf = Bytes::from_static(msg.as_bytes());
        let mut g = c.benchmark_group(format!("parse_locate/{name}"));
        g.bench_function("trunkvip", |b| {
            b.iter(|| trunkvip_parse_locate(black_box(&buf)))
        });
        g.bench_function("rsip", |b| b.iter(|| rsip_parse_locate(black_box(&buf))));
        g.finish();
    }
    let buf = Bytes::from_static(INVITE.as_bytes());
    let mut out = BytesMut::with_capacity(2048);
    let mut g = c.benchmark_group("edit/forward_invite");
    g.bench_function("trunkvip", |b| {
        b.iter(|| {
            trunkvip_forward(black_box(&buf), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("rsip", |b| {
        b.iter(|| {
            rsip_forward(black_box(&buf), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
