//! Starting and stopping: binds the sockets, starts the workers, the
//! receive and accept tasks and the admin endpoint; then waits for
//! signals. SIGTERM (or Ctrl-C) first gives up the VIP (with `[vip]`: a
//! priority-0 advert, then the address removed), then drains: new dialogs
//! get 503, transactions in flight finish, and the process exits when none
//! is left or after [`DRAIN_LIMIT`].
//!
//! Edge and carrier host names are resolved at start, then looked up again
//! on their TTL (clamped to 30 s..1 h) by [`crate::refresh`]: new
//! Edge-originated calls follow a carrier name's new answer, calls in
//! progress stay where they are, a failed lookup keeps the last good
//! answer; an Edge name that resolves elsewhere is only reported (restart
//! to follow it). A carrier's new addresses also get its TLS name and the
//! configured hosts' exemption from the connection limits.
//!
//! SIGHUP reloads the TLS certificates and looks every name up again at
//! once, with a new resolver (an empty cache, `/etc/resolv.conf` read
//! again).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{info, warn};
use trunkvip_proxy::{Core, Transport};

use crate::config::{Config, TargetHost};
use crate::tls::TlsState;
use crate::transport::{stream, udp, Transports};
use crate::worker;

/// The longest a drain waits for transactions in flight (64*T1 = 32 s,
/// the life of a non-INVITE transaction).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(32);

/// A running proxy.
#[derive(Debug)]
pub struct Daemon {
    pub transports: Arc<Transports>,
    pub admin: SocketAddr,
    /// The task that looks names up again.
    pub names: Arc<crate::refresh::Shared>,
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    udp::set_freebind(&sock, addr)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// The socket probes leave from: `host_address` on the UDP service port,
/// or on any port when that is taken (one host with no VIP, where
/// `host_address` is the service address itself).
fn bind_host_socket(config: &Config) -> io::Result<(Option<std::net::UdpSocket>, u16)> {
    let port = config.listen_addr(Transport::Udp).map(|a| a.port());
    let Some(port) = port else {
        // No UDP at all: probes go over TCP or TLS from host_address.
        return Ok((None, config.listen[0].addr.port()));
    };
    let want = SocketAddr::new(config.host_address, port);
    let sock = if Some(want) == config.listen_addr(Transport::Udp) {
        udp::bind(SocketAddr::new(config.host_address, 0), false)?
    } else {
        match udp::bind(want, false) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                udp::bind(SocketAddr::new(config.host_address, 0), false)?
            }
            Err(e) => return Err(e),
        }
    };
    let port = sock.local_addr()?.port();
    Ok((Some(sock), port))
}

