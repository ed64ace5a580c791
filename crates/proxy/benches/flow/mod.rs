//! One complete call through the core, as the benchmarks drive it: the
//! carrier's and the Edge's messages are built outside the measured calls.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkvip_proxy::{CarrierTarget, Core, EdgeConfig, Incoming, ProxyConfig, Transmit, Transport};
use trunkvip_sip::build::response_to;
use trunkvip_sip::{HeaderName, Message};

pub const CARRIER: &str = "198.51.100.2:5060";

pub fn config() -> ProxyConfig {
    let mut c = ProxyConfig::new(
        vec![(Transport::Udp, "198.51.100.10:5060".parse().unwrap())],
        "198.51.100.11".parse().unwrap(),
    );
    c.edges = (0..2)
        .map(|n| EdgeConfig {
            name: format!("EDGE-PROD-0{}", n + 1),
            uri: format!("sip:198.51.100.{}:5060", 21 + n),
            address: format!("198.51.100.{}:5060", 21 + n).parse().unwrap(),
            transport: Transport::Udp,
            priority: n as u8 + 1,
            weight: 1,
        })
        .collect();
    c.carriers = vec![CarrierTarget {
        uri: format!("sip:{CARRIER}"),
        address: CARRIER.parse().unwrap(),
        transport: Transport::Udp,
    }];
    c.health_probing = false;
    c
}

/// A carrier INVITE of about 800 bytes with SDP.
pub fn invite(n: u64) -> Bytes {
    let sdp = "v=0\r\no=carrier 1234567890 1234567890 IN IP4 198.51.100.2\r\ns=call\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";
    Bytes::from(format!(
        "INVITE sip:+15551230000@198.51.100.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bK-{n:016x};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Carrier\" <sip:+15557650000@198.51.100.2>;tag={n:x}-c\r\n\
To: <sip:+15551230000@198.51.100.10>\r\n\
Call-ID: {n:016x}-call@198.51.100.2\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+15557650000@198.51.100.2:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO\r\n\
Supported: timer, 100rel\r\n\
Session-Expires: 1800\r\n\
User-Agent: CarrierSBC/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
}

pub fn in_dialog(method: &str, n: u64, cseq: u32, to_tag: &str) -> Bytes {
    Bytes::from(format!(
        "{method} sip:edge@198.51.100.21:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bK-{n:016x}-{method};rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:198.51.100.10:5060;transport=udp;lr;tve=EDGE-PROD-01>\r\n\
From: \"Carrier\" <sip:+15557650000@198.51.100.2>;tag={n:x}-c\r\n\
To: <sip:+15551230000@198.51.100.10>;tag={to_tag}\r\n\
Call-ID: {n:016x}-call@198.51.100.2\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n"
    ))
}

pub fn reply(req: &Message, code: u16, reason: &str, tag: &str) -> Bytes {
    let mut b = response_to(req, code, reason, (code > 100).then_some(tag.as_bytes()));
    b.copy_from(req, HeaderName::RecordRoute);
    if code == 200 {
        b.push("Contact", b"<sip:edge@198.51.100.21:5060>");
    }
    b.finish()
}

/// Times only what the core does.
pub struct Driver {
    pub core: Core,
    pub now: Instant,
    pub spent: Duration,
    out: Vec<Transmit>,
}

impl Driver {
    pub fn new() -> Driver {
        let now = Instant::now();
        Driver {
            core: Core::new(config(), now).unwrap(),
            now,
            spent: Duration::ZERO,
            out: Vec::with_capacity(8),
        }
    }

    /// What the core sent for `data`. The list is kept and reused, as the
    /// daemon sends each transmit and keeps no list: a fresh vector per
    /// message would time the harness's allocator, not the core.
    pub fn deliver(&mut self, from: SocketAddr, data: Bytes) -> &[Transmit] {
        let t = Instant::now();
        // The last message's transmits end here, as they would once sent.
        self.out.clear();
        self.core.handle(self.now, Incoming::udp(from), data);
        while let Some(x) = self.core.poll_transmit() {
            self.out.push(x);
        }
        while self.core.poll_event().is_some() {}
        self.spent += t.elapsed();
        &self.out
    }

    pub fn timers(&mut self) {
        let t = Instant::now();
        while let Some(due) = self.core.poll_timeout() {
            if due > self.now {
                break;
            }
            self.core.handle_timeout(self.now);
        }
        while self.core.poll_transmit().is_some() {}
        self.spent += t.elapsed();
    }

    /// INVITE, 100, 180, 200, ACK; returns the forwarded INVITE.
    pub fn setup(&mut self, n: u64) -> Message {
        let carrier: SocketAddr = CARRIER.parse().unwrap();
        let edge: SocketAddr = "198.51.100.21:5060".parse().unwrap();
        let out = self.deliver(carrier, invite(n));
        let fwd = Message::parse(out[1].payload.clone()).unwrap();
        let (r100, r180, r200) = (
            reply(&fwd, 100, "Trying", "e"),
            reply(&fwd, 180, "Ringing", "e"),
            reply(&fwd, 200, "OK", "e"),
        );
        self.deliver(edge, r100);
        self.deliver(edge, r180);
        self.deliver(edge, r200);
        self.deliver(carrier, in_dialog("ACK", n, 1, "e"));
        fwd
    }

    /// BYE and its 200.
    pub fn teardown(&mut self, n: u64) {
        let carrier: SocketAddr = CARRIER.parse().unwrap();
        let edge: SocketAddr = "198.51.100.21:5060".parse().unwrap();
        let out = self.deliver(carrier, in_dialog("BYE", n, 2, "e"));
        let bye = Message::parse(out[0].payload.clone()).unwrap();
        let ok = reply(&bye, 200, "OK", "e");
        self.deliver(edge, ok);
    }
}
