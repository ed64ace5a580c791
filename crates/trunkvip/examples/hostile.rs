//! hostile: the attacker of the soak (`make soak`, tests/soak.rs). Each
//! subcommand throws one kind of traffic at a target for a bounded time or
//! count and prints one line of figures. Lab use only: run it inside a
//! network namespace the test made, against addresses of that lab.
//!
//! - `garbage`: malformed and mutated datagrams (the seed files given,
//!   bit flips, truncations, splices, byte repeats).
//! - `invites`: valid INVITEs, each a new dialog, at a fixed rate; counts
//!   the answers by status (a source outside `carrier.allow` must get none,
//!   one over its rate limit 503 then silence).
//! - `tls-halfopen`: TCP connections that send the first bytes of a TLS
//!   ClientHello and then nothing, held open.
//! - `vrrp`: forged VRRPv3 adverts: a priority-255 claim from this host
//!   (not a configured peer), and adverts spoofing a peer's address (raw
//!   IP header) with a wrong TTL, VRID, version or checksum.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use socket2::{Domain, Protocol, Socket, Type};
use trunkvip_vip::packet::{self, Advert, ChecksumMode};

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Malformed and mutated datagrams from seed files.
    Garbage {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        count: u64,
        /// Datagrams per second.
        #[arg(long)]
        rate: u64,
        /// Seed files or directories of them.
        #[arg(long, required = true)]
        seeds: Vec<PathBuf>,
        #[arg(long, default_value_t = 1)]
        rng_seed: u64,
    },
    /// Valid INVITEs, one new dialog each.
    Invites {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
    },
    /// Half-open TLS connections held for a while.
    TlsHalfopen {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        count: usize,
        /// How long to hold them once opened.
        #[arg(long)]
        hold_seconds: u64,
        /// Source addresses, used in turn (default: the kernel's choice).
        #[arg(long = "source")]
        sources: Vec<IpAddr>,
    },
    /// Forged VRRPv3 adverts toward the pair.
    Vrrp {
        /// This host's own address (the non-peer source).
        #[arg(long)]
        source: Ipv4Addr,
        /// Configured peers whose addresses are spoofed: toward each host,
        /// the first one that is not that host (a host drops its own
        /// address as a martian before VRRP sees it).
        #[arg(long = "spoof", required = true)]
        spoofs: Vec<Ipv4Addr>,
        /// Where the adverts go (the hosts of the pair).
        #[arg(long, required = true)]
        to: Vec<Ipv4Addr>,
        #[arg(long)]
        vrid: u8,
        #[arg(long)]
        vip: Ipv4Addr,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
    },
}

fn main() {
    let args = Args::parse();
    let line = match args.what {
        What::Garbage {
            target,
            count,
            rate,
            seeds,
            rng_seed,
        } => garbage(target, count, rate, &seeds, rng_seed),
        What::Invites {
            target,
            bind,
            rate,
            seconds,
        } => invites(target, bind, rate, Duration::from_secs(seconds)),
        What::TlsHalfopen {
            target,
            count,
            hold_seconds,
            sources,
        } => tls_halfopen(target, count, Duration::from_secs(hold_seconds), &sources),
        What::Vrrp {
            source,
            spoofs,
            to,
            vrid,
            vip,
            rate,
            seconds,
        } => vrrp(
            source,
            &spoofs,
            &to,
            vrid,
            vip,
            rate,
            Duration::from_secs(seconds),
        ),
    };
    match line {
        Ok(l) => println!("{l}"),
        Err(e) => {
            eprintln!("hostile: {e}");
            std::process::exit(1);
        }
    }
}

type Result<T> = std::result::Result<T, String>;

/// Paces a loop at `rate` per second in 1 ms steps; false once `limit`
/// has passed.
struct Pacer {
    start: Instant,
    rate: u64,
    done: u64,
    limit: Duration,
}

