//! The command line (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;

/// trunkvip: a SIP-aware proxy between a carrier and a contact centre's
/// SIP trunk endpoints (Edges).
#[derive(Debug, Parser)]
#[command(name = "trunkvip", version, about, long_about = None)]
pub struct Cli {
    /// Log lines as text or as JSON objects (stderr).
    #[arg(long, value_enum, global = true, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Log every SIP message (debug level) and, when the file has no
        /// [debug] section, capture every message as HEPv3 to
        /// 127.0.0.1:9060 (see docs/debug.md).
        #[arg(long)]
        debug: bool,
    },
    /// Check a configuration file and print the effective configuration.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show the Edges of a running trunkvip and, with [vip], its VRRP role,
    /// priority and the peer last heard (from its admin endpoint).
    Status {
        /// The admin endpoint.
        #[arg(long, default_value = crate::config::DEFAULT_ADMIN)]
        admin: SocketAddr,
        /// Print the JSON of GET /status instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The proxy on 127.0.0.1:5060 (UDP and TCP) in front of two
    /// simulated Edges in this process: no root, no configuration.
    Demo(DemoArgs),
    /// Write development TLS certificates (CA, server, client) with rcgen.
    GenCerts {
        /// The directory to write into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Names and addresses for the server certificate.
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1", "::1"])]
        names: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The configuration file (default: ./trunkvip.toml, then
    /// /etc/trunkvip/trunkvip.toml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The proxy's port on 127.0.0.1 (UDP and TCP).
    #[arg(long, default_value_t = 5060)]
    pub port: u16,
    /// The ports of the two simulated Edges (priority 1, then 2).
    #[arg(long, value_delimiter = ',', default_values_t = [5071, 5072])]
    pub edge_ports: Vec<u16>,
    /// The admin endpoint.
    #[arg(long, default_value = crate::config::DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// Workers (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seconds between status tables; 0: none.
    #[arg(long, default_value_t = 5)]
    pub table_every: u64,
    /// How long the simulated Edges ring before answering, in ms.
    #[arg(long, default_value_t = 0)]
    pub ring_ms: u64,
    /// Log every SIP message (debug level).
    #[arg(long)]
    pub debug: bool,
}
