//! trunkvip: the daemon around the sans-IO core of `trunkvip-proxy`.
//!
//! - [`config`]: the TOML file, checked with key and line in every error,
//!   turned into the core's `ProxyConfig`.
//! - [`transport`]: UDP (socket2, IP_FREEBIND), TCP and TLS (tokio-rustls)
//!   around the cores; [`tls`] holds the certificates, reloaded on SIGHUP.
//! - [`worker`]: one `Core` per worker, messages sharded by Call-ID (the
//!   sharding contract is written there).
//! - [`daemon`]: start-up, signals, drain on SIGTERM.
//! - [`dns`] and [`refresh`]: Edge and carrier names (RFC 3263), looked
//!   up at start and again on their TTL and on SIGHUP.
//! - [`admin`]: `GET /status`, `GET /metrics`, and `trunkvip status`.
//! - [`demo`] and [`edge_sim`]: `trunkvip demo`, the proxy in front of two
//!   simulated Edges.
//! - [`certs`]: `trunkvip gen-certs` (rcgen) for development.
//! - [`vip`]: `[vip]`, the floating VIP (VRRPv3, `trunkvip-vip`) with
//!   SIP-aware priority; [`systemd`]: READY, WATCHDOG and STOPPING.
//! - [`capture`]: the debug capture (`[debug]`, `run --debug`): every SIP
//!   message as HEPv3 and pcap, and the TLS key log.

mod admin;
mod capture;
mod certs;
mod cli;
mod config;
mod daemon;
mod demo;
mod dns;
mod edge_sim;
mod logging;
mod pair;
mod refresh;
mod systemd;
mod tls;
mod transport;
mod vip;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::{Config, DEFAULT_PATHS};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, debug } => {
            logging::init(cli.log_format, debug);
            let path = match find_config(config.config) {
                Ok(p) => p,
                Err(e) => return fail(&e),
            };
            let mut config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return fail(&e.to_string()),
            };
            if debug && config.debug.is_none() {
                config.debug = Some(capture::Settings::default());
            }
            let workers = config.workers;
            runtime(workers).block_on(async move {
                let daemon = match daemon::start(config).await {
                    Ok(d) => d,
                    Err(e) => return fail(&e),
                };
                if let Err(e) = daemon.wait_for_signals().await {
                    return fail(&format!("signals: {e}"));
                }
                ExitCode::SUCCESS
            })
        }
        Command::Check { config } => {
            let path = match find_config(config.config) {
                Ok(p) => p,
                Err(e) => return fail(&e),
            };
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return fail(&e.to_string()),
            };
            if let Some(files) = &config.tls {
                if let Err(e) = tls::TlsState::load(files) {
                    return fail(&format!("{}: [tls]: {e}", path.display()));
                }
            }
            let resolved = runtime(1).block_on(config.resolve());
            match resolved {
                Ok(r) => {
                    println!("# {}: OK. The effective configuration:\n", path.display());
                    print!("{}", config.render(Some(&r)));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.in_file(&path).to_string()),
            }
        }
        Command::Status { admin, json } => runtime(1).block_on(async move {
            if json {
                match admin::get(admin, "/status").await {
                    Ok(body) => {
                        print!("{body}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&e),
                }
            } else {
                match admin::fetch_status(admin).await {
                    Ok(r) => {
                        print!("{}", admin::table(&r));
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&e),
                }
            }
        }),
        Command::Demo(args) => {
            logging::init(cli.log_format, args.debug);
            let workers = args
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            runtime(workers).block_on(async move {
                match demo::run(args, workers).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&e),
                }
            })
        }
        Command::GenCerts { out, names } => match certs::generate(&out, &names) {
            Ok(w) => {
                println!(
                    "wrote {} (CA), {} and {} (server: {}), {} and {} (client) — development only",
                    w.ca.display(),
                    w.cert.display(),
                    w.key.display(),
                    names.join(", "),
                    w.client_cert.display(),
                    w.client_key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("trunkvip: {msg}");
    ExitCode::FAILURE
}

/// `--config`, else the first default path that exists.
fn find_config(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    DEFAULT_PATHS
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "no configuration: pass --config FILE or create {}",
                DEFAULT_PATHS.join(" or ")
            )
        })
}

/// The runtime of TCP and TLS, the admin endpoint and signals (UDP is the
/// workers' own threads: crate::worker). One worker: on the calling
/// thread; several: as many threads, for TLS handshakes and streams.
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    let mut b = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    b.enable_all().build().expect("tokio runtime")
}
