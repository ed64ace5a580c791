//! A simulated Edge for `trunkvip demo`: a small UAS on UDP and TCP,
//! written with trunkvip-sip, that behaves as a SIP trunk endpoint does.
//!
//! - OPTIONS: 200 (so health checks pass).
//! - INVITE: 100 Trying, 180 Ringing with a To tag, then after the ring
//!   time 200 OK with SDP, retransmitted over UDP until the ACK comes
//!   (RFC 3261 section 13.3.1.4).
//! - ACK: absorbed. CANCEL: 200, and 487 for the INVITE if it was still
//!   ringing. BYE and any other request: 200.
//! - A retransmitted request is answered from state with the last
//!   response sent for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};
use trunkvip_sip::build::response_to;
use trunkvip_sip::{Frame, Limits, Message, Method, StreamDecoder};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How long answered transactions are remembered for retransmissions.
const KEEP: Duration = Duration::from_secs(32);

/// Where to send a response.
#[derive(Clone, Debug)]
enum Reply {
    Udp(Arc<UdpSocket>, SocketAddr),
    Stream(mpsc::Sender<Bytes>),
}

impl Reply {
    async fn send(&self, b: Bytes) {
        match self {
            Reply::Udp(s, to) => {
                let _ = s.send_to(&b, to).await;
            }
            Reply::Stream(tx) => {
                let _ = tx.send(b).await;
            }
        }
    }

    fn reliable(&self) -> bool {
        matches!(self, Reply::Stream(_))
    }
}

#[derive(Debug)]
enum Input {
    Request(Message, Reply),
    /// The ring time of an INVITE is over.
    Answer(Key),
    Tick,
}

/// A transaction: Call-ID, CSeq number, method.
type Key = (Bytes, u32, Method);

#[derive(Debug)]
enum InviteState {
    Ringing,
    /// 2xx sent; retransmitted over UDP until ACK.
    Answered {
        acked: bool,
        next: Instant,
        interval: Duration,
    },
    /// 487 sent after CANCEL.
    Cancelled,
}

#[derive(Debug)]
struct Invite {
    req: Message,
    reply: Reply,
    tag: String,
    last: Bytes,
    state: InviteState,
    since: Instant,
}

#[derive(Debug)]
struct Sim {
    name: String,
    contact_udp: String,
    contact_tcp: String,
    ring: Duration,
    invites: HashMap<Key, Invite>,
    /// Answers to other requests, for their retransmissions.
    answered: HashMap<Key, (Bytes, Instant)>,
    tags: u64,
    inputs: mpsc::Sender<Input>,
}

const SDP: &str = "v=0\r\no=edge 1 1 IN IP4 127.0.0.1\r\ns=trunkvip demo\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Starts a simulated Edge on `addr` (UDP and TCP).
pub async fn start(name: &str, addr: SocketAddr, ring: Duration) -> std::io::Result<()> {
    let udp = Arc::new(UdpSocket::bind(addr).await?);
    let tcp = TcpListener::bind(addr).await?;
    let (tx, rx) = mpsc::channel(4096);
    let sim = Sim {
        name: name.to_owned(),
        contact_udp: format!("<sip:{name}@{addr}>"),
        contact_tcp: format!("<sip:{name}@{addr};transport=tcp>"),
        ring,
        invites: HashMap::new(),
        answered: HashMap::new(),
        tags: 0,
        inputs: tx.clone(),
    };
    tokio::spawn(sim.run(rx));
    tokio::spawn(receive_udp(udp, tx.clone()));
    tokio::spawn(accept_tcp(tcp, tx.clone()));
    let ticks = tx;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            if ticks.send(Input::Tick).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

async fn receive_udp(sock: Arc<UdpSocket>, tx: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
            continue;
        };
        if m.is_request()
            && tx
                .send(Input::Request(m, Reply::Udp(sock.clone(), from)))
                .await
                .is_err()
        {
            return;
        }
    }
}

