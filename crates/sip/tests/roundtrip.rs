//! Property tests over generated SIP messages.
//!
//! A message model (methods with extension tokens, sip/sips/tel URIs,
//! IPv4/IPv6/domain hosts, Via lists with branch/rport/received, name-addrs
//! with quoted or token display names, Route/Record-Route/Contact lists,
//! bodies) is written out with every legal spelling the parser claims to
//! read: compact and mixed-case header names, blanks before the colon, LWS
//! and line folds at the points the RFC 3261 grammar allows them, values
//! of one header spread over several lines, headers in random order.
//!
//! (a) parse + validate succeed and every field reads back as generated;
//! (b) after the forwarding edits the output parses with every field intact,
//!     the edits visible and the untouched header lines byte-exact;
//! (c) mutations of a valid message never panic anywhere (the fuzz targets'
//!     bodies are run on them), and the stream decoder frames a
//!     concatenation of messages, split anywhere, into the same messages as
//!     datagram parsing.
//!
//! Not generated: LWS around the colon of a Via sent-by, which the parser
//! deliberately does not accept (see `Via::parse`). The checks of (c) are
//! the fuzz targets' own (crates/sip/fuzz/src/lib.rs, included below).
//! Case counts keep a debug run to a few seconds; PROPTEST_CASES=N runs N
//! cases per property instead.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use trunkvip_sip::{
    Editor, ErrorKind, Frame, HeaderName, Host, Limits, Message, Method, NameAddr, Scheme, Uri, Via,
};

// ---------------------------------------------------------------------------
// Writing: white space, case and spelling choices.

/// The choices made while writing a message: a xorshift stream from a
/// seed. Seed 0 (where shrinking goes) writes the plainest form; other
/// seeds write sparse or dense white space.
#[derive(Debug)]
struct Pen(u64, bool);

impl Pen {
    fn new(seed: u64) -> Pen {
        Pen(seed, seed % 3 == 1)
    }

    /// Sparse pens mostly keep to the plain form.
    fn plain(&mut self) -> bool {
        self.0 == 0 || (self.1 && self.pick(4) != 0)
    }

    fn pick(&mut self, n: usize) -> usize {
        if self.0 == 0 {
            return 0;
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.pick(2) == 1
    }

    /// SWS: nothing, blanks, or a line fold.
    fn sws(&mut self) -> &'static str {
        const S: [&str; 8] = ["", "", "", "", " ", "\t", "\r\n ", " \r\n\t "];
        if self.plain() {
            return "";
        }
        S[self.pick(S.len())]
    }

    /// LWS: at least one blank, maybe a fold.
    fn lws(&mut self) -> &'static str {
        const L: [&str; 6] = [" ", " ", "  ", "\t", "\r\n ", " \r\n\t"];
        if self.plain() {
            return " ";
        }
        L[self.pick(L.len())]
    }

    /// Between a header name and its colon: blanks only.
    fn before_colon(&mut self) -> &'static str {
        const B: [&str; 5] = ["", "", "", " ", "\t "];
        B[self.pick(B.len())]
    }

    /// Random letter case (for the case-insensitive parts).
    fn case(&mut self, s: &str) -> String {
        if self.pick(3) == 0 {
            return s.to_string();
        }
        s.chars()
            .map(|c| {
                if self.coin() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    fn zeros(&mut self) -> String {
        "0".repeat(self.pick(4).saturating_sub(2))
    }
}

// ---------------------------------------------------------------------------
// The model.

type ParamList = Vec<(String, Option<String>)>;

#[derive(Clone, Debug)]
enum HostM {
    V4(Ipv4Addr),
    V6(Ipv6Addr, bool),
    Domain(String),
}

impl HostM {
    fn render(&self) -> String {
        match self {
            HostM::V4(a) => a.to_string(),
            HostM::V6(a, upper) if *upper => format!("[{a}]").to_uppercase(),
            HostM::V6(a, _) => format!("[{a}]"),
            HostM::Domain(d) => d.clone(),
        }
    }

    fn expect(&self) -> Host<'_> {
        match self {
            HostM::V4(a) => Host::V4(*a),
            HostM::V6(a, _) => Host::V6(*a),
            HostM::Domain(d) => Host::Domain(d.as_bytes()),
        }
    }
}

#[derive(Clone, Debug)]
struct UriM {
    /// As written (sip, SIPS, tel...).
    scheme: String,
    kind: Scheme,
    /// The user part, or the number of a tel URI.
    user: Option<String>,
    password: Option<String>,
    host: Option<HostM>,
    port: Option<u16>,
    params: ParamList,
}

impl UriM {
    fn render(&self) -> String {
        let mut s = format!("{}:", self.scheme);
        if let Some(u) = &self.user {
            s += u;
            if let Some(p) = &self.password {
                s += ":";
                s += p;
            }
            if self.host.is_some() {
                s += "@";
            }
        }
        if let Some(h) = &self.host {
            s += &h.render();
        }
        if let Some(p) = self.port {
            s += &format!(":{p}");
        }
        for (n, v) in &self.params {
            s += ";";
            s += n;
            if let Some(v) = v {
                s += "=";
                s += v;
            }
        }
        s
    }
}

#[derive(Clone, Debug)]
enum DisplayM {
    None,
    /// Words of a token display name.
    Tokens(Vec<String>),
    /// The pieces of a quoted string's content, escapes written out.
    Quoted(Vec<String>),
}

#[derive(Clone, Debug)]
struct NameAddrM {
    display: DisplayM,
    uri: UriM,
    bracketed: bool,
    params: ParamList,
}

#[derive(Clone, Debug)]
struct ViaM {
    transport: String,
    host: HostM,
    port: Option<u16>,
    params: ParamList,
}

#[derive(Clone, Debug)]
enum ContactM {
    None,
    Star,
    Lines(Vec<Vec<NameAddrM>>),
}

#[derive(Clone, Debug)]
enum StartM {
    Request { method: String, uri: UriM },
    Response { code: u16, reason: String },
}

#[derive(Clone, Debug)]
struct MsgM {
    start: StartM,
    /// Via values by header line.
    vias: Vec<Vec<ViaM>>,
    from: NameAddrM,
    to: NameAddrM,
    call_id: String,
    cseq: u32,
    /// The CSeq method of a response (a request uses its own method).
    cseq_method: String,
    max_forwards: Option<u8>,
    routes: Vec<Vec<NameAddrM>>,
    record_routes: Vec<Vec<NameAddrM>>,
    contacts: ContactM,
    /// Headers the proxy does not read: name and value.
    others: Vec<(String, String)>,
    content_length: bool,
    body: Vec<u8>,
    leading_crlfs: usize,
    /// Seed of the spelling choices.
    pen: u64,
    /// Sort keys that shuffle the header lines.
    order: Vec<u16>,
}

impl MsgM {
    fn method(&self) -> Option<&str> {
        match &self.start {
            StartM::Request { method, .. } => Some(method),
            StartM::Response { .. } => None,
        }
    }

    fn via_values(&self) -> Vec<&ViaM> {
        self.vias.iter().flatten().collect()
    }
}

// ---------------------------------------------------------------------------
// Rendering.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Route,
    RecordRoute,
    Contact,
    ContentLength,
    Other,
}