impl Pacer {
    fn new(rate: u64, limit: Duration) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate: rate.max(1),
            done: 0,
            limit,
        }
    }

    /// How many to send now (waits until at least one is due).
    fn due(&mut self) -> Option<u64> {
        loop {
            let elapsed = self.start.elapsed();
            if elapsed >= self.limit {
                return None;
            }
            let owed = (elapsed.as_secs_f64() * self.rate as f64) as u64;
            if owed > self.done {
                let n = owed - self.done;
                self.done = owed;
                return Some(n);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn read_seeds(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut out = vec![];
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            for e in entries {
                out.push(std::fs::read(&e).map_err(|er| format!("{}: {er}", e.display()))?);
            }
        } else {
            out.push(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?);
        }
    }
    out.retain(|s| !s.is_empty());
    if out.is_empty() {
        return Err("no seed data".into());
    }
    Ok(out)
}

/// One mutation of a seed: what fuzzers do, cheaply.
fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seeds[rng.usize(..seeds.len())]);
    let rounds = rng.usize(0..4);
    for _ in 0..rounds {
        match rng.u8(0..5) {
            0 => {
                // bit flips
                for _ in 0..rng.usize(1..8) {
                    if !out.is_empty() {
                        let i = rng.usize(..out.len());
                        out[i] ^= 1 << rng.u8(0..8);
                    }
                }
            }
            1 => {
                let n = rng.usize(..=out.len());
                out.truncate(n);
            }
            2 => {
                // splice in part of another seed
                let other = &seeds[rng.usize(..seeds.len())];
                if !other.is_empty() && !out.is_empty() {
                    let at = rng.usize(..out.len());
                    let from = rng.usize(..other.len());
                    let len = rng.usize(..=(other.len() - from).min(512));
                    out.splice(at..at, other[from..from + len].iter().copied());
                }
            }
            3 => {
                // repeat a run of bytes
                if !out.is_empty() {
                    let at = rng.usize(..out.len());
                    let len = rng.usize(1..=(out.len() - at).min(64));
                    let run: Vec<u8> = out[at..at + len].to_vec();
                    for _ in 0..rng.usize(1..32) {
                        out.extend_from_slice(&run);
                    }
                }
            }
            _ => {
                // random bytes
                if !out.is_empty() {
                    let at = rng.usize(..out.len());
                    let len = rng.usize(1..=(out.len() - at).min(16));
                    for b in &mut out[at..at + len] {
                        *b = rng.u8(..);
                    }
                }
            }
        }
    }
    out.truncate(65_000);
}

fn garbage(
    target: SocketAddr,
    count: u64,
    rate: u64,
    seeds: &[PathBuf],
    rng_seed: u64,
) -> Result<String> {
    let seeds = read_seeds(seeds)?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("addr")
    } else {
        "[::]:0".parse().expect("addr")
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut rng = fastrand::Rng::with_seed(rng_seed);
    let mut buf = Vec::with_capacity(70_000);
    let mut sent = 0u64;
    let mut errors = 0u64;
    let mut bytes = 0u64;
    let mut answers = 0u64;
    let mut rbuf = [0u8; 65536];
    let limit = Duration::from_secs_f64(count as f64 / rate.max(1) as f64 * 2.0 + 10.0);
    let mut pacer = Pacer::new(rate, limit);
    let start = Instant::now();
    while sent < count {
        let Some(n) = pacer.due() else { break };
        for _ in 0..n.min(count - sent) {
            mutate(&mut rng, &seeds, &mut buf);
            match sock.send_to(&buf, target) {
                Ok(_) => bytes += buf.len() as u64,
                Err(_) => errors += 1,
            }
            sent += 1;
        }
        // Whatever came back (400s): drained so the socket never fills.
        while sock.recv_from(&mut rbuf).is_ok() {
            answers += 1;
        }
    }
    Ok(format!(
        "garbage: sent {sent} datagrams ({bytes} bytes, {errors} send errors) in {:.1} s, {answers} answers",
        start.elapsed().as_secs_f64()
    ))
}

