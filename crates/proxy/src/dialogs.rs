//! Call-ID affinity: every dialog bound to its Edge, so in-dialog requests
//! of either direction reach the same Edge even without a Route.
//!
//! Keys are copies of the Call-ID (never a view into a datagram, which
//! would pin the whole message). Entries end a grace time after the dialog
//! ends, or after the lifetime; the table refuses new dialogs when full
//! rather than evict a live one.

use std::collections::HashMap;
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

#[derive(Debug)]
pub(crate) struct DialogTable {
    map: HashMap<Box<[u8]>, Dialog>,
    cfg: DialogConfig,
    per_edge: Vec<usize>,
}

/// The table is full: the new dialog is refused (503).
#[derive(Debug)]
pub(crate) struct Full;

impl DialogTable {
    pub(crate) fn new(cfg: DialogConfig, edges: usize) -> Self {
        DialogTable {
            map: HashMap::new(),
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

    pub(crate) fn get(&self, call_id: &[u8]) -> Option<&Dialog> {
        self.map.get(call_id)
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
        if let Some(d) = self.map.get_mut(call_id) {
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
            call_id.into(),
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
        if let Some(d) = self.map.get_mut(call_id) {
            if d.state == DialogState::Early {
                d.state = DialogState::Confirmed;
            }
        }
    }

    /// The dialog ended (BYE answered, or the INVITE failed): keep it a
    /// grace time for retransmissions.
    pub(crate) fn end(&mut self, now: Instant, call_id: &[u8]) {
        if let Some(d) = self.map.get_mut(call_id) {
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

    /// Bytes held per dialog, measured from the table's own layout (key
    /// bytes, box header, hash slot with its control byte).
    pub(crate) fn approx_bytes_per_entry(call_id_len: usize) -> usize {
        let slot = std::mem::size_of::<(Box<[u8]>, Dialog)>() + 1;
        // hashbrown keeps the load factor at most 7/8.
        slot * 8 / 7 + call_id_len
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