#[derive(Clone, Debug)]
struct Line {
    kind: Kind,
    name: String,
    value: String,
    /// The whole line as written, folds and CRLF included.
    text: String,
}

/// A message as written, with what the parser must hand back.
#[derive(Clone, Debug)]
struct Written {
    bytes: Vec<u8>,
    /// Where the start line begins (after leading CRLFs).
    origin: usize,
    start_line: String,
    lines: Vec<Line>,
    from_display: Option<String>,
    to_display: Option<String>,
    route_displays: Vec<Option<String>>,
    rr_displays: Vec<Option<String>>,
    contact_displays: Vec<Option<String>>,
}

fn render_params(pen: &mut Pen, params: &ParamList, out: &mut String) {
    for (n, v) in params {
        out.push_str(pen.sws());
        out.push(';');
        out.push_str(pen.sws());
        out.push_str(n);
        if let Some(v) = v {
            out.push_str(pen.sws());
            out.push('=');
            out.push_str(pen.sws());
            out.push_str(v);
        }
    }
}

fn render_via(pen: &mut Pen, v: &ViaM) -> String {
    let mut s = String::new();
    s += "SIP";
    s += pen.sws();
    s += "/";
    s += pen.sws();
    s += "2.0";
    s += pen.sws();
    s += "/";
    s += pen.sws();
    s += &v.transport;
    s += pen.lws();
    s += &v.host.render();
    if let Some(p) = v.port {
        s += &format!(":{p}");
    }
    render_params(pen, &v.params, &mut s);
    s
}

/// The value and the display name the parser must report.
fn render_name_addr(pen: &mut Pen, n: &NameAddrM) -> (String, Option<String>) {
    let mut s = String::new();
    let display = match &n.display {
        DisplayM::None => None,
        DisplayM::Tokens(words) => {
            // display-name = *(token LWS): every word is followed by LWS.
            let mut d = String::new();
            for (k, w) in words.iter().enumerate() {
                d += w;
                let ws = pen.lws();
                if k + 1 < words.len() {
                    d += ws;
                }
                s += w;
                s += ws;
            }
            Some(d)
        }
        DisplayM::Quoted(pieces) => {
            let q = format!("\"{}\"", pieces.concat());
            s += &q;
            Some(q)
        }
    };
    if n.bracketed {
        if display.is_some() {
            s += pen.sws();
        }
        s += "<";
        s += &n.uri.render();
        s += ">";
    } else {
        s += &n.uri.render();
    }
    render_params(pen, &n.params, &mut s);
    (s, display)
}

fn join_values(pen: &mut Pen, values: Vec<String>) -> String {
    let mut s = String::new();
    for (k, v) in values.into_iter().enumerate() {
        if k > 0 {
            s += pen.sws();
            s += ",";
            s += pen.sws();
        }
        s += &v;
    }
    s
}

fn line(pen: &mut Pen, kind: Kind, full: &str, compact: Option<&str>, value: String) -> Line {
    let name = match compact {
        Some(c) if pen.pick(3) == 0 => pen.case(c),
        _ => pen.case(full),
    };
    let text = format!("{name}{}:{}{value}\r\n", pen.before_colon(), pen.sws());
    Line {
        kind,
        name,
        value,
        text,
    }
}

