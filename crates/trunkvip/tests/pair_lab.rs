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
//! Each test makes its own namespaces, named `tvd<pid>-<n>-<host>`: `sw`
//! holds the bridge, every host has `eth0`, a veth whose other end is a
//! bridge port. Only documentation addresses are used, nothing touches the
//! root namespace, every wait is bounded, and a drop guard kills every
//! process in the test's namespaces and deletes them, also when the test
//! fails. They need root and skip loudly without it (CI runs as root); they
//! run one at a time (they measure time).
//!
//! Cases: (a) one host holds the VIP and calls succeed; (b) SIGTERM to the
//! Active's trunkvip during 100 calls/s: the Backup takes over and no call
//! fails (the hosts share dialogs over `[pair]`); (c) host A can no longer reach any Edge: its
//! priority drops by `track_edges_penalty` and the VIP moves to B, and
//! back when the Edges are reachable again.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{Child, TRUNKVIP};

const VIP: &str = "198.51.100.10";
const ADMIN: &str = "127.0.0.1:9090";

static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Copy, Debug)]
struct Host {
    name: &'static str,
    addr: u8,
}

const CARRIER: Host = Host {
    name: "car",
    addr: 2,
};
const A: Host = Host {
    name: "a",
    addr: 11,
};
const B: Host = Host {
    name: "b",
    addr: 12,
};
const EDGE1: Host = Host {
    name: "e1",
    addr: 21,
};
const EDGE2: Host = Host {
    name: "e2",
    addr: 22,
};

/// The lock that runs these tests one at a time, or `None` (after a loud
/// message) when not root.
fn lab_lock(test: &str) -> Option<MutexGuard<'static, ()>> {
    let uid = Command::new("id").arg("-u").output().ok();
    let root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        let bang = "!".repeat(72);
        // Straight to stderr: the harness captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\n{bang}\n!!! SKIPPED pair lab test {test}: needs root (network namespaces, raw sockets)\n{bang}"
        );
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Says a figure so that it shows in `cargo test` output, passing or not.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "pair_lab: {line}");
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_quiet(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `cond` every `step` until it holds or `limit` passes; how long
/// it took.
fn wait_for(limit: Duration, step: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(step);
    }
}

/// SIPp's counts for one uac run.
#[derive(Debug)]
struct Calls {
    exit: Option<std::process::ExitStatus>,
    successful: u64,
    failed: u64,
    retransmissions: u64,
    elapsed: Duration,
    /// The start of SIPp's error file.
    errors: String,
}

/// The last line of SIPp's -trace_stat file: columns by name.
fn read_stats(path: &Path) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let col = |name: &str| -> Option<u64> {
        let n = head.iter().position(|h| *h == name)?;
        last.get(n)?.trim().parse().ok()
    };
    Some((
        col("SuccessfulCall(C)")?,
        col("FailedCall(C)")?,
        col("Retransmissions(C)").unwrap_or(0),
    ))
}

/// A running `sipp -sn uac` on the carrier.
struct Uac {
    child: Child,
    stats: PathBuf,
    errors: PathBuf,
    started: Instant,
    limit: Duration,
}

struct Lab {
    prefix: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    procs: Vec<Child>,
    /// The VRRP advert interval of the hosts started next.
    advert: &'static str,
}

