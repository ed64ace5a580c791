//! New carrier targets at run time (`Core::set_carriers`, what the daemon
//! calls when a carrier name resolves elsewhere): new Edge-originated
//! calls take the new list, what is in progress stays where it was.

mod common;

use common::*;
use trunkvip_proxy::*;
use trunkvip_sip::{Message, Method};

const OLD: &str = "198.51.100.2:5060";
const OLD2: &str = "198.51.100.4:5060";
const NEW: &str = "203.0.113.7:5080";

fn target(a: &str, transport: Transport) -> CarrierTarget {
    CarrierTarget {
        uri: "sip:carrier.example.com".into(),
        address: addr(a),
        transport,
    }
}

/// One Edge; UDP and TCP listeners; the carrier name first resolved to
/// `old`.
fn sim(old: Vec<CarrierTarget>) -> Sim {
    let mut c = config(&[1]);
    c.service.push((Transport::Tcp, addr(VIP)));
    c.carriers = old;
    Sim::with(c)
}

fn edge_invite(call: &str) -> String {
    request(
        "INVITE",
        "sip:+15559876@198.51.100.10",
        call,
        &format!("z9hG4bK-{call}"),
        1,
        None,
        "",
    )
}

/// Everything sent so far, with its transport.
fn sent(sim: &mut Sim) -> Vec<(std::net::SocketAddr, Transport, Message)> {
    sim.out
        .drain(..)
        .map(|t| {
            let m = Message::parse(t.payload).expect("we send valid SIP");
            (t.destination, t.transport, m)
        })
        .collect()
}

/// The one request sent (the Edge's 100 Trying aside).
fn forwarded(sim: &mut Sim) -> (std::net::SocketAddr, Transport, Message) {
    let mut v: Vec<_> = sent(sim).into_iter().filter(|x| x.2.is_request()).collect();
    assert_eq!(
        v.len(),
        1,
        "{:?}",
        v.iter().map(|x| x.0).collect::<Vec<_>>()
    );
    v.pop().unwrap()
}

#[test]
fn new_calls_take_the_new_carriers_while_calls_in_progress_stay() {
    let mut sim = sim(vec![target(OLD, Transport::Tcp)]);

    // A call set up before the change: answered, confirmed.
    sim.edge_sends(0, edge_invite("up"));
    let (to, t, inv) = forwarded(&mut sim);
    assert_eq!((to, t), (addr(OLD), Transport::Tcp));
    sim.deliver(addr(OLD), reply(&inv, 200, "c1"));
    assert_eq!(sim.one_to(edge_addr(0)).status(), Some(200));

    // A call still ringing-to-be: sent, no answer yet.
    sim.edge_sends(0, edge_invite("ringing"));
    let (to, _, pending) = forwarded(&mut sim);
    assert_eq!(to, addr(OLD));

    // The name now resolves elsewhere, over UDP.
    sim.core
        .set_carriers(vec![target(NEW, Transport::Udp)])
        .unwrap();
    assert_eq!(sim.core.carriers(), [target(NEW, Transport::Udp)]);

    // A new call from the Edge goes to the new address.
    sim.edge_sends(0, edge_invite("new"));
    let (to, t, m) = forwarded(&mut sim);
    assert_eq!((to, t), (addr(NEW), Transport::Udp));
    assert_eq!(m.method(), Some(Method::Invite));

    // The BYE of the call set up before goes where that dialog is, over
    // the transport its target had (the Request-URI says no transport).
    sim.edge_sends(
        0,
        request(
            "BYE",
            &format!("sip:carrier@{OLD}"),
            "up",
            "z9hG4bK-up-bye",
            2,
            Some("c1"),
            "",
        ),
    );
    let (to, t, m) = forwarded(&mut sim);
    assert_eq!((to, t), (addr(OLD), Transport::Tcp));
    assert_eq!(m.method(), Some(Method::Bye));

    // The pending INVITE's CANCEL follows its branch to the old address,
    // and the old carrier's answers still reach the Edge.
    sim.deliver(addr(OLD), reply(&pending, 180, "c2"));
    assert_eq!(sim.one_to(edge_addr(0)).status(), Some(180));
    sim.edge_sends(
        0,
        request(
            "CANCEL",
            "sip:+15559876@198.51.100.10",
            "ringing",
            "z9hG4bK-ringing",
            1,
            None,
            "",
        ),
    );
    let out = sent(&mut sim);
    let cancel: Vec<_> = out
        .iter()
        .filter(|x| x.2.method() == Some(Method::Cancel))
        .collect();
    assert_eq!(cancel.len(), 1);
    assert_eq!((cancel[0].0, cancel[0].1), (addr(OLD), Transport::Tcp));
    // Its 487 is ACKed there too, and relayed.
    sim.deliver(addr(OLD), reply(&pending, 487, "c2"));
    let out = sent(&mut sim);
    let got: Vec<_> = out
        .iter()
        .map(|x| (x.0, x.1, x.2.method(), x.2.status()))
        .collect();
    assert_eq!(
        got,
        [
            (addr(OLD), Transport::Tcp, Some(Method::Ack), None),
            (edge_addr(0), Transport::Udp, None, Some(487)),
        ]
    );
}

#[test]
fn untried_failover_candidates_follow_the_new_list_by_address() {
    let mut sim = sim(vec![
        target(OLD, Transport::Udp),
        target(OLD2, Transport::Udp),
    ]);
    sim.edge_sends(0, edge_invite("fo"));
    let (to, _, inv) = forwarded(&mut sim);
    assert_eq!(to, addr(OLD));
    // OLD2, index 1 before, is index 0 now; index 1 is a new target.
    sim.core
        .set_carriers(vec![
            target(OLD2, Transport::Udp),
            target(NEW, Transport::Udp),
        ])
        .unwrap();
    // OLD refuses: the next candidate is OLD2 still, not the new index 1.
    sim.deliver(addr(OLD), reply(&inv, 503, "x"));
    let invites: Vec<_> = sent(&mut sim)
        .into_iter()
        .filter(|x| x.2.method() == Some(Method::Invite))
        .map(|x| x.0)
        .collect();
    assert_eq!(invites, [addr(OLD2)]);
}

#[test]
fn a_target_without_a_listener_changes_nothing() {
    let mut sim = sim(vec![target(OLD, Transport::Udp)]);
    let e = sim
        .core
        .set_carriers(vec![target(NEW, Transport::Tls)])
        .unwrap_err();
    assert!(e.0.contains("needs a listener"), "{e}");
    assert_eq!(sim.core.carriers(), [target(OLD, Transport::Udp)]);
}
