//! The admin endpoint (HTTP/1.1 through hyper): `GET /status` (JSON) and
//! `GET /metrics` (Prometheus text), and the client side of
//! `trunkvip status`.
//!
//! Edge health and probe round trips come from worker 0, which probes;
//! active dialogs are summed over the workers. In `/metrics` each core's
//! series carry a `worker` label (sum them with `sum without (worker)`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::refresh::Shared;
use crate::transport::Transports;
use crate::worker::{snapshots, Snapshot};

/// The body of `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub workers: usize,
    /// Transactions in flight, all workers.
    pub in_flight: usize,
    /// True after SIGTERM: new dialogs get 503.
    pub draining: bool,
    pub edges: Vec<EdgeRow>,
    /// The floating VIP, with `[vip]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<crate::vip::Report>,
    /// Each carrier URI's current targets and its last lookup (names are
    /// looked up again on their TTL: `crate::refresh`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carriers: Vec<crate::refresh::CarrierRow>,
}

/// One Edge of `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeRow {
    pub name: String,
    pub uri: String,
    pub priority: u8,
    pub weight: u32,
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Round trip of the last answered probe, milliseconds.
    pub last_rtt_ms: Option<f64>,
    pub active_dialogs: usize,
}

/// Puts the workers' snapshots together.
pub fn report(transports: &Transports, snaps: &[Snapshot]) -> StatusReport {
    let mut edges: Vec<EdgeRow> = snaps
        .first()
        .map(|s| {
            s.status
                .iter()
                .map(|e| EdgeRow {
                    name: e.name.clone(),
                    uri: e.uri.clone(),
                    priority: e.priority,
                    weight: e.weight,
                    healthy: e.healthy,
                    consecutive_failures: e.consecutive_failures,
                    consecutive_successes: e.consecutive_successes,
                    last_rtt_ms: e.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
                    active_dialogs: 0,
                })
                .collect()
        })
        .unwrap_or_default();
    for s in snaps {
        for (row, e) in edges.iter_mut().zip(&s.status) {
            row.active_dialogs += e.active_dialogs;
        }
    }
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        workers: transports.workers.len(),
        in_flight: snaps.iter().map(|s| s.in_flight).sum(),
        draining: transports.draining.load(Ordering::Relaxed),
        edges,
        vip: crate::vip::report(),
        carriers: vec![],
    }
}

