//! VRRPv3 advertisement codec (RFC 5798 §5.2, RFC 9568 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IPvX Address(es)                        |
//! ```
//!
//! Only the VRRP message itself is handled here: the IP header (TTL / hop
//! limit, protocol 112) belongs to the socket layer, and the checks that need
//! it are done by [`Instance`](crate::Instance).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The only VRRP version this crate speaks.
pub const VERSION: u8 = 3;
/// The only VRRP packet type (ADVERTISEMENT).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Length of the fixed header, before the addresses.
pub const HEADER_LEN: usize = 8;
/// Largest value of the 12-bit Max Adver Int field (centiseconds).
pub const MAX_ADVERT_INTERVAL: u16 = 0x0fff;
/// The TTL / hop limit every advert must be sent and received with.
pub const REQUIRED_TTL: u8 = 255;
/// IPv4 multicast group for VRRP.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group for VRRP.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Address family of a virtual router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: 4-byte addresses.
    V4,
    /// IPv6: 16-byte addresses.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Bytes per address on the wire.
    pub fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// The VRRP multicast group of this family.
    pub fn multicast_group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(MULTICAST_V4),
            Family::V6 => IpAddr::V6(MULTICAST_V6),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// What the checksum covers for IPv4. IPv6 always includes its pseudo-header.
///
/// RFC 5798 asks for a pseudo-header; implementations disagree on IPv4.
/// keepalived includes it by default, RFC 9568 leaves it out (keepalived's
/// `v3_checksum_as_v2`). The default follows keepalived so the two interoperate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// Include the IPv4 pseudo-header (src, dst, zero, protocol 112, length).
    #[default]
    PseudoHeader,
    /// VRRP message only, as VRRPv2 did and RFC 9568 specifies for IPv4.
    NoPseudoHeader,
}

/// A decoded VRRPv3 advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advert {
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Sender's priority: 255 owner, 0 "the Active is resigning".
    pub priority: u8,
    /// Sender's advertisement interval in centiseconds (12 bits).
    pub max_advert_interval: u16,
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
}

