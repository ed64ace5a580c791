use super::*;

const FULL: &str = r#"listen = ["udp:198.51.100.10:5060", "tcp:198.51.100.10:5060", "tls:198.51.100.10:5061"]
host_address = "198.51.100.11"
workers = 2

[tls]
cert = "/etc/trunkvip/tls/cert.pem"
key = "/etc/trunkvip/tls/key.pem"
client_ca = "/etc/trunkvip/tls/carrier-ca.pem"

[[edge]]
name = "EDGE-PROD-01"
uri = "sip:198.51.100.21:5060;transport=udp"
priority = 1
weight = 1

[[edge]]
name = "EDGE-PROD-02"
uri = "sip:198.51.100.22:5060;transport=udp"
priority = 2

[health_check]
interval = "30s"
timeout = "5s"
failure_threshold = 3
recovery_threshold = 5
failover_after = "250ms"

[carrier]
uris = ["sip:198.51.100.2:5060"]
allow = ["198.51.100.0/24"]

[admin]
listen = "127.0.0.1:9090"
"#;

/// `text` with its first line that starts with `prefix` replaced; `what`
/// names the section for the failure message.
fn replace_line(text: &str, what: &str, prefix: &str, replacement: &str) -> String {
    let mut found = false;
    let out: Vec<&str> = text
        .lines()
        .map(|l| {
            if !found && l.starts_with(prefix) {
                found = true;
                replacement
            } else {
                l
            }
        })
        .collect();
    assert!(found, "no {what}line starts with {prefix}");
    out.join("\n")
}

/// `FULL` with the line that starts with `prefix` replaced.
fn with_line(prefix: &str, replacement: &str) -> String {
    replace_line(FULL, "", prefix, replacement) + "\n"
}

