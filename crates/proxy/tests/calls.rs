//! Call flows through the core: carrier -> proxy -> Edges, and back.

mod common;

use std::time::Duration;

use common::*;
use trunkvip_sip::{HeaderName, Message, Method};

const MS: Duration = Duration::from_millis(1);

/// INVITE from the carrier; returns the INVITE as the Edge got it. No 100
/// yet: it waits for the Edge's first answer.
fn place(sim: &mut Sim, call: &str, edge: usize) -> Message {
    sim.carrier_sends(invite(call, &format!("z9hG4bK-{call}-1")));
    sim.one_to(edge_addr(edge))
}

#[test]
fn a_complete_call_with_record_route() {
    let mut sim = Sim::new(&[1, 2]);
    let inv = place(&mut sim, "call-1", 0);
    // Our Via on top, theirs below with rport filled; RR with the Edge name.
    let vias: Vec<_> = inv.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].sent_by, b"198.51.100.10:5060");
    assert!(vias[0].has_rfc3261_branch());
    assert_eq!(vias[1].rport(), Some(Some(5060)));
    assert_eq!(inv.max_forwards().unwrap(), Some(69));
    let rr = inv.record_routes().next().unwrap().unwrap();
    assert_eq!(
        rr.uri,
        b"sip:198.51.100.10:5060;transport=udp;lr;tve=EDGE-1"
    );
    assert_eq!(
        inv.request_uri_bytes().unwrap(),
        b"sip:+15551234@198.51.100.10"
    );
    assert_eq!(
        inv.body(),
        invite("x", "y")
            .split("\r\n\r\n")
            .nth(1)
            .unwrap()
            .as_bytes()
    );

    // No 100 until the Edge has the INVITE: its 100 releases ours (RFC
    // 3261 16.7 step 5: 100s are not forwarded, ours is our own).
    sim.nothing_sent();
    sim.edge_sends(0, reply(&inv, 100, "e1"));
    let trying = sim.one_to(addr(CARRIER));
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.to().unwrap().tag(), None, "a 100 has no To tag");
    sim.edge_sends(0, reply(&inv, 100, "e1"));
    sim.nothing_sent();
    sim.edge_sends(0, reply(&inv, 180, "e1"));
    let ringing = sim.one_to(addr(CARRIER));
    assert_eq!(ringing.status(), Some(180));
    assert_eq!(ringing.vias().count(), 1, "our Via popped");
    sim.edge_sends(0, reply(&inv, 200, "e1"));
    let ok = sim.one_to(addr(CARRIER));
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.record_routes().count(), 1);
    assert_eq!(sim.core.status()[0].active_dialogs, 1);

    // ACK and BYE from the carrier carry our Record-Route as Route.
    let route = "Route: <sip:198.51.100.10:5060;transport=udp;lr;tve=EDGE-1>\r\n";
    sim.carrier_sends(request(
        "ACK",
        "sip:edge@198.51.100.21:5060",
        "call-1",
        "z9hG4bK-ack1",
        1,
        Some("e1"),
        route,
    ));
    let ack = sim.one_to(edge_addr(0));
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.routes().count(), 0, "our Route removed");
    assert_eq!(ack.vias().count(), 2);
    sim.carrier_sends(request(
        "BYE",
        "sip:edge@198.51.100.21:5060",
        "call-1",
        "z9hG4bK-bye1",
        2,
        Some("e1"),
        route,
    ));
    let bye = sim.one_to(edge_addr(0));
    assert_eq!(bye.method(), Some(Method::Bye));
    sim.edge_sends(0, reply(&bye, 200, "e1"));
    let ok = sim.one_to(addr(CARRIER));
    assert_eq!(
        (ok.status(), ok.cseq().unwrap().method),
        (Some(200), Method::Bye)
    );
    assert_eq!(sim.core.status()[0].active_dialogs, 0);
    // Everything ends.
    sim.advance(Duration::from_secs(40));
    sim.take();
    assert_eq!(sim.core.transactions_alive(), 0);
    assert_eq!(
        sim.core.dialogs(),
        0,
        "the dialog is forgotten after the grace time"
    );
}

