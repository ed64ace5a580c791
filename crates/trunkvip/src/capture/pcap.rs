//! A classic pcap file (link type 1, Ethernet) in which each SIP message is
//! one synthesized Ethernet/IPv4-or-IPv6/UDP frame between its real
//! endpoints and ports, whatever transport carried it, so that
//! `tcpdump -r`, `sngrep -I` and Wireshark show every message of a TLS call
//! in clear.
//!
//! The transport is noted in the MAC addresses, which no real interface
//! has (locally administered): source `02:00:00` and destination
//! `02:00:01`, each followed by the transport's name in ASCII — `55:44:50`
//! "UDP", `54:43:50` "TCP", `54:4c:53` "TLS" (`tcpdump -e` shows them;
//! in Wireshark, `eth.src == 02:00:00:54:4c:53` keeps the TLS messages).
//! The IPv4 identification counts the messages written, modulo 2^16.
//!
//! The file rotates by size: when the next frame would take it past the
//! limit, `FILE` becomes `FILE.1`, `FILE.1` becomes `FILE.2`, and so on up
//! to `FILE.<KEEP-1>`; the oldest goes. Files are created with mode 0600.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use trunkvip_proxy::Transport;

use super::hep::same_family;

/// The file header: magic (microsecond timestamps), version 2.4, GMT,
/// snaplen 262144, link type 1 (Ethernet); little-endian.
pub const HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;
pub const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 262_144;
const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;

/// Files kept: `FILE` and `FILE.1` to `FILE.<KEEP-1>`.
pub const KEEP: usize = 10;

/// The largest payload of an IPv4 UDP frame (an IPv6 one could carry 20
/// bytes more; one limit keeps it simple); longer messages are cut.
pub const MAX_PAYLOAD: usize = u16::MAX as usize - IPV4_LEN - UDP_LEN;

pub fn file_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs: 0
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// The MAC addresses of a frame: (source, destination).
pub fn macs(transport: Transport) -> ([u8; 6], [u8; 6]) {
    let name: &[u8; 3] = match transport {
        Transport::Udp => b"UDP",
        Transport::Tcp => b"TCP",
        Transport::Tls => b"TLS",
    };
    let src = [0x02, 0, 0, name[0], name[1], name[2]];
    let dst = [0x02, 0, 1, name[0], name[1], name[2]];
    (src, dst)
}

/// The Internet checksum (RFC 1071) of `parts`, as if concatenated
/// (every part but the last has an even length).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for p in parts {
        let mut chunks = p.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(u16::from_be_bytes([*last, 0]));
        }
        // Fold as we go: no overflow whatever the length.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Appends one Ethernet frame carrying `payload` (cut to
/// [`MAX_PAYLOAD`]) in UDP from `src` to `dst`; returns the payload
/// bytes written. `ident` goes in the IPv4 identification.
pub fn frame(
    out: &mut Vec<u8>,
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
    ident: u16,
    payload: &[u8],
) -> usize {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let start = out.len();
    let (smac, dmac) = macs(transport);
    let (sip, dip) = same_family(src.ip(), dst.ip());
    let udp_len = (UDP_LEN + payload.len()) as u16;
    out.extend_from_slice(&dmac);
    out.extend_from_slice(&smac);
    let mut udp = [0u8; UDP_LEN];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let sum = match (sip, dip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = [0u8; IPV4_LEN];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(IPV4_LEN as u16 + udp_len).to_be_bytes());
            ip[4..6].copy_from_slice(&ident.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&ip);
            let mut pseudo = [0u8; 12];
            pseudo[0..4].copy_from_slice(&s.octets());
            pseudo[4..8].copy_from_slice(&d.octets());
            pseudo[9] = 17;
            pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
            checksum(&[&pseudo, &udp, payload])
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = [0u8; IPV6_LEN];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = 17;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&ip);
            let mut pseudo = [0u8; 40];
            pseudo[0..16].copy_from_slice(&s.octets());
            pseudo[16..32].copy_from_slice(&d.octets());
            pseudo[32..36].copy_from_slice(&u32::from(udp_len).to_be_bytes());
            pseudo[39] = 17;
            checksum(&[&pseudo, &udp, payload])
        }
        _ => unreachable!("same_family gives one family"),
    };
    // 0 means "no checksum" in UDP over IPv4 and is invalid over IPv6.
    let sum = if sum == 0 { 0xffff } else { sum };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
    debug_assert_eq!(out.len() - start, frame_len(sip.is_ipv6(), payload.len()));
    payload.len()
}