/// An address in the URI: found with no lookup.
fn found(address: &str, transport: Transport) -> Found {
    Found {
        address: address.parse().unwrap(),
        transport,
        path: String::new(),
        ttl: None,
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

/// Parses `text`, expects an error at the line holding `needle`, naming
/// `key` and saying `what`.
fn expect_err(text: &str, needle: &str, key: &str, what: &str) {
    let e = Config::parse(text).expect_err("should fail");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert_eq!(e.line, Some(line_of(text, needle)), "{e}");
    assert!(e.message.contains(what), "{e:?} does not say {what:?}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("line {}: {key}: ", e.line.unwrap())),
        "{shown}"
    );
}

#[test]
fn the_issue_example_parses() {
    let c = Config::parse(FULL).unwrap();
    assert_eq!(c.listen.len(), 3);
    assert_eq!(c.listen[2].transport, Transport::Tls);
    assert_eq!(c.host_address, "198.51.100.11".parse::<IpAddr>().unwrap());
    assert_eq!(c.workers, 2);
    assert_eq!(c.edges[1].name, "EDGE-PROD-02");
    assert_eq!(c.edges[1].weight, 1);
    assert_eq!(c.edges[0].target.transport, Transport::Udp);
    assert_eq!(c.health.interval, Duration::from_secs(30));
    assert_eq!(c.health.recovery_threshold, 5);
    assert_eq!(c.failover_after, Duration::from_millis(250));
    assert_eq!(c.carrier_allow[0].to_string(), "198.51.100.0/24");
    assert_eq!(c.admin, "127.0.0.1:9090".parse().unwrap());
    let tls = c.tls.as_ref().unwrap();
    assert!(tls.client_ca.is_some());
}

#[test]
fn rendered_config_parses_to_the_same() {
    let c = Config::parse(FULL).unwrap();
    let text = c.render(None);
    assert_eq!(Config::parse(&text).unwrap(), c, "{text}");
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(
        "listen = [\"udp:127.0.0.1:5060\"]\n[[edge]]\nname = \"e1\"\nuri = \"sip:127.0.0.1:5071\"\npriority = 1\n",
    )
    .unwrap();
    assert_eq!(c.host_address, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert!(c.workers >= 1);
    assert_eq!(c.health, HealthConfig::default());
    assert_eq!(c.admin, DEFAULT_ADMIN.parse().unwrap());
    assert!(c.carriers.is_empty() && c.carrier_allow.is_empty() && c.tls.is_none());
}

#[test]
fn ipv6_listen_and_edges() {
    let text = "listen = [\"udp:[2001:db8::10]:5060\", \"tcp:[::1]:5070\"]\nhost_address = \"2001:db8::11\"\n[[edge]]\nname = \"e1\"\nuri = \"sip:[2001:db8::21]:5060;transport=tcp\"\npriority = 1\n[carrier]\nallow = [\"2001:db8::/32\", \"2001:db8:1::5\"]\n";
    let c = Config::parse(text).unwrap();
    assert_eq!(c.listen[0].addr, "[2001:db8::10]:5060".parse().unwrap());
    assert_eq!(c.listen[1].transport, Transport::Tcp);
    assert_eq!(
        c.edges[0].target.host,
        TargetHost::Ip("2001:db8::21".parse().unwrap())
    );
    assert_eq!(c.edges[0].target.transport, Transport::Tcp);
    assert_eq!(c.carrier_allow[1].to_string(), "2001:db8:1::5/128");
    let r = Resolved {
        edges: vec![found("[2001:db8::21]:5060", Transport::Tcp)],
        carriers: vec![],
        edge_ttls: vec![None],
        carrier_ttls: vec![],
    };
    let pc = c.proxy_config(&r, 5060, 7, true);
    pc.validate().unwrap();
    assert_eq!(
        pc.service_addr(Transport::Udp),
        Some("[2001:db8::10]:5060".parse().unwrap())
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    for bad in [
        "", "30", "s", "30 s", "1.5s", "-1s", "30sec", "30S", "1d", " 30s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
    for d in [250, 1000, 90_000, 3_600_000, 60_000] {
        let d = Duration::from_millis(d);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}

#[test]
fn sip_targets() {
    let t: SipTarget = "sips:edge.example.net".parse().unwrap();
    assert_eq!((t.transport, t.port), (Transport::Tls, 5061));
    assert_eq!(t.host, TargetHost::Name("edge.example.net".into()));
    let t: SipTarget = "sip:198.51.100.21;transport=TCP".parse().unwrap();
    assert_eq!((t.transport, t.port), (Transport::Tcp, 5060));
    let t: SipTarget = "sip:trunk@198.51.100.21:5080;transport=tls"
        .parse()
        .unwrap();
    assert_eq!((t.transport, t.port), (Transport::Tls, 5080));
    for bad in [
        "tel:+15550100",
        "http://x",
        "sip:198.51.100.21;transport=sctp",
        "sips:198.51.100.21;transport=udp",
        "sip:",
        "sip:198.51.100.21:0",
        "198.51.100.21:5060",
    ] {
        assert!(bad.parse::<SipTarget>().is_err(), "{bad} accepted");
    }
}

#[test]
fn every_key_with_a_bad_value() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (line prefix, replacement, key, what the message says)
        ("listen", "listen = [\"udp:198.51.100.10\"]", "listen[1]", "expected an IP address and a port"),
        ("listen", "listen = [\"sctp:198.51.100.10:5060\"]", "listen[1]", "udp, tcp or tls"),
        ("listen", "listen = [\"udp:0.0.0.0:5060\"]", "listen[1]", "unspecified"),
        ("listen", "listen = \"udp:198.51.100.10:5060\"", "listen", "invalid type"),
        ("listen", "listen = []", "listen", "at least one listen address"),
        (
            "listen",
            "listen = [\"udp:198.51.100.10:5060\", \"udp:198.51.100.10:5070\", \"tls:198.51.100.10:5061\"]",
            "listen[2]",
            "a second udp listener",
        ),
        ("host_address", "host_address = \"198.51.100\"", "host_address", "not an IP address"),
        ("host_address", "host_address = \"0.0.0.0\"", "host_address", "unspecified"),
        ("host_address", "host_address = 5", "host_address", "invalid type"),
        ("workers", "workers = 0", "workers", "from 1 to 1024"),
        ("workers", "workers = \"two\"", "workers", "invalid type"),
        ("workers", "workers = -3", "workers", "out of range"),
        ("cert", "cert = 5", "tls.cert", "invalid type"),
        ("cert", "cert = \"\"", "tls.cert", "empty path"),
        ("key =", "key = [\"a\"]", "tls.key", "invalid type"),
        ("client_ca", "client_ca = false", "tls.client_ca", "invalid type"),
        ("name", "name = \"EDGE PROD 01\"", "edge[1].name", "letters, digits"),
        ("name", "name = 7", "edge[1].name", "invalid type"),
        ("uri", "uri = \"198.51.100.21:5060\"", "edge[1].uri", "not a valid SIP URI"),
        ("uri", "uri = \"sip:198.51.100.21:5060;transport=sctp\"", "edge[1].uri", "not supported"),
        ("uri", "uri = \"tel:+15550100\"", "edge[1].uri", "only sip: and sips:"),
        ("priority", "priority = 0", "edge[1].priority", "from 1 to 255"),
        ("priority", "priority = 256", "edge[1].priority", "from 1 to 255"),
        ("priority", "priority = \"high\"", "edge[1].priority", "invalid type"),
        ("weight", "weight = 0", "edge[1].weight", "from 1 to"),
        ("weight", "weight = 1.5", "edge[1].weight", "invalid type"),
        ("interval", "interval = \"30\"", "health_check.interval", "invalid duration"),
        ("interval", "interval = 30", "health_check.interval", "invalid type"),
        ("interval", "interval = \"50ms\"", "health_check.interval", "too short"),
        ("timeout", "timeout = \"5 s\"", "health_check.timeout", "invalid duration"),
        ("failure_threshold", "failure_threshold = 0", "health_check.failure_threshold", "from 1"),
        ("recovery_threshold", "recovery_threshold = \"5\"", "health_check.recovery_threshold", "invalid type"),
        ("failover_after", "failover_after = \"1ms\"", "health_check.failover_after", "too short"),
        ("failover_after", "failover_after = \"fast\"", "health_check.failover_after", "invalid duration"),
        ("uris", "uris = [\"sip:198.51.100.2:5060;transport=tcq\"]", "carrier.uris[1]", "not supported"),
        ("uris", "uris = \"sip:198.51.100.2\"", "carrier.uris", "invalid type"),
        ("allow", "allow = [\"198.51.100.0/33\"]", "carrier.allow[1]", "not an address block"),
        ("allow", "allow = [\"198.51.100.1/24\"]", "carrier.allow[1]", "host bits"),
        ("listen = \"127", "listen = \"127.0.0.1\"", "admin.listen", "not an address and port"),
    ];
    for (prefix, replacement, key, what) in cases {
        let text = with_line(prefix, replacement);
        expect_err(&text, replacement, key, what);
    }
}

#[test]
fn duplicate_edges() {
    let text = FULL.replace("name = \"EDGE-PROD-02\"", "name = \"EDGE-PROD-01\"");
    let e = Config::parse(&text).unwrap_err();
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("edge[2].name"), Some(17)),
        "{e}"
    );
    assert!(e.message.contains("earlier Edge"), "{e}");
    let text = FULL.replace("198.51.100.22:5060", "198.51.100.21:5060");
    let e = Config::parse(&text).unwrap_err();
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("edge[2].uri"), Some(18)),
        "{e}"
    );
    assert!(
        e.message.contains("same address as Edge \"EDGE-PROD-01\""),
        "{e}"
    );
}

