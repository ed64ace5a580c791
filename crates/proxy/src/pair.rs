//! Pair sync, sans-IO: what the two hosts of a pair tell each other so
//! that either can carry the other's calls, and the wire format it travels
//! in.
//!
//! Records: dialog bindings (Call-ID affinity) and each host's view of
//! Edge health. Dialogs are named by the affinity table's key, a SipHash of
//! the Call-ID under a key both hosts derive from the shared secret, so the
//! table never holds a Call-ID and the peer can look a dialog up from the
//! Call-ID of any in-dialog request. `route` is the [`crate::shard_of`]
//! hash, so the receiving daemon hands the record to the right worker.
//!
//! Frames: `TVS1`, kind, the receiver's session nonce, a sequence number,
//! payload length, payload, and an HMAC-SHA-256 tag (first 16 bytes) over
//! all of it under a key derived from the shared secret. A frame is taken
//! only if its tag verifies, it names our current nonce (so nothing from
//! an earlier session replays), and its sequence number is above the last
//! one taken (so nothing within the session replays). Each side sends a
//! Hello with a fresh nonce when a connection opens.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 4] = b"TVS1";
const HEADER: usize = 4 + 1 + 8 + 8 + 2;
const TAG: usize = 16;

/// What one host tells the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRecord {
    /// A dialog and the Edge it is bound to.
    Dialog {
        key: u64,
        route: u64,
        edge: u16,
        from_edge: bool,
        confirmed: bool,
        ended: bool,
        /// How much longer the entry is kept.
        ttl: Duration,
    },
    /// The sender's own view of an Edge.
    Health {
        edge: u16,
        healthy: bool,
    },
    /// The sender's queue overflowed: a full resync follows.
    ResyncBegin,
    ResyncEnd,
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairError {
    /// Not a frame of ours, or cut short.
    Malformed,
    /// The tag does not verify: wrong secret, or tampered with.
    BadTag,
    /// An old nonce or an old sequence number: a replay.
    Replay,
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PairError::Malformed => "malformed pair frame",
            PairError::BadTag => "pair frame failed authentication",
            PairError::Replay => "replayed pair frame",
        })
    }
}

impl std::error::Error for PairError {}

/// What a frame carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The peer (re)started its session: send it a full snapshot.
    Hello,
    Record(SyncRecord),
}

/// Counts of frames taken and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairStats {
    pub accepted: u64,
    pub malformed: u64,
    pub bad_tag: u64,
    pub replayed: u64,
}

/// Keys derived from the shared secret.
pub fn derive_key(secret: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"trunkvip pair v1 ");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// One connection's worth of pair protocol state.
#[derive(Debug)]
pub struct PairSession {
    mac_key: [u8; 32],
    my_nonce: u64,
    peer_nonce: Option<u64>,
    send_seq: u64,
    recv_seq: u64,
    pub stats: PairStats,
}

impl PairSession {
    /// `nonce` must be fresh for every connection (the shell draws it at
    /// random).
    pub fn new(secret: &[u8], nonce: u64) -> Self {
        PairSession {
            mac_key: derive_key(secret, "frame"),
            my_nonce: nonce,
            peer_nonce: None,
            send_seq: 0,
            recv_seq: 0,
            stats: PairStats::default(),
        }
    }

    /// True once the peer's Hello arrived: records can be sent.
    pub fn ready(&self) -> bool {
        self.peer_nonce.is_some()
    }

    fn frame(&mut self, kind: u8, to: u64, payload: &[u8]) -> Vec<u8> {
        self.send_seq += 1;
        let mut f = Vec::with_capacity(HEADER + payload.len() + TAG);
        f.extend_from_slice(MAGIC);
        f.push(kind);
        f.extend_from_slice(&to.to_be_bytes());
        f.extend_from_slice(&self.send_seq.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(payload);
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.mac_key).expect("key");
        mac.update(&f);
        f.extend_from_slice(&mac.finalize().into_bytes()[..TAG]);
        f
    }

    /// The first frame on a connection.
    pub fn hello(&mut self) -> Vec<u8> {
        let nonce = self.my_nonce.to_be_bytes();
        self.frame(0, 0, &nonce)
    }

    /// A record, or `None` before the peer's Hello.
    pub fn encode(&mut self, r: &SyncRecord) -> Option<Vec<u8>> {
        let to = self.peer_nonce?;
        let mut p = Vec::with_capacity(32);
        let kind = match *r {
            SyncRecord::Dialog {
                key,
                route,
                edge,
                from_edge,
                confirmed,
                ended,
                ttl,
            } => {
                p.extend_from_slice(&key.to_be_bytes());
                p.extend_from_slice(&route.to_be_bytes());
                p.extend_from_slice(&edge.to_be_bytes());
                p.push(u8::from(from_edge) | u8::from(confirmed) << 1 | u8::from(ended) << 2);
                p.extend_from_slice(&(ttl.as_millis().min(u64::MAX as u128) as u64).to_be_bytes());
                1
            }
            SyncRecord::Health { edge, healthy } => {
                p.extend_from_slice(&edge.to_be_bytes());
                p.push(u8::from(healthy));
                2
            }
            SyncRecord::ResyncBegin => 3,
            SyncRecord::ResyncEnd => 4,
        };
        Some(self.frame(kind, to, &p))
    }

    /// The length of the frame at the start of `buf`, once its header is
    /// there (for stream framing).
    pub fn frame_len(buf: &[u8]) -> Option<usize> {
        if buf.len() < HEADER {
            return None;
        }
        let len = u16::from_be_bytes([buf[HEADER - 2], buf[HEADER - 1]]) as usize;
        Some(HEADER + len + TAG)
    }