fn render(m: &MsgM) -> Written {
    let mut pen = Pen::new(m.pen);
    let version = pen.case("SIP/2.0");
    let start_line = match &m.start {
        StartM::Request { method, uri } => format!("{method} {} {version}\r\n", uri.render()),
        StartM::Response { code, reason } => format!("{version} {code} {reason}\r\n"),
    };
    let mut lines = Vec::new();
    for values in &m.vias {
        let v = values.iter().map(|v| render_via(&mut pen, v)).collect();
        let v = join_values(&mut pen, v);
        lines.push(line(&mut pen, Kind::Via, "Via", Some("v"), v));
    }
    let (from, from_display) = render_name_addr(&mut pen, &m.from);
    lines.push(line(&mut pen, Kind::From, "From", Some("f"), from));
    let (to, to_display) = render_name_addr(&mut pen, &m.to);
    lines.push(line(&mut pen, Kind::To, "To", Some("t"), to));
    lines.push(line(
        &mut pen,
        Kind::CallId,
        "Call-ID",
        Some("i"),
        m.call_id.clone(),
    ));
    let cseq_method = m.method().unwrap_or(&m.cseq_method).to_string();
    let cseq = format!("{}{}{}{cseq_method}", pen.zeros(), m.cseq, pen.lws());
    lines.push(line(&mut pen, Kind::CSeq, "CSeq", None, cseq));
    if let Some(n) = m.max_forwards {
        let v = format!("{}{n}", pen.zeros());
        lines.push(line(&mut pen, Kind::MaxForwards, "Max-Forwards", None, v));
    }
    let mut list = |pen: &mut Pen,
                    kind: Kind,
                    full: &str,
                    compact: Option<&str>,
                    values: &[Vec<NameAddrM>]|
     -> Vec<Option<String>> {
        let mut displays = Vec::new();
        for l in values {
            let mut vs = Vec::new();
            for n in l {
                let (v, d) = render_name_addr(pen, n);
                vs.push(v);
                displays.push(d);
            }
            let v = join_values(pen, vs);
            lines.push(line(pen, kind, full, compact, v));
        }
        displays
    };
    let route_displays = list(&mut pen, Kind::Route, "Route", None, &m.routes);
    let rr_displays = list(
        &mut pen,
        Kind::RecordRoute,
        "Record-Route",
        None,
        &m.record_routes,
    );
    let contact_displays = match &m.contacts {
        ContactM::None => vec![],
        ContactM::Star => {
            lines.push(line(
                &mut pen,
                Kind::Contact,
                "Contact",
                Some("m"),
                "*".into(),
            ));
            vec![]
        }
        ContactM::Lines(l) => list(&mut pen, Kind::Contact, "Contact", Some("m"), l),
    };
    for (n, v) in &m.others {
        lines.push(Line {
            kind: Kind::Other,
            name: n.clone(),
            value: v.clone(),
            text: format!("{n}:{}{v}\r\n", pen.sws()),
        });
    }
    if m.content_length {
        let v = format!("{}{}", pen.zeros(), m.body.len());
        lines.push(line(
            &mut pen,
            Kind::ContentLength,
            "Content-Length",
            Some("l"),
            v,
        ));
    }
    // Shuffle the lines, then put the lines of each kind back in their
    // order: the order of list values is what the message means.
    let mut keyed: Vec<(u16, usize)> = (0..lines.len())
        .map(|k| (m.order.get(k).copied().unwrap_or(0), k))
        .collect();
    keyed.sort();
    let shuffled_kinds: Vec<Kind> = keyed.iter().map(|&(_, k)| lines[k].kind).collect();
    let mut queues: Vec<(Kind, std::collections::VecDeque<Line>)> = Vec::new();
    for l in lines {
        match queues.iter_mut().find(|(k, _)| *k == l.kind) {
            Some((_, q)) => q.push_back(l),
            None => queues.push((l.kind, [l].into())),
        }
    }
    let lines: Vec<Line> = shuffled_kinds
        .iter()
        .map(|k| {
            let q = &mut queues.iter_mut().find(|(x, _)| x == k).unwrap().1;
            q.pop_front().unwrap()
        })
        .collect();

    let mut bytes = b"\r\n".repeat(m.leading_crlfs);
    let origin = bytes.len();
    bytes.extend_from_slice(start_line.as_bytes());
    for l in &lines {
        bytes.extend_from_slice(l.text.as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&m.body);
    Written {
        bytes,
        origin,
        start_line,
        lines,
        from_display,
        to_display,
        route_displays,
        rr_displays,
        contact_displays,
    }
}

// ---------------------------------------------------------------------------
// Strategies.

const TOKEN: &str = "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,9}";

fn token() -> impl Strategy<Value = String> {
    TOKEN
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    (any::<[u16; 8]>(), 0..8usize, 0..8usize).prop_map(|(mut s, at, n)| {
        // Runs of zeros, so that the written form uses `::`.
        for x in s.iter_mut().skip(at).take(n) {
            *x = 0;
        }
        Ipv6Addr::from(s)
    })
}

fn domain() -> impl Strategy<Value = String> {
    "([a-zA-Z0-9]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?\\.){0,3}[a-zA-Z]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?\\.?"
}

fn host() -> impl Strategy<Value = HostM> {
    prop_oneof![
        ipv4().prop_map(HostM::V4),
        (ipv6(), any::<bool>()).prop_map(|(a, up)| HostM::V6(a, up)),
        domain().prop_map(HostM::Domain),
    ]
}

fn port() -> impl Strategy<Value = Option<u16>> {
    prop::option::of(prop_oneof![Just(5060u16), Just(5061), any::<u16>()])
}

/// Keeps the first of each name (case-insensitive), so `get` is defined.
fn dedup(mut params: ParamList) -> ParamList {
    let mut seen: Vec<String> = Vec::new();
    params.retain(|(n, _)| {
        let l = n.to_ascii_lowercase();
        let new = !seen.contains(&l);
        seen.push(l);
        new
    });
    params
}

fn uri_params() -> impl Strategy<Value = ParamList> {
    let one = prop_oneof![
        Just(("lr".to_string(), None)),
        prop::sample::select(vec!["udp", "tcp", "TLS", "sctp", "ws"])
            .prop_map(|t| ("transport".to_string(), Some(t.to_string()))),
        Just(("user".to_string(), Some("phone".to_string()))),
        domain().prop_map(|d| ("maddr".to_string(), Some(d))),
        (
            "[a-zA-Z][a-zA-Z0-9-]{0,7}",
            prop::option::of("[A-Za-z0-9._~-]{1,10}")
        ),
    ];
    prop::collection::vec(one, 0..4).prop_map(dedup)
}

fn sip_uri() -> impl Strategy<Value = UriM> {
    (
        prop::sample::select(vec!["sip", "sip", "sips", "SIP", "Sips"]),
        prop::option::weighted(0.8, "([A-Za-z0-9_.!~*'()&=+$-]|%[0-9A-Fa-f]{2}){1,10}"),
        prop::option::weighted(0.1, "([A-Za-z0-9&=+$,-]|%[0-9A-F]{2}){0,6}"),
        host(),
        port(),
        uri_params(),
    )
        .prop_map(|(scheme, user, password, host, port, params)| UriM {
            kind: if scheme.eq_ignore_ascii_case("sips") {
                Scheme::Sips
            } else {
                Scheme::Sip
            },
            scheme: scheme.to_string(),
            password: user.as_ref().and(password),
            user,
            host: Some(host),
            port,
            params,
        })
}

fn tel_uri() -> impl Strategy<Value = UriM> {
    (
        prop::sample::select(vec!["tel", "TEL"]),
        "\\+?[0-9]{1,3}(-?[0-9]{2,4}){1,3}",
        prop::option::of(domain()),
    )
        .prop_map(|(scheme, number, ctx)| UriM {
            scheme: scheme.to_string(),
            kind: Scheme::Tel,
            user: Some(number),
            password: None,
            host: None,
            port: None,
            params: ctx
                .map(|d| vec![("phone-context".to_string(), Some(d))])
                .unwrap_or_default(),
        })
}

fn uri() -> impl Strategy<Value = UriM> {
    prop_oneof![4 => sip_uri(), 1 => tel_uri()]
}

/// A header parameter value: token, host or quoted string.
fn gen_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => token(),
        1 => host().prop_map(|h| h.render()),
        1 => "[ a-zA-Z0-9;,<>=:@/]{0,12}".prop_map(|s| format!("\"{s}\"")),
    ]
}

