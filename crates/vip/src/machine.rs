//! The VRRPv3 state machine (RFC 5798 §6.4, RFC 9568 §6.4), sans-IO.
//!
//! An [`Instance`] is one virtual router (one VRID) on one interface. It never
//! reads a clock or touches a socket: the shell passes `now` into every call,
//! feeds it received adverts, sleeps until [`Instance::poll_timeout`], calls
//! [`Instance::handle_timeout`], and carries out what [`Instance::poll_action`]
//! returns.
//!
//! # Preempt delay
//!
//! With `preempt_delay` set, a Backup does not take over from a *lower*
//! priority Active until `preempt_delay` has passed since it last entered
//! Backup (startup, interface up, or stepping down). Until then it treats the
//! lower-priority adverts as if preemption were off: they keep its down timer
//! reset. Afterwards it ignores them, so it takes over when the down timer
//! runs out, `Active_Down_Interval` after the last advert it accepted. A
//! silent or resigning Active is never subject to the delay. This matches
//! keepalived's `preempt_delay` and lets a restarted host warm up (register
//! its Edges, fill caches) before it pulls the VIP back.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::packet::{
    self, Advert, ChecksumMode, DecodeError, EncodeError, Family, MAX_ADVERT_INTERVAL, REQUIRED_TTL,
};

/// Priority of the address owner: it becomes Active at once on startup.
pub const OWNER_PRIORITY: u8 = 255;

/// `Skew_Time` for `priority` and `Active_Adver_Interval` (centiseconds):
/// `((256 - priority) * interval) / 256`.
///
/// Computed in microseconds rather than truncated to whole centiseconds, so
/// that with short intervals neighbouring priorities still get different
/// skews (in centiseconds, priorities 231..=255 would all skew 0 at 10 cs).
pub fn skew_time(priority: u8, interval_cs: u16) -> Duration {
    let us = (256 - u64::from(priority)) * u64::from(interval_cs) * 10_000 / 256;
    Duration::from_micros(us)
}

/// `Active_Down_Interval` (RFC 5798 `Master_Down_Interval`):
/// `3 * interval + Skew_Time`.
pub fn active_down_interval(priority: u8, interval_cs: u16) -> Duration {
    centis(interval_cs) * 3 + skew_time(priority, interval_cs)
}

fn centis(cs: u16) -> Duration {
    Duration::from_millis(u64::from(cs) * 10)
}

/// How the machine repeats announcements (gratuitous ARP / unsolicited NA)
/// after becoming Active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Announcements per burst, the first one included; 0 disables them.
    pub count: u32,
    /// Time between two announcements of a burst.
    pub spacing: Duration,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            count: 5,
            spacing: Duration::from_millis(100),
        }
    }
}

/// Configuration of one virtual router. Build with [`Config::new`], then
/// adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Configured priority, 1..=254, or 255 for the address owner. Default 100.
    pub priority: u8,
    /// Advertisement interval in centiseconds, 1..=4095. Default 100 (1 s).
    pub advert_interval: u16,
    /// Take over from a lower-priority Active. Default true.
    pub preempt: bool,
    /// See the module documentation. Default zero.
    pub preempt_delay: Duration,
    /// This host's own address on the link: advert source, and the tie-break
    /// on equal priority (the higher address wins).
    pub primary_address: IpAddr,
    /// The virtual addresses, all of the primary address's family.
    pub vips: Vec<IpAddr>,
    /// Subtracted from `priority` while the tracked service (the SIP side) is
    /// unhealthy; the result is at least 1. Default 50.
    pub track_penalty: u8,
    /// IPv4 checksum coverage, for [`Instance::handle_datagram`] and
    /// [`Instance::encode_advert`].
    pub checksum_mode: ChecksumMode,
    /// Announcement repeats after becoming Active.
    pub announce: AnnounceConfig,
}

impl Config {
    /// A configuration with the defaults listed on each field.
    pub fn new(vrid: u8, primary_address: IpAddr, vips: Vec<IpAddr>) -> Self {
        Self {
            vrid,
            priority: 100,
            advert_interval: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_address,
            vips,
            track_penalty: 50,
            checksum_mode: ChecksumMode::default(),
            announce: AnnounceConfig::default(),
        }
    }

