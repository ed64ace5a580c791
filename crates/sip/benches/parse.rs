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
use trunkvip_sip::Message;

mod common;
use common::{trunkvip_forward, trunkvip_parse_locate, INVITE, OK200, OUR_RR, OUR_VIA};

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
