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

use std::collections::VecDeque;
use std::time::Instant;

use siphasher::sip::SipHasher13;

use crate::config::DialogConfig;
use crate::hash::{fnv1a, random_key, HashKeyed};
use crate::pair::SyncRecord;

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

/// How many changes wait for the pair channel before the table gives up
/// on increments and asks for a full resync.
const FEED_MAX: usize = 65_536;

#[derive(Debug)]
pub(crate) struct DialogTable {
    map: HashKeyed<Dialog>,
    keys: SipHasher13,
    cfg: DialogConfig,
    per_edge: Vec<usize>,
    /// Changes for the peer host, when there is a pair.
    feed: Option<VecDeque<SyncRecord>>,
    resync: bool,
    /// False while this host does not hold the VIP: what it changes then
    /// comes from transactions stranded by the move, and the peer (now
    /// holding it) knows better.
    publishing: bool,
}

/// A Call-ID with its key: hashed once for all the lookups of a message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    id: &'a [u8],
    key: u64,
}

/// The table is full: the new dialog is refused (503).
#[derive(Debug)]
pub(crate) struct Full;

impl DialogTable {
    /// `key`: the SipHash key; both hosts of a pair derive the same one
    /// from their shared secret, and `sync` turns the change feed on.
    pub(crate) fn new(cfg: DialogConfig, edges: usize, key: Option<[u8; 16]>, sync: bool) -> Self {
        // No pair: any unpredictable key will do.
        let key = key.unwrap_or_else(random_key);
        DialogTable {
            map: HashKeyed::default(),
            keys: SipHasher13::new_with_key(&key),
            cfg,
            per_edge: vec![0; edges],
            feed: sync.then(VecDeque::new),
            resync: false,
            publishing: true,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn active_on(&self, edge: usize) -> usize {
        self.per_edge.get(edge).copied().unwrap_or(0)
    }

    fn key(&self, call_id: &[u8]) -> u64 {
        self.keys.hash(call_id)
    }

    pub(crate) fn call<'a>(&self, call_id: &'a [u8]) -> Call<'a> {
        Call {
            id: call_id,
            key: self.key(call_id),
        }
    }

    pub(crate) fn get(&self, call: Call<'_>) -> Option<&Dialog> {
        self.map.get(&call.key)
    }

    fn record(key: u64, route: u64, d: &Dialog, now: Instant) -> SyncRecord {
        SyncRecord::Dialog {
            key,
            route,
            edge: d.edge,
            from_edge: d.from_edge,
            confirmed: d.state == DialogState::Confirmed,
            ended: d.state == DialogState::Ended,
            ttl: d.expires.saturating_duration_since(now),
        }
    }

    pub(crate) fn set_publishing(&mut self, on: bool) {
        self.publishing = on;
    }

    fn publish(&mut self, now: Instant, key: u64, call_id: &[u8]) {
        let Some(feed) = self.feed.as_mut().filter(|_| self.publishing) else {
            return;
        };
        if self.resync {
            return;
        }
        if feed.len() >= FEED_MAX {
            // The peer is gone or slow: stop queueing, resync later.
            feed.clear();
            self.resync = true;
            return;
        }
        if let Some(d) = self.map.get(&key) {
            feed.push_back(Self::record(key, fnv1a(call_id), d, now));
        }
    }

