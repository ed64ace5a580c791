//! Inputs that once broke the parser or the editor, found by the fuzz
//! targets (crates/sip/fuzz) and the property tests (tests/roundtrip.rs).

use std::net::IpAddr;

use bytes::Bytes;
use trunkvip_sip::{Editor, Message};

/// libFuzzer, datagram target (minimized): a top Via that already holds a
/// `received` (here without value) got a second one appended, and the
/// sender's came first, so responses would have followed it.
#[test]
fn set_top_via_received_replaces_the_senders_received() {
    let input = b"INVITE s:e SIP/2.0\r\nT:<s:t>\r\nF:s:a\r\nCall-ID:r\r\nCSeq:0 INVITE\r\nV:S/2/T s;received\r\n\r\n";
    let m = Message::parse(Bytes::from_static(input)).unwrap();
    m.validate().unwrap();
    let mut e = Editor::new(&m);
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    e.set_top_via_received(Some(ip), None);
    let f = Message::parse(e.to_bytes()).unwrap();
    f.validate().unwrap();
    let via = f.top_via().unwrap();
    assert_eq!(via.raw, b"S/2/T s;received=198.51.100.7");
    assert_eq!(via.received(), Some(&b"198.51.100.7"[..]));

    // The same with a forged address, and with IPv6.
    let input = b"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1;received=203.0.113.66;rport\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let m = Message::parse(Bytes::from_static(input)).unwrap();
    let mut e = Editor::new(&m);
    e.set_top_via_received(Some("2001:db8::7".parse().unwrap()), Some(5062));
    let f = Message::parse(e.to_bytes()).unwrap();
    let via = f.top_via().unwrap();
    assert_eq!(
        via.raw,
        b"SIP/2.0/UDP h;branch=z9hG4bK1;received=[2001:db8::7];rport=5062"
    );
}

/// proptest, generated_messages_read_back: an addr-spec Contact whose
/// quoted parameter holds `<` was taken for a display name and refused.
#[test]
fn addr_spec_with_angle_brackets_in_a_quoted_param() {
    let input = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.4;branch=z9hG4bKr\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: sip:a@192.0.2.4;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\";expires=600, <sip:b@192.0.2.5>\r\nContent-Length: 0\r\n\r\n";
    let m = Message::parse(Bytes::from_static(input)).unwrap();
    m.validate().unwrap();
    let contacts: Vec<_> = m.contacts().map(|c| c.unwrap().unwrap()).collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].uri, b"sip:a@192.0.2.4");
    assert!(!contacts[0].bracketed);
    assert_eq!(
        contacts[0].params.get(b"+sip.instance"),
        Some(Some(
            &b"\"<urn:uuid:00000000-0000-4000-8000-000000000001>\""[..]
        ))
    );
    assert_eq!(contacts[0].params.get(b"expires"), Some(Some(&b"600"[..])));
    assert_eq!(contacts[1].uri, b"sip:b@192.0.2.5");
}
