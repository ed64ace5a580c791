//! Two hosts of a pair: what one learns, the other can route.

mod common;

use std::time::Duration;

use common::*;
use trunkvip_proxy::pair::{PairSession, Received, SyncRecord};
use trunkvip_sip::Method;

fn host(instance: u32, secret: &[u8]) -> Sim {
    let mut cfg = config(&[1, 2]);
    cfg.instance = instance;
    cfg.pair_secret = Some(secret.to_vec());
    Sim::with(cfg)
}

/// Moves every pending record from `a` to `b` through the real codec.
fn sync(a: &mut Sim, b: &mut Sim, sa: &mut PairSession, sb: &mut PairSession) -> usize {
    let mut n = 0;
    while let Some(r) = a.core.poll_sync() {
        let frame = sa.encode(&r).expect("session ready");
        match sb.decode(&frame).unwrap() {
            Received::Record(r) => b.core.apply_sync(b.now, &r),
            Received::Hello => unreachable!(),
        }
        n += 1;
    }
    n
}

fn sessions() -> (PairSession, PairSession) {
    let mut sa = PairSession::new(b"pair secret", 1);
    let mut sb = PairSession::new(b"pair secret", 2);
    sb.decode(&sa.hello()).unwrap();
    sa.decode(&sb.hello()).unwrap();
    (sa, sb)
}

#[test]
fn after_takeover_the_peer_routes_a_bye_without_route_to_the_same_edge() {
    let mut a = host(0xa, b"pair secret");
    let mut b = host(0xb, b"pair secret");
    let (mut sa, mut sb) = sessions();
    // On host A the priority-1 Edge is down: the call lands on EDGE-2.
    a.core.set_edge_health(0, false);
    a.carrier_sends(invite("handover", "z9hG4bK-h1"));
    let inv = a.take().pop().unwrap();
    assert_eq!(inv.0, edge_addr(1));
    a.edge_sends(1, reply(&inv.1, 200, "e2"));
    a.take();
    assert!(
        sync(&mut a, &mut b, &mut sa, &mut sb) >= 2,
        "bound, then confirmed"
    );
    // Host A dies; host B holds the VIP. Its own view has EDGE-1 healthy,
    // yet the dialog stays on EDGE-2.
    assert_eq!(b.core.status()[1].active_dialogs, 1);
    b.carrier_sends(request(
        "BYE",
        "sip:+15551234@198.51.100.10",
        "handover",
        "z9hG4bK-hb",
        2,
        Some("e2"),
        "",
    ));
    let bye = b.one_to(edge_addr(1));
    assert_eq!(bye.method(), Some(Method::Bye));
}

#[test]
fn a_snapshot_brings_a_reconnected_peer_up_to_date() {
    let mut a = host(0xa, b"pair secret");
    let mut b = host(0xb, b"pair secret");
    a.core.set_edge_health(0, false);
    for n in 0..10 {
        a.carrier_sends(invite(&format!("snap-{n}"), &format!("z9hG4bK-s{n}")));
    }
    a.take();
    // The incremental records are lost (no connection); a snapshot follows.
    while a.core.poll_sync().is_some() {}
    let snap = a.core.sync_snapshot(a.now);
    assert_eq!(
        snap.iter()
            .filter(|r| matches!(r, SyncRecord::Dialog { .. }))
            .count(),
        10
    );
    for r in &snap {
        b.core.apply_sync(b.now, r);
    }
    assert_eq!(b.core.status()[1].active_dialogs, 10);
    b.advance(Duration::from_secs(1));
}

#[test]
fn hosts_with_different_secrets_do_not_share_dialog_keys() {
    let mut a = host(0xa, b"one secret");
    let mut b = host(0xb, b"another secret");
    a.core.set_edge_health(0, false);
    a.carrier_sends(invite("k", "z9hG4bK-k"));
    a.take();
    let r = a.core.poll_sync().unwrap();
    b.core.apply_sync(b.now, &r);
    // B cannot find the dialog by its Call-ID: a BYE without Route is refused.
    b.carrier_sends(request(
        "BYE",
        "sip:x@198.51.100.10",
        "k",
        "z9hG4bK-kb",
        2,
        Some("t"),
        "",
    ));
    assert_eq!(b.one_to(addr(CARRIER)).status(), Some(481));
}

