//! Two instances wired together in memory, quinn-proto style: adverts are
//! encoded, carried by a simulated link, decoded by the peer, and virtual time
//! jumps to the next timer or delivery.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use trunkvip_vip::{active_down_interval, Action, Config, Family, Instance, Reason, State};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const LATENCY: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
}

fn config(addr: u8, priority: u8) -> Config {
    let mut c = Config::new(1, host(addr), vec![VIP]);
    c.priority = priority;
    c
}

/// Decides the fate of one advert sent by node `from` at `now`:
/// `None` drops it, `Some(d)` delivers it after `d`.
type Link = Box<dyn FnMut(Instant, usize) -> Option<Duration>>;

/// An advert on the wire: (deliver at, sequence for a stable order, to,
/// from, bytes).
type InFlight = (Instant, u64, usize, usize, Vec<u8>);

struct Node {
    inst: Instance,
    holds_vip: bool,
    announces: Vec<Instant>,
    /// Adverts are lost on the way out (interface down, for instance).
    mute: bool,
}

struct Sim {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    link: Link,
    transitions: Vec<(Instant, usize, State, State, Reason)>,
    /// Periods with both nodes Active: (start, end if over).
    both_active: Vec<(Instant, Option<Instant>)>,
}

impl Sim {
    fn new(configs: Vec<Config>) -> Self {
        // The one clock read: an arbitrary origin for virtual time.
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            nodes: configs
                .into_iter()
                .map(|c| Node {
                    inst: Instance::new(c).unwrap(),
                    holds_vip: false,
                    announces: vec![],
                    mute: false,
                })
                .collect(),
            queue: BinaryHeap::new(),
            seq: 0,
            link: Box::new(|_, _| Some(LATENCY)),
            transitions: vec![],
            both_active: vec![],
        }
    }

    fn connect(&mut self, up: bool) {
        self.link = if up {
            Box::new(|_, _| Some(LATENCY))
        } else {
            Box::new(|_, _| None)
        };
    }

    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    fn startup_all(&mut self) {
        for i in 0..self.nodes.len() {
            let now = self.now;
            self.nodes[i].inst.startup(now);
            self.flush(i);
        }
    }

    /// Applies `f` to node `i` at the current time and carries out its actions.
    fn with(&mut self, i: usize, f: impl FnOnce(&mut Instance, Instant)) {
        let now = self.now;
        f(&mut self.nodes[i].inst, now);
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].inst.poll_action() {
            let node = &mut self.nodes[i];
            match action {
                Action::SendAdvert(advert) => {
                    let dst = Family::V4.multicast_group();
                    let bytes = node.inst.encode_advert(&advert, dst).unwrap();
                    if node.mute {
                        continue;
                    }
                    for to in (0..self.nodes.len()).filter(|&to| to != i) {
                        if let Some(delay) = (self.link)(self.now, i) {
                            self.seq += 1;
                            self.queue.push(Reverse((
                                self.now + delay,
                                self.seq,
                                to,
                                i,
                                bytes.clone(),
                            )));
                        }
                    }
                }
                Action::AddVip => {
                    assert!(!node.holds_vip, "node {i} added the VIP twice");
                    node.holds_vip = true;
                }
                Action::RemoveVip => {
                    assert!(node.holds_vip, "node {i} removed a VIP it did not hold");
                    node.holds_vip = false;
                }
                Action::Announce => {
                    assert!(node.holds_vip, "node {i} announced without the VIP");
                    node.announces.push(self.now);
                }
                Action::StateChanged { from, to, reason } => {
                    self.transitions.push((self.now, i, from, to, reason));
                }
            }
        }
        let node = &self.nodes[i];
        assert_eq!(
            node.holds_vip,
            node.inst.state() == State::Active,
            "node {i}"
        );
        self.track_both_active();
    }

    fn track_both_active(&mut self) {
        let both = self.nodes.iter().all(|n| n.inst.state() == State::Active);
        match self.both_active.last_mut() {
            Some((_, end @ None)) if !both => *end = Some(self.now),
            Some((_, None)) => {}
            _ if both => self.both_active.push((self.now, None)),
            _ => {}
        }
    }

    /// Runs events until `until`, then sets the clock to it.
    fn run_until(&mut self, until: Instant) {
        loop {
            let timers = self.nodes.iter().filter_map(|n| n.inst.poll_timeout());
            let delivery = self.queue.peek().map(|Reverse(e)| e.0);
            let Some(next) = timers.chain(delivery).min().filter(|t| *t <= until) else {
                break;
            };
            self.now = next.max(self.now);
            while self.queue.peek().is_some_and(|Reverse(e)| e.0 <= self.now) {
                let Reverse((_, _, to, from, bytes)) = self.queue.pop().unwrap();
                let src = self.nodes[from].inst.config().primary_address;
                let dst = Family::V4.multicast_group();
                self.with(to, |inst, now| {
                    inst.handle_datagram(now, src, dst, 255, &bytes)
                });
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i]
                    .inst
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.with(i, |inst, now| inst.handle_timeout(now));
                }
            }
        }
        self.now = until.max(self.now);
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn states(&self) -> Vec<State> {
        self.nodes.iter().map(|n| n.inst.state()).collect()
    }

    fn active_count(&self) -> usize {
        self.states()
            .iter()
            .filter(|s| **s == State::Active)
            .count()
    }

    /// When node `i` last became `to`.
    fn last_became(&self, i: usize, to: State) -> Option<Instant> {
        self.transitions
            .iter()
            .rev()
            .find(|t| t.1 == i && t.3 == to)
            .map(|t| t.0)
    }
}

