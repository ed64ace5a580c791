//! A trunkvip pair in network namespaces, for `pair_lab.rs`, `drill.rs`
//! and any other lab test: two `trunkvip run` with `[vip]` (unicast peers)
//! and `[pair]`, a carrier running `sipp -sn uac` against the VIP, two
//! Edges running `sipp -sn uas -aa`.
//!
//! ```text
//!  carrier 198.51.100.2 ──► VIP 198.51.100.10 ─┬─ host A 198.51.100.11 (priority 150)
//!                                              └─ host B 198.51.100.12 (priority 100)
//!                          Edge 1 198.51.100.21 ◄─┤
//!                          Edge 2 198.51.100.22 ◄─┘
//! ```
//!
//! The namespaces, the helpers and the [`Pinger`] are `trunkvip-netlab`'s,
//! shared with the VIP crate's lab. Each lab makes its own namespaces,
//! named `tvd<pid>-<n>-<host>`: `sw` holds the bridge, every host has
//! `eth0`, a veth whose other end is the bridge port `v<host>`. More
//! hosts on the same segment (extra carriers, attackers) come from
//! [`Lab::add_host`]. Only documentation addresses are used, nothing
//! touches the root namespace, every wait is bounded, and the drop guard
//! kills every process in the lab's namespaces and deletes them, also
//! when the test fails. Lab tests need root and skip
//! loudly without it (CI runs as root); [`lab_lock`] runs them one at a
//! time (they measure time). `LAB_KEEP=1` keeps each lab's files (logs,
//! SIPp traces) and prints where; `LAB_PCAP=1` has each host record the
//! SIP messages it sends and receives there (its `[debug] pcap`);
//! `LAB_TRUNKVIP=<path>` runs that build of the daemon on both hosts
//! instead of this one.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use trunkvip_netlab::Segment;
// Each test binary uses its own part of these.
#[allow(unused_imports)]
pub use trunkvip_netlab::{lab_lock, ms, run, run_quiet, wait_for, Host, Pinger};

use super::{Child, TRUNKVIP};

pub const VIP: &str = "198.51.100.10";
pub const ADMIN: &str = "127.0.0.1:9090";
/// SIPp's T1: the first INVITE and BYE retransmission after 500 ms.
pub const SIPP_T1: Duration = Duration::from_millis(500);

pub const CARRIER: Host = Host {
    name: "car",
    addr: 2,
};
pub const A: Host = Host {
    name: "a",
    addr: 11,
};
pub const B: Host = Host {
    name: "b",
    addr: 12,
};
pub const EDGE1: Host = Host {
    name: "e1",
    addr: 21,
};
pub const EDGE2: Host = Host {
    name: "e2",
    addr: 22,
};

/// The lab tests' own `[health_check]`: quick, for short tests.
pub const FAST_HEALTH: &str = r#"interval = "300ms"
timeout = "200ms"
failure_threshold = 2
recovery_threshold = 1
failover_after = "250ms"
"#;

/// The deployment's `[health_check]` (deploy/trunkvip-host-a.toml), which
/// is also how the Kamailio anchor probes: every 1 s, 3 down, 5 up.
pub const DEPLOY_HEALTH: &str = r#"interval = "1s"
timeout = "500ms"
failure_threshold = 3
recovery_threshold = 5
failover_after = "250ms"
"#;

/// Says a figure so that it shows in `cargo test` output, passing or not.
pub fn report(who: &str, line: &str) {
    let _ = writeln!(std::io::stderr(), "{who}: {line}");
}

/// Wall-clock seconds, the time base of SIPp's traces.
pub fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How a carrier-side `sipp -sn uac` runs.
#[derive(Clone, Debug)]
pub struct UacOptions {
    pub calls: u32,
    pub rate: u32,
    /// SIPp's global `-timeout`; the run is killed a little after it.
    pub limit: Duration,
    /// `-d`: the pause between ACK and BYE.
    pub call_length: Duration,
    /// Where the uac runs and its local port.
    pub from: Host,
    pub port: u16,
    /// `-trace_shortmsg` and `-trace_calldebug`: every message's time and
    /// the Call-IDs of failed calls, for [`Calls::per_call`].
    pub per_call: bool,
}

impl UacOptions {
    pub fn new(calls: u32, rate: u32, limit: Duration) -> UacOptions {
        UacOptions {
            calls,
            rate,
            limit,
            call_length: Duration::ZERO,
            from: CARRIER,
            port: 5060,
            per_call: false,
        }
    }
}

