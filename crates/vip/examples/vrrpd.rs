//! A small standalone VIP owner, for lab tests and benchmarks.
//!
//! ```text
//! vrrpd --interface eth0 --vip 198.51.100.10/24 --vrid 51 --priority 150 \
//!       --advert-interval 100ms [--peer 198.51.100.12 ...] [--no-preempt]
//! ```
//!
//! Logs every state change to stdout. Signals: SIGTERM / SIGINT resign
//! gracefully (priority 0, then the VIP is removed); SIGUSR1 marks the
//! tracked service unhealthy (priority less `--track-penalty`), SIGUSR2
//! healthy again.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("vrrpd runs on Linux only");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::IpAddr;
    use std::process::ExitCode;
    use std::time::Duration;

    use clap::Parser;
    use tokio::signal::unix::{signal, SignalKind};
    use trunkvip_vip::linux::{IpNet, RunnerConfig, VipRunner};
    use trunkvip_vip::{AnnounceConfig, ChecksumMode};

    #[derive(Debug, Clone, Copy, clap::ValueEnum)]
    enum Checksum {
        /// With the IPv4 pseudo-header (keepalived's default).
        Pseudo,
        /// Without it (RFC 9568; keepalived's `v3_checksum_as_v2`).
        NoPseudo,
    }

    /// A VRRPv3 VIP owner on one interface.
    #[derive(Debug, Parser)]
    #[command(name = "vrrpd")]
    struct Args {
        /// Interface the VIP lives on.
        #[arg(long, short = 'i')]
        interface: String,
        /// The VIP with its prefix length, e.g. 198.51.100.10/24.
        #[arg(long)]
        vip: IpNet,
        /// Virtual router id.
        #[arg(long, default_value_t = 51)]
        vrid: u8,
        /// Priority, 1-254 (255: address owner).
        #[arg(long, default_value_t = 100)]
        priority: u8,
        /// Advertisement interval: 20ms, 0.1s, 1s, ...
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        advert_interval: Duration,
        /// Unicast peer (repeat for several); none: multicast.
        #[arg(long = "peer")]
        peers: Vec<IpAddr>,
        /// Do not take over from a lower-priority Active.
        #[arg(long)]
        no_preempt: bool,
        /// Wait this long after entering Backup before preempting.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        preempt_delay: Duration,
        /// IPv4 checksum coverage.
        #[arg(long, value_enum, default_value = "pseudo")]
        checksum: Checksum,
        /// Priority penalty while unhealthy (SIGUSR1).
        #[arg(long, default_value_t = 50)]
        track_penalty: u8,
        /// Gratuitous ARPs / NAs per takeover.
        #[arg(long, default_value_t = 5)]
        announce_count: u32,
        /// Time between two announcements.
        #[arg(long, default_value = "100ms", value_parser = parse_duration)]
        announce_spacing: Duration,
        /// Source address of adverts (default: the interface's own).
        #[arg(long)]
        primary: Option<IpAddr>,
    }

    /// Prints a line; a closed stdout is no reason to die mid-handover.
    macro_rules! say {
        ($($t:tt)*) => { say_line(format_args!($($t)*)) };
    }

    fn say_line(line: std::fmt::Arguments<'_>) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn parse_duration(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
            (n, 1e-3)
        } else if let Some(n) = s.strip_suffix('s') {
            (n, 1.0)
        } else {
            (s, 1.0)
        };
        let v: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("bad duration {s:?}: use e.g. 20ms or 1s"))?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("bad duration {s:?}"));
        }
        Ok(Duration::from_secs_f64(v * scale))
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        tracing_subscriber::fmt()
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::io::stdout)
            .init();
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("vrrpd: tokio runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match rt.block_on(run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vrrpd: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
        let mut cfg = RunnerConfig::new(args.interface, args.vip, args.vrid);
        cfg.priority = args.priority;
        cfg.advert_interval = args.advert_interval;
        cfg.preempt = !args.no_preempt;
        cfg.preempt_delay = args.preempt_delay;
        cfg.peers = args.peers;
        cfg.track_penalty = args.track_penalty;
        cfg.checksum_mode = match args.checksum {
            Checksum::Pseudo => ChecksumMode::PseudoHeader,
            Checksum::NoPseudo => ChecksumMode::NoPseudoHeader,
        };
        cfg.announce = AnnounceConfig {
            count: args.announce_count,
            spacing: args.announce_spacing,
        };
        cfg.primary_address = args.primary;

        // Signal handlers before anything can take the VIP.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;

        let (vip, mut task) = VipRunner::spawn(cfg).await?;
        let st = vip.status();
        say!(
            "vrrpd: {} index {} primary {} vip {}",
            st.interface,
            st.interface_index,
            st.primary_address,
            st.vip
        );
        loop {
            tokio::select! {
                _ = term.recv() => { say!("vrrpd: SIGTERM, resigning"); break; }
                _ = int.recv() => { say!("vrrpd: SIGINT, resigning"); break; }
                _ = usr1.recv() => { say!("vrrpd: SIGUSR1, tracked unhealthy"); vip.set_tracked_healthy(false).await; }
                _ = usr2.recv() => { say!("vrrpd: SIGUSR2, tracked healthy"); vip.set_tracked_healthy(true).await; }
                r = &mut task => {
                    // The runner ended on its own: an error.
                    r??;
                    return Ok(());
                }
            }
        }
        vip.shutdown().await;
        task.await??;
        say!("vrrpd: stopped");
        Ok(())
    }
}