/// Binds everything and starts the tasks on the current runtime.
pub async fn start(config: Config) -> Result<Daemon, String> {
    let resolved = config.resolve().await.map_err(|e| e.to_string())?;
    // Before TLS, whose configurations take the key log from it.
    if let Some(d) = &config.debug {
        crate::capture::start(d, crate::capture::capture_id(config.host_address))?;
        info!(
            "debug capture on: HEP to {}, pcap {}, TLS key log {}",
            d.hep.map_or_else(|| "off".to_owned(), |a| a.to_string()),
            d.pcap
                .as_ref()
                .map_or_else(|| "off".to_owned(), |p| p.display().to_string()),
            d.keylog
                .as_ref()
                .map_or_else(|| "off".to_owned(), |p| p.display().to_string()),
        );
    }
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(TlsState::load(files)?)),
        None => None,
    };
    let mut udp_socks = vec![];
    let mut listeners = vec![];
    for l in &config.listen {
        let err = |e: io::Error| format!("listen {l}: {e}");
        match l.transport {
            Transport::Udp => {
                udp_socks.extend(udp::bind_group(l.addr, config.workers).map_err(err)?);
            }
            t => listeners.push((bind_tcp(l.addr).map_err(err)?, t)),
        }
    }
    let (host_sock, host_port) = bind_host_socket(&config)
        .map_err(|e| format!("host_address {}: {e}", config.host_address))?;
    let admin_listener = TcpListener::bind(config.admin)
        .await
        .map_err(|e| format!("admin listen {}: {e}", config.admin))?;
    let admin = admin_listener.local_addr().map_err(|e| e.to_string())?;

    let mut instance = [0u8; 4];
    getrandom::fill(&mut instance).map_err(|e| format!("random instance: {e}"))?;
    let instance = u32::from_ne_bytes(instance);

    let mut handles = vec![];
    let mut inboxes = vec![];
    for _ in 0..config.workers {
        let (h, i) = worker::channel();
        handles.push(h);
        inboxes.push(i);
    }
    let mut edge_names = HashMap::new();
    let mut tls_names = HashMap::new();
    // A TLS peer found through NAPTR or SRV still shows a certificate for
    // the URI's domain (RFC 5922), not for the SRV target.
    for (e, f) in config.edges.iter().zip(&resolved.edges) {
        edge_names.insert(f.address, e.name.clone());
        if let TargetHost::Name(n) = &e.target.host {
            if let Ok(sn) = ServerName::try_from(n.clone()) {
                tls_names.insert(f.address, sn);
            }
        }
    }
    for c in &resolved.carriers {
        if let TargetHost::Name(n) = &config.carriers[c.index].host {
            if let Ok(sn) = ServerName::try_from(n.clone()) {
                tls_names.insert(c.target.address, sn);
            }
        }
    }
    // The configured hosts, every target of every carrier URI included,
    // are never starved by others' connections. Both this and tls_names
    // follow a carrier name looked up again (crate::refresh).
    let trusted = resolved
        .edges
        .iter()
        .chain(resolved.carriers.iter().map(|c| &c.target));
    let trusted = trusted.map(|f| f.address.ip());
    let transports = Arc::new(Transports {
        workers: handles,
        conns: stream::Registry::new(config.limits, trusted),
        tls,
        service: config
            .listen
            .iter()
            .map(|l| (l.transport, l.addr))
            .collect(),
        host_address: config.host_address,
        limits: trunkvip_sip::Limits::default(),
        edge_names,
        tls_names: std::sync::RwLock::new(tls_names),
        edge_ips: resolved.edges.iter().map(|f| f.address.ip()).collect(),
        carrier_allow: config.carrier_allow.clone(),
        draining: AtomicBool::new(false),
        inbox_full: Default::default(),
    });

    if let Some(p) = &config.pair {
        let _ = crate::pair::LINK.set(crate::pair::spawn(p.clone(), transports.workers.clone()));
        info!(peer = %p.peer, listen = %p.listen, "pair sync with {}", p.peer);
    }
    // Each worker reads its own service socket; the host socket, whose
    // datagrams all belong to the probing worker, is worker 0's.
    let mut host = host_sock;
    let mut service = udp_socks.into_iter();
    let mut workers = vec![];
    for (n, inbox) in inboxes.into_iter().enumerate() {
        let pc = config.proxy_config(&resolved, host_port, instance, n == 0);
        let core = Core::new(pc, worker::now()).map_err(|e| format!("configuration: {e}"))?;
        let direct = worker::DirectUdp {
            service: service.next(),
            host: host.take(),
        };
        workers.push((core, inbox, direct));
    }
    worker::start(
        workers,
        transports.clone(),
        tokio::runtime::Handle::current(),
    )
    .map_err(|e| format!("workers: {e}"))?;
    for (l, t) in listeners {
        tokio::spawn(stream::accept(l, transports.clone(), t));
    }
    let names = crate::refresh::spawn(config.clone(), &resolved, transports.clone());
    tokio::spawn(crate::admin::serve(
        admin_listener,
        transports.clone(),
        names.clone(),
    ));
    // Last, once everything is bound (the listeners with IP_FREEBIND, so
    // a Backup listens on the VIP too): from here on this host may hold it.
    if let Some(v) = &config.vip {
        crate::vip::start(v, config.host_address)
            .await?
            .follow_holder(transports.clone());
    }
    crate::systemd::spawn_watchdog(transports.clone());

    for l in &config.listen {
        info!("listening on {l}");
    }
    info!(
        "{} Edge(s), {} worker(s), probes from {}, admin on http://{admin}/status",
        config.edges.len(),
        config.workers,
        SocketAddr::new(config.host_address, host_port)
    );
    crate::systemd::ready("listening");
    Ok(Daemon {
        transports,
        admin,
        names,
    })
}

impl Daemon {
    /// Waits for SIGTERM or SIGINT, then drains; SIGHUP reloads TLS and
    /// looks every name up again.
    pub async fn wait_for_signals(&self) -> io::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: draining"); break }
                _ = int.recv() => { info!("interrupted: draining (again to quit at once)"); break }
                _ = hup.recv() => {
                    self.reload_tls();
                    self.relookup();
                }
            }
        }
        crate::systemd::stopping();
        // The VIP first (priority 0, then removed): the peer takes new
        // calls at once while this host finishes what it has.
        crate::vip::resign().await;
        if crate::vip::get().is_some() {
            // Also told by the VIP watcher; here it is certain before the
            // drain starts.
            self.transports
                .broadcast(None, || worker::Control::Serving(false));
        }
        tokio::select! {
            _ = self.drain() => {}
            _ = int.recv() => info!("interrupted again: quitting"),
            _ = term.recv() => info!("SIGTERM again: quitting"),
        }
        Ok(())
    }

    pub fn reload_tls(&self) {
        match &self.transports.tls {
            Some(t) => match t.reload() {
                Ok(()) => info!("SIGHUP: TLS certificates reloaded"),
                Err(e) => warn!("SIGHUP: TLS certificates not reloaded, the old ones stay: {e}"),
            },
            None => info!("SIGHUP: no [tls] to reload"),
        }
    }

    /// Looks every Edge and carrier name up again now (SIGHUP).
    pub fn relookup(&self) {
        info!("SIGHUP: looking every Edge and carrier name up again");
        self.names.relookup();
    }

    /// New dialogs get 503; returns when no transaction is in flight or
    /// after [`DRAIN_LIMIT`].
    pub async fn drain(&self) {
        self.transports.draining.store(true, Ordering::Relaxed);
        self.transports.broadcast(None, || worker::Control::Drain);
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        loop {
            let n: usize = worker::snapshots(&self.transports)
                .await
                .iter()
                .map(|s| s.in_flight)
                .sum();
            if n == 0 {
                info!("drained: no transaction in flight");
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!("{n} transaction(s) still in flight after {DRAIN_LIMIT:?}: quitting");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
