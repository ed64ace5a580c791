//! A randomized, deterministic world around one `Core`: a carrier UAC, two
//! or three Edge UASes whose behaviour changes at random moments, and a
//! lossy, duplicating, reordering network between them and the proxy, all
//! in virtual time and driven by one seed. The invariants the core must
//! keep are checked as the world runs and at its end; a violation comes
//! back as a report with the seed and a compact trace of the call.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkvip_proxy::{Core, Event, Incoming, Origin, ProxyConfig};
use trunkvip_sip::build::response_to;
use trunkvip_sip::{HeaderName, Message, Method};

use crate::common::{addr, config, edge_addr, request, CARRIER, VIP};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const MS: Duration = Duration::from_millis(1);
/// After the last call ends, the world idles this long before the end checks.
pub const QUIET: Duration = Duration::from_secs(300);
/// A call still unfinished this long after the last call started never ends.
const CAP: Duration = Duration::from_secs(20 * 60);
/// The carrier stops waiting for a final answer this long after its INVITE:
/// longer than Timer C plus Timer B on each of three Edges in turn.
const GIVE_UP: Duration = Duration::from_secs(15 * 60);

// ----- randomness --------------------------------------------------------

/// xorshift64*: small, fast, and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so 0 and nearby seeds are fine.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn percent(&mut self, p: u32) -> bool {
        self.below(100) < u64::from(p)
    }

    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

// ----- parameters --------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// 100 at once, 180, 200; answers everything.
    Normal,
    /// Drops everything in and out: it died (or is cut off).
    Silent,
    /// 503 to new INVITEs, everything else as Normal.
    Busy,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub seed: u64,
    pub calls: usize,
    /// One priority per Edge (2 or 3 Edges).
    pub priorities: Vec<u8>,
    /// Each Edge's behaviour at the start.
    pub initial: Vec<Behaviour>,
    /// Random behaviour changes over the first seconds.
    pub changes: usize,
    /// This Edge stays Normal for the whole run.
    pub steady: Option<usize>,
    pub loss_pct: u32,
    pub dup_pct: u32,
    /// Share of calls the carrier CANCELs after a random delay.
    pub cancel_pct: u32,
    /// Share of answered calls that get a re-INVITE before the BYE.
    pub reinvite_pct: u32,
}

impl Params {
    pub fn edges(&self) -> usize {
        self.priorities.len()
    }

    /// The parameters as Rust, to paste into a test that replays the world.
    pub fn rust(&self) -> String {
        let initial: Vec<String> = self
            .initial
            .iter()
            .map(|b| format!("Behaviour::{b:?}"))
            .collect();
        format!(
            "Params {{ seed: {}, calls: {}, priorities: vec!{:?}, initial: vec![{}], \
             changes: {}, steady: {:?}, loss_pct: {}, dup_pct: {}, cancel_pct: {}, \
             reinvite_pct: {} }}",
            self.seed,
            self.calls,
            self.priorities,
            initial.join(", "),
            self.changes,
            self.steady,
            self.loss_pct,
            self.dup_pct,
            self.cancel_pct,
            self.reinvite_pct
        )
    }
}

// ----- helpers on messages -----------------------------------------------

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn call_id(m: &Message) -> String {
    m.call_id().map(s).unwrap_or_default()
}

fn to_tag(m: &Message) -> Option<String> {
    m.to().ok().and_then(|t| t.tag().map(s))
}

fn branch(m: &Message) -> String {
    m.top_via()
        .ok()
        .and_then(|v| v.branch().map(s))
        .unwrap_or_default()
}

fn cseq(m: &Message) -> (u32, Method) {
    m.cseq()
        .map(|c| (c.seq, c.method))
        .unwrap_or((0, Method::Other))
}

/// The Edge whose To tag this is: Edges tag `e{n}.{k}`.
pub fn tag_edge(tag: &str) -> Option<usize> {
    tag.strip_prefix('e')?.split('.').next()?.parse().ok()
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        481 => "Call/Transaction Does Not Exist",
        487 => "Request Terminated",
        503 => "Service Unavailable",
        _ => "Other",
    }
}

/// One line of a message for traces.
pub fn summary(m: &Message) -> String {
    let (seq, _) = cseq(m);
    let head = match m.status() {
        Some(code) => format!(
            "{code} ({seq} {})",
            m.cseq().map(|c| s(c.method_raw)).unwrap_or_default()
        ),
        None => format!("{} cseq={seq}", s(m.method_bytes().unwrap_or_default())),
    };
    let br = branch(m);
    let br = &br[br.len().saturating_sub(10)..];
    let tt = to_tag(m).unwrap_or_else(|| "-".into());
    format!("{head:<22} br=..{br:<10} tt={tt}")
}

// ----- the nodes and what moves between them ------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    Core,
    Carrier,
    Edge(usize),
}

impl Node {
    fn addr(self) -> SocketAddr {
        match self {
            Node::Core => addr(VIP),
            Node::Carrier => addr(CARRIER),
            Node::Edge(n) => edge_addr(n),
        }
    }

