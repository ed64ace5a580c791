//! The debug capture, checked with real readers: a call over TLS (SIPp
//! over TCP through stunnel into trunkvip's TLS listener, Edges on UDP)
//! with `[debug]` on, then
//!
//! 1. the HEP stream, received by sngrep (`sngrep -N -L udp:... -O FILE`)
//!    and read back by tshark, holds exactly the SIP messages of the call,
//!    in order, with the real addresses and ports;
//! 2. the pcap file, read by tshark, holds the same messages, byte for
//!    byte and in order, each a valid UDP frame whose MACs note the
//!    transport;
//! 3. both agree with the real traffic, captured on loopback by dumpcap
//!    and decrypted by tshark with the key log trunkvip wrote (mode 0600,
//!    TLS 1.3 and TLS 1.2 lines);
//! 4. the pcap files are mode 0600 and rotate at `pcap_max_bytes`;
//!    `/metrics` counts the rotations and no drop.
//!
//! Needs sipp, stunnel4, sngrep and tshark (dumpcap); run as root, as CI
//! does, for the loopback capture.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Per direction, the messages (what, bytes) in order.
type Flows = BTreeMap<(SocketAddr, SocketAddr), Vec<(String, Vec<u8>)>>;

/// One SIP message as tshark shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    src: SocketAddr,
    dst: SocketAddr,
    /// The method of a request, the status code of a response.
    what: String,
    call_id: String,
    payload: Vec<u8>,
    /// `eth.src` (our pcap notes the transport there).
    eth_src: String,
}

impl Msg {
    fn line(&self) -> String {
        format!("{} -> {} {}", self.src, self.dst, self.what)
    }
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// `tshark -r FILE ARGS`, stdout (tshark warns on stderr when root).
fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark -r {} {args:?}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The SIP messages of a pcap of UDP frames, in order.
fn sip_over_udp(file: &Path) -> Vec<Msg> {
    let text = tshark(
        file,
        &[
            "-Y",
            "sip",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ip.src",
            "-e",
            "udp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
            "-e",
            "udp.payload",
            "-e",
            "eth.src",
        ],
    );
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 9, "{l}");
            Msg {
                src: format!("{}:{}", f[0], f[1]).parse().expect(l),
                dst: format!("{}:{}", f[2], f[3]).parse().expect(l),
                what: if f[4].is_empty() { f[5] } else { f[4] }.to_owned(),
                call_id: f[6].to_owned(),
                payload: unhex(f[7]),
                eth_src: f[8].to_owned(),
            }
        })
        .collect()
}

