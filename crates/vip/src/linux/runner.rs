//! [`VipRunner`]: the tokio task that drives an [`Instance`] on a Linux
//! interface.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::announce::Announcer;
use super::netlink::{LinkInfo, LinkWatch, Netlink};
use super::socket::{Received, VrrpSocket};
use crate::machine::{
    Action, AnnounceConfig, Config, ConfigError, Instance, Reason, State, Stats, Status,
};
use crate::packet::{ChecksumMode, Family, MAX_ADVERT_INTERVAL};

/// What a [`VipRunner`] runs: one virtual router with one VIP on one
/// interface. Build with [`RunnerConfig::new`], then adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunnerConfig {
    /// Interface the VIP lives on, e.g. `eth0`.
    pub interface: String,
    /// The VIP with the prefix length it is added with, e.g.
    /// `198.51.100.10/24` or `2001:db8::10/64`.
    pub vip: IpNet,
    /// Virtual router id, 1..=255; the same on both hosts.
    pub vrid: u8,
    /// Priority 1..=254 (255: address owner). Default 100.
    pub priority: u8,
    /// Advertisement interval, 10 ms to 40.95 s in steps of 10 ms (rounded
    /// to the nearest). Default 1 s.
    pub advert_interval: Duration,
    /// Take over from a lower-priority Active. Default true.
    pub preempt: bool,
    /// See [`Config::preempt_delay`]. Default zero.
    pub preempt_delay: Duration,
    /// Unicast peers; empty (the default) for the multicast group.
    pub peers: Vec<IpAddr>,
    /// Subtracted from the priority while the tracked service is unhealthy.
    /// Default 50.
    pub track_penalty: u8,
    /// IPv4 checksum coverage. Default: with the pseudo-header, as
    /// keepalived.
    pub checksum_mode: ChecksumMode,
    /// Gratuitous ARP / unsolicited NA repeats. Default 5, 100 ms apart.
    pub announce: AnnounceConfig,
    /// Source of adverts and tie-break address. `None` (the default): the
    /// interface's primary IPv4 address, or its IPv6 link-local address.
    pub primary_address: Option<IpAddr>,
    /// How long [`VipRunner::new`] waits for the primary address to appear
    /// (an IPv6 link-local address is tentative for a moment after the link
    /// comes up). Default 5 s.
    pub address_wait: Duration,
    /// Link state is also polled this often, besides netlink events.
    /// Default 1 s.
    pub link_poll: Duration,
}

impl RunnerConfig {
    /// A configuration with the defaults listed on each field.
    pub fn new(interface: impl Into<String>, vip: IpNet, vrid: u8) -> Self {
        Self {
            interface: interface.into(),
            vip,
            vrid,
            priority: 100,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            peers: Vec::new(),
            track_penalty: 50,
            checksum_mode: ChecksumMode::default(),
            announce: AnnounceConfig::default(),
            primary_address: None,
            address_wait: Duration::from_secs(5),
            link_poll: Duration::from_secs(1),
        }
    }

    /// The advert interval in centiseconds, as VRRPv3 carries it.
    pub fn advert_interval_cs(&self) -> Result<u16, RunnerError> {
        let cs = (self.advert_interval.as_micros() + 5_000) / 10_000;
        match u16::try_from(cs) {
            Ok(cs) if (1..=MAX_ADVERT_INTERVAL).contains(&cs) => Ok(cs),
            _ => Err(RunnerError::AdvertInterval(self.advert_interval)),
        }
    }

    fn machine_config(&self, primary: IpAddr) -> Result<Config, RunnerError> {
        let mut c = Config::new(self.vrid, primary, vec![self.vip.addr()]);
        c.priority = self.priority;
        c.advert_interval = self.advert_interval_cs()?;
        c.preempt = self.preempt;
        c.preempt_delay = self.preempt_delay;
        c.track_penalty = self.track_penalty;
        c.checksum_mode = self.checksum_mode;
        c.announce = self.announce.clone();
        c.validate()?;
        Ok(c)
    }
}

