use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::*;
use crate::config::Config;

fn naptr(order: u16, preference: u16, flags: &str, service: &str, replacement: &str) -> Naptr {
    Naptr {
        order,
        preference,
        flags: flags.into(),
        service: service.into(),
        replacement: replacement.into(),
    }
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
    Srv {
        priority,
        weight,
        port,
        target: target.into(),
    }
}

const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

#[test]
fn naptr_keeps_sip_services_over_our_transports_in_order() {
    let records = [
        naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.com."),
        naptr(10, 20, "S", "sip+d2t", "_sip._tcp.example.com."),
        naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example.com."),
        // Not ours: another flag, another service, SCTP, no replacement.
        naptr(1, 1, "u", "SIP+D2U", "_sip._udp.other.example.com."),
        naptr(1, 1, "s", "E2U+sip", "_sip._udp.other.example.com."),
        naptr(1, 1, "s", "SIP+D2S", "_sip._sctp.example.com."),
        naptr(1, 1, "s", "SIP+D2U", "."),
        // The same again, later: kept once.
        naptr(30, 10, "s", "SIP+D2U", "_sip._udp.example.com"),
    ];
    assert_eq!(
        usable_naptr(&records, &ALL),
        vec![
            (Transport::Tls, "_sips._tcp.example.com".to_owned()),
            (Transport::Tcp, "_sip._tcp.example.com".to_owned()),
            (Transport::Udp, "_sip._udp.example.com".to_owned()),
        ]
    );
    // No TLS listener (or a sips: URI's TLS only).
    assert_eq!(
        usable_naptr(&records, &[Transport::Udp, Transport::Tcp])[0].0,
        Transport::Tcp
    );
    assert_eq!(
        usable_naptr(&records, &[Transport::Tls]),
        vec![(Transport::Tls, "_sips._tcp.example.com".to_owned())]
    );
    assert!(usable_naptr(&records[3..7], &ALL).is_empty());
}

#[test]
fn srv_by_priority_then_heavier_first() {
    let sorted = sort_srv(vec![
        srv(20, 100, 5060, "c.example.com."),
        srv(10, 10, 5060, "b.example.com."),
        srv(10, 60, 5070, "a.example.com."),
        srv(10, 10, 5060, "a2.example.com."),
    ]);
    let order: Vec<(&str, u16)> = sorted.iter().map(|s| (&*s.target, s.port)).collect();
    assert_eq!(
        order,
        [
            ("a.example.com", 5070),
            ("a2.example.com", 5060),
            ("b.example.com", 5060),
            ("c.example.com", 5060)
        ]
    );
    // "." says the service is not offered there.
    assert!(sort_srv(vec![srv(0, 0, 0, ".")]).is_empty());
}

#[test]
fn srv_fallback_is_tls_tcp_udp_among_ours() {
    assert_eq!(
        fallback_transports(&ALL),
        [Transport::Tls, Transport::Tcp, Transport::Udp]
    );
    assert_eq!(
        fallback_transports(&[Transport::Udp, Transport::Tcp]),
        [Transport::Tcp, Transport::Udp]
    );
    assert_eq!(srv_prefix(Transport::Tls), "_sips._tcp");
}

/// Records as data: the name's NAPTR, SRV and addresses; a name in
/// `broken` fails every query, as a server that times out would. Every
/// answer holds for the name's entry in `ttl` (seconds), [`TTL`] if none;
/// "no such record" for [`NEGATIVE_TTL`].
#[derive(Default)]
pub(crate) struct Table {
    pub naptr: HashMap<String, Vec<Naptr>>,
    pub srv: HashMap<String, Vec<Srv>>,
    pub ip: HashMap<String, Vec<IpAddr>>,
    pub ttl: HashMap<String, u64>,
    pub broken: Vec<String>,
}

pub(crate) const TTL: u64 = 3600;
pub(crate) const NEGATIVE_TTL: u64 = 900;

impl Table {
    fn answer<T: Clone>(
        &self,
        name: &str,
        map: &HashMap<String, Vec<T>>,
    ) -> Result<Records<T>, String> {
        if self.broken.iter().any(|b| b == name) {
            return Err("request timed out".into());
        }
        let records = map.get(name).cloned().unwrap_or_default();
        let ttl = match records.is_empty() {
            true => NEGATIVE_TTL,
            false => self.ttl.get(name).copied().unwrap_or(TTL),
        };
        Ok(Records::new(records, Some(Duration::from_secs(ttl))))
    }
}