impl Lab {
    fn new() -> Lab {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("tvd{}-{n}", std::process::id());
        let mut lab = Lab {
            advert: "100ms",
            prefix,
            dir: common::tempdir(),
            namespaces: vec![],
            procs: vec![],
        };
        // From here on, Drop deletes whatever was made.
        let sw = lab.ns("sw");
        run("ip", &["netns", "add", &sw]);
        lab.namespaces.push(sw.clone());
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &sw, "link", "set", "br0", "up"]);
        for h in [CARRIER, A, B, EDGE1, EDGE2] {
            let ns = lab.ns(h.name);
            run("ip", &["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            let port = format!("v{}", h.name);
            run(
                "ip",
                &[
                    "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            run(
                "ip",
                &["-n", &sw, "link", "set", &port, "master", "br0", "up"],
            );
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("198.51.100.{}/24", h.addr),
                    "dev",
                    "eth0",
                ],
            );
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `program args` in `host`'s namespace (`ip netns exec` execs,
    /// so the child's PID is the program's).
    fn spawn(&mut self, host: Host, label: &str, program: &str, args: &[&str]) -> usize {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host.name), program])
            .args(args)
            .env("RUST_LOG", "info");
        let c = Child::spawn(label, &mut cmd, self.dir.path());
        self.procs.push(c);
        self.procs.len() - 1
    }

    fn edges(&mut self) {
        for (h, label) in [(EDGE1, "edge1"), (EDGE2, "edge2")] {
            let ip = format!("198.51.100.{}", h.addr);
            self.spawn(
                h,
                label,
                "sipp",
                &["-sn", "uas", "-aa", "-nostdin", "-i", &ip, "-p", "5060"],
            );
        }
    }

    /// `trunkvip run` on host A (priority 150) or B (100), each naming the
    /// other as its unicast peer.
    fn trunkvip(&mut self, host: Host) -> usize {
        let (priority, peer) = if host.addr == A.addr {
            (150, B)
        } else {
            (100, A)
        };
        // The pair shares dialogs and branches over its own channel.
        let secret = self.path("pair.key");
        std::fs::write(&secret, "lab pair secret, 32 bytes long!!").expect("pair key");
        let config = format!(
            r#"listen = ["udp:{VIP}:5060"]
host_address = "198.51.100.{me}"
workers = 2

[[edge]]
name = "EDGE-1"
uri = "sip:198.51.100.21:5060;transport=udp"
priority = 1

[[edge]]
name = "EDGE-2"
uri = "sip:198.51.100.22:5060;transport=udp"
priority = 2

[health_check]
interval = "300ms"
timeout = "200ms"
failure_threshold = 2
recovery_threshold = 1
failover_after = "250ms"

[carrier]
allow = ["198.51.100.0/24"]

[admin]
listen = "{ADMIN}"

[vip]
address = "{VIP}/24"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = "{advert}"
preempt = true
preempt_delay = "0s"
peers = ["198.51.100.{peer}"]
track_edges_penalty = 100
announce_count = 3
announce_spacing = "50ms"

[pair]
peer = "198.51.100.{peer}:5099"
secret_file = "{secret}"
"#,
            me = host.addr,
            peer = peer.addr,
            advert = self.advert,
            secret = secret.display(),
        );
        let path = self.path(&format!("trunkvip-{}.toml", host.name));
        std::fs::write(&path, config).expect("config");
        let path = path.display().to_string();
        self.spawn(
            host,
            &format!("trunkvip-{}", host.name),
            TRUNKVIP,
            &["run", "--config", &path],
        )
    }

    /// `GET /status` of the trunkvip in `host`, through `trunkvip status
    /// --json`.
    fn status(&self, host: Host) -> Option<serde_json::Value> {
        let out = run_quiet(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns(host.name),
                TRUNKVIP,
                "status",
                "--json",
                "--admin",
                ADMIN,
            ],
        )?;
        serde_json::from_str(&out).ok()
    }

    /// The table of `trunkvip status --admin` in `host`.
    fn status_table(&self, host: Host) -> String {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns(host.name),
                TRUNKVIP,
                "status",
                "--admin",
                ADMIN,
            ],
        )
    }

    /// `GET path` on the admin endpoint in `host` (bash's /dev/tcp: no
    /// curl needed).
    fn http_get(&self, host: Host, path: &str) -> String {
        let (ip, port) = ADMIN.split_once(':').expect("admin address");
        let script = format!(
            "exec 3<>/dev/tcp/{ip}/{port}; printf 'GET {path} HTTP/1.1\\r\\nHost: {ADMIN}\\r\\nConnection: close\\r\\n\\r\\n' >&3; timeout 5 cat <&3"
        );
        run(
            "ip",
            &["netns", "exec", &self.ns(host.name), "bash", "-c", &script],
        )
    }

    fn role(&self, host: Host) -> Option<String> {
        let s = self.status(host)?;
        s["vip"]["role"].as_str().map(str::to_owned)
    }

    /// Whether the VIP is on `host`'s eth0.
    fn holds(&self, host: Host) -> bool {
        run_quiet(
            "ip",
            &[
                "-n",
                &self.ns(host.name),
                "-o",
                "-4",
                "addr",
                "show",
                "dev",
                "eth0",
            ],
        )
        .is_some_and(|s| s.contains(&format!(" {VIP}/")))
    }

    /// Waits until A is Active and holds the VIP, B is Backup and does
    /// not, and both see both Edges healthy.
    fn wait_settled(&mut self, limit: Duration) -> Duration {
        let settled = |lab: &Lab| {
            let healthy = |h: Host| {
                lab.status(h).is_some_and(|s| {
                    s["edges"]
                        .as_array()
                        .is_some_and(|e| e.len() == 2 && e.iter().all(|e| e["healthy"] == true))
                })
            };
            lab.role(A).as_deref() == Some("Active")
                && lab.role(B).as_deref() == Some("Backup")
                && lab.holds(A)
                && !lab.holds(B)
                && healthy(A)
                && healthy(B)
        };
        match wait_for(limit, Duration::from_millis(100), || settled(self)) {
            Some(d) => d,
            None => panic!(
                "the pair did not settle in {limit:?}: A {:?} holds {}, B {:?} holds {}",
                self.status(A),
                self.holds(A),
                self.status(B),
                self.holds(B)
            ),
        }
    }

    /// Starts `sipp -sn uac` on the carrier against the VIP.
    fn uac(&mut self, label: &str, calls: u32, rate: u32, limit: Duration) -> Uac {
        let stats = self.path(&format!("{label}.csv"));
        let errors = self.path(&format!("{label}-errors.log"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(CARRIER.name), "sipp"])
            .args(["-sn", "uac", "-nostdin", "-i", "198.51.100.2", "-p", "5060"])
            .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
            .args(["-trace_stat", "-stf"])
            .arg(&stats)
            .args(["-fd", "1", "-trace_err", "-error_file"])
            .arg(&errors)
            // A call waiting longer than this for a message fails.
            .args(["-recv_timeout", "8000"])
            .args(["-timeout", &format!("{}s", limit.as_secs())])
            .arg(format!("{VIP}:5060"));
        let child = Child::spawn(label, &mut cmd, self.dir.path());
        Uac {
            child,
            stats,
            errors,
            started: Instant::now(),
            limit,
        }
    }

    fn finish(&self, mut uac: Uac) -> Calls {
        let exit = uac.child.wait_for(uac.limit + Duration::from_secs(5));
        if exit.is_none() {
            uac.child.kill();
        }
        let elapsed = uac.started.elapsed();
        let (successful, failed, retransmissions) =
            read_stats(&uac.stats).unwrap_or((0, u64::MAX, 0));
        let errors = std::fs::read_to_string(&uac.errors).unwrap_or_default();
        Calls {
            exit,
            successful,
            failed,
            retransmissions,
            elapsed,
            errors: errors.chars().take(3000).collect(),
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            out.push_str(&p.log());
            out.push('\n');
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "===== pair lab {} logs =====\n{}",
                self.prefix,
                self.logs()
            );
        }
        for p in &mut self.procs {
            p.kill();
        }
        // Anything else still running in our namespaces is ours too.
        for ns in &self.namespaces {
            if let Some(pids) = run_quiet("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    if pid.parse::<u32>().is_ok() {
                        let _ = run_quiet("kill", &["-KILL", pid]);
                    }
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            // A namespace whose last process is still exiting may need a
            // second try.
            for _ in 0..50 {
                if run_quiet("ip", &["netns", "del", ns]).is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A lab with Edges and both daemons, settled.
fn pair() -> (Lab, usize, usize) {
    let mut lab = Lab::new();
    lab.edges();
    let a = lab.trunkvip(A);
    let b = lab.trunkvip(B);
    let took = lab.wait_settled(Duration::from_secs(10));
    report(&format!("pair settled in {} ms", took.as_millis()));
    (lab, a, b)
}

#[test]
fn a_one_host_holds_the_vip_and_calls_succeed() {
    let Some(_lock) = lab_lock("a_one_host_holds_the_vip_and_calls_succeed") else {
        return;
    };
    let (mut lab, _a, _b) = pair();
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
    let table = lab.status_table(A);
    assert!(
        table.contains("Active, holds the VIP, priority 150"),
        "{table}"
    );
    // A Backup is silent: the Active has heard no one.
    assert!(table.contains("peer last heard: none"), "{table}");
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