/// A running `sipp -sn uac`.
#[derive(Debug)]
pub struct Uac {
    pub child: Child,
    stats: PathBuf,
    errors: PathBuf,
    shortmsg: Option<PathBuf>,
    calldebug: Option<PathBuf>,
    /// Wall clock at the start, for times relative to the run.
    pub started_at: f64,
    started: Instant,
    limit: Duration,
}

/// SIPp's counts for one uac run.
#[derive(Debug)]
pub struct Calls {
    pub exit: Option<std::process::ExitStatus>,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    pub elapsed: Duration,
    pub started_at: f64,
    /// The start of SIPp's error file.
    pub errors: String,
    shortmsg: Option<PathBuf>,
    calldebug: Option<PathBuf>,
}

/// SIPp's statistics columns of the last line of a `-trace_stat` file.
fn read_stats(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    Some(
        head.iter()
            .zip(last)
            .map(|(h, v)| ((*h).to_owned(), v.trim().to_owned()))
            .collect(),
    )
}

fn stat(stats: &HashMap<String, String>, name: &str) -> Option<u64> {
    stats.get(name)?.parse().ok()
}

/// One line of SIPp's `-trace_shortmsg` file.
#[derive(Clone, Debug)]
pub struct ShortMsg {
    /// Wall-clock seconds.
    pub at: f64,
    pub sent: bool,
    pub call_id: String,
    /// `INVITE`, `ACK`, `BYE`, ...: the CSeq method.
    pub method: String,
    /// The request or status line.
    pub first_line: String,
}

/// Reads a `-trace_shortmsg` file: date, time, epoch, S or R, Call-ID,
/// `CSeq:n METHOD`, first line; tab-separated.
pub fn read_shortmsg(path: &Path) -> Vec<ShortMsg> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() < 7 {
                return None;
            }
            Some(ShortMsg {
                at: f[2].parse().ok()?,
                sent: f[3] == "S",
                call_id: f[4].to_owned(),
                method: f[5].split_whitespace().nth(1)?.to_owned(),
                first_line: f[6].to_owned(),
            })
        })
        .collect()
}

/// One carrier call as the uac saw it.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub call_id: String,
    /// When the first INVITE left (wall clock).
    pub invite_at: f64,
    /// From the first INVITE to the first 200 to it.
    pub setup: Option<Duration>,
    pub invites_sent: u32,
    pub byes_sent: u32,
    /// When the first BYE left.
    pub bye_at: Option<f64>,
    pub bye_answered: bool,
}

impl CallRecord {
    /// SIPp's own retransmissions of this call (INVITE and BYE; an ACK
    /// repeated for a repeated 200 is not one).
    pub fn retransmissions(&self) -> u32 {
        self.invites_sent.saturating_sub(1) + self.byes_sent.saturating_sub(1)
    }
}

/// Every call of a run, from SIPp's message trace, and the Call-IDs SIPp
/// counted as failed (its call debug file).
#[derive(Debug)]
pub struct PerCall {
    /// In order of the first INVITE.
    pub calls: Vec<CallRecord>,
    pub failed_ids: Vec<String>,
}

impl PerCall {
    pub fn get(&self, id: &str) -> Option<&CallRecord> {
        self.calls.iter().find(|c| c.call_id == id)
    }

    /// The longest setup of the calls whose INVITE left in `[from, to)`.
    pub fn longest_setup(&self, from: f64, to: f64) -> Option<Duration> {
        self.calls
            .iter()
            .filter(|c| c.invite_at >= from && c.invite_at < to)
            .filter_map(|c| c.setup)
            .max()
    }

    pub fn most_retransmissions(&self) -> u32 {
        self.calls
            .iter()
            .map(CallRecord::retransmissions)
            .max()
            .unwrap_or(0)
    }

    /// Failed calls whose INVITE left at or after `t`; a failed call the
    /// trace does not know counts too (no excuse for it).
    pub fn failed_since(&self, t: f64) -> usize {
        self.failed_ids
            .iter()
            .filter(|id| self.get(id).is_none_or(|c| c.invite_at >= t))
            .count()
    }
}

