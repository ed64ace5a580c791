//! The floating VIP in the daemon: `[vip]` makes `trunkvip run` own the
//! service address with VRRPv3 (`trunkvip-vip`'s [`VipRunner`]).
//!
//! - [`Settings`]: the checked `[vip]` section (see `config.rs`).
//! - [`start`]: spawns the runner once the listeners are bound (they bind
//!   the VIP with IP_FREEBIND, so the Backup listens on it too), and ties
//!   the priority to the Edges: while worker 0's probes see no healthy
//!   Edge the runner advertises its priority less `track_edges_penalty`,
//!   so the VIP moves to the peer that can still reach one.
//! - [`resign`]: on SIGTERM, before the drain: a priority-0 advert (the
//!   Backup takes over after its skew time, not after three intervals),
//!   then the VIP is removed.
//! - [`report`] and [`metrics`]: the role, the priority in effect, whether
//!   this host holds the VIP and the peer last heard, for `GET /status`,
//!   `trunkvip status` and `GET /metrics`.
//!
//! One runner per process, kept in a global as the debug capture is, so
//! the admin endpoint reads it without more plumbing.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};
use trunkvip_vip::linux::{IpNet, RunnerConfig, RunnerError, RunnerStatus, VipHandle, VipRunner};
use trunkvip_vip::{AnnounceConfig, ChecksumMode, State};

/// How long [`resign`] waits for the runner to send its priority-0 advert
/// and remove the VIP.
pub const RESIGN_LIMIT: Duration = Duration::from_secs(2);

/// `[vip]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The VIP with its prefix length: the service address of every
    /// listener.
    pub address: IpNet,
    pub interface: String,
    pub vrid: u8,
    /// 1-254, higher wins.
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Unicast peers; empty for the multicast group.
    pub peers: Vec<IpAddr>,
    /// Subtracted from the priority while no Edge is healthy.
    pub track_edges_penalty: u8,
    /// Gratuitous ARP / unsolicited NA per takeover (0: none).
    pub announce_count: u32,
    pub announce_spacing: Duration,
    pub checksum: ChecksumMode,
}

impl Settings {
    /// The defaults of the keys that may be left out.
    pub fn new(address: IpNet, interface: String, vrid: u8, priority: u8) -> Settings {
        let r = RunnerConfig::new(interface.clone(), address, vrid);
        Settings {
            address,
            interface,
            vrid,
            priority,
            advert_interval: r.advert_interval,
            preempt: r.preempt,
            preempt_delay: r.preempt_delay,
            peers: vec![],
            track_edges_penalty: r.track_penalty,
            announce_count: r.announce.count,
            announce_spacing: r.announce.spacing,
            checksum: r.checksum_mode,
        }
    }

    /// The runner's configuration. Adverts leave from `host_address` (the
    /// tie-break address and what the peer's `peers` names), except for
    /// IPv6 multicast, where RFC 5798 wants the link-local address.
    pub fn runner_config(&self, host_address: IpAddr) -> RunnerConfig {
        let mut c = RunnerConfig::new(self.interface.clone(), self.address, self.vrid);
        c.priority = self.priority;
        c.advert_interval = self.advert_interval;
        c.preempt = self.preempt;
        c.preempt_delay = self.preempt_delay;
        c.peers = self.peers.clone();
        c.track_penalty = self.track_edges_penalty;
        c.checksum_mode = self.checksum;
        c.announce = AnnounceConfig {
            count: self.announce_count,
            spacing: self.announce_spacing,
        };
        let same_family = host_address.is_ipv4() == self.address.addr().is_ipv4();
        if same_family && (host_address.is_ipv4() || !self.peers.is_empty()) {
            c.primary_address = Some(host_address);
        }
        c
    }
}

/// The running VIP owner.
#[derive(Debug)]
pub struct Vip {
    pub settings: Settings,
    handle: VipHandle,
    /// Reports the runner's end (it lives on its own thread).
    task: Mutex<Option<oneshot::Receiver<Result<(), RunnerError>>>>,
}

static VIP: OnceLock<Vip> = OnceLock::new();

/// Whether worker 0 sees a healthy Edge; Edges start healthy.
static EDGES_UP: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(true).0);

/// Called by the probing worker after each `Event::EdgeHealth`: whether
/// any Edge is healthy now.
pub fn set_edges_healthy(up: bool) {
    EDGES_UP.send_if_modified(|v| std::mem::replace(v, up) != up);
}

