//! Small, stable, dependency-free hashes: the same input gives the same
//! value on every host and every run, which sharding and Edge choice need.

pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: spreads FNV's weak low bits.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a fed piece by piece, with the same finaliser as [`fnv1a`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub(crate) fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// Feeds a hasher through a stack buffer: SipHash pays per `write`, and
/// a transaction key is a handful of short pieces. The hash is that of
/// the pieces written one after the other, as without the buffer.
pub(crate) struct Gather<H> {
    h: H,
    buf: [u8; 128],
    len: usize,
}

impl<H: std::hash::Hasher> Gather<H> {
    pub(crate) fn new(h: H) -> Self {
        Gather {
            h,
            buf: [0; 128],
            len: 0,
        }
    }

    pub(crate) fn write(&mut self, b: &[u8]) {
        if self.len + b.len() > self.buf.len() {
            self.h.write(&self.buf[..self.len]);
            self.len = 0;
            if b.len() > self.buf.len() {
                self.h.write(b);
                return;
            }
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    pub(crate) fn finish(mut self) -> u64 {
        self.h.write(&self.buf[..self.len]);
        self.h.finish()
    }
}

/// A `Hasher` for keys that are keyed hashes already: the key as it is.
#[derive(Debug, Default)]
pub(crate) struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by a keyed hash (SipHash under a secret key).
pub(crate) type HashKeyed<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<Identity>>;

/// A SipHash key nobody outside the process can predict.
pub(crate) fn random_key() -> [u8; 16] {
    use std::hash::BuildHasher;
    let r = std::collections::hash_map::RandomState::new();
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&r.hash_one(1u8).to_le_bytes());
    k[8..].copy_from_slice(&r.hash_one(2u8).to_le_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    #[test]
    fn gathered_pieces_hash_as_written_one_by_one() {
        let key = [7u8; 16];
        let long = vec![b'x'; 300];
        let pieces: [&[u8]; 6] = [
            b"I",
            b"z9hG4bK-1",
            b" ",
            b"198.51.100.2:5060",
            &long,
            b"end",
        ];
        let mut direct = siphasher::sip::SipHasher13::new_with_key(&key);
        let mut gathered = Gather::new(siphasher::sip::SipHasher13::new_with_key(&key));
        for p in pieces {
            direct.write(p);
            gathered.write(p);
        }
        assert_eq!(direct.finish(), gathered.finish());
    }
}