/// The table `trunkvip status` and the demo print.
pub fn table(r: &StatusReport) -> String {
    let mut rows = vec![[
        "EDGE".to_string(),
        "URI".into(),
        "PRIO".into(),
        "STATE".into(),
        "FAILS".into(),
        "OKS".into(),
        "LAST RTT".into(),
        "DIALOGS".into(),
    ]];
    for e in &r.edges {
        rows.push([
            e.name.clone(),
            e.uri.clone(),
            e.priority.to_string(),
            if e.healthy { "Healthy" } else { "Unhealthy" }.into(),
            e.consecutive_failures.to_string(),
            e.consecutive_successes.to_string(),
            e.last_rtt_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms:.2} ms")),
            e.active_dialogs.to_string(),
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (n, (c, w)) in r.iter().zip(widths).enumerate() {
            // Numbers to the right, text to the left.
            if matches!(n, 2 | 4 | 5 | 6 | 7) {
                let _ = write!(line, "{c:>w$}  ");
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "workers: {}  transactions in flight: {}{}",
        r.workers,
        r.in_flight,
        if r.draining { "  DRAINING" } else { "" }
    );
    if let Some(v) = &r.vip {
        out.push_str(&crate::vip::table(v));
    }
    out.push_str(&carriers_table(r, SystemTime::now()));
    out
}

/// The carrier URIs that are names: their targets and last lookup.
fn carriers_table(r: &StatusReport, now: SystemTime) -> String {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut out = String::new();
    for c in &r.carriers {
        let Some(at) = c.looked_up_unix else { continue };
        let _ = write!(
            out,
            "carrier {}: {} (looked up {} s ago",
            c.uri,
            c.targets.join(", "),
            now.saturating_sub(at)
        );
        match &c.error {
            Some(e) => {
                let _ = writeln!(out, ", FAILED, last good answer kept: {e})");
            }
            None => out.push_str(")\n"),
        }
    }
    out
}

/// Prometheus text: the cores' series, each with a `worker` label and
/// each family once, then the daemon's own.
pub fn metrics(transports: &Transports, snaps: &[Snapshot]) -> String {
    // family name -> (TYPE/HELP lines, samples), in order of appearance
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = vec![];
    for (worker, s) in snaps.iter().enumerate() {
        let mut current: Option<usize> = None;
        for line in s.metrics.lines() {
            if let Some(rest) = line
                .strip_prefix("# TYPE ")
                .or_else(|| line.strip_prefix("# HELP "))
            {
                let name = rest.split_whitespace().next().unwrap_or_default();
                let n = match families.iter().position(|f| f.0 == name) {
                    Some(n) => n,
                    None => {
                        families.push((name.to_owned(), vec![], vec![]));
                        families.len() - 1
                    }
                };
                if worker == 0 && !families[n].1.iter().any(|l| l == line) {
                    families[n].1.push(line.to_owned());
                }
                current = Some(n);
            } else if line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                let sample = with_label(line, "worker", &worker.to_string());
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let n = match current {
                    Some(n) if name.starts_with(families[n].0.as_str()) => n,
                    _ => match families.iter().position(|f| f.0 == name) {
                        Some(n) => n,
                        None => {
                            families.push((name.to_owned(), vec![], vec![]));
                            families.len() - 1
                        }
                    },
                };
                families[n].2.push(sample);
            }
        }
    }
    let mut out = String::new();
    for (_, head, samples) in &families {
        for l in head.iter().chain(samples) {
            out.push_str(l);
            out.push('\n');
        }
    }
    let draining = u8::from(transports.draining.load(Ordering::Relaxed));
    let in_flight: usize = snaps.iter().map(|s| s.in_flight).sum();
    let _ = write!(
        out,
        "# TYPE trunkvip_workers gauge\ntrunkvip_workers {}\n\
         # TYPE trunkvip_connections gauge\ntrunkvip_connections {}\n\
         # TYPE trunkvip_in_flight gauge\ntrunkvip_in_flight {in_flight}\n\
         # TYPE trunkvip_draining gauge\ntrunkvip_draining {draining}\n\
         # TYPE trunkvip_inbox_full_drops_total counter\n\
         trunkvip_inbox_full_drops_total {}\n",
        transports.workers.len(),
        transports.conns.len(),
        transports.inbox_full.load(Ordering::Relaxed),
    );
    transports.conns.metrics(&mut out);
    crate::capture::metrics(&mut out);
    crate::vip::metrics(&mut out);
    if let Some(link) = crate::pair::LINK.get() {
        link.counters.prometheus(&mut out);
    }
    out
}

/// Adds `name="value"` to a sample line.
fn with_label(line: &str, name: &str, value: &str) -> String {
    match line.find(['{', ' ']) {
        Some(n) if line.as_bytes()[n] == b'{' => {
            let close = line[n..].find('}').map_or(n + 1, |c| n + c);
            let sep = if close == n + 1 { "" } else { "," };
            format!("{}{{{name}=\"{value}\"{sep}{}", &line[..n], &line[n + 1..])
        }
        Some(n) => format!("{}{{{name}=\"{value}\"}}{}", &line[..n], &line[n..]),
        None => line.to_owned(),
    }
}

async fn handle(
    req: Request<Incoming>,
    transports: Arc<Transports>,
    names: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("valid response")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/status" => {
            let snaps = snapshots(&transports).await;
            let mut r = report(&transports, &snaps);
            r.carriers = names.rows();
            let body = serde_json::to_string_pretty(&r).unwrap_or_default() + "\n";
            reply(StatusCode::OK, "application/json", body)
        }
        "/metrics" => {
            let snaps = snapshots(&transports).await;
            let mut text = metrics(&transports, &snaps);
            names.metrics(&mut text);
            reply(StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /status or /metrics\n".into(),
        ),
    })
}

