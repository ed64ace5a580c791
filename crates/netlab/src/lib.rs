//! The network-namespace lab the lab tests share: `crates/vip/tests/lab.rs`
//! (the `vrrpd` example against keepalived) and `crates/trunkvip/tests`'s
//! `pair_lab`, `drill` and `soak` (a trunkvip pair with SIPp).
//!
//! A lab is one Ethernet segment, a [`Segment`]: a switch namespace
//! `<prefix>-sw` holding the bridge `br0`, and one namespace
//! `<prefix>-<host>` per [`Host`] with `eth0`, a veth whose other end is the
//! bridge port `v<host>`. The prefix is unique per process and lab
//! (`<tag><pid>-<n>`). Only documentation addresses are used
//! (198.51.100.0/24, 2001:db8::/64), nothing touches the root namespace,
//! and dropping the segment kills every process in its namespaces and
//! deletes them, also when the test panics. Around it: command helpers
//! ([`run`], [`run_quiet`]), bounded waits ([`wait_for`]), the lock that
//! runs lab tests one at a time and skips them loudly without root
//! ([`lab_lock`]), and a [`Pinger`] that measures a VIP's outage with raw
//! ICMP (v4 or v6) from inside a namespace.
//!
//! Linux only; the labs need root (CAP_NET_ADMIN, CAP_NET_RAW,
//! CAP_SYS_ADMIN for setns). Test support, not published.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------- helpers

/// The lock that runs lab tests one at a time (they measure time), or
/// `None`, after a loud message, when not root.
pub fn lab_lock(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !nix::unistd::geteuid().is_root() {
        let bang = "!".repeat(72);
        // Straight to the process's stderr: the test harness captures
        // eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\n{bang}\n!!! SKIPPED lab test {test}: needs root (network namespaces, raw sockets)\n{bang}"
        );
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Runs `cmd args`; its stdout. Panics (with its stderr) if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
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

/// Runs `cmd args`; its stdout, or `None` if it could not run or failed.
pub fn run_quiet(cmd: &str, args: &[&str]) -> Option<String> {
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
pub fn wait_for(
    limit: Duration,
    step: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        thread::sleep(step);
    }
}

/// A duration in milliseconds, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------- segment

/// A host on the segment: namespace `<prefix>-<name>`, address
/// `198.51.100.<addr>/24` (and `2001:db8::<addr>/64` on an IPv6 segment).
/// `name` at most 13 characters (bridge port `v<name>` fits IFNAMSIZ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: &'static str,
    pub addr: u8,
}

impl Host {
    /// The IPv4 address.
    pub fn ip(&self) -> String {
        format!("198.51.100.{}", self.addr)
    }

    /// The IPv6 address (configured on IPv6 segments only).
    pub fn ip6(&self) -> String {
        format!("2001:db8::{}", self.addr)
    }
}

/// How a [`Segment`] is built; the default is a plain IPv4 segment.
#[derive(Clone, Copy, Debug, Default)]
pub struct SegmentOptions {
    /// Also give every host its `2001:db8::<addr>/64` (`nodad`).
    pub v6: bool,
    /// Turn the bridge's multicast snooping off: multicast (VRRP adverts)
    /// reaches every port whatever the IGMP/MLD state.
    pub flood_multicast: bool,
    /// Turn IPv6 duplicate address detection off in every host namespace
    /// before its `eth0` exists: no DAD delays in the lab.
    pub no_dad: bool,
}

/// A bridge in a switch namespace and host namespaces wired to it. Drop
/// kills every process in these namespaces and deletes them.
#[derive(Debug)]
pub struct Segment {
    prefix: String,
    /// The switch first, then the hosts in the order added.
    namespaces: Vec<String>,
    hosts: Vec<Host>,
    opts: SegmentOptions,
}