#[test]
fn unknown_keys_are_errors() {
    let text = with_line("weight", "wieght = 1");
    expect_err(&text, "wieght", "edge[1].wieght", "unknown key `wieght`");
    let text = FULL.replace("[admin]\n", "[admin]\nport = 9090\n");
    expect_err(&text, "port = 9090", "admin.port", "unknown key `port`");
    let text = format!("lisen = [\"udp:127.0.0.1:5060\"]\n{FULL}");
    expect_err(&text, "lisen", "lisen", "unknown key");
    let text = FULL.replace("[health_check]", "[health_checks]");
    expect_err(&text, "[health_checks]", "health_checks", "unknown key");
}

#[test]
fn pair_section() {
    let dir = std::env::temp_dir().join(format!("tv-pair-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("pair.key");
    std::fs::write(&good, "0123456789abcdef0123456789abcdef\n").unwrap();
    let short = dir.join("short.key");
    std::fs::write(&short, "tooshort").unwrap();
    let section = |peer: &str, file: &std::path::Path| {
        format!(
            "{FULL}\n[pair]\npeer = \"{peer}\"\nsecret_file = \"{}\"\n",
            file.display()
        )
    };
    let c = Config::parse(&section("198.51.100.12:5099", &good)).unwrap();
    let p = c.pair.as_ref().unwrap();
    assert_eq!(p.listen, "198.51.100.11:5099".parse().unwrap());
    assert_eq!(p.secret, b"0123456789abcdef0123456789abcdef");
    assert!(
        !format!("{p:?}").contains("0123456789"),
        "the secret is never printed"
    );
    let back = Config::parse(&c.render(None)).unwrap();
    assert_eq!(back.pair, c.pair);
    let t = section("198.51.100.12", &good);
    expect_err(&t, "peer =", "pair.peer", "not an address and port");
    let t = section("198.51.100.11:5099", &good);
    expect_err(&t, "peer =", "pair.peer", "own address");
    let t = section("198.51.100.12:5099", &short);
    expect_err(&t, "secret_file", "pair.secret_file", "at least 16");
    let t = section("198.51.100.12:5099", &dir.join("missing.key"));
    expect_err(&t, "secret_file", "pair.secret_file", "cannot read");
    let t = format!("{FULL}\n[pair]\npeer = \"198.51.100.12:5099\"\nsecret = \"x\"\n");
    expect_err(&t, "secret = ", "pair.secret", "unknown key");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cross_key_errors() {
    let text = FULL.replace("[tls]\ncert = \"/etc/trunkvip/tls/cert.pem\"\nkey = \"/etc/trunkvip/tls/key.pem\"\nclient_ca = \"/etc/trunkvip/tls/carrier-ca.pem\"\n", "");
    expect_err(&text, "listen", "listen[3]", "needs a [tls] section");
    let text = with_line("uri", "uri = \"sip:198.51.100.21:5060;transport=tls\"")
        .replace(", \"tls:198.51.100.10:5061\"", "");
    expect_err(&text, "transport=tls", "edge[1].uri", "no tls listener");
    let text = with_line("priority", "");
    expect_err(&text, "[[edge]]", "edge[1]", "missing key `priority`");
    let e = Config::parse("listen = [\"udp:127.0.0.1:5060\"]\n").unwrap_err();
    assert!(e.message.contains("at least one Edge"), "{e}");
}

#[test]
fn syntax_errors_have_a_line() {
    let text = with_line("workers", "workers = ");
    let e = Config::parse(&text).unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn debug_section() {
    assert_eq!(Config::parse(FULL).unwrap().debug, None);
    // An empty section: HEP to the default address, no files.
    let c = Config::parse(&format!("{FULL}\n[debug]\n")).unwrap();
    assert_eq!(c.debug, Some(crate::capture::Settings::default()));
    let text = format!(
        "{FULL}\n[debug]\nhep = \"[::1]:9061\"\npcap = \"/var/log/trunkvip/sip.pcap\"\npcap_max_bytes = 104857600\nkeylog = \"/var/log/trunkvip/tls-keys.log\"\n"
    );
    let c = Config::parse(&text).unwrap();
    let d = c.debug.clone().unwrap();
    assert_eq!(d.hep, Some("[::1]:9061".parse().unwrap()));
    assert_eq!(
        d.pcap.as_deref(),
        Some(Path::new("/var/log/trunkvip/sip.pcap"))
    );
    assert_eq!(d.pcap_max_bytes, 104_857_600);
    assert_eq!(
        d.keylog.as_deref(),
        Some(Path::new("/var/log/trunkvip/tls-keys.log"))
    );
    assert_eq!(Config::parse(&c.render(None)).unwrap(), c);
    let off = Config::parse(&format!("{FULL}\n[debug]\nhep = \"off\"\n")).unwrap();
    assert_eq!(off.debug.unwrap().hep, None);

    let bad = format!("{FULL}\n[debug]\nhep = \"localhost\"\n");
    expect_err(&bad, "hep =", "debug.hep", "not an address and port");
    let bad = format!("{FULL}\n[debug]\npcap_max_bytes = 100\n");
    expect_err(
        &bad,
        "pcap_max_bytes",
        "debug.pcap_max_bytes",
        "out of range",
    );
    let bad = format!("{FULL}\n[debug]\npcap = \"\"\n");
    expect_err(&bad, "pcap =", "debug.pcap", "empty path");
    let bad = format!("{FULL}\n[debug]\npcap = \"/tmp/x\"\nkeylog = \"/tmp/x\"\n");
    expect_err(&bad, "keylog =", "debug.keylog", "same file");
    let bad = format!("{FULL}\n[debug]\nhepp = \"127.0.0.1:9060\"\n");
    expect_err(&bad, "hepp", "debug.hepp", "unknown key");
}

/// The `[vip]` of the issue and deploy/trunkvip-host-a.toml.
const VIP: &str = r#"
[vip]
address = "198.51.100.10/24"
interface = "eth0"
vrid = 51
priority = 150
advert_interval = "50ms"
preempt = true
preempt_delay = "0s"
peers = ["198.51.100.12"]
track_edges_penalty = 100
"#;

/// `FULL` and `VIP` with the line that starts with `prefix` replaced
/// (searched in `[vip]` first).
fn vip_with_line(prefix: &str, replacement: &str) -> String {
    format!(
        "{FULL}{}\n",
        replace_line(VIP, "[vip] ", prefix, replacement)
    )
}

#[test]
fn vip_section_parses() {
    assert_eq!(Config::parse(FULL).unwrap().vip, None);
    let text = format!("{FULL}{VIP}");
    let c = Config::parse(&text).unwrap();
    let v = c.vip.clone().unwrap();
    assert_eq!(v.address, "198.51.100.10/24".parse::<IpNet>().unwrap());
    assert_eq!(v.interface, "eth0");
    assert_eq!((v.vrid, v.priority), (51, 150));
    assert_eq!(v.advert_interval, Duration::from_millis(50));
    assert!(v.preempt);
    assert_eq!(v.preempt_delay, Duration::ZERO);
    assert_eq!(v.peers, vec!["198.51.100.12".parse::<IpAddr>().unwrap()]);
    assert_eq!(v.track_edges_penalty, 100);
    // Defaults of what was left out.
    assert_eq!(v.announce_count, 5);
    assert_eq!(v.announce_spacing, Duration::from_millis(100));
    assert_eq!(v.checksum, trunkvip_vip::ChecksumMode::PseudoHeader);
    // Rendered, it reads back the same.
    let shown = c.render(None);
    assert!(
        shown.contains("\n[vip]\naddress = \"198.51.100.10/24\"\n"),
        "{shown}"
    );
    assert_eq!(Config::parse(&shown).unwrap(), c, "{shown}");

    // The optional keys, multicast, and the no-pseudo-header checksum.
    let text = format!(
        "{FULL}\n[vip]\naddress = \"198.51.100.10/24\"\ninterface = \"ens3\"\nvrid = 7\npriority = 254\n\
         announce_count = 0\nannounce_spacing = \"20ms\"\nchecksum = \"no-pseudo-header\"\npreempt = false\n"
    );
    let c = Config::parse(&text).unwrap();
    let v = c.vip.clone().unwrap();
    assert!(v.peers.is_empty() && !v.preempt);
    assert_eq!(v.advert_interval, Duration::from_secs(1));
    assert_eq!(v.announce_count, 0);
    assert_eq!(v.checksum, trunkvip_vip::ChecksumMode::NoPseudoHeader);
    let shown = c.render(None);
    assert!(shown.contains("# peers: omitted"), "{shown}");
    assert_eq!(Config::parse(&shown).unwrap(), c, "{shown}");

    // IPv6.
    let text = "listen = [\"udp:[2001:db8::10]:5060\"]\nhost_address = \"2001:db8::11\"\n\
                [[edge]]\nname = \"e1\"\nuri = \"sip:[2001:db8::21]:5060\"\npriority = 1\n\
                [vip]\naddress = \"2001:db8::10/64\"\ninterface = \"eth0\"\nvrid = 51\npriority = 100\npeers = [\"2001:db8::12\"]\n";
    let v = Config::parse(text).unwrap().vip.unwrap();
    assert_eq!(v.address.addr(), "2001:db8::10".parse::<IpAddr>().unwrap());
}

#[test]
fn vip_every_key_with_a_bad_value() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (line prefix in [vip], replacement, key, what the message says)
        (
            "address",
            "address = \"198.51.100.10\"",
            "vip.address",
            "no prefix length",
        ),
        (
            "address",
            "address = \"198.51.100.300/24\"",
            "vip.address",
            "not an address with a prefix length",
        ),
        ("address", "address = 10", "vip.address", "invalid type"),
        (
            "address",
            "address = \"198.51.100.0/24\"",
            "vip.address",
            "network's own address",
        ),
        (
            "address",
            "address = \"198.51.100.9/24\"",
            "vip.address",
            "not the address of listen[1]",
        ),
        (
            "address",
            "address = \"224.0.0.18/24\"",
            "vip.address",
            "cannot be a VIP",
        ),
        (
            "interface",
            "interface = \"\"",
            "vip.interface",
            "not an interface name",
        ),
        (
            "interface",
            "interface = \"a-very-long-interface\"",
            "vip.interface",
            "1 to 15",
        ),
        (
            "interface",
            "interface = \"eth0 \"",
            "vip.interface",
            "not an interface name",
        ),
        (
            "interface",
            "interface = 0",
            "vip.interface",
            "invalid type",
        ),
        ("vrid", "vrid = 0", "vip.vrid", "from 1 to 255"),
        ("vrid", "vrid = 256", "vip.vrid", "from 1 to 255"),
        ("vrid", "vrid = \"51\"", "vip.vrid", "invalid type"),
        ("priority", "priority = 0", "vip.priority", "from 1 to 254"),
        (
            "priority",
            "priority = 255",
            "vip.priority",
            "from 1 to 254",
        ),
        (
            "advert_interval",
            "advert_interval = \"5ms\"",
            "vip.advert_interval",
            "10ms to 40950ms",
        ),
        (
            "advert_interval",
            "advert_interval = \"41s\"",
            "vip.advert_interval",
            "10ms to 40950ms",
        ),
        (
            "advert_interval",
            "advert_interval = \"55ms\"",
            "vip.advert_interval",
            "multiple of 10ms",
        ),
        (
            "advert_interval",
            "advert_interval = \"fast\"",
            "vip.advert_interval",
            "invalid duration",
        ),
        (
            "preempt =",
            "preempt = \"yes\"",
            "vip.preempt",
            "invalid type",
        ),
        (
            "preempt_delay",
            "preempt_delay = \"2h\"",
            "vip.preempt_delay",
            "too long",
        ),
        (
            "preempt_delay",
            "preempt_delay = 3",
            "vip.preempt_delay",
            "invalid type",
        ),
        (
            "peers",
            "peers = [\"198.51.100\"]",
            "vip.peers[1]",
            "not an IP address",
        ),
        (
            "peers",
            "peers = [\"2001:db8::12\"]",
            "vip.peers[1]",
            "address family",
        ),
        (
            "peers",
            "peers = [\"198.51.100.10\"]",
            "vip.peers[1]",
            "is the VIP",
        ),
        (
            "peers",
            "peers = [\"198.51.100.11\"]",
            "vip.peers[1]",
            "this host's host_address",
        ),
        (
            "peers",
            "peers = [\"198.51.100.12\", \"198.51.100.12\"]",
            "vip.peers[2]",
            "named twice",
        ),
        (
            "peers",
            "peers = [\"224.0.0.18\"]",
            "vip.peers[1]",
            "cannot be a peer",
        ),
        ("peers", "peers = []", "vip.peers", "empty"),
        (
            "peers",
            "peers = \"198.51.100.12\"",
            "vip.peers",
            "invalid type",
        ),
        (
            "track_edges_penalty",
            "track_edges_penalty = 255",
            "vip.track_edges_penalty",
            "from 0 to 254",
        ),
        (
            "track_edges_penalty",
            "track_edges_penalty = -1",
            "vip.track_edges_penalty",
            "out of range",
        ),
        (
            "track_edges_penalty",
            "announce_count = 101",
            "vip.announce_count",
            "from 0 to 100",
        ),
        (
            "track_edges_penalty",
            "announce_spacing = \"1ms\"",
            "vip.announce_spacing",
            "10ms to 10s",
        ),
        (
            "track_edges_penalty",
            "checksum = \"none\"",
            "vip.checksum",
            "\"pseudo-header\"",
        ),
        (
            "track_edges_penalty",
            "checksum = true",
            "vip.checksum",
            "invalid type",
        ),
        (
            "track_edges_penalty",
            "priorty = 100",
            "vip.priorty",
            "unknown key",
        ),
    ];
    for (prefix, replacement, key, what) in cases {
        let text = vip_with_line(prefix, replacement);
        expect_err(&text, replacement, key, what);
    }
    // A missing key names the section.
    let text = vip_with_line("vrid", "");
    expect_err(&text, "[vip]", "vip", "missing key `vrid`");
}

#[test]
fn vip_is_the_service_address_and_host_address_is_not() {
    // Every listener must bind the VIP: a second one elsewhere is named.
    let text = format!("{FULL}{VIP}").replace("tls:198.51.100.10:5061", "tls:198.51.100.20:5061");
    let e = Config::parse(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("vip.address"), "{e}");
    assert_eq!(
        e.line,
        Some(line_of(&text, "address = \"198.51.100.10/24\"")),
        "{e}"
    );
    assert!(
        e.message.contains("listen[3] (tls:198.51.100.20:5061)"),
        "{e}"
    );
    // host_address is this host's own: not left out, not the VIP, same family.
    let text = format!("{FULL}{VIP}").replace("host_address = \"198.51.100.11\"\n", "");
    expect_err(&text, "[vip]", "vip", "set host_address");
    let text = format!("{FULL}{VIP}").replace(
        "host_address = \"198.51.100.11\"",
        "host_address = \"198.51.100.10\"",
    );
    expect_err(&text, "host_address", "host_address", "is the VIP");
    let text = format!("{FULL}{VIP}").replace(
        "host_address = \"198.51.100.11\"",
        "host_address = \"2001:db8::11\"",
    );
    expect_err(&text, "host_address", "host_address", "address family");
    // An IPv6 VIP always has the pseudo-header.
    let text = "listen = [\"udp:[2001:db8::10]:5060\"]\nhost_address = \"2001:db8::11\"\n\
                [[edge]]\nname = \"e1\"\nuri = \"sip:[2001:db8::21]:5060\"\npriority = 1\n\
                [vip]\naddress = \"2001:db8::10/64\"\ninterface = \"eth0\"\nvrid = 51\npriority = 100\nchecksum = \"no-pseudo-header\"\n";
    expect_err(
        text,
        "checksum",
        "vip.checksum",
        "always carry the pseudo-header",
    );
}

#[test]
fn deploy_configs_check() {
    for host in ["a", "b"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/trunkvip-host-");
        let key = std::env::temp_dir().join(format!("tv-deploy-{}.key", std::process::id()));
        std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
        let text = std::fs::read_to_string(format!("{path}{host}.toml"))
            .unwrap()
            .replace("/etc/trunkvip/pair.key", &key.display().to_string());
        let c = Config::parse(&text).unwrap_or_else(|e| panic!("host {host}: {e}"));
        std::fs::remove_file(&key).unwrap();
        assert!(c.pair.is_some(), "host {host}: [pair]");
        let v = c.vip.expect("[vip]");
        assert_eq!(v.address.addr(), c.listen[0].addr.ip());
        assert_ne!(v.peers[0], c.host_address);
    }
}

/// A `[limits]` with every key, none at its default.
const LIMITS: &str = r#"
[limits]
max_connections = 1000
max_connections_per_source = 50
max_handshaking = 100
handshake_timeout = "3s"
message_timeout = "4s"
idle_timeout = "2m"
max_buffered_bytes = 32768
max_queued_bytes = 2097152
"#;

/// `FULL` and `LIMITS` with the `[limits]` line that starts with
/// `prefix` replaced.
fn limits_with_line(prefix: &str, replacement: &str) -> String {
    format!(
        "{FULL}{}\n",
        replace_line(LIMITS, "[limits] ", prefix, replacement)
    )
}

#[test]
fn limits_section_parses() {
    let d = Config::parse(FULL).unwrap().limits;
    assert_eq!(d, StreamLimits::default());
    // The defaults we ship: one source well below the total.
    assert!(
        d.max_connections_per_source * 10 < d.max_connections,
        "{d:?}"
    );
    assert!(d.max_handshaking < d.max_connections, "{d:?}");
    let c = Config::parse(&format!("{FULL}{LIMITS}")).unwrap();
    let l = c.limits;
    assert_eq!(
        l,
        StreamLimits {
            max_connections: 1000,
            max_connections_per_source: 50,
            max_handshaking: 100,
            handshake_timeout: Duration::from_secs(3),
            message_timeout: Duration::from_secs(4),
            idle_timeout: Duration::from_secs(120),
            max_buffered_bytes: 32768,
            max_queued_bytes: 2 << 20,
        }
    );
    let shown = c.render(None);
    assert!(
        shown.contains("\n[limits]\nmax_connections = 1000\n"),
        "{shown}"
    );
    assert_eq!(Config::parse(&shown).unwrap(), c, "{shown}");
    // One key alone; the others keep their defaults.
    let c = Config::parse(&format!("{FULL}\n[limits]\nidle_timeout = \"30s\"\n")).unwrap();
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.max_connections, d.max_connections);
}

#[test]
fn limits_every_key_with_a_bad_value() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (line prefix in [limits], replacement, key, what the message says)
        (
            "max_connections =",
            "max_connections = 0",
            "limits.max_connections",
            "from 1 to 1000000",
        ),
        (
            "max_connections =",
            "max_connections = \"many\"",
            "limits.max_connections",
            "invalid type",
        ),
        (
            "max_connections =",
            "max_connections = 40",
            "limits.max_connections_per_source",
            "not below max_connections (40)",
        ),
        (
            "max_connections_per_source",
            "max_connections_per_source = 0",
            "limits.max_connections_per_source",
            "from 1 to",
        ),
        (
            "max_connections_per_source",
            "max_connections_per_source = 1000",
            "limits.max_connections_per_source",
            "one source could take every slot",
        ),
        (
            "max_connections_per_source",
            "max_connections_per_source = 2.5",
            "limits.max_connections_per_source",
            "invalid type",
        ),
        (
            "max_handshaking",
            "max_handshaking = 0",
            "limits.max_handshaking",
            "from 1 to",
        ),
        (
            "max_handshaking",
            "max_handshaking = -1",
            "limits.max_handshaking",
            "out of range",
        ),
        (
            "handshake_timeout",
            "handshake_timeout = \"5\"",
            "limits.handshake_timeout",
            "invalid duration",
        ),
        (
            "handshake_timeout",
            "handshake_timeout = 5",
            "limits.handshake_timeout",
            "invalid type",
        ),
        (
            "handshake_timeout",
            "handshake_timeout = \"10ms\"",
            "limits.handshake_timeout",
            "too short: at least 100ms",
        ),
        (
            "handshake_timeout",
            "handshake_timeout = \"1h\"",
            "limits.handshake_timeout",
            "too long: at most 5m",
        ),
        (
            "message_timeout",
            "message_timeout = \"fast\"",
            "limits.message_timeout",
            "invalid duration",
        ),
        (
            "message_timeout",
            "message_timeout = \"0s\"",
            "limits.message_timeout",
            "too short",
        ),
        (
            "message_timeout",
            "message_timeout = \"2h\"",
            "limits.message_timeout",
            "too long: at most 1h",
        ),
        (
            "idle_timeout",
            "idle_timeout = \"500ms\"",
            "limits.idle_timeout",
            "too short: at least 1s",
        ),
        (
            "idle_timeout",
            "idle_timeout = \"25h\"",
            "limits.idle_timeout",
            "too long: at most 24h",
        ),
        (
            "idle_timeout",
            "idle_timeout = true",
            "limits.idle_timeout",
            "invalid type",
        ),
        (
            "max_buffered_bytes",
            "max_buffered_bytes = 100",
            "limits.max_buffered_bytes",
            "from 4096 to 16777216",
        ),
        (
            "max_buffered_bytes",
            "max_buffered_bytes = 99999999",
            "limits.max_buffered_bytes",
            "out of range",
        ),
        (
            "max_buffered_bytes",
            "max_buffered_bytes = \"64k\"",
            "limits.max_buffered_bytes",
            "invalid type",
        ),
        (
            "max_queued_bytes",
            "max_queued_bytes = 1000",
            "limits.max_queued_bytes",
            "from 65536 to 1073741824",
        ),
        (
            "max_queued_bytes",
            "max_queued_bytes = []",
            "limits.max_queued_bytes",
            "invalid type",
        ),
        (
            "max_queued_bytes",
            "max_queud_bytes = 65536",
            "limits.max_queud_bytes",
            "unknown key",
        ),
    ];
    for (prefix, replacement, key, what) in cases {
        let text = limits_with_line(prefix, replacement);
        let needle = if key.ends_with("_per_source") && !replacement.contains("per_source") {
            "max_connections_per_source"
        } else {
            replacement
        };
        expect_err(&text, needle, key, what);
    }
    // max_connections alone, at or below the per-source default.
    let text = format!("{FULL}\n[limits]\nmax_connections = 64\n");
    expect_err(
        &text,
        "max_connections = 64",
        "limits.max_connections",
        "not above max_connections_per_source (64, its default)",
    );
}

