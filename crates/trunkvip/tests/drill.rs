//! Issue #6's drills in the namespace lab (`common/lab.rs`): the carrier's
//! `sipp -sn uac` at 200 calls/s for 20 s (`DRILL_SECONDS` shortens it,
//! at least 10) through the VIP of a trunkvip pair, two `sipp -sn uas -aa`
//! Edges, the deployment's health checks (`DEPLOY_HEALTH`: 1 s, 3 down, 5
//! up, `failover_after` 250 ms, as the Kamailio anchor probes) and 100 ms
//! adverts (as the keepalived anchor):
//!
//! 1. Edge 1's link cut 5 s in: no failed call among those whose INVITE
//!    left after the cut, no setup longer than `failover_after` plus one
//!    SIPp retransmission.
//! 2. Host A's link cut 5 s in: no failed call.
//! 3. SIGTERM to host A 5 s in: no failed call, at most one
//!    retransmission per call.
//! 4. Edge 1 back after being down: new calls go to it once
//!    `recovery_threshold` probes succeeded; dialogs on Edge 2 end there.
//! 5. Split brain: VRRP blocked between the hosts, both Active, calls
//!    through either; unblocked: one holder within about an advert
//!    interval, the carrier's neighbour entry on it.
//! 6. Host A's link cut 5 s in, what A sent the Edges in the last 100 ms
//!    lost on the way: no failed call.
//! 7. SIGTERM to host A 5 s in, the Edges' answers lost on their way to A
//!    for the last 50 ms: no call on Edge 2, no failed call placed
//!    outside those 50 ms.
//!
//! Each prints one `DRILL` line of figures (`make drill` shows them; the
//! table is in BENCHMARKS.md). Root only; they skip loudly without it.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::lab::{
    epoch, lab_lock, ms, pair_with, report, wait_for, Calls, Lab, PerCall, Uac, UacOptions, A, B,
    CARRIER, DEPLOY_HEALTH, EDGE1, EDGE2, SIPP_T1, VIP,
};

const RATE: u32 = 200;
const ADVERT: Duration = Duration::from_millis(100);
/// `DEPLOY_HEALTH`'s timers.
const FAILOVER_AFTER: Duration = Duration::from_millis(250);
const INTERVAL: Duration = Duration::from_secs(1);
const RECOVERY_THRESHOLD: u32 = 5;

