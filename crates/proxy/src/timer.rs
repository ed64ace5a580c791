//! Deadlines with lazy cancellation: an entry fires only if its owner still
//! holds the entry's ticket for some kind when it comes due.
//!
//! The proxy arms timers with a handful of delays (T1 and its doublings,
//! 64*T1, T4, Timer C, the failover time), and `now` never goes back, so
//! the entries of one delay come due in the order they were pushed. Each
//! delay gets a FIFO lane: arming and firing are O(1), and the next
//! deadline is the earliest lane head. An entry that would break its
//! lane's order (a clock that stepped back) goes to a small heap instead.
//!
//! Cancelled entries would still come due and wake the shell for nothing;
//! the proxy drops them from the front after each event
//! (`Proxy::prune_timers`), so the next deadline is one that acts. Timers
//! that only end state or give up after seconds fall on a 20 ms grid, so
//! at a steady call rate they fire together, one wake-up per step.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Server: the 100 (Trying) owed to an INVITE nobody has answered yet
    /// (RFC 3261 17.2.1's 200 ms). While armed, the 100 is owed.
    Trying,
}

const KINDS: usize = 9;

const ALL: [TimerKind; KINDS] = [
    TimerKind::Retransmit,
    TimerKind::Timeout,
    TimerKind::Failover,
    TimerKind::TimerC,
    TimerKind::ClientLinger,
    TimerKind::CancelRetransmit,
    TimerKind::ServerRetransmit,
    TimerKind::ServerLinger,
    TimerKind::Trying,
];

impl TimerKind {
    pub(crate) fn is_server(self) -> bool {
        matches!(
            self,
            TimerKind::ServerRetransmit | TimerKind::ServerLinger | TimerKind::Trying
        )
    }

    /// A timer that ends state or gives up after seconds, where a few
    /// milliseconds late change nothing: it may wait for its neighbours.
    fn is_lazy(self) -> bool {
        matches!(
            self,
            TimerKind::Timeout
                | TimerKind::TimerC
                | TimerKind::ClientLinger
                | TimerKind::ServerLinger
        )
    }
}

/// Lazy timers come due on this grid, so that at a steady call rate they
/// fire together in one wake-up per step rather than one per call.
const LAZY_GRID: u64 = 20_000_000;

/// The owner of an entry that is not a transaction: the periodic sweep.
pub(crate) const SWEEP: u32 = u32::MAX;

/// Per-transaction armed timers: for each kind the ticket of the queue
/// entry that counts (0: disarmed). Tickets are unique across the queue,
/// so an entry left by an earlier owner of the slot never matches.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Armed {
    tickets: [u32; KINDS],
}

impl Armed {
    pub(crate) fn clear(&mut self, kind: TimerKind) {
        self.tickets[kind as usize] = 0;
    }

    pub(crate) fn clear_where(&mut self, f: impl Fn(TimerKind) -> bool) {
        for k in ALL {
            if f(k) {
                self.clear(k);
            }
        }
    }

    pub(crate) fn is_armed(&self, kind: TimerKind) -> bool {
        self.tickets[kind as usize] != 0
    }

    /// Whether `ticket` is still armed here.
    pub(crate) fn holds(&self, ticket: u32) -> bool {
        ticket != 0 && self.tickets.contains(&ticket)
    }

    /// The kind `ticket` is armed for, disarmed; `None` for a stale entry.
    pub(crate) fn take(&mut self, ticket: u32) -> Option<TimerKind> {
        let n = self.tickets.iter().position(|&t| t == ticket && t != 0)?;
        self.tickets[n] = 0;
        Some(ALL[n])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// Nanoseconds after the queue's epoch.
    at: u64,
    slot: u32,
    ticket: u32,
}

/// A FIFO in fixed-size chunks: no doubling, so at most two chunks of
/// slack whatever its length.
#[derive(Debug, Default)]
struct Fifo {
    chunks: VecDeque<Vec<Entry>>,
    head: usize,
    spare: Option<Vec<Entry>>,
}

const CHUNK: usize = 128;

impl Fifo {
    fn back(&self) -> Option<&Entry> {
        self.chunks.back().and_then(|c| c.last())
    }

    fn front(&self) -> Option<&Entry> {
        self.chunks.front().and_then(|c| c.get(self.head))
    }