/// `FILE.9` ... `FILE.1`, `FILE`: the ones that exist, oldest first.
fn pcap_files(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..10)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .filter(|p| p.exists())
        .collect();
    v.push(path.to_path_buf());
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Waits for `ok`, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(admin: SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(admin, "/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn tls_call_seen_by_sngrep_tshark_and_wireshark() {
    let dir = tempdir();
    let d = dir.path();
    let certs = gen_certs(d);
    let (p, tls_port, e1, e2, admin, front, front12, hep_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        admin_addr(),
        free_port(),
        free_port(),
        free_port(),
    );

    // sngrep: HEP in, pcap out, no interface, no live capture.
    let hep_pcap = d.join("hep.pcap");
    let mut sngrep = Child::spawn(
        "sngrep",
        Command::new("sngrep")
            .args(["-N", "-q", "-L", &format!("udp:127.0.0.1:{hep_port}"), "-O"])
            .arg(&hep_pcap),
        d,
    );
    wait_until(Duration::from_secs(10), "sngrep to listen", || {
        UdpSocket::bind(("127.0.0.1", hep_port)).is_err()
    });

    // The real traffic of both legs, for Wireshark with the key log.
    let real = d.join("real.pcapng");
    let mut dumpcap = Child::spawn(
        "dumpcap",
        Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f"])
            .arg(format!("tcp port {tls_port} or udp port {p}"))
            .arg("-w")
            .arg(&real),
        d,
    );
    wait_until(Duration::from_secs(10), "dumpcap to capture", || {
        std::fs::read_to_string(&dumpcap.log)
            .unwrap_or_default()
            .contains("Capturing on")
            || real.exists()
    });

    let _uas1 = sipp_uas("uas1", e1, false, d);
    let _uas2 = sipp_uas("uas2", e2, false, d);
    let pcap = d.join("sip.pcap");
    let keylog = d.join("keys.log");
    let max_bytes = 8192u64;
    let extra = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n\
         [debug]\nhep = \"127.0.0.1:{hep_port}\"\npcap = {pcap:?}\npcap_max_bytes = {max_bytes}\nkeylog = {keylog:?}\n",
        certs.join("cert.pem"),
        certs.join("key.pem"),
        certs.join("ca.pem"),
    );
    let listen = [
        format!("udp:127.0.0.1:{p}"),
        format!("tls:127.0.0.1:{tls_port}"),
    ];
    let mut proxy = trunkvip(
        &config(&listen, &[(e1, "udp"), (e2, "udp")], admin, &extra),
        d,
    );
    wait_health(admin, &[true, true], Duration::from_secs(10), &mut proxy);
    assert_eq!(mode(&pcap), 0o600);
    assert_eq!(mode(&keylog), 0o600);

    // stunnel: TLS 1.3 for SIPp, TLS 1.2 for one more handshake.
    let conf = d.join("stunnel.conf");
    let service = |name: &str, port: u16, extra: &str| {
        format!(
            "[{name}]\nclient = yes\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{tls_port}\n\
             CAfile = {ca}\nverifyChain = yes\ncheckIP = 127.0.0.1\ncert = {cert}\nkey = {key}\nsslVersionMin = TLSv1.2\n{extra}\n",
            ca = certs.join("ca.pem").display(),
            cert = certs.join("client.pem").display(),
            key = certs.join("client.key").display(),
        )
    };
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\ndebug = 5\n\n{}{}",
            service("sip", front, ""),
            service("sip12", front12, "sslVersionMax = TLSv1.2")
        ),
    )
    .unwrap();
    let stunnel = Child::spawn("stunnel", Command::new("stunnel4").arg(&conf), d);
    wait_until(Duration::from_secs(10), "stunnel to listen", || {
        TcpStream::connect(("127.0.0.1", front)).is_ok()
    });

    // A TLS 1.2 handshake, for a CLIENT_RANDOM line: before the call, so
    // that the probes written after it cannot rotate the call out of the
    // pcap before we read it, however slow the machine.
    {
        let _c = TcpStream::connect(("127.0.0.1", front12)).unwrap();
        wait_until(Duration::from_secs(10), "a TLS 1.2 key", || {
            std::fs::read_to_string(&keylog)
                .unwrap()
                .contains("CLIENT_RANDOM ")
        });
    }

    let calls = sipp_uac(front, 1, 1, true, d, Duration::from_secs(30));
    assert!(
        calls.exit.is_some_and(|s| s.success()) && calls.failed == 0 && calls.successful == 1,
        "SIPp: {calls:#?}\n{}\n{}\n{}",
        calls.log,
        stunnel.log(),
        proxy.log()
    );

    // Let the capture thread empty its queue, then stop the readers.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(metric(admin, "trunkvip_capture_dropped_total"), 0);
    assert_eq!(metric(admin, "trunkvip_capture_enabled"), 1);
    let rotations = metric(admin, "trunkvip_capture_pcap_rotations_total");
    // Health probes go on, and would rotate the files while we read them.
    proxy.kill();
    sngrep.signal("INT");
    assert!(
        sngrep.wait_for(Duration::from_secs(10)).is_some(),
        "sngrep did not stop\n{}",
        sngrep.log()
    );
    dumpcap.signal("INT");
    assert!(
        dumpcap.wait_for(Duration::from_secs(10)).is_some(),
        "dumpcap did not stop\n{}",
        dumpcap.log()
    );

    // (3) The key log: mode 0600, TLS 1.3 and TLS 1.2 secrets.
    let keys = std::fs::read_to_string(&keylog).unwrap();
    assert_eq!(mode(&keylog), 0o600);
    for label in [
        "CLIENT_TRAFFIC_SECRET_0 ",
        "SERVER_TRAFFIC_SECRET_0 ",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET ",
        "CLIENT_RANDOM ",
    ] {
        assert!(
            keys.lines().any(|l| l.starts_with(label)),
            "no {label}in\n{keys}"
        );
    }
    for l in keys.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        assert!(
            f.len() == 3 && f[1].len() == 64 && f[2].len() >= 64,
            "not NSS key log format: {l}"
        );
    }

    // (2) Our pcap, rotated: every file 0600 and within the limit, then
    // every message.
    let files = pcap_files(&pcap);
    assert!(
        files.len() >= 2 && files.len() <= 10 && rotations >= 1,
        "{max_bytes} bytes should have rotated: {files:?}, {rotations} rotations"
    );
    let mut ours = vec![];
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= max_bytes, "{} is {len} bytes", f.display());
        // Checksums right (tshark checks them when asked).
        let bad = tshark(
            f,
            &[
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
                "-Y",
                "ip.checksum.status != 1 || udp.checksum.status != 1",
            ],
        );
        assert!(bad.is_empty(), "bad checksums in {}:\n{bad}", f.display());
        ours.extend(sip_over_udp(f));
    }

    // The call: the Call-ID of the INVITE that came in over TLS.
    let invite = ours
        .iter()
        .find(|m| m.what == "INVITE" && m.dst.port() == tls_port)
        .unwrap_or_else(|| panic!("no INVITE to the TLS port in our pcap: {ours:#?}"));
    let call_id = invite.call_id.clone();
    let carrier = invite.src;
    let call =
        |v: &[Msg]| -> Vec<Msg> { v.iter().filter(|m| m.call_id == call_id).cloned().collect() };
    let ours = call(&ours);
    let tls_side: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let udp_side: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
    let edge: SocketAddr = format!("127.0.0.1:{e1}").parse().unwrap();
    let flow: Vec<String> = ours.iter().map(Msg::line).collect();
    let (c, t, u, e) = (carrier, tls_side, udp_side, edge);
    let want = [
        format!("{c} -> {t} INVITE"),
        // No 100: the Edge rings at once, and our 100 waits for its first
        // answer.
        format!("{u} -> {e} INVITE"),
        format!("{e} -> {u} 180"),
        format!("{t} -> {c} 180"),
        format!("{e} -> {u} 200"),
        format!("{t} -> {c} 200"),
        format!("{c} -> {t} ACK"),
        format!("{u} -> {e} ACK"),
        format!("{c} -> {t} BYE"),
        format!("{u} -> {e} BYE"),
        format!("{e} -> {u} 200"),
        format!("{t} -> {c} 200"),
    ];
    // Each leg in its own order, and each message forwarded after it came
    // in; across legs the order may vary (the Edge's 200 may arrive
    // before its 180 is relayed).
    let mut sorted_got = flow.clone();
    let mut sorted_want = want.to_vec();
    sorted_got.sort();
    sorted_want.sort();
    assert_eq!(
        sorted_got, sorted_want,
        "our pcap: the call's messages: {flow:#?}"
    );
    let leg = |v: &[String], a: SocketAddr| -> Vec<String> {
        v.iter()
            .filter(|l| l.contains(&format!("{a} ")))
            .cloned()
            .collect()
    };
    for side in [t, u] {
        assert_eq!(
            leg(&flow, side),
            leg(&want, side),
            "our pcap: the leg of {side}"
        );
    }
    // The n-th line equal to `l`.
    let at = |l: &str, n: usize| {
        flow.iter()
            .enumerate()
            .filter(|(_, x)| *x == l)
            .nth(n)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no {l:?} number {n} in {flow:#?}"))
    };
    let relayed = [
        (
            format!("{c} -> {t} INVITE"),
            format!("{u} -> {e} INVITE"),
            0,
        ),
        (format!("{e} -> {u} 180"), format!("{t} -> {c} 180"), 0),
        (format!("{e} -> {u} 200"), format!("{t} -> {c} 200"), 0),
        (format!("{c} -> {t} ACK"), format!("{u} -> {e} ACK"), 0),
        (format!("{c} -> {t} BYE"), format!("{u} -> {e} BYE"), 0),
        (format!("{e} -> {u} 200"), format!("{t} -> {c} 200"), 1),
    ];
    for (came, went, n) in &relayed {
        assert!(
            at(came, *n) < at(went, *n),
            "{went} before {came}: {flow:#?}"
        );
    }
    for m in &ours {
        let tls = m.src == tls_side || m.dst == tls_side;
        let note = if tls {
            "02:00:00:54:4c:53"
        } else {
            "02:00:00:55:44:50"
        };
        assert_eq!(m.eth_src, note, "transport noted in the MAC: {}", m.line());
        let text = String::from_utf8_lossy(&m.payload);
        assert!(
            text.starts_with(&m.what) || text.starts_with(&format!("SIP/2.0 {}", m.what)),
            "{text}"
        );
    }

    // (1) The HEP stream as sngrep wrote it: the same messages, in the
    // same order, byte for byte.
    let hep = call(&sip_over_udp(&hep_pcap));
    assert_eq!(hep.len(), ours.len(), "HEP via sngrep: {hep:#?}");
    for (h, o) in hep.iter().zip(&ours) {
        assert_eq!((h.src, h.dst, &h.what), (o.src, o.dst, &o.what));
        assert_eq!(
            String::from_utf8_lossy(&h.payload),
            String::from_utf8_lossy(&o.payload),
            "{}",
            o.line()
        );
    }

    // The real traffic: the UDP leg as is, the TLS leg decrypted with the
    // key log; per direction, the same messages in the same order, byte for
    // byte.
    let real_msgs = real_traffic(&real, &keylog, tls_port);
    let real_call = call(&real_msgs);
    let by_flow = |v: &[Msg]| {
        let mut m = Flows::new();
        for x in v {
            m.entry((x.src, x.dst))
                .or_default()
                .push((x.what.clone(), x.payload.clone()));
        }
        m
    };
    let (real_flows, our_flows) = (by_flow(&real_call), by_flow(&ours));
    assert_eq!(
        real_flows.keys().collect::<Vec<_>>(),
        our_flows.keys().collect::<Vec<_>>(),
        "real: {:#?}",
        real_call.iter().map(Msg::line).collect::<Vec<_>>()
    );
    for (k, real) in &real_flows {
        let ours = &our_flows[k];
        let lines = |v: &[(String, Vec<u8>)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        assert_eq!(lines(real), lines(ours), "{k:?}");
        for (r, o) in real.iter().zip(ours) {
            assert_eq!(
                String::from_utf8_lossy(&r.1),
                String::from_utf8_lossy(&o.1),
                "{k:?}"
            );
        }
    }
}

/// The SIP messages of the real capture: UDP frames as they are, the TLS
/// stream decrypted by tshark with the key log and split into messages.
fn real_traffic(file: &Path, keylog: &Path, tls_port: u16) -> Vec<Msg> {
    let mut out: Vec<Msg> = sip_over_udp(file);
    let tls = format!("tls.keylog_file:{}", keylog.display());
    let decode = format!("tcp.port=={tls_port},tls");
    let sip = format!("tls.port=={tls_port},sip");
    // One row per SIP message (tshark shows each PDU of a record).
    let text = tshark(
        file,
        &[
            "-o",
            &tls,
            "-d",
            &decode,
            "-d",
            &sip,
            "-Y",
            "sip && tcp",
            "-T",
            "json",
            "-x",
            "-j",
            "ip tcp sip",
        ],
    );
    let frames: serde_json::Value = serde_json::from_str(&text).expect("tshark json");
    for f in frames.as_array().expect("frames") {
        let layers = &f["_source"]["layers"];
        let ip = &layers["ip"];
        let tcp = &layers["tcp"];
        let src = format!(
            "{}:{}",
            ip["ip.src"].as_str().unwrap(),
            tcp["tcp.srcport"].as_str().unwrap()
        );
        let dst = format!(
            "{}:{}",
            ip["ip.dst"].as_str().unwrap(),
            tcp["tcp.dstport"].as_str().unwrap()
        );
        // `sip_raw` is [hex, offset, length, mask, type]; several SIP
        // messages in one frame make an array of those.
        let raws: Vec<&serde_json::Value> = match &layers["sip_raw"] {
            serde_json::Value::Array(a) if a.first().is_some_and(|x| x.is_string()) => {
                vec![&layers["sip_raw"]]
            }
            serde_json::Value::Array(a) => a.iter().collect(),
            other => panic!("sip_raw: {other}"),
        };
        for raw in raws {
            let payload = unhex(raw[0].as_str().expect("raw hex"));
            let text = String::from_utf8_lossy(&payload).into_owned();
            let first = text.lines().next().unwrap_or_default();
            let what = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
                rest.split(' ').next().unwrap().to_owned()
            } else {
                first.split(' ').next().unwrap().to_owned()
            };
            let call_id = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Call-ID:")
                        .or_else(|| l.strip_prefix("i:"))
                        .map(|v| v.trim().to_owned())
                })
                .unwrap_or_default();
            out.push(Msg {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                what,
                call_id,
                payload,
                eth_src: String::new(),
            });
        }
    }
    out
}