    /// Binds a new dialog, or moves an early one to another Edge (failover
    /// before any answer). A confirmed dialog never moves.
    pub(crate) fn bind(
        &mut self,
        now: Instant,
        call: Call<'_>,
        edge: u16,
        from_edge: bool,
    ) -> Result<(), Full> {
        let expires = now + self.cfg.lifetime;
        let key = call.key;
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
        } else {
            if self.map.len() >= self.cfg.max_dialogs {
                return Err(Full);
            }
            let d = Dialog {
                edge,
                from_edge,
                state: DialogState::Early,
                expires,
            };
            self.map.insert(key, d);
            self.per_edge[edge as usize] += 1;
        }
        self.publish(now, key, call.id);
        Ok(())
    }

    pub(crate) fn confirm(&mut self, now: Instant, call_id: &[u8]) {
        let key = self.key(call_id);
        if let Some(d) = self.map.get_mut(&key) {
            if d.state == DialogState::Early {
                d.state = DialogState::Confirmed;
                self.publish(now, key, call_id);
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
                self.publish(now, key, call_id);
            }
        }
    }

    /// A change from the peer host: taken as is, not fed back.
    pub(crate) fn apply(&mut self, now: Instant, r: &SyncRecord) {
        let SyncRecord::Dialog {
            key,
            edge,
            from_edge,
            confirmed,
            ended,
            ttl,
            ..
        } = *r
        else {
            return;
        };
        if edge as usize >= self.per_edge.len() {
            return;
        }
        let state = match (ended, confirmed) {
            (true, _) => DialogState::Ended,
            (false, true) => DialogState::Confirmed,
            (false, false) => DialogState::Early,
        };
        let expires = now + ttl.min(self.cfg.lifetime);
        if let Some(old) = self.map.get(&key) {
            if old.state != DialogState::Ended {
                self.per_edge[old.edge as usize] -= 1;
            }
        } else if self.map.len() >= self.cfg.max_dialogs {
            return;
        }
        if state != DialogState::Ended {
            self.per_edge[edge as usize] += 1;
        }
        self.map.insert(
            key,
            Dialog {
                edge,
                from_edge,
                state,
                expires,
            },
        );
    }

    /// The next change for the peer; `ResyncBegin` when the feed overflowed
    /// (the shell then sends [`DialogTable::snapshot`] and `ResyncEnd`).
    pub(crate) fn poll_change(&mut self) -> Option<SyncRecord> {
        if self.resync {
            self.resync = false;
            return Some(SyncRecord::ResyncBegin);
        }
        self.feed.as_mut()?.pop_front()
    }

    /// Every dialog, for a peer that (re)connected. `route` is unknown
    /// here (the table keeps no Call-ID): 0 sends it to the first worker
    /// and the shell broadcasts snapshot records to every worker.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<SyncRecord> {
        self.map
            .iter()
            .map(|(k, d)| Self::record(*k, 0, d, now))
            .collect()
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

    #[test]
    fn keys_are_the_streamed_siphash() {
        // A pair's hosts may run different builds: the key must not move.
        use std::hash::Hasher;
        let t = table(1);
        let data: Vec<u8> = (0..200u8).collect();
        for len in 0..data.len() {
            let mut h = t.keys;
            h.write(&data[..len]);
            assert_eq!(t.key(&data[..len]), h.finish(), "{len}");
        }
    }

    fn table(max: usize) -> DialogTable {
        DialogTable::new(
            DialogConfig {
                max_dialogs: max,
                grace: Duration::from_secs(32),
                lifetime: Duration::from_secs(3600),
            },
            2,
            None,
            false,
        )
    }

    #[test]
    fn lifecycle() {
        let t0 = Instant::now();
        let mut t = table(10);
        t.bind(t0, t.call(b"a"), 0, false).unwrap();
        assert_eq!(t.active_on(0), 1);
        t.bind(t0, t.call(b"a"), 1, false).unwrap();
        assert_eq!((t.active_on(0), t.active_on(1)), (0, 1));
        t.confirm(t0, b"a");
        t.bind(t0, t.call(b"a"), 0, false).unwrap();
        assert_eq!(
            t.get(t.call(b"a")).unwrap().edge,
            1,
            "a confirmed dialog never moves"
        );
        t.end(t0, b"a");
        assert_eq!(t.active_on(1), 0);
        assert_eq!(t.sweep(t0 + Duration::from_secs(31)), 0);
        assert_eq!(t.sweep(t0 + Duration::from_secs(33)), 1);
        assert!(t.get(t.call(b"a")).is_none());
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut t = table(2);
        t.bind(t0, t.call(b"a"), 0, false).unwrap();
        t.bind(t0, t.call(b"b"), 0, false).unwrap();
        assert!(t.bind(t0, t.call(b"c"), 0, false).is_err());
        t.bind(t0, t.call(b"a"), 1, false).unwrap();
        assert_eq!(t.sweep(t0 + Duration::from_secs(3601)), 2);
        assert_eq!((t.active_on(0), t.active_on(1), t.len()), (0, 0, 0));
    }
}
