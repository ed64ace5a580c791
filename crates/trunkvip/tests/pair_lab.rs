//! Lab test of a trunkvip pair: two `trunkvip run` with `[vip]` (unicast
//! peers) in network namespaces, a carrier running `sipp -sn uac` against
//! the VIP, two Edges running `sipp -sn uas -aa`.
//!
//! ```text
//!  carrier 198.51.100.2 ──► VIP 198.51.100.10 ─┬─ host A 198.51.100.11 (priority 150)
//!                                              └─ host B 198.51.100.12 (priority 100)
//!                          Edge 1 198.51.100.21 ◄─┤
//!                          Edge 2 198.51.100.22 ◄─┘
//! ```
//!
//! The lab itself (namespaces `tvd<pid>-<n>-<host>`, documentation
//! addresses only, bounded waits, a drop guard that deletes everything) is
//! `common/lab.rs`, shared with `drill.rs`. The tests need root and skip
//! loudly without it (CI runs as root); they run one at a time (they
//! measure time).
//!
//! Cases: (a) one host holds the VIP and calls succeed; (b) SIGTERM to the
//! Active's trunkvip during 100 calls/s: the Backup takes over and no call
//! fails (the hosts share dialogs over `[pair]`); (c) host A can no longer reach any Edge: its
//! priority drops by `track_edges_penalty` and the VIP moves to B, and
//! back when the Edges are reachable again.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::lab::{lab_lock, run, wait_for, Host, Lab, A, B};
use common::{Child, TRUNKVIP};

/// Says a figure so that it shows in `cargo test` output, passing or not.
fn report(line: &str) {
    common::lab::report("pair_lab", line);
}

fn pair() -> (Lab, usize, usize) {
    common::lab::pair()
}

#[test]
fn a_one_host_holds_the_vip_and_calls_succeed() {
    let Some(_lock) = lab_lock("a_one_host_holds_the_vip_and_calls_succeed") else {
        return;
    };
    let (mut lab, _a, _b) = pair();
    let settled = std::time::Instant::now();
    let uac = lab.uac("uac-a", 200, 50, Duration::from_secs(30));
    let calls = lab.finish(uac);
    report(&format!(
        "(a) {} successful, {} failed calls at 50/s, {} retransmissions",
        calls.successful, calls.failed, calls.retransmissions
    ));
    assert!(
        calls.exit.is_some_and(|s| s.success()) && calls.failed == 0 && calls.successful == 200,
        "{calls:?}"
    );
    // Still one holder, and the status says so.
    assert!(lab.holds(A) && !lab.holds(B));
    let quiet = settled.elapsed();
    let table = lab.status_table(A);
    assert!(
        table.contains("Active, holds the VIP, priority 150"),
        "{table}"
    );
    // A Backup is silent: since the pair settled the Active has heard no
    // one. (When B starts first, its Master_Down timer can run out a few
    // ms before A's first advert reaches it: B is Active for that long and
    // A preempts it, as VRRP says. That advert is older than `quiet`.)
    let s = lab.status(A).expect("status of A");
    if let Some(ago) = s["vip"]["last_peer"]["ago_ms"].as_u64() {
        assert!(
            u128::from(ago) >= quiet.as_millis(),
            "heard since settling: {s:#}"
        );
    } else {
        assert!(s["vip"]["last_peer"].is_null(), "{s:#}");
        assert!(table.contains("peer last heard: none"), "{table}");
    }
    let table = lab.status_table(B);
    assert!(
        table.contains("Backup, does not hold the VIP, priority 100"),
        "{table}"
    );
    assert!(
        table.contains("peer last heard: 198.51.100.11 priority 150"),
        "{table}"
    );
    // The metrics carry the role.
    let m = lab.http_get(A, "/metrics");
    assert!(m.contains("trunkvip_vrrp_role{role=\"active\"} 1"), "{m}");
    assert!(
        m.contains("trunkvip_vrrp_adverts_dropped_total{reason=\"not_a_peer\"} 0"),
        "{m}"
    );
}