impl Segment {
    /// The switch namespace and its bridge; namespaces are named
    /// `<tag><pid>-<n>-<host>`, `n` counting the labs of this process.
    pub fn new(tag: &str, opts: SegmentOptions) -> Segment {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let mut seg = Segment {
            prefix: format!("{tag}{}-{n}", std::process::id()),
            namespaces: Vec::new(),
            hosts: Vec::new(),
            opts,
        };
        // From here on, Drop deletes whatever was made.
        let sw = seg.ns("sw");
        run("ip", &["netns", "add", &sw]);
        seg.namespaces.push(sw.clone());
        let mut bridge = vec!["-n", &sw, "link", "add", "br0", "type", "bridge"];
        if opts.flood_multicast {
            bridge.extend(["mcast_snooping", "0"]);
        }
        run("ip", &bridge);
        run("ip", &["-n", &sw, "link", "set", "br0", "up"]);
        seg
    }

    /// One more host on the segment.
    pub fn add_host(&mut self, h: Host) {
        assert!(
            !self
                .hosts
                .iter()
                .any(|o| o.name == h.name || o.addr == h.addr),
            "{h:?} clashes with a host of the lab"
        );
        let sw = self.ns("sw");
        let ns = self.ns(h.name);
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        if self.opts.no_dad {
            // Before the veth exists, so that it inherits "default".
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            );
        }
        let port = format!("v{}", h.name);
        run(
            "ip",
            &[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
        );
        run(
            "ip",
            &["-n", &sw, "link", "set", &port, "master", "br0", "up"],
        );
        let v4 = format!("{}/24", h.ip());
        run("ip", &["-n", &ns, "addr", "add", &v4, "dev", "eth0"]);
        if self.opts.v6 {
            let v6 = format!("{}/64", h.ip6());
            run(
                "ip",
                &["-n", &ns, "addr", "add", &v6, "dev", "eth0", "nodad"],
            );
        }
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        self.hosts.push(h);
    }

    /// `<tag><pid>-<n>`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace of `host` (or of the switch, `"sw"`).
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Takes `host`'s bridge port down: the host loses its carrier, as
    /// when its cable is pulled or its switch port dies.
    pub fn cut(&self, host: Host) {
        self.port(host, "down");
    }

    /// Brings `host`'s bridge port up again.
    pub fn restore(&self, host: Host) {
        self.port(host, "up");
    }

    fn port(&self, host: Host, state: &str) {
        let port = format!("v{}", host.name);
        run(
            "ip",
            &["-n", &self.ns("sw"), "link", "set", "dev", &port, state],
        );
    }

    /// Bridge port isolation: isolated ports cannot reach each other, but
    /// still reach the non-isolated ones.
    pub fn isolate(&self, host: Host, on: bool) {
        let port = format!("v{}", host.name);
        run(
            "bridge",
            &[
                "-n",
                &self.ns("sw"),
                "link",
                "set",
                "dev",
                &port,
                "isolated",
                if on { "on" } else { "off" },
            ],
        );
    }

    /// Whether `addr` (v4 or v6, no prefix length) is on `host`'s eth0.
    pub fn has_address(&self, host: Host, addr: &str) -> bool {
        let fam = if addr.contains(':') { "-6" } else { "-4" };
        run_quiet(
            "ip",
            &[
                "-n",
                &self.ns(host.name),
                "-o",
                fam,
                "addr",
                "show",
                "dev",
                "eth0",
            ],
        )
        .is_some_and(|s| s.contains(&format!(" {addr}/")))
    }

    /// `host`'s eth0 MAC.
    pub fn mac(&self, host: Host) -> String {
        let s = run(
            "ip",
            &[
                "-n",
                &self.ns(host.name),
                "-o",
                "link",
                "show",
                "dev",
                "eth0",
            ],
        );
        s.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .expect("link/ether in ip link output")
            .to_owned()
    }