#[test]
fn bye_without_route_follows_call_id_affinity_both_ways() {
    let mut sim = Sim::new(&[1, 1]);
    sim.carrier_sends(invite("aff-1", "z9hG4bK-aff-1"));
    let edge = sim.take()[0].0;
    let edge = (0..2).find(|n| edge_addr(*n) == edge).unwrap();
    // Whatever Edge it went to, a BYE straight to the Request-URI finds it.
    sim.carrier_sends(request(
        "BYE",
        "sip:+15551234@198.51.100.10",
        "aff-1",
        "z9hG4bK-b",
        2,
        Some("e"),
        "",
    ));
    let all = sim.take();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, edge_addr(edge));
    // And from the Edge to the carrier.
    let mut sim = Sim::new(&[1, 2]);
    place(&mut sim, "aff-2", 0);
    sim.edge_sends(
        0,
        request(
            "BYE",
            "sip:carrier@198.51.100.2:5060",
            "aff-2",
            "z9hG4bK-eb",
            1,
            Some("x"),
            "",
        ),
    );
    let bye = sim.one_to(addr(CARRIER));
    assert_eq!(bye.method(), Some(Method::Bye));
}

#[test]
fn silent_edge_fails_over_in_failover_after_and_ghosts_are_cleaned() {
    let mut sim = Sim::new(&[1, 2]);
    let inv1 = place(&mut sim, "fo-1", 0);
    sim.advance(199 * MS);
    sim.nothing_sent();
    sim.advance(MS);
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(100));
    sim.advance(49 * MS);
    sim.nothing_sent();
    sim.advance(2 * MS);
    let inv2 = sim.one_to(edge_addr(1));
    assert_eq!(inv2.method(), Some(Method::Invite));
    assert_ne!(branch_of(&inv1), branch_of(&inv2), "a new branch");
    assert!(matches!(
        sim.events[0],
        trunkvip_proxy::Event::EdgeFailure { edge: 0 }
    ));
    assert_eq!(sim.core.metrics().failovers, 1);
    // The second Edge answers; the carrier sees one call.
    sim.edge_sends(1, reply(&inv2, 180, "e2"));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(180));
    sim.edge_sends(1, reply(&inv2, 200, "e2"));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(200));
    // The first Edge wakes up late: its 180 is CANCELled...
    sim.edge_sends(0, reply(&inv1, 180, "e1"));
    let cancel = sim.one_to(edge_addr(0));
    assert_eq!(cancel.method(), Some(Method::Cancel));
    assert_eq!(branch_of(&cancel), branch_of(&inv1));
    // ...and its 200 is ACKed and hung up.
    sim.edge_sends(0, reply(&inv1, 200, "e1"));
    let out = sim.sent_to(edge_addr(0));
    let methods: Vec<_> = out.iter().map(|m| m.method()).collect();
    assert_eq!(methods, vec![Some(Method::Ack), Some(Method::Bye)]);
    assert_eq!(
        out[1].request_uri_bytes().unwrap(),
        b"sip:edge@198.51.100.21:5060"
    );
    assert_eq!(out[1].to().unwrap().tag(), Some(&b"e1"[..]));
    assert_eq!(out[1].cseq().unwrap().seq, 2);
    assert_eq!(sim.core.metrics().ghost_byes, 1);
    // The dialog stays on the Edge that answered.
    assert_eq!(sim.core.status()[1].active_dialogs, 1);
    assert_eq!(sim.core.status()[0].active_dialogs, 0);
}

#[test]
fn edge_503_fails_over_and_gets_its_ack() {
    let mut sim = Sim::new(&[1, 2]);
    let inv1 = place(&mut sim, "503-1", 0);
    sim.edge_sends(0, reply(&inv1, 503, "e1"));
    let out = sim.take();
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].0, out[0].1.method()),
        (edge_addr(0), Some(Method::Ack))
    );
    assert_eq!(
        branch_of(&out[0].1),
        branch_of(&inv1),
        "hop-by-hop ACK on the INVITE's branch"
    );
    assert_eq!(
        (out[1].0, out[1].1.method()),
        (edge_addr(1), Some(Method::Invite))
    );
}

#[test]
fn no_candidate_left_gives_503_with_retry_after() {
    let mut sim = Sim::new(&[1, 2]);
    let inv1 = place(&mut sim, "all-503", 0);
    sim.edge_sends(0, reply(&inv1, 503, "e1"));
    let inv2 = sim.take().pop().unwrap().1;
    sim.edge_sends(1, reply(&inv2, 503, "e2"));
    let out = sim.take();
    let to_carrier: Vec<_> = out.iter().filter(|x| x.0 == addr(CARRIER)).collect();
    assert_eq!(to_carrier.len(), 1);
    assert_eq!(to_carrier[0].1.status(), Some(503));
    assert_eq!(
        header(&to_carrier[0].1, "Retry-After").as_deref(),
        Some("5")
    );
    // The carrier's ACK is absorbed.
    sim.carrier_sends(request(
        "ACK",
        "sip:+15551234@198.51.100.10",
        "all-503",
        "z9hG4bK-all-503-1",
        1,
        Some("tv51"),
        "",
    ));
    sim.nothing_sent();
}