#[test]
fn b_sigterm_to_the_active_moves_the_vip() {
    let Some(_lock) = lab_lock("b_sigterm_to_the_active_moves_the_vip") else {
        return;
    };
    let (mut lab, a, _b) = pair();
    const CALLS: u32 = 800;
    let uac = lab.uac("uac-b", CALLS, 100, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(3));
    let t0 = Instant::now();
    lab.procs[a].signal("TERM");
    let b_active = wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        lab.holds(B)
    });
    let a_released = !lab.holds(A);
    let calls = lab.finish(uac);
    let a_exit = lab.procs[a].wait_for(Duration::from_secs(1));
    report(&format!(
        "(b) SIGTERM to A during {CALLS} calls at 100/s: B holds the VIP after {} ms; \
         {} successful, {} failed calls, {} retransmissions (run took {:.1} s); A exited: {:?} ({:.1} s after SIGTERM)",
        b_active.map_or(-1, |d| d.as_millis() as i64),
        calls.successful,
        calls.failed,
        calls.retransmissions,
        calls.elapsed.as_secs_f64(),
        a_exit,
        t0.elapsed().as_secs_f64(),
    ));
    if calls.failed > 0 {
        report(&format!("(b) SIPp errors:\n{}", calls.errors));
    }
    assert!(b_active.is_some(), "B never took the VIP");
    assert!(a_released, "A still held the VIP once B had it");
    let table = lab.status_table(B);
    assert!(table.contains(": Active, holds the VIP"), "{table}");
    let log = std::fs::read_to_string(&lab.procs[a].log).unwrap_or_default();
    assert!(log.contains("VIP resigned"), "{log}");
    // No call lost: the pair shares dialogs and branches, so a BYE the
    // carrier retransmits through B is the transaction the Edge knows.
    assert!(
        calls.failed == 0 && calls.successful == u64::from(CALLS),
        "{calls:?}"
    );
}

#[test]
fn c_no_reachable_edge_moves_the_vip() {
    let Some(_lock) = lab_lock("c_no_reachable_edge_moves_the_vip") else {
        return;
    };
    let (mut lab, _a, _b) = pair();
    let ns_a = lab.ns(A.name);
    let t0 = Instant::now();
    for e in ["198.51.100.21/32", "198.51.100.22/32"] {
        run("ip", &["-n", &ns_a, "route", "add", "blackhole", e]);
    }
    let moved = wait_for(Duration::from_secs(8), Duration::from_millis(20), || {
        lab.holds(B) && !lab.holds(A)
    });
    report(&format!(
        "(c) Edges blackholed on A: the VIP is on B after {} ms",
        moved.map_or(-1, |d| d.as_millis() as i64)
    ));
    assert!(moved.is_some(), "the VIP did not move to B");
    let s = lab.status(A).expect("status of A");
    assert_eq!(s["vip"]["role"], "Backup", "{s:#}");
    assert_eq!(s["vip"]["effective_priority"], 50, "{s:#}");
    assert_eq!(s["vip"]["edges_healthy"], false, "{s:#}");
    assert_eq!(lab.role(B).as_deref(), Some("Active"));
    let table = lab.status_table(A);
    assert!(table.contains("priority 50 (configured 150"), "{table}");
    // Calls now go through B.
    let uac = lab.uac("uac-c", 100, 50, Duration::from_secs(30));
    let calls = lab.finish(uac);
    report(&format!(
        "(c) through B: {} successful, {} failed",
        calls.successful, calls.failed
    ));
    assert!(
        calls.exit.is_some_and(|s| s.success()) && calls.failed == 0 && calls.successful == 100,
        "{calls:?}"
    );
    // The Edges come back: A preempts again.
    for e in ["198.51.100.21/32", "198.51.100.22/32"] {
        run("ip", &["-n", &ns_a, "route", "del", "blackhole", e]);
    }
    let back = wait_for(Duration::from_secs(8), Duration::from_millis(20), || {
        lab.holds(A) && !lab.holds(B)
    });
    report(&format!(
        "(c) Edges reachable again: the VIP is back on A after {} ms (test {:.1} s)",
        back.map_or(-1, |d| d.as_millis() as i64),
        t0.elapsed().as_secs_f64()
    ));
    assert!(back.is_some(), "the VIP did not come back to A");
}

