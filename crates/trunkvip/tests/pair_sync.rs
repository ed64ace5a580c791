//! Two daemons on loopback (host addresses 127.0.0.2 and 127.0.0.3) share
//! their dialogs over the authenticated pair channel. Needs sipp.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    let Some((_, body)) = http_get(admin, "/metrics") else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn host(
    ip: &str,
    port: u16,
    pair_port: u16,
    peer: &str,
    edges: &[(u16, &str)],
    admin: std::net::SocketAddr,
    key: &std::path::Path,
) -> String {
    let listen = [format!("udp:{ip}:{port}")];
    let extra = format!(
        "[pair]\npeer = \"{peer}:{pair_port}\"\nsecret_file = \"{}\"\n",
        key.display()
    );
    config_on("127.0.0.1", &listen, edges, admin, &extra).replace(
        "host_address = \"127.0.0.1\"",
        &format!("host_address = \"{ip}\""),
    )
}

#[test]
fn dialogs_made_on_one_host_are_known_to_the_other() {
    let dir = tempdir();
    let key = dir.path().join("pair.key");
    std::fs::write(&key, "a shared secret of the pair, 32b").unwrap();
    let (e1, e2) = (free_port(), free_port());
    let _uas1 = sipp_uas("uas1", e1, false, dir.path());
    let _uas2 = sipp_uas("uas2", e2, false, dir.path());
    let (pa, pb, pp) = (free_port(), free_port(), free_port());
    let (aa, ab) = (admin_addr(), admin_addr());
    let edges = [(e1, "udp"), (e2, "udp")];
    // Each host its own directory: the helper writes its config there.
    let (da, db) = (tempdir(), tempdir());
    let mut a = trunkvip(
        &host("127.0.0.2", pa, pp, "127.0.0.3", &edges, aa, &key),
        da.path(),
    );
    let mut b = trunkvip(
        &host("127.0.0.3", pb, pp, "127.0.0.2", &edges, ab, &key),
        db.path(),
    );
    wait_health(aa, &[true, true], Duration::from_secs(10), &mut a);
    wait_health(ab, &[true, true], Duration::from_secs(10), &mut b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(aa, "trunkvip_pair_connected") < 1.0 || metric(ab, "trunkvip_pair_connected") < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "pair never connected:\n{}\n{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // 50 calls through host A only.
    let calls = sipp_uac_on(
        "127.0.0.2",
        pa,
        50,
        25,
        false,
        dir.path(),
        Duration::from_secs(30),
    );
    assert_all_good(&calls, 50, &a);
    // Host B learnt them: ended dialogs linger for the grace time.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(ab, "trunkvip_dialogs") < 50.0 {
        assert!(
            Instant::now() < deadline,
            "B holds {} dialogs",
            metric(ab, "trunkvip_dialogs")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(ab, "trunkvip_pair_records_received_total") >= 100.0);
    assert_eq!(metric(ab, "trunkvip_pair_rejected_total"), 0.0);
}