fn invites(target: SocketAddr, bind: SocketAddr, rate: u64, limit: Duration) -> Result<String> {
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let recv = sock.try_clone().map_err(|e| e.to_string())?;
    recv.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let counter = {
        let stop = stop.clone();
        let answered = answered.clone();
        std::thread::spawn(move || {
            let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = recv.recv_from(&mut buf) {
                    answered.fetch_add(1, Ordering::Relaxed);
                    let code = std::str::from_utf8(buf.get(8..11).unwrap_or_default())
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .filter(|_| buf[..n].starts_with(b"SIP/2.0 "))
                        .unwrap_or(0);
                    *by_status.entry(code).or_default() += 1;
                }
            }
            by_status
        })
    };
    let host = match local.ip() {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    };
    let mut pacer = Pacer::new(rate, limit);
    let mut sent = 0u64;
    let mut msg = Vec::with_capacity(1024);
    let pid = std::process::id();
    while let Some(n) = pacer.due() {
        for _ in 0..n {
            sent += 1;
            msg.clear();
            let _ = write!(
                msg,
                "INVITE sip:flood@{target} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-fl{pid}-{sent};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:flood@{host}>;tag=fl{sent}\r\n\
                 To: <sip:victim@{target}>\r\n\
                 Call-ID: flood-{pid}-{sent}@{host}\r\n\
                 CSeq: 1 INVITE\r\n\
                 Contact: <sip:flood@{host}:{port}>\r\n\
                 Content-Length: 0\r\n\r\n",
                port = local.port()
            );
            let _ = sock.send_to(&msg, target);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let by_status = counter.join().map_err(|_| "counter thread panicked")?;
    let answers: Vec<String> = by_status.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    Ok(format!(
        "invites: sent {sent} from {local}, {} answers [{}]",
        answered.load(Ordering::Relaxed),
        answers.join(" ")
    ))
}

/// A TCP connection from `source` (any port), or from the kernel's choice.
fn connect_from(source: Option<IpAddr>, target: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    if let Some(ip) = source {
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    s.connect_timeout(&target.into(), Duration::from_millis(500))?;
    Ok(s.into())
}

fn tls_halfopen(
    target: SocketAddr,
    count: usize,
    hold: Duration,
    sources: &[IpAddr],
) -> Result<String> {
    raise_nofile(count as u64 + 64)?;
    // A TLS handshake record header announcing 512 bytes, and no more.
    let partial = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01];
    let mut conns = Vec::with_capacity(count);
    let mut refused = 0usize;
    let start = Instant::now();
    for n in 0..count {
        let source = (!sources.is_empty()).then(|| sources[n % sources.len()]);
        match connect_from(source, target) {
            Ok(mut s) => {
                let _ = s.write_all(&partial);
                conns.push(s);
            }
            Err(_) => refused += 1,
        }
    }
    let opened = conns.len();
    let took = start.elapsed();
    std::thread::sleep(hold);
    // How many the proxy closed meanwhile (handshake timeout, caps).
    let mut closed = 0usize;
    let mut probe = [0u8; 1];
    for c in &conns {
        let _ = c.set_nonblocking(true);
        match c.peek(&mut probe) {
            Ok(0) => closed += 1,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => closed += 1,
        }
    }
    Ok(format!(
        "tls-halfopen: {opened} of {count} connected in {:.1} s ({refused} failed), {closed} closed by the proxy after {} s",
        took.as_secs_f64(),
        hold.as_secs()
    ))
}

fn raise_nofile(want: u64) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.max(hard), want.max(hard))
            .map_err(|e| format!("RLIMIT_NOFILE to {want}: {e}"))?;
    }
    Ok(())
}

/// The kinds of forged advert sent, in turn.
#[derive(Clone, Copy, Debug)]
enum Forgery {
    /// Priority 255 from this host, which is not a configured peer.
    NotAPeer,
    /// A peer's address, TTL 64 (must be 255).
    WrongTtl,
    /// A peer's address, another VRID.
    WrongVrid,
    /// A peer's address, version 2.
    WrongVersion,
    /// A peer's address, a checksum off by one.
    BadChecksum,
}