/// Why a [`VipRunner`] could not start or stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunnerError {
    /// The virtual router's configuration is invalid.
    Config(ConfigError),
    /// The advert interval is not 10 ms..=40.95 s.
    AdvertInterval(Duration),
    /// Peers or the primary address are not of the VIP's family.
    FamilyMismatch(IpAddr),
    /// The interface has no address to send adverts from.
    NoPrimaryAddress {
        /// The interface.
        interface: String,
        /// Of this family.
        family: Family,
    },
    /// A system call or netlink request failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for RunnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunnerError::Config(e) => write!(f, "invalid VRRP configuration: {e}"),
            RunnerError::AdvertInterval(d) => {
                write!(f, "advert interval {d:?} is outside 10 ms..=40.95 s")
            }
            RunnerError::FamilyMismatch(ip) => {
                write!(f, "{ip} is not of the VIP's address family")
            }
            RunnerError::NoPrimaryAddress { interface, family } => write!(
                f,
                "interface {interface} has no {family} address to send adverts from"
            ),
            RunnerError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for RunnerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunnerError::Config(e) => Some(e),
            RunnerError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for RunnerError {
    fn from(e: ConfigError) -> Self {
        RunnerError::Config(e)
    }
}

/// How many queued datagrams are read, at most, before a due timer is
/// handled. Far above what a peer sends within one master-down interval.
const QUEUED_ADVERTS_BEFORE_TIMER: usize = 64;

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> RunnerError {
    move |source| RunnerError::Io { what, source }
}

/// A command to a running [`VipRunner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Health of the tracked service (the SIP side): while unhealthy the
    /// priority is lowered by [`RunnerConfig::track_penalty`].
    SetTrackedHealthy(bool),
    /// Resign (priority-0 advert when Active), remove the VIP, and end
    /// [`VipRunner::run`]. Dropping every [`VipHandle`] does the same.
    Shutdown,
}

/// A state change, as the machine reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// When.
    pub at: Instant,
}

/// What a [`VipRunner`] publishes on its watch channel after every event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunnerStatus {
    /// The machine's view: state, priorities, last peer heard.
    pub vrrp: Status,
    /// Receive counters.
    pub stats: Stats,
    /// Whether the VIP is on the interface (as far as our netlink requests
    /// succeeded).
    pub holds_vip: bool,
    /// Interface name.
    pub interface: String,
    /// Interface index.
    pub interface_index: u32,
    /// Source of our adverts.
    pub primary_address: IpAddr,
    /// The VIP.
    pub vip: IpNet,
    /// The last state change.
    pub last_transition: Option<Transition>,
    /// State changes since start.
    pub transitions: u64,
    /// Failed sends and netlink requests since start.
    pub io_errors: u64,
    /// With unicast peers: datagrams from an address that is not one of
    /// them, dropped before the machine sees them (they are not counted in
    /// [`Stats::received`]).
    pub not_a_peer: u64,
    /// The source of the last such datagram.
    pub last_not_a_peer: Option<IpAddr>,
    /// False once the runner has stopped.
    pub running: bool,
}

/// The controlling end of a [`VipRunner`]: commands in, status out.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct VipHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<RunnerStatus>,
}

impl VipHandle {
    /// Sends a command; `false` if the runner has stopped.
    pub async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }

    /// [`Command::SetTrackedHealthy`].
    pub async fn set_tracked_healthy(&self, healthy: bool) -> bool {
        self.send(Command::SetTrackedHealthy(healthy)).await
    }

    /// [`Command::Shutdown`]. Await the task returned by
    /// [`VipRunner::spawn`] to know the VIP is gone.
    pub async fn shutdown(&self) -> bool {
        self.send(Command::Shutdown).await
    }

    /// The latest status.
    pub fn status(&self) -> RunnerStatus {
        self.status.borrow().clone()
    }

    /// A receiver that is woken on every status change.
    pub fn subscribe(&self) -> watch::Receiver<RunnerStatus> {
        self.status.clone()
    }
}

/// Drives an [`Instance`] on a Linux interface: VRRP raw socket, VIP by
/// rtnetlink, gratuitous ARP / unsolicited NA, link up/down tracking.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use trunkvip_vip::linux::{RunnerConfig, VipRunner};
/// let mut cfg = RunnerConfig::new("eth0", "198.51.100.10/24".parse()?, 51);
/// cfg.priority = 150;
/// cfg.advert_interval = std::time::Duration::from_millis(50);
/// let (vip, task) = VipRunner::spawn(cfg).await?;
/// vip.set_tracked_healthy(false).await;
/// println!("{:?}", vip.status().vrrp.state);
/// vip.shutdown().await;
/// task.await??;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct VipRunner {
    config: RunnerConfig,
    instance: Instance,
    socket: VrrpSocket,
    announcer: Option<Announcer>,
    netlink: Netlink,
    link_watch: Option<LinkWatch>,
    link: LinkInfo,
    primary: IpAddr,
    commands_tx: Option<mpsc::Sender<Command>>,
    commands: mpsc::Receiver<Command>,
    status_tx: watch::Sender<RunnerStatus>,
    holds_vip: bool,
    /// Active but the address add failed: retried on every timer.
    vip_wanted: bool,
    last_transition: Option<Transition>,
    transitions: u64,
    io_errors: u64,
    not_a_peer: u64,
    last_not_a_peer: Option<IpAddr>,
}