/// Extension parameters (x- names never clash with the ones read).
fn ext_params(max: usize) -> impl Strategy<Value = ParamList> {
    prop::collection::vec(
        ("[xX]-[a-zA-Z0-9]{1,6}", prop::option::of(gen_value())),
        0..max,
    )
}

fn display() -> impl Strategy<Value = DisplayM> {
    let quoted_piece = prop_oneof![
        6 => "[ a-zA-Z0-9,;<>:@/()*'=.?-]{1,4}",
        1 => Just("\t".to_string()),
        1 => Just("\u{e9}t\u{e9}".to_string()),
        1 => Just("\r\n ".to_string()),
        2 => prop::sample::select(vec!["\\\"", "\\\\", "\\a", "\\;", "\\ "]).prop_map(String::from),
    ];
    prop_oneof![
        2 => Just(DisplayM::None),
        1 => prop::collection::vec(token(), 1..3).prop_map(DisplayM::Tokens),
        2 => prop::collection::vec(quoted_piece, 0..6).prop_map(DisplayM::Quoted),
    ]
}

fn name_addr(with_tag: bool, extra: BoxedStrategy<ParamList>) -> impl Strategy<Value = NameAddrM> {
    (
        display(),
        uri(),
        any::<bool>(),
        prop::option::weighted(0.7, token()),
        prop::sample::select(vec!["tag", "TAG", "Tag"]),
        extra,
    )
        .prop_map(move |(display, uri, bracket, tag, tag_name, extra)| {
            let mut params: ParamList = tag
                .filter(|_| with_tag)
                .map(|t| vec![(tag_name.to_string(), Some(t))])
                .unwrap_or_default();
            params.extend(extra);
            // The addr-spec form only without display name, and for a URI
            // without `,`, `;` or `?` (RFC 3261 section 20).
            let bracketed = bracket
                || !matches!(display, DisplayM::None)
                || uri.render().contains([',', ';', '?']);
            NameAddrM {
                display,
                uri,
                bracketed,
                params: dedup(params),
            }
        })
}

fn route_value() -> impl Strategy<Value = NameAddrM> {
    (
        prop_oneof![3 => Just(DisplayM::None), 1 => display()],
        sip_uri(),
        ext_params(2),
    )
        .prop_map(|(display, mut uri, params)| {
            if !uri.params.iter().any(|(n, _)| n == "lr") {
                uri.params.insert(0, ("lr".into(), None));
            }
            uri.params = dedup(uri.params);
            NameAddrM {
                display,
                uri,
                bracketed: true,
                params: dedup(params),
            }
        })
}

fn contact_value() -> impl Strategy<Value = NameAddrM> {
    let contact_params = prop::collection::vec(
        prop_oneof![
            (0u32..100000).prop_map(|e| ("expires".to_string(), Some(e.to_string()))),
            prop::sample::select(vec!["0", "0.5", "1", "0.125"])
                .prop_map(|q| ("q".to_string(), Some(q.to_string()))),
            "[0-9a-f]{8}".prop_map(|u| (
                "+sip.instance".to_string(),
                Some(format!("\"<urn:uuid:{u}-0000-4000-8000-000000000000>\""))
            )),
            ("[xX]-[a-z]{1,5}", prop::option::of(gen_value())),
        ],
        0..3,
    );
    name_addr(false, contact_params.boxed())
}

