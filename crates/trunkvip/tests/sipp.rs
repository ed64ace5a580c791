//! SIPp's built-in uac scenario through the real binary in front of two
//! `sipp -sn uas -aa`, over UDP and TCP, and a failover. Needs sipp
//! (Debian package sip-tester, installed by `make test`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const CALLS: u32 = 200;
const RATE: u32 = 50;
const LIMIT: Duration = Duration::from_secs(40);

fn through_trunkvip(transport: &str, workers: usize) {
    let dir = tempdir();
    let tcp = transport == "tcp";
    let (p, e1, e2, admin) = (free_port(), free_port(), free_port(), admin_addr());
    let _uas1 = sipp_uas("uas1", e1, tcp, dir.path());
    let _uas2 = sipp_uas("uas2", e2, tcp, dir.path());
    let listen = [format!("udp:127.0.0.1:{p}"), format!("tcp:127.0.0.1:{p}")];
    let mut proxy = trunkvip(
        &config(&listen, &[(e1, transport), (e2, transport)], admin, "")
            .replace("workers = 2", &format!("workers = {workers}")),
        dir.path(),
    );
    wait_health(admin, &[true, true], Duration::from_secs(10), &mut proxy);
    let calls = sipp_uac(p, CALLS, RATE, tcp, dir.path(), LIMIT);
    assert_all_good(&calls, CALLS.into(), &proxy);
    // Priority 1 took every call: active-passive.
    let m = http_get(admin, "/metrics").expect("metrics").1;
    assert!(m.contains("trunkvip_dialogs{worker=\"0\"}"), "{m}");
}

#[test]
fn sipp_calls_over_udp() {
    through_trunkvip("udp", 2);
}

#[test]
fn sipp_calls_over_tcp() {
    through_trunkvip("tcp", 2);
}

/// One worker reads its UDP socket itself on a current-thread runtime.
#[test]
fn sipp_calls_with_one_worker() {
    through_trunkvip("udp", 1);
    through_trunkvip("tcp", 1);
}

#[test]
fn sipp_calls_over_ipv6() {
    let dir = tempdir();
    let (p, e1, e2, admin) = (free_port(), free_port(), free_port(), admin_addr());
    let _uas1 = sipp_uas_on("::1", "uas1", e1, false, dir.path());
    let _uas2 = sipp_uas_on("::1", "uas2", e2, true, dir.path());
    let listen = [format!("udp:[::1]:{p}"), format!("tcp:[::1]:{p}")];
    let mut proxy = trunkvip(
        &config_on("::1", &listen, &[(e1, "udp"), (e2, "tcp")], admin, ""),
        dir.path(),
    );
    wait_health(admin, &[true, true], Duration::from_secs(10), &mut proxy);
    let calls = sipp_uac_on("::1", p, 100, RATE, false, dir.path(), LIMIT);
    assert_all_good(&calls, 100, &proxy);
    let calls = sipp_uac_on("::1", p, 100, RATE, true, dir.path(), LIMIT);
    assert_all_good(&calls, 100, &proxy);
}