#[test]
fn health_views_are_exchanged() {
    let mut cfg = config(&[1, 2]);
    cfg.health_probing = true;
    cfg.health.interval = Duration::from_millis(200);
    cfg.health.timeout = Duration::from_millis(100);
    cfg.pair_secret = Some(b"s".to_vec());
    let mut a = Sim::with(cfg.clone());
    let mut b = Sim::with(cfg);
    a.advance(Duration::from_secs(2));
    let recs: Vec<_> = std::iter::from_fn(|| a.core.poll_sync()).collect();
    assert!(recs.contains(&SyncRecord::Health {
        edge: 0,
        healthy: false
    }));
    for r in &recs {
        b.core.apply_sync(b.now, r);
    }
    assert_eq!(b.core.status()[0].peer_healthy, Some(false));
}

#[test]
fn a_retransmitted_bye_through_the_peer_reuses_the_branch_the_edge_knows() {
    let mut a = host(0xa, b"pair secret");
    let mut b = host(0xb, b"pair secret");
    let (mut sa, mut sb) = sessions();
    a.carrier_sends(invite("bye-rt", "z9hG4bK-brt"));
    let inv = a.take().pop().unwrap().1;
    a.edge_sends(0, reply(&inv, 200, "e"));
    a.take();
    sync(&mut a, &mut b, &mut sa, &mut sb);
    // The carrier's BYE goes through A, which forwards it and then dies
    // before the Edge's 200 comes back.
    let route = "Route: <sip:198.51.100.10:5060;transport=udp;lr;tve=EDGE-1>\r\n";
    let bye = request(
        "BYE",
        "sip:edge@198.51.100.21:5060",
        "bye-rt",
        "z9hG4bK-brt-bye",
        2,
        Some("e"),
        route,
    );
    a.carrier_sends(&bye);
    let via_a = branch_of(&a.one_to(edge_addr(0)));
    // The carrier retransmits it; B holds the VIP now.
    b.carrier_sends(&bye);
    let fwd = b.one_to(edge_addr(0));
    assert_eq!(
        branch_of(&fwd),
        via_a,
        "the Edge sees a retransmission, not a new transaction"
    );
    // The Edge's 200 (to A's transaction, which is B's too) reaches the carrier.
    b.edge_sends(0, reply(&fwd, 200, "e"));
    let ok = b.one_to(addr(CARRIER));
    assert_eq!(
        (ok.status(), ok.cseq().unwrap().method),
        (Some(200), Method::Bye)
    );
}

#[test]
fn answers_to_the_dead_hosts_transactions_are_forwarded_by_their_via() {
    let mut a = host(0xa, b"pair secret");
    let mut b = host(0xb, b"pair secret");
    a.carrier_sends(invite("inflight", "z9hG4bK-if"));
    let inv = a.take().pop().unwrap().1;
    // A dies; the Edge's 180 and 200 arrive at B, which has no such transaction.
    b.edge_sends(0, reply(&inv, 180, "e"));
    assert_eq!(b.one_to(addr(CARRIER)).status(), Some(180));
    b.edge_sends(0, reply(&inv, 200, "e"));
    assert_eq!(b.one_to(addr(CARRIER)).status(), Some(200));
}

/// Host A takes an INVITE and forwards it, then dies before the Edge
/// answers (or before the INVITE reached the Edge). A has sent no 100, so
/// the carrier retransmits the INVITE at T1; B, now holding the VIP,
/// forwards it on the branch A gave it and the call completes through B.
/// Had A sent its 100 at once, the carrier would have stopped
/// retransmitting and the call would have hung until the carrier gave up.
#[test]
fn an_invite_whose_host_died_before_the_edge_answered_completes_through_the_peer() {
    let mut a = host(0xa, b"pair secret");
    let mut b = host(0xb, b"pair secret");
    let (mut sa, mut sb) = sessions();
    let invite = invite("died", "z9hG4bK-died");
    a.carrier_sends(&invite);
    let via_a = branch_of(&a.one_to(edge_addr(0)));
    sync(&mut a, &mut b, &mut sa, &mut sb);
    // A dies here: the carrier got nothing and retransmits to the VIP.
    b.carrier_sends(&invite);
    let fwd = b.one_to(edge_addr(0));
    assert_eq!(branch_of(&fwd), via_a, "the Edge sees one transaction");
    b.edge_sends(0, reply(&fwd, 180, "e"));
    assert_eq!(b.one_to(addr(CARRIER)).status(), Some(180));
    b.edge_sends(0, reply(&fwd, 200, "e"));
    assert_eq!(b.one_to(addr(CARRIER)).status(), Some(200));
}