#[test]
fn no_healthy_edge_gives_503_at_once_and_health_follows_the_thresholds() {
    let mut cfg = config(&[1, 2]);
    cfg.health_probing = true;
    cfg.health.interval = Duration::from_secs(1);
    cfg.health.timeout = Duration::from_millis(500);
    let mut sim = Sim::with(cfg);
    // Probes leave for both Edges; nobody answers.
    sim.advance(Duration::from_millis(200));
    let probes = sim.take();
    assert_eq!(probes.len(), 2);
    assert!(probes.iter().all(|p| p.1.method() == Some(Method::Options)));
    assert!(
        probes
            .iter()
            .all(|p| p.1.top_via().unwrap().sent_by.starts_with(b"198.51.100.11")),
        "probes leave from the host address"
    );
    sim.advance(Duration::from_millis(2200));
    assert!(sim.edge_healthy(0), "two failures of three");
    sim.advance(Duration::from_secs(1));
    assert!(!sim.edge_healthy(0) && !sim.edge_healthy(1));
    sim.take();
    sim.carrier_sends(invite("none", "z9hG4bK-none"));
    let r = sim.one_to(addr(CARRIER));
    assert_eq!(r.status(), Some(503));
    assert!(r.header(HeaderName::RetryAfter).is_some());
    // The carrier's OPTIONS ping to the VIP now gets 503 too.
    sim.carrier_sends(request(
        "OPTIONS",
        "sip:198.51.100.10",
        "ping-1",
        "z9hG4bK-ping1",
        1,
        None,
        "",
    ));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(503));
    // Edge 2 answers five probes in a row: Healthy again.
    for n in 0..5 {
        sim.advance(Duration::from_secs(1));
        let probes = sim.take();
        let p = probes
            .iter()
            .find(|p| p.0 == edge_addr(1))
            .unwrap_or_else(|| panic!("probe {n}"));
        let reply = reply(&p.1, 200, "x");
        sim.edge_sends(1, reply);
        assert_eq!(sim.edge_healthy(1), n == 4, "after {} successes", n + 1);
    }
    sim.carrier_sends(request(
        "OPTIONS",
        "sip:198.51.100.10",
        "ping-2",
        "z9hG4bK-ping2",
        1,
        None,
        "",
    ));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(200));
    sim.carrier_sends(invite("back", "z9hG4bK-back"));
    let out = sim.take();
    assert_eq!(
        out[0].0,
        edge_addr(1),
        "new calls go to the Edge that came back"
    );
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut sim = Sim::new(&[1]);
    let inv = place(&mut sim, "c1", 0);
    sim.edge_sends(0, reply(&inv, 100, "e"));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(100));
    sim.carrier_sends(request(
        "CANCEL",
        "sip:+15551234@198.51.100.10",
        "c1",
        "z9hG4bK-c1-1",
        1,
        None,
        "",
    ));
    let ok = sim.one_to(addr(CARRIER));
    assert_eq!(
        (ok.status(), ok.cseq().unwrap().method),
        (Some(200), Method::Cancel)
    );
    sim.advance(Duration::from_millis(300));
    sim.nothing_sent();
    sim.edge_sends(0, reply(&inv, 180, "e"));
    let out = sim.take();
    let cancel = out
        .iter()
        .find(|x| x.0 == edge_addr(0))
        .expect("CANCEL once a provisional came");
    assert_eq!(cancel.1.method(), Some(Method::Cancel));
    assert_eq!(branch_of(&cancel.1), branch_of(&inv));
    let mut cancel_ok = reply(&cancel.1, 200, "e").to_vec();
    let _ = &mut cancel_ok;
    sim.edge_sends(0, cancel_ok);
    sim.edge_sends(0, reply(&inv, 487, "e"));
    let out = sim.take();
    let to_edge: Vec<_> = out.iter().filter(|x| x.0 == edge_addr(0)).collect();
    assert_eq!(to_edge.len(), 1);
    assert_eq!(to_edge[0].1.method(), Some(Method::Ack));
    let up: Vec<_> = out.iter().filter(|x| x.0 == addr(CARRIER)).collect();
    assert_eq!(up[0].1.status(), Some(487));
    // CANCEL stopped failover: no INVITE went anywhere else.
    assert_eq!(sim.core.metrics().failovers, 0);
}