    /// Checks the ranges RFC 5798 gives and that all addresses share a family.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::VridZero);
        }
        if self.priority == 0 {
            return Err(ConfigError::PriorityZero);
        }
        if self.advert_interval == 0 || self.advert_interval > MAX_ADVERT_INTERVAL {
            return Err(ConfigError::AdvertIntervalOutOfRange(self.advert_interval));
        }
        if self.vips.is_empty() {
            return Err(ConfigError::NoVips);
        }
        if self.vips.len() > usize::from(u8::MAX) {
            return Err(ConfigError::TooManyVips(self.vips.len()));
        }
        let family = Family::of(self.primary_address);
        if let Some(vip) = self.vips.iter().find(|v| Family::of(**v) != family) {
            return Err(ConfigError::FamilyMismatch(*vip));
        }
        Ok(())
    }
}

/// An invalid [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// VRID 0 is reserved.
    VridZero,
    /// Priority 0 is reserved for "the Active is resigning".
    PriorityZero,
    /// Advert interval outside 1..=4095 centiseconds.
    AdvertIntervalOutOfRange(u16),
    /// A virtual router needs at least one virtual address.
    NoVips,
    /// More than 255 virtual addresses do not fit an advert.
    TooManyVips(usize),
    /// This VIP is not of the primary address's family.
    FamilyMismatch(IpAddr),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::VridZero => f.write_str("VRID must be 1..=255"),
            ConfigError::PriorityZero => f.write_str("priority must be 1..=255"),
            ConfigError::AdvertIntervalOutOfRange(i) => {
                write!(f, "advert interval {i} cs is outside 1..=4095")
            }
            ConfigError::NoVips => f.write_str("at least one virtual address is needed"),
            ConfigError::TooManyVips(n) => write!(f, "{n} virtual addresses, at most 255"),
            ConfigError::FamilyMismatch(ip) => {
                write!(
                    f,
                    "virtual address {ip} is not of the primary address's family"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// VRRP state, with RFC 9568 naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running: before startup, after shutdown, or interface down.
    Initialize,
    /// Listening for the Active; takes over when it falls silent.
    Backup,
    /// Owns the VIPs and advertises.
    Active,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "Initialize",
            State::Backup => "Backup",
            State::Active => "Active",
        })
    }
}

/// Why the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// [`Instance::startup`].
    Startup,
    /// The interface came back up.
    InterfaceUp,
    /// No advert accepted for `Active_Down_Interval` (or none ever heard).
    ActiveSilent,
    /// The Active resigned (priority 0) and `Skew_Time` passed.
    ActiveResigned,
    /// This router ignored a lower-priority Active and took over.
    Preempt,
    /// A peer with higher priority (or equal priority and higher address)
    /// is Active.
    PeerWins,
    /// [`Instance::shutdown`].
    Shutdown,
    /// The interface went down.
    InterfaceDown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Startup => "startup",
            Reason::InterfaceUp => "interface up",
            Reason::ActiveSilent => "no advertisement from an Active",
            Reason::ActiveResigned => "the Active resigned",
            Reason::Preempt => "preempting a lower-priority Active",
            Reason::PeerWins => "a higher-priority peer is Active",
            Reason::Shutdown => "shutdown",
            Reason::InterfaceDown => "interface down",
        })
    }
}

/// Work for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this advert with TTL / hop limit 255, to the multicast group or
    /// the configured unicast peers. [`Instance::encode_advert`] encodes it.
    SendAdvert(Advert),
    /// Add the VIPs ([`Config::vips`]) to the interface.
    AddVip,
    /// Remove the VIPs from the interface.
    RemoveVip,
    /// Send gratuitous ARP (IPv4) or unsolicited Neighbor Advertisements
    /// (IPv6) for the VIPs. Repeats are scheduled by the machine.
    Announce,
    /// The state changed; for logs and metrics.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
}

/// Counters of received adverts, per outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Every datagram or advert handed in.
    pub received: u64,
    /// Adverts that passed validation and reached the state logic.
    pub accepted: u64,
    /// Decode: shorter than the header.
    pub too_short: u64,
    /// Decode: version not 3.
    pub bad_version: u64,
    /// Decode: type not ADVERTISEMENT.
    pub bad_type: u64,
    /// Decode: length does not match the address count.
    pub bad_length: u64,
    /// Decode: checksum does not verify.
    pub bad_checksum: u64,
    /// TTL / hop limit not 255: not from the local link.
    pub bad_ttl: u64,
    /// Another virtual router's advert.
    pub wrong_vrid: u64,
    /// Source or addresses of the other address family.
    pub wrong_family: u64,
    /// Advert interval 0 (would make the down timer fire at once).
    pub bad_interval: u64,
    /// Our own advert looped back.
    pub own_advert: u64,
    /// Received while in Initialize.
    pub not_running: u64,
    /// Accepted, but its address list differs from ours (misconfiguration;
    /// RFC 5798 §7.1 says log it, not drop it).
    pub address_mismatch: u64,
    /// While Active, an advert from a lower-priority Active: a split brain
    /// healed and we re-announced.
    pub split_brain: u64,
}