#[test]
fn deploy_limits_are_the_defaults() {
    for host in ["a", "b"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/trunkvip-host-");
        let text = std::fs::read_to_string(format!("{path}{host}.toml")).unwrap();
        let start = text
            .find("\n[limits]")
            .expect("[limits] in the deploy file");
        let end = text[start + 1..]
            .find("\n[")
            .map_or(text.len(), |n| start + 1 + n);
        let c = Config::parse(&format!("{FULL}{}", &text[start..end])).unwrap();
        assert_eq!(c.limits, StreamLimits::default(), "host {host}");
    }
}

#[test]
fn carrier_rate_limit() {
    assert_eq!(Config::parse(FULL).unwrap().rate_limit, None);
    let text = with_line("allow", "allow = [\"198.51.100.0/24\"]\nrate_limit = 100");
    let c = Config::parse(&text).unwrap();
    assert_eq!(
        c.rate_limit,
        Some(RateLimit {
            per_second: 100,
            burst: 200
        })
    );
    // Two workers each take half of a source's dialogs and of its limit.
    let r = Resolved {
        edges: vec![found("198.51.100.21:5060", Transport::Udp); 2],
        carriers: vec![ResolvedCarrier {
            index: 0,
            target: found("198.51.100.2:5060", Transport::Udp),
        }],
        edge_ttls: vec![None; 2],
        carrier_ttls: vec![None],
    };
    let pc = c.proxy_config(&r, 5070, 1, true);
    assert_eq!(
        pc.rate_limit,
        Some(RateLimit {
            per_second: 50,
            burst: 100
        })
    );
    let shown = c.render(None);
    assert!(
        shown.contains("rate_limit = 100\nrate_burst = 200\n"),
        "{shown}"
    );
    assert_eq!(Config::parse(&shown).unwrap().rate_limit, c.rate_limit);

    let bad = |extra: &str, needle: &str, key: &str, what: &str| {
        let text = with_line("allow", &format!("allow = [\"198.51.100.0/24\"]\n{extra}"));
        expect_err(&text, needle, key, what);
    };
    bad(
        "rate_limit = 0",
        "rate_limit",
        "carrier.rate_limit",
        "from 1",
    );
    bad(
        "rate_limit = \"fast\"",
        "rate_limit",
        "carrier.rate_limit",
        "invalid type",
    );
    bad(
        "rate_burst = 10",
        "rate_burst",
        "carrier.rate_burst",
        "needs carrier.rate_limit",
    );
    bad(
        "rate_limit = 100\nrate_burst = 10",
        "rate_burst",
        "carrier.rate_burst",
        "below rate_limit",
    );
}