#[test]
fn failover_to_priority_two() {
    let dir = tempdir();
    let (p, e1, e2, admin) = (free_port(), free_port(), free_port(), admin_addr());
    let mut uas1 = sipp_uas("uas1", e1, false, dir.path());
    let _uas2 = sipp_uas("uas2", e2, false, dir.path());
    let listen = [format!("udp:127.0.0.1:{p}")];
    let mut proxy = trunkvip(
        &config(&listen, &[(e1, "udp"), (e2, "udp")], admin, ""),
        dir.path(),
    );
    wait_health(admin, &[true, true], Duration::from_secs(10), &mut proxy);
    // Priority 1 dies; calls go on through priority 2, first by failover
    // of each new INVITE, then because health checks mark it Unhealthy.
    uas1.kill();
    let calls = sipp_uac(p, 50, 10, false, dir.path(), LIMIT);
    assert_all_good(&calls, 50, &proxy);
    wait_health(admin, &[false, true], Duration::from_secs(5), &mut proxy);
    let out = Command::new(TRUNKVIP)
        .args(["status", "--admin", &admin.to_string()])
        .output()
        .expect("trunkvip status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let row1 = table
        .lines()
        .find(|l| l.starts_with("EDGE-1 "))
        .expect(&table);
    let row2 = table
        .lines()
        .find(|l| l.starts_with("EDGE-2 "))
        .expect(&table);
    assert!(row1.contains("Unhealthy"), "{table}");
    assert!(
        row2.contains("Healthy") && !row2.contains("Unhealthy"),
        "{table}"
    );
}

#[test]
fn demo_answers_sipp() {
    let dir = tempdir();
    let (p, e1, e2, admin) = (free_port(), free_port(), free_port(), admin_addr());
    let mut demo = Child::spawn(
        "demo",
        std::process::Command::new(TRUNKVIP).args([
            "demo",
            "--port",
            &p.to_string(),
            "--edge-ports",
            &format!("{e1},{e2}"),
            "--admin",
            &admin.to_string(),
            "--table-every",
            "1",
        ]),
        dir.path(),
    );
    wait_health(admin, &[true, true], Duration::from_secs(10), &mut demo);
    let calls = sipp_uac(p, 100, 50, false, dir.path(), LIMIT);
    assert_all_good(&calls, 100, &demo);
    let calls = sipp_uac(p, 100, 50, true, dir.path(), LIMIT);
    assert_all_good(&calls, 100, &demo);
    // SIGTERM drains and exits 0 within the drain bound.
    demo.signal("TERM");
    let s = demo
        .wait_for(Duration::from_secs(40))
        .expect("demo did not stop");
    assert!(s.success(), "{s}\n{}", demo.log());
    let log = std::fs::read_to_string(&demo.log).unwrap();
    assert!(log.contains("sipp -sn uac 127.0.0.1:"), "{log}");
    assert!(
        log.contains("EDGE-DEMO-01") && log.contains("Healthy"),
        "{log}"
    );
}

/// A burst larger than a worker's batch (32), every datagram owned by one
/// worker, must all be answered at once, not left in the socket until the
/// next datagram comes. Worker 0 reads every datagram; of a burst owned by
/// worker 1 the first full batch goes to worker 1's inbox (the reader is
/// behind) and the rest is handled in place or queued behind it. Eight
/// sources, bursts owned by each worker in turn.
#[test]
fn bursts_for_the_other_worker_are_all_answered() {
    let dir = tempdir();
    let (p, e1, e2, admin) = (free_port(), free_port(), free_port(), admin_addr());
    let _uas1 = sipp_uas("uas1", e1, false, dir.path());
    let _uas2 = sipp_uas("uas2", e2, false, dir.path());
    let listen = [format!("udp:127.0.0.1:{p}")];
    let mut proxy = trunkvip(
        &config(&listen, &[(e1, "udp"), (e2, "udp")], admin, ""),
        dir.path(),
    );
    wait_health(admin, &[true, true], Duration::from_secs(10), &mut proxy);
    const BURST: usize = 40;
    for source in 0..8 {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        let owner = source % 2;
        let call_ids: Vec<String> = (0..)
            .map(|n| format!("burst-{source}-{n}@127.0.0.1"))
            .filter(|c| {
                let probe = format!("OPTIONS sip:x SIP/2.0\r\nCall-ID: {c}\r\n\r\n");
                trunkvip_proxy::shard_of(probe.as_bytes(), 2) == owner
            })
            .take(BURST)
            .collect();
        for (n, c) in call_ids.iter().enumerate() {
            let ping = format!(
                "OPTIONS sip:127.0.0.1:{p} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-burst-{source}-{n};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:carrier@127.0.0.1>;tag=b{n}\r\n\
                 To: <sip:127.0.0.1:{p}>\r\nCall-ID: {c}\r\nCSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            sock.send_to(ping.as_bytes(), ("127.0.0.1", p)).unwrap();
        }
        // Nothing more is sent: every answer must come from the burst.
        let mut answered = std::collections::HashSet::new();
        let mut buf = [0u8; 4096];
        while answered.len() < BURST {
            let Ok(n) = sock.recv(&mut buf) else { break };
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.starts_with("SIP/2.0 200"), "{text}");
            if let Some(c) = call_ids.iter().find(|c| text.contains(c.as_str())) {
                answered.insert(c.clone());
            }
        }
        assert_eq!(answered.len(), BURST, "source {source}: {}", proxy.log());
    }
}