#[test]
fn cancel_of_a_ringing_call_goes_at_once() {
    let mut sim = Sim::new(&[1, 2]);
    let inv = place(&mut sim, "c2", 0);
    sim.edge_sends(0, reply(&inv, 180, "e"));
    sim.take();
    sim.carrier_sends(request(
        "CANCEL",
        "sip:+15551234@198.51.100.10",
        "c2",
        "z9hG4bK-c2-1",
        1,
        None,
        "",
    ));
    let out = sim.take();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1.status(), Some(200));
    assert_eq!(out[1].1.method(), Some(Method::Cancel));
    // Unanswered, the CANCEL is retransmitted on UDP.
    sim.advance(Duration::from_millis(600));
    assert_eq!(sim.one_to(edge_addr(0)).method(), Some(Method::Cancel));
}

/// Our 100 is owed until the Edge answers: an Edge that rings at once
/// spares it (the 180 stops the carrier's retransmissions as well), one
/// that is silent gets it sent after 200 ms (RFC 3261 17.2.1), well before
/// the carrier's first retransmission at T1.
#[test]
fn the_100_waits_for_the_edges_first_answer_or_200_ms() {
    let mut sim = Sim::new(&[1, 2]);
    let inv = place(&mut sim, "ring", 0);
    sim.edge_sends(0, reply(&inv, 180, "e"));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(180));
    sim.advance(Duration::from_millis(300));
    sim.nothing_sent();

    let quiet = place(&mut sim, "quiet", 0);
    sim.advance(199 * MS);
    sim.nothing_sent();
    sim.advance(MS);
    let trying = sim.one_to(addr(CARRIER));
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.call_id().unwrap(), b"quiet");
    // Owed once: the Edge's own 100 later sends nothing more.
    sim.edge_sends(0, reply(&quiet, 100, "e"));
    sim.nothing_sent();

    // A 503 from the first Edge moves the debt to the next branch.
    let busy = place(&mut sim, "busy", 0);
    sim.edge_sends(0, reply(&busy, 503, "e"));
    let out = sim.take();
    assert!(out.iter().all(|x| x.1.status() != Some(100)), "{out:?}");
    sim.advance(200 * MS);
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(100));
}

#[test]
fn retransmissions_are_absorbed_or_answered_from_state() {
    let mut sim = Sim::new(&[1]);
    let inv = place(&mut sim, "rt", 0);
    // The carrier re-sends its INVITE: 100 again, nothing to the Edge.
    sim.carrier_sends(invite("rt", "z9hG4bK-rt-1"));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(100));
    assert_eq!(sim.core.metrics().retransmissions_absorbed, 1);
    // The Edge's 200 retransmissions are forwarded (RFC 6026).
    sim.edge_sends(0, reply(&inv, 200, "e"));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(200));
    sim.edge_sends(0, reply(&inv, 200, "e"));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(200));
}

#[test]
fn silent_single_edge_gets_timer_a_retransmissions_then_408() {
    let mut sim = Sim::new(&[1]);
    place(&mut sim, "ta", 0);
    let mut at = vec![];
    let start = sim.now;
    for _ in 0..132 {
        sim.advance(Duration::from_millis(250));
        for (d, m) in sim.take() {
            at.push((
                (sim.now - start).as_millis() / 250 * 250,
                d,
                m.status().unwrap_or(0),
            ));
        }
    }
    let retrans: Vec<_> = at
        .iter()
        .filter(|x| x.1 == edge_addr(0))
        .map(|x| x.0)
        .collect();
    assert_eq!(
        retrans,
        vec![500, 1500, 3500, 7500, 15500, 31500],
        "Timer A doubles from T1"
    );
    let up: Vec<_> = at.iter().filter(|x| x.1 == addr(CARRIER)).collect();
    assert_eq!(
        (up[0].0, up[0].2),
        (250, 100),
        "the 100 after 200 ms of silence"
    );
    let finals = &up[1..];
    assert_eq!(finals[0].2, 408);
    assert_eq!(finals[0].0, 32000, "Timer B is 64*T1");
    // Unacknowledged, the 408 is retransmitted by Timer G.
    assert!(finals.len() > 1 && finals.iter().all(|f| f.2 == 408));
}

#[test]
fn re_invite_stays_on_its_edge_even_when_it_turned_unhealthy() {
    let mut sim = Sim::new(&[1, 2]);
    let inv = place(&mut sim, "re", 0);
    sim.edge_sends(0, reply(&inv, 200, "e"));
    sim.take();
    sim.core.set_edge_health(0, false);
    let route = "Route: <sip:198.51.100.10:5060;transport=udp;lr;tve=EDGE-1>\r\n";
    sim.carrier_sends(request(
        "INVITE",
        "sip:edge@198.51.100.21:5060",
        "re",
        "z9hG4bK-re2",
        2,
        Some("e"),
        route,
    ));
    // A re-INVITE's 100 waits for the Edge too.
    assert_eq!(sim.one_to(edge_addr(0)).method(), Some(Method::Invite));
}

