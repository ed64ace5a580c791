//! The debug capture (`[debug]`, `trunkvip run --debug`): every SIP message
//! received or sent — UDP, TCP, and TLS after decryption — with its real
//! source and destination, transport and time, written as HEPv3 datagrams
//! ([`hep`]), as a pcap file of synthesized UDP frames ([`pcap`]), and the
//! TLS secrets as a key log ([`keylog`]).
//!
//! # Cost
//!
//! The transports call [`record`] for each message: when the capture is
//! off that is one atomic load and a branch (a `OnceLock` that was never
//! set). When it is on, the call path takes the time, clones a `Bytes` (a
//! reference count; a UDP send copies its payload) and `try_send`s into a
//! bounded queue of [`QUEUE`] entries: it never waits. When the queue is
//! full the message is dropped from the capture (not from the call) and
//! counted in `trunkvip_capture_dropped_total`. One thread of its own,
//! `trunkvip-capture`, empties the queue: it encodes, sends the HEP
//! datagrams, writes the files, and flushes them whenever the queue is
//! empty, so that blocking file I/O never runs on the runtime's workers.
//!
//! # What counts as a message
//!
//! Received: each UDP datagram (keep-alives aside) and each message the
//! stream framer hands over, as framed, before it goes to its worker.
//! Sent: each payload the cores produce, just before it is handed to the
//! socket (so that a message is never captured after the answer it
//! caused). Each is one HEP datagram and one pcap frame, as trunkvip
//! always sends exactly one SIP message per UDP datagram.
//!
//! There is one capture per process, in a `OnceLock` (like the logger),
//! so the transports need no handle to it.

pub mod hep;
pub mod keylog;
pub mod pcap;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_rustls::rustls::KeyLog;
use tracing::warn;
use trunkvip_proxy::Transport;

/// Messages (and key log lines) waiting for the capture thread; past
/// that, new ones are dropped and counted.
pub const QUEUE: usize = 8192;
/// Where HEP goes when `[debug]` does not say (`--debug` alone).
pub const DEFAULT_HEP: &str = "127.0.0.1:9060";
/// The size a pcap file rotates at when `pcap_max_bytes` is not given.
pub const DEFAULT_PCAP_MAX_BYTES: u64 = 100 * 1024 * 1024;

/// `[debug]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where HEPv3 datagrams go; `None`: `hep = "off"`.
    pub hep: Option<SocketAddr>,
    pub pcap: Option<PathBuf>,
    pub pcap_max_bytes: u64,
    pub keylog: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hep: Some(DEFAULT_HEP.parse().expect("valid")),
            pcap: None,
            pcap_max_bytes: DEFAULT_PCAP_MAX_BYTES,
            keylog: None,
        }
    }
}

/// One message as seen on the wire.
#[derive(Clone, Debug)]
pub struct Record {
    pub time: SystemTime,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Bytes,
}

#[derive(Debug)]
pub(crate) enum Item {
    Message(Record),
    Key(String),
}

/// Counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages the capture thread took from the queue.
    pub messages: AtomicU64,
    /// Messages and key log lines not queued: the queue was full.
    pub dropped: AtomicU64,
    pub hep_errors: AtomicU64,
    pub pcap_errors: AtomicU64,
    pub keylog_errors: AtomicU64,
    pub pcap_rotations: AtomicU64,
    /// Messages longer than a HEP packet or a UDP frame holds, cut.
    pub truncated: AtomicU64,
}

/// The way into the capture: cheap to clone, never waits.
#[derive(Clone, Debug)]
pub struct Capture {
    tx: mpsc::Sender<Item>,
    stats: Arc<Stats>,
    keylog: bool,
}

static CAPTURE: OnceLock<Capture> = OnceLock::new();

/// The process's capture, when `[debug]` or `--debug` started one.
#[inline]
pub fn get() -> Option<&'static Capture> {
    CAPTURE.get()
}