/// Serves the admin endpoint until the process ends.
pub async fn serve(listener: TcpListener, transports: Arc<Transports>, names: Arc<Shared>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("admin accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let transports = transports.clone();
        let names = names.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, transports.clone(), names.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                debug!(%peer, "admin connection: {e}");
            }
        });
    }
}

/// `GET path` on the admin endpoint; the body on 200.
pub async fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let work = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            format!("cannot reach the admin endpoint at {addr}: {e} (is trunkvip running?)")
        })?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", addr.to_string())
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != StatusCode::OK {
            return Err(format!("{addr}{path}: {status}: {body}"));
        }
        Ok(body)
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| format!("{addr}: no answer in 5 s"))?
}

/// Reads `GET /status`.
pub async fn fetch_status(addr: SocketAddr) -> Result<StatusReport, String> {
    let body = get(addr, "/status").await?;
    serde_json::from_str(&body).map_err(|e| format!("{addr}/status: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(with_label("a 1", "w", "0"), "a{w=\"0\"} 1");
        assert_eq!(with_label("a{} 1", "w", "0"), "a{w=\"0\"} 1");
        assert_eq!(with_label("a{b=\"x\"} 1", "w", "2"), "a{w=\"2\",b=\"x\"} 1");
    }

    #[test]
    fn table_lines_up() {
        let r = StatusReport {
            version: "0".into(),
            workers: 2,
            in_flight: 3,
            draining: false,
            vip: None,
            carriers: vec![],
            edges: vec![EdgeRow {
                name: "EDGE-PROD-01".into(),
                uri: "sip:198.51.100.21:5060;transport=udp".into(),
                priority: 1,
                weight: 1,
                healthy: true,
                consecutive_failures: 0,
                consecutive_successes: 5,
                last_rtt_ms: Some(1.25),
                active_dialogs: 7,
            }],
        };
        let t = table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("EDGE "), "{t}");
        assert!(
            lines[1].contains("Healthy") && lines[1].contains("1.25 ms"),
            "{t}"
        );
        assert_eq!(lines[0].find("URI"), lines[1].find("sip:"), "{t}");
    }

    #[test]
    fn carriers_in_status_are_additive() {
        let mut r = StatusReport {
            version: "0".into(),
            workers: 1,
            in_flight: 0,
            draining: false,
            vip: None,
            carriers: vec![],
            edges: vec![],
        };
        // Without names to show, the JSON is as before.
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("carriers").is_none(), "{json}");
        let old: StatusReport = serde_json::from_str(
            r#"{"version":"0","workers":1,"in_flight":0,"draining":false,"edges":[]}"#,
        )
        .unwrap();
        assert_eq!(old, r);
        let row = |uri: &str, looked_up_unix, error: Option<&str>| crate::refresh::CarrierRow {
            uri: uri.into(),
            targets: vec![
                "udp 198.51.100.2:5060".into(),
                "tcp 198.51.100.3:5060".into(),
            ],
            looked_up_unix,
            next_lookup_in_s: looked_up_unix.map(|_| 30),
            error: error.map(Into::into),
            failures: 0,
            changes: 0,
        };
        r.carriers = vec![
            row("sip:carrier.example.com", Some(990), None),
            row("sip:198.51.100.7", None, None),
            row("sip:other.example.com", Some(995), Some("timed out")),
        ];
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["carriers"][0]["looked_up_unix"], 990);
        let t = carriers_table(&r, UNIX_EPOCH + Duration::from_secs(1000));
        assert_eq!(
            t,
            "carrier sip:carrier.example.com: udp 198.51.100.2:5060, tcp 198.51.100.3:5060 \
             (looked up 10 s ago)\n\
             carrier sip:other.example.com: udp 198.51.100.2:5060, tcp 198.51.100.3:5060 \
             (looked up 5 s ago, FAILED, last good answer kept: timed out)\n"
        );
    }
}