#[test]
fn outbound_call_from_an_edge_binds_both_directions() {
    let mut sim = Sim::new(&[1, 2]);
    sim.edge_sends(
        1,
        request(
            "INVITE",
            "sip:+15559876@198.51.100.10",
            "out-1",
            "z9hG4bK-o1",
            1,
            None,
            "",
        ),
    );
    // The Edge's 100 waits for the carrier's first answer, or 200 ms.
    let inv = sim.one_to(addr(CARRIER));
    sim.advance(Duration::from_millis(199));
    sim.nothing_sent();
    sim.advance(MS);
    assert_eq!(sim.one_to(edge_addr(1)).status(), Some(100));
    assert!(inv
        .record_routes()
        .next()
        .unwrap()
        .unwrap()
        .uri
        .ends_with(b"tve=EDGE-2"));
    sim.carrier_sends(reply(&inv, 200, "c"));
    assert_eq!(sim.one_to(edge_addr(1)).status(), Some(200));
    // The carrier's BYE, sent with no Route, reaches the Edge that called.
    sim.carrier_sends(request(
        "BYE",
        "sip:edge@198.51.100.22",
        "out-1",
        "z9hG4bK-ob",
        1,
        Some("x"),
        "",
    ));
    assert_eq!(sim.one_to(edge_addr(1)).method(), Some(Method::Bye));
}

#[test]
fn register_from_an_edge_gets_path() {
    let mut sim = Sim::new(&[1]);
    let reg = request(
        "REGISTER",
        "sip:198.51.100.2",
        "reg-1",
        "z9hG4bK-r1",
        1,
        None,
        "Supported: path\r\n",
    );
    sim.edge_sends(0, reg);
    let r = sim.one_to(addr(CARRIER));
    assert_eq!(
        header(&r, "Path").as_deref(),
        Some("<sip:198.51.100.10:5060;transport=udp;lr;tve=EDGE-1>")
    );
    sim.carrier_sends(reply(&r, 200, "c"));
    assert_eq!(sim.one_to(edge_addr(0)).status(), Some(200));
}

#[test]
fn request_checks_answer_with_the_right_code() {
    let mut sim = Sim::new(&[1]);
    let mut mf0 = invite("mf0", "z9hG4bK-mf0");
    mf0 = mf0.replace("Max-Forwards: 70", "Max-Forwards: 0");
    sim.carrier_sends(&mf0);
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(483));
    sim.carrier_sends(
        request(
            "OPTIONS",
            "sip:x@198.51.100.21",
            "o0",
            "z9hG4bK-o0",
            1,
            None,
            "",
        )
        .replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    assert_eq!(
        sim.one_to(addr(CARRIER)).status(),
        Some(200),
        "OPTIONS with Max-Forwards 0 is answered by the proxy"
    );
    sim.carrier_sends(request(
        "INVITE",
        "sip:x@198.51.100.10",
        "pr",
        "z9hG4bK-pr",
        1,
        None,
        "Proxy-Require: foo, bar\r\n",
    ));
    let r = sim.one_to(addr(CARRIER));
    assert_eq!(r.status(), Some(420));
    assert_eq!(header(&r, "Unsupported").as_deref(), Some("foo, bar"));
    sim.carrier_sends(request(
        "INVITE",
        "mailto:x@example.com",
        "sch",
        "z9hG4bK-sch",
        1,
        None,
        "",
    ));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(416));
    sim.carrier_sends(invite("bad", "z9hG4bK-bad").replace("CSeq: 1 INVITE", "CSeq: 1 BYE"));
    let r = sim.one_to(addr(CARRIER));
    assert_eq!(r.status(), Some(400));
    assert_eq!(
        r.reason(),
        Some(&b"Bad Request (CSeq method does not match)"[..])
    );
    sim.carrier_sends(
        invite("nocid", "z9hG4bK-n")
            .replace("Content-Length: ", "Content-Length: 9")
            .replace("Call-ID: nocid\r\n", ""),
    );
    let r = sim.one_to(addr(CARRIER));
    assert_eq!(r.status(), Some(400), "unparseable, but a usable Via");
}