impl VipRunner {
    /// Resolves the interface and its primary address, opens the sockets
    /// and the netlink connections. Nothing is sent until [`run`](Self::run).
    /// Must be called within a tokio runtime, with `CAP_NET_RAW` and
    /// `CAP_NET_ADMIN`.
    pub async fn new(config: RunnerConfig) -> Result<Self, RunnerError> {
        let family = Family::of(config.vip.addr());
        if let Some(p) = config
            .peers
            .iter()
            .chain(config.primary_address.iter())
            .find(|p| Family::of(**p) != family)
        {
            return Err(RunnerError::FamilyMismatch(*p));
        }
        // Catch configuration errors before touching the system.
        config.machine_config(config.primary_address.unwrap_or(config.vip.addr()))?;

        let netlink = Netlink::new().map_err(io_err("opening netlink"))?;
        let link_watch = LinkWatch::new().map_err(io_err("subscribing to link events"))?;
        let link = netlink
            .link_by_name(&config.interface)
            .await
            .map_err(io_err("looking up the interface"))?;
        let primary = match config.primary_address {
            Some(p) => p,
            None => wait_primary(&netlink, &config, link.index).await?,
        };
        let instance = Instance::new(config.machine_config(primary)?)?;
        let socket = VrrpSocket::open(&config.interface, link.index, primary, &config.peers)
            .map_err(io_err("opening the VRRP socket"))?;
        let announcer = if link.mac == [0; 6] {
            tracing::warn!(interface = %config.interface, "no MAC address: not announcing");
            None
        } else {
            Some(
                Announcer::open(&config.interface, link.index, link.mac)
                    .map_err(io_err("opening the packet socket"))?,
            )
        };
        let (commands_tx, commands) = mpsc::channel(16);
        let status = RunnerStatus {
            vrrp: instance.status(),
            stats: *instance.stats(),
            holds_vip: false,
            interface: config.interface.clone(),
            interface_index: link.index,
            primary_address: primary,
            vip: config.vip,
            last_transition: None,
            transitions: 0,
            io_errors: 0,
            not_a_peer: 0,
            last_not_a_peer: None,
            running: true,
        };
        let (status_tx, _) = watch::channel(status);
        Ok(Self {
            config,
            instance,
            socket,
            announcer,
            netlink,
            link_watch: Some(link_watch),
            link,
            primary,
            commands_tx: Some(commands_tx),
            commands,
            status_tx,
            holds_vip: false,
            vip_wanted: false,
            last_transition: None,
            transitions: 0,
            io_errors: 0,
            not_a_peer: 0,
            last_not_a_peer: None,
        })
    }

    /// [`new`](Self::new), then [`run`](Self::run) on a spawned task.
    pub async fn spawn(
        config: RunnerConfig,
    ) -> Result<(VipHandle, JoinHandle<Result<(), RunnerError>>), RunnerError> {
        let runner = Self::new(config).await?;
        let handle = runner.handle();
        Ok((handle, tokio::spawn(runner.run())))
    }

    /// A handle to command this runner and watch its status. Take it before
    /// [`run`](Self::run).
    pub fn handle(&self) -> VipHandle {
        VipHandle {
            commands: self
                .commands_tx
                .clone()
                .expect("the command sender lives until run"),
            status: self.status_tx.subscribe(),
        }
    }

    /// The address adverts are sent from.
    pub fn primary_address(&self) -> IpAddr {
        self.primary
    }

