//! HEPv3 (the Homer Encapsulation Protocol, also called EEP), the capture
//! protocol of Homer, sngrep, Kamailio and OpenSIPS: one SIP message per
//! datagram, wrapped in typed chunks.
//!
//! A packet is `"HEP3"`, its total length (u16), then chunks, each
//! `vendor (u16) | type (u16) | length (u16, header included) | data`, all
//! big-endian. We write the generic chunks (vendor 0) in the order of the
//! reference agents (captagent, hep-c, Kamailio's siptrace), which is also
//! the fixed layout sngrep reads:
//!
//! | type | data | size |
//! | --- | --- | --- |
//! | 1 | IP family: 2 (AF_INET) or 10 (AF_INET6) | u8 |
//! | 2 | IP protocol id: 17 (UDP) | u8 |
//! | 7 | source port | u16 |
//! | 8 | destination port | u16 |
//! | 9 | timestamp, seconds | u32 |
//! | 10 | timestamp, microseconds | u32 |
//! | 11 | protocol type: 1 (SIP) | u8 |
//! | 12 | capture agent id | u32 |
//! | 3, 4 | source, destination IPv4 address | 4 bytes each |
//! | 5, 6 | source, destination IPv6 address | 16 bytes each |
//! | 15 | the SIP message | n bytes |
//!
//! The protocol id is 17 whatever the real transport: readers such as
//! sngrep rebuild UDP frames from it; the Via header of the message says
//! UDP, TCP or TLS.

use std::net::{IpAddr, SocketAddr};

pub const ID: &[u8; 4] = b"HEP3";
pub const CHUNK_IP_FAMILY: u16 = 1;
pub const CHUNK_IP_PROTO: u16 = 2;
pub const CHUNK_SRC_IP4: u16 = 3;
pub const CHUNK_DST_IP4: u16 = 4;
pub const CHUNK_SRC_IP6: u16 = 5;
pub const CHUNK_DST_IP6: u16 = 6;
pub const CHUNK_SRC_PORT: u16 = 7;
pub const CHUNK_DST_PORT: u16 = 8;
pub const CHUNK_TS_SEC: u16 = 9;
pub const CHUNK_TS_USEC: u16 = 10;
pub const CHUNK_PROTO_TYPE: u16 = 11;
pub const CHUNK_CAPTURE_ID: u16 = 12;
pub const CHUNK_PAYLOAD: u16 = 15;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
pub const IPPROTO_UDP: u8 = 17;
pub const PROTO_SIP: u8 = 1;

/// Everything but the payload's bytes, with IPv6 addresses.
const MAX_OVERHEAD: usize = 6 + 7 + 7 + 8 + 8 + 10 + 10 + 7 + 10 + 2 * (6 + 16) + 6;

/// The largest payload a packet carries (its length is a u16); longer
/// messages are cut to this.
pub const MAX_PAYLOAD: usize = u16::MAX as usize - MAX_OVERHEAD;

/// What a packet says about its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ts_sec: u32,
    pub ts_usec: u32,
    pub capture_id: u32,
}

/// The addresses of both ends in one family: a v4 address facing a v6
/// one is written v4-mapped; two v4-mapped ones are written as v4.
pub fn same_family(src: IpAddr, dst: IpAddr) -> (IpAddr, IpAddr) {
    let (s, d) = (src.to_canonical(), dst.to_canonical());
    match (s, d) {
        (IpAddr::V4(a), IpAddr::V6(b)) => (IpAddr::V6(a.to_ipv6_mapped()), IpAddr::V6(b)),
        (IpAddr::V6(a), IpAddr::V4(b)) => (IpAddr::V6(a), IpAddr::V6(b.to_ipv6_mapped())),
        other => other,
    }
}