/// The last accepted advert's sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Sender's primary address.
    pub address: IpAddr,
    /// Priority it advertised.
    pub priority: u8,
    /// Interval it advertised, centiseconds.
    pub advert_interval: u16,
    /// When it was received.
    pub at: Instant,
}

/// A snapshot for status pages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Current state.
    pub state: State,
    /// Configured priority.
    pub priority: u8,
    /// Priority after the tracking penalty.
    pub effective_priority: u8,
    /// Whether the tracked service is healthy.
    pub tracked_healthy: bool,
    /// Whether the interface is up.
    pub interface_up: bool,
    /// Advert interval in effect, centiseconds: our own when Active or not
    /// running, the Active's when Backup.
    pub advert_interval: u16,
    /// Last accepted advert's sender.
    pub last_peer: Option<PeerInfo>,
}

/// One VRRPv3 virtual router. See the module documentation.
#[derive(Debug)]
pub struct Instance {
    config: Config,
    family: Family,
    state: State,
    /// Between `startup` and `shutdown`.
    running: bool,
    interface_up: bool,
    healthy: bool,
    /// `Active_Adver_Interval`: learnt from the Active while Backup.
    active_adver_interval: u16,
    down_timer: Option<Instant>,
    /// Reason to report if the down timer fires.
    down_cause: Reason,
    advert_timer: Option<Instant>,
    announce_timer: Option<Instant>,
    announce_left: u32,
    backup_since: Option<Instant>,
    last_peer: Option<PeerInfo>,
    stats: Stats,
    actions: VecDeque<Action>,
}

