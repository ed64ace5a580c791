//! TLS with a real client: SIPp over TCP through stunnel (client mode,
//! with a client certificate) into trunkvip's TLS listener, which requires
//! client certificates (`tls.client_ca`). Certificates are made for the
//! test by `trunkvip gen-certs` (rcgen). Needs sipp and stunnel4.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn sipp_through_stunnel_into_tls() {
    let dir = tempdir();
    let d = dir.path();
    let certs = gen_certs(d);

    let (p, tls_port, e1, e2, admin, front) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        admin_addr(),
        free_port(),
    );
    let _uas1 = sipp_uas("uas1", e1, false, d);
    let _uas2 = sipp_uas("uas2", e2, false, d);
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        certs.join("cert.pem"),
        certs.join("key.pem"),
        certs.join("ca.pem")
    );
    let listen = [
        format!("udp:127.0.0.1:{p}"),
        format!("tls:127.0.0.1:{tls_port}"),
    ];
    let mut proxy = trunkvip(
        &config(&listen, &[(e1, "udp"), (e2, "udp")], admin, &tls),
        d,
    );
    wait_health(admin, &[true, true], Duration::from_secs(10), &mut proxy);

    let conf = d.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\ndebug = 5\n\n[sip]\nclient = yes\naccept = 127.0.0.1:{front}\nconnect = 127.0.0.1:{tls_port}\n\
             CAfile = {ca}\nverifyChain = yes\ncheckIP = 127.0.0.1\ncert = {cert}\nkey = {key}\nsslVersionMin = TLSv1.2\n",
            ca = certs.join("ca.pem").display(),
            cert = certs.join("client.pem").display(),
            key = certs.join("client.key").display(),
        ),
    )
    .unwrap();
    let stunnel = Child::spawn("stunnel", Command::new("stunnel4").arg(&conf), d);
    // stunnel listens once it has read its configuration.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", front)).is_err() {
        assert!(
            std::time::Instant::now() < end,
            "stunnel never listened\n{}",
            stunnel.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let calls = sipp_uac(front, 100, 25, true, d, Duration::from_secs(40));
    assert!(
        calls.exit.is_some_and(|s| s.success()) && calls.failed == 0 && calls.successful == 100,
        "SIPp: {calls:#?}\n{}\n{}\n{}",
        calls.log,
        stunnel.log(),
        proxy.log()
    );
    let log = std::fs::read_to_string(&stunnel.log).unwrap();
    assert!(
        log.contains("Certificate accepted") || log.contains("connected"),
        "{log}"
    );
}

/// TLS toward an Edge: trunkvip opens TLS (checking the Edge's
/// certificate against `tls.edge_ca`) to stunnel in server mode, in front
/// of a `sipp -sn uas` over TCP; the carrier side is UDP. Health probes
/// use TLS too, from `host_address`.
#[test]
fn tls_toward_an_edge() {
    let dir = tempdir();
    let d = dir.path();
    let certs = gen_certs(d);
    let (p, tls_port, edge_tls, uas_port, admin) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        admin_addr(),
    );
    let _uas = sipp_uas("uas1", uas_port, true, d);
    let conf = d.join("stunnel-edge.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\ndebug = 5\n\n[edge]\naccept = 127.0.0.1:{edge_tls}\nconnect = 127.0.0.1:{uas_port}\n\
             cert = {cert}\nkey = {key}\nsslVersionMin = TLSv1.2\n",
            cert = certs.join("cert.pem").display(),
            key = certs.join("key.pem").display(),
        ),
    )
    .unwrap();
    let stunnel = Child::spawn("stunnel-edge", Command::new("stunnel4").arg(&conf), d);
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nedge_ca = {:?}\n",
        certs.join("cert.pem"),
        certs.join("key.pem"),
        certs.join("ca.pem")
    );
    let listen = [
        format!("udp:127.0.0.1:{p}"),
        format!("tls:127.0.0.1:{tls_port}"),
    ];
    let mut proxy = trunkvip(&config(&listen, &[(edge_tls, "tls")], admin, &tls), d);
    wait_health(admin, &[true], Duration::from_secs(10), &mut proxy);
    let calls = sipp_uac(p, 50, 25, false, d, Duration::from_secs(40));
    assert!(
        calls.exit.is_some_and(|s| s.success()) && calls.failed == 0 && calls.successful == 50,
        "SIPp: {calls:#?}\n{}\n{}\n{}",
        calls.log,
        stunnel.log(),
        proxy.log()
    );
}
