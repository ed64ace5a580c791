//! Shared by the integration tests: the real binary, SIPp and stunnel as
//! child processes on loopback, each killed when its guard drops (so a
//! failing test leaves nothing behind), every wait bounded.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const TRUNKVIP: &str = env!("CARGO_BIN_EXE_trunkvip");

/// The network-namespace lab of a trunkvip pair (root).
#[cfg(target_os = "linux")]
pub mod lab;

/// A child process killed on drop.
#[derive(Debug)]
pub struct Child {
    pub name: String,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Child {
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Child {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Child {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- last lines of {} ---\n{}", self.name, tail.join("\n"))
    }

    /// Waits at most `limit` for the process to end.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trunkvip-test-")
        .tempdir()
        .expect("temp dir")
}

/// Development certificates from `trunkvip gen-certs` in `dir/certs`
/// (CA, server, client); returns that folder.
pub fn gen_certs(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    let out = Command::new(TRUNKVIP)
        .args(["gen-certs", "--out"])
        .arg(&certs)
        .output()
        .expect("gen-certs");
    assert!(out.status.success(), "{out:?}");
    certs
}

/// `trunkvip run` with this configuration text.
pub fn trunkvip(config: &str, dir: &Path) -> Child {
    let path = dir.join("trunkvip.toml");
    std::fs::write(&path, config).expect("write config");
    Child::spawn(
        "trunkvip",
        Command::new(TRUNKVIP)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info"),
        dir,
    )
}

/// `GET path` on the admin endpoint: (status code, body).
pub fn http_get(admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

pub fn status(admin: SocketAddr) -> Option<serde_json::Value> {
    let (code, body) = http_get(admin, "/status")?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Waits until the Edges' health is `want` (in config order).
pub fn wait_health(admin: SocketAddr, want: &[bool], limit: Duration, proxy: &mut Child) {
    let end = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < end {
        if let Some(s) = proxy.child.try_wait().expect("try_wait") {
            panic!(
                "trunkvip exited ({s}) before its Edges were ready\n{}",
                proxy.log()
            );
        }
        if let Some(s) = status(admin) {
            let got: Vec<bool> = s["edges"]
                .as_array()
                .map(|a| a.iter().map(|e| e["healthy"] == true).collect())
                .unwrap_or_default();
            if got == want {
                return;
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "Edges never reached health {want:?} in {limit:?}; last status: {last:#?}\n{}",
        proxy.log()
    );
}

/// `sipp -sn uas -aa` on 127.0.0.1:port.
pub fn sipp_uas(name: &str, port: u16, tcp: bool, dir: &Path) -> Child {
    sipp_uas_on("127.0.0.1", name, port, tcp, dir)
}

/// `sipp -sn uas -aa` on ip:port.
pub fn sipp_uas_on(ip: &str, name: &str, port: u16, tcp: bool, dir: &Path) -> Child {
    let mut cmd = Command::new("sipp");
    cmd.args(["-sn", "uas", "-aa", "-nostdin", "-i", ip, "-p"])
        .arg(port.to_string());
    if tcp {
        cmd.args(["-t", "t1"]);
    }
    Child::spawn(name, &mut cmd, dir)
}

/// The result of a SIPp uac run.
#[derive(Debug)]
pub struct Calls {
    pub exit: Option<ExitStatus>,
    pub successful: u64,
    pub failed: u64,
    pub log: String,
}

/// Runs SIPp's built-in uac scenario against 127.0.0.1:target, bounded.
pub fn sipp_uac(
    target: u16,
    calls: u32,
    rate: u32,
    tcp: bool,
    dir: &Path,
    limit: Duration,
) -> Calls {
    sipp_uac_on("127.0.0.1", target, calls, rate, tcp, dir, limit)
}

/// The same from and to `ip`.
pub fn sipp_uac_on(
    ip: &str,
    target: u16,
    calls: u32,
    rate: u32,
    tcp: bool,
    dir: &Path,
    limit: Duration,
) -> Calls {
    let local = free_port();
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let stats = dir.join(format!("uac-{local}.csv"));
    let mut cmd = Command::new("sipp");
    cmd.args(["-sn", "uac", "-nostdin", "-i", ip, "-p"])
        .arg(local.to_string())
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-trace_stat", "-stf"])
        .arg(&stats)
        .args(["-fd", "1", "-trace_err", "-error_file"])
        .arg(dir.join(format!("uac-{local}-errors.log")))
        .args(["-timeout", &format!("{}s", limit.as_secs())])
        .arg(format!("{host}:{target}"));
    if tcp {
        cmd.args(["-t", "t1"]);
    }
    let mut uac = Child::spawn(&format!("uac-{local}"), &mut cmd, dir);
    let exit = uac.wait_for(limit + Duration::from_secs(5));
    if exit.is_none() {
        uac.kill();
    }
    let (successful, failed) = read_stats(&stats).unwrap_or((0, u64::MAX));
    let errors =
        std::fs::read_to_string(dir.join(format!("uac-{local}-errors.log"))).unwrap_or_default();
    let errors: String = errors.chars().take(4000).collect();
    Calls {
        exit,
        successful,
        failed,
        log: format!("{}\n--- SIPp errors ---\n{errors}", uac.log()),
    }
}

/// SuccessfulCall(C) and FailedCall(C) of the last line of SIPp's
/// statistics file.
fn read_stats(path: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let col = |name: &str| -> Option<u64> {
        let n = head.iter().position(|h| *h == name)?;
        last.get(n)?.trim().parse().ok()
    };
    Some((col("SuccessfulCall(C)")?, col("FailedCall(C)")?))
}

/// Asserts every call succeeded.
pub fn assert_all_good(calls: &Calls, expected: u64, proxy: &Child) {
    assert!(
        calls.exit.is_some_and(|s| s.success())
            && calls.failed == 0
            && calls.successful == expected,
        "SIPp: {calls:#?}\n{}\n{}",
        calls.log,
        proxy.log()
    );
}

/// A configuration with two Edges on 127.0.0.1.
pub fn config(listen: &[String], edges: &[(u16, &str)], admin: SocketAddr, extra: &str) -> String {
    config_on("127.0.0.1", listen, edges, admin, extra)
}

/// A configuration with Edges on `ip` (`127.0.0.1` or `::1`).
pub fn config_on(
    ip: &str,
    listen: &[String],
    edges: &[(u16, &str)],
    admin: SocketAddr,
    extra: &str,
) -> String {
    let listen: Vec<String> = listen.iter().map(|l| format!("{l:?}")).collect();
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let mut c = format!(
        "listen = [{}]\nhost_address = \"{ip}\"\nworkers = 2\n\n",
        listen.join(", ")
    );
    for (n, (port, transport)) in edges.iter().enumerate() {
        c += &format!(
            "[[edge]]\nname = \"EDGE-{}\"\nuri = \"sip:{host}:{port};transport={transport}\"\npriority = {}\n\n",
            n + 1,
            n + 1
        );
    }
    c += &format!(
        "[health_check]\ninterval = \"300ms\"\ntimeout = \"200ms\"\nfailure_threshold = 2\nrecovery_threshold = 1\nfailover_after = \"250ms\"\n\n[admin]\nlisten = \"{admin}\"\n\n{extra}"
    );
    c
}

pub fn admin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The value of one series in Prometheus text, e.g.
/// `trunkvip_connections_refused_total{transport="tcp",reason="carrier_allow"}`.
pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A process's resident memory, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