/// The length of the frame [`frame`] writes for a payload of `len`.
pub fn frame_len(v6: bool, len: usize) -> usize {
    ETH_LEN + if v6 { IPV6_LEN } else { IPV4_LEN } + UDP_LEN + len.min(MAX_PAYLOAD)
}

/// Appends a record header for a frame of `len` bytes.
pub fn record_header(out: &mut Vec<u8>, ts_sec: u32, ts_usec: u32, len: usize) {
    out.extend_from_slice(&ts_sec.to_le_bytes());
    out.extend_from_slice(&ts_usec.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// `FILE.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Creates (or truncates) a file with mode 0600, whatever the umask or an
/// older file's mode.
pub fn create_private(path: &Path, append: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// The pcap file being written, and its rotation.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    max_bytes: u64,
    file: BufWriter<File>,
    size: u64,
    pub rotations: u64,
}

impl Writer {
    /// Starts a new file at `path`; one already there is rotated to
    /// `path.1` first, so that the last run's capture stays.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Writer> {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            shift(path)?;
        }
        let mut w = Writer {
            path: path.to_path_buf(),
            max_bytes,
            file: BufWriter::with_capacity(64 * 1024, create_private(path, false)?),
            size: 0,
            rotations: 0,
        };
        w.start()?;
        Ok(w)
    }

    fn start(&mut self) -> io::Result<()> {
        self.file.write_all(&file_header())?;
        self.size = HEADER_LEN as u64;
        Ok(())
    }

    /// Writes one record (header and frame, as built by the caller),
    /// rotating first when it would take the file past the limit. A file
    /// always takes at least one record, however large.
    pub fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        let n = record.len() as u64;
        if self.size + n > self.max_bytes && self.size > HEADER_LEN as u64 {
            self.rotate()?;
        }
        self.file.write_all(record)?;
        self.size += n;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        shift(&self.path)?;
        self.file = BufWriter::with_capacity(64 * 1024, create_private(&self.path, false)?);
        self.rotations += 1;
        self.start()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `FILE.8` to `FILE.9`, ..., `FILE` to `FILE.1`.
fn shift(path: &Path) -> io::Result<()> {
    for n in (1..KEEP - 1).rev() {
        match std::fs::rename(rotated(path, n), rotated(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checksum over data that includes its own checksum field is 0.
    fn verifies(parts: &[&[u8]]) -> bool {
        checksum(parts) == 0
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is ddf2, so the
        // checksum is its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        // An odd length pads with a zero byte.
        assert_eq!(checksum(&[&[0xab]]), !0xab00);
    }

    #[test]
    fn ipv4_frame() {
        let payload = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let src: SocketAddr = "192.0.2.10:5061".parse().unwrap();
        let dst: SocketAddr = "198.51.100.21:40000".parse().unwrap();
        let mut f = vec![];
        assert_eq!(
            frame(&mut f, Transport::Tls, src, dst, 7, payload),
            payload.len()
        );
        assert_eq!(f.len(), frame_len(false, payload.len()));
        assert_eq!(f.len(), 14 + 20 + 8 + payload.len());
        // Ethernet: destination, source, IPv4.
        assert_eq!(&f[0..6], &[2, 0, 1, b'T', b'L', b'S']);
        assert_eq!(&f[6..12], &[2, 0, 0, b'T', b'L', b'S']);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let ip = &f[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(
            u16::from_be_bytes([ip[2], ip[3]]) as usize,
            20 + 8 + payload.len()
        );
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 7);
        assert_eq!((ip[8], ip[9]), (64, 17));
        assert_eq!(&ip[12..16], &[192, 0, 2, 10]);
        assert_eq!(&ip[16..20], &[198, 51, 100, 21]);
        assert!(verifies(&[ip]), "IPv4 header checksum");
        let udp = &f[34..42];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 5061);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 40000);
        assert_eq!(
            u16::from_be_bytes([udp[4], udp[5]]) as usize,
            8 + payload.len()
        );
        assert_eq!(&f[42..], payload);
        let mut pseudo = vec![];
        pseudo.extend_from_slice(&ip[12..20]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&udp[4..6]);
        assert!(verifies(&[&pseudo, &f[34..]]), "UDP checksum");
        // Known values, computed independently (a sum of 16-bit words in
        // Python).
        assert_eq!(u16::from_be_bytes([ip[10], ip[11]]), 0x4e52);
        assert_eq!(u16::from_be_bytes([udp[6], udp[7]]), 0x65df);
    }

    #[test]
    fn ipv6_frame() {
        // An odd length exercises the padding of the UDP checksum.
        let payload = b"ACK sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n!";
        assert_eq!(payload.len() % 2, 1);
        let src: SocketAddr = "[2001:db8::10]:5060".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::21]:5080".parse().unwrap();
        let mut f = vec![];
        frame(&mut f, Transport::Udp, src, dst, 0, payload);
        assert_eq!(f.len(), frame_len(true, payload.len()));
        assert_eq!(&f[6..12], &[2, 0, 0, b'U', b'D', b'P']);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let ip = &f[14..54];
        assert_eq!(ip[0] >> 4, 6);
        assert_eq!(
            u16::from_be_bytes([ip[4], ip[5]]) as usize,
            8 + payload.len()
        );
        assert_eq!((ip[6], ip[7]), (17, 64));
        let s: std::net::Ipv6Addr = "2001:db8::10".parse().unwrap();
        let d: std::net::Ipv6Addr = "2001:db8::21".parse().unwrap();
        assert_eq!(&ip[8..24], &s.octets());
        assert_eq!(&ip[24..40], &d.octets());
        let udp = &f[54..62];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 5060);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 5080);
        assert_ne!(
            u16::from_be_bytes([udp[6], udp[7]]),
            0,
            "mandatory over IPv6"
        );
        let mut pseudo = vec![];
        pseudo.extend_from_slice(&ip[8..40]);
        pseudo.extend_from_slice(&(8 + payload.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        assert!(verifies(&[&pseudo, &f[54..]]), "UDP checksum over IPv6");
        assert_eq!(u16::from_be_bytes([udp[6], udp[7]]), 0x7438);
        assert_eq!(&f[62..], payload);
    }

    #[test]
    fn header_and_records() {
        let h = file_header();
        assert_eq!(&h[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&h[4..8], &[2, 0, 4, 0]);
        assert_eq!(&h[20..], &[1, 0, 0, 0]);
        let mut r = vec![];
        record_header(&mut r, 1_700_000_000, 5, 100);
        assert_eq!(r.len(), RECORD_HEADER_LEN);
        assert_eq!(&r[8..12], &100u32.to_le_bytes());
        assert_eq!(&r[12..16], &100u32.to_le_bytes());
    }

    #[test]
    fn rotation_keeps_files_under_the_limit_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sip.pcap");
        std::fs::write(&path, b"last run").unwrap();
        let mut w = Writer::open(&path, 1000).unwrap();
        assert_eq!(std::fs::read(rotated(&path, 1)).unwrap(), b"last run");
        let record = vec![0u8; 300];
        for _ in 0..40 {
            w.write_record(&record).unwrap();
        }
        w.flush().unwrap();
        // 24 + 3 * 300 per file: 13 full files and one with one record.
        assert_eq!(w.rotations, 13);
        for n in 0..KEEP {
            let p = if n == 0 {
                path.clone()
            } else {
                rotated(&path, n)
            };
            let m = std::fs::metadata(&p).unwrap();
            assert!(m.len() <= 1000, "{} is {} bytes", p.display(), m.len());
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display());
            assert_eq!(std::fs::read(&p).unwrap()[..24], file_header());
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 300);
        assert!(!rotated(&path, KEEP).exists());
        // One record larger than the limit still goes in, alone.
        w.write_record(&vec![0u8; 5000]).unwrap();
        w.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 5000);
    }
}
