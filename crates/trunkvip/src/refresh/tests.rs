use std::time::{Duration, Instant};

use super::*;
use crate::config::Config;
use crate::dns::tests::{table, Table, NEGATIVE_TTL, TTL};
use crate::dns::{Found, Resolution};

const TEXT: &str = r#"listen = ["udp:198.51.100.10:5060", "tcp:198.51.100.10:5060"]
[[edge]]
name = "e1"
uri = "sip:a.example.net"
priority = 1
[[edge]]
name = "e2"
uri = "sip:198.51.100.21"
priority = 2
[carrier]
uris = ["sip:carrier.example.com", "sip:198.51.100.7"]
"#;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The refresher as the daemon starts it, names resolved through `t`.
fn start(t: &Table, now: Instant) -> (Config, Refresher) {
    let c = Config::parse(TEXT).unwrap();
    let resolved = rt().block_on(c.resolve_with(t)).unwrap();
    let r = Refresher::new(&c, &resolved, now);
    (c, r)
}

fn udp(a: &str) -> Target {
    Target {
        address: a.parse().unwrap(),
        transport: Transport::Udp,
    }
}

fn tcp(a: &str) -> Target {
    Target {
        transport: Transport::Tcp,
        ..udp(a)
    }
}

/// A lookup's answer: these targets, the URI's answer holding `ttl`.
fn answer(targets: &[Target], ttl: Option<u64>) -> Result<Resolution, String> {
    Ok(Resolution {
        found: targets
            .iter()
            .map(|t| Found {
                address: t.address,
                transport: t.transport,
                path: "A somewhere".into(),
                ttl: ttl.map(secs),
            })
            .collect(),
        ttl: ttl.map(secs),
    })
}

/// The targets the core is given, as (address, transport).
fn core_list(r: &Refresher) -> Vec<Target> {
    r.carrier_targets()
        .iter()
        .map(|c| Target {
            address: c.address,
            transport: c.transport,
        })
        .collect()
}

const CARRIER: usize = 0;
const CARRIER_IP: usize = 1;
const EDGE: usize = 2;

#[test]
fn a_moved_carrier_name_names_its_new_tls_targets() {
    let tls = Target {
        transport: Transport::Tls,
        ..udp("203.0.113.7:5061")
    };
    let new = [udp("203.0.113.7:5060"), tls, tcp("203.0.113.8:5060")];
    // The URI's host, for the TLS target alone (RFC 5922).
    let host = TargetHost::Name("carrier.example.com".into());
    let got = tls_names(&host, &new).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, tls.address);
    assert_eq!(
        got[0].1,
        ServerName::try_from("carrier.example.com").unwrap()
    );
    // An address in the URI: nothing to name.
    let ip = TargetHost::Ip("203.0.113.7".parse().unwrap());
    assert!(tls_names(&ip, &new).unwrap().is_empty());
    // A host that is no server name is said, not added.
    let bad = TargetHost::Name("bad name".into());
    assert_eq!(tls_names(&bad, &new), Err("bad name".into()));
}

#[test]
fn ttls_are_clamped_to_30s_and_1h() {
    assert_eq!(interval(Some(secs(0))), secs(30));
    assert_eq!(interval(Some(secs(29))), secs(30));
    assert_eq!(interval(Some(secs(300))), secs(300));
    assert_eq!(interval(Some(secs(86_400))), secs(3600));
    // An answer that said nothing: the longest.
    assert_eq!(interval(None), secs(3600));
}