#[test]
fn a_looping_request_gets_482() {
    let mut sim = Sim::new(&[1]);
    let inv = place(&mut sim, "loop", 0);
    // The Edge (misconfigured) sends our INVITE straight back to us.
    sim.edge_sends(0, inv.as_bytes());
    let out = sim.take();
    let r = out.iter().find(|x| x.1.status() == Some(482));
    assert!(
        r.is_some(),
        "got {:?}",
        out.iter().map(|x| first_line(&x.1)).collect::<Vec<_>>()
    );
    assert_eq!(sim.core.metrics().loops_detected, 1);
}

#[test]
fn sources_outside_carrier_allow_are_dropped_silently() {
    let mut cfg = config(&[1]);
    cfg.carrier_allow = vec!["198.51.100.0/28".parse().unwrap()];
    let mut sim = Sim::with(cfg);
    sim.deliver(addr("203.0.113.9:5060"), invite("evil", "z9hG4bK-e"));
    sim.nothing_sent();
    assert_eq!(
        sim.core
            .metrics()
            .dropped(trunkvip_proxy::DropReason::NotAllowed),
        1
    );
    sim.carrier_sends(invite("ok", "z9hG4bK-ok"));
    sim.one_to(edge_addr(0));
}

#[test]
fn non_invite_timeout_gives_408() {
    let mut sim = Sim::new(&[1]);
    sim.carrier_sends(request(
        "MESSAGE",
        "sip:agent@198.51.100.10",
        "msg",
        "z9hG4bK-m",
        1,
        None,
        "",
    ));
    let m = sim.one_to(edge_addr(0));
    assert_eq!(m.method(), Some(Method::Message));
    sim.advance(Duration::from_secs(33));
    let out = sim.take();
    let up: Vec<_> = out.iter().filter(|x| x.0 == addr(CARRIER)).collect();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1.status(), Some(408));
    let retrans = out.iter().filter(|x| x.0 == edge_addr(0)).count();
    assert!(retrans >= 6, "Timer E: {retrans}");
}

#[test]
fn timer_c_cancels_a_call_that_rings_for_ever() {
    let mut sim = Sim::new(&[1]);
    let inv = place(&mut sim, "tc", 0);
    sim.edge_sends(0, reply(&inv, 180, "e"));
    sim.take();
    sim.advance(Duration::from_secs(180));
    sim.nothing_sent();
    sim.advance(Duration::from_millis(1100));
    assert_eq!(sim.one_to(edge_addr(0)).method(), Some(Method::Cancel));
}

#[test]
fn ipv6_carrier_and_edges() {
    let mut cfg = config(&[1]);
    cfg.service = vec![(trunkvip_proxy::Transport::Udp, addr("[2001:db8::10]:5060"))];
    cfg.host_address = "2001:db8::11".parse().unwrap();
    cfg.edges[0].address = addr("[2001:db8::21]:5060");
    cfg.edges[0].uri = "sip:[2001:db8::21]:5060".into();
    let mut sim = Sim::with(cfg);
    let inv = &place_v6(&mut sim, "v6");
    assert_eq!(inv.top_via().unwrap().sent_by, b"[2001:db8::10]:5060");
    assert!(inv
        .record_routes()
        .next()
        .unwrap()
        .unwrap()
        .uri
        .starts_with(b"sip:[2001:db8::10]:5060"));
    let ok = reply(inv, 200, "e");
    sim.deliver(addr("[2001:db8::21]:5060"), ok);
    assert_eq!(sim.one_to(addr("[2001:db8::2]:5060")).status(), Some(200));
    // Our own IPv6 Via coming back is a loop.
    let again = place_v6(&mut sim, "v6-loop");
    sim.deliver(addr("[2001:db8::21]:5060"), again.as_bytes());
    assert!(sim.take().iter().any(|x| x.1.status() == Some(482)));
}

/// `place` for the IPv6 setup of `ipv6_carrier_and_edges`.
fn place_v6(sim: &mut Sim, call: &str) -> Message {
    sim.deliver(
        addr("[2001:db8::2]:5060"),
        invite(call, &format!("z9hG4bK-{call}")).replace("198.51.100.2:5060", "[2001:db8::2]:5060"),
    );
    sim.one_to(addr("[2001:db8::21]:5060"))
}

#[test]
fn a_peer_on_our_address_with_another_port_is_not_us() {
    // A carrier on the proxy's own host: its Via names our address with
    // its own port. Not a loop; the call goes through.
    let mut sim = Sim::new(&[1]);
    sim.deliver(
        addr("198.51.100.10:5070"),
        invite("cohost", "z9hG4bK-co").replace("198.51.100.2:5060", "198.51.100.10:5070"),
    );
    sim.one_to(edge_addr(0));
    assert_eq!(sim.core.metrics().loops_detected, 0);
}

