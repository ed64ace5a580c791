//! RFC 4475 torture messages, checked against MANIFEST.tsv.
//!
//! The messages are from RFC 4475 (Sparks et al., "Session Initiation
//! Protocol (SIP) Torture Test Messages", IETF, 2006), kept byte-exact in
//! tests/data/rfc4475 with the manifest of verdicts. Every file of the
//! manifest must be covered here: a valid message's fields are checked by
//! value, an invalid one must give the named error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use trunkvip_sip::{ErrorKind, HeaderName, Host, Message, Method, Scheme, Uri};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/rfc4475")
}

fn load(name: &str) -> Bytes {
    Bytes::from(std::fs::read(dir().join(name)).unwrap())
}

/// Parses and validates: what a proxy does before it routes.
fn check(name: &str) -> Result<Message, ErrorKind> {
    let m = Message::parse(load(name)).map_err(|e| e.kind().clone())?;
    m.validate().map_err(|e| e.kind().clone())?;
    Ok(m)
}

fn ok(name: &str) -> Message {
    check(name).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

fn host(s: &str) -> Host<'_> {
    trunkvip_sip::parse_host(s.as_bytes()).unwrap()
}

fn manifest() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir().join("MANIFEST.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<_> = l.split('\t').collect();
            (f[0].to_string(), f[3].to_string())
        })
        .collect()
}

type Check = fn(&str);