fn via() -> impl Strategy<Value = ViaM> {
    let received = prop_oneof![
        ipv4().prop_map(|a| a.to_string()),
        ipv6().prop_map(|a| a.to_string()),
        ipv6().prop_map(|a| format!("[{a}]")),
    ];
    (
        prop::sample::select(vec!["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "Tls"]),
        host(),
        port(),
        prop::option::weighted(0.85, "z9hG4bK[A-Za-z0-9.!%*_+`'~-]{1,16}"),
        prop::option::weighted(0.4, prop::option::of(any::<u16>())),
        prop::option::weighted(0.3, received),
        prop::option::weighted(0.1, 0u8..=255),
        ext_params(2),
        any::<u64>(),
    )
        .prop_map(
            |(transport, host, port, branch, rport, received, ttl, extra, shuffle)| {
                let mut pen = Pen::new(shuffle);
                let mut params: ParamList = Vec::new();
                if let Some(b) = branch {
                    params.push((pen.case("branch"), Some(b)));
                }
                if let Some(r) = rport {
                    params.push((pen.case("rport"), r.map(|p| p.to_string())));
                }
                if let Some(r) = received {
                    params.push((pen.case("received"), Some(r)));
                }
                if let Some(t) = ttl {
                    params.push(("ttl".into(), Some(t.to_string())));
                }
                params.extend(extra);
                let mut params = dedup(params);
                // Parameters come in any order.
                for k in (1..params.len()).rev() {
                    params.swap(k, pen.pick(k + 1));
                }
                ViaM {
                    transport: transport.to_string(),
                    host,
                    port,
                    params,
                }
            },
        )
}

const METHODS: [(&str, Method); 14] = [
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("OPTIONS", Method::Options),
    ("REGISTER", Method::Register),
    ("PRACK", Method::Prack),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("PUBLISH", Method::Publish),
    ("INFO", Method::Info),
    ("REFER", Method::Refer),
    ("MESSAGE", Method::Message),
    ("UPDATE", Method::Update),
];

fn method_of(name: &str) -> Method {
    METHODS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Method::Other, |&(_, m)| m)
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(METHODS.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>()),
        1 => TOKEN.prop_map(|t| t.to_string()),
    ]
}

fn call_id() -> impl Strategy<Value = String> {
    let word = "[A-Za-z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,16}";
    (word, prop::option::of(word)).prop_map(|(a, b)| match b {
        Some(b) => format!("{a}@{b}"),
        None => a,
    })
}

fn others() -> impl Strategy<Value = Vec<(String, String)>> {
    let one = prop_oneof![
        (
            "[xX]-[A-Za-z0-9-]{1,10}",
            "[!-~]([ -~]{0,20}[!-~])?",
            any::<bool>()
        )
            .prop_map(|(n, v, fold)| {
                // Extension values may hold LWS, a fold included.
                let v = if fold { v.replacen(' ', "\r\n ", 1) } else { v };
                (n, v)
            }),
        Just((
            "Allow".to_string(),
            "INVITE, ACK, BYE, CANCEL, OPTIONS".to_string()
        )),
        Just(("k".to_string(), "timer,100rel".to_string())),
        Just((
            "User-Agent".to_string(),
            "trunkvip-proptest/1.0".to_string()
        )),
        Just(("c".to_string(), "application/sdp".to_string())),
        Just((
            "Subject".to_string(),
            "Need more boxes, \"quoted\" <not a URI>".to_string()
        )),
    ];
    prop::collection::vec(one, 0..4)
}

fn lists<T: std::fmt::Debug>(
    values: impl Strategy<Value = T>,
    lines: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<Vec<T>>> {
    prop::collection::vec(prop::collection::vec(values, 1..4), lines)
}

/// What kind of message to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Request,
    Response,
    Either,
}

fn message(want: Want, content_length: bool) -> impl Strategy<Value = MsgM> {
    let request = (method(), uri()).prop_map(|(method, uri)| StartM::Request { method, uri });
    let response = (100u16..700, "[A-Za-z0-9 .,'()/-]{0,24}")
        .prop_map(|(code, reason)| StartM::Response { code, reason });
    let start = match want {
        Want::Request => request.boxed(),
        Want::Response => response.boxed(),
        Want::Either => prop_oneof![request, response].boxed(),
    };
    let contacts = prop_oneof![
        2 => Just(ContactM::None),
        1 => Just(ContactM::Star),
        3 => lists(contact_value(), 1..3).prop_map(ContactM::Lines),
    ];
    (
        (
            start,
            lists(via(), 1..4),
            name_addr(true, ext_params(2).boxed()),
            name_addr(true, ext_params(2).boxed()),
            call_id(),
            0u32..(1 << 31),
            method(),
            prop::option::weighted(0.8, any::<u8>()),
        ),
        (
            lists(route_value(), 0..3),
            lists(route_value(), 0..3),
            contacts,
            others(),
            0..5u8,
            prop::collection::vec(any::<u8>(), 0..120),
            0..3usize,
            any::<u64>(),
            prop::collection::vec(any::<u16>(), 40),
        ),
    )
        .prop_map(
            move |(
                (start, vias, from, to, call_id, cseq, cseq_method, max_forwards),
                (routes, record_routes, contacts, others, cl, body, crlfs, pen, order),
            )| MsgM {
                start,
                vias,
                from,
                to,
                call_id,
                cseq,
                cseq_method,
                max_forwards,
                routes,
                record_routes,
                contacts,
                others,
                content_length: content_length || cl > 0,
                body,
                leading_crlfs: if content_length { 0 } else { crlfs },
                pen,
                order,
            },
        )
}

// ---------------------------------------------------------------------------
// Checks.

fn b(s: &str) -> &[u8] {
    s.as_bytes()
}

fn param_list<'a>(p: &trunkvip_sip::Params<'a>) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
    p.iter().map(|p| (p.name, p.value)).collect()
}

fn model_params(p: &ParamList) -> Vec<(&[u8], Option<&[u8]>)> {
    p.iter().map(|(n, v)| (b(n), v.as_deref().map(b))).collect()
}

fn model_get<'a>(p: &'a ParamList, name: &str) -> Option<Option<&'a [u8]>> {
    p.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref().map(b))
}

fn check_uri(u: &Uri<'_>, m: &UriM) {
    assert_eq!(u.raw, b(&m.render()));
    assert_eq!(u.scheme, m.kind);
    assert_eq!(u.user, m.user.as_deref().map(b));
    assert_eq!(u.password, m.password.as_deref().map(b));
    assert_eq!(u.host, m.host.as_ref().map(HostM::expect));
    assert_eq!(u.port, m.port);
    assert_eq!(param_list(&u.params), model_params(&m.params));
    assert_eq!(u.headers, None);
    assert_eq!(u.transport(), model_get(&m.params, "transport").flatten());
    assert_eq!(u.has_lr(), model_get(&m.params, "lr").is_some());
    if u.is_sip() {
        assert!(u.equivalent(u));
    }
}

