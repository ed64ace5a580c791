//! Issue #8's soak in the namespace lab (`common/lab.rs`): while the
//! carrier's `sipp -sn uac` places 200 calls/s through the VIP of a
//! trunkvip pair, `examples/hostile.rs` throws at it, all at once:
//!
//! - malformed and mutated datagrams (the fuzz seed corpus and the RFC 4475
//!   messages, mutated), from an allowed source: 1 million a minute;
//! - valid INVITEs from a source outside `carrier.allow`;
//! - valid INVITEs from an allowed source far over `carrier.rate_limit`;
//! - 5000 half-open TLS connections from 50 source addresses;
//! - forged VRRP adverts (not a peer; a peer's address with a wrong TTL,
//!   VRID, version or checksum).
//!
//! It passes with 0 failed calls in SIPp's count, neither daemon restarted,
//! no VRRP transition, no answer to the outsider, the flooder refused,
//! every forgery dropped, and the peak RSS under a bound; it prints one
//! `SOAK` line of figures. `make soak` runs it for 60 s at full rate on
//! the release build (`SOAK_SECONDS`, `SOAK_SCALE`); `make test` runs a
//! 15 s form at a fifth of the rates on the debug build. Root only.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::lab::{
    lab_lock, pair_with, report, run, Host, Lab, UacOptions, A, B, CARRIER, DEPLOY_HEALTH, VIP,
};

/// An allowed source that sends garbage and holds half-open TLS.
const JUNK: Host = Host {
    name: "junk",
    addr: 30,
};
/// An allowed source flooding INVITEs over its rate limit.
const FLOOD: Host = Host {
    name: "flood",
    addr: 31,
};
/// A host on the segment whose source address is outside `carrier.allow`.
const OUTSIDER: Host = Host {
    name: "out",
    addr: 32,
};
const OUTSIDER_IP: &str = "203.0.113.66";
/// Forges VRRP adverts.
const FORGER: Host = Host {
    name: "forge",
    addr: 33,
};

const CALL_RATE: u32 = 200;
/// New requests per second per source: the carrier's 200 INVITEs fit.
const RATE_LIMIT: u32 = 250;
const RATE_BURST: u32 = 500;
/// At full scale: garbage per minute, flood rates, half-open connections.
const GARBAGE_PER_MINUTE: f64 = 1_000_000.0;
const OUTSIDER_RATE: f64 = 2000.0;
const FLOOD_RATE: f64 = 2500.0;
const HALF_OPEN: usize = 5000;
const TLS_SOURCES: u8 = 50;
const VRRP_RATE: f64 = 200.0;
/// Peak RSS allowed for one daemon.
const RSS_LIMIT_KIB: u64 = 512 * 1024;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The example binary beside the test's `trunkvip` (cargo builds examples
/// with the tests).
fn hostile() -> String {
    let bin = PathBuf::from(common::TRUNKVIP);
    let p = bin
        .parent()
        .expect("target dir")
        .join("examples")
        .join("hostile");
    assert!(
        p.exists(),
        "{} is missing: cargo build -p trunkvip --example hostile (same profile)",
        p.display()
    );
    p.display().to_string()
}

fn seeds() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs = [
        root.join("crates/sip/fuzz/corpus/seed-datagram"),
        root.join("tests/data/rfc4475"),
    ];
    dirs.iter()
        .map(|d| {
            assert!(d.is_dir(), "{} missing", d.display());
            d.display().to_string()
        })
        .collect()
}

/// `(VmRSS, VmHWM)` of a process, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The one line a hostile subcommand printed.
fn said(lab: &Lab, label: &str) -> String {
    let text = std::fs::read_to_string(lab.path(&format!("{label}.log"))).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(nothing)")
        .to_owned()
}

/// The number after `word` in `line` ("sent 123", "123 answers").
fn number_after(line: &str, word: &str) -> Option<u64> {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next()?.parse().ok();
        }
    }
    None
}

fn number_before(line: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == word)?;
    words.get(i.checked_sub(1)?)?.parse().ok()
}