    /// Takes one whole frame.
    pub fn decode(&mut self, f: &[u8]) -> Result<Received, PairError> {
        let r = self.decode_inner(f);
        match r {
            Ok(_) => self.stats.accepted += 1,
            Err(PairError::Malformed) => self.stats.malformed += 1,
            Err(PairError::BadTag) => self.stats.bad_tag += 1,
            Err(PairError::Replay) => self.stats.replayed += 1,
        }
        r
    }

    fn decode_inner(&mut self, f: &[u8]) -> Result<Received, PairError> {
        if f.len() < HEADER + TAG || &f[..4] != MAGIC || Self::frame_len(f) != Some(f.len()) {
            return Err(PairError::Malformed);
        }
        let (body, tag) = f.split_at(f.len() - TAG);
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.mac_key).expect("key");
        mac.update(body);
        mac.verify_truncated_left(tag)
            .map_err(|_| PairError::BadTag)?;
        let kind = f[4];
        let to = u64::from_be_bytes(f[5..13].try_into().expect("8 bytes"));
        let seq = u64::from_be_bytes(f[13..21].try_into().expect("8 bytes"));
        let p = &body[HEADER..];
        if kind == 0 {
            // A new session of the peer's: its sequence starts again.
            let nonce = p.get(..8).ok_or(PairError::Malformed)?;
            self.peer_nonce = Some(u64::from_be_bytes(nonce.try_into().expect("8 bytes")));
            self.recv_seq = seq;
            return Ok(Received::Hello);
        }
        if to != self.my_nonce || seq <= self.recv_seq {
            return Err(PairError::Replay);
        }
        self.recv_seq = seq;
        let u64_at = |n: usize| {
            p.get(n..n + 8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        };
        let u16_at = |n: usize| {
            p.get(n..n + 2)
                .map(|b| u16::from_be_bytes(b.try_into().expect("2 bytes")))
        };
        let rec = match kind {
            1 => {
                let flags = *p.get(18).ok_or(PairError::Malformed)?;
                SyncRecord::Dialog {
                    key: u64_at(0).ok_or(PairError::Malformed)?,
                    route: u64_at(8).ok_or(PairError::Malformed)?,
                    edge: u16_at(16).ok_or(PairError::Malformed)?,
                    from_edge: flags & 1 != 0,
                    confirmed: flags & 2 != 0,
                    ended: flags & 4 != 0,
                    ttl: Duration::from_millis(u64_at(19).ok_or(PairError::Malformed)?),
                }
            }
            2 => SyncRecord::Health {
                edge: u16_at(0).ok_or(PairError::Malformed)?,
                healthy: *p.get(2).ok_or(PairError::Malformed)? != 0,
            },
            3 => SyncRecord::ResyncBegin,
            4 => SyncRecord::ResyncEnd,
            _ => return Err(PairError::Malformed),
        };
        Ok(Received::Record(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (PairSession, PairSession) {
        let mut a = PairSession::new(b"shared secret", 11);
        let mut b = PairSession::new(b"shared secret", 22);
        let ha = a.hello();
        let hb = b.hello();
        assert_eq!(b.decode(&ha), Ok(Received::Hello));
        assert_eq!(a.decode(&hb), Ok(Received::Hello));
        (a, b)
    }

    #[test]
    fn records_round_trip() {
        let (mut a, mut b) = pair();
        let recs = [
            SyncRecord::Dialog {
                key: 7,
                route: 9,
                edge: 1,
                from_edge: true,
                confirmed: true,
                ended: false,
                ttl: Duration::from_millis(1234),
            },
            SyncRecord::Health {
                edge: 3,
                healthy: false,
            },
            SyncRecord::ResyncBegin,
            SyncRecord::ResyncEnd,
        ];
        for r in recs {
            let f = a.encode(&r).unwrap();
            assert_eq!(PairSession::frame_len(&f), Some(f.len()));
            assert_eq!(b.decode(&f), Ok(Received::Record(r)));
        }
        assert_eq!(b.stats.accepted, 5);
    }

    #[test]
    fn nothing_before_hello() {
        let mut a = PairSession::new(b"s", 1);
        assert!(a.encode(&SyncRecord::ResyncEnd).is_none());
    }

    #[test]
    fn wrong_secret_tampering_and_replay_are_refused() {
        let (mut a, mut b) = pair();
        let f = a
            .encode(&SyncRecord::Health {
                edge: 0,
                healthy: true,
            })
            .unwrap();
        assert!(b.decode(&f).is_ok());
        assert_eq!(b.decode(&f), Err(PairError::Replay), "same frame twice");
        let mut t = a
            .encode(&SyncRecord::Health {
                edge: 0,
                healthy: true,
            })
            .unwrap();
        t[HEADER] ^= 1;
        assert_eq!(b.decode(&t), Err(PairError::BadTag));
        let mut other = PairSession::new(b"another secret", 5);
        other.peer_nonce = Some(22);
        let forged = other.encode(&SyncRecord::ResyncBegin).unwrap();
        assert_eq!(b.decode(&forged), Err(PairError::BadTag));
        assert_eq!(b.decode(b"TVS1 short"), Err(PairError::Malformed));
        // A frame of an earlier session names an old nonce.
        let old = a.encode(&SyncRecord::ResyncEnd).unwrap();
        let mut b2 = PairSession::new(b"shared secret", 33);
        b2.decode(&a.hello()).unwrap();
        assert_eq!(b2.decode(&old), Err(PairError::Replay));
        assert_eq!(
            (b.stats.replayed, b.stats.bad_tag, b.stats.malformed),
            (1, 2, 1)
        );
    }
}