/// The VIP owner of this process, when `[vip]` is configured and it started.
pub fn get() -> Option<&'static Vip> {
    VIP.get()
}

/// Starts the VIP owner. Whether worker 0 sees a healthy Edge
/// ([`set_edges_healthy`]) is passed on as the tracked service's health.
pub async fn start(settings: &Settings, host_address: IpAddr) -> Result<&'static Vip, String> {
    let mut edges_up = EDGES_UP.subscribe();
    if VIP.get().is_some() {
        return Err("[vip]: a VIP owner is already running in this process".into());
    }
    let (handle, task) = spawn_runner(settings.runner_config(host_address))
        .await
        .map_err(|e| format!("[vip] {} on {}: {e}", settings.address, settings.interface))?;
    let vip = Vip {
        settings: settings.clone(),
        handle: handle.clone(),
        task: Mutex::new(Some(task)),
    };
    if VIP.set(vip).is_err() {
        handle.shutdown().await;
        return Err("[vip]: a VIP owner is already running in this process".into());
    }
    let vip = VIP.get().expect("just set");
    // SIP-aware priority.
    tokio::spawn(async move {
        let mut last = true;
        loop {
            let up = *edges_up.borrow_and_update();
            if up != last {
                if up {
                    info!(
                        "an Edge is healthy again: VRRP priority back to {}",
                        vip.settings.priority
                    );
                } else {
                    warn!(
                        "no healthy Edge: VRRP priority lowered by {} to {}",
                        vip.settings.track_edges_penalty,
                        vip.settings
                            .priority
                            .saturating_sub(vip.settings.track_edges_penalty)
                            .max(1)
                    );
                }
                if !handle.set_tracked_healthy(up).await {
                    return;
                }
                last = up;
            }
            if edges_up.changed().await.is_err() {
                return;
            }
        }
    });
    // A runner that stops on its own (not by resign) is an error: the
    // watchdog stops too, and systemd restarts the service.
    let mut status = vip.handle.subscribe();
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            if !status.borrow().running {
                break;
            }
        }
        if !RESIGNING.load(std::sync::atomic::Ordering::Relaxed) {
            error!("the VIP owner stopped: this host no longer takes part in the election");
        }
    });
    info!(
        "VIP {} on {} (vrid {}, priority {}, adverts every {:?}, {})",
        settings.address,
        settings.interface,
        settings.vrid,
        settings.priority,
        settings.advert_interval,
        if settings.peers.is_empty() {
            "multicast".to_owned()
        } else {
            format!(
                "unicast to {}",
                settings
                    .peers
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(vip)
}

static RESIGNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Vip {
    /// Tells the workers each time this host takes or loses the VIP
    /// ([`trunkvip_proxy::Core::set_serving`]): one that lost it lets the
    /// transactions it still has run out, without failing over or telling
    /// the peer, since the Edges' answers to them now reach the peer.
    /// Cores start serving, so only a loss changes anything.
    pub fn follow_holder(&'static self, transports: std::sync::Arc<crate::transport::Transports>) {
        let mut status = self.handle.subscribe();
        tokio::spawn(async move {
            let mut held = false;
            loop {
                let holds = status.borrow_and_update().holds_vip;
                if holds != held {
                    transports.broadcast(None, || crate::worker::Control::Serving(holds));
                    held = holds;
                }
                if status.changed().await.is_err() {
                    break;
                }
            }
            // The runner stopped (resign): the address is gone.
            transports.broadcast(None, || crate::worker::Control::Serving(false));
        });
    }
}

/// Gives the VIP up at once (priority-0 advert when Active, then the
/// address removed) and waits, at most [`RESIGN_LIMIT`], for the runner to
/// finish. Nothing to do without `[vip]`.
/// Runs the VRRP runner on a thread of its own with a current-thread
/// runtime at realtime (round-robin) priority, as keepalived runs its VRRP
/// process: adverts must leave on time however busy the SIP workers are,
/// or a short advert interval turns load into false takeovers.
async fn spawn_runner(
    cfg: trunkvip_vip::linux::RunnerConfig,
) -> Result<(VipHandle, oneshot::Receiver<Result<(), RunnerError>>), RunnerError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("trunkvip-vrrp".into())
        .spawn(move || {
            use thread_priority::{
                set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
                ThreadPriority, ThreadSchedulePolicy,
            };
            let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::RoundRobin);
            let prio =
                ThreadPriority::from_posix(thread_priority::ScheduleParams { sched_priority: 50 });
            if let Err(e) = set_thread_priority_and_policy(thread_native_id(), prio, policy) {
                warn!(
                    "VRRP thread stays at normal priority ({e:?}): adverts may be late under load"
                );
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(RunnerError::Io {
                        what: "VRRP runtime",
                        source: e,
                    }));
                    return;
                }
            };
            rt.block_on(async move {
                match VipRunner::new(cfg).await {
                    Ok(runner) => {
                        let _ = ready_tx.send(Ok(runner.handle()));
                        let _ = done_tx.send(runner.run().await);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| RunnerError::Io {
            what: "VRRP thread",
            source: e,
        })?;
    let handle = ready_rx.await.map_err(|_| RunnerError::Io {
        what: "VRRP thread",
        source: std::io::Error::other("stopped before starting"),
    })??;
    Ok((handle, done_rx))
}

pub async fn resign() {
    let Some(vip) = get() else { return };
    RESIGNING.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let was = vip.handle.status();
    vip.handle.shutdown().await;
    let task = vip.task.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(task) = task else { return };
    match tokio::time::timeout(RESIGN_LIMIT, task).await {
        Ok(Ok(Ok(()))) => info!(
            "VIP resigned ({} before, held: {}) and removed in {:.1} ms",
            was.vrrp.state,
            was.holds_vip,
            started.elapsed().as_secs_f64() * 1000.0
        ),
        Ok(Ok(Err(e))) => warn!("VIP owner: {e}"),
        Ok(Err(e)) => warn!("VIP owner task: {e}"),
        Err(_) => warn!("the VIP owner did not stop within {RESIGN_LIMIT:?}"),
    }
}

/// Whether the VIP owner is still running (for the watchdog): true
/// without `[vip]`.
pub fn alive() -> bool {
    get().is_none_or(|v| v.handle.status().running)
}

/// The VIP part of `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub address: String,
    pub interface: String,
    pub vrid: u8,
    /// Initialize, Backup or Active.
    pub role: String,
    /// The configured priority.
    pub priority: u8,
    /// The priority advertised: less `track_edges_penalty` while no Edge
    /// is healthy.
    pub effective_priority: u8,
    /// Whether worker 0 sees a healthy Edge.
    pub edges_healthy: bool,
    /// Whether the VIP is on this host's interface.
    pub holds_vip: bool,
    pub interface_up: bool,
    /// The advert interval in effect (the Active's when Backup).
    pub advert_interval_ms: u64,
    /// Where our adverts leave from.
    pub primary_address: String,
    /// Unicast peers; empty: multicast.
    pub peers: Vec<String>,
    pub last_peer: Option<PeerReport>,
    pub transitions: u64,
    pub last_transition: Option<TransitionReport>,
    /// Datagrams from an address that is not a configured peer, ignored.
    pub not_a_peer: u64,
    /// False once the owner stopped (after SIGTERM).
    pub running: bool,
}

/// The peer last heard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub address: String,
    pub priority: u8,
    pub advert_interval_ms: u64,
    /// How long ago its last advert arrived.
    pub ago_ms: u64,
}

/// The last change of role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionReport {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub ago_ms: u64,
}