fn chunk(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((6 + data.len()) as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// Appends one HEPv3 packet to `out`; returns how many bytes of the
/// payload it carries (all of them unless longer than [`MAX_PAYLOAD`]).
pub fn encode(out: &mut Vec<u8>, m: &Meta, payload: &[u8]) -> usize {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let start = out.len();
    out.extend_from_slice(ID);
    out.extend_from_slice(&[0, 0]); // total length, below
    let (src, dst) = same_family(m.src.ip(), m.dst.ip());
    let family = if src.is_ipv4() { AF_INET } else { AF_INET6 };
    chunk(out, CHUNK_IP_FAMILY, &[family]);
    chunk(out, CHUNK_IP_PROTO, &[IPPROTO_UDP]);
    chunk(out, CHUNK_SRC_PORT, &m.src.port().to_be_bytes());
    chunk(out, CHUNK_DST_PORT, &m.dst.port().to_be_bytes());
    chunk(out, CHUNK_TS_SEC, &m.ts_sec.to_be_bytes());
    chunk(out, CHUNK_TS_USEC, &m.ts_usec.to_be_bytes());
    chunk(out, CHUNK_PROTO_TYPE, &[PROTO_SIP]);
    chunk(out, CHUNK_CAPTURE_ID, &m.capture_id.to_be_bytes());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(out, CHUNK_SRC_IP4, &s.octets());
            chunk(out, CHUNK_DST_IP4, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            chunk(out, CHUNK_SRC_IP6, &s.octets());
            chunk(out, CHUNK_DST_IP6, &d.octets());
        }
        _ => unreachable!("same_family gives one family"),
    }
    chunk(out, CHUNK_PAYLOAD, payload);
    let len = (out.len() - start) as u16;
    out[start + 4..start + 6].copy_from_slice(&len.to_be_bytes());
    payload.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a packet: (vendor, type, data) of each chunk.
    fn chunks(p: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
        assert_eq!(&p[..4], ID);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize, p.len());
        let mut out = vec![];
        let mut at = 6;
        while at < p.len() {
            let vendor = u16::from_be_bytes([p[at], p[at + 1]]);
            let kind = u16::from_be_bytes([p[at + 2], p[at + 3]]);
            let len = u16::from_be_bytes([p[at + 4], p[at + 5]]) as usize;
            assert!(len >= 6 && at + len <= p.len(), "chunk {kind} overruns");
            out.push((vendor, kind, p[at + 6..at + len].to_vec()));
            at += len;
        }
        assert_eq!(at, p.len());
        out
    }

    #[test]
    fn ipv4_field_by_field() {
        let m = Meta {
            src: "192.0.2.10:5061".parse().unwrap(),
            dst: "198.51.100.21:5060".parse().unwrap(),
            ts_sec: 1_700_000_000,
            ts_usec: 123_456,
            capture_id: 0xc000_020a,
        };
        let payload = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let mut p = vec![];
        assert_eq!(encode(&mut p, &m, payload), payload.len());
        let c = chunks(&p);
        let want: Vec<(u16, u16, Vec<u8>)> = vec![
            (0, 1, vec![2]),
            (0, 2, vec![17]),
            (0, 7, vec![0x13, 0xc5]),
            (0, 8, vec![0x13, 0xc4]),
            (0, 9, 1_700_000_000u32.to_be_bytes().to_vec()),
            (0, 10, vec![0, 1, 0xe2, 0x40]),
            (0, 11, vec![1]),
            (0, 12, vec![0xc0, 0, 2, 0x0a]),
            (0, 3, vec![192, 0, 2, 10]),
            (0, 4, vec![198, 51, 100, 21]),
            (0, 15, payload.to_vec()),
        ];
        assert_eq!(c, want);
        // The fixed header sngrep reads: 6 + 8 generic chunks.
        assert_eq!(payload.len(), 25);
        assert_eq!(
            p.len(),
            6 + 7 + 7 + 8 + 8 + 10 + 10 + 7 + 10 + 10 + 10 + 6 + 25
        );
        assert_eq!(&p[..6], b"HEP3\x00\x7c");
    }

    #[test]
    fn ipv6_and_mixed_families() {
        let m = Meta {
            src: "[2001:db8::10]:5060".parse().unwrap(),
            dst: "[2001:db8::21]:15060".parse().unwrap(),
            ts_sec: 1,
            ts_usec: 999_999,
            capture_id: 7,
        };
        let mut p = vec![];
        encode(&mut p, &m, b"x");
        let c = chunks(&p);
        assert_eq!(c[0], (0, 1, vec![10]));
        let src: std::net::Ipv6Addr = "2001:db8::10".parse().unwrap();
        let dst: std::net::Ipv6Addr = "2001:db8::21".parse().unwrap();
        assert_eq!(c[8], (0, 5, src.octets().to_vec()));
        assert_eq!(c[9], (0, 6, dst.octets().to_vec()));
        assert_eq!(c[3], (0, 8, 15060u16.to_be_bytes().to_vec()));
        assert_eq!(c[10], (0, 15, b"x".to_vec()));

        // v4 facing v6: v4-mapped; v4-mapped on both sides: plain v4.
        let mixed = Meta {
            src: "192.0.2.1:1".parse().unwrap(),
            ..m
        };
        let mut p = vec![];
        encode(&mut p, &mixed, b"x");
        let c = chunks(&p);
        assert_eq!(c[0].2, vec![10]);
        let mapped: std::net::Ipv6Addr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(c[8], (0, 5, mapped.octets().to_vec()));
        let both = Meta {
            src: "[::ffff:192.0.2.1]:1".parse().unwrap(),
            dst: "[::ffff:192.0.2.2]:2".parse().unwrap(),
            ..m
        };
        let mut p = vec![];
        encode(&mut p, &both, b"x");
        let c = chunks(&p);
        assert_eq!(c[0].2, vec![2]);
        assert_eq!(c[8], (0, 3, vec![192, 0, 2, 1]));
    }

    #[test]
    fn long_payloads_are_cut_to_fit() {
        let m = Meta {
            src: "[2001:db8::10]:5060".parse().unwrap(),
            dst: "[2001:db8::21]:5060".parse().unwrap(),
            ts_sec: 0,
            ts_usec: 0,
            capture_id: 0,
        };
        let big = vec![b'a'; 70_000];
        let mut p = vec![];
        assert_eq!(encode(&mut p, &m, &big), MAX_PAYLOAD);
        assert_eq!(p.len(), u16::MAX as usize);
        chunks(&p);
    }
}