fn seconds() -> u32 {
    std::env::var("DRILL_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20u32)
        .max(10)
}

fn total() -> u64 {
    u64::from(RATE * seconds())
}

/// When the failure happens: 5 s into a 20 s run.
fn event_at() -> Duration {
    Duration::from_secs_f64(f64::from(seconds()) / 4.0)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The pair as deployed, settled; and which process is A's trunkvip.
fn drill_pair(trace_edges: bool) -> (Lab, usize) {
    let (lab, a, _b) = pair_with(|lab| {
        lab.health = DEPLOY_HEALTH;
        lab.advert = "100ms";
        lab.trace_edges = trace_edges;
    });
    (lab, a)
}

fn start_calls(lab: &mut Lab, label: &str, call_length: Duration) -> Uac {
    let mut o = UacOptions::new(
        RATE * seconds(),
        RATE,
        Duration::from_secs(u64::from(seconds()) + 60) + call_length,
    );
    o.call_length = call_length;
    o.per_call = true;
    lab.uac_with(label, &o)
}

/// Sleeps until `at` into the uac's run.
fn sleep_until(uac: &Uac, at: Duration) {
    let left = uac.started_at + at.as_secs_f64() - epoch();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

fn ms_or_none(d: Option<Duration>) -> String {
    d.map_or_else(|| "none".to_owned(), |d| format!("{:.0} ms", ms(d)))
}

/// The figures every drill prints, on one line.
fn figures(drill: &str, calls: &Calls, per: &PerCall, outage: Duration, holder: &str, more: &str) {
    report(
        "DRILL",
        &format!(
            "{drill}: {} calls at {RATE}/s: {} successful, {} failed, {} retransmissions \
             (most in one call {}), longest setup {}, VIP outage {}, VIP held by {holder}; \
             {more}; run {:.1} s, load {}",
            total(),
            calls.successful,
            calls.failed,
            calls.retransmissions,
            per.most_retransmissions(),
            ms_or_none(per.longest_setup(f64::MIN, f64::MAX)),
            if outage == Duration::MAX {
                "no replies".to_owned()
            } else {
                format!("{:.0} ms", ms(outage))
            },
            calls.elapsed.as_secs_f64(),
            load()
        ),
    );
    if calls.failed > 0 && !calls.errors.trim().is_empty() {
        report("DRILL", &format!("{drill}: SIPp errors:\n{}", calls.errors));
    }
}

/// When the failed calls sent their INVITE and BYE, relative to `t`.
fn failed_timing(per: &PerCall, t: f64) -> String {
    let rel = |v: f64| (v - t) * 1000.0;
    let span = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(f64::MIN, f64::max);
        if v.is_empty() {
            "-".to_owned()
        } else {
            format!("{lo:+.0}..{hi:+.0} ms")
        }
    };
    let failed: Vec<_> = per.failed_ids.iter().filter_map(|id| per.get(id)).collect();
    let invites: Vec<f64> = failed.iter().map(|c| rel(c.invite_at)).collect();
    let byes: Vec<f64> = failed.iter().filter_map(|c| c.bye_at.map(rel)).collect();
    format!(
        "INVITEs {}, BYEs {} ({} of {} sent a BYE)",
        span(&invites),
        span(&byes),
        byes.len(),
        failed.len()
    )
}

/// Every call accounted for, by SIPp's counts and by its traces.
fn assert_complete(calls: &Calls, per: &PerCall, lab: &Lab) {
    assert!(
        calls.successful + calls.failed == total() && per.calls.len() as u64 == total(),
        "SIPp did not run every call to its end: {calls:?}, {} calls traced\n{}",
        per.calls.len(),
        lab.logs()
    );
    assert_eq!(
        per.failed_ids.len() as u64,
        calls.failed,
        "SIPp's failed count and its call debug file disagree"
    );
}

/// Drill 1: Edge 1's link cut under load.
#[test]
fn drill_1_edge_failure() {
    let Some(_lock) = lab_lock("drill_1_edge_failure") else {
        return;
    };
    let (mut lab, _) = drill_pair(true);
    let pinger = lab.pinger(CARRIER);
    let uac = start_calls(&mut lab, "uac-1", Duration::ZERO);
    sleep_until(&uac, event_at());
    // The link is surely down once the command returns; a call placed
    // while it ran may still reach Edge 1 (reported apart).
    let cutting = epoch();
    lab.cut(EDGE1);
    let cut_at = epoch();
    let seen_down = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        lab.edge_healthy(A, 0) == Some(false)
    });
    let calls = lab.finish(uac);
    let ping = pinger.stop();
    let per = calls.per_call();
    let failed_after = per.failed_since(cut_at);
    let failed_during = per.failed_since(cutting) - failed_after;
    let limit = FAILOVER_AFTER + SIPP_T1;
    let longest = per.longest_setup(f64::MIN, f64::MAX);
    let longest_after = per.longest_setup(cut_at, f64::MAX);
    // Where the calls after the cut were answered.
    let e2 = lab.edge_calls(EDGE2);
    let after: Vec<_> = per.calls.iter().filter(|c| c.invite_at >= cut_at).collect();
    let on_e2 = after.iter().filter(|c| e2.invited(&c.call_id)).count();
    figures(
        "drill 1 Edge failure",
        &calls,
        &per,
        ping.outage(),
        lab.holder(),
        &format!(
            "Edge 1 cut {:.1} s in (the command took {:.0} ms); failed with INVITE after the cut: {failed_after}, \
             while cutting: {failed_during}; \
             longest setup after the cut {} (limit {:.0} ms = failover_after + SIPp T1); \
             failed calls relative to the cut: {}; \
             {on_e2} of {} later calls answered by Edge 2; Edge 1 Unhealthy on A {:.1} s after the cut \
             (Kamailio anchor: 1 failed of 4000, about 2 s setup in the failover window)",
            event_at().as_secs_f64(),
            (cut_at - cutting) * 1000.0,
            ms_or_none(longest_after),
            ms(limit),
            failed_timing(&per, cut_at),
            after.len(),
            seen_down.map_or(-1.0, |d| d.as_secs_f64()),
        ),
    );
    assert_complete(&calls, &per, &lab);
    assert_eq!(failed_after, 0, "failed calls placed after the cut");
    assert!(
        longest.is_some_and(|l| l <= limit),
        "a call waited {longest:?} for its 200 (limit {limit:?})"
    );
    assert!(seen_down.is_some(), "A never saw Edge 1 down");
    assert_eq!(
        on_e2,
        after.len(),
        "calls placed after the cut that Edge 2 never saw"
    );
}