#[test]
fn pair_converges_on_the_higher_priority() {
    let mut sim = Sim::new(vec![config(1, 150), config(2, 100)]);
    sim.startup_all();
    sim.run_for(ms(30_000));
    assert_eq!(sim.states(), [State::Active, State::Backup]);
    assert!(sim.nodes[0].holds_vip && !sim.nodes[1].holds_vip);
    // The higher priority's shorter down interval (3.2 s vs 3.6 s) wins
    // outright: the other never went Active.
    assert_eq!(sim.last_became(1, State::Active), None);
    assert_eq!(
        sim.last_became(0, State::Active),
        Some(sim.at(active_down_interval(150, 100)))
    );
    assert!(sim.both_active.is_empty());
}

#[test]
fn equal_priority_pair_converges_on_the_higher_address() {
    for (a, b) in [(1, 2), (2, 1)] {
        let mut sim = Sim::new(vec![config(a, 100), config(b, 100)]);
        sim.startup_all();
        sim.run_for(ms(30_000));
        let winner = if a > b { 0 } else { 1 };
        assert_eq!(
            sim.nodes[winner].inst.state(),
            State::Active,
            "addresses {a}, {b}"
        );
        assert_eq!(sim.active_count(), 1);
    }
}

#[test]
fn tracked_health_penalty_moves_the_vip_and_back() {
    let mut a = config(1, 150);
    a.track_penalty = 50;
    let b = config(2, 120);
    let mut sim = Sim::new(vec![a, b]);
    sim.startup_all();
    sim.run_for(ms(10_000));
    assert_eq!(sim.states(), [State::Active, State::Backup]);

    // A's SIP side fails: 150 - 50 = 100 < 120. A says so at once; B ignores
    // the lower-priority adverts and takes over one down interval after the
    // last one it accepted (A's previous advert, less than a second ago).
    let lost = sim.now;
    sim.with(0, |i, now| i.set_tracked_healthy(now, false));
    sim.run_for(ms(10_000));
    assert_eq!(sim.states(), [State::Backup, State::Active]);
    assert!(!sim.nodes[0].holds_vip && sim.nodes[1].holds_vip);
    let moved = sim.last_became(1, State::Active).unwrap();
    assert!(
        moved - lost <= active_down_interval(120, 100),
        "took {:?}",
        moved - lost
    );
    assert!(sim
        .transitions
        .iter()
        .any(|t| t.1 == 1 && t.4 == Reason::Preempt));
    // Exactly one Active after convergence, and only briefly two.
    assert!(sim
        .both_active
        .iter()
        .all(|(s, e)| e.unwrap() - *s <= 2 * LATENCY));

    // Healthy again: A preempts back.
    sim.with(0, |i, now| i.set_tracked_healthy(now, true));
    sim.run_for(ms(10_000));
    assert_eq!(sim.states(), [State::Active, State::Backup]);
    assert!(sim.nodes[0].holds_vip && !sim.nodes[1].holds_vip);
}

#[test]
fn split_brain_heals_within_one_advert_interval_and_winner_reannounces() {
    // Try several phases between the two advert timers, so both orders of
    // "whose advert crosses first" are covered.
    for offset in [0u64, 1, 300, 700, 999] {
        let mut sim = Sim::new(vec![config(1, 150), config(2, 100)]);
        sim.connect(false);
        sim.with(0, |i, now| i.startup(now));
        sim.run_for(ms(offset));
        sim.with(1, |i, now| i.startup(now));
        sim.run_for(ms(10_000));
        assert_eq!(
            sim.states(),
            [State::Active, State::Active],
            "offset {offset}"
        );

        let healed = sim.now;
        let announced_before = sim.nodes[0].announces.len();
        sim.connect(true);
        sim.run_for(ms(1000) + 2 * LATENCY);
        assert_eq!(
            sim.states(),
            [State::Active, State::Backup],
            "offset {offset}"
        );
        let (_, end) = sim.both_active.last().unwrap();
        assert!(
            end.unwrap() - healed <= ms(1000) + 2 * LATENCY,
            "offset {offset}"
        );
        assert!(
            sim.nodes[0].announces[announced_before..]
                .iter()
                .any(|t| *t >= healed),
            "winner did not re-announce (offset {offset})"
        );
        assert!(sim.nodes[0].inst.stats().split_brain >= 1);
        sim.run_for(ms(20_000));
        assert_eq!(sim.states(), [State::Active, State::Backup]);
    }
}