/// Why an [`Advert`] could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// An address, or src / dst, is not of the advert's family.
    MixedFamilies,
    /// More than 255 addresses do not fit the count field.
    TooManyAddresses(usize),
    /// The interval does not fit 12 bits.
    IntervalOutOfRange(u16),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::MixedFamilies => {
                f.write_str("addresses, source and destination must all be IPv4 or all IPv6")
            }
            EncodeError::TooManyAddresses(n) => {
                write!(f, "{n} addresses do not fit a VRRP advert (at most 255)")
            }
            EncodeError::IntervalOutOfRange(i) => {
                write!(
                    f,
                    "advert interval {i} cs does not fit 12 bits (at most 4095)"
                )
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why a received VRRP message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the 8-byte header.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Version field is not 3.
    BadVersion(u8),
    /// Type field is not 1 (ADVERTISEMENT).
    BadType(u8),
    /// The message length does not match the address count.
    LengthMismatch {
        /// Count field.
        count: u8,
        /// Family the addresses were decoded as.
        family: Family,
        /// Length the count implies.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// The checksum does not verify.
    BadChecksum {
        /// Checksum carried in the message.
        found: u16,
        /// Checksum computed over the message (and pseudo-header).
        computed: u16,
    },
    /// src / dst given for the pseudo-header are not of `family`.
    FamilyMismatch,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => {
                write!(
                    f,
                    "VRRP message too short: {len} bytes, header needs {HEADER_LEN}"
                )
            }
            DecodeError::BadVersion(v) => write!(f, "VRRP version {v}, expected {VERSION}"),
            DecodeError::BadType(t) => {
                write!(
                    f,
                    "VRRP type {t}, expected {TYPE_ADVERTISEMENT} (advertisement)"
                )
            }
            DecodeError::LengthMismatch {
                count,
                family,
                expected,
                actual,
            } => write!(
                f,
                "VRRP message is {actual} bytes but {count} {family} addresses need {expected}"
            ),
            DecodeError::BadChecksum { found, computed } => {
                write!(
                    f,
                    "VRRP checksum {found:#06x} does not verify (computed {computed:#06x})"
                )
            }
            DecodeError::FamilyMismatch => {
                f.write_str("source/destination address family does not match the virtual router")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Encodes `advert` as sent from `src` to `dst` (both needed for the
/// pseudo-header checksum).
pub fn encode(
    advert: &Advert,
    src: IpAddr,
    dst: IpAddr,
    mode: ChecksumMode,
) -> Result<Vec<u8>, EncodeError> {
    let family = Family::of(src);
    if Family::of(dst) != family || advert.addresses.iter().any(|a| Family::of(*a) != family) {
        return Err(EncodeError::MixedFamilies);
    }
    let count = u8::try_from(advert.addresses.len())
        .map_err(|_| EncodeError::TooManyAddresses(advert.addresses.len()))?;
    if advert.max_advert_interval > MAX_ADVERT_INTERVAL {
        return Err(EncodeError::IntervalOutOfRange(advert.max_advert_interval));
    }

    let mut buf = Vec::with_capacity(HEADER_LEN + usize::from(count) * family.addr_len());
    buf.push((VERSION << 4) | TYPE_ADVERTISEMENT);
    buf.push(advert.vrid);
    buf.push(advert.priority);
    buf.push(count);
    // Top 4 bits are reserved and sent as zero.
    buf.extend_from_slice(&advert.max_advert_interval.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    for addr in &advert.addresses {
        match addr {
            IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
        }
    }
    let sum = !ones_complement_sum(&pseudo_header(src, dst, buf.len(), mode), &buf);
    buf[6..8].copy_from_slice(&sum.to_be_bytes());
    Ok(buf)
}

/// Decodes a VRRP message (the IP payload) received from `src` on `dst`.
///
/// Checks length, version, type, address count and checksum. TTL, VRID and
/// the rest of the receive rules are the state machine's business.
pub fn decode(
    buf: &[u8],
    src: IpAddr,
    dst: IpAddr,
    family: Family,
    mode: ChecksumMode,
) -> Result<Advert, DecodeError> {
    if Family::of(src) != family || Family::of(dst) != family {
        return Err(DecodeError::FamilyMismatch);
    }
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: buf.len() });
    }
    let version = buf[0] >> 4;
    if version != VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    let kind = buf[0] & 0x0f;
    if kind != TYPE_ADVERTISEMENT {
        return Err(DecodeError::BadType(kind));
    }
    let count = buf[3];
    let expected = HEADER_LEN + usize::from(count) * family.addr_len();
    if buf.len() != expected {
        return Err(DecodeError::LengthMismatch {
            count,
            family,
            expected,
            actual: buf.len(),
        });
    }
    // Summing over the message including its checksum gives 0xffff when it
    // verifies; this also accepts either encoding of a zero checksum.
    let pseudo = pseudo_header(src, dst, buf.len(), mode);
    if ones_complement_sum(&pseudo, buf) != 0xffff {
        let found = u16::from_be_bytes([buf[6], buf[7]]);
        let mut zeroed = buf.to_vec();
        zeroed[6..8].fill(0);
        let computed = !ones_complement_sum(&pseudo, &zeroed);
        return Err(DecodeError::BadChecksum { found, computed });
    }

    let addresses = buf[HEADER_LEN..]
        .chunks_exact(family.addr_len())
        .map(|c| match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
            Family::V6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        })
        .collect();
    Ok(Advert {
        vrid: buf[1],
        priority: buf[2],
        max_advert_interval: u16::from_be_bytes([buf[4], buf[5]]) & MAX_ADVERT_INTERVAL,
        addresses,
    })
}

/// The pseudo-header the checksum covers, empty for IPv4 without one.
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize, mode: ChecksumMode) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if mode == ChecksumMode::PseudoHeader => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, IPPROTO_VRRP]);
            // A VRRP message is at most 8 + 255 * 16 bytes, so this fits.
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // RFC 8200 §8.1: src, dst, upper-layer length (32), zero (24), next header.
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
        }
        // IPv4 without pseudo-header. Callers check families first, and a
        // mismatched pair could not verify anyway.
        _ => {}
    }
    p
}