/// Drill 2: the Active host's link cut under load.
#[test]
fn drill_2_active_host_failure() {
    let Some(_lock) = lab_lock("drill_2_active_host_failure") else {
        return;
    };
    let (mut lab, _) = drill_pair(false);
    let pinger = lab.pinger(CARRIER);
    let uac = start_calls(&mut lab, "uac-2", Duration::ZERO);
    sleep_until(&uac, event_at());
    lab.cut(A);
    let took = wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
        lab.holds(B)
    });
    let calls = lab.finish(uac);
    let ping = pinger.stop();
    let per = calls.per_call();
    figures(
        "drill 2 Active host failure",
        &calls,
        &per,
        ping.outage(),
        lab.holder(),
        &format!(
            "A's link cut {:.1} s in; B holds the VIP {} after the cut ({} ms adverts) \
             (keepalived + Kamailio anchor: 1 failed of 4000, 55 retransmissions)",
            event_at().as_secs_f64(),
            ms_or_none(took),
            ADVERT.as_millis(),
        ),
    );
    assert!(took.is_some(), "B never took the VIP");
    assert_complete(&calls, &per, &lab);
    assert!(calls.all_good(total()), "{calls:?}");
}

/// Drill 3: SIGTERM to the Active's trunkvip under load.
#[test]
fn drill_3_graceful_stop() {
    let Some(_lock) = lab_lock("drill_3_graceful_stop") else {
        return;
    };
    let (mut lab, a) = drill_pair(false);
    let pinger = lab.pinger(CARRIER);
    let uac = start_calls(&mut lab, "uac-3", Duration::ZERO);
    sleep_until(&uac, event_at());
    let t0 = Instant::now();
    lab.procs[a].signal("TERM");
    let took = wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
        lab.holds(B) && !lab.holds(A)
    });
    // What A's drain waits for (its admin endpoint answers until it exits).
    let draining = lab.status(A).and_then(|s| s["in_flight"].as_u64());
    // When A's process ends, while the calls go on through B.
    let mut uac = uac;
    let mut exited = None;
    for _ in 0..2000 {
        if exited.is_none() {
            if let Ok(Some(s)) = lab.procs[a].child.try_wait() {
                exited = Some((s, t0.elapsed()));
            }
        }
        if uac.child.child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let calls = lab.finish(uac);
    if exited.is_none() {
        exited = lab.procs[a]
            .wait_for(Duration::from_secs(1))
            .map(|s| (s, t0.elapsed()));
    }
    let ping = pinger.stop();
    let per = calls.per_call();
    figures(
        "drill 3 graceful stop",
        &calls,
        &per,
        ping.outage(),
        lab.holder(),
        &format!(
            "SIGTERM to A {:.1} s in; B alone holds the VIP {} after it; A's process {} \
             (transactions in flight on A after the takeover: {})",
            event_at().as_secs_f64(),
            ms_or_none(took),
            exited.map_or_else(
                || format!(
                    "still running {:.1} s after SIGTERM",
                    t0.elapsed().as_secs_f64()
                ),
                |(s, d)| format!("exited ({s}) {:.1} s after SIGTERM", d.as_secs_f64())
            ),
            draining.map_or_else(|| "gone".to_owned(), |n| n.to_string()),
        ),
    );
    assert!(took.is_some(), "B never took the VIP alone");
    assert_complete(&calls, &per, &lab);
    assert!(calls.all_good(total()), "{calls:?}");
    let worst = per
        .calls
        .iter()
        .max_by_key(|c| c.retransmissions())
        .expect("calls");
    assert!(
        worst.retransmissions() <= 1,
        "more than one retransmission in a call: {worst:?}"
    );
}

