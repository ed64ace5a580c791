//! Counters of what the core did, rendered as Prometheus text by `Core`.

use trunkvip_sip::Method;

/// The label of a method's request counter.
pub(crate) fn method_label(m: Method) -> &'static str {
    m.as_str().unwrap_or("other")
}

/// Why a message was dropped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Could not be parsed and had no usable Via to answer.
    Unparseable,
    /// A carrier-side source outside `carrier.allow`.
    NotAllowed,
    /// A response that matches no transaction and no Via of ours.
    Unmatched,
    /// A malformed response (never forwarded).
    BadResponse,
    /// A response whose next hop is unusable (broadcast, no Via left).
    BadNextHop,
    /// An ACK that matches nothing.
    StrayAck,
    /// A source over its rate limit, refused less than a second ago.
    RateLimited,
}

pub(crate) const DROP_REASONS: [(DropReason, &str); 7] = [
    (DropReason::Unparseable, "unparseable"),
    (DropReason::NotAllowed, "not_allowed"),
    (DropReason::Unmatched, "unmatched"),
    (DropReason::BadResponse, "bad_response"),
    (DropReason::BadNextHop, "bad_next_hop"),
    (DropReason::StrayAck, "stray_ack"),
    (DropReason::RateLimited, "rate_limited"),
];

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub requests_in: [u64; Method::ALL.len()],
    /// Responses received, by class 1xx..6xx (index 1..=6).
    pub responses_in: [u64; 7],
    /// Responses we generated, by class.
    pub responses_local: [u64; 7],
    pub parse_errors: u64,
    pub drops: [u64; 7],
    /// New requests answered 503 for their source's rate.
    pub rate_limited_503: u64,
    pub retransmissions_absorbed: u64,
    pub retransmissions_sent: u64,
    pub failovers: u64,
    /// Silent INVITEs not failed over because their Edge was answering
    /// other traffic.
    pub failovers_held: u64,
    pub no_edge_503: u64,
    pub transactions_created: u64,
    pub ghost_cancels: u64,
    pub ghost_byes: u64,
    pub loops_detected: u64,
}

impl Metrics {
    pub(crate) fn drop(&mut self, r: DropReason) {
        let n = DROP_REASONS.iter().position(|d| d.0 == r).unwrap_or(0);
        self.drops[n] += 1;
    }

    pub fn dropped(&self, r: DropReason) -> u64 {
        let n = DROP_REASONS.iter().position(|d| d.0 == r).unwrap_or(0);
        self.drops[n]
    }
}
