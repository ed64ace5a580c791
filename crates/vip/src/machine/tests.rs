//! One instance against scripted adverts on virtual time.

use std::net::Ipv4Addr;

use super::*;

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const LOWER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5));
const HIGHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20));

/// The one clock read: an arbitrary origin. Everything after it is virtual.
fn epoch() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn config(priority: u8) -> Config {
    let mut c = Config::new(1, ME, vec![VIP]);
    c.priority = priority;
    c
}

fn advert(priority: u8, interval: u16) -> Advert {
    Advert {
        vrid: 1,
        priority,
        max_advert_interval: interval,
        addresses: vec![VIP],
    }
}

fn drain(i: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| i.poll_action()).collect()
}

fn changed(from: State, to: State, reason: Reason) -> Action {
    Action::StateChanged { from, to, reason }
}

fn send(priority: u8) -> Action {
    Action::SendAdvert(advert(priority, 100))
}

/// Started at `t0`, actions drained.
fn started(c: Config, t0: Instant) -> Instance {
    let mut i = Instance::new(c).unwrap();
    i.startup(t0);
    drain(&mut i);
    i
}

/// Active at the returned instant, actions drained.
fn active(c: Config, t0: Instant) -> (Instance, Instant) {
    let mut i = started(c, t0);
    let t = i.poll_timeout().unwrap();
    i.handle_timeout(t);
    assert_eq!(i.state(), State::Active);
    drain(&mut i);
    (i, t)
}

#[test]
fn skew_and_down_interval_math() {
    // (256 - 100) * 100 cs / 256 = 60.9375 cs.
    assert_eq!(skew_time(100, 100), us(609_375));
    assert_eq!(active_down_interval(100, 100), us(3_609_375));
    // (256 - 254) * 100 / 256 = 0.78125 cs; (256 - 1) * 4095 / 256 = 4079.00390625 cs.
    assert_eq!(skew_time(254, 100), us(7_812));
    assert_eq!(skew_time(1, 4095), us(40_790_039));
    assert_eq!(active_down_interval(255, 1), us(30_039));
    // Neighbouring priorities still differ at short intervals.
    assert!(skew_time(231, 10) > skew_time(232, 10));
}

#[test]
fn startup_enters_backup_and_arms_down_timer() {
    let t0 = epoch();
    let mut i = Instance::new(config(100)).unwrap();
    assert_eq!(i.state(), State::Initialize);
    assert_eq!(i.poll_timeout(), None);
    i.startup(t0);
    assert_eq!(
        drain(&mut i),
        [changed(State::Initialize, State::Backup, Reason::Startup)]
    );
    assert_eq!(i.poll_timeout(), Some(t0 + us(3_609_375)));
    i.startup(t0 + ms(1));
    assert!(drain(&mut i).is_empty(), "startup is idempotent");
}

#[test]
fn owner_goes_active_at_once() {
    let t0 = epoch();
    let mut i = Instance::new(config(OWNER_PRIORITY)).unwrap();
    i.startup(t0);
    assert_eq!(
        drain(&mut i),
        [
            changed(State::Initialize, State::Active, Reason::Startup),
            send(255),
            Action::AddVip,
            Action::Announce,
        ]
    );
}