#[test]
fn dns_servers() {
    assert!(Config::parse(FULL).unwrap().dns_servers.is_empty());
    let c = Config::parse(&format!(
        "{FULL}\n[dns]\nservers = [\"127.0.0.1:5353\", \"[2001:db8::53]:53\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.dns_servers,
        [
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        ]
    );
    let shown = c.render(None);
    assert!(
        shown.contains("\n[dns]\nservers = [\"127.0.0.1:5353\", \"[2001:db8::53]:53\"]\n"),
        "{shown}"
    );
    assert_eq!(Config::parse(&shown).unwrap(), c);
    let shown = Config::parse(FULL).unwrap().render(None);
    assert!(shown.contains("\n[dns]\n# servers: omitted"), "{shown}");
}

#[test]
fn dns_every_key_with_a_bad_value() {
    let cases: &[(&str, &str, &str)] = &[
        // (the [dns] line, key, what the message says)
        (
            "servers = [\"127.0.0.1\"]",
            "dns.servers[1]",
            "not an address and port",
        ),
        (
            "servers = [\"127.0.0.1:53\", \"ns.example.com:53\"]",
            "dns.servers[2]",
            "not an address and port",
        ),
        (
            "servers = [\"0.0.0.0:53\"]",
            "dns.servers[1]",
            "cannot be a name server",
        ),
        ("servers = [\"127.0.0.1:0\"]", "dns.servers[1]", "port 0"),
        (
            "servers = [\"127.0.0.1:53\", \"127.0.0.1:53\"]",
            "dns.servers[2]",
            "named twice",
        ),
        ("servers = []", "dns.servers", "empty"),
        ("servers = \"127.0.0.1:53\"", "dns.servers", "invalid type"),
        ("servers = [53]", "dns.servers[1]", "invalid type"),
        ("server = [\"127.0.0.1:53\"]", "dns.server", "unknown key"),
    ];
    for (line, key, what) in cases {
        let text = format!("{FULL}\n[dns]\n{line}\n");
        expect_err(&text, line, key, what);
    }
}

#[test]
fn names_without_port_or_transport_let_dns_pick_the_transport() {
    let t: SipTarget = "sip:carrier.example.com".parse().unwrap();
    assert!(t.dns_picks_transport() && !t.port_given && !t.transport_given);
    for s in [
        "sip:carrier.example.com:5060",
        "sip:carrier.example.com;transport=udp",
        "sips:carrier.example.com",
        "sip:198.51.100.2",
    ] {
        let t: SipTarget = s.parse().unwrap();
        assert!(!t.dns_picks_transport(), "{s}");
    }
    // So a TCP-only proxy takes a carrier name whose NAPTR says TCP, but
    // not a name whose URI says UDP.
    let text = "listen = [\"tcp:198.51.100.10:5060\"]\n[[edge]]\nname = \"e1\"\nuri = \"sip:198.51.100.21;transport=tcp\"\npriority = 1\n[carrier]\nuris = [\"sip:carrier.example.com\"]\n";
    Config::parse(text).unwrap();
    let text = text.replace("sip:carrier.example.com", "sip:carrier.example.com:5060");
    expect_err(
        &text,
        "uris",
        "carrier.uris[1]",
        "no udp listener is configured",
    );
}
