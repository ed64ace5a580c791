//! Call-ID affinity: every dialog bound to its Edge, so in-dialog requests
//! of either direction reach the same Edge even without a Route.
//!
//! Keys are a 64-bit SipHash of the Call-ID under a key drawn at random
//! per process: fixed size (the table holds no copy of the Call-ID, and
//! never a view into a datagram, which would pin the whole message), and
//! not predictable, so nobody can craft a Call-ID that lands on another
//! call's entry. Entries end a grace time after the dialog ends, or after
//! the lifetime; the table refuses new dialogs when full rather than evict
//! a live one.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::time::Instant;

use crate::config::DialogConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialogState {
    /// INVITE sent, no 2xx yet.
    Early,
    Confirmed,
    Ended,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Dialog {
    pub(crate) edge: u16,
    /// True when the Edge started the dialog (an outbound call).
    pub(crate) from_edge: bool,
    pub(crate) state: DialogState,
    expires: Instant,
}

/// The keys are hashes already: use them as they are.
#[derive(Debug, Default)]
struct Identity(u64);

impl Hasher for Identity {
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

#[derive(Debug)]
pub(crate) struct DialogTable {
    map: HashMap<u64, Dialog, BuildHasherDefault<Identity>>,
    keys: RandomState,
    cfg: DialogConfig,
    per_edge: Vec<usize>,
}

/// The table is full: the new dialog is refused (503).
#[derive(Debug)]
pub(crate) struct Full;

impl DialogTable {
    pub(crate) fn new(cfg: DialogConfig, edges: usize) -> Self {
        DialogTable {
            map: HashMap::default(),
            keys: RandomState::new(),
            cfg,
            per_edge: vec![0; edges],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn active_on(&self, edge: usize) -> usize {
        self.per_edge.get(edge).copied().unwrap_or(0)
    }

    fn key(&self, call_id: &[u8]) -> u64 {
        self.keys.hash_one(call_id)
    }

    pub(crate) fn get(&self, call_id: &[u8]) -> Option<&Dialog> {
        self.map.get(&self.key(call_id))
    }

    /// Binds a new dialog, or moves an early one to another Edge (failover
    /// before any answer). A confirmed dialog never moves.
    pub(crate) fn bind(
        &mut self,
        now: Instant,
        call_id: &[u8],
        edge: u16,
        from_edge: bool,
    ) -> Result<(), Full> {
        let expires = now + self.cfg.lifetime;
        let key = self.key(call_id);
        if let Some(d) = self.map.get_mut(&key) {
            if d.state == DialogState::Confirmed {
                return Ok(());
            }
            if d.state == DialogState::Early {
                self.per_edge[d.edge as usize] -= 1;
            }
            d.edge = edge;
            d.from_edge = from_edge;
            d.state = DialogState::Early;
            d.expires = expires;
            self.per_edge[edge as usize] += 1;
            return Ok(());
        }
        if self.map.len() >= self.cfg.max_dialogs {
            return Err(Full);
        }
        self.map.insert(
            key,
            Dialog {
                edge,
                from_edge,
                state: DialogState::Early,
                expires,
            },
        );
        self.per_edge[edge as usize] += 1;
        Ok(())
    }

    pub(crate) fn confirm(&mut self, call_id: &[u8]) {
        let key = self.key(call_id);
        if let Some(d) = self.map.get_mut(&key) {
            if d.state == DialogState::Early {
                d.state = DialogState::Confirmed;
            }
        }
    }

    /// The dialog ended (BYE answered, or the INVITE failed): keep it a
    /// grace time for retransmissions.
    pub(crate) fn end(&mut self, now: Instant, call_id: &[u8]) {
        let key = self.key(call_id);
        if let Some(d) = self.map.get_mut(&key) {
            if d.state != DialogState::Ended {
                self.per_edge[d.edge as usize] -= 1;
                d.state = DialogState::Ended;
                d.expires = now + self.cfg.grace;
            }
        }
    }

    /// Drops expired entries; returns how many.
    pub(crate) fn sweep(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let per_edge = &mut self.per_edge;
        self.map.retain(|_, d| {
            let keep = d.expires > now;
            if !keep && d.state != DialogState::Ended {
                per_edge[d.edge as usize] -= 1;
            }
            keep
        });
        before - self.map.len()
    }

    /// Bytes per dialog from the table's layout: one hash slot and its
    /// control byte at hashbrown's highest load factor (7/8).
    pub(crate) fn approx_bytes_per_entry() -> usize {
        (std::mem::size_of::<(u64, Dialog)>() + 1) * 8 / 7
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn table(max: usize) -> DialogTable {
        DialogTable::new(
            DialogConfig {
                max_dialogs: max,
                grace: Duration::from_secs(32),
                lifetime: Duration::from_secs(3600),
            },
            2,
        )
    }

    #[test]
    fn lifecycle() {
        let t0 = Instant::now();
        let mut t = table(10);
        t.bind(t0, b"a", 0, false).unwrap();
        assert_eq!(t.active_on(0), 1);
        t.bind(t0, b"a", 1, false).unwrap();
        assert_eq!((t.active_on(0), t.active_on(1)), (0, 1));
        t.confirm(b"a");
        t.bind(t0, b"a", 0, false).unwrap();
        assert_eq!(
            t.get(b"a").unwrap().edge,
            1,
            "a confirmed dialog never moves"
        );
        t.end(t0, b"a");
        assert_eq!(t.active_on(1), 0);
        assert_eq!(t.sweep(t0 + Duration::from_secs(31)), 0);
        assert_eq!(t.sweep(t0 + Duration::from_secs(33)), 1);
        assert!(t.get(b"a").is_none());
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut t = table(2);
        t.bind(t0, b"a", 0, false).unwrap();
        t.bind(t0, b"b", 0, false).unwrap();
        assert!(t.bind(t0, b"c", 0, false).is_err());
        t.bind(t0, b"a", 1, false).unwrap();
        assert_eq!(t.sweep(t0 + Duration::from_secs(3601)), 2);
        assert_eq!((t.active_on(0), t.active_on(1), t.len()), (0, 0, 0));
    }
}
