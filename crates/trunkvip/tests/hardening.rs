//! Issue #8, TCP and TLS: the real binary under hostile connections on
//! loopback (no root; sources are spread over 127.0.0.0/8, which Linux
//! routes to `lo` whole). Each test reads what happened from the sockets
//! themselves and from `/metrics`. Needs sipp for the Edge.
//!
//! - slowloris dribblers and 5000 half-open TLS connections while two
//!   carriers (one named in carrier.uris, one not) keep completing
//!   OPTIONS and INVITE/ACK/BYE over new TLS connections;
//! - the caps: per source, in total, handshaking (oldest evicted), and
//!   carrier.allow at accept, each counted, each source logged once;
//! - an over-size message, junk, and a junk TLS handshake each close
//!   their connection, and the daemon keeps serving;
//! - idle, message and handshake timeouts, and CRLF keep-alives that do
//!   keep a connection open.

mod common;

use std::fs::File;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use trunkvip_sip::{Frame, Limits, Message, StreamDecoder};

fn ip(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A daemon in front of one `sipp -sn uas` Edge, with the Edge healthy.
struct Lab {
    dir: tempfile::TempDir,
    proxy: Child,
    _uas: Child,
    admin: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
}

impl Lab {
    fn start(extra: &str) -> Lab {
        let dir = tempdir();
        let d = dir.path();
        let certs = gen_certs(d);
        let (p, tls_port, e1, admin) = (free_port(), free_port(), free_port(), admin_addr());
        let uas = sipp_uas("uas1", e1, false, d);
        let extra = format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n\n{extra}",
            certs.join("cert.pem"),
            certs.join("key.pem"),
        );
        let listen = [
            format!("udp:127.0.0.1:{p}"),
            format!("tcp:127.0.0.1:{p}"),
            format!("tls:127.0.0.1:{tls_port}"),
        ];
        let mut proxy = trunkvip(&config(&listen, &[(e1, "udp")], admin, &extra), d);
        wait_health(admin, &[true], Duration::from_secs(10), &mut proxy);
        Lab {
            proxy,
            _uas: uas,
            admin,
            tcp: SocketAddr::from(([127, 0, 0, 1], p)),
            tls: SocketAddr::from(([127, 0, 0, 1], tls_port)),
            dir,
        }
    }

    fn connector(&self) -> TlsConnector {
        tls_connector(&self.dir.path().join("certs/ca.pem"))
    }

    /// One series of `/metrics`, e.g.
    /// `trunkvip_connections_closed_total{transport="tcp",reason="idle_timeout"}`.
    fn metric(&self, series: &str) -> u64 {
        let (code, body) = http_get(self.admin, "/metrics").expect("metrics");
        assert_eq!(code, 200, "{body}");
        metric_value(&body, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{body}"))
            as u64
    }

    fn alive(&mut self) {
        if let Some(s) = self.proxy.child.try_wait().expect("try_wait") {
            panic!("trunkvip exited: {s}\n{}", self.proxy.log());
        }
    }

    /// The daemon's log so far, whole.
    fn full_log(&self) -> String {
        std::fs::read_to_string(&self.proxy.log).unwrap_or_default()
    }
}

fn tls_connector(ca: &Path) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    let mut r = BufReader::new(File::open(ca).expect("ca.pem"));
    for c in rustls_pemfile::certs(&mut r) {
        roots.add(c.expect("certificate")).expect("root");
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn connect_from(src: IpAddr, dest: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(src, 0))?;
    s.connect(dest).await
}

/// How long until the peer closes (EOF or reset), whatever it sends
/// before; `None` if still open after `limit`.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A SIP client over any stream.
struct Sip<S> {
    s: S,
    dec: StreamDecoder,
    local: SocketAddr,
    via: &'static str,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sip<S> {
    fn new(s: S, local: SocketAddr, via: &'static str) -> Self {
        Sip {
            s,
            dec: StreamDecoder::new(Limits::default()),
            local,
            via,
        }
    }

    async fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.s.write_all(text.as_bytes()).await?;
        self.s.flush().await
    }

    /// The next message, or why none came.
    async fn recv(&mut self, until: Instant) -> Result<Message, String> {
        loop {
            match self.dec.decode() {
                Ok(Some(Frame::Message(m))) => return Ok(m),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(format!("framing: {e}")),
            }
            let left = until
                .checked_duration_since(Instant::now())
                .ok_or("no answer in time")?;
            match timeout(left, self.s.read_buf(self.dec.buffer_mut())).await {
                Err(_) => return Err("no answer in time".into()),
                Ok(Ok(0)) => return Err("closed by the proxy".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
    }

    /// The final response to the request with this CSeq method.
    async fn final_for(&mut self, method: &str, until: Instant) -> Result<Message, String> {
        loop {
            let m = self.recv(until).await?;
            let cseq = m.cseq().map_err(|e| e.to_string())?;
            if cseq.method_raw == method.as_bytes() && m.status().is_some_and(|s| s >= 200) {
                return Ok(m);
            }
        }
    }

    fn head(&self, method: &str, ruri: &str, cid: &str, n: u32, to: &str) -> String {
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/{} {};branch=z9hG4bK-{cid}-{n}-{method}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:carrier@{}>;tag=f-{cid}\r\n{to}\r\nCall-ID: {cid}\r\n\
             CSeq: {n} {method}\r\nContact: <sip:carrier@{};transport={}>\r\n",
            self.via,
            self.local,
            self.local.ip(),
            self.local,
            self.via.to_ascii_lowercase(),
        )
    }

    /// OPTIONS to the proxy itself: 200 while an Edge is healthy.
    async fn options(
        &mut self,
        proxy: SocketAddr,
        cid: &str,
        until: Instant,
    ) -> Result<(), String> {
        let to = format!("To: <sip:{proxy}>");
        let msg = self.head("OPTIONS", &format!("sip:{proxy}"), cid, 1, &to)
            + "Content-Length: 0\r\n\r\n";
        self.send(&msg).await.map_err(|e| e.to_string())?;
        let m = self.final_for("OPTIONS", until).await?;
        match m.status() {
            Some(200) => Ok(()),
            s => Err(format!("OPTIONS answered {s:?}")),
        }
    }

    /// A call through the proxy to the Edge: INVITE, 200, ACK, BYE, 200.
    async fn call(&mut self, proxy: SocketAddr, cid: &str, until: Instant) -> Result<(), String> {
        let ruri = format!("sip:+15550100@{proxy}");
        let to = format!("To: <sip:+15550100@{proxy}>");
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
        let invite = self.head("INVITE", &ruri, cid, 1, &to)
            + &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            );
        self.send(&invite).await.map_err(|e| e.to_string())?;
        let ok = self.final_for("INVITE", until).await?;
        if ok.status() != Some(200) {
            return Err(format!("INVITE answered {:?}", ok.status()));
        }
        let mut routes = vec![];
        let mut contact = None;
        let mut to = None;
        for (name, value) in ok.headers() {
            let value = String::from_utf8_lossy(value).into_owned();
            match name.to_ascii_lowercase().as_slice() {
                b"record-route" => routes.extend(value.split(',').map(|r| r.trim().to_owned())),
                b"contact" | b"m" => contact = Some(value),
                b"to" | b"t" => to = Some(value),
                _ => {}
            }
        }
        let contact = contact.ok_or("200 without Contact")?;
        let target = contact
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map_or(contact.as_str(), |(u, _)| u)
            .to_owned();
        let to = format!("To: {}", to.ok_or("200 without To")?);
        // The UAC's route set is the Record-Route list reversed.
        routes.reverse();
        let route = if routes.is_empty() {
            String::new()
        } else {
            format!("Route: {}\r\n", routes.join(", "))
        };
        let ack = self.head("ACK", &target, cid, 1, &to) + &route + "Content-Length: 0\r\n\r\n";
        self.send(&ack).await.map_err(|e| e.to_string())?;
        let bye = self.head("BYE", &target, cid, 2, &to) + &route + "Content-Length: 0\r\n\r\n";
        self.send(&bye).await.map_err(|e| e.to_string())?;
        let m = self.final_for("BYE", until).await?;
        match m.status() {
            Some(200) => Ok(()),
            s => Err(format!("BYE answered {s:?}")),
        }
    }
}

/// A new TLS connection from `src`, then OPTIONS and a call on it, all
/// within `bound`. Returns how long it took.
async fn carrier_round(
    connector: TlsConnector,
    src: IpAddr,
    proxy: SocketAddr,
    cid: &str,
    bound: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let until = start + bound;
    let work = async {
        let tcp = connect_from(src, proxy)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let local = tcp.local_addr().map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(proxy.ip().into());
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let mut sip = Sip::new(tls, local, "TLS");
        sip.options(proxy, &format!("{cid}-o"), until).await?;
        sip.call(proxy, &format!("{cid}-c"), until).await
    };
    match timeout(bound, work).await {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(format!("{e} after {:?}", start.elapsed())),
        Err(_) => Err(format!("not done within {bound:?}")),
    }
}

/// A plain TCP client from `src` that sends OPTIONS: `Ok` when answered
/// 200, `Err` when the connection was closed or reset instead.
async fn tcp_options(src: IpAddr, proxy: SocketAddr, cid: &str) -> Result<Sip<TcpStream>, String> {
    let tcp = connect_from(src, proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    let mut sip = Sip::new(tcp, local, "TCP");
    let until = Instant::now() + Duration::from_secs(3);
    // A write may land before the reset: the answer tells.
    let _ = sip
        .send(
            &(sip.head(
                "OPTIONS",
                &format!("sip:{proxy}"),
                cid,
                1,
                &format!("To: <sip:{proxy}>"),
            ) + "Content-Length: 0\r\n\r\n"),
        )
        .await;
    match sip.final_for("OPTIONS", until).await {
        Ok(m) if m.status() == Some(200) => Ok(sip),
        Ok(m) => panic!("OPTIONS answered {:?}", m.status()),
        Err(e) => Err(e),
    }
}

/// The soft fd limit raised to the hard one, which must allow `need`.
fn raise_nofile(need: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < need {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        soft >= need,
        "this test holds {need} sockets but RLIMIT_NOFILE is {soft} (hard {hard}): raise it (ulimit -n)"
    );
    soft
}

const HALF_OPEN: usize = 5000;
const DRIBBLERS: usize = 100;

#[test]
fn slowloris_and_half_open_tls_do_not_starve_the_carrier() {
    raise_nofile(HALF_OPEN as u64 + 2000);
    // Defaults but the timeouts, shortened to see them within the test.
    let mut lab = Lab::start(
        "[carrier]\nuris = [\"sips:127.0.0.2:5061\"]\n\n[limits]\nmessage_timeout = \"2s\"\nhandshake_timeout = \"3s\"\n",
    );
    let rss_before = rss_kib(lab.proxy.pid()).expect("VmRSS");
    let (tcp, tls, connector, admin) = (lab.tcp, lab.tls, lab.connector(), lab.admin);
    let rt = runtime();
    let report = rt.block_on(async move {
        // The handshaking pool as /metrics shows it, sampled all along.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || {
                let mut most = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some((200, body)) = http_get(admin, "/metrics") {
                        let n = metric_value(&body, "trunkvip_connections_handshaking").unwrap_or(0.0);
                        most = most.max(n as u64);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                most
            })
        };

        // Slowloris: each dribbles the start of an OPTIONS, a byte every 300 ms.
        let mut dribblers = vec![];
        for n in 0..DRIBBLERS {
            let src = ip(2, 0, 1 + (n % 10) as u8);
            dribblers.push(tokio::spawn(async move {
                let mut s = connect_from(src, tcp).await.expect("dribbler connect");
                let text = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.2.0.1;branch=z9hG4bK-slow\r\n";
                let start = Instant::now();
                let mut buf = [0u8; 64];
                for b in text.iter().cycle() {
                    if s.write_all(&[*b]).await.is_err() {
                        return start.elapsed();
                    }
                    tokio::select! {
                        r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return start.elapsed() },
                        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                        }
                    if start.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                }
                Duration::MAX
            }));
        }

        // The carriers, on new TLS connections all along the flood.
        let mut carriers = vec![];
        for (name, src) in [("named", ip(0, 0, 2)), ("unnamed", ip(0, 0, 3))] {
            let (connector, stop) = (connector.clone(), stop.clone());
            carriers.push(tokio::spawn(async move {
                let mut rounds = vec![];
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 3 {
                    n += 1;
                    let cid = format!("{name}-{n}");
                    rounds.push(carrier_round(connector.clone(), src, tls, &cid, Duration::from_secs(5)).await);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                (name, rounds)
            }));
        }

        // 5000 half-open TLS connections from 100 sources: a TLS record
        // header and one byte of a ClientHello, then nothing.
        let flood_start = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(100));
        let mut opens = vec![];
        for n in 0..HALF_OPEN {
            let permit = sem.clone().acquire_owned().await.expect("semaphore");
            let src = ip(1, 0, 1 + (n % 100) as u8);
            opens.push(tokio::spawn(async move {
                let mut s = connect_from(src, tls).await.ok()?;
                let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
                drop(permit);
                Some(s)
            }));
        }
        let mut half_open = vec![];
        for o in opens {
            if let Some(s) = o.await.expect("task") {
                half_open.push(s);
            }
        }
        let flood = flood_start.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut results = vec![];
        for c in carriers {
            results.push(c.await.expect("carrier task"));
        }
        let mut slow = vec![];
        for d in dribblers {
            slow.push(d.await.expect("dribbler task"));
        }
        // What the daemon closed: evicted at once, the rest at handshake_timeout.
        let mut closed_now = 0;
        for s in &mut half_open {
            if closed_within(s, Duration::from_millis(1)).await.is_some() {
                closed_now += 1;
            }
        }
        let most_handshaking = sampler.await.expect("sampler");
        // The rest at handshake_timeout (3 s after their accept, which a
        // busy accept queue may have delayed): wait for them, bounded.
        let end = Instant::now() + Duration::from_secs(10);
        let mut still_open = usize::MAX;
        while still_open > 0 && Instant::now() < end {
            still_open = 0;
            for s in &mut half_open {
                if closed_within(s, Duration::from_millis(1)).await.is_none() {
                    still_open += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (half_open.len(), flood, results, slow, closed_now, still_open, most_handshaking)
    });
    let (opened, flood, results, slow, closed_now, still_open, most_handshaking) = report;
    lab.alive();
    let rss_after = rss_kib(lab.proxy.pid()).expect("VmRSS");

    assert!(
        opened >= HALF_OPEN * 99 / 100,
        "only {opened} half-open connections made"
    );
    let log = lab.full_log();
    for ((name, rounds), src) in results.iter().zip(["127.0.0.2", "127.0.0.3"]) {
        let failed: Vec<&String> = rounds.iter().filter_map(|r| r.as_ref().err()).collect();
        let about: Vec<&str> = log.lines().filter(|l| l.contains(src)).collect();
        assert!(
            failed.is_empty(),
            "{name} carrier: {} of {} rounds failed: {failed:?}\nthe daemon on {src}:\n{}",
            failed.len(),
            rounds.len(),
            about.join("\n")
        );
    }
    let worst = |name: &str| {
        results
            .iter()
            .filter(|r| r.0 == name)
            .flat_map(|r| r.1.iter().filter_map(|x| x.as_ref().ok()))
            .max()
            .copied()
            .unwrap_or_default()
    };
    // Every dribbler was cut off within message_timeout (2 s) and a margin.
    let longest = slow.iter().max().copied().unwrap_or_default();
    assert!(
        longest < Duration::from_secs(5),
        "a dribbler lasted {longest:?}"
    );
    let (evicted, hs_timeout) = (
        lab.metric(
            "trunkvip_connections_closed_total{transport=\"tls\",reason=\"handshake_evicted\"}",
        ),
        lab.metric(
            "trunkvip_connections_closed_total{transport=\"tls\",reason=\"handshake_timeout\"}",
        ),
    );
    let tcp_cut = lab
        .metric("trunkvip_connections_closed_total{transport=\"tcp\",reason=\"message_timeout\"}")
        + lab.metric(
            "trunkvip_connections_closed_total{transport=\"tcp\",reason=\"handshake_evicted\"}",
        );
    // The pool filled up, and never held more than max_handshaking (256).
    assert!(
        (200..=256).contains(&most_handshaking),
        "handshaking connections peaked at {most_handshaking}"
    );
    assert!(
        closed_now + 256 >= opened,
        "{closed_now} of {opened} closed during the flood"
    );
    assert_eq!(
        still_open, 0,
        "half-open connections outlived handshake_timeout"
    );
    assert!(
        evicted + hs_timeout >= opened as u64,
        "evicted {evicted}, timed out {hs_timeout}, opened {opened}"
    );
    assert!(tcp_cut >= DRIBBLERS as u64, "dribblers cut: {tcp_cut}");
    assert_eq!(lab.metric("trunkvip_connections_handshaking"), 0);
    // Memory stays bounded: the flood held at most 256 handshakes.
    let grown = rss_after.saturating_sub(rss_before);
    assert!(
        grown < 100 * 1024,
        "RSS grew {grown} KiB ({rss_before} -> {rss_after})"
    );
    eprintln!(
        "flood: {opened} half-open TLS in {flood:?}; evicted {evicted}, handshake timeouts {hs_timeout}; \
         handshaking peak {most_handshaking}; dribblers cut {tcp_cut}, longest {longest:?}; carrier rounds worst: named {:?}, unnamed {:?} ({} and {} rounds); \
         RSS {rss_before} -> {rss_after} KiB",
        worst("named"),
        worst("unnamed"),
        results[0].1.len(),
        results[1].1.len(),
    );
}

#[test]
fn caps_per_source_total_and_handshaking_are_enforced_and_counted() {
    let mut lab = Lab::start(
        "[carrier]\nuris = [\"sip:127.0.0.2:5060;transport=tcp\"]\nallow = [\"127.3.0.0/16\", \"127.0.0.2\"]\n\n\
         [limits]\nmax_connections = 8\nmax_connections_per_source = 3\nmax_handshaking = 4\n",
    );
    let tcp = lab.tcp;
    let rt = runtime();
    rt.block_on(async {
        // Handshaking pool: four silent connections, then a fifth evicts
        // the oldest.
        let mut silent = vec![];
        for n in 1..=4 {
            silent.push(connect_from(ip(3, 1, n), tcp).await.expect("connect"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut fifth = connect_from(ip(3, 1, 5), tcp).await.expect("connect");
        assert!(
            closed_within(&mut silent[0], Duration::from_secs(2))
                .await
                .is_some(),
            "the oldest handshaking connection was not evicted"
        );
        for s in &mut silent[1..] {
            assert!(
                closed_within(s, Duration::from_millis(100)).await.is_none(),
                "a newer one was evicted"
            );
        }
        assert!(closed_within(&mut fifth, Duration::from_millis(100))
            .await
            .is_none());
        drop(silent);
        drop(fifth);
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Per source: 3 of 5 get in.
        let mut kept = vec![];
        let mut refused = 0;
        for n in 0..5 {
            match tcp_options(ip(3, 0, 1), tcp, &format!("ps-{n}")).await {
                Ok(s) => kept.push(s),
                Err(_) => refused += 1,
            }
        }
        assert_eq!((kept.len(), refused), (3, 2), "per-source cap of 3");
        // In total: 8 established, then the ninth source is refused.
        for (src, n) in [(ip(3, 0, 2), 3), (ip(3, 0, 3), 2)] {
            for k in 0..n {
                kept.push(
                    tcp_options(src, tcp, &format!("tot-{src}-{k}"))
                        .await
                        .expect("below the total"),
                );
            }
        }
        assert!(
            tcp_options(ip(3, 0, 4), tcp, "over-total").await.is_err(),
            "ninth connection admitted"
        );
        // The carrier named in carrier.uris still gets in, twice.
        let mut named = vec![];
        for k in 0..2 {
            named.push(
                tcp_options(ip(0, 0, 2), tcp, &format!("named-{k}"))
                    .await
                    .expect("the named carrier refused"),
            );
        }
        // carrier.allow, at accept: three tries, three refusals.
        for k in 0..3 {
            assert!(tcp_options(ip(4, 0, 1), tcp, &format!("stranger-{k}"))
                .await
                .is_err());
        }
        // A slot given back is usable again.
        drop(kept.pop());
        tokio::time::sleep(Duration::from_millis(300)).await;
        kept.push(
            tcp_options(ip(3, 0, 4), tcp, "after-close")
                .await
                .expect("freed slot"),
        );
        // Established connections still work.
        let until = Instant::now() + Duration::from_secs(3);
        kept[0]
            .options(tcp, "still", until)
            .await
            .expect("an established connection still answers");
        // Counted while they are open: 8, the named carrier's not among them.
        assert_eq!(lab.metric("trunkvip_connections_established"), 8);
        drop(named);
    });
    lab.alive();
    let m = |reason: &str| {
        lab.metric(&format!(
            "trunkvip_connections_refused_total{{transport=\"tcp\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(m("max_connections_per_source"), 2);
    assert_eq!(m("max_connections"), 1);
    assert_eq!(m("carrier_allow"), 3);
    assert_eq!(
        lab.metric(
            "trunkvip_connections_closed_total{transport=\"tcp\",reason=\"handshake_evicted\"}"
        ),
        1
    );
    // Logged once per source, not per connection.
    let log = lab.full_log();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("from 127.4.0.1 refused"), 1, "{log}");
    assert_eq!(lines("from 127.3.0.1 refused"), 1, "{log}");
    assert!(log.contains("not in carrier.allow"), "{log}");
}

#[test]
fn oversize_messages_and_junk_close_their_connection_only() {
    let mut lab = Lab::start("[limits]\nmax_buffered_bytes = 8192\n");
    let (tcp, tls, connector) = (lab.tcp, lab.tls, lab.connector());
    let rt = runtime();
    rt.block_on(async move {
        let src = ip(0, 0, 1);
        // A head announcing a body beyond the cap.
        let mut s = connect_from(src, tcp).await.expect("connect");
        s.write_all(b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-big\r\nContent-Length: 100000\r\n\r\n")
            .await
            .expect("write");
        assert!(closed_within(&mut s, Duration::from_secs(2)).await.is_some(), "over-size body accepted");
        // A head that never ends.
        let mut s = connect_from(src, tcp).await.expect("connect");
        let _ = s.write_all(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nX: ").await;
        let _ = s.write_all(&[b'a'; 20_000]).await;
        assert!(closed_within(&mut s, Duration::from_secs(2)).await.is_some(), "endless head accepted");
        // Junk that is no SIP at all, over TCP and into the TLS port.
        let mut s = connect_from(src, tcp).await.expect("connect");
        s.write_all(b"\x00\xffGARBAGE\r\n\r\n").await.expect("write");
        assert!(closed_within(&mut s, Duration::from_secs(2)).await.is_some(), "junk accepted");
        let mut s = connect_from(src, tls).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        assert!(closed_within(&mut s, Duration::from_secs(2)).await.is_some(), "junk TLS accepted");

        // Just under the cap still passes; a fresh connection, TCP and TLS, is served.
        let tcp_conn = connect_from(src, tcp).await.expect("connect");
        let local = tcp_conn.local_addr().unwrap();
        let mut sip = Sip::new(tcp_conn, local, "TCP");
        let body = "x".repeat(7000);
        let msg = sip.head("OPTIONS", &format!("sip:{tcp}"), "near-cap", 1, &format!("To: <sip:{tcp}>"))
            + &format!("Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        assert!(msg.len() < 8192);
        sip.send(&msg).await.expect("send");
        let m = sip.final_for("OPTIONS", Instant::now() + Duration::from_secs(3)).await.expect("answer");
        assert_eq!(m.status(), Some(200));
        carrier_round(connector, ip(0, 0, 2), tls, "after-junk", Duration::from_secs(5))
            .await
            .expect("TLS still served");
    });
    lab.alive();
    let c = |t: &str, reason: &str| {
        lab.metric(&format!(
            "trunkvip_connections_closed_total{{transport=\"{t}\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(c("tcp", "max_buffered_bytes"), 2);
    assert_eq!(c("tcp", "framing_error"), 1);
    assert_eq!(c("tls", "handshake_failed"), 1);
}

#[test]
fn idle_message_and_handshake_timeouts() {
    let mut lab = Lab::start(
        "[limits]\nidle_timeout = \"1s\"\nmessage_timeout = \"1s\"\nhandshake_timeout = \"1s\"\n",
    );
    let (tcp, tls) = (lab.tcp, lab.tls);
    let rt = runtime();
    rt.block_on(async move {
        let src = ip(0, 0, 1);
        let idle = async {
            let mut sip = tcp_options(src, tcp, "idle").await.expect("answered");
            let t = closed_within(&mut sip.s, Duration::from_secs(4))
                .await
                .expect("idle connection kept open");
            assert!(
                t >= Duration::from_millis(800),
                "closed after {t:?}, before idle_timeout"
            );
        };
        let keepalive = async {
            // CRLF pings count as traffic: open past idle_timeout, each answered.
            let mut sip = tcp_options(src, tcp, "keepalive").await.expect("answered");
            let mut buf = [0u8; 2];
            for _ in 0..6 {
                sip.s.write_all(b"\r\n\r\n").await.expect("ping");
                timeout(Duration::from_secs(1), sip.s.read_exact(&mut buf))
                    .await
                    .expect("pong in time")
                    .expect("pong");
                assert_eq!(&buf, b"\r\n");
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            // 2.4 s, over twice idle_timeout; then silence closes it.
            assert!(closed_within(&mut sip.s, Duration::from_secs(3))
                .await
                .is_some());
        };
        let dribble = async {
            let mut s = connect_from(src, tcp).await.expect("connect");
            let start = Instant::now();
            let mut buf = [0u8; 16];
            for b in b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1\r\n" {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                let r = timeout(Duration::from_millis(200), s.read(&mut buf)).await;
                if let Ok(Ok(0) | Err(_)) = r {
                    break;
                }
            }
            let t = start.elapsed();
            // Every byte came well within idle_timeout: only message_timeout cuts it.
            assert!(t < Duration::from_secs(3), "dribbler lasted {t:?}");
            assert!(t >= Duration::from_millis(800), "dribbler cut after {t:?}");
        };
        let handshake = async {
            let mut s = connect_from(src, tls).await.expect("connect");
            let t = closed_within(&mut s, Duration::from_secs(4))
                .await
                .expect("silent TLS kept open");
            assert!(t >= Duration::from_millis(800), "closed after {t:?}");
        };
        tokio::join!(idle, keepalive, dribble, handshake);
    });
    lab.alive();
    let c = |t: &str, reason: &str| {
        lab.metric(&format!(
            "trunkvip_connections_closed_total{{transport=\"{t}\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(c("tcp", "idle_timeout"), 2);
    assert_eq!(c("tcp", "message_timeout"), 1);
    assert_eq!(c("tls", "handshake_timeout"), 1);
}