fn ago(at: Instant) -> u64 {
    u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn make_report(s: &RunnerStatus, peers: &[IpAddr]) -> Report {
    let v = &s.vrrp;
    Report {
        address: s.vip.to_string(),
        interface: s.interface.clone(),
        vrid: 0,
        role: v.state.to_string(),
        priority: v.priority,
        effective_priority: v.effective_priority,
        edges_healthy: v.tracked_healthy,
        holds_vip: s.holds_vip,
        interface_up: v.interface_up,
        advert_interval_ms: u64::from(v.advert_interval) * 10,
        primary_address: s.primary_address.to_string(),
        peers: peers.iter().map(|p| p.to_string()).collect(),
        last_peer: v.last_peer.map(|p| PeerReport {
            address: p.address.to_string(),
            priority: p.priority,
            advert_interval_ms: u64::from(p.advert_interval) * 10,
            ago_ms: ago(p.at),
        }),
        transitions: s.transitions,
        last_transition: s.last_transition.map(|t| TransitionReport {
            from: t.from.to_string(),
            to: t.to.to_string(),
            reason: t.reason.to_string(),
            ago_ms: ago(t.at),
        }),
        not_a_peer: s.not_a_peer,
        running: s.running,
    }
}

/// The VIP part of `GET /status`; `None` without `[vip]`.
pub fn report() -> Option<Report> {
    let vip = get()?;
    let mut r = make_report(&vip.handle.status(), &vip.settings.peers);
    r.vrid = vip.settings.vrid;
    Some(r)
}

/// The lines `trunkvip status` prints about the VIP.
pub fn table(r: &Report) -> String {
    let mut o = String::new();
    let held = if r.holds_vip {
        "holds the VIP"
    } else {
        "does not hold the VIP"
    };
    let prio = if r.effective_priority == r.priority {
        format!("priority {}", r.priority)
    } else {
        format!(
            "priority {} (configured {}, lowered: no healthy Edge)",
            r.effective_priority, r.priority
        )
    };
    let _ = writeln!(
        o,
        "VIP {} on {} (vrid {}): {}, {held}, {prio}{}{}",
        r.address,
        r.interface,
        r.vrid,
        r.role,
        if r.interface_up {
            ""
        } else {
            ", INTERFACE DOWN"
        },
        if r.running { "" } else { ", STOPPED" },
    );
    match &r.last_peer {
        Some(p) => {
            let _ = writeln!(
                o,
                "peer last heard: {} priority {}, {} ago",
                p.address,
                p.priority,
                human_ms(p.ago_ms)
            );
        }
        None if r.role == "Active" => {
            let _ = writeln!(o, "peer last heard: none (a Backup does not advertise)");
        }
        None => {
            let _ = writeln!(o, "peer last heard: none");
        }
    }
    if let Some(t) = &r.last_transition {
        let _ = writeln!(
            o,
            "last change: {} -> {} ({}), {} ago; {} change(s) since start",
            t.from,
            t.to,
            t.reason,
            human_ms(t.ago_ms),
            r.transitions
        );
    }
    if r.not_a_peer > 0 {
        let _ = writeln!(
            o,
            "ignored {} VRRP datagram(s) from addresses that are not peers",
            r.not_a_peer
        );
    }
    o
}

fn human_ms(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min", ms / 60_000)
    }
}