/// After a takeover the carrier's retransmission of an INVITE that host A
/// forwarded reaches B. B goes to the Edge A chose, with A's branch, even
/// if B believes that Edge down: it may be ringing this very call, and
/// another Edge would ring it a second time. Only silence moves it on.
#[test]
fn a_retransmitted_invite_at_the_peer_keeps_its_edge_even_one_believed_down() {
    let mut a = host(0xa, b"pair secret");
    let mut b = host(0xb, b"pair secret");
    let (mut sa, mut sb) = sessions();
    let first = invite("fork", "z9hG4bK-fork");
    a.carrier_sends(&first);
    let via_a = branch_of(&a.one_to(edge_addr(0)));
    sync(&mut a, &mut b, &mut sa, &mut sb);
    b.core.set_edge_health(0, false);
    b.carrier_sends(&first);
    let fwd = b.one_to(edge_addr(0));
    assert_eq!(branch_of(&fwd), via_a, "a retransmission to the Edge");
    b.edge_sends(0, reply(&fwd, 200, "e"));
    assert_eq!(b.one_to(addr(CARRIER)).status(), Some(200));

    // Edge 1 really is gone: after failover_after of silence, Edge 2.
    let second = invite("gone", "z9hG4bK-gone");
    a.carrier_sends(&second);
    a.one_to(edge_addr(0));
    sync(&mut a, &mut b, &mut sa, &mut sb);
    b.carrier_sends(&second);
    b.one_to(edge_addr(0));
    b.advance(Duration::from_millis(251));
    let out = b.take();
    assert!(
        out.iter()
            .any(|(to, m)| *to == edge_addr(1) && m.method() == Some(Method::Invite)),
        "{out:?}"
    );
}

/// Host A gave the VIP up (a graceful stop) with an INVITE in flight: the
/// Edge's answers to it now reach B. A's silence is no Edge failure, so A
/// neither fails over to Edge 2 nor tells B anything about the call:
/// before, A moved the dialog to Edge 2 and synced that, and B sent the
/// carrier's retransmission there, ringing the call on both Edges.
#[test]
fn a_host_that_lost_the_vip_neither_fails_over_nor_syncs() {
    let mut a = host(0xa, b"pair secret");
    let mut b = host(0xb, b"pair secret");
    let (mut sa, mut sb) = sessions();
    let inv = invite("stranded", "z9hG4bK-stranded");
    a.carrier_sends(&inv);
    let via_a = branch_of(&a.one_to(edge_addr(0)));
    assert!(
        sync(&mut a, &mut b, &mut sa, &mut sb) >= 1,
        "bound to Edge 1"
    );
    a.core.set_serving(false);
    a.advance(Duration::from_millis(300));
    let out = a.take();
    assert!(
        out.iter().all(|(to, _)| *to != edge_addr(1)),
        "A failed over: {out:?}"
    );
    assert!(
        !a.events
            .iter()
            .any(|e| matches!(e, trunkvip_proxy::Event::EdgeFailure { .. })),
        "{:?}",
        a.events
    );
    a.advance(Duration::from_secs(40));
    a.take();
    assert_eq!(
        sync(&mut a, &mut b, &mut sa, &mut sb),
        0,
        "nothing for B from a host without the VIP"
    );
    // The carrier's retransmission through B reaches Edge 1, on A's branch.
    b.carrier_sends(&inv);
    let fwd = b.one_to(edge_addr(0));
    assert_eq!(branch_of(&fwd), via_a);
    // Serving again (the VIP came back): failover as usual.
    a.core.set_serving(true);
    a.carrier_sends(invite("back", "z9hG4bK-back"));
    a.one_to(edge_addr(0));
    a.advance(Duration::from_millis(251));
    assert!(a
        .take()
        .iter()
        .any(|(to, m)| *to == edge_addr(1) && m.method() == Some(Method::Invite)));
}

/// After a takeover the Edge's 200 to host A's INVITE reaches B, which
/// relays it by its Via; the carrier's retransmission of that INVITE,
/// crossing the 200, is absorbed rather than sent to the Edge again.
#[test]
fn an_invite_retransmission_crossing_the_relayed_200_is_absorbed() {
    let mut a = host(0xa, b"pair secret");
    let mut b = host(0xb, b"pair secret");
    let (mut sa, mut sb) = sessions();
    let inv = invite("crossed", "z9hG4bK-crossed");
    a.carrier_sends(&inv);
    let fwd = a.one_to(edge_addr(0));
    sync(&mut a, &mut b, &mut sa, &mut sb);
    b.edge_sends(0, reply(&fwd, 200, "e"));
    assert_eq!(b.one_to(addr(CARRIER)).status(), Some(200));
    b.carrier_sends(&inv);
    b.nothing_sent();
    b.advance(Duration::from_millis(300));
    b.nothing_sent();
    assert_eq!(b.core.metrics().retransmissions_absorbed, 1);
}
