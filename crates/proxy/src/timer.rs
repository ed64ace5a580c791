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
    heap: BinaryHeap<Reverse<(Instant, Owner, TimerKind, u32)>>,
}

impl TimerQueue {
    pub(crate) fn push(&mut self, at: Instant, owner: Owner, kind: TimerKind, ticket: u32) {
        self.heap.push(Reverse((at, owner, kind, ticket)));
    }

    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0 .0)
    }

    /// The next entry due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Owner, TimerKind, u32)> {
        if self.heap.peek()?.0 .0 <= now {
            self.heap.pop().map(|r| (r.0 .1, r.0 .2, r.0 .3))
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Per-transaction armed timers: for each kind the ticket of the queue
/// entry that counts (0: disarmed). Re-arming or clearing a kind makes its
/// older entries stale; they are skipped when they come due.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Armed {
    tickets: [u32; KINDS],
    next: u32,
}

impl Armed {
    /// Arms `kind` and returns the ticket its queue entry must carry.
    pub(crate) fn set(&mut self, kind: TimerKind) -> u32 {
        self.next = self.next.wrapping_add(1).max(1);
        self.tickets[kind.index()] = self.next;
        self.next
    }
    pub(crate) fn clear(&mut self, kind: TimerKind) {
        self.tickets[kind.index()] = 0;
    }
    /// True when `ticket` is still the armed one of `kind`; disarms it.
    pub(crate) fn take_if(&mut self, kind: TimerKind, ticket: u32) -> bool {
        if ticket != 0 && self.tickets[kind.index()] == ticket {
            self.tickets[kind.index()] = 0;
            true
        } else {
            false
        }
    }
}
