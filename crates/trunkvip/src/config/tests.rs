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

/// `FULL` with the line that starts with `prefix` replaced.
fn with_line(prefix: &str, replacement: &str) -> String {
    let mut found = false;
    let out: Vec<String> = FULL
        .lines()
        .map(|l| {
            if !found && l.starts_with(prefix) {
                found = true;
                replacement.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "no line starts with {prefix}");
    out.join("\n") + "\n"
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
        edges: vec!["[2001:db8::21]:5060".parse().unwrap()],
        carriers: vec![],
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
fn sections_not_supported_yet() {
    for section in ["vip", "pair", "debug"] {
        let text = format!("{FULL}\n[{section}]\nsomething = 1\n");
        expect_err(&text, &format!("[{section}]"), section, "not supported yet");
    }
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
