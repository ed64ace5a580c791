//! `trunkvip demo`: the proxy on 127.0.0.1 (UDP and TCP) in front of two
//! simulated Edges in the same process, health checks every second, and
//! a status table every few seconds. No root, no configuration file: the
//! configuration is written here as TOML and read like any other.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::{admin, daemon, edge_sim, worker};

/// The demo's configuration file.
pub fn config_text(args: &DemoArgs, workers: usize) -> String {
    let p = args.port;
    format!(
        r#"listen = ["udp:127.0.0.1:{p}", "tcp:127.0.0.1:{p}"]
host_address = "127.0.0.1"
workers = {workers}

[[edge]]
name = "EDGE-DEMO-01"
uri = "sip:127.0.0.1:{e1};transport=udp"
priority = 1

[[edge]]
name = "EDGE-DEMO-02"
uri = "sip:127.0.0.1:{e2};transport=udp"
priority = 2

[health_check]
interval = "1s"
timeout = "500ms"
failure_threshold = 2
recovery_threshold = 2
failover_after = "250ms"

[admin]
listen = "{admin}"
"#,
        e1 = args.edge_ports[0],
        e2 = args.edge_ports[1],
        admin = args.admin,
    )
}

pub async fn run(args: DemoArgs, workers: usize) -> Result<(), String> {
    if args.edge_ports.len() != 2 {
        return Err("--edge-ports takes two ports, e.g. 5071,5072".into());
    }
    let ring = Duration::from_millis(args.ring_ms);
    for (n, port) in args.edge_ports.iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let name = format!("EDGE-DEMO-0{}", n + 1);
        edge_sim::start(&name, addr, ring)
            .await
            .map_err(|e| format!("simulated Edge {name} on {addr}: {e}"))?;
    }
    let config = Config::parse(&config_text(&args, workers))
        .map_err(|e| format!("demo configuration: {e}"))?;
    let d = daemon::start(config).await?;
    let p = args.port;
    println!(
        "\ntrunkvip demo: the proxy listens on 127.0.0.1:{p} (UDP and TCP), in front of\n\
         two simulated Edges: EDGE-DEMO-01 (priority 1) on 127.0.0.1:{} and\n\
         EDGE-DEMO-02 (priority 2) on 127.0.0.1:{}, probed with OPTIONS every second.\n\n\
         Call it with SIPp (Debian package sip-tester):\n\
         \x20   sipp -sn uac 127.0.0.1:{p} -r 10 -m 100            # over UDP\n\
         \x20   sipp -sn uac 127.0.0.1:{p} -r 10 -m 100 -t t1      # over TCP\n\
         Status: trunkvip status --admin {}   (or curl http://{}/status, /metrics)\n\
         Ctrl-C to stop.\n",
        args.edge_ports[0], args.edge_ports[1], d.admin, d.admin
    );
    if args.table_every > 0 {
        let transports = d.transports.clone();
        let every = Duration::from_secs(args.table_every);
        tokio::spawn(async move {
            // Give the first probes time to answer.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            loop {
                let snaps = worker::snapshots(&transports).await;
                println!("{}", admin::table(&admin::report(&transports, &snaps)));
                tokio::time::sleep(every).await;
            }
        });
    }
    d.wait_for_signals().await.map_err(|e| e.to_string())
}