    fn label(self) -> String {
        match self {
            Node::Core => "P".into(),
            Node::Carrier => "C".into(),
            Node::Edge(n) => format!("E{}", n + 1),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CallTm {
    Start,
    InviteRetransmit,
    InviteTimeout,
    GiveUp,
    Cancel,
    CancelRetransmit,
    ReInvite(usize),
    ReInviteRetransmit(usize),
    Bye(usize),
    ByeRetransmit(usize),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EdgeTm {
    Ring(String),
    Answer(String),
    RetransmitFinal(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tm {
    Call(usize, CallTm),
    Edge(usize, EdgeTm),
    Behave(usize, Behaviour),
}

/// What an agent wants done: messages to the proxy and timers.
#[derive(Default)]
struct Out {
    send: Vec<Bytes>,
    /// Answers to health probes: not traced.
    probe_answers: Vec<Bytes>,
    timers: Vec<(Duration, Tm)>,
}

// ----- the carrier ---------------------------------------------------------

/// One dialog the carrier holds: from a 2xx to its INVITE.
#[derive(Debug)]
struct CDialog {
    tag: String,
    target: String,
    route: String,
    ack: Bytes,
    reinvite: Option<Bytes>,
    reinvite_ack: Option<Bytes>,
    reinvite_done: bool,
    reinvite_rt: Option<Duration>,
    reinvite_interval: Duration,
    reinvite_deadline: Duration,
    bye: Option<Bytes>,
    bye_rt: Option<Duration>,
    bye_interval: Duration,
    bye_deadline: Duration,
    bye_done: bool,
    bye_code: Option<u16>,
}

#[derive(Debug)]
pub struct Call {
    pub idx: usize,
    pub call_id: String,
    ruri: String,
    pub start_at: Duration,
    hold: Duration,
    cancel_after: Option<Duration>,
    wants_reinvite: bool,
    pub started: bool,
    invite: Bytes,
    inv_rt: Option<Duration>,
    inv_interval: Duration,
    inv_b: Option<Duration>,
    responded: bool,
    provisional: bool,
    /// Final answers to the INVITE as the carrier got them: (code, To tag).
    pub finals: Vec<(u16, String)>,
    pub gave_up: bool,
    cancel_wanted: bool,
    pub cancel_sent: bool,
    cancel_rt: Option<Duration>,
    cancel_interval: Duration,
    cancel_deadline: Duration,
    cancel_done: bool,
    dialogs: Vec<CDialog>,
    pub done_at: Option<Duration>,
}

impl Call {
    fn branch(&self) -> String {
        format!("z9hG4bK-c{}-inv", self.idx)
    }

    pub fn is_done(&self) -> bool {
        self.started
            && (!self.finals.is_empty() || self.gave_up)
            && self.dialogs.iter().all(|d| d.bye_done)
            && (!self.cancel_sent || self.cancel_done)
    }

    pub fn got_2xx(&self) -> bool {
        self.finals.iter().any(|f| (200..300).contains(&f.0))
    }

    fn start(&mut self, now: Duration, out: &mut Out) {
        self.started = true;
        out.send.push(self.invite.clone());
        self.inv_rt = Some(now + T1);
        self.inv_interval = T1;
        self.inv_b = Some(now + T1 * 64);
        out.timers
            .push((now + T1, Tm::Call(self.idx, CallTm::InviteRetransmit)));
        out.timers
            .push((now + T1 * 64, Tm::Call(self.idx, CallTm::InviteTimeout)));
        out.timers
            .push((now + GIVE_UP, Tm::Call(self.idx, CallTm::GiveUp)));
        if let Some(d) = self.cancel_after {
            out.timers
                .push((now + d, Tm::Call(self.idx, CallTm::Cancel)));
        }
    }

    fn send_cancel(&mut self, now: Duration, out: &mut Out) {
        self.cancel_sent = true;
        out.send.push(self.cancel_msg());
        self.cancel_rt = Some(now + T1);
        self.cancel_interval = T1;
        self.cancel_deadline = now + T1 * 64;
        out.timers
            .push((now + T1, Tm::Call(self.idx, CallTm::CancelRetransmit)));
    }

    fn cancel_msg(&self) -> Bytes {
        request(
            "CANCEL",
            &self.ruri,
            &self.call_id,
            &self.branch(),
            1,
            None,
            "",
        )
        .into()
    }

    fn timer(&mut self, now: Duration, at: Duration, tm: CallTm, out: &mut Out) {
        let idx = self.idx;
        match tm {
            CallTm::Start => self.start(now, out),
            CallTm::InviteRetransmit => {
                if self.inv_rt == Some(at) && !self.responded {
                    out.send.push(self.invite.clone());
                    self.inv_interval *= 2;
                    self.inv_rt = Some(now + self.inv_interval);
                    out.timers
                        .push((now + self.inv_interval, Tm::Call(idx, tm)));
                }
            }
            CallTm::InviteTimeout => {
                if self.inv_b == Some(at) && !self.responded {
                    // Timer B: nothing at all came back.
                    self.gave_up = true;
                    self.inv_rt = None;
                }
            }
            CallTm::GiveUp => {
                // No final answer in all that time (it was lost, or the
                // core never sent one): the carrier stops waiting.
                if self.finals.is_empty() {
                    self.gave_up = true;
                }
            }
            CallTm::Cancel => {
                if self.finals.is_empty() && !self.gave_up && !self.cancel_sent {
                    self.cancel_wanted = true;
                    // RFC 3261 9.1: only once a provisional came.
                    if self.provisional {
                        self.send_cancel(now, out);
                    }
                }
            }
            CallTm::CancelRetransmit => {
                if self.cancel_rt == Some(at) && !self.cancel_done {
                    if now >= self.cancel_deadline {
                        self.cancel_done = true;
                        return;
                    }
                    out.send.push(self.cancel_msg());
                    self.cancel_interval = (self.cancel_interval * 2).min(T2);
                    self.cancel_rt = Some(now + self.cancel_interval);
                    out.timers
                        .push((now + self.cancel_interval, Tm::Call(idx, tm)));
                }
            }
            CallTm::ReInvite(k) => {
                let d = &mut self.dialogs[k];
                if d.bye.is_some() || d.reinvite.is_some() {
                    return;
                }
                let m: Bytes = request(
                    "INVITE",
                    &d.target,
                    &self.call_id,
                    &format!("z9hG4bK-c{idx}-re{k}"),
                    2,
                    Some(&d.tag),
                    &d.route,
                )
                .into();
                d.reinvite = Some(m.clone());
                d.reinvite_rt = Some(now + T1);
                d.reinvite_interval = T1;
                d.reinvite_deadline = now + T1 * 64;
                out.send.push(m);
                out.timers
                    .push((now + T1, Tm::Call(idx, CallTm::ReInviteRetransmit(k))));
            }
            CallTm::ReInviteRetransmit(k) => {
                let d = &mut self.dialogs[k];
                if d.reinvite_rt != Some(at) || d.reinvite_done {
                    return;
                }
                if now >= d.reinvite_deadline {
                    d.reinvite_done = true;
                    return;
                }
                out.send.push(d.reinvite.clone().expect("sent"));
                d.reinvite_interval *= 2;
                d.reinvite_rt = Some(now + d.reinvite_interval);
                out.timers
                    .push((now + d.reinvite_interval, Tm::Call(idx, tm)));
            }
            CallTm::Bye(k) => {
                let d = &mut self.dialogs[k];
                if d.bye.is_some() {
                    return;
                }
                let m: Bytes = request(
                    "BYE",
                    &d.target,
                    &self.call_id,
                    &format!("z9hG4bK-c{idx}-bye{k}"),
                    3,
                    Some(&d.tag),
                    &d.route,
                )
                .into();
                d.bye = Some(m.clone());
                d.bye_rt = Some(now + T1);
                d.bye_interval = T1;
                d.bye_deadline = now + T1 * 64;
                out.send.push(m);
                out.timers
                    .push((now + T1, Tm::Call(idx, CallTm::ByeRetransmit(k))));
            }
            CallTm::ByeRetransmit(k) => {
                let d = &mut self.dialogs[k];
                if d.bye_rt != Some(at) || d.bye_done {
                    return;
                }
                if now >= d.bye_deadline {
                    // Timer F: the dialog is over anyway.
                    d.bye_done = true;
                    return;
                }
                out.send.push(d.bye.clone().expect("sent"));
                d.bye_interval = (d.bye_interval * 2).min(T2);
                d.bye_rt = Some(now + d.bye_interval);
                out.timers.push((now + d.bye_interval, Tm::Call(idx, tm)));
            }
        }
    }

    fn response(&mut self, now: Duration, m: &Message, rng: &mut Rng, out: &mut Out) {
        let code = m.status().unwrap_or(0);
        let (seq, method) = cseq(m);
        let tag = to_tag(m).unwrap_or_default();
        match (method, seq) {
            (Method::Invite, 1) => {
                self.responded = true;
                self.inv_rt = None;
                self.inv_b = None;
                if code < 200 {
                    self.provisional = true;
                    if self.cancel_wanted && !self.cancel_sent && self.finals.is_empty() {
                        self.send_cancel(now, out);
                    }
                    return;
                }
                self.finals.push((code, tag.clone()));
                if code >= 300 {
                    // Hop-by-hop ACK on the INVITE's branch, every time.
                    out.send.push(
                        request(
                            "ACK",
                            &self.ruri,
                            &self.call_id,
                            &self.branch(),
                            1,
                            Some(&tag),
                            "",
                        )
                        .into(),
                    );
                    return;
                }
                if let Some(d) = self.dialogs.iter().find(|d| d.tag == tag) {
                    out.send.push(d.ack.clone());
                    return;
                }
                // A new dialog: ACK along the route set, BYE after the hold.
                let mut rr: Vec<String> = m.record_routes().flatten().map(|r| s(r.raw)).collect();
                rr.reverse();
                let route = if rr.is_empty() {
                    String::new()
                } else {
                    format!("Route: {}\r\n", rr.join(", "))
                };
                let target = m
                    .contacts()
                    .next()
                    .and_then(|c| c.ok().flatten())
                    .map(|c| s(c.uri))
                    .unwrap_or_else(|| self.ruri.clone());
                let k = self.dialogs.len();
                let ack: Bytes = request(
                    "ACK",
                    &target,
                    &self.call_id,
                    &format!("z9hG4bK-c{}-ack{k}", self.idx),
                    1,
                    Some(&tag),
                    &route,
                )
                .into();
                out.send.push(ack.clone());
                let hold = if self.cancel_sent || k > 0 {
                    rng.ms(1, 100)
                } else {
                    self.hold
                };
                if self.wants_reinvite && k == 0 && !self.cancel_sent {
                    out.timers
                        .push((now + hold / 2, Tm::Call(self.idx, CallTm::ReInvite(k))));
                }
                out.timers
                    .push((now + hold, Tm::Call(self.idx, CallTm::Bye(k))));
                self.dialogs.push(CDialog {
                    tag,
                    target,
                    route,
                    ack,
                    reinvite: None,
                    reinvite_ack: None,
                    reinvite_done: false,
                    reinvite_rt: None,
                    reinvite_interval: T1,
                    reinvite_deadline: Duration::ZERO,
                    bye: None,
                    bye_rt: None,
                    bye_interval: T1,
                    bye_deadline: Duration::ZERO,
                    bye_done: false,
                    bye_code: None,
                });
            }
            (Method::Invite, 2) => {
                let Some(k) = self.dialogs.iter().position(|d| d.tag == tag) else {
                    return;
                };
                let d = &mut self.dialogs[k];
                d.reinvite_rt = None;
                if code < 200 {
                    return;
                }
                d.reinvite_done = true;
                if code >= 300 {
                    let br = format!("z9hG4bK-c{}-re{k}", self.idx);
                    out.send.push(
                        request("ACK", &d.target, &self.call_id, &br, 2, Some(&tag), "").into(),
                    );
                    return;
                }
                let ack = d.reinvite_ack.get_or_insert_with(|| {
                    request(
                        "ACK",
                        &d.target,
                        &self.call_id,
                        &format!("z9hG4bK-c{}-reack", self.idx),
                        2,
                        Some(&tag),
                        &d.route,
                    )
                    .into()
                });
                out.send.push(ack.clone());
            }
            (Method::Cancel, _) if code >= 200 => {
                self.cancel_done = true;
                self.cancel_rt = None;
            }
            (Method::Bye, _) if code >= 200 => {
                if let Some(d) = self.dialogs.iter_mut().find(|d| d.tag == tag) {
                    d.bye_done = true;
                    d.bye_rt = None;
                    d.bye_code.get_or_insert(code);
                }
            }
            _ => {}
        }
    }
}

// ----- the Edges -----------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IState {
    Proceeding,
    Ringing,
    Accepted,
    Rejected,
}

#[derive(Debug)]
struct Inv {
    req: Message,
    tag: String,
    last: Option<Bytes>,
    state: IState,
    acked: bool,
    rt: Option<Duration>,
    interval: Duration,
    deadline: Duration,
}

#[derive(Debug)]
pub struct EdgeUa {
    n: usize,
    pub behaviour: Behaviour,
    pub ever_silent: bool,
    invites: HashMap<String, Inv>,
    /// To tag -> branch of the INVITE that made it (2xx ACK matching).
    by_tag: HashMap<(String, u32), String>,
    non_invite: HashMap<String, Bytes>,
    /// Dialogs up: 2xx sent, no BYE yet (To tag -> Call-ID).
    pub up: HashMap<String, String>,
    tags: u32,
}

impl EdgeUa {
    fn new(n: usize, behaviour: Behaviour) -> EdgeUa {
        EdgeUa {
            n,
            behaviour,
            ever_silent: behaviour == Behaviour::Silent,
            invites: HashMap::new(),
            by_tag: HashMap::new(),
            non_invite: HashMap::new(),
            up: HashMap::new(),
            tags: 0,
        }
    }

    fn reply(&self, req: &Message, code: u16, tag: Option<&str>) -> Bytes {
        let mut b = response_to(req, code, reason(code), tag.map(str::as_bytes));
        let invite = req.method() == Some(Method::Invite);
        if invite && code > 100 && code < 300 {
            b.copy_from(req, HeaderName::RecordRoute);
        }
        if invite && (200..300).contains(&code) {
            b.push(
                "Contact",
                format!("<sip:edge@{}>", edge_addr(self.n)).as_bytes(),
            );
        }
        b.finish()
    }

    fn receive(&mut self, now: Duration, m: Message, rng: &mut Rng, out: &mut Out) {
        if m.status().is_some() {
            return;
        }
        let br = branch(&m);
        match m.method().unwrap_or(Method::Other) {
            Method::Invite => {
                if let Some(inv) = self.invites.get(&br) {
                    // A retransmission: answered from state.
                    if let Some(r) = &inv.last {
                        out.send.push(r.clone());
                    }
                    return;
                }
                let seq = cseq(&m).0;
                if let Some(tag) = to_tag(&m) {
                    // re-INVITE: 200 at once, until ACKed.
                    let r = self.reply(&m, 200, None);
                    out.send.push(r.clone());
                    self.by_tag.insert((tag.clone(), seq), br.clone());
                    self.arm_final(now, &br, out);
                    self.invites.insert(
                        br,
                        Inv {
                            req: m,
                            tag,
                            last: Some(r),
                            state: IState::Accepted,
                            acked: false,
                            rt: Some(now + T1),
                            interval: T1,
                            deadline: now + T1 * 64,
                        },
                    );
                    return;
                }
                self.tags += 1;
                let tag = format!("e{}.{}", self.n, self.tags);
                self.by_tag.insert((tag.clone(), seq), br.clone());
                let busy = self.behaviour == Behaviour::Busy;
                let (state, last) = if busy {
                    let r = self.reply(&m, 503, Some(&tag));
                    self.arm_final(now, &br, out);
                    (IState::Rejected, r)
                } else {
                    let r = self.reply(&m, 100, None);
                    let ring = now + rng.ms(5, 200);
                    let answer = ring + rng.ms(20, 3000);
                    out.timers
                        .push((ring, Tm::Edge(self.n, EdgeTm::Ring(br.clone()))));
                    out.timers
                        .push((answer, Tm::Edge(self.n, EdgeTm::Answer(br.clone()))));
                    (IState::Proceeding, r)
                };
                out.send.push(last.clone());
                self.invites.insert(
                    br,
                    Inv {
                        req: m,
                        tag,
                        last: Some(last),
                        state,
                        acked: false,
                        rt: busy.then_some(now + T1),
                        interval: T1,
                        deadline: now + T1 * 64,
                    },
                );
            }
            Method::Ack => {
                if let Some(inv) = self.invites.get_mut(&br) {
                    // ACK to a non-2xx, hop by hop: Timer G stops.
                    inv.acked = true;
                    inv.rt = None;
                    return;
                }
                let key = (to_tag(&m).unwrap_or_default(), cseq(&m).0);
                if let Some(inv) = self.by_tag.get(&key).and_then(|b| self.invites.get_mut(b)) {
                    if inv.state == IState::Accepted {
                        inv.acked = true;
                        inv.rt = None;
                    }
                }
            }
            Method::Cancel => {
                let Some(inv) = self.invites.get_mut(&br) else {
                    let r = self.reply(&m, 481, Some("x"));
                    out.send.push(r);
                    return;
                };
                let final_487 = matches!(inv.state, IState::Proceeding | IState::Ringing);
                if final_487 {
                    inv.state = IState::Rejected;
                }
                let tag = inv.tag.clone();
                let ok = self.reply(&m, 200, Some(&tag));
                out.send.push(ok);
                if final_487 {
                    let inv = &self.invites[&br];
                    let r = self.reply(&inv.req, 487, Some(&tag));
                    let inv = self.invites.get_mut(&br).expect("there");
                    inv.last = Some(r.clone());
                    inv.rt = Some(now + T1);
                    inv.interval = T1;
                    inv.deadline = now + T1 * 64;
                    out.send.push(r);
                    self.arm_final(now, &br, out);
                }
            }
            method => {
                let key = format!("{method:?} {br}");
                if let Some(r) = self.non_invite.get(&key) {
                    out.send.push(r.clone());
                    return;
                }
                let r = match method {
                    Method::Bye => match to_tag(&m) {
                        Some(tag) if tag_edge(&tag) == Some(self.n) => {
                            self.up.remove(&tag);
                            self.reply(&m, 200, None)
                        }
                        _ => self.reply(&m, 481, Some("x")),
                    },
                    Method::Options if call_id(&m).starts_with("tvp-") => {
                        out.probe_answers.push(self.reply(&m, 200, Some("o")));
                        return;
                    }
                    _ => self.reply(&m, 200, Some("o")),
                };
                self.non_invite.insert(key, r.clone());
                out.send.push(r);
            }
        }
    }

    fn arm_final(&mut self, now: Duration, br: &str, out: &mut Out) {
        out.timers.push((
            now + T1,
            Tm::Edge(self.n, EdgeTm::RetransmitFinal(br.to_string())),
        ));
    }

    fn timer(&mut self, now: Duration, at: Duration, tm: EdgeTm, out: &mut Out) {
        match tm {
            EdgeTm::Ring(br) => {
                let Some(inv) = self.invites.get(&br) else {
                    return;
                };
                if inv.state == IState::Proceeding {
                    let r = self.reply(&inv.req, 180, Some(&inv.tag));
                    let inv = self.invites.get_mut(&br).expect("there");
                    inv.state = IState::Ringing;
                    inv.last = Some(r.clone());
                    out.send.push(r);
                }
            }
            EdgeTm::Answer(br) => {
                let Some(inv) = self.invites.get(&br) else {
                    return;
                };
                if matches!(inv.state, IState::Proceeding | IState::Ringing) {
                    let r = self.reply(&inv.req, 200, Some(&inv.tag));
                    let call = call_id(&inv.req);
                    let tag = inv.tag.clone();
                    let inv = self.invites.get_mut(&br).expect("there");
                    inv.state = IState::Accepted;
                    inv.last = Some(r.clone());
                    inv.rt = Some(now + T1);
                    inv.interval = T1;
                    inv.deadline = now + T1 * 64;
                    self.up.insert(tag, call);
                    out.send.push(r);
                    self.arm_final(now, &br, out);
                }
            }
            EdgeTm::RetransmitFinal(br) => {
                let Some(inv) = self.invites.get_mut(&br) else {
                    return;
                };
                if inv.rt != Some(at) || inv.acked {
                    return;
                }
                if now >= inv.deadline {
                    // No ACK in 64*T1 (Timer H). After a 2xx a real UAS
                    // would hang up now; we leave the dialog up so the end
                    // check sees it.
                    inv.rt = None;
                    return;
                }
                out.send.push(inv.last.clone().expect("answered"));
                inv.interval = (inv.interval * 2).min(T2);
                inv.rt = Some(now + inv.interval);
                out.timers.push((
                    now + inv.interval,
                    Tm::Edge(self.n, EdgeTm::RetransmitFinal(br)),
                ));
            }
        }
    }
}

// ----- the checker ---------------------------------------------------------

#[derive(Debug)]
pub struct Violation {
    pub invariant: u8,
    pub call: Option<String>,
    pub what: String,
}

#[derive(Debug, Default)]
struct Checker {
    healthy: Vec<bool>,
    invite_branches: HashSet<String>,
    /// Call-ID -> the Edge whose 2xx the core relayed to the carrier.
    answered_by: HashMap<String, usize>,
    /// Call-ID -> the final answers the core sent the carrier: (code, tag).
    finals: HashMap<String, Vec<(u16, String)>>,
    /// Call-IDs whose initial INVITE reached the core.
    reached: HashSet<String>,
    /// Call-IDs whose BYE from the carrier reached the core.
    bye_reached: HashSet<String>,
}

/// What happened, kept raw: formatted only for a report.
#[derive(Debug)]
enum TraceLine {
    /// A message put on the wire: `delays` of its copies (none: lost).
    Msg {
        t: Duration,
        from: Node,
        to: Node,
        data: Bytes,
        delays: [u8; 2],
        copies: u8,
        violation: bool,
    },
    Note {
        t: Duration,
        text: String,
    },
}

impl TraceLine {
    /// The line, if it belongs in the trace of `call` (notes always do).
    fn render(&self, call: Option<&str>) -> Option<String> {
        match self {
            TraceLine::Note { t, text } => Some(format!("{:>10.3} {text}", t.as_secs_f64())),
            TraceLine::Msg {
                t,
                from,
                to,
                data,
                delays,
                copies,
                violation,
            } => {
                let m = Message::parse(data.clone()).ok()?;
                if call != Some(call_id(&m).as_str()) {
                    return None;
                }
                let fate = if *violation {
                    "<== VIOLATION".to_string()
                } else if *copies == 0 {
                    "[LOST]".to_string()
                } else {
                    let d: Vec<String> = delays[..*copies as usize]
                        .iter()
                        .map(|d| format!("+{d}ms"))
                        .collect();
                    format!("[{}]", d.join(" "))
                };
                Some(format!(
                    "{:>10.3} {:>3}->{:<3} {} {fate}",
                    t.as_secs_f64(),
                    from.label(),
                    to.label(),
                    summary(&m),
                ))
            }
        }
    }
}

/// How the run went, for tuning and for the reader.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub sim_time: Duration,
    pub packets: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub max_transactions: usize,
    pub max_timers: usize,
    /// The most transactions and queued timers per call in flight.
    pub txn_per_call: f64,
    pub timers_per_call: f64,
    pub health_events: usize,
}

/// A datagram in flight: when it arrives, a tie-breaker, from, to, bytes.
type Packet = (Duration, u64, Node, Node, Bytes);

pub struct World {
    p: Params,
    core: Core,
    t0: Instant,
    now: Duration,
    rng: Rng,
    seq: u64,
    net: BinaryHeap<Reverse<Packet>>,
    timers: BinaryHeap<Reverse<(Duration, u64, Tm)>>,
    pub calls: Vec<Call>,
    pub edges: Vec<EdgeUa>,
    check: Checker,
    trace: Vec<TraceLine>,
    stats: Stats,
    /// Every call is over: only the quiet time is left.
    quiet: bool,
}

pub fn sim_config(priorities: &[u8]) -> ProxyConfig {
    let mut cfg = config(priorities);
    cfg.health_probing = true;
    cfg.health.interval = Duration::from_secs(1);
    cfg.health.timeout = Duration::from_millis(500);
    cfg.health.failure_threshold = 2;
    cfg.health.recovery_threshold = 2;
    cfg.timers.failover_after = Duration::from_millis(250);
    cfg
}

impl World {
    pub fn new(p: &Params) -> World {
        let t0 = Instant::now();
        let mut rng = Rng::new(p.seed);
        let core = Core::new(sim_config(&p.priorities), t0).expect("valid config");
        let edges = (0..p.edges())
            .map(|n| {
                let b = if p.steady == Some(n) {
                    Behaviour::Normal
                } else {
                    p.initial[n]
                };
                EdgeUa::new(n, b)
            })
            .collect();
        let calls = (0..p.calls)
            .map(|i| {
                let call_id = format!("sim{i}-carrier");
                let ruri = format!("sip:+1555000{i:02}@198.51.100.10");
                let branch = format!("z9hG4bK-c{i}-inv");
                let invite = request("INVITE", &ruri, &call_id, &branch, 1, None, "").into();
                Call {
                    idx: i,
                    call_id,
                    ruri,
                    start_at: rng.ms(0, 6000),
                    hold: rng.ms(50, 5000),
                    cancel_after: rng.percent(p.cancel_pct).then(|| rng.ms(0, 2500)),
                    wants_reinvite: rng.percent(p.reinvite_pct),
                    started: false,
                    invite,
                    inv_rt: None,
                    inv_interval: T1,
                    inv_b: None,
                    responded: false,
                    provisional: false,
                    finals: vec![],
                    gave_up: false,
                    cancel_wanted: false,
                    cancel_sent: false,
                    cancel_rt: None,
                    cancel_interval: T1,
                    cancel_deadline: Duration::ZERO,
                    cancel_done: false,
                    dialogs: vec![],
                    done_at: None,
                }
            })
            .collect();
        let mut w = World {
            p: p.clone(),
            core,
            t0,
            now: Duration::ZERO,
            rng,
            seq: 0,
            net: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            calls,
            edges,
            check: Checker {
                healthy: vec![true; p.edges()],
                ..Checker::default()
            },
            trace: vec![],
            stats: Stats::default(),
            quiet: false,
        };
        for i in 0..w.calls.len() {
            let at = w.calls[i].start_at;
            w.timer(at, Tm::Call(i, CallTm::Start));
        }
        let changeable: Vec<usize> = (0..p.edges()).filter(|n| Some(*n) != p.steady).collect();
        for _ in 0..p.changes {
            let n = changeable[w.rng.below(changeable.len() as u64) as usize];
            let at = w.rng.ms(0, 9000);
            let b = match w.rng.below(3) {
                0 => Behaviour::Normal,
                1 => Behaviour::Silent,
                _ => Behaviour::Busy,
            };
            w.timer(at, Tm::Behave(n, b));
        }
        w
    }

    fn timer(&mut self, at: Duration, tm: Tm) {
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, tm)));
    }

    fn note(&mut self, text: String) {
        self.trace.push(TraceLine::Note { t: self.now, text });
    }

    /// Puts a message on the wire: lost, delayed, maybe duplicated.
    /// Health probes and their answers are not traced.
    fn wire(&mut self, from: Node, to: Node, data: Bytes, traced: bool) {
        self.stats.packets += 1;
        let lost = self.rng.percent(self.p.loss_pct);
        let dup = !lost && self.rng.percent(self.p.dup_pct);
        let copies = if lost { 0 } else { 1 + u8::from(dup) };
        let mut delays = [0u8; 2];
        for d in delays.iter_mut().take(copies as usize) {
            let delay = self.rng.ms(1, 40);
            *d = delay.as_millis() as u8;
            self.seq += 1;
            self.net.push(Reverse((
                self.now + delay,
                self.seq,
                from,
                to,
                data.clone(),
            )));
        }
        if traced {
            self.trace.push(TraceLine::Msg {
                t: self.now,
                from,
                to,
                data,
                delays,
                copies,
                violation: false,
            });
        }
    }

    fn apply(&mut self, from: Node, out: Out) {
        for (at, tm) in out.timers {
            self.timer(at, tm);
        }
        if let Node::Edge(n) = from {
            if self.edges[n].behaviour == Behaviour::Silent {
                return;
            }
        }
        for data in out.probe_answers {
            self.wire(from, Node::Core, data, false);
        }
        for data in out.send {
            self.wire(from, Node::Core, data, true);
        }
    }

    fn at(&self) -> Instant {
        self.t0 + self.now
    }

    /// Takes what the core wants sent and said, checking each.
    fn drain_core(&mut self) -> Result<(), Violation> {
        while let Some(t) = self.core.poll_transmit() {
            let to = if t.destination == addr(CARRIER) {
                Node::Carrier
            } else if let Some(n) = (0..self.edges.len()).find(|n| edge_addr(*n) == t.destination) {
                Node::Edge(n)
            } else {
                return Err(Violation {
                    invariant: 0,
                    call: None,
                    what: format!("core sent to an unknown address {}", t.destination),
                });
            };
            if t.origin == Origin::Host {
                // Health probes: no invariant to check; once the calls are
                // over they are dropped, to keep the quiet time cheap.
                if !self.quiet {
                    self.wire(Node::Core, to, t.payload, false);
                }
                continue;
            }
            let m = Message::parse(t.payload.clone()).map_err(|e| Violation {
                invariant: 0,
                call: None,
                what: format!("core sent unparseable SIP: {e:?}"),
            })?;
            if let Err(v) = self.check_sent(to, &m) {
                self.trace.push(TraceLine::Msg {
                    t: self.now,
                    from: Node::Core,
                    to,
                    data: t.payload,
                    delays: [0; 2],
                    copies: 0,
                    violation: true,
                });
                return Err(v);
            }
            self.wire(Node::Core, to, t.payload, true);
        }
        while let Some(e) = self.core.poll_event() {
            if let Event::EdgeHealth { edge, healthy, .. } = e {
                self.check.healthy[edge] = healthy;
                self.stats.health_events += 1;
                let text = format!(
                    "EVENT E{} {}",
                    edge + 1,
                    if healthy { "Healthy" } else { "Unhealthy" }
                );
                self.note(text);
            }
        }
        self.check_bounds()
    }

    /// Invariants 2, 3 and 5 (at the core's output).
    fn check_sent(&mut self, to: Node, m: &Message) -> Result<(), Violation> {
        let cid = call_id(m);
        let v = |invariant, what: String| Violation {
            invariant,
            call: Some(cid.clone()),
            what,
        };
        match (to, m.status()) {
            (Node::Edge(d), None) => {
                let method = m.method().unwrap_or(Method::Other);
                match to_tag(m) {
                    None if method == Method::Invite => {
                        let fresh = self.check.invite_branches.insert(branch(m));
                        if fresh && !self.check.healthy[d] {
                            return Err(v(
                                3,
                                format!("a new INVITE went to E{} while it is Unhealthy", d + 1),
                            ));
                        }
                    }
                    None => {}
                    Some(tag) => {
                        let owner = tag_edge(&tag).or(self.check.answered_by.get(&cid).copied());
                        if let Some(e) = owner.filter(|e| *e != d) {
                            return Err(v(
                                2,
                                format!(
                                    "in-dialog {method:?} of E{}'s dialog (tag {tag}) went to E{}",
                                    e + 1,
                                    d + 1
                                ),
                            ));
                        }
                    }
                }
            }
            (Node::Carrier, Some(code)) if code >= 200 && cseq(m) == (1, Method::Invite) => {
                let tag = to_tag(m).unwrap_or_default();
                let finals = self.check.finals.entry(cid.clone()).or_default();
                if !finals.contains(&(code, tag.clone())) {
                    finals.push((code, tag.clone()));
                }
                let non2xx: HashSet<_> = finals.iter().filter(|f| f.0 >= 300).collect();
                if non2xx.len() > 1 {
                    return Err(v(
                        5,
                        format!("two different final answers to one INVITE: {finals:?}"),
                    ));
                }
                if (200..300).contains(&code) {
                    let e = tag_edge(&tag);
                    match (self.check.answered_by.get(&cid), e) {
                        (Some(a), Some(e)) if *a != e => {
                            return Err(v(
                                5,
                                format!(
                                    "the carrier got 2xx from two Edges: E{} and E{}",
                                    a + 1,
                                    e + 1
                                ),
                            ))
                        }
                        (None, Some(e)) => {
                            self.check.answered_by.insert(cid.clone(), e);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Calls started and not yet over, or over for less than 100 s and
    /// 250 s (transactions linger 32 s, cancelled Timer C entries 181 s).
    fn recent_calls(&self) -> (usize, usize) {
        let (mut short, mut long) = (0, 0);
        for c in self.calls.iter().filter(|c| c.started) {
            // A call the carrier gave up on is still owed an answer.
            let over = c.done_at.filter(|_| !c.gave_up || !c.finals.is_empty());
            let since = over.map_or(Duration::ZERO, |d| self.now.saturating_sub(d));
            short += usize::from(since <= Duration::from_secs(100));
            long += usize::from(since <= Duration::from_secs(250));
        }
        (short, long)
    }

    /// Invariant 4: memory stays bounded by the calls in flight.
    fn check_bounds(&mut self) -> Result<(), Violation> {
        let dialogs = self.core.dialogs();
        let (st, ct) = self.core.transactions();
        let timers = self.core.timers_queued();
        self.stats.max_transactions = self.stats.max_transactions.max(st + ct);
        self.stats.max_timers = self.stats.max_timers.max(timers);
        let v = |what: String| {
            Err(Violation {
                invariant: 4,
                call: None,
                what,
            })
        };
        if dialogs > self.calls.len() {
            return v(format!("{dialogs} dialogs for {} calls", self.calls.len()));
        }
        // Per call: INVITE, re-INVITE and BYE server transactions; an INVITE
        // branch and a ghost BYE per Edge, a re-INVITE and a BYE branch.
        let per_call = 3 + 2 * self.edges.len() + 2;
        // Cancelled timers stay queued until due; a transaction has a few.
        let (txn_base, timer_base) = (2, 4);
        if st + ct <= txn_base && timers <= timer_base {
            return Ok(());
        }
        let (short, long) = self.recent_calls();
        let r = &mut self.stats;
        r.txn_per_call = r.txn_per_call.max((st + ct) as f64 / short.max(1) as f64);
        r.timers_per_call = r.timers_per_call.max(timers as f64 / long.max(1) as f64);
        if st + ct > txn_base + per_call * short {
            return v(format!(
                "{} transactions ({st} server, {ct} client) for {short} calls in flight",
                st + ct
            ));
        }
        if timers > timer_base + 4 * per_call * long {
            return v(format!("{timers} timers queued for {long} calls in flight"));
        }
        Ok(())
    }

    /// The next thing to happen: 0 network, 1 agent timer, 2 core timer.
    fn next(&self) -> Option<(Duration, u8)> {
        let net = self.net.peek().map(|r| (r.0 .0, 0));
        let agent = self.timers.peek().map(|r| (r.0 .0, 1));
        let core = self
            .core
            .poll_timeout()
            .map(|t| (t.saturating_duration_since(self.t0), 2));
        [net, agent, core].into_iter().flatten().min()
    }

    fn step(&mut self, what: u8) -> Result<(), Violation> {
        match what {
            0 => {
                let Reverse((_, _, from, to, data)) = self.net.pop().expect("peeked");
                match to {
                    Node::Core => {
                        if from == Node::Carrier {
                            if let Ok(m) = Message::parse(data.clone()) {
                                if m.method() == Some(Method::Invite) && to_tag(&m).is_none() {
                                    self.check.reached.insert(call_id(&m));
                                }
                                if m.method() == Some(Method::Bye) {
                                    self.check.bye_reached.insert(call_id(&m));
                                }
                            }
                        }
                        let at = self.at();
                        self.core.handle(at, Incoming::udp(from.addr()), data);
                        self.drain_core()?;
                    }
                    Node::Carrier => {
                        let m = Message::parse(data).expect("checked when sent");
                        let cid = call_id(&m);
                        let mut out = Out::default();
                        if let Some(i) = self.calls.iter().position(|c| c.call_id == cid) {
                            if m.status().is_some() {
                                self.calls[i].response(self.now, &m, &mut self.rng, &mut out);
                            } else if m.method() != Some(Method::Ack) {
                                out.send
                                    .push(response_to(&m, 481, reason(481), Some(b"c")).finish());
                            }
                        }
                        self.apply(Node::Carrier, out);
                    }
                    Node::Edge(n) => {
                        if self.edges[n].behaviour == Behaviour::Silent {
                            return Ok(());
                        }
                        let m = Message::parse(data).expect("checked when sent");
                        let mut out = Out::default();
                        self.edges[n].receive(self.now, m, &mut self.rng, &mut out);
                        self.apply(Node::Edge(n), out);
                    }
                }
            }
            1 => {
                let Reverse((at, _, tm)) = self.timers.pop().expect("peeked");
                let mut out = Out::default();
                match tm {
                    Tm::Call(i, tm) => {
                        self.calls[i].timer(self.now, at, tm, &mut out);
                        self.apply(Node::Carrier, out);
                    }
                    Tm::Edge(n, tm) => {
                        self.edges[n].timer(self.now, at, tm, &mut out);
                        self.apply(Node::Edge(n), out);
                    }
                    Tm::Behave(n, b) => {
                        self.edges[n].behaviour = b;
                        self.edges[n].ever_silent |= b == Behaviour::Silent;
                        self.note(format!("E{} turns {b:?}", n + 1));
                    }
                }
            }
            _ => {
                let at = self.at();
                self.core.handle_timeout(at);
                self.drain_core()?;
            }
        }
        for c in &mut self.calls {
            if c.done_at.is_none() && c.is_done() {
                c.done_at = Some(self.now);
            } else if c.done_at.is_some() && !c.is_done() {
                c.done_at = None;
            }
        }
        Ok(())
    }

    /// Runs the world: every call to its end (or the cap), then `QUIET`.
    pub fn run(&mut self) -> Result<Stats, Violation> {
        let last_start = self
            .calls
            .iter()
            .map(|c| c.start_at)
            .max()
            .unwrap_or_default();
        let mut quiet_from: Option<Duration> = None;
        loop {
            if quiet_from.is_none() && self.calls.iter().all(|c| c.done_at.is_some()) {
                quiet_from = Some(self.now);
                self.quiet = true;
            }
            let end = quiet_from.map_or(last_start + CAP, |q| q + QUIET);
            match self.next() {
                Some((t, what)) if t <= end => {
                    self.now = self.now.max(t);
                    self.step(what)?;
                }
                _ => {
                    self.now = end;
                    if quiet_from.is_some() {
                        break;
                    }
                    // The cap: some call never ends. Idle on anyway so the
                    // end checks can say what is left.
                    quiet_from = Some(self.now);
                    self.quiet = true;
                }
            }
        }
        self.stats.sim_time = self.now;
        self.end_checks()?;
        for c in &self.calls {
            if c.got_2xx() {
                self.stats.succeeded += 1;
            } else if c.cancel_sent {
                self.stats.cancelled += 1;
            } else {
                self.stats.failed += 1;
            }
        }
        Ok(self.stats.clone())
    }

    /// Invariants 1, 5, 6 and 7 at the end of the run.
    fn end_checks(&self) -> Result<(), Violation> {
        let v = |invariant, call: Option<&str>, what: String| {
            Err(Violation {
                invariant,
                call: call.map(str::to_string),
                what,
            })
        };
        // 5: every INVITE that reached the core got a final answer from it,
        // and with no loss the carrier has it.
        for c in &self.calls {
            if c.done_at.is_none() {
                return v(
                    5,
                    Some(&c.call_id),
                    format!(
                        "the call never ended: finals {:?}, cancelled {}, {} dialogs",
                        c.finals,
                        c.cancel_sent,
                        c.dialogs.len()
                    ),
                );
            }
            if self.check.reached.contains(&c.call_id)
                && !self.check.finals.contains_key(&c.call_id)
            {
                return v(
                    5,
                    Some(&c.call_id),
                    format!(
                        "the core never sent a final answer to this INVITE (cancelled: {})",
                        c.cancel_sent
                    ),
                );
            }
            if self.p.loss_pct == 0 && c.finals.is_empty() {
                return v(
                    5,
                    Some(&c.call_id),
                    "the carrier never got a final answer".into(),
                );
            }
        }
        // 6: one Edge stayed Normal and nothing was lost: every call that
        // was not CANCELled succeeded.
        if self.p.steady.is_some() && self.p.loss_pct == 0 {
            for c in &self.calls {
                if !c.cancel_sent && !c.got_2xx() {
                    return v(
                        6,
                        Some(&c.call_id),
                        format!(
                            "the call failed ({:?}) though E{} stayed Normal",
                            c.finals,
                            self.p.steady.unwrap_or(0) + 1
                        ),
                    );
                }
            }
        }
        // 1: every transaction ended, every dialog was forgotten.
        let (st, ct) = self.core.transactions();
        if st + ct != 0 {
            return v(
                1,
                None,
                format!(
                    "{st} server and {ct} client transactions left {}s after the last call",
                    QUIET.as_secs()
                ),
            );
        }
        // A dialog the core relayed a 2xx for, but whose BYE never reached
        // it (the 2xx was lost and the Edge died), lives its lifetime: the
        // core cannot know it is over.
        let unended = self
            .check
            .answered_by
            .keys()
            .filter(|c| !self.check.bye_reached.contains(*c))
            .count();
        if self.core.dialogs() > unended {
            return v(
                1,
                self.guess_dialog_left(),
                format!(
                    "{} dialogs left {}s after the last call ({unended} never ended); per Edge {:?}",
                    self.core.dialogs(),
                    QUIET.as_secs(),
                    self.core
                        .status()
                        .iter()
                        .map(|e| e.active_dialogs)
                        .collect::<Vec<_>>()
                ),
            );
        }
        if self.core.timers_queued() > 1 {
            return v(
                1,
                None,
                format!("{} timers still queued", self.core.timers_queued()),
            );
        }
        // 7: no call stays up on an Edge that never died.
        for e in &self.edges {
            if e.ever_silent {
                continue;
            }
            if let Some((tag, cid)) = e.up.iter().next() {
                return v(
                    7,
                    Some(cid),
                    format!("a call (tag {tag}) stays up on E{}", e.n + 1),
                );
            }
        }
        Ok(())
    }

    /// A call whose dialog may be the one left in the table: one whose BYE
    /// got no 2xx, else one whose INVITE got no final answer.
    fn guess_dialog_left(&self) -> Option<&str> {
        self.calls
            .iter()
            .find(|c| {
                c.dialogs
                    .iter()
                    .any(|d| !d.bye_code.is_some_and(|x| (200..300).contains(&x)))
            })
            .or_else(|| self.calls.iter().find(|c| c.finals.is_empty()))
            .map(|c| c.call_id.as_str())
    }

    /// The report of a violation: parameters, the broken invariant, and the
    /// trace of the call it concerns (or the global events).
    pub fn report(&self, v: &Violation) -> String {
        let mut r = String::new();
        let _ = writeln!(
            r,
            "invariant {} broken at t={:.3}s: {}",
            v.invariant,
            self.now.as_secs_f64(),
            v.what,
        );
        let _ = writeln!(r, "  replay: sim::run_one(&{})", self.p.rust());
        let lines: Vec<String> = self
            .trace
            .iter()
            .filter_map(|l| l.render(v.call.as_deref()))
            .collect();
        let _ = writeln!(
            r,
            "  trace of {} ({} lines):",
            v.call.as_deref().unwrap_or("the world"),
            lines.len()
        );
        for l in lines.iter().take(160) {
            let _ = writeln!(r, "  {l}");
        }
        if lines.len() > 160 {
            let _ = writeln!(r, "  ... {} more", lines.len() - 160);
        }
        r
    }
}

/// Runs one world; the error is a printable report.
pub fn run_one(p: &Params) -> Result<Stats, String> {
    let mut w = World::new(p);
    match w.run() {
        Ok(s) => Ok(s),
        Err(v) => Err(w.report(&v)),
    }
}
