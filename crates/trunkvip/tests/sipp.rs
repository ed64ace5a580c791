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