/// systemd's notify protocol, without root and without `[vip]`: READY=1
/// once listening, WATCHDOG=1 at half WATCHDOG_USEC while the workers
/// answer, STOPPING=1 on SIGTERM.
#[test]
fn systemd_ready_watchdog_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = common::tempdir();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let (p, e1, admin) = (
        common::free_port(),
        common::free_port(),
        common::admin_addr(),
    );
    let listen = [format!("udp:127.0.0.1:{p}")];
    let config = common::config(&listen, &[(e1, "udp")], admin, "");
    let path = dir.path().join("trunkvip.toml");
    std::fs::write(&path, config).expect("config");
    let mut proxy = Child::spawn(
        "trunkvip",
        Command::new(TRUNKVIP)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000"),
        dir.path(),
    );
    let mut got: Vec<String> = vec![];
    let mut buf = [0u8; 4096];
    let mut read_until = |want: &str, limit: Duration, got: &mut Vec<String>| {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = m.lines().any(|l| l == want);
                got.push(m);
                if hit {
                    return true;
                }
            }
        }
        false
    };
    assert!(
        read_until("READY=1", Duration::from_secs(10), &mut got),
        "no READY=1: {got:?}\n{}",
        proxy.log()
    );
    let t = Instant::now();
    for _ in 0..3 {
        assert!(
            read_until("WATCHDOG=1", Duration::from_secs(2), &mut got),
            "no WATCHDOG=1: {got:?}\n{}",
            proxy.log()
        );
    }
    // Three pings at 200 ms apart.
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    proxy.signal("TERM");
    assert!(
        read_until("STOPPING=1", Duration::from_secs(5), &mut got),
        "no STOPPING=1: {got:?}\n{}",
        proxy.log()
    );
    let s = proxy.wait_for(Duration::from_secs(40)).expect("exit");
    assert!(s.success(), "{s}");
}

/// The issue's flapping check, a measurement rather than a test (run by
/// `make bench-vip-soak`): 20 ms adverts and SIPp at 500 calls/s through the
/// pair for `SOAK_SECONDS` (default 600); the VIP must not move once.
#[test]
#[ignore]
fn soak_no_false_takeover_under_load() {
    let Some(_lock) = lab_lock("soak_no_false_takeover_under_load") else {
        return;
    };
    let secs: u32 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let rate = 500;
    let mut lab = Lab::new();
    lab.advert = "20ms";
    lab.edges();
    let _a = lab.trunkvip(A);
    let _b = lab.trunkvip(B);
    lab.wait_settled(Duration::from_secs(10));
    let transitions = |lab: &Lab, h: Host| {
        lab.status(h)
            .and_then(|s| s["vip"]["transitions"].as_u64())
            .unwrap_or(u64::MAX)
    };
    let before = (transitions(&lab, A), transitions(&lab, B));
    let t0 = Instant::now();
    let uac = lab.uac(
        "uac-soak",
        rate * secs,
        rate,
        Duration::from_secs(u64::from(secs) + 60),
    );
    let calls = lab.finish(uac);
    let after = (transitions(&lab, A), transitions(&lab, B));
    report(&format!(
        "soak: {secs} s at {rate} calls/s, 20 ms adverts: {} successful, {} failed calls, {} retransmissions in {:.0} s; \
         VRRP transitions during the run: A {}, B {}; A holds the VIP: {}",
        calls.successful,
        calls.failed,
        calls.retransmissions,
        t0.elapsed().as_secs_f64(),
        after.0.saturating_sub(before.0),
        after.1.saturating_sub(before.1),
        lab.holds(A),
    ));
    assert_eq!(before, after, "the VIP moved during the soak");
    assert!(lab.holds(A) && !lab.holds(B));
}