const FORGERIES: [Forgery; 5] = [
    Forgery::NotAPeer,
    Forgery::WrongTtl,
    Forgery::WrongVrid,
    Forgery::WrongVersion,
    Forgery::BadChecksum,
];

fn vrrp(
    source: Ipv4Addr,
    spoofs: &[Ipv4Addr],
    to: &[Ipv4Addr],
    vrid: u8,
    vip: Ipv4Addr,
    rate: u64,
    limit: Duration,
) -> Result<String> {
    let proto = Protocol::from(i32::from(packet::IPPROTO_VRRP));
    let plain = Socket::new(Domain::IPV4, Type::RAW, Some(proto)).map_err(|e| e.to_string())?;
    plain.set_ttl_v4(255).map_err(|e| e.to_string())?;
    let spoofing = Socket::new(Domain::IPV4, Type::RAW, Some(proto)).map_err(|e| e.to_string())?;
    spoofing
        .set_header_included_v4(true)
        .map_err(|e| e.to_string())?;
    let mut pacer = Pacer::new(rate, limit);
    let mut sent = BTreeMap::<&'static str, u64>::new();
    let mut n = 0usize;
    while let Some(due) = pacer.due() {
        for _ in 0..due {
            let kind = FORGERIES[n % FORGERIES.len()];
            n += 1;
            for dst in to {
                let spoof = spoofs
                    .iter()
                    .copied()
                    .find(|s| s != dst)
                    .unwrap_or(spoofs[0]);
                let (src, vrid, ttl) = match kind {
                    Forgery::NotAPeer => (source, vrid, 255),
                    Forgery::WrongTtl => (spoof, vrid, 64),
                    Forgery::WrongVrid => (spoof, vrid.wrapping_add(1).max(1), 255),
                    _ => (spoof, vrid, 255),
                };
                let advert = Advert {
                    vrid,
                    priority: 255,
                    max_advert_interval: 1,
                    addresses: vec![IpAddr::V4(vip)],
                };
                let mut body = packet::encode(
                    &advert,
                    IpAddr::V4(src),
                    IpAddr::V4(*dst),
                    ChecksumMode::PseudoHeader,
                )
                .map_err(|e| format!("{e:?}"))?;
                match kind {
                    Forgery::WrongVersion => body[0] = (2 << 4) | (body[0] & 0x0f),
                    Forgery::BadChecksum => body[6] = body[6].wrapping_add(1),
                    _ => {}
                }
                let to_addr = SocketAddr::new(IpAddr::V4(*dst), 0).into();
                let r = if matches!(kind, Forgery::NotAPeer) {
                    plain.send_to(&body, &to_addr)
                } else {
                    let mut ip = ipv4_header(src, *dst, ttl, body.len());
                    ip.extend_from_slice(&body);
                    spoofing.send_to(&ip, &to_addr)
                };
                if r.is_ok() {
                    *sent.entry(forgery_name(kind)).or_default() += 1;
                }
            }
        }
    }
    let parts: Vec<String> = sent.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    Ok(format!("vrrp: sent [{}]", parts.join(" ")))
}

fn forgery_name(f: Forgery) -> &'static str {
    match f {
        Forgery::NotAPeer => "not_a_peer",
        Forgery::WrongTtl => "wrong_ttl",
        Forgery::WrongVrid => "wrong_vrid",
        Forgery::WrongVersion => "wrong_version",
        Forgery::BadChecksum => "bad_checksum",
    }
}

/// An IPv4 header for IP_HDRINCL (the kernel fills in the checksum and,
/// when zero, the id).
fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: usize) -> Vec<u8> {
    let h = etherparse::Ipv4Header::new(
        u16::try_from(payload).unwrap_or(u16::MAX),
        ttl,
        etherparse::IpNumber(packet::IPPROTO_VRRP),
        src.octets(),
        dst.octets(),
    )
    .expect("payload fits");
    let mut out = Vec::with_capacity(20 + payload);
    h.write(&mut out).expect("to a Vec");
    out
}