/// `status:count` pairs of a hostile `invites` line.
fn answers_with(line: &str, status: &str) -> u64 {
    line.split(['[', ']', ' '])
        .filter_map(|w| w.split_once(':'))
        .filter(|(s, _)| *s == status)
        .filter_map(|(_, n)| n.parse::<u64>().ok())
        .sum()
}

/// The sum of the `kind:count` pairs of a hostile `vrrp` line.
fn number_sum(line: &str) -> u64 {
    line.split(['[', ']', ' '])
        .filter_map(|w| w.split_once(':'))
        .filter_map(|(_, n)| n.parse::<u64>().ok())
        .sum()
}

/// Waits (bounded) for a hostile child and returns its line.
fn finish(lab: &mut Lab, idx: usize, label: &str, limit: Duration) -> String {
    if lab.procs[idx].wait_for(limit).is_none() {
        lab.procs[idx].kill();
        return format!("(killed after {limit:?}) {}", said(lab, label));
    }
    said(lab, label)
}

#[test]
fn soak_under_hostile_traffic() {
    let Some(_lock) = lab_lock("soak_under_hostile_traffic") else {
        return;
    };
    let secs: u64 = env_or("SOAK_SECONDS", 15u64).clamp(5, 600);
    let scale: f64 = env_or("SOAK_SCALE", 0.2f64).clamp(0.01, 1.0);
    let hostile = hostile();
    let seeds = seeds();

    let (mut lab, a, b) = pair_with(|lab| {
        lab.health = DEPLOY_HEALTH;
        lab.advert = "100ms";
        let certs = common::gen_certs(lab.dir.path());
        lab.listen.push(format!("tls:{VIP}:5061"));
        lab.extra = format!(
            "\n[tls]\ncert = \"{c}/cert.pem\"\nkey = \"{c}/key.pem\"\n",
            c = certs.display()
        );
        lab.carrier_extra = format!("rate_limit = {RATE_LIMIT}\nrate_burst = {RATE_BURST}\n");
    });
    for h in [JUNK, FLOOD, OUTSIDER, FORGER] {
        lab.add_host(h);
    }
    // The outsider's address; A and B get a route back so that reverse
    // path filtering lets it in and trunkvip itself must refuse it.
    let ns = lab.ns(OUTSIDER.name);
    run(
        "ip",
        &[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{OUTSIDER_IP}/24"),
            "dev",
            "eth0",
        ],
    );
    for h in [A, B] {
        run(
            "ip",
            &[
                "-n",
                &lab.ns(h.name),
                "route",
                "add",
                "203.0.113.0/24",
                "dev",
                "eth0",
            ],
        );
    }
    let junk_ns = lab.ns(JUNK.name);
    let mut tls_sources = vec![];
    for n in 0..TLS_SOURCES {
        let ip = format!("198.51.100.{}", 100 + n);
        run(
            "ip",
            &[
                "-n",
                &junk_ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        );
        tls_sources.push(ip);
    }

    let pid_a = lab.procs[a].pid();
    let pid_b = lab.procs[b].pid();
    let rss_before = (rss_kib(pid_a).0, rss_kib(pid_b).0);
    let transitions = |lab: &Lab, h| lab.metric_sum(h, "trunkvip_vrrp_transitions_total", "");
    let trans_before = (transitions(&lab, A), transitions(&lab, B));
    let metric = |lab: &Lab, name: &str, label: &str| lab.metric_sum(A, name, label);

    let total_calls = u64::from(CALL_RATE) * secs;
    let mut o = UacOptions::new(
        total_calls as u32,
        CALL_RATE,
        Duration::from_secs(secs + 60),
    );
    o.from = CARRIER;
    let uac = lab.uac_with("uac-soak", &o);

    let garbage = (GARBAGE_PER_MINUTE * scale * secs as f64 / 60.0) as u64;
    let garbage_rate = (garbage / secs).max(1);
    let s = secs.to_string();
    let target = format!("{VIP}:5060");
    let mut args = vec![
        "garbage".to_owned(),
        "--target".into(),
        target.clone(),
        "--count".into(),
        garbage.to_string(),
        "--rate".into(),
        garbage_rate.to_string(),
    ];
    for d in &seeds {
        args.extend(["--seeds".into(), d.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let g = lab.spawn(JUNK, "hostile-garbage", &hostile, &args);
    let outsider_rate = ((OUTSIDER_RATE * scale) as u64).max(1).to_string();
    let bind_out = format!("{OUTSIDER_IP}:0");
    let out = lab.spawn(
        OUTSIDER,
        "hostile-outsider",
        &hostile,
        &[
            "invites",
            "--target",
            &target,
            "--bind",
            &bind_out,
            "--rate",
            &outsider_rate,
            "--seconds",
            &s,
        ],
    );
    let flood_rate = ((FLOOD_RATE * scale) as u64).max(1);
    let bind_flood = format!("{}:0", FLOOD.ip());
    let fl = lab.spawn(
        FLOOD,
        "hostile-flood",
        &hostile,
        &[
            "invites",
            "--target",
            &target,
            "--bind",
            &bind_flood,
            "--rate",
            &flood_rate.to_string(),
            "--seconds",
            &s,
        ],
    );
    let tls_target = format!("{VIP}:5061");
    let mut args = vec![
        "tls-halfopen".to_owned(),
        "--target".into(),
        tls_target,
        "--count".into(),
        HALF_OPEN.to_string(),
        "--hold-seconds".into(),
        s.clone(),
    ];
    for ip in &tls_sources {
        args.extend(["--source".into(), ip.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = lab.spawn(JUNK, "hostile-tls", &hostile, &args);
    let vrrp_rate = ((VRRP_RATE * scale) as u64).max(5).to_string();
    let (forger, a_ip, b_ip) = (FORGER.ip(), A.ip(), B.ip());
    let v = lab.spawn(
        FORGER,
        "hostile-vrrp",
        &hostile,
        &[
            "vrrp",
            "--source",
            &forger,
            "--spoof",
            &b_ip,
            "--spoof",
            &a_ip,
            "--to",
            &a_ip,
            "--to",
            &b_ip,
            "--vrid",
            "51",
            "--vip",
            VIP,
            "--rate",
            &vrrp_rate,
            "--seconds",
            &s,
        ],
    );

    // The daemons' memory, every second, while it lasts.
    let mut rss_peak_seen = (0u64, 0u64);
    for _ in 0..secs {
        std::thread::sleep(Duration::from_secs(1));
        let (ra, rb) = (rss_kib(pid_a).0, rss_kib(pid_b).0);
        rss_peak_seen = (rss_peak_seen.0.max(ra), rss_peak_seen.1.max(rb));
    }
    let limit = Duration::from_secs(secs + 90);
    let garbage_line = finish(&mut lab, g, "hostile-garbage", limit);
    let outsider_line = finish(&mut lab, out, "hostile-outsider", limit);
    let flood_line = finish(&mut lab, fl, "hostile-flood", limit);
    let tls_line = finish(&mut lab, t, "hostile-tls", limit);
    let vrrp_line = finish(&mut lab, v, "hostile-vrrp", limit);
    let calls = lab.finish(uac);

    let alive_a = lab.procs[a].child.try_wait().expect("try_wait").is_none();
    let alive_b = lab.procs[b].child.try_wait().expect("try_wait").is_none();
    let hwm = (rss_kib(pid_a).1, rss_kib(pid_b).1);
    let trans_after = (transitions(&lab, A), transitions(&lab, B));
    let not_allowed = metric(&lab, "trunkvip_dropped_total", "reason=\"not_allowed\"");
    let unparseable = metric(&lab, "trunkvip_dropped_total", "reason=\"unparseable\"");
    let parse_errors = metric(&lab, "trunkvip_parse_errors_total", "");
    let rate_limited = metric(&lab, "trunkvip_dropped_total", "reason=\"rate_limited\"");
    let refused_503 = metric(&lab, "trunkvip_rate_limited_503_total", "");
    let vrrp_drops = |h| lab.metric_sum(h, "trunkvip_vrrp_adverts_dropped_total", "");
    let (vrrp_dropped_a, vrrp_dropped_b) = (vrrp_drops(A), vrrp_drops(B));
    let conn_refused = metric(&lab, "trunkvip_connections_refused_total", "");
    let conn_closed = metric(&lab, "trunkvip_connections_closed_total", "");
    let holder = lab.holder();

    let outsider_sent = number_after(&outsider_line, "sent").unwrap_or(0);
    let outsider_answers = number_before(&outsider_line, "answers").unwrap_or(u64::MAX);
    let flood_sent = number_after(&flood_line, "sent").unwrap_or(0);
    let flood_503 = answers_with(&flood_line, "503");
    let garbage_sent = number_after(&garbage_line, "sent").unwrap_or(0);
    report(
        "SOAK",
        &format!(
            "{secs} s at scale {scale}: calls {} successful, {} failed, {} retransmissions \
             (of {total_calls} at {CALL_RATE}/s); daemons alive A {alive_a} B {alive_b}; VIP on \
             {holder}; VRRP transitions A {} B {}; RSS KiB before A {} B {}, peak sampled A {} B \
             {}, VmHWM A {} B {}; on A: not_allowed {not_allowed}, unparseable {unparseable}, \
             parse errors {parse_errors}, rate_limited {rate_limited}, 503 {refused_503}, \
             connections refused {conn_refused} closed {conn_closed}; VRRP dropped A \
             {vrrp_dropped_a} B {vrrp_dropped_b}; load {}",
            calls.successful,
            calls.failed,
            calls.retransmissions,
            trans_after.0 - trans_before.0,
            trans_after.1 - trans_before.1,
            rss_before.0,
            rss_before.1,
            rss_peak_seen.0,
            rss_peak_seen.1,
            hwm.0,
            hwm.1,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim(),
        ),
    );
    for l in [
        &garbage_line,
        &outsider_line,
        &flood_line,
        &tls_line,
        &vrrp_line,
    ] {
        report("SOAK", l);
    }

    assert!(alive_a && alive_b, "a daemon died:\n{}", lab.logs());
    assert!(calls.all_good(total_calls), "{calls:?}");
    assert_eq!(trans_after, trans_before, "a VRRP transition under attack");
    assert_eq!(holder, "A");
    assert!(garbage_sent >= garbage * 9 / 10, "{garbage_line}");
    assert!(parse_errors + unparseable > 0.0);
    assert!(outsider_sent > 0, "{outsider_line}");
    assert_eq!(
        outsider_answers, 0,
        "the outsider got answers: {outsider_line}"
    );
    assert!(not_allowed > 0.0);
    assert!(flood_sent > 0, "{flood_line}");
    assert!(flood_503 >= 1, "the flooder never got a 503: {flood_line}");
    // Two workers, one 503 a second each at most, while the flood lasts.
    assert!(flood_503 <= 2 * (secs + 2), "{flood_line}");
    // Whatever passed the limit is at most its rate; the rest was dropped.
    let passed_at_most = u64::from(RATE_LIMIT) * (secs + 2) + u64::from(RATE_BURST);
    assert!(
        rate_limited >= flood_sent.saturating_sub(passed_at_most + flood_503) as f64 * 0.9,
        "{flood_line}: rate_limited {rate_limited}"
    );
    assert!(tls_line.starts_with("tls-halfopen:"), "{tls_line}");
    assert!(conn_refused + conn_closed > 0.0);
    assert!(vrrp_line.starts_with("vrrp: sent"), "{vrrp_line}");
    // Every forgery is dropped by VRRP (none by the kernel): both hosts
    // count at least 9 in 10 of what was sent to them.
    let forged = number_sum(&vrrp_line) as f64 / 2.0;
    assert!(
        vrrp_dropped_a >= forged * 0.9 && vrrp_dropped_b >= forged * 0.9,
        "{vrrp_line}: dropped A {vrrp_dropped_a} B {vrrp_dropped_b}"
    );
    for (who, peak) in [("A", hwm.0), ("B", hwm.1)] {
        assert!(
            peak < RSS_LIMIT_KIB,
            "{who}'s peak RSS {peak} KiB over {RSS_LIMIT_KIB}"
        );
    }
}