impl Instance {
    /// A new instance in Initialize; nothing happens until [`startup`](Self::startup).
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            family: Family::of(config.primary_address),
            state: State::Initialize,
            running: false,
            interface_up: true,
            healthy: true,
            active_adver_interval: config.advert_interval,
            down_timer: None,
            down_cause: Reason::ActiveSilent,
            advert_timer: None,
            announce_timer: None,
            announce_left: 0,
            backup_since: None,
            last_peer: None,
            stats: Stats::default(),
            actions: VecDeque::new(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Receive counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Priority after the tracking penalty (at least 1).
    pub fn effective_priority(&self) -> u8 {
        if self.healthy {
            self.config.priority
        } else {
            self.config
                .priority
                .saturating_sub(self.config.track_penalty)
                .max(1)
        }
    }

    /// A status snapshot.
    pub fn status(&self) -> Status {
        Status {
            state: self.state,
            priority: self.config.priority,
            effective_priority: self.effective_priority(),
            tracked_healthy: self.healthy,
            interface_up: self.interface_up,
            advert_interval: match self.state {
                State::Backup => self.active_adver_interval,
                State::Active | State::Initialize => self.config.advert_interval,
            },
            last_peer: self.last_peer,
        }
    }

    /// Starts the virtual router: Backup, or Active at once for the owner
    /// (priority 255). If the interface is down, waits for it to come up.
    pub fn startup(&mut self, now: Instant) {
        if self.running {
            return;
        }
        self.running = true;
        if self.interface_up {
            self.start(now, Reason::Startup);
        }
    }

    /// Stops: when Active, sends a priority-0 advert so a Backup takes over
    /// after `Skew_Time`, then removes the VIPs. (`now` is unused today; it
    /// keeps every input timestamped like the others.)
    pub fn shutdown(&mut self, _now: Instant) {
        self.running = false;
        self.enter_initialize(Reason::Shutdown);
    }

    /// Interface state. Down: resign if Active (priority-0 advert, which may
    /// not get out, then remove the VIPs) and claim nothing. Up: start over
    /// as Backup, as on startup.
    pub fn set_interface_up(&mut self, now: Instant, up: bool) {
        if up == self.interface_up {
            return;
        }
        self.interface_up = up;
        if !up {
            self.enter_initialize(Reason::InterfaceDown);
        } else if self.running {
            self.start(now, Reason::InterfaceUp);
        }
    }

    /// Health of the tracked service (the SIP side). While unhealthy the
    /// effective priority is `priority - track_penalty` (at least 1). An
    /// Active advertises a change at once so a Backup can preempt it.
    pub fn set_tracked_healthy(&mut self, now: Instant, healthy: bool) {
        let before = self.effective_priority();
        self.healthy = healthy;
        if self.state == State::Active && self.effective_priority() != before {
            self.send_advert(now);
        }
    }

    /// A received VRRP message (the IP payload): decodes it with the
    /// configured checksum mode, counts failures, and handles the advert.
    /// `src`, `dst` and `ttl` come from the IP header.
    pub fn handle_datagram(&mut self, now: Instant, src: IpAddr, dst: IpAddr, ttl: u8, buf: &[u8]) {
        self.stats.received += 1;
        match packet::decode(buf, src, dst, self.family, self.config.checksum_mode) {
            Ok(advert) => self.process_advert(now, src, ttl, &advert),
            Err(e) => {
                let counter = match e {
                    DecodeError::TooShort { .. } => &mut self.stats.too_short,
                    DecodeError::BadVersion(_) => &mut self.stats.bad_version,
                    DecodeError::BadType(_) => &mut self.stats.bad_type,
                    DecodeError::LengthMismatch { .. } => &mut self.stats.bad_length,
                    DecodeError::BadChecksum { .. } => &mut self.stats.bad_checksum,
                    DecodeError::FamilyMismatch => &mut self.stats.wrong_family,
                };
                *counter += 1;
            }
        }
    }

    /// A decoded advert from `src` received with `ttl`. Invalid ones
    /// (TTL not 255, other VRID or family, interval 0, our own) are dropped
    /// and counted in [`stats`](Self::stats).
    pub fn handle_advert(&mut self, now: Instant, src: IpAddr, ttl: u8, advert: &Advert) {
        self.stats.received += 1;
        self.process_advert(now, src, ttl, advert);
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.announce_timer.is_some_and(|t| t <= now) {
            self.announce(now);
        }
        if self.advert_timer.is_some_and(|t| t <= now) {
            self.send_advert(now);
        }
        if self.down_timer.is_some_and(|t| t <= now) {
            let reason = self.down_cause;
            self.become_active(now, reason);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.announce_timer, self.advert_timer, self.down_timer]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next action for the shell, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Encodes an advert of this instance, sent from the primary address to
    /// `dst` (the multicast group or a unicast peer).
    pub fn encode_advert(&self, advert: &Advert, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
        packet::encode(
            advert,
            self.config.primary_address,
            dst,
            self.config.checksum_mode,
        )
    }

    fn process_advert(&mut self, now: Instant, src: IpAddr, ttl: u8, advert: &Advert) {
        let s = &mut self.stats;
        if ttl != REQUIRED_TTL {
            s.bad_ttl += 1;
            return;
        }
        if Family::of(src) != self.family
            || advert
                .addresses
                .iter()
                .any(|a| Family::of(*a) != self.family)
        {
            s.wrong_family += 1;
            return;
        }
        if advert.vrid != self.config.vrid {
            s.wrong_vrid += 1;
            return;
        }
        if advert.max_advert_interval == 0 || advert.max_advert_interval > MAX_ADVERT_INTERVAL {
            s.bad_interval += 1;
            return;
        }
        if src == self.config.primary_address {
            s.own_advert += 1;
            return;
        }
        if self.state == State::Initialize {
            s.not_running += 1;
            return;
        }
        s.accepted += 1;
        let same_set = advert.addresses.len() == self.config.vips.len()
            && advert
                .addresses
                .iter()
                .all(|a| self.config.vips.contains(a));
        if !same_set {
            s.address_mismatch += 1;
        }
        self.last_peer = Some(PeerInfo {
            address: src,
            priority: advert.priority,
            advert_interval: advert.max_advert_interval,
            at: now,
        });
        match self.state {
            State::Backup => self.backup_on_advert(now, src, advert),
            State::Active => self.active_on_advert(now, src, advert),
            State::Initialize => {}
        }
    }

    /// RFC 9568 §6.4.2, with the equal-priority tie-break on address.
    fn backup_on_advert(&mut self, now: Instant, src: IpAddr, advert: &Advert) {
        if advert.priority == 0 {
            // The Active resigned: take over after Skew_Time only, so the
            // highest-priority Backup goes first.
            self.down_timer =
                Some(now + skew_time(self.effective_priority(), self.active_adver_interval));
            self.down_cause = Reason::ActiveResigned;
            return;
        }
        let we_win = !self.peer_wins(advert.priority, src);
        if we_win && self.config.preempt && self.preempt_delay_elapsed(now) {
            // Ignore it: the down timer keeps running and we take over.
            self.down_cause = Reason::Preempt;
            return;
        }
        self.active_adver_interval = advert.max_advert_interval;
        self.down_timer = Some(now + self.active_down_interval());
        self.down_cause = Reason::ActiveSilent;
    }

    /// RFC 9568 §6.4.3, plus re-announcing when a split brain heals.
    fn active_on_advert(&mut self, now: Instant, src: IpAddr, advert: &Advert) {
        if advert.priority == 0 {
            // Someone resigned while we are Active: assert ourselves at once.
            self.send_advert(now);
        } else if self.peer_wins(advert.priority, src) {
            self.active_adver_interval = advert.max_advert_interval;
            self.enter_backup(now, Reason::PeerWins);
        } else {
            // Two Actives: we stay. The loser steps down on our advert, but
            // the carrier's ARP cache may hold the loser's MAC from its own
            // announcements, so announce again (keepalived issues 160, 166).
            self.stats.split_brain += 1;
            self.send_advert(now);
            self.start_announce(now);
        }
    }

    /// Whether a peer advertising `priority` from `src` beats us.
    fn peer_wins(&self, priority: u8, src: IpAddr) -> bool {
        let ours = self.effective_priority();
        priority > ours || (priority == ours && src > self.config.primary_address)
    }

    fn preempt_delay_elapsed(&self, now: Instant) -> bool {
        self.backup_since
            .is_none_or(|since| now.saturating_duration_since(since) >= self.config.preempt_delay)
    }

    fn active_down_interval(&self) -> Duration {
        active_down_interval(self.effective_priority(), self.active_adver_interval)
    }

    fn start(&mut self, now: Instant, reason: Reason) {
        self.active_adver_interval = self.config.advert_interval;
        if self.effective_priority() == OWNER_PRIORITY {
            self.become_active(now, reason);
        } else {
            self.enter_backup(now, reason);
        }
    }

    fn set_state(&mut self, to: State, reason: Reason) -> State {
        let from = std::mem::replace(&mut self.state, to);
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
        from
    }

    fn enter_backup(&mut self, now: Instant, reason: Reason) {
        let from = self.set_state(State::Backup, reason);
        self.advert_timer = None;
        self.stop_announce();
        self.down_timer = Some(now + self.active_down_interval());
        self.down_cause = Reason::ActiveSilent;
        self.backup_since = Some(now);
        if from == State::Active {
            // Only a winning peer makes an Active step down. Send it a parting
            // advert with our own priority: if its advert reached us before
            // any of ours reached it, it would never learn there were two
            // Actives and would not re-announce. Other Backups treat this as
            // any lower-priority advert. (Not in the RFC; harmless to it.)
            let parting = self.advert(self.effective_priority());
            self.actions.push_back(Action::SendAdvert(parting));
            self.actions.push_back(Action::RemoveVip);
        }
    }

    fn become_active(&mut self, now: Instant, reason: Reason) {
        self.set_state(State::Active, reason);
        self.down_timer = None;
        // Advert first so the old Active steps down, then the address, then
        // the announcements that point the carrier at us.
        self.send_advert(now);
        self.actions.push_back(Action::AddVip);
        self.start_announce(now);
    }

    fn enter_initialize(&mut self, reason: Reason) {
        if self.state == State::Initialize {
            return;
        }
        let from = self.set_state(State::Initialize, reason);
        self.down_timer = None;
        self.advert_timer = None;
        self.stop_announce();
        if from == State::Active {
            self.actions.push_back(Action::SendAdvert(self.advert(0)));
            self.actions.push_back(Action::RemoveVip);
        }
    }

    fn advert(&self, priority: u8) -> Advert {
        Advert {
            vrid: self.config.vrid,
            priority,
            max_advert_interval: self.config.advert_interval,
            addresses: self.config.vips.clone(),
        }
    }

    /// Sends an advert now and restarts the advert timer.
    fn send_advert(&mut self, now: Instant) {
        self.actions
            .push_back(Action::SendAdvert(self.advert(self.effective_priority())));
        self.advert_timer = Some(now + centis(self.config.advert_interval));
    }

    /// Starts (or restarts) a burst of announcements.
    fn start_announce(&mut self, now: Instant) {
        self.announce_left = self.config.announce.count;
        self.announce_timer = None;
        if self.announce_left > 0 {
            self.announce(now);
        }
    }

    fn announce(&mut self, now: Instant) {
        self.actions.push_back(Action::Announce);
        self.announce_left -= 1;
        self.announce_timer = (self.announce_left > 0).then(|| now + self.config.announce.spacing);
    }

    fn stop_announce(&mut self) {
        self.announce_left = 0;
        self.announce_timer = None;
    }
}

#[cfg(test)]
mod tests;