impl Lookup for Table {
    async fn naptr(&self, name: &str) -> Result<Records<Naptr>, String> {
        self.answer(name, &self.naptr)
    }
    async fn srv(&self, name: &str) -> Result<Records<Srv>, String> {
        self.answer(name, &self.srv)
    }
    async fn ip(&self, name: &str) -> Result<Records<IpAddr>, String> {
        self.answer(name, &self.ip)
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) fn table() -> Table {
    let mut t = Table::default();
    t.naptr.insert(
        "carrier.example.com".into(),
        vec![
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.carrier.example.com."),
            naptr(10, 10, "s", "SIP+D2T", "_sip._tcp.carrier.example.com."),
        ],
    );
    t.srv.insert(
        "_sip._tcp.carrier.example.com".into(),
        vec![
            srv(10, 20, 5070, "sip2.carrier.example.com."),
            srv(10, 80, 5070, "sip1.carrier.example.com."),
        ],
    );
    t.srv.insert(
        "_sip._udp.carrier.example.com".into(),
        vec![srv(10, 0, 5060, "sip1.carrier.example.com.")],
    );
    t.srv.insert(
        "_sip._udp.srv.example.net".into(),
        vec![srv(1, 0, 5062, "host.srv.example.net.")],
    );
    t.srv.insert(
        "_sips._tcp.tls.example.net".into(),
        vec![srv(1, 0, 5063, "host.srv.example.net.")],
    );
    t.ip.insert(
        "sip1.carrier.example.com".into(),
        vec![ip("198.51.100.2"), ip("2001:db8::2")],
    );
    t.ip.insert("sip2.carrier.example.com".into(), vec![ip("198.51.100.3")]);
    t.ip.insert("host.srv.example.net".into(), vec![ip("203.0.113.5")]);
    t.ip.insert("a.example.net".into(), vec![ip("203.0.113.9")]);
    t.ip.insert("v6.example.net".into(), vec![ip("2001:db8::9")]);
    t
}

fn v4(transports: &[Transport]) -> Listeners {
    Listeners(transports.iter().map(|&t| (t, false)).collect())
}

async fn run(t: &Table, uri: &str, l: &Listeners) -> Result<Vec<(String, Transport)>, String> {
    let target: SipTarget = uri.parse().unwrap();
    let found = resolve_target(t, &target, l).await?;
    Ok(found
        .found
        .into_iter()
        .map(|f| (f.address.to_string(), f.transport))
        .collect())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn rfc3263_paths_over_a_table() {
    let t = table();
    let (udp, tcp, tls) = (Transport::Udp, Transport::Tcp, Transport::Tls);
    let all = v4(&ALL);
    let s = |a: &str, t: Transport| (a.to_owned(), t);
    rt().block_on(async {
        // An address: no lookup.
        assert_eq!(
            run(&t, "sip:198.51.100.7:5080", &all).await,
            Ok(vec![s("198.51.100.7:5080", udp)])
        );
        // A port: A only, even where NAPTR records exist.
        assert_eq!(
            run(&t, "sip:sip2.carrier.example.com:5099;transport=tcp", &all).await,
            Ok(vec![s("198.51.100.3:5099", tcp)])
        );
        // NAPTR: TCP (order 10) before UDP (order 20); SRV weight 80 first;
        // only the listener's family.
        assert_eq!(
            run(&t, "sip:carrier.example.com", &all).await,
            Ok(vec![
                s("198.51.100.2:5070", tcp),
                s("198.51.100.3:5070", tcp),
                s("198.51.100.2:5060", udp),
            ])
        );
        // Without a TCP listener the D2T record is skipped.
        assert_eq!(
            run(&t, "sip:carrier.example.com", &v4(&[udp])).await,
            Ok(vec![s("198.51.100.2:5060", udp)])
        );
        // A transport: SRV for it only, skipping NAPTR.
        assert_eq!(
            run(&t, "sip:carrier.example.com;transport=udp", &all).await,
            Ok(vec![s("198.51.100.2:5060", udp)])
        );
        // No NAPTR: SRV for TLS, then TCP, then UDP; the first that answers.
        assert_eq!(
            run(&t, "sip:srv.example.net", &all).await,
            Ok(vec![s("203.0.113.5:5062", udp)])
        );
        assert_eq!(
            run(&t, "sip:tls.example.net", &all).await,
            Ok(vec![s("203.0.113.5:5063", tls)])
        );
        // sips: TLS only, so the UDP SRV record is not for it: A on 5061.
        let e = run(&t, "sips:srv.example.net", &all).await.unwrap_err();
        assert!(e.contains("SRV _sips._tcp.srv.example.net: none"), "{e}");
        // Nothing but A: UDP 5060, or the transport's default port.
        assert_eq!(
            run(&t, "sip:a.example.net", &all).await,
            Ok(vec![s("203.0.113.9:5060", udp)])
        );
        assert_eq!(
            run(&t, "sips:a.example.net", &all).await,
            Ok(vec![s("203.0.113.9:5061", tls)])
        );
        assert_eq!(
            run(&t, "sip:a.example.net;transport=tcp", &all).await,
            Ok(vec![s("203.0.113.9:5060", tcp)])
        );
        // An IPv6 listener takes AAAA only.
        let v6 = Listeners(vec![(udp, true), (tcp, true)]);
        assert_eq!(
            run(&t, "sip:carrier.example.com", &v6).await,
            Ok(vec![
                s("[2001:db8::2]:5070", tcp),
                s("[2001:db8::2]:5060", udp)
            ])
        );
    });
}

#[test]
fn rfc3263_errors_say_what_was_looked_up() {
    let mut t = table();
    t.broken.push("broken.example.com".into());
    let all = v4(&ALL);
    rt().block_on(async {
        let e = run(&t, "sip:nothing.invalid", &all).await.unwrap_err();
        assert_eq!(
            e,
            "NAPTR nothing.invalid: none; SRV _sips._tcp.nothing.invalid: none; \
             SRV _sip._tcp.nothing.invalid: none; SRV _sip._udp.nothing.invalid: none; \
             A nothing.invalid: no such record"
        );
        let e = run(&t, "sip:broken.example.com", &all).await.unwrap_err();
        assert_eq!(e, "NAPTR broken.example.com: request timed out");
        let e = run(&t, "sip:v6.example.net:5060", &all).await.unwrap_err();
        assert!(e.contains("resolves to 2001:db8::9 only"), "{e}");
        assert!(e.contains("the udp listener is IPv4"), "{e}");
        // No UDP listener for the last resort of a sip: name.
        let e = run(&t, "sip:a.example.net", &v4(&[Transport::Tcp]))
            .await
            .unwrap_err();
        assert!(e.ends_with("no udp listener is configured"), "{e}");
    });
}

#[test]
fn a_target_holds_for_the_shortest_ttl_on_its_path() {
    let mut t = table();
    let secs = Duration::from_secs;
    for (name, ttl) in [
        ("carrier.example.com", 600),
        ("_sip._tcp.carrier.example.com", 120),
        ("sip1.carrier.example.com", 900),
        ("sip2.carrier.example.com", 30),
        ("a.example.net", 300),
        ("host.srv.example.net", 5000),
    ] {
        t.ttl.insert(name.into(), ttl);
    }
    let all = v4(&ALL);
    let ttls = |r: &Resolution| r.found.iter().map(|f| f.ttl).collect::<Vec<_>>();
    rt().block_on(async {
        let get = async |uri: &str| {
            let target: SipTarget = uri.parse().unwrap();
            resolve_target(&t, &target, &all).await
        };
        // NAPTR 600 -> SRV 120 -> A 900 / A 30; NAPTR 600 -> SRV 3600 -> A 900.
        let r = get("sip:carrier.example.com").await.unwrap();
        assert_eq!(ttls(&r), [Some(secs(120)), Some(secs(30)), Some(secs(600))]);
        // The URI's answer: its shortest.
        assert_eq!(r.ttl, Some(secs(30)));
        // A only, after four queries that found nothing: those count for
        // the URI (a record that appears changes the answer), not for the
        // target's path.
        let r = get("sip:a.example.net").await.unwrap();
        assert_eq!(ttls(&r), [Some(secs(300))]);
        assert_eq!(r.ttl, Some(secs(300)));
        let r = get("sip:srv.example.net").await.unwrap();
        assert_eq!(ttls(&r), [Some(secs(TTL))]);
        assert_eq!(r.ttl, Some(secs(NEGATIVE_TTL)));
        // A port: A only, one query.
        let r = get("sip:host.srv.example.net:5060").await.unwrap();
        assert_eq!(
            (ttls(&r), r.ttl),
            (vec![Some(secs(5000))], Some(secs(5000)))
        );
        // An address: nothing to look up again.
        let r = get("sip:198.51.100.7").await.unwrap();
        assert_eq!((ttls(&r), r.ttl), (vec![None], None));
    });
}

#[test]
fn config_expands_carriers_and_takes_an_edges_first_target() {
    let text = r#"listen = ["udp:198.51.100.10:5060", "tcp:198.51.100.10:5060"]
[[edge]]
name = "e1"
uri = "sip:carrier.example.com;transport=tcp"
priority = 1
[carrier]
uris = ["sip:carrier.example.com", "sip:198.51.100.7", "sip:a.example.net"]
"#;
    let c = Config::parse(text).unwrap();
    let r = rt().block_on(c.resolve_with(&table())).unwrap();
    assert_eq!(r.edges[0].address, "198.51.100.2:5070".parse().unwrap());
    let pc = c.proxy_config(&r, 5060, 1, true);
    pc.validate().unwrap();
    assert_eq!(pc.edges[0].transport, Transport::Tcp);
    let targets: Vec<(String, String, Transport)> = pc
        .carriers
        .iter()
        .map(|t| (t.uri.clone(), t.address.to_string(), t.transport))
        .collect();
    let n = |u: &str, a: &str, t| (u.to_owned(), a.to_owned(), t);
    assert_eq!(
        targets,
        [
            n(
                "sip:carrier.example.com",
                "198.51.100.2:5070",
                Transport::Tcp
            ),
            n(
                "sip:carrier.example.com",
                "198.51.100.3:5070",
                Transport::Tcp
            ),
            n(
                "sip:carrier.example.com",
                "198.51.100.2:5060",
                Transport::Udp
            ),
            n("sip:198.51.100.7", "198.51.100.7:5060", Transport::Udp),
            n("sip:a.example.net", "203.0.113.9:5060", Transport::Udp),
        ]
    );
    let shown = c.render(Some(&r));
    for line in [
        "uri = \"sip:carrier.example.com;transport=tcp\"   # SRV _sip._tcp.carrier.example.com -> sip1.carrier.example.com -> tcp 198.51.100.2:5070\n",
        "  \"sip:carrier.example.com\",\n    # NAPTR -> SRV _sip._tcp.carrier.example.com -> sip1.carrier.example.com -> tcp 198.51.100.2:5070\n",
        "    # NAPTR -> SRV _sip._udp.carrier.example.com -> sip1.carrier.example.com -> udp 198.51.100.2:5060\n",
        "  \"sip:198.51.100.7\",\n    # udp 198.51.100.7:5060\n",
        "  \"sip:a.example.net\",\n    # A a.example.net -> udp 203.0.113.9:5060\n]\n",
    ] {
        assert!(shown.contains(line), "{line:?} not in\n{shown}");
    }
    // What check prints is still a file that gives the same configuration.
    assert_eq!(Config::parse(&shown).unwrap(), c);

    // A failed carrier names its key, its side and the lookups.
    let bad = text.replace("sip:198.51.100.7", "sip:nothing.invalid");
    let c = Config::parse(&bad).unwrap();
    let e = rt().block_on(c.resolve_with(&table())).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("carrier.uris[2]"));
    assert!(
        e.message.starts_with(
            "carrier: cannot resolve sip:nothing.invalid: NAPTR nothing.invalid: none;"
        ),
        "{e}"
    );
    let bad = text
        .replace("transport=tcp", "transport=udp")
        .replace("sip:carrier.example.com;", "sip:nothing.invalid;");
    let e = rt()
        .block_on(Config::parse(&bad).unwrap().resolve_with(&table()))
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("edge[1].uri"));
    assert!(e.message.starts_with("Edge \"e1\": cannot resolve"), "{e}");
    assert!(
        e.message.contains("SRV _sip._udp.nothing.invalid: none"),
        "{e}"
    );