#[test]
fn shutdown_hands_over_after_skew_time() {
    let mut sim = Sim::new(vec![config(1, 150), config(2, 100)]);
    sim.startup_all();
    sim.run_for(ms(10_000));
    let t = sim.now;
    sim.with(0, |i, now| i.shutdown(now));
    sim.run_for(ms(5_000));
    assert_eq!(sim.states(), [State::Initialize, State::Active]);
    // Priority 0 arrives after LATENCY; B waits Skew_Time(100) = 0.609375 s.
    let took = sim.last_became(1, State::Active).unwrap() - t;
    assert_eq!(took, LATENCY + Duration::from_micros(609_375));
    assert!(sim
        .transitions
        .iter()
        .any(|x| x.1 == 1 && x.4 == Reason::ActiveResigned));
}

#[test]
fn interface_down_moves_the_vip_and_up_takes_it_back() {
    let mut sim = Sim::new(vec![config(1, 150), config(2, 100)]);
    sim.startup_all();
    sim.run_for(ms(10_000));

    // Link lost: A's resign advert never gets out, so B waits the full down
    // interval after A's last advert.
    sim.nodes[0].mute = true;
    let down = sim.now;
    sim.with(0, |i, now| i.set_interface_up(now, false));
    assert_eq!(sim.states()[0], State::Initialize);
    assert!(!sim.nodes[0].holds_vip);
    sim.run_for(ms(10_000));
    assert_eq!(sim.states(), [State::Initialize, State::Active]);
    let took = sim.last_became(1, State::Active).unwrap() - down;
    assert!(took <= active_down_interval(100, 100), "took {took:?}");

    // Back up: A restarts as Backup and preempts B.
    sim.nodes[0].mute = false;
    sim.with(0, |i, now| i.set_interface_up(now, true));
    assert_eq!(sim.states()[0], State::Backup);
    sim.run_for(ms(10_000));
    assert_eq!(sim.states(), [State::Active, State::Backup]);
}

#[test]
fn preempt_delay_lets_a_restarted_host_wait() {
    let mut a = config(1, 150);
    a.preempt_delay = ms(20_000);
    let mut sim = Sim::new(vec![a, config(2, 100)]);
    sim.with(1, |i, now| i.startup(now));
    sim.run_for(ms(10_000));
    let restart = sim.now;
    sim.with(0, |i, now| i.startup(now));
    sim.run_for(ms(19_000));
    assert_eq!(sim.states(), [State::Backup, State::Active]);
    sim.run_for(ms(5_000));
    assert_eq!(sim.states(), [State::Active, State::Backup]);
    let took = sim.last_became(0, State::Active).unwrap() - restart;
    assert!(took >= ms(20_000) && took <= ms(20_000) + active_down_interval(150, 100));
}

/// What one advert suffers while the network misbehaves.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Drop,
    Delay(u16),
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![Just(Fate::Drop), (0u16..2000).prop_map(Fate::Delay)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the network did to adverts, once it delivers them again no
    /// stretch with both nodes Active lasts longer than one
    /// Active_Down_Interval, and the pair ends with exactly one Active.
    #[test]
    fn never_two_actives_for_long_after_delivery_resumes(
        prio_a in 1u8..=254,
        prio_b in 1u8..=254,
        same_prio in any::<bool>(),
        preempt in any::<[bool; 2]>(),
        intervals in [5u16..=200, 5u16..=200],
        chaos_ms in 0u64..30_000,
        fates in prop::collection::vec(fate(), 1..200),
    ) {
        let prio_b = if same_prio { prio_a } else { prio_b };
        let mut configs = vec![config(1, prio_a), config(2, prio_b)];
        for (i, c) in configs.iter_mut().enumerate() {
            c.preempt = preempt[i];
            c.advert_interval = intervals[i];
        }
        let mut sim = Sim::new(configs);
        let resume = sim.at(ms(chaos_ms));
        let mut n = 0usize;
        sim.link = Box::new(move |now, _from| {
            if now >= resume {
                return Some(LATENCY);
            }
            n += 1;
            match fates[n % fates.len()] {
                Fate::Drop => None,
                Fate::Delay(d) => Some(ms(u64::from(d))),
            }
        });
        sim.startup_all();
        sim.run_until(resume + ms(60_000));

        let bound = active_down_interval(prio_a.min(prio_b), *intervals.iter().max().unwrap());
        for (start, end) in &sim.both_active {
            let end = end.unwrap_or(sim.now);
            if end > resume {
                let lasted = end - (*start).max(resume);
                prop_assert!(lasted <= bound, "both Active for {:?} after resume (bound {:?})", lasted, bound);
            }
        }
        prop_assert_eq!(sim.active_count(), 1, "states {:?}", sim.states());
    }
}