    /// The MAC `host`'s neighbour cache holds for `addr`.
    pub fn neigh(&self, host: Host, addr: &str) -> Option<String> {
        let s = run_quiet("ip", &["-n", &self.ns(host.name), "neigh", "show", addr])?;
        s.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned)
    }

    /// SIGKILLs every process in the segment's namespaces (the PIDs `ip
    /// netns pids` lists): everything running there is the lab's.
    pub fn kill_all(&self) {
        for ns in &self.namespaces {
            if let Some(pids) = run_quiet("ip", &["netns", "pids", ns]) {
                for pid in pids
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.kill_all();
        for ns in self.namespaces.iter().rev() {
            // A namespace whose last process is still exiting may need a
            // second try.
            for _ in 0..50 {
                if run_quiet("ip", &["netns", "del", ns]).is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

// ----------------------------------------------------------------- pinger

/// How often the [`Pinger`] pings: the anchors' `ping -i 0.005`.
pub const PING_EVERY: Duration = Duration::from_millis(5);

/// A raw ICMP (or ICMPv6) socket inside namespace `ns` (made on a
/// short-lived thread that enters it; the socket stays in that namespace).
fn icmp_socket_in(ns: &str, v6: bool) -> Socket {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let f = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        setns(&f, CloneFlags::CLONE_NEWNET).expect("setns");
        let s = if v6 {
            Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        } else {
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        }
        .expect("raw ICMP socket");
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        s
    })
    .join()
    .expect("setns thread")
}

fn inet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        sum += (u32::from(c[0]) << 8) | c.get(1).map_or(0, |x| u32::from(*x));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Pings a target (a VIP) from a host every [`PING_EVERY`] until stopped.
/// The outage is the longest stretch of unanswered pings, from the first
/// one lost to the next one answered, by their send times: as the anchors'
/// `ka-failover.sh` (longest gap between replies) when the machine is
/// idle, but a stall of the test process is not counted as an outage.
#[derive(Debug)]
pub struct Pinger {
    stop: Arc<AtomicBool>,
    stop_rx: Arc<AtomicBool>,
    sender: JoinHandle<Vec<Instant>>,
    receiver: JoinHandle<Vec<u32>>,
}

/// What a [`Pinger`] saw.
#[derive(Debug)]
pub struct PingReport {
    /// When each ping left, by its number.
    pub sent: Vec<Instant>,
    /// Whether each ping, by its number, was answered.
    pub answered: Vec<bool>,
}

impl Pinger {
    /// Starts pinging `target` (ICMP echo, or ICMPv6 for an IPv6 target)
    /// from `from`'s namespace.
    pub fn start(seg: &Segment, from: Host, target: IpAddr) -> Pinger {
        let v6 = target.is_ipv6();
        let sock = Arc::new(icmp_socket_in(&seg.ns(from.name), v6));
        let id = (std::process::id() as u16) ^ (SEQ.load(Ordering::SeqCst) as u16);
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (sock.clone(), stop.clone());
        let sender = thread::spawn(move || {
            let dst = SockAddr::from(SocketAddr::new(target, 0));
            let mut sent = vec![];
            let mut next = Instant::now();
            // Bounded: at most 10 minutes of pings.
            for n in 0..120_000u32 {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                // The payload carries the full ping number; the peer
                // echoes it.
                let mut pkt = [0u8; 16];
                pkt[0] = if v6 { 128 } else { 8 };
                pkt[4..6].copy_from_slice(&id.to_be_bytes());
                pkt[6..8].copy_from_slice(&(n as u16).to_be_bytes());
                pkt[8..12].copy_from_slice(&n.to_be_bytes());
                if !v6 {
                    // The kernel computes the ICMPv6 checksum itself.
                    let c = inet_checksum(&pkt);
                    pkt[2..4].copy_from_slice(&c.to_be_bytes());
                }
                sent.push(Instant::now());
                let _ = s2.send_to(&pkt, &dst);
                next += PING_EVERY;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            sent
        });
        let stop_rx = Arc::new(AtomicBool::new(false));
        let stop3 = stop_rx.clone();
        let receiver = thread::spawn(move || {
            let mut replies = Vec::new();
            let mut buf = [0u8; 1500];
            let reply_type = if v6 { 129 } else { 0 };
            for _ in 0..1_000_000 {
                if stop3.load(Ordering::SeqCst) {
                    break;
                }
                let n = match std::io::Read::read(&mut &*sock, &mut buf) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                // An ICMPv6 raw socket gets the ICMP message alone; an
                // ICMP one the IPv4 header too.
                let icmp = if v6 {
                    &buf[..n]
                } else {
                    let ihl = usize::from(buf[0] & 0x0f) * 4;
                    if n < ihl {
                        continue;
                    }
                    &buf[ihl..n]
                };
                if icmp.len() >= 12
                    && icmp[0] == reply_type
                    && u16::from_be_bytes([icmp[4], icmp[5]]) == id
                {
                    replies.push(u32::from_be_bytes([icmp[8], icmp[9], icmp[10], icmp[11]]));
                }
            }
            replies
        });
        Pinger {
            stop,
            stop_rx,
            sender,
            receiver,
        }
    }

    /// Stops sending, lets the last replies arrive (100 ms), and reports.
    pub fn stop(self) -> PingReport {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self.sender.join().expect("ping sender");
        thread::sleep(Duration::from_millis(100));
        self.stop_rx.store(true, Ordering::SeqCst);
        let replies = self.receiver.join().expect("ping receiver");
        let mut answered = vec![false; sent.len()];
        for r in replies {
            if let Some(a) = answered.get_mut(r as usize) {
                *a = true;
            }
        }
        PingReport { sent, answered }
    }
}

impl PingReport {
    /// The longest stretch without an answer: from the first unanswered
    /// ping to the next answered one; zero when none was lost.
    /// `Duration::MAX` when nothing was answered at all.
    pub fn outage(&self) -> Duration {
        if !self.answered.contains(&true) {
            return Duration::MAX;
        }
        let mut longest = Duration::ZERO;
        let mut lost_since: Option<Instant> = None;
        for (at, ok) in self.sent.iter().zip(&self.answered) {
            match (ok, lost_since) {
                (false, None) => lost_since = Some(*at),
                (true, Some(t)) => {
                    longest = longest.max(*at - t);
                    lost_since = None;
                }
                _ => {}
            }
        }
        // Still unanswered at the end: the outage lasts to the last ping.
        if let (Some(t), Some(last)) = (lost_since, self.sent.last()) {
            longest = longest.max(*last - t);
        }
        longest
    }

    /// How many pings went unanswered.
    pub fn lost(&self) -> usize {
        self.answered.iter().filter(|a| !**a).count()
    }

    /// One line: the outage and the pings lost.
    pub fn summary(&self) -> String {
        format!(
            "outage {:.0} ms (longest run of unanswered pings), {} of {} pings lost ({:.0} ms at {:.0} ms each)",
            ms(self.outage()),
            self.lost(),
            self.sent.len(),
            self.lost() as f64 * ms(PING_EVERY),
            ms(PING_EVERY)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VIP outage: unanswered pings by their send times.
    #[test]
    fn ping_outage_counts_unanswered_stretches() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let report = |answered: &[bool]| PingReport {
            sent: (0..answered.len() as u64).map(|n| at(n * 5)).collect(),
            answered: answered.to_vec(),
        };
        let r = report(&[true, true, true]);
        assert_eq!((r.outage(), r.lost()), (Duration::ZERO, 0));
        // Pings 1-3 lost, 4 answered: 15 ms from the first lost to it.
        let r = report(&[true, false, false, false, true, false, true]);
        assert_eq!(r.outage(), Duration::from_millis(15));
        assert_eq!(r.lost(), 4);
        assert!(r.summary().starts_with("outage 15 ms"), "{}", r.summary());
        // Lost to the end.
        let r = report(&[true, false, false, false]);
        assert_eq!(r.outage(), Duration::from_millis(10));
        assert_eq!(report(&[false, false]).outage(), Duration::MAX);
    }

    #[test]
    fn checksum() {
        assert_eq!(inet_checksum(&[0x08, 0, 0, 0, 0x12, 0x34, 0, 1]), !0x1A35);
    }

    #[test]
    fn host_addresses() {
        let h = Host {
            name: "a",
            addr: 11,
        };
        assert_eq!(
            (h.ip(), h.ip6()),
            ("198.51.100.11".into(), "2001:db8::11".into())
        );
    }
}