    // Two Edges whose names lead to one address.
    let two = text.replace(
        "[carrier]",
        "[[edge]]\nname = \"e2\"\nuri = \"sip:sip1.carrier.example.com:5070;transport=tcp\"\npriority = 2\n[carrier]",
    );
    let e = rt()
        .block_on(Config::parse(&two).unwrap().resolve_with(&table()))
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("edge[2].uri"));
    assert!(
        e.message
            .ends_with("resolves to 198.51.100.2:5070, the address of Edge \"e1\""),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// End to end: hickory-resolver asks a tiny name server on 127.0.0.1.

pub(crate) mod server {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, AAAA, NAPTR, SOA, SRV};
    use hickory_resolver::proto::rr::{Name, RData, Record};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, UdpSocket};

    /// (owner, record data, TTL in seconds); the tests may change it while
    /// the server runs.
    pub(crate) type Zone = Arc<Mutex<Vec<(String, RData, u32)>>>;

    /// The TTL of [`zone`]'s records.
    pub(crate) const ZONE_TTL: u32 = 60;
    /// The SOA minimum that "no such record" answers carry.
    pub(crate) const NEGATIVE_TTL: u32 = 900;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    pub(crate) fn a(s: &str) -> RData {
        RData::A(A(s.parse().unwrap()))
    }

    /// The example zone, every record for [`ZONE_TTL`].
    pub(crate) fn zone() -> Vec<(String, RData, u32)> {
        records()
            .into_iter()
            .map(|(n, d)| (n.to_owned(), d, ZONE_TTL))
            .collect()
    }

    fn records() -> Vec<(&'static str, RData)> {
        let naptr = |order, service: &str, replacement: &str| {
            RData::NAPTR(NAPTR::new(
                order,
                10,
                b"s".to_vec().into(),
                service.as_bytes().to_vec().into(),
                Box::default(),
                name(replacement),
            ))
        };
        let srv = |p, w, port, target: &str| RData::SRV(SRV::new(p, w, port, name(target)));
        vec![
            // NAPTR -> SRV -> A; the TLS record has no listener here.
            (
                "carrier.example.com.",
                naptr(5, "SIPS+D2T", "_sips._tcp.carrier.example.com."),
            ),
            (
                "carrier.example.com.",
                naptr(10, "SIP+D2T", "_sip._tcp.carrier.example.com."),
            ),
            (
                "carrier.example.com.",
                naptr(20, "SIP+D2U", "_sip._udp.carrier.example.com."),
            ),
            (
                "_sip._tcp.carrier.example.com.",
                srv(10, 40, 5070, "sip2.carrier.example.com."),
            ),
            (
                "_sip._tcp.carrier.example.com.",
                srv(10, 60, 5070, "sip1.carrier.example.com."),
            ),
            (
                "_sip._udp.carrier.example.com.",
                srv(10, 0, 5060, "sip1.carrier.example.com."),
            ),
            ("sip1.carrier.example.com.", a("198.51.100.2")),
            (
                "sip1.carrier.example.com.",
                RData::AAAA(AAAA("2001:db8::2".parse().unwrap())),
            ),
            ("sip2.carrier.example.com.", a("198.51.100.3")),
            // SRV only.
            ("srv.example.net.", a("203.0.113.1")),
            (
                "_sip._udp.srv.example.net.",
                srv(1, 0, 5062, "host.srv.example.net."),
            ),
            ("host.srv.example.net.", a("203.0.113.5")),
            // A only.
            ("a.example.net.", a("203.0.113.9")),
        ]
    }

    /// Serves [`zone`].
    pub(crate) async fn start() -> std::net::SocketAddr {
        serve(Arc::new(Mutex::new(zone()))).await
    }

    /// Answers from `zone` as it is when asked: the records of the name
    /// and type asked, NXDOMAIN for a name it does not hold; an answer
    /// with no record carries an SOA (its minimum: [`NEGATIVE_TTL`]).
    /// Over UDP (and TCP on the same port). A UDP answer is at most 512
    /// bytes, as without EDNS: a longer one goes out empty with TC set,
    /// and the client is to ask again over TCP.
    pub(crate) async fn serve(zone: Zone) -> std::net::SocketAddr {
        serve_counting(zone).await.0
    }

    /// [`serve`], with the count of questions answered over TCP.
    pub(crate) async fn serve_counting(zone: Zone) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        // The TCP listener on the UDP socket's port (bounded tries).
        let mut bound = None;
        for _ in 0..20 {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = sock.local_addr().unwrap();
            if let Ok(l) = TcpListener::bind(addr).await {
                bound = Some((sock, l, addr));
                break;
            }
        }
        let (sock, listener, addr) = bound.expect("a port free for UDP and TCP");
        let tcp_answers = Arc::new(AtomicUsize::new(0));
        let z = zone.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Some(mut r) = answer(&z, &buf[..n]) else {
                    continue;
                };
                let mut bytes = r.to_vec().unwrap();
                if bytes.len() > 512 {
                    r.take_answers();
                    r.take_name_servers();
                    r.set_truncated(true);
                    bytes = r.to_vec().unwrap();
                }
                let _ = sock.send_to(&bytes, from).await;
            }
        });
        let counter = tcp_answers.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (zone, counter) = (zone.clone(), counter.clone());
                tokio::spawn(async move {
                    // Two-byte length, then the message (RFC 1035 4.2.2).
                    loop {
                        let mut len = [0u8; 2];
                        if conn.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut q = vec![0u8; u16::from_be_bytes(len).into()];
                        if conn.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        let Some(r) = answer(&zone, &q) else { return };
                        let bytes = r.to_vec().unwrap();
                        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&bytes);
                        if conn.write_all(&out).await.is_err() {
                            return;
                        }
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        (addr, tcp_answers)
    }

    fn answer(zone: &Zone, query: &[u8]) -> Option<Message> {
        let q = Message::from_vec(query).ok()?;
        let soa = Record::from_rdata(
            name("example."),
            NEGATIVE_TTL,
            RData::SOA(SOA::new(
                name("ns.example."),
                name("hostmaster.example."),
                1,
                3600,
                600,
                86400,
                NEGATIVE_TTL,
            )),
        );
        let mut r = Message::new();
        r.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_op_code(q.op_code())
            .set_authoritative(true)
            .set_recursion_desired(q.recursion_desired())
            .set_recursion_available(true);
        let zone = zone.lock().unwrap().clone();
        for query in q.queries() {
            r.add_query(query.clone());
            let asked = query.name().to_lowercase();
            let mut known = false;
            for (owner, data, ttl) in &zone {
                if name(owner) != asked {
                    continue;
                }
                known = true;
                if data.record_type() == query.query_type() {
                    r.add_answer(Record::from_rdata(asked.clone(), *ttl, data.clone()));
                }
            }
            if !known {
                r.set_response_code(ResponseCode::NXDomain);
            }
        }
        if r.answers().is_empty() {
            r.add_name_server(soa);
        }
        Some(r)
    }
}