    fn push(&mut self, e: Entry) {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            let c = self
                .spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(CHUNK));
            self.chunks.push_back(c);
        }
        self.chunks.back_mut().expect("pushed above").push(e);
    }

    fn pop(&mut self) -> Option<Entry> {
        let c = self.chunks.front_mut()?;
        let e = *c.get(self.head)?;
        self.head += 1;
        if self.head == c.len() {
            self.head = 0;
            if c.len() == CHUNK {
                let mut c = self.chunks.pop_front().expect("non-empty");
                c.clear();
                self.spare = Some(c);
            } else {
                // The only chunk, consumed: reuse it.
                c.clear();
            }
        }
        Some(e)
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum::<usize>() - self.head
    }
}

#[derive(Debug)]
struct Lane {
    delay: u64,
    lazy: bool,
    fifo: Fifo,
}

/// More distinct delays than this share the heap.
const MAX_LANES: usize = 32;

#[derive(Debug)]
pub(crate) struct TimerQueue {
    epoch: Instant,
    lanes: Vec<Lane>,
    /// Each lane's front deadline, side by side: `scan` reads these
    /// rather than reach into every lane's chunks.
    fronts: Vec<Option<u64>>,
    late: BinaryHeap<Reverse<Entry>>,
    next_ticket: u32,
    /// The last `now` seen and its offset: one event arms several timers.
    clock: (Instant, u64),
    /// `scan()`, kept up to date: pushes update it, pops scan again.
    head: Option<(u64, Option<usize>)>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl TimerQueue {
    pub(crate) fn new(epoch: Instant) -> Self {
        TimerQueue {
            epoch,
            lanes: Vec::new(),
            fronts: Vec::new(),
            late: BinaryHeap::new(),
            next_ticket: 0,
            clock: (epoch, 0),
            head: None,
        }
    }

    /// `now` in nanoseconds after the epoch.
    fn offset(&mut self, now: Instant) -> u64 {
        if self.clock.0 != now {
            self.clock = (now, nanos(now.saturating_duration_since(self.epoch)));
        }
        self.clock.1
    }

    /// Arms `kind` of the transaction in `slot` to fire `delay` after `now`.
    pub(crate) fn arm(
        &mut self,
        armed: &mut Armed,
        kind: TimerKind,
        slot: u32,
        now: Instant,
        delay: Duration,
    ) {
        self.next_ticket = self.next_ticket.wrapping_add(1).max(1);
        armed.tickets[kind as usize] = self.next_ticket;
        self.push(slot, self.next_ticket, now, delay, kind.is_lazy());
    }

    /// An entry with no ticket to check (the sweep).
    pub(crate) fn push_sweep(&mut self, now: Instant, delay: Duration) {
        self.push(SWEEP, 0, now, delay, true);
    }

    fn push(&mut self, slot: u32, ticket: u32, now: Instant, delay: Duration, lazy: bool) {
        let delay = nanos(delay);
        let mut at = self.offset(now).saturating_add(delay);
        if lazy {
            at = at.div_ceil(LAZY_GRID).saturating_mul(LAZY_GRID);
        }
        let e = Entry { at, slot, ticket };
        let lane = match self
            .lanes
            .iter()
            .position(|l| l.delay == delay && l.lazy == lazy)
        {
            Some(n) => Some(n),
            None if self.lanes.len() < MAX_LANES => {
                self.lanes.push(Lane {
                    delay,
                    lazy,
                    fifo: Fifo::default(),
                });
                self.fronts.push(None);
                Some(self.lanes.len() - 1)
            }
            None => None,
        };
        let place = match lane {
            Some(n) if self.lanes[n].fifo.back().is_none_or(|b| b.at <= at) => {
                self.lanes[n].fifo.push(e);
                self.fronts[n].get_or_insert(at);
                Some(n)
            }
            _ => {
                self.late.push(Reverse(e));
                None
            }
        };
        // As `scan` would choose: the earliest, then the heap, then the
        // first lane.
        let rank = |p: Option<usize>| p.map_or(0, |n| n + 1);
        if self
            .head
            .is_none_or(|(h, hp)| (at, rank(place)) < (h, rank(hp)))
        {
            self.head = Some((at, place));
        }
    }

    /// Where the earliest entry is: a lane, or the heap (`None`).
    fn earliest(&self) -> Option<(u64, Option<usize>)> {
        debug_assert_eq!(self.head, self.scan());
        debug_assert!(self.fronts_agree());
        self.head
    }

    fn scan(&self) -> Option<(u64, Option<usize>)> {
        let mut best = self.late.peek().map(|r| (r.0.at, None));
        for (n, &f) in self.fronts.iter().enumerate() {
            if let Some(at) = f {
                if best.is_none_or(|b| at < b.0) {
                    best = Some((at, Some(n)));
                }
            }
        }
        best
    }

    pub(crate) fn peek(&self) -> Option<Instant> {
        self.earliest()
            .map(|(at, _)| self.epoch + Duration::from_nanos(at))
    }

    /// The earliest entry, due or not: (slot, ticket).
    pub(crate) fn first(&self) -> Option<(u32, u32)> {
        let (_, lane) = self.earliest()?;
        let e = match lane {
            Some(n) => self.lanes[n].fifo.front(),
            None => self.late.peek().map(|r| &r.0),
        }?;
        Some((e.slot, e.ticket))
    }

    /// Drops the earliest entry.
    pub(crate) fn pop_first(&mut self) {
        if let Some((_, lane)) = self.earliest() {
            self.pop_from(lane);
        }
    }

    /// Takes the front entry of `lane` (the heap for `None`), which must
    /// be the earliest, and finds the next earliest.
    fn pop_from(&mut self, lane: Option<usize>) -> Option<Entry> {
        let e = match lane {
            Some(n) => {
                let fifo = &mut self.lanes[n].fifo;
                let e = fifo.pop();
                self.fronts[n] = fifo.front().map(|f| f.at);
                e
            }
            None => self.late.pop().map(|r| r.0),
        };
        self.head = self.scan();
        e
    }

    /// The next entry due at `now`, if any: (slot, ticket).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(u32, u32)> {
        let (at, lane) = self.earliest()?;
        if at > self.offset(now) {
            return None;
        }
        let e = self.pop_from(lane)?;
        Some((e.slot, e.ticket))
    }