#[test]
fn names_are_looked_up_again_when_their_ttl_is_over() {
    let mut t = table();
    t.ttl.insert("_sip._tcp.carrier.example.com".into(), 120);
    let t0 = Instant::now();
    let (_, mut r) = start(&t, t0);
    // Both carrier URIs, then the Edge with a name; e2 is an address.
    let uris: Vec<&str> = r.entries.iter().map(|e| &*e.target.uri).collect();
    assert_eq!(
        uris,
        [
            "sip:carrier.example.com",
            "sip:198.51.100.7",
            "sip:a.example.net"
        ]
    );
    // The carrier's shortest TTL on any path is the SRV's 120 s; the Edge's
    // is the negative answers' (NAPTR, SRV: none) 900 s, its A being 3600.
    assert_eq!(r.entries[CARRIER].next, Some(t0 + secs(120)));
    assert_eq!(r.entries[CARRIER_IP].next, None);
    assert_eq!(r.entries[EDGE].next, Some(t0 + secs(NEGATIVE_TTL)));
    assert_eq!(r.next_due(), Some(t0 + secs(120)));
    assert!(r.due(t0 + secs(119)).is_empty());
    assert_eq!(r.due(t0 + secs(120)), [CARRIER]);

    // The same answer again: nothing changes, the next lookup follows the
    // new TTL.
    let before = core_list(&r);
    let t1 = t0 + secs(120);
    let again = answer(&r.entries[CARRIER].current.clone(), Some(TTL));
    assert_eq!(r.record(CARRIER, t1, again), Outcome::Same);
    assert_eq!(core_list(&r), before);
    assert_eq!(r.entries[CARRIER].next, Some(t1 + secs(TTL)));
    assert_eq!(r.entries[CARRIER].looked_up, Some(t1));
    assert_eq!(r.next_due(), Some(t0 + secs(NEGATIVE_TTL)));
}

#[test]
fn a_ttl_of_zero_waits_30s_not_a_busy_loop() {
    let t0 = Instant::now();
    let (_, mut r) = start(&table(), t0);
    let mut now = t0;
    for _ in 0..3 {
        let same = answer(&r.entries[CARRIER].current.clone(), Some(0));
        assert_eq!(r.record(CARRIER, now, same), Outcome::Same);
        assert_eq!(r.entries[CARRIER].next, Some(now + secs(30)));
        assert!(r.due(now + secs(29)).is_empty());
        now += secs(30);
        assert_eq!(r.due(now), [CARRIER]);
    }
}

#[test]
fn a_change_gives_old_and_new_and_the_core_list_follows() {
    let t0 = Instant::now();
    let (_, mut r) = start(&table(), t0);
    let old = r.entries[CARRIER].current.clone();
    assert_eq!(
        old,
        [
            tcp("198.51.100.2:5070"),
            tcp("198.51.100.3:5070"),
            udp("198.51.100.2:5060")
        ]
    );
    let new = [udp("203.0.113.50:5060"), udp("203.0.113.51:5060")];
    let got = r.record(CARRIER, t0 + secs(3600), answer(&new, Some(300)));
    assert_eq!(
        got,
        Outcome::Carrier {
            old,
            new: new.to_vec()
        }
    );
    // The whole list: the URIs in the file's order, the address URI too.
    assert_eq!(core_list(&r), [new[0], new[1], udp("198.51.100.7:5060")]);
    let uris: Vec<String> = r.carrier_targets().into_iter().map(|c| c.uri).collect();
    assert_eq!(
        uris,
        [
            "sip:carrier.example.com",
            "sip:carrier.example.com",
            "sip:198.51.100.7"
        ]
    );
    assert_eq!(r.entries[CARRIER].changes, 1);
    // The same addresses in another order are a change: the core tries
    // them in order.
    let swapped = [new[1], new[0]];
    let got = r.record(CARRIER, t0 + secs(4000), answer(&swapped, Some(300)));
    assert!(matches!(got, Outcome::Carrier { .. }), "{got:?}");
    // Another path or TTL to the same targets is no change.
    let got = r.record(CARRIER, t0 + secs(5000), answer(&swapped, Some(60)));
    assert_eq!(got, Outcome::Same);
    assert_eq!(
        list(&swapped),
        "udp 203.0.113.51:5060, udp 203.0.113.50:5060"
    );
}

