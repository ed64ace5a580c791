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