/// Drill 4: Edge 1 comes back while Edge 2 carries the calls.
#[test]
fn drill_4_edge_recovery() {
    let Some(_lock) = lab_lock("drill_4_edge_recovery") else {
        return;
    };
    let (mut lab, _) = drill_pair(true);
    // Edge 1 down before the run: every call goes to Edge 2.
    lab.cut(EDGE1);
    let down = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        lab.edge_healthy(A, 0) == Some(false) && lab.edge_healthy(B, 0) == Some(false)
    });
    assert!(down.is_some(), "Edge 1 never Unhealthy on both hosts");
    let pinger = lab.pinger(CARRIER);
    // Long enough that Edge 2 still holds dialogs when Edge 1 is back.
    let call_length = Duration::from_secs(6);
    let uac = start_calls(&mut lab, "uac-4", call_length);
    sleep_until(&uac, event_at());
    let restored_at = epoch();
    lab.restore(EDGE1);
    // The poll that sees it Healthy bounds the change from above.
    let mut healthy_at = None;
    let mut dialogs_on_e2 = None;
    for _ in 0..300 {
        let s = lab.status(A);
        let now = epoch();
        if let Some(s) = s {
            if s["edges"][0]["healthy"] == true {
                healthy_at = Some(now);
                dialogs_on_e2 = s["edges"][1]["active_dialogs"].as_u64();
                break;
            }
        }
        if now - restored_at > 15.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let calls = lab.finish(uac);
    let ping = pinger.stop();
    let per = calls.per_call();
    let healthy_at = healthy_at.expect("Edge 1 never Healthy again on A");
    let recovery = healthy_at - restored_at;
    let (e1, e2) = (lab.edge_calls(EDGE1), lab.edge_calls(EDGE2));
    // Other workers learn the health from worker 0 by a message.
    let settle = healthy_at + 0.05;
    let later: Vec<_> = per.calls.iter().filter(|c| c.invite_at >= settle).collect();
    let later_on_e1 = later.iter().filter(|c| e1.invited(&c.call_id)).count();
    let later_on_e2 = later.iter().filter(|c| e2.invited(&c.call_id)).count();
    // Dialogs set up on Edge 2 end on Edge 2, also after the recovery.
    let e2_dialogs: Vec<_> = e2
        .calls
        .iter()
        .filter(|(_, c)| c.invite_at.is_some())
        .collect();
    let ended_on_e2 = e2_dialogs
        .iter()
        .filter(|(_, c)| c.bye_at.is_some())
        .count();
    let ended_after = e2_dialogs
        .iter()
        .filter(|(_, c)| c.bye_at.is_some_and(|t| t > healthy_at))
        .count();
    let moved = e2_dialogs
        .iter()
        .filter(|(id, _)| e1.calls.get(*id).is_some_and(|c| c.bye_at.is_some()))
        .count();
    figures(
        "drill 4 Edge recovery",
        &calls,
        &per,
        ping.outage(),
        lab.holder(),
        &format!(
            "Edge 1 back {:.1} s in, Healthy on A {recovery:.1} s later (recovery_threshold {RECOVERY_THRESHOLD} x {} s); \
             calls placed after that: {later_on_e1} on Edge 1, {later_on_e2} on Edge 2; \
             {} dialogs on Edge 2 then; of Edge 2's {} dialogs {ended_on_e2} ended there ({ended_after} after Edge 1 was back), {moved} BYEs went to Edge 1",
            event_at().as_secs_f64(),
            INTERVAL.as_secs(),
            dialogs_on_e2.map_or("?".to_owned(), |d| d.to_string()),
            e2_dialogs.len(),
        ),
    );
    assert_complete(&calls, &per, &lab);
    assert!(calls.all_good(total()), "{calls:?}");
    // Not before `recovery_threshold` probes (the first may come at once),
    // and not much later.
    let lo = f64::from(RECOVERY_THRESHOLD - 1) * INTERVAL.as_secs_f64() - 0.1;
    let hi = f64::from(RECOVERY_THRESHOLD + 1) * INTERVAL.as_secs_f64() + 1.0;
    assert!(
        (lo..=hi).contains(&recovery),
        "Edge 1 Healthy {recovery:.2} s after its link came back (expected {lo:.1}-{hi:.1} s)"
    );
    assert!(
        !later.is_empty() && later_on_e1 == later.len() && later_on_e2 == 0,
        "new calls after the recovery: {later_on_e1} on Edge 1, {later_on_e2} on Edge 2, of {}",
        later.len()
    );
    assert_eq!(
        ended_on_e2,
        e2_dialogs.len(),
        "dialogs of Edge 2 without their BYE there"
    );
    assert_eq!(moved, 0, "BYEs of Edge 2's dialogs went to Edge 1");
    assert!(
        ended_after > 0,
        "no dialog of Edge 2 outlived the recovery: the drill tested nothing"
    );
}