#[test]
fn a_failure_keeps_the_last_good_answer_and_retries_in_30s() {
    let t0 = Instant::now();
    let (_, mut r) = start(&table(), t0);
    let good = core_list(&r);
    let t1 = t0 + secs(3600);
    let got = r.record(
        CARRIER,
        t1,
        Err("NAPTR carrier.example.com: timed out".into()),
    );
    assert_eq!(
        got,
        Outcome::Failed {
            error: "NAPTR carrier.example.com: timed out".into(),
            kept: good[..3].to_vec()
        }
    );
    assert_eq!(core_list(&r), good);
    assert_eq!(r.entries[CARRIER].next, Some(t1 + secs(30)));
    assert_eq!(r.entries[CARRIER].failures, 1);
    assert!(r.entries[CARRIER].error.is_some());
    // An answer with no target is a failure too: never an empty list.
    let got = r.record(CARRIER, t1 + secs(30), answer(&[], Some(300)));
    assert!(matches!(got, Outcome::Failed { .. }), "{got:?}");
    assert_eq!(core_list(&r), good);
    assert_eq!(r.entries[CARRIER].next, Some(t1 + secs(60)));
    assert_eq!(r.entries[CARRIER].failures, 2);
    // It works again: the error goes, the TTL rules again.
    let got = r.record(CARRIER, t1 + secs(60), answer(&good[..3], Some(300)));
    assert_eq!(got, Outcome::Same);
    assert_eq!(r.entries[CARRIER].error, None);
    assert_eq!(r.entries[CARRIER].next, Some(t1 + secs(360)));
}

#[test]
fn an_edge_name_that_moves_is_reported_once_per_change_and_never_followed() {
    let t0 = Instant::now();
    let (_, mut r) = start(&table(), t0);
    let in_use = udp("203.0.113.9:5060");
    assert_eq!(r.entries[EDGE].current, [in_use]);
    let carriers = core_list(&r);
    let moved = udp("203.0.113.99:5060");
    // Only the first target counts: it is the Edge's address.
    let got = r.record(EDGE, t0, answer(&[moved, in_use], Some(60)));
    assert_eq!(
        got,
        Outcome::Edge {
            old: in_use,
            new: moved,
            in_use
        }
    );
    // Asked again, the same answer: no second warning.
    assert_eq!(
        r.record(EDGE, t0 + secs(60), answer(&[moved], Some(60))),
        Outcome::Same
    );
    // Back where it was: reported (as good news).
    let got = r.record(EDGE, t0 + secs(120), answer(&[in_use], Some(60)));
    assert_eq!(
        got,
        Outcome::Edge {
            old: moved,
            new: in_use,
            in_use
        }
    );
    // The carriers never see Edges.
    assert_eq!(core_list(&r), carriers);
}

#[test]
fn sighup_makes_every_name_due_but_not_addresses() {
    let t0 = Instant::now();
    let (_, mut r) = start(&table(), t0);
    let t1 = t0 + secs(5);
    assert!(r.due(t1).is_empty());
    r.all_due(t1);
    assert_eq!(r.due(t1), [CARRIER, EDGE]);
}

#[test]
fn status_rows_show_targets_and_the_last_lookup() {
    let t0 = Instant::now();
    let (_, mut r) = start(&table(), t0);
    let wall = UNIX_EPOCH + secs(1_000_000);
    let t1 = t0 + secs(3600);
    r.record(CARRIER, t1, Err("timed out".into()));
    let rows = r.rows(t1 + secs(10), wall);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].uri, "sip:carrier.example.com");
    assert_eq!(
        rows[0].targets,
        [
            "tcp 198.51.100.2:5070",
            "tcp 198.51.100.3:5070",
            "udp 198.51.100.2:5060"
        ]
    );
    assert_eq!(rows[0].looked_up_unix, Some(1_000_000 - 10));
    assert_eq!(rows[0].next_lookup_in_s, Some(20));
    assert_eq!(rows[0].error.as_deref(), Some("timed out"));
    assert_eq!(rows[0].failures, 1);
    // An address: no lookup.
    assert_eq!(rows[1].targets, ["udp 198.51.100.7:5060"]);
    assert_eq!(rows[1].looked_up_unix, None);
    assert_eq!(rows[1].next_lookup_in_s, None);
}

// ---------------------------------------------------------------------------
// End to end: the daemon, its carrier a name on the loopback name server.

mod daemon {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::net::UdpSocket;
    use tokio::time::timeout;

    use crate::config::Config;
    use crate::dns::tests::server;

    async fn bind(ip: &str, port: u16) -> std::io::Result<UdpSocket> {
        UdpSocket::bind(format!("{ip}:{port}")).await
    }

    /// Two carrier sockets on one port, 127.0.0.2 and 127.0.0.3.
    async fn carriers() -> (UdpSocket, UdpSocket, u16) {
        for _ in 0..20 {
            let a = bind("127.0.0.2", 0).await.unwrap();
            let port = a.local_addr().unwrap().port();
            if let Ok(b) = bind("127.0.0.3", port).await {
                return (a, b, port);
            }
        }
        panic!("no port free on both 127.0.0.2 and 127.0.0.3");
    }

