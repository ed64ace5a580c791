//! A simulated carrier and simulated Edges around one `Core`, in virtual
//! time: each test reads as a call flow.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkvip_proxy::*;
use trunkvip_sip::build::response_to;
use trunkvip_sip::Message;

pub const VIP: &str = "198.51.100.10:5060";
pub const CARRIER: &str = "198.51.100.2:5060";
pub const HOST: &str = "198.51.100.11";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn edge_addr(n: usize) -> SocketAddr {
    addr(&format!("198.51.100.{}:5060", 21 + n))
}

pub struct Sim {
    pub core: Core,
    pub now: Instant,
    pub start: Instant,
    pub out: Vec<Transmit>,
    pub events: Vec<Event>,
}

pub fn config(priorities: &[u8]) -> ProxyConfig {
    let mut c = ProxyConfig::new(vec![(Transport::Udp, addr(VIP))], HOST.parse().unwrap());
    c.edges = priorities
        .iter()
        .enumerate()
        .map(|(n, p)| EdgeConfig {
            name: format!("EDGE-{}", n + 1),
            uri: format!("sip:{}", edge_addr(n)),
            address: edge_addr(n),
            transport: Transport::Udp,
            priority: *p,
            weight: 1,
        })
        .collect();
    c.carriers = vec![CarrierTarget {
        uri: format!("sip:{CARRIER}"),
        address: addr(CARRIER),
        transport: Transport::Udp,
    }];
    c.instance = 0x51;
    // Call-flow tests drive health by hand; the health tests turn it on.
    c.health_probing = false;
    c
}

impl Sim {
    pub fn new(priorities: &[u8]) -> Sim {
        Sim::with(config(priorities))
    }

    pub fn with(cfg: ProxyConfig) -> Sim {
        let now = Instant::now();
        Sim {
            core: Core::new(cfg, now).unwrap(),
            now,
            start: now,
            out: vec![],
            events: vec![],
        }
    }

    fn collect(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            self.out.push(t);
        }
        while let Some(e) = self.core.poll_event() {
            self.events.push(e);
        }
    }

    pub fn deliver(&mut self, from: SocketAddr, msg: impl AsRef<[u8]>) {
        self.core.handle(
            self.now,
            Incoming::udp(from),
            Bytes::copy_from_slice(msg.as_ref()),
        );
        self.collect();
    }

    pub fn carrier_sends(&mut self, msg: impl AsRef<[u8]>) {
        self.deliver(addr(CARRIER), msg);
    }

    pub fn edge_sends(&mut self, n: usize, msg: impl AsRef<[u8]>) {
        self.deliver(edge_addr(n), msg);
    }

    /// Runs every timer due within `d`, in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.core.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.core.handle_timeout(self.now);
            self.collect();
        }
        self.now = end;
    }

    /// Takes everything sent so far.
    pub fn take(&mut self) -> Vec<(SocketAddr, Message)> {
        self.out
            .drain(..)
            .map(|t| {
                (
                    t.destination,
                    Message::parse(t.payload).expect("we send valid SIP"),
                )
            })
            .collect()
    }

    /// Takes what was sent to `to`, asserting nothing went elsewhere.
    pub fn sent_to(&mut self, to: SocketAddr) -> Vec<Message> {
        let all = self.take();
        for (d, m) in &all {
            assert_eq!(
                *d,
                to,
                "unexpected message to {d}: {}",
                String::from_utf8_lossy(m.as_bytes())
            );
        }
        all.into_iter().map(|x| x.1).collect()
    }

    /// The one message sent, to `to`.
    pub fn one_to(&mut self, to: SocketAddr) -> Message {
        let mut v = self.sent_to(to);
        assert_eq!(
            v.len(),
            1,
            "expected one message to {to}, got {}: {:?}",
            v.len(),
            v.iter().map(first_line).collect::<Vec<_>>()
        );
        v.pop().unwrap()
    }

    pub fn nothing_sent(&mut self) {
        let all = self.take();
        assert!(
            all.is_empty(),
            "unexpected: {:?}",
            all.iter()
                .map(|x| (x.0, first_line(&x.1)))
                .collect::<Vec<_>>()
        );
    }

    pub fn edge_healthy(&self, n: usize) -> bool {
        self.core.status()[n].healthy
    }
}

pub fn first_line(m: &Message) -> String {
    let b = m.as_bytes();
    let end = b.iter().position(|&c| c == b'\r').unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

pub fn invite(call_id: &str, branch: &str) -> String {
    request(
        "INVITE",
        "sip:+15551234@198.51.100.10",
        call_id,
        branch,
        1,
        None,
        "",
    )
}

/// A request as a carrier (or Edge) writes it.
pub fn request(
    method: &str,
    ruri: &str,
    call_id: &str,
    branch: &str,
    cseq: u32,
    to_tag: Option<&str>,
    extra: &str,
) -> String {
    let body = if method == "INVITE" {
        "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    } else {
        ""
    };
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.2:5060;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:carrier@198.51.100.2>;tag=c-{call_id}\r\n\
To: <{ruri}>{to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:carrier@198.51.100.2:5060>\r\n\
{extra}Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The response a UA gives to `req`, with a To tag and Record-Route copied.
pub fn reply(req: &Message, code: u16, to_tag: &str) -> Bytes {
    let reason = match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        487 => "Request Terminated",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    let tag = (code > 100).then_some(to_tag.as_bytes());
    let mut b = response_to(req, code, reason, tag);
    b.copy_from(req, trunkvip_sip::HeaderName::RecordRoute);
    if (200..300).contains(&code) {
        b.push("Contact", b"<sip:edge@198.51.100.21:5060>");
    }
    b.finish()
}

pub fn branch_of(m: &Message) -> String {
    String::from_utf8(m.top_via().unwrap().branch().unwrap().to_vec()).unwrap()
}

pub fn header(m: &Message, name: &str) -> Option<String> {
    m.header_named(name.as_bytes())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