/// INVITEs `host` received so far (retransmissions included).
fn invites(lab: &Lab, host: common::lab::Host) -> f64 {
    lab.metric_sum(
        host,
        "trunkvip_requests_received_total",
        "method=\"INVITE\"",
    )
}

/// Drill 5: VRRP blocked between the hosts while everything else flows.
///
/// The block is a policy-routing rule in each host that drops IP protocol
/// 112 arriving on eth0, as an ACL or a multicast filter between the
/// hosts would: both stay up, reach the carrier, the Edges and each other
/// (pair sync keeps running), so only the election is under test. Bridge
/// port isolation would cut the pair channel and the Edges too.
#[test]
fn drill_5_split_brain() {
    let Some(_lock) = lab_lock("drill_5_split_brain") else {
        return;
    };
    let (mut lab, _) = drill_pair(false);
    let (mac_a, mac_b) = (lab.mac(A), lab.mac(B));
    let pinger = lab.pinger(CARRIER);
    let uac = start_calls(&mut lab, "uac-5", Duration::ZERO);
    let phase = Duration::from_secs_f64(f64::from(seconds()) * 0.15);
    sleep_until(&uac, phase);
    lab.block_vrrp(A, true);
    lab.block_vrrp(B, true);
    let both = wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        lab.holds(A) && lab.holds(B)
    });
    assert!(
        both.is_some(),
        "B never went Active beside A\n{}",
        lab.logs()
    );
    let roles = (lab.role(A), lab.role(B));
    // B announced last: everyone points at B.
    let on_b = wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
        lab.neigh(CARRIER).as_deref() == Some(mac_b.as_str())
    });
    // Calls through each host in turn. Both answer ARP for the VIP now, so
    // any neighbour may hold either MAC; set them as A's reply winning
    // would, then as B's.
    let mut through = vec![];
    for (name, mac, host) in [("B", &mac_b, B), ("A", &mac_a, A), ("B", &mac_b, B)] {
        for h in [CARRIER, EDGE1, EDGE2] {
            lab.set_neigh(h, mac);
        }
        let before = (invites(&lab, A), invites(&lab, B));
        std::thread::sleep(phase);
        let after = (invites(&lab, A), invites(&lab, B));
        let (da, db) = (after.0 - before.0, after.1 - before.1);
        through.push((name, host, da, db));
    }
    let heal_start = Instant::now();
    lab.block_vrrp(A, false);
    lab.block_vrrp(B, false);
    // Counted from the moment neither host drops adverts any more.
    let healed = wait_for(Duration::from_secs(3), Duration::from_millis(2), || {
        lab.holds(A) && !lab.holds(B) && lab.neigh(CARRIER).as_deref() == Some(mac_a.as_str())
    });
    let since_first_rule = heal_start.elapsed();
    // What one look costs: the resolution of the figure above.
    let look = Instant::now();
    let _ = lab.holds(A) && !lab.holds(B) && lab.neigh(CARRIER).is_some();
    let look = look.elapsed();
    // And it stays that way.
    let mut sole = true;
    for _ in 0..10 {
        sole &= lab.holds(A) && !lab.holds(B);
        std::thread::sleep(Duration::from_millis(50));
    }
    let edges_on_a = [EDGE1, EDGE2]
        .iter()
        .all(|&h| lab.neigh(h).as_deref() == Some(mac_a.as_str()));
    let calls = lab.finish(uac);
    let ping = pinger.stop();
    let per = calls.per_call();
    let phases: Vec<String> = through
        .iter()
        .map(|(n, _, da, db)| format!("via {n}: A {da:.0} / B {db:.0}"))
        .collect();
    figures(
        "drill 5 split brain",
        &calls,
        &per,
        ping.outage(),
        lab.holder(),
        &format!(
            "VRRP blocked {:.1} s in: both Active after {} (roles {}/{}); INVITEs received per {:.1} s phase: {}; \
             unblocked: A alone holds the VIP and the carrier's entry has A's MAC after {} ({:.0} ms from the first rule's removal; \
             advert interval {} ms; one look takes {:.0} ms); \
             Edges' entries on A: {edges_on_a}",
            phase.as_secs_f64(),
            ms_or_none(both),
            roles.0.as_deref().unwrap_or("?"),
            roles.1.as_deref().unwrap_or("?"),
            phase.as_secs_f64(),
            phases.join(", "),
            ms_or_none(healed),
            ms(since_first_rule),
            ADVERT.as_millis(),
            ms(look),
        ),
    );
    assert_eq!(
        (roles.0.as_deref(), roles.1.as_deref()),
        (Some("Active"), Some("Active")),
        "both should be Active while VRRP is blocked"
    );
    assert!(
        on_b.is_some(),
        "the carrier did not follow B's announcements"
    );
    // Each phase's host took the calls: at least half the rate's INVITEs.
    let want = f64::from(RATE) * phase.as_secs_f64() / 2.0;
    for (n, host, da, db) in &through {
        let got = if *host == A { *da } else { *db };
        assert!(got >= want, "phase via {n}: {got} INVITEs (want {want})");
    }
    // One advert interval, with slack for a loaded 2-core machine and the
    // polling (three `ip` commands per look).
    let heal_limit = ADVERT + Duration::from_millis(400);
    assert!(
        healed.is_some_and(|h| h <= heal_limit),
        "after the unblock: {healed:?} (limit {heal_limit:?}); A holds {}, B holds {}, carrier's entry {:?} (A {mac_a}, B {mac_b})\n{}",
        lab.holds(A),
        lab.holds(B),
        lab.neigh(CARRIER),
        lab.logs()
    );
    assert!(sole, "the VIP did not stay on A alone");
    assert!(edges_on_a, "the Edges' neighbour entries did not follow A");
    assert_complete(&calls, &per, &lab);
    assert!(calls.all_good(total()), "{calls:?}");
}