/// The transports' hook: records a message when the capture is on;
/// `payload` is only called then.
#[inline]
pub fn record(
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
    payload: impl FnOnce() -> Bytes,
) {
    if let Some(c) = CAPTURE.get() {
        c.message(transport, src, dst, payload());
    }
}

/// The key log for rustls, when `[debug] keylog` is set.
pub fn key_log() -> Option<Arc<dyn KeyLog>> {
    let c = get().filter(|c| c.keylog)?;
    Some(Arc::new(keylog::Sink(c.clone())))
}

/// The HEP capture agent id of a host: its IPv4 address as a number, or
/// the last 32 bits of its IPv6 address, so that the two hosts of a pair
/// tell themselves apart in Homer.
pub fn capture_id(host: IpAddr) -> u32 {
    match host {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
        }
    }
}

/// Opens the files and the HEP socket and starts the process's capture.
pub fn start(settings: &Settings, capture_id: u32) -> Result<&'static Capture, String> {
    if CAPTURE.get().is_some() {
        return Err("the debug capture is already running in this process".into());
    }
    let (c, _thread) = Capture::open(settings, capture_id)?;
    let _ = CAPTURE.set(c);
    Ok(CAPTURE.get().expect("just set"))
}

impl Capture {
    /// Opens the sinks and starts the capture thread; errors name the
    /// `[debug]` key.
    pub fn open(
        settings: &Settings,
        capture_id: u32,
    ) -> Result<(Capture, std::thread::JoinHandle<()>), String> {
        let hep = match settings.hep {
            Some(to) => {
                let any = if to.is_ipv6() {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                };
                let sock = UdpSocket::bind(SocketAddr::new(any, 0))
                    .map_err(|e| format!("debug.hep {to}: {e}"))?;
                Some((sock, to))
            }
            None => None,
        };
        let pcap = match &settings.pcap {
            Some(p) => Some(
                pcap::Writer::open(p, settings.pcap_max_bytes)
                    .map_err(|e| format!("debug.pcap {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let keylog = match &settings.keylog {
            Some(p) => Some(BufWriter::new(
                pcap::create_private(p, true)
                    .map_err(|e| format!("debug.keylog {}: {e}", p.display()))?,
            )),
            None => None,
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            hep,
            pcap,
            keylog,
            capture_id,
            stats: stats.clone(),
            buf: Vec::with_capacity(4096),
            ident: 0,
            warned: [false; 3],
        };
        let thread = std::thread::Builder::new()
            .name("trunkvip-capture".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("debug: cannot start the capture thread: {e}"))?;
        Ok((
            Capture {
                tx,
                stats,
                keylog: settings.keylog.is_some(),
            },
            thread,
        ))
    }

    /// Queues a message; drops and counts it when the queue is full.
    #[inline]
    pub fn message(&self, transport: Transport, src: SocketAddr, dst: SocketAddr, payload: Bytes) {
        self.push(Item::Message(Record {
            time: SystemTime::now(),
            transport,
            src,
            dst,
            payload,
        }));
    }

    #[inline]
    pub(crate) fn push(&self, item: Item) {
        if self.tx.try_send(item).is_err() {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// The capture's series for `/metrics`; zeros and `enabled 0` when off.
pub fn metrics(out: &mut String) {
    let zero = Stats::default();
    let (on, s) = match get() {
        Some(c) => (1, c.stats()),
        None => (0, &zero),
    };
    let v = |a: &AtomicU64| a.load(Relaxed);
    let _ = write!(
        out,
        "# HELP trunkvip_capture_enabled 1 when the debug capture ([debug], --debug) is on.\n\
         # TYPE trunkvip_capture_enabled gauge\ntrunkvip_capture_enabled {on}\n\
         # HELP trunkvip_capture_messages_total SIP messages the debug capture wrote.\n\
         # TYPE trunkvip_capture_messages_total counter\ntrunkvip_capture_messages_total {}\n\
         # HELP trunkvip_capture_dropped_total Messages and key log lines left out of the debug capture: its queue was full.\n\
         # TYPE trunkvip_capture_dropped_total counter\ntrunkvip_capture_dropped_total {}\n\
         # HELP trunkvip_capture_errors_total Failed writes of the debug capture, by sink.\n\
         # TYPE trunkvip_capture_errors_total counter\n\
         trunkvip_capture_errors_total{{sink=\"hep\"}} {}\n\
         trunkvip_capture_errors_total{{sink=\"pcap\"}} {}\n\
         trunkvip_capture_errors_total{{sink=\"keylog\"}} {}\n\
         # HELP trunkvip_capture_pcap_rotations_total Times the pcap file rotated.\n\
         # TYPE trunkvip_capture_pcap_rotations_total counter\ntrunkvip_capture_pcap_rotations_total {}\n\
         # HELP trunkvip_capture_truncated_total Messages too long for one HEP packet or UDP frame, cut.\n\
         # TYPE trunkvip_capture_truncated_total counter\ntrunkvip_capture_truncated_total {}\n",
        v(&s.messages),
        v(&s.dropped),
        v(&s.hep_errors),
        v(&s.pcap_errors),
        v(&s.keylog_errors),
        v(&s.pcap_rotations),
        v(&s.truncated),
    );
}

/// The capture thread's state.
struct Writer {
    hep: Option<(UdpSocket, SocketAddr)>,
    pcap: Option<pcap::Writer>,
    keylog: Option<BufWriter<File>>,
    capture_id: u32,
    stats: Arc<Stats>,
    buf: Vec<u8>,
    /// The next IPv4 identification of the pcap frames.
    ident: u16,
    /// The first error of each sink (hep, pcap, keylog) is logged.
    warned: [bool; 3],
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Item>) {
        while let Some(item) = rx.blocking_recv() {
            self.handle(item);
            // What else is waiting, then flush: the files are complete
            // whenever the queue is empty.
            for _ in 0..QUEUE {
                match rx.try_recv() {
                    Ok(item) => self.handle(item),
                    Err(_) => break,
                }
            }
            self.flush();
        }
        self.flush();
    }

    fn fail(&mut self, sink: usize, e: &std::io::Error) {
        let (name, counter) = match sink {
            0 => ("hep", &self.stats.hep_errors),
            1 => ("pcap", &self.stats.pcap_errors),
            _ => ("keylog", &self.stats.keylog_errors),
        };
        counter.fetch_add(1, Relaxed);
        if !self.warned[sink] {
            self.warned[sink] = true;
            warn!("debug capture: {name}: {e} (further errors are counted in trunkvip_capture_errors_total)");
        }
    }

    fn handle(&mut self, item: Item) {
        match item {
            Item::Message(r) => self.message(&r),
            Item::Key(line) => {
                if let Some(k) = &mut self.keylog {
                    if let Err(e) = k.write_all(line.as_bytes()) {
                        self.fail(2, &e);
                    }
                }
            }
        }
    }

    fn message(&mut self, r: &Record) {
        self.stats.messages.fetch_add(1, Relaxed);
        let since = r.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (sec, usec) = (since.as_secs() as u32, since.subsec_micros());
        let mut cut = false;
        if let Some((sock, to)) = &self.hep {
            self.buf.clear();
            let meta = hep::Meta {
                src: r.src,
                dst: r.dst,
                ts_sec: sec,
                ts_usec: usec,
                capture_id: self.capture_id,
            };
            cut |= hep::encode(&mut self.buf, &meta, &r.payload) < r.payload.len();
            if let Err(e) = sock.send_to(&self.buf, *to) {
                self.fail(0, &e);
            }
        }
        if let Some(w) = &mut self.pcap {
            self.buf.clear();
            self.buf.resize(pcap::RECORD_HEADER_LEN, 0);
            cut |= pcap::frame(
                &mut self.buf,
                r.transport,
                r.src,
                r.dst,
                self.ident,
                &r.payload,
            ) < r.payload.len();
            self.ident = self.ident.wrapping_add(1);
            let len = self.buf.len() - pcap::RECORD_HEADER_LEN;
            let mut head = Vec::with_capacity(pcap::RECORD_HEADER_LEN);
            pcap::record_header(&mut head, sec, usec, len);
            self.buf[..pcap::RECORD_HEADER_LEN].copy_from_slice(&head);
            let before = w.rotations;
            let r = w.write_record(&self.buf);
            self.stats
                .pcap_rotations
                .fetch_add(w.rotations - before, Relaxed);
            if let Err(e) = r {
                self.fail(1, &e);
            }
        }
        if cut {
            self.stats.truncated.fetch_add(1, Relaxed);
        }
    }

    fn flush(&mut self) {
        if let Some(w) = &mut self.pcap {
            if let Err(e) = w.flush() {
                self.fail(1, &e);
            }
        }
        if let Some(k) = &mut self.keylog {
            if let Err(e) = k.flush() {
                self.fail(2, &e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn wait_for(mut ok: impl FnMut() -> bool) {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(std::time::Instant::now() < end, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn messages_reach_every_sink_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let hep_rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        hep_rx
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let settings = Settings {
            hep: Some(hep_rx.local_addr().unwrap()),
            pcap: Some(dir.path().join("sip.pcap")),
            pcap_max_bytes: 1 << 20,
            keylog: Some(dir.path().join("keys.log")),
        };
        let (c, _t) = Capture::open(&settings, 42).unwrap();
        let a: SocketAddr = "192.0.2.1:5061".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:5060".parse().unwrap();
        for n in 0..3 {
            c.message(Transport::Tls, a, b, Bytes::from(format!("message {n}")));
        }
        c.push(Item::Key(keylog::line("CLIENT_RANDOM", &[1], &[2])));
        let mut buf = [0u8; 2048];
        for n in 0..3 {
            let len = hep_rx.recv(&mut buf).unwrap();
            assert!(buf[..len].ends_with(format!("message {n}").as_bytes()));
        }
        let pcap_path = settings.pcap.clone().unwrap();
        let want = 24 + 3 * (16 + 14 + 20 + 8 + 9);
        wait_for(|| std::fs::metadata(&pcap_path).unwrap().len() == want as u64);
        let keys = settings.keylog.clone().unwrap();
        wait_for(|| std::fs::read_to_string(&keys).unwrap() == "CLIENT_RANDOM 01 02\n");
        for p in [&pcap_path, &keys] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(c.stats().messages.load(Relaxed), 3);
        assert_eq!(c.stats().dropped.load(Relaxed), 0);
    }

    #[test]
    fn every_message_is_written_or_counted_as_dropped() {
        // No sink: the thread only counts. Fill faster than it drains by
        // holding more than the queue in one burst.
        let settings = Settings {
            hep: None,
            pcap: None,
            pcap_max_bytes: DEFAULT_PCAP_MAX_BYTES,
            keylog: None,
        };
        let (c, _t) = Capture::open(&settings, 0).unwrap();
        let a: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let payload = Bytes::from_static(b"x");
        let n = 4 * QUEUE as u64;
        for _ in 0..n {
            c.message(Transport::Udp, a, a, payload.clone());
        }
        wait_for(|| c.stats().messages.load(Relaxed) + c.stats().dropped.load(Relaxed) == n);
    }

    #[test]
    fn capture_ids() {
        assert_eq!(capture_id("192.0.2.10".parse().unwrap()), 0xc000_020a);
        assert_eq!(capture_id("2001:db8::1:2".parse().unwrap()), 0x0001_0002);
    }

    #[test]
    fn metrics_when_off() {
        let mut s = String::new();
        metrics(&mut s);
        assert!(s.contains("trunkvip_capture_enabled 0\n"), "{s}");
        assert!(s.contains("trunkvip_capture_dropped_total 0\n"), "{s}");
    }
}