    fn request(method: &str, ruri: &str, call: &str, edge: SocketAddr, to_tag: &str) -> String {
        format!(
            "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {edge};branch=z9hG4bK-{call}-{method};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:edge@{edge}>;tag=e-{call}\r\n\
To: <{ruri}>{to_tag}\r\n\
Call-ID: {call}\r\n\
CSeq: 1 {method}\r\n\
Contact: <sip:edge@{edge}>\r\n\
Content-Length: 0\r\n\r\n"
        )
    }

    /// The next request `sock` gets (the Edge's health probes aside), as
    /// (method, Call-ID); `None` after `wait`.
    async fn next_request(sock: &UdpSocket, wait: Duration) -> Option<(String, String)> {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) = timeout(wait, sock.recv_from(&mut buf)).await.ok()?.ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let method = text.split(' ').next().unwrap_or_default().to_owned();
            if method == "OPTIONS" || method == "SIP/2.0" {
                continue;
            }
            let call = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .unwrap_or_default()
                .to_owned();
            return Some((method, call));
        }
    }

    #[tokio::test]
    async fn a_carrier_name_that_changes_its_a_record_takes_the_next_call_without_restart() {
        let zone: server::Zone = Arc::new(Mutex::new(vec![(
            "carrier.test.".into(),
            server::a("127.0.0.2"),
            server::ZONE_TTL,
        )]));
        let dns = server::serve(zone.clone()).await;
        let (old, new, port) = carriers().await;
        let edge = bind("127.0.0.4", 0).await.unwrap();
        let edge_addr = edge.local_addr().unwrap();
        let listen = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let text = format!(
            r#"listen = ["udp:{listen}"]
host_address = "127.0.0.1"
workers = 2
[[edge]]
name = "e1"
uri = "sip:{edge_addr};transport=udp"
priority = 1
[carrier]
uris = ["sip:carrier.test:{port}"]
[admin]
listen = "127.0.0.1:0"
[dns]
servers = ["{dns}"]
"#
        );
        let d = crate::daemon::start(Config::parse(&text).unwrap())
            .await
            .unwrap();
        let wait = Duration::from_secs(5);

        // A call from the Edge reaches the carrier where its name points.
        let ruri = "sip:+15559876@carrier.test";
        let invite = request("INVITE", ruri, "before", edge_addr, "");
        edge.send_to(invite.as_bytes(), listen).await.unwrap();
        assert_eq!(
            next_request(&old, wait).await,
            Some(("INVITE".into(), "before".into()))
        );

        // The A record changes; SIGHUP's re-lookup finds it.
        zone.lock().unwrap()[0].1 = server::a("127.0.0.3");
        d.relookup();
        let want = vec![format!("udp 127.0.0.3:{port}")];
        let end = tokio::time::Instant::now() + wait;
        loop {
            let rows = d.names.rows();
            if rows[0].targets == want {
                assert!(rows[0].looked_up_unix.is_some());
                assert_eq!(rows[0].changes, 1);
                break;
            }
            assert!(tokio::time::Instant::now() < end, "{rows:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Every new call from the Edge, whichever worker owns it, goes to
        // the new address.
        for n in 0..6 {
            let call = format!("after-{n}");
            let invite = request("INVITE", ruri, &call, edge_addr, "");
            edge.send_to(invite.as_bytes(), listen).await.unwrap();
            assert_eq!(
                next_request(&new, wait).await,
                Some(("INVITE".into(), call))
            );
        }
        // The call set up before still ends where it was set up: its BYE
        // (to the carrier's Contact) goes to the old address.
        let bye = request(
            "BYE",
            &format!("sip:carrier@127.0.0.2:{port}"),
            "before",
            edge_addr,
            ";tag=c1",
        );
        edge.send_to(bye.as_bytes(), listen).await.unwrap();
        assert_eq!(
            next_request(&old, wait).await,
            Some(("BYE".into(), "before".into()))
        );
        assert_eq!(next_request(&new, Duration::from_millis(200)).await, None);
    }
}