    /// Runs until [`Command::Shutdown`] or until every [`VipHandle`] is
    /// dropped; then resigns and removes the VIP.
    pub async fn run(mut self) -> Result<(), RunnerError> {
        // Our own sender must not keep the channel open.
        self.commands_tx = None;
        tracing::info!(
            interface = %self.config.interface,
            vip = %self.config.vip,
            vrid = self.config.vrid,
            priority = self.config.priority,
            primary = %self.primary,
            advert_interval_ms = self.config.advert_interval.as_millis() as u64,
            destinations = ?self.socket.destinations(),
            "VRRP starting"
        );
        // A VIP left behind by a crashed run must not answer while Backup.
        if let Err(e) = self
            .netlink
            .remove_address(self.link.index, self.config.vip)
            .await
        {
            tracing::warn!(error = %e, "removing a leftover VIP");
        }
        let now = Instant::now();
        self.instance.set_interface_up(now, self.link.up);
        self.instance.startup(now);

        let mut buf = vec![0u8; 8192];
        let mut link_watch = self.link_watch.take();
        let mut poll = tokio::time::interval(self.config.link_poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        poll.reset();
        let mut stopping = false;
        loop {
            self.drain_actions().await;
            self.publish(true);
            if stopping {
                break;
            }
            let deadline = self.instance.poll_timeout();
            // Timers first when due, so a stream of datagrams cannot starve
            // them (the select below prefers the socket).
            if deadline.is_some_and(|d| d <= Instant::now()) {
                self.on_due_timer(&mut buf).await;
                continue;
            }
            let sleep = tokio::time::sleep_until(
                deadline
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    let now = Instant::now();
                    match cmd {
                        Some(Command::SetTrackedHealthy(h)) => {
                            tracing::info!(healthy = h, "tracked service health");
                            self.instance.set_tracked_healthy(now, h);
                        }
                        Some(Command::Shutdown) | None => {
                            tracing::info!("VRRP shutting down");
                            self.instance.shutdown(now);
                            stopping = true;
                        }
                    }
                }
                r = self.socket.recv(&mut buf) => match r {
                    Ok((meta, msg)) => self.on_datagram(meta, msg),
                    Err(e) => {
                        self.io_errors += 1;
                        tracing::warn!(error = %e, "receiving VRRP");
                        // Do not spin on a persistent error.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                ev = next_link_event(&mut link_watch) => match ev {
                    Some(ev) if ev.index == self.link.index => self.set_link_up(ev.up),
                    Some(_) => {}
                    None => {
                        tracing::warn!("link event subscription ended; polling only");
                        link_watch = None;
                    }
                },
                _ = sleep, if deadline.is_some() => self.on_due_timer(&mut buf).await,
                _ = poll.tick() => {
                    match self.netlink.link_by_index(self.link.index).await {
                        Ok(l) => self.set_link_up(l.up),
                        Err(e) => tracing::warn!(error = %e, "polling the link"),
                    }
                }
            }
        }
        // Whatever happened above, leave no VIP behind.
        if let Err(e) = self
            .netlink
            .remove_address(self.link.index, self.config.vip)
            .await
        {
            tracing::warn!(error = %e, "removing the VIP on exit");
        }
        self.holds_vip = false;
        self.publish(false);
        tracing::info!("VRRP stopped");
        Ok(())
    }

    fn on_datagram(&mut self, meta: Received, msg: &[u8]) {
        if accepts_source(&self.config.peers, meta.src) {
            self.instance
                .handle_datagram(Instant::now(), meta.src, meta.dst, meta.ttl, msg);
        } else {
            self.not_a_peer += 1;
            // Once per new source, not once per datagram.
            if self.last_not_a_peer != Some(meta.src) {
                tracing::warn!(src = %meta.src, peers = ?self.config.peers, "VRRP datagram from an address that is not a configured peer: ignored");
            }
            self.last_not_a_peer = Some(meta.src);
        }
    }

    /// Runs the timers due now, having first read what the socket holds.
    /// After a pause (scheduler stall, SIGSTOP, a suspended VM) the peer's
    /// adverts may sit in the socket while the master-down timer looks
    /// expired: without this a live Active would be taken over. Bounded, so
    /// a flood cannot starve the timer either.
    async fn on_due_timer(&mut self, buf: &mut [u8]) {
        for _ in 0..QUEUED_ADVERTS_BEFORE_TIMER {
            match self.socket.try_recv(buf) {
                Ok(Some((meta, msg))) => self.on_datagram(meta, msg),
                Ok(None) => break,
                Err(e) => {
                    self.io_errors += 1;
                    tracing::warn!(error = %e, "receiving VRRP");
                    break;
                }
            }
        }
        self.drain_actions().await;
        let now = Instant::now();
        if self.instance.poll_timeout().is_some_and(|d| d <= now) {
            self.instance.handle_timeout(now);
        }
        if self.vip_wanted && !self.holds_vip {
            self.add_vip().await;
        }
    }

    fn set_link_up(&mut self, up: bool) {
        if up != self.link.up {
            tracing::info!(interface = %self.config.interface, up, "link state");
            self.link.up = up;
        }
        self.instance.set_interface_up(Instant::now(), up);
    }

    async fn drain_actions(&mut self) {
        while let Some(action) = self.instance.poll_action() {
            self.execute(action).await;
        }
    }

    async fn execute(&mut self, action: Action) {
        match action {
            Action::SendAdvert(advert) => {
                for dst in self.socket.destinations().to_vec() {
                    let res = self
                        .instance
                        .encode_advert(&advert, dst)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
                        .and_then(|bytes| self.socket.send_to(&bytes, dst));
                    if let Err(e) = res {
                        self.io_errors += 1;
                        if self.link.up {
                            tracing::warn!(%dst, error = %e, "sending advert");
                        } else {
                            tracing::debug!(%dst, error = %e, "sending advert, link down");
                        }
                    }
                }
            }
            Action::AddVip => {
                self.vip_wanted = true;
                self.add_vip().await;
            }
            Action::RemoveVip => {
                self.vip_wanted = false;
                match self
                    .netlink
                    .remove_address(self.link.index, self.config.vip)
                    .await
                {
                    Ok(()) => {
                        self.holds_vip = false;
                        tracing::info!(vip = %self.config.vip, "VIP removed");
                    }
                    Err(e) => {
                        self.io_errors += 1;
                        tracing::warn!(vip = %self.config.vip, error = %e, "removing VIP");
                    }
                }
            }
            Action::Announce => self.announce(),
            Action::StateChanged { from, to, reason } => {
                let st = self.instance.status();
                tracing::info!(
                    %from, %to, %reason,
                    priority = st.effective_priority,
                    "VRRP state"
                );
                self.last_transition = Some(Transition {
                    from,
                    to,
                    reason,
                    at: Instant::now(),
                });
                self.transitions += 1;
            }
        }
    }

    async fn add_vip(&mut self) {
        match self
            .netlink
            .add_address(self.link.index, self.config.vip)
            .await
        {
            Ok(()) => {
                self.holds_vip = true;
                tracing::info!(vip = %self.config.vip, "VIP added");
            }
            Err(e) => {
                self.io_errors += 1;
                tracing::warn!(vip = %self.config.vip, error = %e, "adding VIP");
            }
        }
    }

    fn announce(&mut self) {
        let Some(a) = &self.announcer else { return };
        let res = match (self.config.vip.addr(), self.primary) {
            (IpAddr::V4(vip), _) => a.garp(vip),
            (IpAddr::V6(vip), IpAddr::V6(src)) => a.unsolicited_na(src, vip),
            (IpAddr::V6(_), IpAddr::V4(_)) => return,
        };
        if let Err(e) = res {
            self.io_errors += 1;
            tracing::warn!(error = %e, "announcing the VIP");
        }
    }

    fn publish(&self, running: bool) {
        let new = RunnerStatus {
            vrrp: self.instance.status(),
            stats: *self.instance.stats(),
            holds_vip: self.holds_vip,
            interface: self.config.interface.clone(),
            interface_index: self.link.index,
            primary_address: self.primary,
            vip: self.config.vip,
            last_transition: self.last_transition,
            transitions: self.transitions,
            io_errors: self.io_errors,
            not_a_peer: self.not_a_peer,
            last_not_a_peer: self.last_not_a_peer,
            running,
        };
        self.status_tx.send_if_modified(|s| {
            if *s == new {
                false
            } else {
                *s = new;
                true
            }
        });
    }
}

/// With unicast peers configured, only they may speak for the virtual
/// router: a datagram from any other source (a stray host, a third router
/// on the VRID, a forged advert) is dropped before the machine sees it, so
/// it can neither make an Active step down nor hold a Backup back. With no
/// peers (multicast) every source on the link is heard, as RFC 5798 says.
pub(crate) fn accepts_source(peers: &[IpAddr], src: IpAddr) -> bool {
    peers.is_empty() || peers.contains(&src)
}

async fn next_link_event(watch: &mut Option<LinkWatch>) -> Option<super::netlink::LinkEvent> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

async fn wait_primary(
    netlink: &Netlink,
    config: &RunnerConfig,
    index: u32,
) -> Result<IpAddr, RunnerError> {
    let deadline = Instant::now() + config.address_wait;
    loop {
        if let Some(p) = netlink
            .primary_address(index, config.vip.addr())
            .await
            .map_err(io_err("reading the interface's addresses"))?
        {
            return Ok(p);
        }
        if Instant::now() >= deadline {
            return Err(RunnerError::NoPrimaryAddress {
                interface: config.interface.clone(),
                family: Family::of(config.vip.addr()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_interval_rounding() {
        let mut c = RunnerConfig::new("eth0", "198.51.100.10/24".parse().unwrap(), 51);
        for (ms, cs) in [
            (1000, 100),
            (100, 10),
            (50, 5),
            (20, 2),
            (10, 1),
            (14, 1),
            (15, 2),
        ] {
            c.advert_interval = Duration::from_millis(ms);
            assert_eq!(c.advert_interval_cs().unwrap(), cs, "{ms} ms");
        }
        for bad in [
            Duration::ZERO,
            Duration::from_millis(4),
            Duration::from_secs(41),
        ] {
            c.advert_interval = bad;
            assert!(c.advert_interval_cs().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unicast_peers_filter_sources() {
        let a: IpAddr = "198.51.100.11".parse().unwrap();
        let b: IpAddr = "198.51.100.12".parse().unwrap();
        let stray: IpAddr = "198.51.100.2".parse().unwrap();
        // Multicast: everyone on the link.
        assert!(accepts_source(&[], stray));
        // Unicast: the peers only.
        assert!(accepts_source(&[b], b));
        assert!(accepts_source(&[a, b], a));
        assert!(!accepts_source(&[b], stray));
        assert!(!accepts_source(&[b], a), "not even ourselves");
        let v6: IpAddr = "2001:db8::12".parse().unwrap();
        assert!(!accepts_source(&[b], v6));
        assert!(accepts_source(&[v6], v6));
    }

    /// What the filter means for the machine: a forged priority-254 advert
    /// from a non-peer would make an Active step down; dropped by the
    /// filter, it leaves the Active where it is.
    #[test]
    fn forged_advert_from_a_non_peer_cannot_take_over() {
        use crate::packet::Advert;
        let me: IpAddr = "198.51.100.11".parse().unwrap();
        let peer: IpAddr = "198.51.100.12".parse().unwrap();
        let stray: IpAddr = "198.51.100.2".parse().unwrap();
        let vip: IpAddr = "198.51.100.10".parse().unwrap();
        let mut c = RunnerConfig::new("eth0", "198.51.100.10/24".parse().unwrap(), 51);
        c.priority = 150;
        c.advert_interval = Duration::from_millis(100);
        c.peers = vec![peer];
        let mut m = Instance::new(c.machine_config(me).unwrap()).unwrap();
        let t0 = Instant::now();
        m.startup(t0);
        let t1 = t0 + Duration::from_secs(1);
        m.handle_timeout(t1);
        assert_eq!(m.status().state, State::Active);
        let forged = Advert {
            vrid: 51,
            priority: 254,
            max_advert_interval: 10,
            addresses: vec![vip],
        };
        let sender = Instance::new({
            let mut f = c.machine_config(stray).unwrap();
            f.priority = 254;
            f
        })
        .unwrap();
        let bytes = sender.encode_advert(&forged, me).unwrap();
        // Through the runner's filter: dropped, still Active.
        let before = m.stats().received;
        if accepts_source(&c.peers, stray) {
            m.handle_datagram(t1, stray, me, 255, &bytes);
        }
        assert_eq!(m.stats().received, before);
        assert_eq!(m.status().state, State::Active);
        // Without it the same datagram would have won.
        m.handle_datagram(t1, stray, me, 255, &bytes);
        assert_eq!(m.status().state, State::Backup);
    }

    #[test]
    fn machine_config_carries_fields() {
        let mut c = RunnerConfig::new("eth0", "198.51.100.10/24".parse().unwrap(), 51);
        c.priority = 150;
        c.advert_interval = Duration::from_millis(50);
        c.preempt = false;
        c.track_penalty = 100;
        c.checksum_mode = ChecksumMode::NoPseudoHeader;
        let primary: IpAddr = "198.51.100.11".parse().unwrap();
        let m = c.machine_config(primary).unwrap();
        assert_eq!(m.vrid, 51);
        assert_eq!(m.priority, 150);
        assert_eq!(m.advert_interval, 5);
        assert!(!m.preempt);
        assert_eq!(m.track_penalty, 100);
        assert_eq!(m.checksum_mode, ChecksumMode::NoPseudoHeader);
        assert_eq!(m.primary_address, primary);
        assert_eq!(m.vips, vec!["198.51.100.10".parse::<IpAddr>().unwrap()]);
        c.vrid = 0;
        assert!(matches!(
            c.machine_config(primary),
            Err(RunnerError::Config(ConfigError::VridZero))
        ));
    }
}