#[test]
fn backup_becomes_active_after_exact_down_interval_of_silence() {
    let t0 = epoch();
    let mut i = started(config(100), t0);
    i.handle_timeout(t0 + us(3_609_374));
    assert_eq!(i.state(), State::Backup);
    assert!(drain(&mut i).is_empty());
    let t = t0 + us(3_609_375);
    i.handle_timeout(t);
    assert_eq!(
        drain(&mut i),
        [
            changed(State::Backup, State::Active, Reason::ActiveSilent),
            send(100),
            Action::AddVip,
            Action::Announce,
        ]
    );
    // Four more announcements 100 ms apart, adverts every second.
    let mut announces = vec![t];
    let mut adverts = vec![];
    while let Some(next) = i.poll_timeout().filter(|n| *n <= t + ms(2500)) {
        i.handle_timeout(next);
        for a in drain(&mut i) {
            match a {
                Action::Announce => announces.push(next),
                Action::SendAdvert(ad) => {
                    assert_eq!(ad.priority, 100);
                    adverts.push(next);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let expect: Vec<_> = (0..5).map(|k| t + ms(100 * k)).collect();
    assert_eq!(announces, expect);
    assert_eq!(adverts, [t + ms(1000), t + ms(2000)]);
}

#[test]
fn backup_resets_down_timer_on_adverts() {
    let t0 = epoch();
    let mut i = started(config(100), t0);
    i.handle_advert(t0 + ms(3000), HIGHER, 255, &advert(200, 100));
    assert_eq!(i.poll_timeout(), Some(t0 + ms(3000) + us(3_609_375)));
    // Preempt on, but a lower-priority Active is ignored: no reset.
    i.handle_advert(t0 + ms(4000), LOWER, 255, &advert(50, 100));
    assert_eq!(i.poll_timeout(), Some(t0 + ms(3000) + us(3_609_375)));
    assert_eq!(i.stats().accepted, 2);
}

#[test]
fn active_steps_down_on_higher_priority() {
    let t0 = epoch();
    let (mut i, t) = active(config(100), t0);
    let t1 = t + ms(300);
    i.handle_advert(t1, LOWER, 255, &advert(150, 50));
    assert_eq!(
        drain(&mut i),
        [
            changed(State::Active, State::Backup, Reason::PeerWins),
            send(100),
            Action::RemoveVip
        ]
    );
    // Adopted the winner's 50 cs: 3 * 0.5 s + (156 * 50 / 256) cs.
    assert_eq!(i.poll_timeout(), Some(t1 + ms(1500) + us(304_687)));
    assert_eq!(i.status().advert_interval, 50);
}

#[test]
fn active_wins_against_lower_priority_and_reannounces() {
    let t0 = epoch();
    let (mut i, t) = active(config(100), t0);
    let t1 = t + ms(700);
    i.handle_advert(t1, HIGHER, 255, &advert(99, 100));
    assert_eq!(i.state(), State::Active);
    assert_eq!(drain(&mut i), [send(100), Action::Announce]);
    assert_eq!(i.stats().split_brain, 1);
    // Advert timer restarted from t1, announce burst restarted too.
    assert_eq!(i.poll_timeout(), Some(t1 + ms(100)));
    i.handle_timeout(t1 + ms(100));
    assert_eq!(drain(&mut i), [Action::Announce]);
}

#[test]
fn equal_priority_active_tie_break_by_address() {
    let t0 = epoch();
    // Peer has the higher address: step down.
    let (mut i, t) = active(config(100), t0);
    i.handle_advert(t + ms(1), HIGHER, 255, &advert(100, 100));
    assert_eq!(i.state(), State::Backup);
    // Peer has the lower address: stay, re-announce.
    let (mut i, t) = active(config(100), t0);
    i.handle_advert(t + ms(1), LOWER, 255, &advert(100, 100));
    assert_eq!(i.state(), State::Active);
    assert_eq!(drain(&mut i), [send(100), Action::Announce]);
}

#[test]
fn equal_priority_backup_tie_break_by_address() {
    let t0 = epoch();
    // Higher sender address: it keeps the role, we reset.
    let mut i = started(config(100), t0);
    i.handle_advert(t0 + ms(2000), HIGHER, 255, &advert(100, 100));
    assert_eq!(i.poll_timeout(), Some(t0 + ms(2000) + us(3_609_375)));
    // Lower sender address and preempt: ignore it and take over.
    let mut i = started(config(100), t0);
    i.handle_advert(t0 + ms(2000), LOWER, 255, &advert(100, 100));
    assert_eq!(i.poll_timeout(), Some(t0 + us(3_609_375)));
    i.handle_timeout(t0 + us(3_609_375));
    assert_eq!(
        drain(&mut i)[0],
        changed(State::Backup, State::Active, Reason::Preempt)
    );
    // Lower sender address without preempt: reset.
    let mut c = config(100);
    c.preempt = false;
    let mut i = started(c, t0);
    i.handle_advert(t0 + ms(2000), LOWER, 255, &advert(100, 100));
    assert_eq!(i.poll_timeout(), Some(t0 + ms(2000) + us(3_609_375)));
}

#[test]
fn priority_zero_makes_backup_take_over_after_skew_time() {
    let t0 = epoch();
    let mut i = started(config(100), t0);
    i.handle_advert(t0 + ms(1000), HIGHER, 255, &advert(200, 100));
    let t1 = t0 + ms(1500);
    i.handle_advert(t1, HIGHER, 255, &advert(0, 100));
    assert_eq!(
        i.poll_timeout(),
        Some(t1 + us(609_375)),
        "Skew_Time, not Active_Down_Interval"
    );
    i.handle_timeout(t1 + us(609_374));
    assert_eq!(i.state(), State::Backup);
    i.handle_timeout(t1 + us(609_375));
    assert_eq!(
        drain(&mut i)[0],
        changed(State::Backup, State::Active, Reason::ActiveResigned)
    );
}

#[test]
fn active_answers_priority_zero_with_an_advert() {
    let t0 = epoch();
    let (mut i, t) = active(config(100), t0);
    // Let the announce burst finish first.
    let t1 = t + ms(500);
    while let Some(n) = i.poll_timeout().filter(|n| *n <= t1) {
        i.handle_timeout(n);
    }
    assert_eq!(drain(&mut i), vec![Action::Announce; 4]);
    i.handle_advert(t1, HIGHER, 255, &advert(0, 100));
    assert_eq!(drain(&mut i), [send(100)]);
    assert_eq!(i.poll_timeout(), Some(t1 + ms(1000)), "advert timer reset");
}

/// Feeds adverts from `LOWER` of `priority` every second from `start` up to `end`,
/// running timers in between; returns when the instance became Active.
fn feed(i: &mut Instance, start: Instant, end: Instant, priority: u8) -> Option<(Instant, Reason)> {
    let mut next_advert = start;
    loop {
        let timer = i.poll_timeout().unwrap();
        let now = timer.min(next_advert);
        if now > end {
            return None;
        }
        if timer <= next_advert {
            i.handle_timeout(now);
        } else {
            i.handle_advert(now, LOWER, 255, &advert(priority, 100));
            next_advert += ms(1000);
        }
        for a in drain(i) {
            if let Action::StateChanged {
                to: State::Active,
                reason,
                ..
            } = a
            {
                return Some((now, reason));
            }
        }
    }
}

#[test]
fn preempt_off_leaves_lower_priority_active_alone() {
    let t0 = epoch();
    let mut c = config(200);
    c.preempt = false;
    let mut i = started(c, t0);
    assert_eq!(feed(&mut i, t0 + ms(500), t0 + ms(60_000), 100), None);
}

#[test]
fn preempt_on_takes_over_from_lower_priority() {
    let t0 = epoch();
    let mut i = started(config(200), t0);
    // Every advert is ignored, so the startup down timer runs out:
    // 3 s + (56 * 100 / 256) cs = 3.21875 s.
    let got = feed(&mut i, t0 + ms(500), t0 + ms(60_000), 100);
    assert_eq!(got, Some((t0 + us(3_218_750), Reason::Preempt)));
}

#[test]
fn preempt_delay_holds_back_preemption_but_not_silence() {
    let t0 = epoch();
    let mut c = config(200);
    c.preempt_delay = ms(10_000);
    let mut i = started(c.clone(), t0);
    // Adverts at 0.5 s, 1.5 s, ... 9.5 s are accepted (delay running);
    // from 10.5 s on they are ignored: takeover at 9.5 s + 3.21875 s.
    let got = feed(&mut i, t0 + ms(500), t0 + ms(60_000), 100);
    assert_eq!(got, Some((t0 + us(12_718_750), Reason::Preempt)));

    // A silent Active is taken over after the down interval, delay or not.
    let mut i = started(c, t0);
    i.handle_timeout(t0 + us(3_218_750));
    assert_eq!(i.state(), State::Active);
}

#[test]
fn backup_adopts_the_active_advert_interval() {
    let t0 = epoch();
    let mut i = started(config(100), t0);
    assert_eq!(i.status().advert_interval, 100);
    i.handle_advert(t0 + ms(1000), HIGHER, 255, &advert(200, 50));
    assert_eq!(i.status().advert_interval, 50);
    assert_eq!(
        i.poll_timeout(),
        Some(t0 + ms(1000) + ms(1500) + us(304_687))
    );
    i.handle_advert(t0 + ms(1500), HIGHER, 255, &advert(200, 200));
    // 3 * 2 s + (156 * 200 / 256) cs = 6 s + 1.21875 s.
    assert_eq!(i.poll_timeout(), Some(t0 + ms(1500) + us(7_218_750)));
    // A priority-0 advert uses the adopted interval for the skew.
    i.handle_advert(t0 + ms(2000), HIGHER, 255, &advert(0, 200));
    assert_eq!(i.poll_timeout(), Some(t0 + ms(2000) + us(1_218_750)));
}

#[test]
fn tracked_health_penalty_changes_effective_priority_and_advertises() {
    let t0 = epoch();
    let mut c = config(100);
    c.track_penalty = 30;
    let (mut i, t) = active(c, t0);
    i.set_tracked_healthy(t + ms(10), false);
    assert_eq!(i.effective_priority(), 70);
    assert_eq!(drain(&mut i), [send(70)]);
    assert_eq!(i.poll_timeout(), Some(t + ms(100)), "next announce repeat");
    i.set_tracked_healthy(t + ms(20), false);
    assert!(drain(&mut i).is_empty(), "no change, no advert");
    i.set_tracked_healthy(t + ms(30), true);
    assert_eq!(drain(&mut i), [send(100)]);
    let s = i.status();
    assert_eq!(
        (s.priority, s.effective_priority, s.tracked_healthy),
        (100, 100, true)
    );

    // The penalty never reaches 0 (that would mean "resigning").
    let mut c = config(20);
    c.track_penalty = 50;
    let mut i = Instance::new(c).unwrap();
    i.set_tracked_healthy(t0, false);
    assert_eq!(i.effective_priority(), 1);
    assert!(drain(&mut i).is_empty(), "not running: nothing to send");
}

#[test]
fn unhealthy_owner_is_not_owner() {
    let t0 = epoch();
    let mut i = Instance::new(config(255)).unwrap();
    i.set_tracked_healthy(t0, false);
    i.startup(t0);
    assert_eq!(i.state(), State::Backup);
}

#[test]
fn shutdown_from_active_resigns_then_removes_vip() {
    let t0 = epoch();
    let (mut i, t) = active(config(100), t0);
    i.shutdown(t + ms(10));
    assert_eq!(
        drain(&mut i),
        [
            changed(State::Active, State::Initialize, Reason::Shutdown),
            send(0),
            Action::RemoveVip
        ]
    );
    assert_eq!(i.poll_timeout(), None);
    i.handle_advert(t + ms(20), HIGHER, 255, &advert(100, 100));
    assert_eq!(i.stats().not_running, 1);

    let mut i = started(config(100), t0);
    i.shutdown(t0 + ms(10));
    assert_eq!(
        drain(&mut i),
        [changed(State::Backup, State::Initialize, Reason::Shutdown)]
    );
    assert_eq!(i.poll_timeout(), None);
}

#[test]
fn interface_down_resigns_and_up_restarts_as_backup() {
    let t0 = epoch();
    let (mut i, t) = active(config(100), t0);
    i.set_interface_up(t + ms(10), false);
    assert_eq!(
        drain(&mut i),
        [
            changed(State::Active, State::Initialize, Reason::InterfaceDown),
            send(0),
            Action::RemoveVip
        ]
    );
    assert_eq!(i.poll_timeout(), None);
    assert!(!i.status().interface_up);
    let t1 = t + ms(5000);
    i.set_interface_up(t1, true);
    assert_eq!(
        drain(&mut i),
        [changed(
            State::Initialize,
            State::Backup,
            Reason::InterfaceUp
        )]
    );
    assert_eq!(i.poll_timeout(), Some(t1 + us(3_609_375)));

    // Startup while the interface is down waits for it.
    let mut i = Instance::new(config(100)).unwrap();
    i.set_interface_up(t0, false);
    i.startup(t0);
    assert_eq!(i.state(), State::Initialize);
    i.set_interface_up(t0 + ms(1), true);
    assert_eq!(i.state(), State::Backup);

    // After shutdown, interface up does not start it again.
    i.shutdown(t0 + ms(2));
    i.set_interface_up(t0 + ms(3), false);
    i.set_interface_up(t0 + ms(4), true);
    assert_eq!(i.state(), State::Initialize);
}

#[test]
fn invalid_adverts_are_dropped_and_counted() {
    let t0 = epoch();
    let mut i = started(config(100), t0);
    let deadline = i.poll_timeout();
    let t = t0 + ms(1000);
    let good = advert(200, 100);
    i.handle_advert(t, HIGHER, 64, &good);
    i.handle_advert(
        t,
        HIGHER,
        255,
        &Advert {
            vrid: 2,
            ..good.clone()
        },
    );
    i.handle_advert(
        t,
        HIGHER,
        255,
        &Advert {
            max_advert_interval: 0,
            ..good.clone()
        },
    );
    i.handle_advert(t, ME, 255, &good);
    i.handle_advert(t, "fe80::1".parse().unwrap(), 255, &good);

    let dst = IpAddr::V4(packet::MULTICAST_V4);
    let mut bytes = packet::encode(&good, HIGHER, dst, ChecksumMode::PseudoHeader).unwrap();
    bytes[7] ^= 1;
    i.handle_datagram(t, HIGHER, dst, 255, &bytes);
    // keepalived with v3_checksum_as_v2 while we expect the pseudo-header.
    let v2sum = packet::encode(&good, HIGHER, dst, ChecksumMode::NoPseudoHeader).unwrap();
    i.handle_datagram(t, HIGHER, dst, 255, &v2sum);
    i.handle_datagram(
        t,
        HIGHER,
        dst,
        255,
        &[0x21, 1, 200, 1, 1, 100, 0, 0, 192, 0, 2, 100],
    );
    i.handle_datagram(
        t,
        HIGHER,
        dst,
        255,
        &[0x32, 1, 200, 1, 0, 100, 0, 0, 192, 0, 2, 100],
    );
    i.handle_datagram(t, HIGHER, dst, 255, &bytes[..5]);
    i.handle_datagram(t, HIGHER, dst, 255, &bytes[..10]);

    assert_eq!(i.poll_timeout(), deadline, "nothing reset the down timer");
    let s = i.stats();
    assert_eq!(s.received, 11);
    assert_eq!(s.accepted, 0);
    assert_eq!(
        (
            s.bad_ttl,
            s.wrong_vrid,
            s.bad_interval,
            s.own_advert,
            s.wrong_family
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(
        (
            s.bad_checksum,
            s.bad_version,
            s.bad_type,
            s.too_short,
            s.bad_length
        ),
        (2, 1, 1, 1, 1)
    );
    assert_eq!(i.status().last_peer, None);
}

#[test]
fn datagram_round_trip_through_encode_advert() {
    let t0 = epoch();
    let (mut active, _) = active(config(100), t0);
    active.set_tracked_healthy(t0 + ms(1), false);
    let Some(Action::SendAdvert(ad)) = active.poll_action() else {
        panic!("no advert")
    };
    let dst = IpAddr::V4(packet::MULTICAST_V4);
    let bytes = active.encode_advert(&ad, dst).unwrap();

    let mut c = config(60);
    c.primary_address = HIGHER;
    let mut backup = started(c, t0);
    let t = t0 + ms(2);
    backup.handle_datagram(t, ME, dst, 255, &bytes);
    assert_eq!(backup.stats().accepted, 1);
    let peer = backup.status().last_peer.unwrap();
    assert_eq!(
        peer,
        PeerInfo {
            address: ME,
            priority: 50,
            advert_interval: 100,
            at: t
        }
    );
}

#[test]
fn address_mismatch_is_counted_but_honoured() {
    let t0 = epoch();
    let (mut i, t) = active(config(100), t0);
    let other = Advert {
        addresses: vec![LOWER],
        ..advert(200, 100)
    };
    i.handle_advert(t + ms(1), HIGHER, 255, &other);
    assert_eq!(i.stats().address_mismatch, 1);
    assert_eq!(i.state(), State::Backup);
}

#[test]
fn config_validation() {
    let ok = config(100);
    assert_eq!(ok.validate(), Ok(()));
    let bad = |f: fn(&mut Config)| {
        let mut c = config(100);
        f(&mut c);
        Instance::new(c).unwrap_err()
    };
    assert_eq!(bad(|c| c.vrid = 0), ConfigError::VridZero);
    assert_eq!(bad(|c| c.priority = 0), ConfigError::PriorityZero);
    assert_eq!(
        bad(|c| c.advert_interval = 0),
        ConfigError::AdvertIntervalOutOfRange(0)
    );
    assert_eq!(
        bad(|c| c.advert_interval = 4096),
        ConfigError::AdvertIntervalOutOfRange(4096)
    );
    assert_eq!(bad(|c| c.vips.clear()), ConfigError::NoVips);
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(
        bad(|c| c.vips.push("2001:db8::1".parse().unwrap())),
        ConfigError::FamilyMismatch(v6)
    );
    assert_eq!(
        bad(|c| c.vips = (0..256u32).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect()),
        ConfigError::TooManyVips(256)
    );
    assert_eq!(
        ConfigError::AdvertIntervalOutOfRange(0).to_string(),
        "advert interval 0 cs is outside 1..=4095"
    );
}

#[test]
fn ipv6_instance_works_end_to_end() {
    let t0 = epoch();
    let me: IpAddr = "fe80::10".parse().unwrap();
    let peer: IpAddr = "fe80::20".parse().unwrap();
    let vip: IpAddr = "2001:db8::100".parse().unwrap();
    let mut i = started(Config::new(9, me, vec![vip]), t0);
    let ad = Advert {
        vrid: 9,
        priority: 150,
        max_advert_interval: 100,
        addresses: vec![vip],
    };
    let dst = Family::V6.multicast_group();
    let bytes = packet::encode(&ad, peer, dst, ChecksumMode::NoPseudoHeader).unwrap();
    i.handle_datagram(t0 + ms(1), peer, dst, 255, &bytes);
    assert_eq!(i.stats().accepted, 1);
    assert_eq!(i.poll_timeout(), Some(t0 + ms(1) + us(3_609_375)));
}