fn check_name_addr(n: &NameAddr<'_>, m: &NameAddrM, display: &Option<String>) {
    assert_eq!(n.display, display.as_deref().map(b));
    assert_eq!(n.uri, b(&m.uri.render()));
    assert_eq!(n.bracketed, m.bracketed);
    assert_eq!(param_list(&n.params), model_params(&m.params));
    assert_eq!(n.tag(), model_get(&m.params, "tag").flatten());
    check_uri(&n.parsed_uri().unwrap(), &m.uri);
}

fn check_via(v: &Via<'_>, m: &ViaM) {
    assert_eq!(v.protocol_name, b"SIP");
    assert_eq!(v.protocol_version, b"2.0");
    assert_eq!(v.transport, b(&m.transport));
    assert_eq!(v.host, m.host.expect());
    assert_eq!(v.port, m.port);
    let sent_by = match m.port {
        Some(p) => format!("{}:{p}", m.host.render()),
        None => m.host.render(),
    };
    assert_eq!(v.sent_by, b(&sent_by));
    assert_eq!(param_list(&v.params), model_params(&m.params));
    assert_eq!(v.branch(), model_get(&m.params, "branch").flatten());
    assert_eq!(v.received(), model_get(&m.params, "received").flatten());
    let rport = model_get(&m.params, "rport")
        .map(|v| v.map(|p| std::str::from_utf8(p).unwrap().parse::<u16>().unwrap()));
    assert_eq!(v.rport(), rport);
    assert_eq!(
        v.has_rfc3261_branch(),
        model_get(&m.params, "branch")
            .flatten()
            .is_some_and(|b| b.len() > 7)
    );
}

fn check_name_addrs<'a>(
    got: impl Iterator<Item = Result<NameAddr<'a>, trunkvip_sip::Error>>,
    want: &[Vec<NameAddrM>],
    displays: &[Option<String>],
) {
    let got: Vec<_> = got.map(Result::unwrap).collect();
    let want: Vec<_> = want.iter().flatten().collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(want.len(), displays.len());
    for ((g, w), d) in got.iter().zip(want).zip(displays) {
        check_name_addr(g, w, d);
    }
}

/// Property (a): everything reads back as it was generated.
fn check_message(m: &Message, model: &MsgM, w: &Written) {
    if let Err(e) = m.validate() {
        panic!("validate: {e}");
    }
    assert_eq!(m.as_bytes(), &w.bytes[w.origin..]);
    match &model.start {
        StartM::Request { method, uri } => {
            assert!(m.is_request());
            assert_eq!(m.method_bytes(), Some(b(method)));
            assert_eq!(m.method(), Some(method_of(method)));
            assert_eq!(m.request_uri_bytes(), Some(b(&uri.render())));
            check_uri(&m.request_uri().unwrap().unwrap(), uri);
            assert_eq!((m.status(), m.reason()), (None, None));
        }
        StartM::Response { code, reason } => {
            assert!(!m.is_request());
            assert_eq!(m.status(), Some(*code));
            assert_eq!(m.reason(), Some(b(reason)));
            assert_eq!(m.method(), None);
        }
    }
    // Every header line, as written and in order.
    let got: Vec<_> = m.headers().collect();
    let want: Vec<_> = w.lines.iter().map(|l| (b(&l.name), b(&l.value))).collect();
    assert_eq!(got, want);
    assert_eq!(m.header_count(), w.lines.len());
    for l in w.lines.iter().filter(|l| l.kind == Kind::Other) {
        let first = w
            .lines
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(&l.name))
            .unwrap();
        assert_eq!(m.header_named(b(&l.name)), Some(b(&first.value)));
    }
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    let want_vias = model.via_values();
    assert_eq!(vias.len(), want_vias.len());
    for (v, w) in vias.iter().zip(&want_vias) {
        check_via(v, w);
    }
    check_via(&m.top_via().unwrap(), want_vias[0]);
    assert_eq!(m.call_id().unwrap(), b(&model.call_id));
    let cseq = m.cseq().unwrap();
    let cseq_method = model.method().unwrap_or(&model.cseq_method);
    assert_eq!(cseq.seq, model.cseq);
    assert_eq!(cseq.method_raw, b(cseq_method));
    assert_eq!(cseq.method, method_of(cseq_method));
    check_name_addr(&m.from().unwrap(), &model.from, &w.from_display);
    check_name_addr(&m.to().unwrap(), &model.to, &w.to_display);
    assert_eq!(m.max_forwards().unwrap(), model.max_forwards);
    check_name_addrs(m.routes(), &model.routes, &w.route_displays);
    check_name_addrs(m.record_routes(), &model.record_routes, &w.rr_displays);
    match &model.contacts {
        ContactM::None => assert_eq!(m.contacts().count(), 0),
        ContactM::Star => {
            let c: Vec<_> = m.contacts().map(Result::unwrap).collect();
            assert!(matches!(c[..], [None]));
        }
        ContactM::Lines(l) => check_name_addrs(
            m.contacts().map(|c| c.map(Option::unwrap)),
            l,
            &w.contact_displays,
        ),
    }
    assert_eq!(
        m.content_length(),
        model.content_length.then_some(model.body.len())
    );
    assert_eq!(m.body(), &model.body[..]);
}

fn parse_written(model: &MsgM) -> (Message, Written) {
    let w = render(model);
    let m = Message::parse(Bytes::from(w.bytes.clone())).unwrap_or_else(|e| {
        panic!(
            "parse: {e}\n{}",
            String::from_utf8_lossy(&w.bytes).escape_debug()
        )
    });
    (m, w)
}