async fn accept_tcp(listener: TcpListener, tx: mpsc::Sender<Input>) {
    while let Ok((mut s, _)) = listener.accept().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
            let mut dec = StreamDecoder::new(Limits::default());
            loop {
                dec.buffer_mut().reserve(4096);
                tokio::select! {
                    r = s.read_buf(dec.buffer_mut()) => {
                        if !matches!(r, Ok(n) if n > 0) {
                            return;
                        }
                        loop {
                            match dec.decode() {
                                Ok(Some(Frame::Message(m))) if m.is_request() => {
                                    let _ = tx.send(Input::Request(m, Reply::Stream(out_tx.clone()))).await;
                                }
                                Ok(Some(Frame::Ping)) => {
                                    let _ = s.write_all(b"\r\n").await;
                                }
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(_) => return,
                            }
                        }
                    }
                    Some(b) = out_rx.recv() => {
                        if s.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

impl Sim {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        while let Some(i) = rx.recv().await {
            match i {
                Input::Request(m, reply) => self.request(m, reply).await,
                Input::Answer(key) => self.answer(&key).await,
                Input::Tick => self.tick().await,
            }
        }
    }

    fn contact(&self, reply: &Reply) -> &str {
        if reply.reliable() {
            &self.contact_tcp
        } else {
            &self.contact_udp
        }
    }

    fn response(
        &self,
        req: &Message,
        code: u16,
        reason: &str,
        tag: &str,
        reply: &Reply,
    ) -> trunkvip_sip::build::Builder {
        let mut b = response_to(req, code, reason, Some(tag.as_bytes()));
        if (101..300).contains(&code) {
            b.push("Contact", self.contact(reply).as_bytes());
        }
        b.push(
            "Server",
            format!("trunkvip demo Edge {}", self.name).as_bytes(),
        );
        b
    }

    async fn request(&mut self, m: Message, reply: Reply) {
        let (Ok(cid), Ok(cseq)) = (m.call_id(), m.cseq()) else {
            warn!(edge = %self.name, "request without Call-ID or CSeq: ignored");
            return;
        };
        let cid = m.slice_ref(cid);
        let method = m.method().unwrap_or(Method::Other);
        let key = (cid.clone(), cseq.seq, method);
        match method {
            Method::Invite => {
                if let Some(inv) = self.invites.get(&key) {
                    // A retransmission: the last response again.
                    reply.send(inv.last.clone()).await;
                    return;
                }
                self.tags += 1;
                let tag = format!("{}-{:x}", self.name.to_ascii_lowercase(), self.tags);
                let trying = response_to(&m, 100, "Trying", None).finish();
                reply.send(trying).await;
                let ringing = self.response(&m, 180, "Ringing", &tag, &reply).finish();
                reply.send(ringing.clone()).await;
                self.invites.insert(
                    key.clone(),
                    Invite {
                        req: m,
                        reply,
                        tag,
                        last: ringing,
                        state: InviteState::Ringing,
                        since: Instant::now(),
                    },
                );
                if self.ring.is_zero() {
                    self.answer(&key).await;
                } else {
                    let tx = self.inputs.clone();
                    let ring = self.ring;
                    tokio::spawn(async move {
                        tokio::time::sleep(ring).await;
                        let _ = tx.send(Input::Answer(key)).await;
                    });
                }
            }
            Method::Ack => {
                if let Some(inv) = self.invites.get_mut(&(cid, cseq.seq, Method::Invite)) {
                    if let InviteState::Answered { acked, .. } = &mut inv.state {
                        *acked = true;
                    }
                }
            }
            Method::Cancel => {
                let ikey = (cid, cseq.seq, Method::Invite);
                let Some(inv) = self.invites.get_mut(&ikey) else {
                    let b = response_to(&m, 481, "Call/Transaction Does Not Exist", Some(b"x"))
                        .finish();
                    reply.send(b).await;
                    return;
                };
                let ok = response_to(&m, 200, "OK", Some(inv.tag.as_bytes())).finish();
                reply.send(ok).await;
                if matches!(inv.state, InviteState::Ringing) {
                    let b = response_to(
                        &inv.req,
                        487,
                        "Request Terminated",
                        Some(inv.tag.as_bytes()),
                    )
                    .finish();
                    inv.last = b.clone();
                    inv.state = InviteState::Cancelled;
                    inv.reply.send(b).await;
                }
            }
            _ => {
                if let Some((last, _)) = self.answered.get(&key) {
                    reply.send(last.clone()).await;
                    return;
                }
                self.tags += 1;
                let tag = format!("{}-{:x}", self.name.to_ascii_lowercase(), self.tags);
                let mut b = self.response(&m, 200, "OK", &tag, &reply);
                if method == Method::Options {
                    b.push("Allow", b"INVITE, ACK, BYE, CANCEL, OPTIONS");
                }
                let b = b.finish();
                debug!(edge = %self.name, "{} answered", String::from_utf8_lossy(m.method_bytes().unwrap_or_default()));
                self.answered.insert(key, (b.clone(), Instant::now()));
                reply.send(b).await;
            }
        }
    }

    async fn answer(&mut self, key: &Key) {
        let Some(inv) = self.invites.get(key) else {
            return;
        };
        if !matches!(inv.state, InviteState::Ringing) {
            return;
        }
        let mut b = self.response(&inv.req, 200, "OK", &inv.tag, &inv.reply);
        b.push("Allow", b"INVITE, ACK, BYE, CANCEL, OPTIONS");
        let ok = b.finish_with_body(Some("application/sdp"), SDP.as_bytes());
        let inv = self.invites.get_mut(key).expect("checked above");
        inv.last = ok.clone();
        inv.state = InviteState::Answered {
            acked: inv.reply.reliable(),
            next: Instant::now() + T1,
            interval: T1,
        };
        inv.reply.send(ok).await;
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        for inv in self.invites.values_mut() {
            if let InviteState::Answered {
                acked: false,
                next,
                interval,
            } = &mut inv.state
            {
                if *next <= now && now.duration_since(inv.since) < KEEP {
                    inv.reply.send(inv.last.clone()).await;
                    *interval = (*interval * 2).min(T2);
                    *next = now + *interval;
                }
            }
        }
        self.invites
            .retain(|_, i| now.duration_since(i.since) < KEEP);
        self.answered
            .retain(|_, (_, at)| now.duration_since(*at) < KEEP);
    }
}