/// The calls of a uac's message trace.
pub fn per_call_from(msgs: &[ShortMsg], failed_ids: Vec<String>) -> PerCall {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut calls: Vec<CallRecord> = vec![];
    for m in msgs {
        if !m.sent && !index.contains_key(m.call_id.as_str()) {
            continue;
        }
        let n = *index.entry(m.call_id.as_str()).or_insert_with(|| {
            calls.push(CallRecord {
                call_id: m.call_id.clone(),
                invite_at: m.at,
                setup: None,
                invites_sent: 0,
                byes_sent: 0,
                bye_at: None,
                bye_answered: false,
            });
            calls.len() - 1
        });
        let c = &mut calls[n];
        let ok = m.first_line.starts_with("SIP/2.0 200");
        match (m.sent, m.method.as_str()) {
            (true, "INVITE") => c.invites_sent += 1,
            (true, "BYE") => {
                c.byes_sent += 1;
                c.bye_at.get_or_insert(m.at);
            }
            (false, "INVITE") if ok && c.setup.is_none() => {
                c.setup = Some(Duration::from_secs_f64((m.at - c.invite_at).max(0.0)));
            }
            (false, "BYE") if ok => c.bye_answered = true,
            _ => {}
        }
    }
    PerCall { calls, failed_ids }
}

impl Calls {
    /// Whether SIPp ran to its end with every call successful.
    pub fn all_good(&self, expected: u64) -> bool {
        self.exit.is_some_and(|s| s.success()) && self.failed == 0 && self.successful == expected
    }

    /// Per-call figures (needs [`UacOptions::per_call`]).
    pub fn per_call(&self) -> PerCall {
        let msgs = self
            .shortmsg
            .as_deref()
            .map(read_shortmsg)
            .unwrap_or_default();
        // "Call debugging information for call <Call-ID>:", one per
        // aborted call.
        let failed_ids = self
            .calldebug
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("Call debugging information for call ")
                    .map(|r| r.trim_end_matches(':').to_owned())
            })
            .collect();
        per_call_from(&msgs, failed_ids)
    }
}

/// The calls one Edge saw (its uas `-trace_shortmsg`): Call-ID to when
/// the INVITE and the BYE arrived.
#[derive(Debug, Default)]
pub struct EdgeCalls {
    pub calls: HashMap<String, EdgeCall>,
}

#[derive(Clone, Debug, Default)]
pub struct EdgeCall {
    pub invite_at: Option<f64>,
    pub bye_at: Option<f64>,
}

impl EdgeCalls {
    pub fn read(path: &Path) -> EdgeCalls {
        let mut calls: HashMap<String, EdgeCall> = HashMap::new();
        // Requests only: what a uas receives.
        let requests = read_shortmsg(path)
            .into_iter()
            .filter(|m| !m.sent && m.first_line.starts_with(m.method.as_str()));
        for m in requests {
            let c = calls.entry(m.call_id).or_default();
            match m.method.as_str() {
                "INVITE" => {
                    c.invite_at.get_or_insert(m.at);
                }
                "BYE" => {
                    c.bye_at.get_or_insert(m.at);
                }
                _ => {}
            }
        }
        EdgeCalls { calls }
    }

    /// Whether this Edge got the call's INVITE.
    pub fn invited(&self, call_id: &str) -> bool {
        self.calls
            .get(call_id)
            .is_some_and(|c| c.invite_at.is_some())
    }
}

/// A lab of namespaces on one bridge, and the processes in them.
#[derive(Debug)]
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub procs: Vec<Child>,
    /// The VRRP advert interval of the hosts started next.
    pub advert: &'static str,
    /// The `[health_check]` body of the hosts started next.
    pub health: &'static str,
    /// More configuration appended to the hosts started next.
    pub extra: String,
    /// The `listen` addresses of the hosts started next (the VIP's UDP
    /// 5060 by default).
    pub listen: Vec<String>,
    /// More keys of `[carrier]` for the hosts started next.
    pub carrier_extra: String,
    /// Whether [`Lab::edges`] traces every message (for [`Lab::edge_calls`]).
    pub trace_edges: bool,
    /// The namespaces; dropped after `Lab::drop`, it kills what is left
    /// and deletes them.
    pub net: Segment,
}

impl Lab {
    /// The bridge, the carrier, both trunkvip hosts and both Edges.
    pub fn new() -> Lab {
        let mut lab = Lab {
            advert: "100ms",
            health: FAST_HEALTH,
            extra: String::new(),
            listen: vec![format!("udp:{VIP}:5060")],
            carrier_extra: String::new(),
            trace_edges: false,
            dir: super::tempdir(),
            procs: vec![],
            net: Segment::new("tvd", Default::default()),
        };
        for h in [CARRIER, A, B, EDGE1, EDGE2] {
            lab.add_host(h);
        }
        lab
    }