/// RFC 1071 one's-complement sum of `a` then `b`, folded to 16 bits (not
/// complemented). `a` is always of even length, so words never straddle.
fn ones_complement_sum(a: &[u8], b: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for part in [a, b] {
        let mut words = part.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn sample() -> Advert {
        Advert {
            vrid: 1,
            priority: 100,
            max_advert_interval: 100,
            addresses: vec![v4(192, 168, 0, 10)],
        }
    }

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1));
    const DST: IpAddr = IpAddr::V4(MULTICAST_V4);

    /// Independent straight-from-RFC-1071 reference: sum 16-bit words in
    /// 32 bits, fold carries, complement.
    fn rfc1071(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += (u32::from(data[i]) << 8) | u32::from(data[i + 1]);
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn known_answer_without_pseudo_header() {
        let bytes = encode(&sample(), SRC, DST, ChecksumMode::NoPseudoHeader).unwrap();
        // Words: 0x3101 + 0x6401 + 0x0064 + 0x0000 + 0xc0a8 + 0x000a
        //   = 0x1560f + 0x000a -> fold 0x560f + 0x000a = 0x5619; !0x5619 = 0xa9e6.
        assert_eq!(
            bytes,
            [0x31, 0x01, 0x64, 0x01, 0x00, 0x64, 0xa9, 0xe6, 192, 168, 0, 10]
        );
    }

    #[test]
    fn known_answer_with_ipv4_pseudo_header() {
        let bytes = encode(&sample(), SRC, DST, ChecksumMode::PseudoHeader).unwrap();
        // 0x5619 (message, above) + 0xc0a8 + 0x0001 (src) + 0xe000 + 0x0012 (dst)
        //   + 0x0070 (zero, proto 112) + 0x000c (length 12) = 0xf751; !0xf751 = 0x08ae.
        assert_eq!(&bytes[6..8], &[0x08, 0xae]);
        let mut pseudo = vec![192, 168, 0, 1, 224, 0, 0, 18, 0, 112, 0, 12];
        let mut zeroed = bytes.clone();
        zeroed[6..8].fill(0);
        pseudo.extend_from_slice(&zeroed);
        assert_eq!(rfc1071(&pseudo), 0x08ae);
    }

    #[test]
    fn pseudo_header_mode_changes_checksum_and_must_match() {
        let with = encode(&sample(), SRC, DST, ChecksumMode::PseudoHeader).unwrap();
        let without = encode(&sample(), SRC, DST, ChecksumMode::NoPseudoHeader).unwrap();
        assert_ne!(with[6..8], without[6..8]);
        assert_eq!(with[..6], without[..6]);
        let err = decode(&with, SRC, DST, Family::V4, ChecksumMode::NoPseudoHeader).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::BadChecksum {
                found: 0x08ae,
                computed: 0xa9e6
            }
        ));
        // The pseudo-header binds the addresses: a different source fails.
        let err = decode(
            &with,
            v4(192, 168, 0, 2),
            DST,
            Family::V4,
            ChecksumMode::PseudoHeader,
        );
        assert!(matches!(err, Err(DecodeError::BadChecksum { .. })));
    }

    #[test]
    fn round_trip_ipv4_both_modes() {
        let advert = Advert {
            vrid: 255,
            priority: 255,
            max_advert_interval: MAX_ADVERT_INTERVAL,
            addresses: vec![v4(10, 0, 0, 1), v4(10, 0, 0, 2), v4(10, 0, 0, 3)],
        };
        for mode in [ChecksumMode::PseudoHeader, ChecksumMode::NoPseudoHeader] {
            let bytes = encode(&advert, SRC, DST, mode).unwrap();
            assert_eq!(bytes.len(), 8 + 3 * 4);
            assert_eq!(decode(&bytes, SRC, DST, Family::V4, mode).unwrap(), advert);
        }
    }

    #[test]
    fn round_trip_ipv6_always_uses_pseudo_header() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = Family::V6.multicast_group();
        let advert = Advert {
            vrid: 7,
            priority: 0,
            max_advert_interval: 5,
            addresses: vec!["2001:db8::10".parse().unwrap(), "fe80::10".parse().unwrap()],
        };
        let a = encode(&advert, src, dst, ChecksumMode::PseudoHeader).unwrap();
        let b = encode(&advert, src, dst, ChecksumMode::NoPseudoHeader).unwrap();
        assert_eq!(a, b, "mode only affects IPv4");
        assert_eq!(a.len(), 8 + 2 * 16);
        assert_eq!(
            decode(&a, src, dst, Family::V6, ChecksumMode::default()).unwrap(),
            advert
        );

        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        pseudo.extend_from_slice(&MULTICAST_V6.octets());
        pseudo.extend_from_slice(&[0, 0, 0, 40, 0, 0, 0, 112]);
        let mut zeroed = a.clone();
        zeroed[6..8].fill(0);
        pseudo.extend_from_slice(&zeroed);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), rfc1071(&pseudo));

        let other_src: IpAddr = "fe80::2".parse().unwrap();
        let err = decode(&a, other_src, dst, Family::V6, ChecksumMode::default());
        assert!(matches!(err, Err(DecodeError::BadChecksum { .. })));
    }

    #[test]
    fn reserved_bits_ignored_on_decode() {
        let mut bytes = encode(&sample(), SRC, DST, ChecksumMode::NoPseudoHeader).unwrap();
        bytes[4] |= 0xf0;
        bytes[6..8].fill(0);
        let sum = rfc1071(&bytes);
        bytes[6..8].copy_from_slice(&sum.to_be_bytes());
        let advert = decode(&bytes, SRC, DST, Family::V4, ChecksumMode::NoPseudoHeader).unwrap();
        assert_eq!(advert.max_advert_interval, 100);
    }

    #[test]
    fn decode_errors() {
        let mode = ChecksumMode::PseudoHeader;
        let good = encode(&sample(), SRC, DST, mode).unwrap();
        let dec = |b: &[u8]| decode(b, SRC, DST, Family::V4, mode).unwrap_err();

        assert_eq!(dec(&good[..7]), DecodeError::TooShort { len: 7 });
        assert_eq!(dec(&[]), DecodeError::TooShort { len: 0 });

        let mut v2 = good.clone();
        v2[0] = 0x21;
        assert_eq!(dec(&v2), DecodeError::BadVersion(2));

        let mut bad_type = good.clone();
        bad_type[0] = 0x32;
        assert_eq!(dec(&bad_type), DecodeError::BadType(2));

        assert_eq!(
            dec(&good[..11]),
            DecodeError::LengthMismatch {
                count: 1,
                family: Family::V4,
                expected: 12,
                actual: 11
            }
        );
        let mut long = good.clone();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            dec(&long),
            DecodeError::LengthMismatch {
                expected: 12,
                actual: 16,
                ..
            }
        ));
        let mut count2 = good.clone();
        count2[3] = 2;
        assert!(matches!(
            dec(&count2),
            DecodeError::LengthMismatch { count: 2, .. }
        ));
        // IPv4-sized body decoded as IPv6 is a length error too.
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert!(matches!(
            decode(&good, v6, v6, Family::V6, mode),
            Err(DecodeError::LengthMismatch {
                family: Family::V6,
                expected: 24,
                ..
            })
        ));

        let mut corrupt = good.clone();
        corrupt[2] ^= 0x01;
        assert!(matches!(
            dec(&corrupt),
            DecodeError::BadChecksum { found: 0x08ae, .. }
        ));

        assert_eq!(
            decode(&good, v6, DST, Family::V4, mode),
            Err(DecodeError::FamilyMismatch)
        );
    }

    #[test]
    fn decode_error_display_is_readable() {
        let e = DecodeError::LengthMismatch {
            count: 2,
            family: Family::V4,
            expected: 16,
            actual: 12,
        };
        assert_eq!(
            e.to_string(),
            "VRRP message is 12 bytes but 2 IPv4 addresses need 16"
        );
        assert_eq!(
            DecodeError::BadVersion(2).to_string(),
            "VRRP version 2, expected 3"
        );
        let e = DecodeError::BadChecksum {
            found: 1,
            computed: 0xabcd,
        };
        assert_eq!(
            e.to_string(),
            "VRRP checksum 0x0001 does not verify (computed 0xabcd)"
        );
    }

    #[test]
    fn encode_errors() {
        let mode = ChecksumMode::default();
        let mut a = sample();
        a.addresses.push("::1".parse().unwrap());
        assert_eq!(encode(&a, SRC, DST, mode), Err(EncodeError::MixedFamilies));
        assert_eq!(
            encode(&sample(), SRC, Family::V6.multicast_group(), mode),
            Err(EncodeError::MixedFamilies)
        );
        let mut a = sample();
        a.max_advert_interval = 4096;
        assert_eq!(
            encode(&a, SRC, DST, mode),
            Err(EncodeError::IntervalOutOfRange(4096))
        );
        let mut a = sample();
        a.addresses = (0..256u32).map(|i| IpAddr::V4(Ipv4Addr::from(i))).collect();
        assert_eq!(
            encode(&a, SRC, DST, mode),
            Err(EncodeError::TooManyAddresses(256))
        );
    }

    #[test]
    fn checksum_matches_reference_on_odd_lengths() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                .collect();
            assert_eq!(
                !ones_complement_sum(&[], &data),
                rfc1071(&data),
                "len {len}"
            );
        }
    }
}