/// The trace readers the drills count with.
/// How long before A's link is cut the Edges lose what A sends them.
const IN_FLIGHT: Duration = Duration::from_millis(100);

/// Drill 6: host A dies with INVITEs on their way to the Edges. For
/// [`IN_FLIGHT`] before A's link is cut, the Edges drop what arrives from
/// the VIP, as if the last INVITEs A forwarded were lost with it (drill 2
/// hits this window by chance, one call in some runs). A 100 sent to the
/// carrier for those calls would stop its retransmissions and strand them;
/// unanswered, the carrier retransmits them to B once it holds the VIP.
#[test]
fn drill_6_host_failure_with_invites_in_flight() {
    let Some(_lock) = lab_lock("drill_6_host_failure_with_invites_in_flight") else {
        return;
    };
    let (mut lab, _) = drill_pair(false);
    let pinger = lab.pinger(CARRIER);
    let uac = start_calls(&mut lab, "uac-6", Duration::ZERO);
    sleep_until(&uac, event_at());
    let lost_from = epoch();
    for e in [EDGE1, EDGE2] {
        lab.drop_from(e, VIP, true);
    }
    std::thread::sleep(IN_FLIGHT);
    lab.cut(A);
    let cut_at = epoch();
    for e in [EDGE1, EDGE2] {
        lab.drop_from(e, VIP, false);
    }
    let took = wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
        lab.holds(B)
    });
    let calls = lab.finish(uac);
    let ping = pinger.stop();
    let per = calls.per_call();
    let in_window: Vec<_> = per
        .calls
        .iter()
        .filter(|c| c.invite_at >= lost_from && c.invite_at < cut_at)
        .collect();
    let saved = in_window.iter().filter(|c| c.setup.is_some()).count();
    figures(
        "drill 6 host failure with INVITEs in flight",
        &calls,
        &per,
        ping.outage(),
        lab.holder(),
        &format!(
            "the Edges dropped what came from the VIP for {:.0} ms, then A's link was cut \
             {:.1} s in; B holds the VIP {} after the cut; {} calls placed in that window, \
             {saved} of them answered (longest setup {}); failed calls relative to the cut: {}",
            (cut_at - lost_from) * 1000.0,
            event_at().as_secs_f64(),
            ms_or_none(took),
            in_window.len(),
            ms_or_none(per.longest_setup(lost_from, cut_at)),
            failed_timing(&per, cut_at),
        ),
    );
    assert!(took.is_some(), "B never took the VIP");
    assert!(
        !in_window.is_empty(),
        "no call was placed while the Edges dropped A's messages"
    );
    assert_complete(&calls, &per, &lab);
    assert!(calls.all_good(total()), "{calls:?}");
}