/// The untouched lines appear in the output byte-exact and in order.
fn assert_kept(out: &[u8], kept: &[&Line]) {
    let mut pos = 0;
    for l in kept {
        let text = b(&l.text);
        match out[pos..].windows(text.len()).position(|x| x == text) {
            Some(n) => pos += n + text.len(),
            None => panic!(
                "line not kept byte-exact: {:?}\nin {:?}",
                l.text,
                String::from_utf8_lossy(out)
            ),
        }
    }
}

/// The edits of property (b) for a request.
#[derive(Clone, Debug)]
struct RequestEdits {
    via: ViaM,
    received: Option<IpAddr>,
    rport: Option<u16>,
    record_route: NameAddrM,
    pop_route: bool,
    max_forwards: u8,
    request_uri: UriM,
}

fn request_edits() -> impl Strategy<Value = RequestEdits> {
    (
        via(),
        prop::option::of(prop_oneof![
            ipv4().prop_map(IpAddr::V4),
            ipv6().prop_map(IpAddr::V6)
        ]),
        prop::option::of(any::<u16>()),
        route_value(),
        any::<bool>(),
        any::<u8>(),
        uri(),
    )
        .prop_map(
            |(via, received, rport, record_route, pop_route, max_forwards, request_uri)| {
                RequestEdits {
                    via,
                    received,
                    rport,
                    record_route,
                    pop_route,
                    max_forwards,
                    request_uri,
                }
            },
        )
}

fn check_request_edits(model: &MsgM, e: &RequestEdits) {
    let (m, w) = parse_written(model);
    let mut plain = Pen::new(0);
    let new_via = render_via(&mut plain, &e.via);
    let (new_rr, rr_display) = render_name_addr(&mut plain, &e.record_route);
    let new_ruri = e.request_uri.render();

    let mut ed = Editor::new(&m);
    ed.push_via(b(&new_via));
    ed.set_top_via_received(e.received, e.rport);
    let popped = e.pop_route && ed.pop_route();
    ed.insert_record_route(b(&new_rr));
    ed.set_max_forwards(e.max_forwards);
    ed.set_request_uri(b(&new_ruri));
    ed.add_header("Trunkvip-Added", b"yes");
    let len = ed.len();
    let out = ed.to_bytes();
    assert_eq!(out.len(), len);
    let f = Message::parse(out.clone()).unwrap_or_else(|err| {
        panic!(
            "re-parse: {err}\n{}",
            String::from_utf8_lossy(&out).escape_debug()
        )
    });
    f.validate().unwrap();

    // The edits are visible.
    let mut top = model.via_values()[0].clone();
    if let (Some(p), Some(k)) = (
        e.rport,
        top.params
            .iter()
            .position(|(n, v)| n.eq_ignore_ascii_case("rport") && v.is_none()),
    ) {
        top.params[k] = ("rport".into(), Some(p.to_string()));
    }
    if let Some(ip) = e.received {
        let text = match ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let k = top
            .params
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("received"));
        match k {
            // An existing received (set by the sender) is replaced.
            Some(k) => top.params[k] = ("received".into(), Some(text)),
            None => top.params.push(("received".into(), Some(text))),
        }
    }
    let mut want_vias = vec![&e.via, &top];
    want_vias.extend(model.via_values().into_iter().skip(1));
    let vias: Vec<_> = f.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), want_vias.len());
    for (v, w) in vias.iter().zip(want_vias) {
        check_via(v, w);
    }
    let had_routes = !model.routes.is_empty();
    assert_eq!(popped, e.pop_route && had_routes);
    let mut routes = model.routes.clone();
    let mut route_displays = w.route_displays.clone();
    if popped {
        routes[0].remove(0);
        route_displays.remove(0);
    }
    check_name_addrs(f.routes(), &routes, &route_displays);
    let mut rrs = vec![vec![e.record_route.clone()]];
    rrs.extend(model.record_routes.iter().cloned());
    let mut rr_displays = vec![rr_display];
    rr_displays.extend(w.rr_displays.iter().cloned());
    check_name_addrs(f.record_routes(), &rrs, &rr_displays);
    assert_eq!(f.max_forwards().unwrap(), Some(e.max_forwards));
    assert_eq!(f.request_uri_bytes(), Some(b(&new_ruri)));
    check_uri(&f.request_uri().unwrap().unwrap(), &e.request_uri);
    assert_eq!(f.header_named(b"trunkvip-added"), Some(&b"yes"[..]));

    // Everything else is intact.
    assert_eq!(f.method_bytes(), m.method_bytes());
    assert_eq!(f.call_id().unwrap(), b(&model.call_id));
    assert_eq!(f.cseq().unwrap(), m.cseq().unwrap());
    check_name_addr(&f.from().unwrap(), &model.from, &w.from_display);
    check_name_addr(&f.to().unwrap(), &model.to, &w.to_display);
    let contacts_in: Vec<_> = m.contacts().map(|c| c.unwrap().map(|n| n.raw)).collect();
    let contacts_out: Vec<_> = f.contacts().map(|c| c.unwrap().map(|n| n.raw)).collect();
    assert_eq!(contacts_in, contacts_out);
    assert_eq!(f.content_length(), m.content_length());
    assert_eq!(f.body(), &model.body[..]);

    // Untouched lines byte-exact: all but the top Via line, the popped
    // Route line and Max-Forwards.
    let first_via = w.lines.iter().position(|l| l.kind == Kind::Via);
    let first_route = w.lines.iter().position(|l| l.kind == Kind::Route);
    let kept: Vec<&Line> = w
        .lines
        .iter()
        .enumerate()
        .filter(|&(k, l)| {
            Some(k) != first_via
                && !(popped && Some(k) == first_route)
                && l.kind != Kind::MaxForwards
        })
        .map(|(_, l)| l)
        .collect();
    assert_kept(&out, &kept);
    assert!(out.ends_with(&model.body));
}

