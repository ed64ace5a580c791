//! The messages and the trunkvip side of the `parse` bench, shared with
//! `examples/icount.rs` (instruction counts under callgrind) so both
//! measure the same code.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use trunkvip_sip::{Editor, Message};

/// An INVITE as a carrier SBC sends it (941 bytes, 301 of them SDP).
pub const INVITE: &str = concat!(
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
pub const OK200: &str = concat!(
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

pub const OUR_VIA: &[u8] = b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK7e1d0c5b4a39;rport";
pub const OUR_RR: &[u8] = b"<sip:192.0.2.10;lr>";

/// Parse and locate; returns a digest so nothing is optimised away.
pub fn trunkvip_parse_locate(buf: &Bytes) -> usize {
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

pub fn trunkvip_forward(buf: &Bytes, out: &mut BytesMut) {
    let m = Message::parse(buf.clone()).expect("parses");
    let max_forwards = m.max_forwards().expect("max-forwards").unwrap_or(70);
    let mut e = Editor::new(&m);
    e.push_via(OUR_VIA);
    e.insert_record_route(OUR_RR);
    e.set_max_forwards(max_forwards.saturating_sub(1));
    out.clear();
    e.write_to(out);
}