/// How long before the SIGTERM the Edges' answers stop reaching A.
const ANSWERS_LOST: Duration = Duration::from_millis(50);

/// Both Edges, as one prefix for `ip rule` (198.51.100.21 and .22).
const EDGES: &str = "198.51.100.20/30";

/// Drill 7: SIGTERM to host A just after the Edges' answers stopped
/// reaching it ([`ANSWERS_LOST`]): the INVITEs A forwarded last hear
/// nothing, and their answers go to B once it holds the VIP. A's silence
/// from the Edges is no Edge failure: were A to fail those calls over (and
/// tell B), B would send the carrier's retransmission to Edge 2 while Edge
/// 1 already rings the call (drill 3 hits this by chance, one call in some
/// runs). No call may ring on Edge 2, and no call placed outside the window
/// may fail. Calls of the window may: the carrier's INVITE retransmission
/// and Edge 1's 200 retransmission cross at B, which cannot know the Edge
/// answered and forwards the INVITE; SIPp's uas then drops its call (a UAS
/// in RFC 6026's Accepted state absorbs it).
#[test]
fn drill_7_graceful_stop_with_answers_lost() {
    let Some(_lock) = lab_lock("drill_7_graceful_stop_with_answers_lost") else {
        return;
    };
    let (mut lab, a) = drill_pair(true);
    let pinger = lab.pinger(CARRIER);
    let uac = start_calls(&mut lab, "uac-7", Duration::ZERO);
    sleep_until(&uac, event_at() - ANSWERS_LOST);
    let lost_from = epoch();
    lab.drop_from(A, EDGES, true);
    std::thread::sleep(ANSWERS_LOST);
    lab.procs[a].signal("TERM");
    let term_at = epoch();
    let took = wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
        lab.holds(B) && !lab.holds(A)
    });
    // A's failover timers (failover_after) have run by now.
    std::thread::sleep(FAILOVER_AFTER * 2);
    lab.drop_from(A, EDGES, false);
    let calls = lab.finish(uac);
    let ping = pinger.stop();
    let per = calls.per_call();
    let in_window = per
        .calls
        .iter()
        .filter(|c| c.invite_at >= lost_from && c.invite_at < term_at)
        .count();
    // A call placed just before the first rule may have its answers
    // caught by it: 20 ms of margin.
    let failed_outside =
        per.failed_since(term_at) + per.failed_ids.len() - per.failed_since(lost_from - 0.020);
    let on_e2 = lab
        .edge_calls(EDGE2)
        .calls
        .values()
        .filter(|c| c.invite_at.is_some())
        .count();
    figures(
        "drill 7 graceful stop with answers lost",
        &calls,
        &per,
        ping.outage(),
        lab.holder(),
        &format!(
            "the Edges' answers stopped reaching A {:.0} ms before SIGTERM to A, {:.1} s in; \
             {in_window} calls placed in that window; B alone holds the VIP {} after the \
             signal; calls that reached Edge 2: {on_e2}; failed calls relative to the signal: {}",
            (term_at - lost_from) * 1000.0,
            event_at().as_secs_f64(),
            ms_or_none(took),
            failed_timing(&per, term_at),
        ),
    );
    assert!(took.is_some(), "B never took the VIP alone");
    assert!(in_window > 0, "no call was placed while A heard nothing");
    assert_complete(&calls, &per, &lab);
    assert_eq!(on_e2, 0, "calls rang on Edge 2 while Edge 1 was up");
    assert_eq!(
        failed_outside, 0,
        "failed calls placed outside the window: {calls:?}"
    );
}

