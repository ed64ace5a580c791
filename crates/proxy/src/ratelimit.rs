//! Per-source token buckets on new requests: every request from the
//! carrier side but retransmissions, ACK, CANCEL and requests within a
//! dialog the proxy holds. A source over its rate gets
//! one 503 with Retry-After per second and silence otherwise (no
//! reflection); the Edges never see the flood. Buckets of quiet sources
//! are swept, and the number of buckets is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The limit: `per_second` new requests per second per source address,
/// with bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    last_refusal: Option<Instant>,
}

/// What to do with a new request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Over the limit: answer 503 with Retry-After.
    Refuse,
    /// Over the limit and refused less than a second ago: drop.
    Silence,
}

const MAX_SOURCES: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Limiter {
    limit: Option<RateLimit>,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Limiter {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Limiter {
            limit,
            buckets: HashMap::new(),
        }
    }

    pub(crate) fn check(&mut self, now: Instant, src: IpAddr) -> Verdict {
        let Some(l) = self.limit else {
            return Verdict::Pass;
        };
        let (rate, burst) = (f64::from(l.per_second), f64::from(l.burst.max(1)));
        if !self.buckets.contains_key(&src) && self.buckets.len() >= MAX_SOURCES {
            // A spray from more sources than we track: they share one
            // verdict rather than grow the table.
            return Verdict::Silence;
        }
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: burst,
            last: now,
            last_refusal: None,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Pass;
        }
        match b.last_refusal {
            Some(t) if now.saturating_duration_since(t) < Duration::from_secs(1) => {
                Verdict::Silence
            }
            _ => {
                b.last_refusal = Some(now);
                Verdict::Refuse
            }
        }
    }

    /// Forgets sources whose bucket has been full for a while.
    pub(crate) fn sweep(&mut self, now: Instant) {
        if let Some(l) = self.limit {
            let refill = Duration::from_secs_f64(
                (f64::from(l.burst) / f64::from(l.per_second).max(0.001)).min(3600.0),
            );
            self.buckets.retain(|_, b| {
                now.saturating_duration_since(b.last) < refill + Duration::from_secs(1)
            });
        }
    }

    pub(crate) fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate_then_one_refusal_per_second() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Some(RateLimit {
            per_second: 10,
            burst: 5,
        }));
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(l.check(t0, ip), Verdict::Pass);
        }
        assert_eq!(l.check(t0, ip), Verdict::Refuse);
        assert_eq!(l.check(t0, ip), Verdict::Silence);
        // 100 ms later one token came back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.check(t1, ip), Verdict::Pass);
        assert_eq!(l.check(t1, ip), Verdict::Silence);
        // Another source is not affected.
        assert_eq!(l.check(t1, "203.0.113.6".parse().unwrap()), Verdict::Pass);
        // A second after the refusal, one more 503.
        let t2 = t0 + Duration::from_millis(1000);
        for _ in 0..5 {
            let _ = l.check(t2, ip);
        }
        assert_eq!(l.check(t2, ip), Verdict::Refuse);
        l.sweep(t2 + Duration::from_secs(10));
        assert_eq!(l.sources(), 0);
    }

    #[test]
    fn off_passes_everything() {
        let mut l = Limiter::new(None);
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        for _ in 0..1000 {
            assert_eq!(l.check(Instant::now(), ip), Verdict::Pass);
        }
    }
}