#[tokio::test]
async fn an_answer_truncated_over_udp_is_asked_again_over_tcp() {
    // 24 SRV records: about 1 KiB, past what the server sends over UDP.
    let mut zone = server::zone();
    for n in 0..24u16 {
        zone.push((
            "_sip._udp.many.example.net.".into(),
            RData::SRV(hickory_resolver::proto::rr::rdata::SRV::new(
                10,
                n,
                5060,
                format!("edge-{n:02}.many.example.net.").parse().unwrap(),
            )),
            server::ZONE_TTL,
        ));
    }
    let (dns, tcp) = server::serve_counting(Arc::new(Mutex::new(zone))).await;
    let resolver = Resolver::new(&[dns]).unwrap();
    let got = resolver.srv("_sip._udp.many.example.net").await.unwrap();
    assert_eq!(got.records.len(), 24);
    assert!(tcp.load(Ordering::Relaxed) >= 1, "asked over TCP");
    // A short answer stays on UDP.
    let before = tcp.load(Ordering::Relaxed);
    let one = resolver.srv("_sip._udp.srv.example.net").await.unwrap();
    assert_eq!(one.records.len(), 1);
    assert_eq!(tcp.load(Ordering::Relaxed), before);
}

#[tokio::test]
async fn naptr_srv_and_a_through_a_name_server_on_loopback() {
    let dns = server::start().await;
    let text = format!(
        r#"listen = ["udp:198.51.100.10:5060", "tcp:198.51.100.10:5060"]
[[edge]]
name = "e1"
uri = "sip:srv.example.net"
priority = 1
[carrier]
uris = ["sip:carrier.example.com", "sip:srv.example.net", "sip:a.example.net", "sip:missing.example.net"]
[dns]
servers = ["{dns}"]
"#
    );
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.dns_servers, [dns]);
    // The last URI has no record at all.
    let e = c.resolve().await.unwrap_err();
    assert_eq!(e.key.as_deref(), Some("carrier.uris[4]"), "{e}");
    assert!(
        e.message.ends_with("A missing.example.net: no such record"),
        "{e}"
    );

    let c = Config::parse(&text.replace(", \"sip:missing.example.net\"", "")).unwrap();
    let r = c.resolve().await.unwrap();
    assert_eq!(
        r.edges[0],
        Found {
            address: "203.0.113.5:5062".parse().unwrap(),
            transport: Transport::Udp,
            path: "SRV _sip._udp.srv.example.net -> host.srv.example.net".into(),
            ttl: r.edges[0].ttl,
        }
    );
    let got: Vec<(usize, String, Transport, &str)> = r
        .carriers
        .iter()
        .map(|c| {
            let t = &c.target;
            (c.index, t.address.to_string(), t.transport, &*t.path)
        })
        .collect();
    let tcp = "NAPTR -> SRV _sip._tcp.carrier.example.com -> ";
    let udp = "NAPTR -> SRV _sip._udp.carrier.example.com -> ";
    assert_eq!(
        got,
        [
            (
                0,
                "198.51.100.2:5070".into(),
                Transport::Tcp,
                &*format!("{tcp}sip1.carrier.example.com")
            ),
            (
                0,
                "198.51.100.3:5070".into(),
                Transport::Tcp,
                &*format!("{tcp}sip2.carrier.example.com")
            ),
            (
                0,
                "198.51.100.2:5060".into(),
                Transport::Udp,
                &*format!("{udp}sip1.carrier.example.com")
            ),
            (
                1,
                "203.0.113.5:5062".into(),
                Transport::Udp,
                "SRV _sip._udp.srv.example.net -> host.srv.example.net"
            ),
            (
                2,
                "203.0.113.9:5060".into(),
                Transport::Udp,
                "A a.example.net"
            ),
        ]
    );
    // The records' TTL (60 s, counted down by the resolver's cache) and,
    // for the URIs that met "no such record", the SOA minimum (900 s) of
    // those answers, which is longer.
    let zone_ttl = Duration::from_secs(server::ZONE_TTL.into());
    for c in &r.carriers {
        let ttl = c.target.ttl.unwrap();
        assert!(
            ttl <= zone_ttl && ttl > zone_ttl - Duration::from_secs(10),
            "{ttl:?}"
        );
    }
    for ttl in r.carrier_ttls.iter().chain(&r.edge_ttls) {
        let ttl = ttl.unwrap();
        assert!(
            ttl <= zone_ttl && ttl > zone_ttl - Duration::from_secs(10),
            "{ttl:?}"
        );
    }
    // "No such record" holds for the SOA minimum.
    let resolver = Resolver::new(&[dns]).unwrap();
    let none = resolver.naptr("srv.example.net").await.unwrap();
    assert!(none.records.is_empty());
    let negative = Duration::from_secs(server::NEGATIVE_TTL.into());
    let ttl = none.ttl.unwrap();
    assert!(
        ttl <= negative && ttl > negative - Duration::from_secs(10),
        "{ttl:?}"
    );
    let shown = c.render(Some(&r));
    assert!(shown.contains(&format!("servers = [\"{dns}\"]")), "{shown}");
    assert_eq!(Config::parse(&shown).unwrap(), c);
}
