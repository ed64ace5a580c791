//! The binary's commands without SIPp: `check`, CRLF keep-alives,
//! `/metrics`, `status`, SIGTERM, SIGHUP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn check_reports_key_and_line() {
    let dir = tempdir();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = [\"udp:127.0.0.1:5060\"]\n\n[[edge]]\nname = \"e1\"\nuri = \"sip:127.0.0.1:5071\"\npriority = 1\n\n[health_check]\ninterval = \"30 seconds\"\n",
    )
    .unwrap();
    let out = Command::new(TRUNKVIP)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.toml:9: health_check.interval: invalid duration \"30 seconds\""),
        "{err}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = [\"udp:[::1]:5060\"]\n[[edge]]\nname = \"e1\"\nuri = \"sip:[::1]:5071\"\npriority = 1\n",
    )
    .unwrap();
    let out = Command::new(TRUNKVIP)
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("listen = [\"udp:[::1]:5060\"]"), "{text}");
    assert!(text.contains("interval = \"30s\""), "{text}");
    assert!(text.contains("# udp [::1]:5071"), "{text}");
}

#[test]
fn keepalive_metrics_and_signals() {
    let dir = tempdir();
    let (p, tcp_edge, admin) = (free_port(), free_port(), admin_addr());
    let certs = gen_certs(dir.path());
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        certs.join("cert.pem"),
        certs.join("key.pem")
    );
    // Nobody answers the Edges' probes here: they turn Unhealthy.
    let listen = [format!("udp:127.0.0.1:{p}"), format!("tcp:127.0.0.1:{p}")];
    let mut proxy = trunkvip(
        &config(
            &listen,
            &[(tcp_edge, "tcp"), (free_port(), "udp")],
            admin,
            &tls,
        ),
        dir.path(),
    );
    wait_health(admin, &[false, false], Duration::from_secs(10), &mut proxy);

    // RFC 5626: a double CRLF is answered with a single CRLF.
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");

    let (code, m) = http_get(admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    for series in [
        "trunkvip_edge_healthy{worker=\"0\",edge=\"EDGE-1\"} 0",
        "trunkvip_workers 2",
        "trunkvip_draining 0",
        "trunkvip_inbox_full_drops_total 0",
    ] {
        assert!(m.contains(series), "no {series} in\n{m}");
    }
    assert_eq!(m.matches("# TYPE trunkvip_dialogs gauge").count(), 1, "{m}");
    assert_eq!(http_get(admin, "/nothing").unwrap().0, 404);

    // SIGHUP reloads the certificates and keeps running.
    proxy.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(status(admin).is_some(), "{}", proxy.log());
    assert!(
        proxy.log().contains("TLS certificates reloaded"),
        "{}",
        proxy.log()
    );

    // SIGTERM with nothing in flight: exit 0 soon.
    proxy.signal("TERM");
    let s = proxy
        .wait_for(Duration::from_secs(40))
        .expect("did not stop");
    assert!(s.success(), "{s}\n{}", proxy.log());
    assert!(proxy.log().contains("draining"), "{}", proxy.log());
}