#[test]
fn shortmsg_and_per_call_parse() {
    use common::lab::{per_call_from, read_shortmsg, EdgeCalls};
    let dir = common::tempdir();
    let p = dir.path().join("m.log");
    let line = |t: f64, d: &str, id: &str, cseq: &str, first: &str| {
        format!("2026-11-25\t04:17:55.770956\t{t:.6}\t{d}\t{id}\t{cseq}\t{first}\n")
    };
    let mut s = String::new();
    s += &line(
        100.0,
        "S",
        "1-9@x",
        "CSeq:1 INVITE",
        "INVITE sip:s@v SIP/2.0",
    );
    s += &line(
        100.5,
        "S",
        "1-9@x",
        "CSeq:1 INVITE",
        "INVITE sip:s@v SIP/2.0",
    );
    s += &line(100.6, "R", "1-9@x", "CSeq:1 INVITE", "SIP/2.0 100 Trying");
    s += &line(100.75, "R", "1-9@x", "CSeq:1 INVITE", "SIP/2.0 200 OK");
    s += &line(100.8, "S", "1-9@x", "CSeq:1 ACK", "ACK sip:s@v SIP/2.0");
    s += &line(100.9, "S", "1-9@x", "CSeq:2 BYE", "BYE sip:s@v SIP/2.0");
    s += &line(101.0, "R", "1-9@x", "CSeq:2 BYE", "SIP/2.0 200 OK");
    s += &line(
        102.0,
        "S",
        "2-9@x",
        "CSeq:1 INVITE",
        "INVITE sip:s@v SIP/2.0",
    );
    // A response to a call we never sent is not a call of ours.
    s += &line(102.1, "R", "9-9@x", "CSeq:1 INVITE", "SIP/2.0 200 OK");
    s += &line(
        102.2,
        "R",
        "8-9@x",
        "CSeq:1 INVITE",
        "INVITE sip:s@v SIP/2.0",
    );
    std::fs::write(&p, s).unwrap();
    let msgs = read_shortmsg(&p);
    assert_eq!(msgs.len(), 10);
    let pc = per_call_from(&msgs, vec!["2-9@x".into(), "7-9@x".into()]);
    assert_eq!(pc.calls.len(), 2);
    let c = pc.get("1-9@x").unwrap();
    assert_eq!((c.invites_sent, c.byes_sent, c.bye_answered), (2, 1, true));
    assert_eq!(c.retransmissions(), 1);
    assert_eq!(c.setup.unwrap().as_millis(), 750);
    assert_eq!(pc.get("2-9@x").unwrap().setup, None);
    assert_eq!(pc.longest_setup(0.0, 200.0).unwrap().as_millis(), 750);
    assert_eq!(pc.longest_setup(101.0, 200.0), None);
    assert_eq!(pc.most_retransmissions(), 1);
    // 2-9 failed after 101.5; 7-9 is unknown to the trace, so it counts.
    assert_eq!(pc.failed_since(101.5), 2);
    assert_eq!(pc.failed_since(103.0), 1);
    // An Edge's trace: requests received only.
    let edge = EdgeCalls::read(&p);
    assert_eq!(edge.calls.len(), 1);
    assert_eq!(edge.calls["8-9@x"].invite_at, Some(102.2));
    assert!(!edge.calls.contains_key("9-9@x"));
    assert!(edge.invited("8-9@x") && !edge.invited("1-9@x"));
}