#[test]
fn cancel_crossing_a_200_lets_the_200_through() {
    let mut sim = Sim::new(&[1, 2]);
    let inv = place(&mut sim, "race", 0);
    sim.edge_sends(0, reply(&inv, 180, "e"));
    sim.take();
    sim.carrier_sends(request(
        "CANCEL",
        "sip:+15551234@198.51.100.10",
        "race",
        "z9hG4bK-race-1",
        1,
        None,
        "",
    ));
    let out = sim.take();
    assert_eq!(out[0].1.status(), Some(200));
    assert_eq!(out[1].1.method(), Some(Method::Cancel));
    // The Edge had already answered: its 200 crosses our CANCEL.
    sim.edge_sends(0, reply(&inv, 200, "e"));
    let ok = sim.one_to(addr(CARRIER));
    assert_eq!(
        (ok.status(), ok.cseq().unwrap().method),
        (Some(200), Method::Invite)
    );
    // The Edge answers the CANCEL too late to matter: absorbed.
    sim.edge_sends(0, reply(&out[1].1, 200, "e"));
    sim.nothing_sent();
    // The call is up; the carrier hangs up as usual.
    let route = "Route: <sip:198.51.100.10:5060;transport=udp;lr;tve=EDGE-1>\r\n";
    sim.carrier_sends(request(
        "BYE",
        "sip:edge@198.51.100.21:5060",
        "race",
        "z9hG4bK-race-bye",
        2,
        Some("e"),
        route,
    ));
    assert_eq!(sim.one_to(edge_addr(0)).method(), Some(Method::Bye));
}

#[test]
fn cancel_for_nothing_gets_481_and_stray_acks_are_dropped() {
    let mut sim = Sim::new(&[1]);
    sim.carrier_sends(request(
        "CANCEL",
        "sip:+15551234@198.51.100.10",
        "ghost",
        "z9hG4bK-nothing",
        1,
        None,
        "",
    ));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(481));
    sim.carrier_sends(request(
        "ACK",
        "sip:+15551234@198.51.100.10",
        "ghost2",
        "z9hG4bK-stray",
        1,
        Some("x"),
        "",
    ));
    sim.nothing_sent();
    assert_eq!(
        sim.core
            .metrics()
            .dropped(trunkvip_proxy::DropReason::StrayAck),
        1
    );
}

#[test]
fn lost_ack_means_the_edge_retransmits_its_200_and_we_forward_it() {
    let mut sim = Sim::new(&[1]);
    let inv = place(&mut sim, "lost-ack", 0);
    for _ in 0..3 {
        sim.edge_sends(0, reply(&inv, 200, "e"));
        assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(200));
        sim.advance(Duration::from_millis(500));
    }
    let route = "Route: <sip:198.51.100.10:5060;transport=udp;lr;tve=EDGE-1>\r\n";
    sim.carrier_sends(request(
        "ACK",
        "sip:edge@198.51.100.21:5060",
        "lost-ack",
        "z9hG4bK-la",
        1,
        Some("e"),
        route,
    ));
    assert_eq!(sim.one_to(edge_addr(0)).method(), Some(Method::Ack));
}

#[test]
fn responses_to_transactions_of_a_dead_peer_host_are_forwarded_by_their_via() {
    // After a takeover the Edge answers a request the other host sent:
    // its branch is not ours, but its Via names the VIP.
    let mut sim = Sim::new(&[1]);
    let resp = "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKtv99.1.1.1;rport\r\n\
Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bK-old;rport=5062;received=198.51.100.2\r\n\
From: <sip:c@198.51.100.2>;tag=1\r\nTo: <sip:x@198.51.100.10>;tag=2\r\nCall-ID: old-call\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    sim.edge_sends(0, resp);
    let all = sim.take();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, addr("198.51.100.2:5062"));
    assert_eq!(all[0].1.vias().count(), 1);
}

#[test]
fn the_ack_of_our_own_503_is_absorbed_and_nothing_is_sent_to_ourselves() {
    let mut sim = Sim::new(&[1]);
    sim.core.set_edge_health(0, false);
    sim.carrier_sends(invite("self", "z9hG4bK-self"));
    let r = sim.one_to(addr(CARRIER));
    assert_eq!(r.status(), Some(503));
    let tag = r.to().unwrap().tag().unwrap().to_vec();
    let tag = String::from_utf8(tag).unwrap();
    sim.carrier_sends(request(
        "ACK",
        "sip:+15551234@198.51.100.10",
        "self",
        "z9hG4bK-self",
        1,
        Some(&tag),
        "",
    ));
    sim.nothing_sent();
    // An Edge's in-dialog request aimed at our own address is a loop.
    sim.edge_sends(
        0,
        request(
            "BYE",
            "sip:x@198.51.100.10:5060",
            "self2",
            "z9hG4bK-s2",
            1,
            Some("t"),
            "",
        ),
    );
    assert_eq!(sim.one_to(edge_addr(0)).status(), Some(482));
}