    /// One more host on the segment (another carrier, an attacker).
    pub fn add_host(&mut self, h: Host) {
        self.net.add_host(h);
    }

    pub fn ns(&self, host: &str) -> String {
        self.net.ns(host)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `program args` in `host`'s namespace (`ip netns exec` execs,
    /// so the child's PID is the program's).
    pub fn spawn(&mut self, host: Host, label: &str, program: &str, args: &[&str]) -> usize {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host.name), program])
            .args(args)
            .env("RUST_LOG", "info");
        let c = Child::spawn(label, &mut cmd, self.dir.path());
        self.procs.push(c);
        self.procs.len() - 1
    }

    /// `sipp -sn uas -aa` on both Edges, port 5060.
    pub fn edges(&mut self) {
        for (h, label) in [(EDGE1, "edge1"), (EDGE2, "edge2")] {
            let ip = h.ip();
            let mut args = vec!["-sn", "uas", "-aa", "-nostdin", "-i", &ip, "-p", "5060"];
            let trace = self
                .path(&format!("{label}-msgs.log"))
                .display()
                .to_string();
            if self.trace_edges {
                args.extend(["-trace_shortmsg", "-shortmessage_file", &trace]);
            }
            self.spawn(h, label, "sipp", &args);
        }
    }

    /// What the Edge saw so far (with [`Lab::trace_edges`]).
    pub fn edge_calls(&self, edge: Host) -> EdgeCalls {
        let label = if edge == EDGE1 { "edge1" } else { "edge2" };
        EdgeCalls::read(&self.path(&format!("{label}-msgs.log")))
    }

    /// The configuration of `trunkvip run` on host A (priority 150) or B
    /// (100), each naming the other as its unicast peer.
    pub fn config(&self, host: Host) -> String {
        let (priority, peer) = if host == A { (150, B) } else { (100, A) };
        // The pair shares dialogs and branches over its own channel.
        let secret = self.path("pair.key");
        std::fs::write(&secret, "lab pair secret, 32 bytes long!!").expect("pair key");
        format!(
            r#"listen = [{listen}]
host_address = "{me}"
workers = 2

[[edge]]
name = "EDGE-1"
uri = "sip:{e1}:5060;transport=udp"
priority = 1

[[edge]]
name = "EDGE-2"
uri = "sip:{e2}:5060;transport=udp"
priority = 2

[health_check]
{health}
[carrier]
allow = ["198.51.100.0/24"]
{carrier_extra}
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
peers = ["{peer}"]
track_edges_penalty = 100
announce_count = 3
announce_spacing = "50ms"

[pair]
peer = "{peer}:5099"
secret_file = "{secret}"
{extra}{debug}"#,
            me = host.ip(),
            e1 = EDGE1.ip(),
            e2 = EDGE2.ip(),
            peer = peer.ip(),
            health = self.health,
            advert = self.advert,
            secret = secret.display(),
            extra = self.extra,
            debug = self.debug_pcap(host),
            carrier_extra = self.carrier_extra,
            listen = self
                .listen
                .iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// With `LAB_PCAP=1`: each host's `[debug] pcap` in the lab's files,
    /// every SIP message it sent or received (with `LAB_KEEP=1`, to read
    /// after the test).
    fn debug_pcap(&self, host: Host) -> String {
        if std::env::var_os("LAB_PCAP").is_none() || self.extra.contains("[debug]") {
            return String::new();
        }
        let path = self.path(&format!("trunkvip-{}.pcap", host.name));
        format!("\n[debug]\npcap = {:?}\n", path.display().to_string())
    }

    /// Starts `trunkvip run` on host A or B.
    pub fn trunkvip(&mut self, host: Host) -> usize {
        let path = self.path(&format!("trunkvip-{}.toml", host.name));
        std::fs::write(&path, self.config(host)).expect("config");
        let path = path.display().to_string();
        // Another build of the daemon (an older one, to measure it on the
        // same drill), or this one.
        let bin = std::env::var("LAB_TRUNKVIP").unwrap_or_else(|_| TRUNKVIP.to_owned());
        self.spawn(
            host,
            &format!("trunkvip-{}", host.name),
            &bin,
            &["run", "--config", &path],
        )
    }

    /// `GET /status` of the trunkvip in `host`, through `trunkvip status
    /// --json`.
    pub fn status(&self, host: Host) -> Option<serde_json::Value> {
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
    pub fn status_table(&self, host: Host) -> String {
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
    pub fn http_get(&self, host: Host, path: &str) -> String {
        let (ip, port) = ADMIN.split_once(':').expect("admin address");
        let script = format!(
            "exec 3<>/dev/tcp/{ip}/{port}; printf 'GET {path} HTTP/1.1\\r\\nHost: {ADMIN}\\r\\nConnection: close\\r\\n\\r\\n' >&3; timeout 5 cat <&3"
        );
        run(
            "ip",
            &["netns", "exec", &self.ns(host.name), "bash", "-c", &script],
        )
    }

    /// The sum of a Prometheus series over its labels (`name{...} value`
    /// and `name value` lines) on `host`.
    pub fn metric_sum(&self, host: Host, name: &str, label: &str) -> f64 {
        self.http_get(host, "/metrics")
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(['{', ' ']))
                    && l.contains(label)
            })
            .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
            .sum()
    }

    pub fn role(&self, host: Host) -> Option<String> {
        let s = self.status(host)?;
        s["vip"]["role"].as_str().map(str::to_owned)
    }

    /// Whether the trunkvip in `host` sees Edge `n` (0-based) healthy.
    pub fn edge_healthy(&self, host: Host, n: usize) -> Option<bool> {
        let s = self.status(host)?;
        s["edges"][n]["healthy"].as_bool()
    }

    /// Whether the VIP is on `host`'s eth0.
    pub fn holds(&self, host: Host) -> bool {
        self.net.has_address(host, VIP)
    }

    /// Which of A and B hold the VIP: "A", "B", "A+B" or "none".
    pub fn holder(&self) -> &'static str {
        match (self.holds(A), self.holds(B)) {
            (true, true) => "A+B",
            (true, false) => "A",
            (false, true) => "B",
            (false, false) => "none",
        }
    }

    /// `host`'s eth0 MAC.
    pub fn mac(&self, host: Host) -> String {
        self.net.mac(host)
    }

    /// The MAC `host`'s neighbour cache holds for the VIP.
    pub fn neigh(&self, host: Host) -> Option<String> {
        self.net.neigh(host, VIP)
    }

    /// Points `host`'s neighbour entry for the VIP at `mac`, as an ARP
    /// reply from that holder would.
    pub fn set_neigh(&self, host: Host, mac: &str) {
        run(
            "ip",
            &[
                "-n",
                &self.ns(host.name),
                "neigh",
                "replace",
                VIP,
                "lladdr",
                mac,
                "dev",
                "eth0",
                "nud",
                "reachable",
            ],
        );
    }

    /// Takes `host`'s bridge port down: the host loses its carrier, as
    /// when its cable is pulled or its switch port dies.
    pub fn cut(&self, host: Host) {
        self.net.cut(host);
    }

    pub fn restore(&self, host: Host) {
        self.net.restore(host);
    }

    /// Pings the VIP from `from` every [`trunkvip_netlab::PING_EVERY`] until
    /// stopped.
    pub fn pinger(&self, from: Host) -> Pinger {
        Pinger::start(&self.net, from, VIP.parse().expect("VIP"))
    }

    /// Drops (or lets through again) every VRRP datagram (IP protocol
    /// 112) arriving on `host`'s eth0, and nothing else, so the kernel
    /// never hands it to the raw socket.
    pub fn block_vrrp(&self, host: Host, on: bool) {
        self.drop_arriving(host, "10", &["ipproto", "112"], on);
    }

    /// Drops (or lets through again) everything arriving on `host`'s eth0
    /// from `from` (an address or prefix): lost on its way.
    pub fn drop_from(&self, host: Host, from: &str, on: bool) {
        self.drop_arriving(host, "11", &["from", from], on);
    }

    /// A blackhole policy-routing rule at `pref`, ahead of the local table,
    /// for what arrives on eth0 and matches `selector` (`ip rule` terms).
    /// Uses iproute2 only (no nftables in CI, no netem in its kernel).
    fn drop_arriving(&self, host: Host, pref: &str, selector: &[&str], on: bool) {
        let ns = self.ns(host.name);
        if !on {
            run("ip", &["-n", &ns, "rule", "del", "pref", pref]);
            return;
        }
        // The local table's rule is at 0; move it behind ours.
        if run_quiet("ip", &["-n", &ns, "rule", "show", "pref", "100"])
            .is_none_or(|s| s.trim().is_empty())
        {
            run(
                "ip",
                &["-n", &ns, "rule", "add", "pref", "100", "lookup", "local"],
            );
            run("ip", &["-n", &ns, "rule", "del", "pref", "0"]);
        }
        let mut args = vec!["-n", &ns, "rule", "add", "pref", pref, "iif", "eth0"];
        args.extend_from_slice(selector);
        args.push("blackhole");
        run("ip", &args);
    }

    /// Waits until A is Active and holds the VIP, B is Backup and does
    /// not, and both see both Edges healthy.
    pub fn wait_settled(&mut self, limit: Duration) -> Duration {
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
    pub fn uac(&mut self, label: &str, calls: u32, rate: u32, limit: Duration) -> Uac {
        self.uac_with(label, &UacOptions::new(calls, rate, limit))
    }

    pub fn uac_with(&mut self, label: &str, o: &UacOptions) -> Uac {
        let stats = self.path(&format!("{label}.csv"));
        let errors = self.path(&format!("{label}-errors.log"));
        let shortmsg = o.per_call.then(|| self.path(&format!("{label}-msgs.log")));
        let calldebug = o
            .per_call
            .then(|| self.path(&format!("{label}-calldebug.log")));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(o.from.name), "sipp"])
            .args(["-sn", "uac", "-nostdin", "-i", &o.from.ip(), "-p"])
            .arg(o.port.to_string())
            .args(["-m", &o.calls.to_string(), "-r", &o.rate.to_string()])
            .args(["-d", &o.call_length.as_millis().to_string()])
            .args(["-trace_stat", "-stf"])
            .arg(&stats)
            .args(["-fd", "1", "-trace_err", "-error_file"])
            .arg(&errors)
            // A call waiting longer than this for a message fails.
            .args(["-recv_timeout", "8000"])
            .args(["-timeout", &format!("{}s", o.limit.as_secs())]);
        if let (Some(m), Some(d)) = (&shortmsg, &calldebug) {
            cmd.args(["-trace_shortmsg", "-shortmessage_file"])
                .arg(m)
                .args(["-trace_calldebug", "-calldebug_file"])
                .arg(d);
        }
        cmd.arg(format!("{VIP}:5060"));
        let started_at = epoch();
        let child = Child::spawn(label, &mut cmd, self.dir.path());
        Uac {
            child,
            stats,
            errors,
            shortmsg,
            calldebug,
            started_at,
            started: Instant::now(),
            limit: o.limit,
        }
    }

    pub fn finish(&self, mut uac: Uac) -> Calls {
        let exit = uac.child.wait_for(uac.limit + Duration::from_secs(5));
        if exit.is_none() {
            uac.child.kill();
        }
        let elapsed = uac.started.elapsed();
        let stats = read_stats(&uac.stats).unwrap_or_default();
        let errors = std::fs::read_to_string(&uac.errors).unwrap_or_default();
        Calls {
            exit,
            successful: stat(&stats, "SuccessfulCall(C)").unwrap_or(0),
            failed: stat(&stats, "FailedCall(C)").unwrap_or(u64::MAX),
            retransmissions: stat(&stats, "Retransmissions(C)").unwrap_or(0),
            elapsed,
            started_at: uac.started_at,
            errors: errors.chars().take(3000).collect(),
            shortmsg: uac.shortmsg,
            calldebug: uac.calldebug,
        }
    }

    pub fn logs(&self) -> String {
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
                "===== lab {} logs =====\n{}",
                self.net.prefix(),
                self.logs()
            );
        }
        for p in &mut self.procs {
            p.kill();
        }
        // Anything else still running in our namespaces is ours too.
        self.net.kill_all();
        if std::env::var_os("LAB_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, super::tempdir());
            let _ = writeln!(
                std::io::stderr(),
                "lab {}: files kept in {}",
                self.net.prefix(),
                dir.keep().display()
            );
        }
        // `self.net`'s drop deletes the namespaces.
    }
}

/// A lab with Edges and both daemons, settled.
pub fn pair() -> (Lab, usize, usize) {
    pair_with(|_| {})
}

/// The same, after `setup` changed the lab's settings.
pub fn pair_with(setup: impl FnOnce(&mut Lab)) -> (Lab, usize, usize) {
    let mut lab = Lab::new();
    setup(&mut lab);
    lab.edges();
    let a = lab.trunkvip(A);
    let b = lab.trunkvip(B);
    let took = lab.wait_settled(Duration::from_secs(15));
    report("lab", &format!("pair settled in {} ms", took.as_millis()));
    (lab, a, b)
}