fn check_response_edits(model: &MsgM) {
    let (m, w) = parse_written(model);
    let mut ed = Editor::new(&m);
    assert!(ed.pop_via());
    let out = ed.to_bytes();
    let f = Message::parse(out.clone()).unwrap();
    let want = model.via_values();
    match f.validate() {
        Ok(()) => assert!(want.len() > 1),
        Err(e) => {
            // Popping the only Via leaves a response without one.
            assert_eq!(want.len(), 1);
            assert!(matches!(e.kind(), ErrorKind::Missing(s) if s.contains(HeaderName::Via)));
        }
    }
    let vias: Vec<_> = f.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), want.len() - 1);
    for (v, w) in vias.iter().zip(&want[1..]) {
        check_via(v, w);
    }
    assert_eq!(f.status(), m.status());
    assert_eq!(f.reason(), m.reason());
    assert_eq!(f.call_id().unwrap(), b(&model.call_id));
    assert_eq!(f.cseq().unwrap(), m.cseq().unwrap());
    check_name_addr(&f.from().unwrap(), &model.from, &w.from_display);
    check_name_addr(&f.to().unwrap(), &model.to, &w.to_display);
    check_name_addrs(f.record_routes(), &model.record_routes, &w.rr_displays);
    assert_eq!(f.max_forwards().unwrap(), model.max_forwards);
    assert_eq!(f.body(), &model.body[..]);
    assert!(out.starts_with(b(&w.start_line)));
    let first_via = w.lines.iter().position(|l| l.kind == Kind::Via);
    let kept: Vec<&Line> = w
        .lines
        .iter()
        .enumerate()
        .filter(|&(k, _)| Some(k) != first_via)
        .map(|(_, l)| l)
        .collect();
    assert_kept(&out, &kept);
    // Exactly the first value (with its comma) or line is gone.
    assert!(out.len() < m.as_bytes().len());
}

// ---------------------------------------------------------------------------
// Mutations.

#[derive(Clone, Debug)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Duplicate(Index, usize),
    Truncate(Index),
    Swap(Index, Index),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        prop::sample::select(b"\r\n \t:;,=\"<>\\[]%@/?.0123456789zZ".to_vec()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), interesting_byte()).prop_map(|(i, c)| Mutation::Set(i, c)),
        3 => (any::<Index>(), prop::collection::vec(interesting_byte(), 1..6))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        3 => (any::<Index>(), 1..12usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), 1..40usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
    ]
}

fn mutate(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if v.is_empty() {
            break;
        }
        let len = v.len();
        match m {
            Mutation::Set(i, c) => v[i.index(len)] = *c,
            Mutation::Insert(i, bytes) => {
                let at = i.index(len + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = i.index(len);
                v.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate(i, n) => {
                let at = i.index(len);
                let piece = v[at..(at + n).min(len)].to_vec();
                v.splice(at..at, piece);
            }
            Mutation::Truncate(i) => v.truncate(i.index(len)),
            Mutation::Swap(a, b) => v.swap(a.index(len), b.index(len)),
        }
    }
    v
}

// ---------------------------------------------------------------------------
// The properties.

/// `cases` per property, or PROPTEST_CASES when set (for longer runs).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// (a) Requests and responses read back field by field.
    #[test]
    fn generated_messages_read_back(model in message(Want::Either, false)) {
        let (m, w) = parse_written(&model);
        check_message(&m, &model, &w);
        // The fuzz harness's own checks hold too.
        prop_assert!(fuzz::exercise(&m));
    }

    /// (b) Forwarding edits of a request: visible, and nothing else moves.
    #[test]
    fn request_edits_keep_the_rest(
        model in message(Want::Request, false),
        edits in request_edits(),
    ) {
        check_request_edits(&model, &edits);
    }

    /// (b) pop_via of a response.
    #[test]
    fn response_pop_via_keeps_the_rest(model in message(Want::Response, false)) {
        check_response_edits(&model);
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// (c) Mutated messages never panic: datagram parse, validate, every
    /// accessor, the editor, and the stream decoder in random chunks (the
    /// fuzz targets' bodies, with their own assertions).
    #[test]
    fn mutated_messages_never_panic(
        model in message(Want::Either, false),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = mutate(render(&model).bytes, &muts);
        fuzz::datagram(&bytes);
        fuzz::stream(&bytes);
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// (c) A stream of messages and keep-alives, split at random points,
    /// frames into the messages datagram parsing sees.
    #[test]
    fn stream_frames_like_datagrams(
        models in prop::collection::vec((message(Want::Either, true), any::<bool>()), 1..5),
        sizes in prop::collection::vec(1..300usize, 1..20),
    ) {
        let mut data = Vec::new();
        let mut want = Vec::new();
        for (model, ping) in &models {
            if *ping {
                data.extend_from_slice(b"\r\n\r\n");
            }
            let bytes = render(model).bytes;
            data.extend_from_slice(&bytes);
            want.push((*ping, bytes));
        }
        let (frames, failed) = fuzz::decode_chunked(&data, &sizes, Limits::default());
        prop_assert!(!failed);
        let mut frames = frames.into_iter();
        for (ping, bytes) in want {
            if ping {
                prop_assert!(matches!(frames.next(), Some(Frame::Ping)));
            }
            let Some(Frame::Message(s)) = frames.next() else {
                panic!("expected a message");
            };
            let d = Message::parse(Bytes::from(bytes.clone())).unwrap();
            prop_assert_eq!(s.as_bytes(), &bytes[..]);
            prop_assert_eq!(s.as_bytes(), d.as_bytes());
            prop_assert!(s.headers().eq(d.headers()));
            prop_assert_eq!(s.body(), d.body());
            prop_assert_eq!(s.content_length(), d.content_length());
            s.validate().unwrap();
            fuzz::check_stream_message(&s, &Limits::default());
        }
        prop_assert!(frames.next().is_none());
    }
}