/// One entry per manifest file: the verdict it must get and its check.
fn cases() -> Vec<(&'static str, &'static str, Check)> {
    vec![
        ("wsinv.dat", "valid", |f| {
            let m = ok(f);
            assert_eq!(m.method(), Some(Method::Invite));
            let uri = m.request_uri().unwrap().unwrap();
            assert_eq!(uri.host, Some(host("chair-dnrc.example.com")));
            assert!(uri.params.contains(b"unknownparam"));
            assert_eq!(m.to().unwrap().tag(), Some(&b"1918181833n"[..]));
            assert_eq!(m.to().unwrap().uri, b"sip:vivekg@chair-dnrc.example.com");
            let from = m.from().unwrap();
            assert_eq!(from.tag(), Some(&b"98asjd8"[..]));
            assert_eq!(from.display, Some(&b"\"J Rosenberg \\\\\\\"\""[..]));
            assert_eq!(m.max_forwards().unwrap(), Some(68));
            assert_eq!(m.call_id().unwrap(), b"wsinv.ndaksdj@192.0.2.1");
            let cseq = m.cseq().unwrap();
            assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
            let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
            assert_eq!(vias.len(), 3);
            assert_eq!(
                (vias[0].transport, vias[0].host),
                (&b"UDP"[..], host("192.0.2.2"))
            );
            assert_eq!(vias[0].branch(), Some(&b"390skdjuw"[..]));
            assert_eq!(
                (vias[1].transport, vias[1].host),
                (&b"TCP"[..], host("spindle.example.com"))
            );
            assert_eq!(vias[1].branch(), Some(&b"z9hG4bK9ikj8"[..]));
            assert_eq!(vias[2].host, host("192.168.255.111"));
            assert_eq!(vias[2].branch(), Some(&b"z9hG4bK30239"[..]));
            assert_eq!(m.content_length(), Some(150));
            assert_eq!(m.body().len(), 150);
            let route = m.routes().next().unwrap().unwrap();
            assert_eq!(
                route.uri,
                b"sip:services.example.com;lr;unknownwith=value;unknown-no-value"
            );
            assert!(route.parsed_uri().unwrap().has_lr());
            let c = m.contacts().next().unwrap().unwrap().unwrap();
            assert_eq!(c.display, Some(&b"\"Quoted string \\\"\\\"\""[..]));
            assert_eq!(c.params.get(b"newparam"), Some(Some(&b"newvalue"[..])));
            assert_eq!(c.params.get(b"secondparam"), Some(None));
            assert_eq!(c.params.get(b"q"), Some(Some(&b"0.33"[..])));
            assert_eq!(m.header_named(b"s"), Some(&b""[..]));
            assert_eq!(
                m.header_named(b"newfangledheader"),
                Some(&b"newfangled value\r\n continued newfangled value"[..])
            );
            assert_eq!(
                m.header_named(b"UnknownHeaderWithUnusualValue"),
                Some(&b";;,,;;,;"[..])
            );
            assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
        }),
        ("intmeth.dat", "valid", |f| {
            let m = ok(f);
            assert_eq!(m.method(), Some(Method::Other));
            assert_eq!(
                m.method_bytes(),
                Some(&b"!interesting-Method0123456789_*+`.%indeed'~"[..])
            );
            let uri = m.request_uri().unwrap().unwrap();
            assert_eq!(
                uri.user,
                Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
            );
            assert_eq!(
                uri.password,
                Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
            );
            assert_eq!(uri.host, Some(host("example.com")));
            assert_eq!(
                m.top_via().unwrap().branch(),
                Some(&b"z9hG4bK-.!%66*_+`'~"[..])
            );
            assert_eq!(
                m.to().unwrap().display,
                Some(&b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\""[..])
            );
            assert_eq!(m.from().unwrap().tag(), Some(&b"_token~1'+`*%!-."[..]));
            assert_eq!(
                m.from().unwrap().display,
                Some(&b"token1~` token2'+_ token3*%!.-"[..])
            );
            assert_eq!(
                m.call_id().unwrap(),
                b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
            );
            let cseq = m.cseq().unwrap();
            assert_eq!(cseq.seq, 139122385);
            assert_eq!(cseq.method_raw, m.method_bytes().unwrap());
            assert_eq!(m.max_forwards().unwrap(), Some(255));
        }),
        ("esc01.dat", "valid", |f| {
            let m = ok(f);
            let uri = m.request_uri().unwrap().unwrap();
            assert_eq!(uri.user, Some(&b"sips%3Auser%40example.com"[..]));
            assert_eq!(uri.host, Some(host("example.net")));
            let to = m.to().unwrap().parsed_uri().unwrap();
            assert!(to.equivalent(&Uri::parse(b"sip:user@example.com").unwrap()));
            assert_eq!(m.from().unwrap().uri, b"sip:I%20have%20spaces@example.net");
            assert_eq!(m.call_id().unwrap(), b"esc01.239409asdfakjkn23onasd0-3234");
            assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
            let c = m.contacts().next().unwrap().unwrap().unwrap();
            let cu = c.parsed_uri().unwrap();
            assert!(
                cu.equivalent(
                    &Uri::parse(b"sip:caller@host5.example.net;lr;name=valueA%41").unwrap()
                ) || cu.params.iter().count() == 2
            );
        }),
        ("escnull.dat", "valid", |f| {
            let m = ok(f);
            assert_eq!(
                m.to().unwrap().parsed_uri().unwrap().user,
                Some(&b"null-%00-null"[..])
            );
            assert_eq!(m.contacts().count(), 2);
            let c: Vec<_> = m
                .contacts()
                .map(|c| {
                    c.unwrap()
                        .unwrap()
                        .parsed_uri()
                        .unwrap()
                        .user
                        .unwrap()
                        .to_vec()
                })
                .collect();
            assert_eq!(c, vec![b"%00".to_vec(), b"%00%00".to_vec()]);
            assert_eq!(m.content_length(), Some(0));
        }),
        ("esc02.dat", "valid", |f| {
            let m = ok(f);
            assert_eq!(m.method_bytes(), Some(&b"RE%47IST%45R"[..]));
            assert_eq!(m.method(), Some(Method::Other));
            assert_eq!(m.to().unwrap().display, Some(&b"\"%Z%45\""[..]));
            assert_eq!(
                m.top_via().unwrap().branch(),
                Some(&b"z9hG4bK209%fzsnel234"[..])
            );
            // C%6Fntact is not Contact.
            assert_eq!(m.contacts().count(), 2);
            assert_eq!(
                m.header_named(b"C%6Fntact"),
                Some(&b"<sip:alias2@host2.example.com>"[..])
            );
        }),
        ("lwsdisp.dat", "valid", |f| {
            let m = ok(f);
            let from = m.from().unwrap();
            assert_eq!(from.display, Some(&b"caller"[..]));
            assert_eq!(from.uri, b"sip:caller@example.com");
            assert_eq!(from.tag(), Some(&b"323"[..]));
        }),
        ("longreq.dat", "valid", |f| {
            let m = ok(f);
            let to = m.to().unwrap();
            assert!(to.display.unwrap().len() > 90);
            assert_eq!(m.from().unwrap().tag().unwrap().len(), 155);
            assert!(m
                .from()
                .unwrap()
                .uri
                .starts_with(b"sip:amazinglylongcallername"));
            assert_eq!(m.vias().count(), 34);
            assert_eq!(m.call_id().unwrap().len(), 141);
            assert_eq!(m.body().len(), m.content_length().unwrap());
        }),
        ("dblreq.dat", "valid", |f| {
            let m = ok(f);
            assert_eq!(m.method(), Some(Method::Register));
            assert_eq!(
                m.call_id().unwrap(),
                b"dblreq.0ha0isndaksdj99sdfafnl3lk233412"
            );
            assert_eq!(m.body(), b"");
            assert!(m.as_bytes().len() < load(f).len());
            assert!(m.as_bytes().ends_with(b"Content-Length: 0\r\n\r\n"));
        }),
        ("semiuri.dat", "valid", |f| {
            let m = ok(f);
            let u = m.request_uri().unwrap().unwrap();
            assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
            assert_eq!(u.host, Some(host("example.com")));
            assert!(u.params.is_empty());
            assert_eq!(m.header_values(HeaderName::Other).count(), 1);
            assert!(m
                .header_named(b"Accept")
                .unwrap()
                .ends_with(b"message/sip, message/sipfrag"));
        }),
        ("transports.dat", "valid", |f| {
            let m = ok(f);
            let t: Vec<_> = m.vias().map(|v| v.unwrap().transport.to_vec()).collect();
            assert_eq!(
                t,
                [&b"UDP"[..], b"SCTP", b"TLS", b"UNKNOWN", b"TCP"].map(<[u8]>::to_vec)
            );
            assert_eq!(m.call_id().unwrap(), b"transports.kijh4akdnaqjkwendsasfdj");
        }),
        ("mpart01.dat", "valid", |f| {
            let m = ok(f);
            assert_eq!(m.method(), Some(Method::Message));
            assert_eq!(m.body().len(), m.content_length().unwrap());
            assert!(m.content_type().unwrap().starts_with(b"multipart/mixed"));
            assert_eq!(m.top_via().unwrap().rport(), Some(None));
        }),
        ("unreason.dat", "valid", |f| {
            let m = ok(f);
            assert_eq!(m.status(), Some(200));
            let raw = load(f);
            let first_line = &raw[..raw.iter().position(|&c| c == b'\r').unwrap()];
            assert_eq!(m.reason().unwrap(), &first_line[12..]);
            assert!(std::str::from_utf8(m.reason().unwrap()).is_ok());
        }),
        ("noreason.dat", "valid", |f| {
            let m = ok(f);
            assert_eq!(m.status(), Some(100));
            assert_eq!(m.reason(), Some(&b""[..]));
        }),
        ("badinv01.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadValue(HeaderName::Via));
        }),
        ("clerr.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::ContentLengthExceedsData);
        }),
        ("ncl.dat", "invalid", |f| {
            assert_eq!(
                check(f).unwrap_err(),
                ErrorKind::BadValue(HeaderName::ContentLength)
            );
        }),
        ("scalar02.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadValue(HeaderName::CSeq));
        }),
        ("scalarlg.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadValue(HeaderName::CSeq));
        }),
        ("quotbal.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadValue(HeaderName::To));
        }),
        ("ltgtruri.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadRequestUri);
        }),
        ("lwsruri.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadRequestUri);
        }),
        ("lwsstart.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadRequestUri);
        }),
        // Our choice where RFC 4475 allows either: reject.
        ("trws.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadStartLine);
        }),
        ("escruri.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadRequestUri);
        }),
        // Our choice: Date is not the proxy's business; forward unchanged.
        ("baddate.dat", "invalid", |f| {
            let m = ok(f);
            assert_eq!(
                m.header_named(b"Date"),
                Some(&b"Fri, 01 Jan 2010 16:00:00 EST"[..])
            );
        }),
        // Our choice: Contact is inspected, so the bare addr-spec with `?` is refused.
        ("regbadct.dat", "invalid", |f| {
            assert_eq!(
                check(f).unwrap_err(),
                ErrorKind::BadValue(HeaderName::Contact)
            );
        }),
        ("badaspec.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadValue(HeaderName::To));
        }),
        ("baddn.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadValue(HeaderName::From));
        }),
        ("badvers.dat", "invalid", |f| {
            let e = Message::parse(load(f)).unwrap_err();
            assert_eq!(e.kind(), &ErrorKind::UnsupportedVersion);
            assert_eq!(e.status(), 505);
        }),
        ("mismatch01.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::CSeqMethodMismatch);
        }),
        ("mismatch02.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::CSeqMethodMismatch);
        }),
        ("bigcode.dat", "invalid", |f| {
            assert_eq!(check(f).unwrap_err(), ErrorKind::BadStatusCode);
        }),
        ("badbranch.dat", "valid", |f| {
            let m = ok(f);
            let via = m.top_via().unwrap();
            assert_eq!(via.branch(), Some(&b"z9hG4bK"[..]));
            assert!(!via.has_rfc3261_branch());
        }),
        ("insuf.dat", "semantic", |f| {
            let e = Message::parse(load(f)).unwrap().validate().unwrap_err();
            assert_eq!(e.reason_phrase(), "Bad Request (missing From, To, Call-ID)");
        }),
        ("unkscm.dat", "semantic", |f| {
            let m = ok(f);
            assert_eq!(m.request_uri().unwrap().unwrap().scheme, Scheme::Other);
        }),
        ("novelsc.dat", "semantic", |f| {
            let m = ok(f);
            assert_eq!(m.request_uri().unwrap().unwrap().scheme, Scheme::Other);
        }),
        ("unksm2.dat", "semantic", |f| {
            let m = ok(f);
            assert_eq!(m.to().unwrap().parsed_uri().unwrap().scheme, Scheme::Other);
            assert_eq!(m.from().unwrap().uri, b"http://www.example.com");
            assert_eq!(
                m.contacts().next().unwrap().unwrap().unwrap().uri,
                b"name:John_Smith"
            );
        }),
        ("bext01.dat", "semantic", |f| {
            let m = ok(f);
            let pr: Vec<_> = m.proxy_require().map(|t| t.unwrap().to_vec()).collect();
            assert_eq!(
                pr,
                vec![
                    b"noProxiesSupportThis".to_vec(),
                    b"norDoAnyProxiesSupportThis".to_vec()
                ]
            );
            assert_eq!(m.require().count(), 2);
        }),
        ("invut.dat", "semantic", |f| {
            let m = ok(f);
            assert_eq!(m.content_type(), Some(&b"application/unknownformat"[..]));
            assert_eq!(m.body().len(), 40);
        }),
        ("regaut01.dat", "semantic", |f| {
            let m = ok(f);
            assert_eq!(
                m.header_named(b"authorization"),
                Some(&b"NoOneKnowsThisScheme opaque-data=here"[..])
            );
        }),
        ("multi01.dat", "semantic", |f| {
            assert_eq!(
                check(f).unwrap_err(),
                ErrorKind::Duplicate(HeaderName::CSeq)
            );
        }),
        ("mcl01.dat", "semantic", |f| {
            assert_eq!(
                check(f).unwrap_err(),
                ErrorKind::Duplicate(HeaderName::ContentLength)
            );
        }),
        ("bcast.dat", "semantic", |f| {
            let m = ok(f);
            let next = m.vias().nth(1).unwrap().unwrap();
            assert_eq!(next.host, host("255.255.255.255"));
        }),
        ("zeromf.dat", "semantic", |f| {
            assert_eq!(ok(f).max_forwards().unwrap(), Some(0));
        }),
        ("cparam01.dat", "semantic", |f| {
            let c = ok(f);
            let c = c.contacts().next().unwrap().unwrap().unwrap();
            assert_eq!(c.uri, b"sip:+19725552222@gw1.example.net");
            assert!(c.params.contains(b"unknownparam"));
        }),
        ("cparam02.dat", "semantic", |f| {
            let m = ok(f);
            let c = m.contacts().next().unwrap().unwrap().unwrap();
            assert!(c.params.is_empty());
            assert!(c.parsed_uri().unwrap().params.contains(b"unknownparam"));
        }),
        ("regescrt.dat", "semantic", |f| {
            let m = ok(f);
            let c = m.contacts().next().unwrap().unwrap().unwrap();
            assert_eq!(
                c.parsed_uri().unwrap().headers,
                Some(&b"Route=%3Csip:sip.example.com%3E"[..])
            );
        }),
        ("sdp01.dat", "semantic", |f| {
            let m = ok(f);
            assert_eq!(
                m.header_named(b"Accept"),
                Some(&b"text/nobodyKnowsThis"[..])
            );
        }),
        ("inv2543.dat", "valid", |f| {
            let m = ok(f);
            let via = m.top_via().unwrap();
            assert_eq!(via.branch(), None);
            assert_eq!(via.host, host("iftgw.example.com"));
            assert_eq!(m.max_forwards().unwrap(), None);
            assert_eq!(m.content_length(), None);
            assert!(m.body().starts_with(b"v=0"));
            assert_eq!(m.from().unwrap().tag(), None);
        }),
    ]
}

#[test]
fn every_manifest_file_is_covered_with_its_verdict() {
    let manifest = manifest();
    assert_eq!(manifest.len(), 49);
    let cases = cases();
    let mut covered = BTreeMap::new();
    for (file, verdict, _) in &cases {
        assert_eq!(
            manifest.get(*file).map(String::as_str),
            Some(*verdict),
            "{file}"
        );
        covered.insert(file.to_string(), ());
    }
    let missing: Vec<_> = manifest
        .keys()
        .filter(|k| !covered.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "not covered: {missing:?}");
}

#[test]
fn each_message_gets_its_verdict() {
    let mut failed = vec![];
    for (file, _, check) in cases() {
        if std::panic::catch_unwind(|| check(file)).is_err() {
            failed.push(file);
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn every_file_parses_incrementally_on_a_stream_without_panic() {
    for (file, _, _) in cases() {
        let raw = load(file);
        let mut d = trunkvip_sip::StreamDecoder::new(Default::default());
        for chunk in raw.chunks(7) {
            d.extend_from_slice(chunk);
            while let Ok(Some(_)) = d.decode() {}
        }
    }
}