    /// Each cached front is its lane's.
    fn fronts_agree(&self) -> bool {
        self.lanes
            .iter()
            .zip(&self.fronts)
            .all(|(l, &f)| l.fifo.front().map(|e| e.at) == f)
    }

    pub(crate) fn len(&self) -> usize {
        self.late.len() + self.lanes.iter().map(|l| l.fifo.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_across_lanes_and_skips_stale() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = TimerQueue::new(t0);
        let mut a = Armed::default();
        let mut b = Armed::default();
        q.arm(&mut a, TimerKind::Timeout, 1, t0, ms(300));
        q.arm(&mut b, TimerKind::Retransmit, 2, t0, ms(100));
        q.arm(&mut a, TimerKind::Retransmit, 1, t0 + ms(50), ms(100));
        q.push_sweep(t0, ms(120));
        // Re-armed: the first Timeout entry goes stale.
        q.arm(&mut a, TimerKind::Timeout, 1, t0 + ms(10), ms(300));
        // Behind its lane's last entry (the clock went back): the heap.
        q.arm(&mut b, TimerKind::Failover, 2, t0 + ms(20), ms(100));
        assert_eq!(q.late.len(), 1);
        assert_eq!(q.len(), 6);
        assert!(q.fronts_agree());
        assert_eq!(q.peek(), Some(t0 + ms(100)));
        let mut fired = vec![];
        let end = t0 + ms(1000);
        while let Some((slot, ticket)) = q.pop_due(end) {
            assert!(q.fronts_agree());
            let kind = match slot {
                1 => a.take(ticket),
                2 => b.take(ticket),
                _ => Some(TimerKind::ServerLinger),
            };
            fired.push((slot, kind));
        }
        use TimerKind::*;
        assert_eq!(
            fired,
            vec![
                (2, Some(Retransmit)),
                (2, Some(Failover)),
                (SWEEP, Some(ServerLinger)),
                (1, Some(Retransmit)),
                (1, None),
                (1, Some(Timeout)),
            ]
        );
        assert_eq!((q.len(), q.peek()), (0, None));
    }

    #[test]
    fn fifo_chunks_recycle() {
        let mut f = Fifo::default();
        for round in 0..3u64 {
            for n in 0..(CHUNK as u64 * 2 + 5) {
                f.push(Entry {
                    at: round * 1000 + n,
                    slot: 0,
                    ticket: 0,
                });
            }
            assert_eq!(f.len(), CHUNK * 2 + 5);
            let mut last = None;
            while let Some(e) = f.pop() {
                assert!(last.is_none_or(|l| l < e.at));
                last = Some(e.at);
            }
            assert_eq!(f.len(), 0);
        }
        assert!(f.chunks.len() <= 1);
    }
}