/// Appends the VRRP series to `/metrics`; nothing without `[vip]`.
pub fn metrics(out: &mut String) {
    let Some(vip) = get() else { return };
    write_metrics(out, &vip.handle.status());
}

fn write_metrics(out: &mut String, s: &RunnerStatus) {
    let v = &s.vrrp;
    let _ = writeln!(
        out,
        "# HELP trunkvip_vrrp_role The VRRP role of this host (1 for the current one)."
    );
    let _ = writeln!(out, "# TYPE trunkvip_vrrp_role gauge");
    for (name, st) in [
        ("initialize", State::Initialize),
        ("backup", State::Backup),
        ("active", State::Active),
    ] {
        let _ = writeln!(
            out,
            "trunkvip_vrrp_role{{role=\"{name}\"}} {}",
            u8::from(v.state == st)
        );
    }
    let gauges: [(&str, &str, u64); 5] = [
        (
            "trunkvip_vrrp_holds_vip",
            "Whether the VIP is on this host's interface.",
            u64::from(s.holds_vip),
        ),
        (
            "trunkvip_vrrp_priority",
            "The configured VRRP priority.",
            u64::from(v.priority),
        ),
        (
            "trunkvip_vrrp_effective_priority",
            "The VRRP priority advertised (less the penalty while no Edge is healthy).",
            u64::from(v.effective_priority),
        ),
        (
            "trunkvip_vrrp_edges_healthy",
            "Whether this host sees a healthy Edge (the tracked service).",
            u64::from(v.tracked_healthy),
        ),
        (
            "trunkvip_vrrp_interface_up",
            "Whether the VIP's interface is up.",
            u64::from(v.interface_up),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let st = &s.stats;
    let counters: [(&str, &str, u64); 6] = [
        (
            "trunkvip_vrrp_transitions_total",
            "VRRP role changes since start.",
            s.transitions,
        ),
        (
            "trunkvip_vrrp_adverts_received_total",
            "VRRP datagrams handed to the state machine.",
            st.received,
        ),
        (
            "trunkvip_vrrp_adverts_accepted_total",
            "VRRP adverts that passed every check.",
            st.accepted,
        ),
        (
            "trunkvip_vrrp_address_mismatch_total",
            "Accepted adverts whose address list differs from ours (misconfiguration).",
            st.address_mismatch,
        ),
        (
            "trunkvip_vrrp_split_brain_total",
            "Adverts from a lower-priority Active while Active: a healed split brain.",
            st.split_brain,
        ),
        (
            "trunkvip_vrrp_io_errors_total",
            "Failed advert sends and netlink requests.",
            s.io_errors,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP trunkvip_vrrp_adverts_dropped_total VRRP datagrams dropped, by reason.\n\
         # TYPE trunkvip_vrrp_adverts_dropped_total counter"
    );
    for (reason, n) in [
        ("too_short", st.too_short),
        ("bad_version", st.bad_version),
        ("bad_type", st.bad_type),
        ("bad_length", st.bad_length),
        ("bad_checksum", st.bad_checksum),
        ("bad_ttl", st.bad_ttl),
        ("wrong_vrid", st.wrong_vrid),
        ("wrong_family", st.wrong_family),
        ("bad_interval", st.bad_interval),
        ("own_advert", st.own_advert),
        ("not_running", st.not_running),
        ("not_a_peer", s.not_a_peer),
    ] {
        let _ = writeln!(
            out,
            "trunkvip_vrrp_adverts_dropped_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut s = Settings::new("198.51.100.10/24".parse().unwrap(), "eth0".into(), 51, 150);
        s.peers = vec!["198.51.100.12".parse().unwrap()];
        s
    }

    #[test]
    fn runner_config_carries_every_key() {
        let mut s = settings();
        s.advert_interval = Duration::from_millis(50);
        s.preempt = false;
        s.preempt_delay = Duration::from_secs(3);
        s.track_edges_penalty = 100;
        s.announce_count = 3;
        s.announce_spacing = Duration::from_millis(20);
        s.checksum = ChecksumMode::NoPseudoHeader;
        let host: IpAddr = "198.51.100.11".parse().unwrap();
        let c = s.runner_config(host);
        assert_eq!(c.interface, "eth0");
        assert_eq!(c.vip, s.address);
        assert_eq!((c.vrid, c.priority), (51, 150));
        assert_eq!(c.advert_interval, Duration::from_millis(50));
        assert!(!c.preempt);
        assert_eq!(c.preempt_delay, Duration::from_secs(3));
        assert_eq!(c.peers, s.peers);
        assert_eq!(c.track_penalty, 100);
        assert_eq!(c.announce.count, 3);
        assert_eq!(c.announce.spacing, Duration::from_millis(20));
        assert_eq!(c.checksum_mode, ChecksumMode::NoPseudoHeader);
        assert_eq!(c.primary_address, Some(host));
    }

    #[test]
    fn ipv6_multicast_adverts_leave_from_the_link_local_address() {
        let mut s = Settings::new("2001:db8::10/64".parse().unwrap(), "eth0".into(), 51, 100);
        let host: IpAddr = "2001:db8::11".parse().unwrap();
        assert_eq!(s.runner_config(host).primary_address, None);
        s.peers = vec!["2001:db8::12".parse().unwrap()];
        assert_eq!(s.runner_config(host).primary_address, Some(host));
    }

    #[test]
    fn table_says_role_priority_and_peer() {
        let r = Report {
            address: "198.51.100.10/24".into(),
            interface: "eth0".into(),
            vrid: 51,
            role: "Active".into(),
            priority: 150,
            effective_priority: 50,
            edges_healthy: false,
            holds_vip: true,
            interface_up: true,
            advert_interval_ms: 50,
            primary_address: "198.51.100.11".into(),
            peers: vec!["198.51.100.12".into()],
            last_peer: Some(PeerReport {
                address: "198.51.100.12".into(),
                priority: 100,
                advert_interval_ms: 50,
                ago_ms: 35,
            }),
            transitions: 2,
            last_transition: None,
            not_a_peer: 0,
            running: true,
        };
        let t = table(&r);
        assert!(
            t.contains("Active, holds the VIP, priority 50 (configured 150"),
            "{t}"
        );
        assert!(t.contains("198.51.100.12 priority 100, 35 ms ago"), "{t}");
    }
}