#[test]
fn in_flight_counts_only_transactions_waiting_for_an_answer() {
    let mut sim = Sim::new(&[1]);
    let inv = place(&mut sim, "if", 0);
    assert_eq!(sim.core.in_flight(), 2);
    sim.edge_sends(0, reply(&inv, 200, "e"));
    sim.take();
    assert_eq!(
        sim.core.in_flight(),
        0,
        "Accepted transactions linger but are not in flight"
    );
}

#[test]
fn a_flooding_source_is_limited_and_the_edges_never_see_the_flood() {
    let mut cfg = config(&[1]);
    cfg.rate_limit = Some(trunkvip_proxy::RateLimit {
        per_second: 5,
        burst: 5,
    });
    let mut sim = Sim::with(cfg);
    let flooder = addr("198.51.100.66:5060");
    for n in 0..200 {
        sim.deliver(
            flooder,
            invite(&format!("flood-{n}"), &format!("z9hG4bK-f{n}"))
                .replace("198.51.100.2:5060", "198.51.100.66:5060"),
        );
    }
    let out = sim.take();
    let to_edge = out.iter().filter(|x| x.0 == edge_addr(0)).count();
    let refused = out.iter().filter(|x| x.1.status() == Some(503)).count();
    assert_eq!(to_edge, 5, "only the burst reaches the Edge");
    assert_eq!(refused, 1, "one 503, then silence");
    assert_eq!(
        sim.core
            .metrics()
            .dropped(trunkvip_proxy::DropReason::RateLimited),
        194
    );
    // The carrier's own calls go through meanwhile.
    sim.carrier_sends(invite("legit", "z9hG4bK-legit"));
    assert_eq!(sim.take()[0].0, edge_addr(0));
}

#[test]
fn the_rate_limit_counts_new_work_not_requests_of_admitted_dialogs() {
    let mut cfg = config(&[1]);
    cfg.rate_limit = Some(trunkvip_proxy::RateLimit {
        per_second: 1,
        burst: 1,
    });
    let mut sim = Sim::with(cfg);
    place(&mut sim, "lim-1", 0);
    // The bucket is empty, yet the dialog's BYE goes through.
    sim.carrier_sends(request(
        "BYE",
        "sip:+15551234@198.51.100.10",
        "lim-1",
        "z9hG4bK-lim-b",
        2,
        Some("e"),
        "",
    ));
    assert_eq!(sim.one_to(edge_addr(0)).method(), Some(Method::Bye));
    // A forged To tag on an unknown Call-ID is new work: refused.
    sim.carrier_sends(request(
        "BYE",
        "sip:+15551234@198.51.100.10",
        "never-seen",
        "z9hG4bK-lim-f",
        2,
        Some("e"),
        "",
    ));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(503));
    sim.carrier_sends(invite("lim-2", "z9hG4bK-lim-2"));
    sim.nothing_sent();
    assert_eq!(
        sim.core
            .metrics()
            .dropped(trunkvip_proxy::DropReason::RateLimited),
        1
    );
}

#[test]
fn an_edge_busy_answering_other_calls_is_not_failed_over() {
    let mut sim = Sim::new(&[1, 2]);
    let slow = place(&mut sim, "slow", 0);
    // The Edge answers another call within the window: it is alive.
    sim.advance(Duration::from_millis(100));
    let other = place(&mut sim, "other", 0);
    sim.edge_sends(0, reply(&other, 180, "o"));
    sim.take();
    sim.advance(Duration::from_millis(200));
    // Only the slow call's 100, owed since 200 ms.
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(100));
    assert_eq!(sim.core.metrics().failovers, 0);
    assert_eq!(sim.core.metrics().failovers_held, 1);
    // Timer A retransmits the slow INVITE to the same Edge, which answers.
    sim.advance(Duration::from_millis(250));
    let again = sim.one_to(edge_addr(0));
    assert_eq!(branch_of(&again), branch_of(&slow));
    sim.edge_sends(0, reply(&slow, 200, "s"));
    assert_eq!(sim.one_to(addr(CARRIER)).status(), Some(200));
}
