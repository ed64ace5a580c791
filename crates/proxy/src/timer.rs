//! Deadlines with lazy cancellation: an entry fires only if its owner still
//! holds the same deadline for that kind when it comes due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    /// INVITE request retransmission (A) or non-INVITE (E), client side.
    Retransmit,
    /// Client transaction timeout: B, F.
    Timeout,
    /// No answer at all: try the next Edge.
    Failover,
    /// Timer C: a proxied INVITE that rings for ever.
    TimerC,
    /// Client transaction linger after a final answer: D, K, M.
    ClientLinger,
    /// CANCEL retransmission toward the Edge.
    CancelRetransmit,
    /// Server: final response retransmission (G).
    ServerRetransmit,
    /// Server: waiting for the ACK (H), or linger (I, J, L).
    ServerLinger,
}

pub(crate) const KINDS: usize = 8;

impl TimerKind {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Who a timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Owner {
    Client { slot: u32, gen: u32 },
    Server { slot: u32, gen: u32 },
    Sweep,
}

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, Owner, TimerKind)>>,
}

impl TimerQueue {
    pub(crate) fn push(&mut self, at: Instant, owner: Owner, kind: TimerKind) {
        self.heap.push(Reverse((at, owner, kind)));
    }

    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0 .0)
    }

    /// The next entry due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Owner, TimerKind)> {
        if self.heap.peek()?.0 .0 <= now {
            self.heap.pop().map(|r| r.0)
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Per-transaction armed deadlines, one per kind.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Armed([Option<Instant>; KINDS]);

impl Armed {
    pub(crate) fn set(&mut self, kind: TimerKind, at: Instant) {
        self.0[kind.index()] = Some(at);
    }
    pub(crate) fn clear(&mut self, kind: TimerKind) {
        self.0[kind.index()] = None;
    }
    pub(crate) fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.0[kind.index()]
    }
    /// True when `at` is still the armed deadline of `kind`; disarms it.
    pub(crate) fn take_if(&mut self, kind: TimerKind, at: Instant) -> bool {
        if self.0[kind.index()] == Some(at) {
            self.0[kind.index()] = None;
            true
        } else {
            false
        }
    }
}
