//! trunkvip-proxy: the forwarder core of trunkvip, with no sockets, no
//! clock and no threads (sans-IO, like quinn-proto).
//!
//! [`Core`] takes events — a datagram or framed message with its source
//! ([`Core::handle`], [`Core::handle_message`]), a timer expiry
//! ([`Core::handle_timeout`]) — and returns actions: messages to send
//! ([`Core::poll_transmit`]), the next deadline ([`Core::poll_timeout`]),
//! and events for logs ([`Core::poll_event`]). Inside: RFC 3261
//! transaction-stateful proxying (with RFC 6026 and RFC 3581), the Edge
//! pool with priorities and weights, SIP OPTIONS health checks, fast
//! failover of new calls, and Call-ID affinity for every dialog.
//!
//! # Sharding contract
//!
//! A daemon with several workers runs one `Core` per worker with no lock
//! shared between them. A message goes to worker [`shard_of`]`(data, n)`,
//! a hash of its Call-ID. Every message of a transaction and of a dialog
//! carries the same Call-ID — responses, CANCEL, ACK, in-dialog requests of
//! either direction — so each is handled by the worker that holds its
//! state, in arrival order. Exactly one worker probes the Edges
//! (`ProxyConfig::health_probing`); the shell broadcasts its
//! [`Event::EdgeHealth`] to the others ([`Core::set_edge_health`]) and
//! sends the others' [`Event::EdgeFailure`] to it
//! ([`Core::report_edge_failure`]). Probe answers carry a Call-ID of the
//! probing worker's making, which [`shard_of`] sends to worker 0: the
//! probing worker must be worker 0.

#![forbid(unsafe_code)]

mod branch;
mod config;
mod core;
mod dialogs;
mod edges;
mod hash;
mod health;
mod io;
mod metrics;
mod pages;
pub mod pair;
mod proxy;
mod ratelimit;
mod salvage;
mod timer;
mod wire;

use trunkvip_sip::find_byte;

pub use crate::config::{
    CarrierTarget, ConfigError, DialogConfig, EdgeConfig, HealthConfig, ProxyConfig, Timers,
};
pub use crate::core::{Core, EdgeStatus};
pub use crate::io::{ConnectionId, Incoming, Origin, Transmit, Transport};
pub use crate::metrics::{DropReason, Metrics};
pub use crate::ratelimit::RateLimit;

/// What the core reports to the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An Edge turned Healthy or Unhealthy.
    EdgeHealth {
        edge: usize,
        name: String,
        healthy: bool,
    },
    /// A request to this Edge failed over (no answer, 503, transport
    /// error): counted toward its failure threshold.
    EdgeFailure { edge: usize },
}

/// The worker a message belongs to: a stable hash of its Call-ID (full or
/// compact header); worker 0, the probing one, for answers to our health
/// probes and for a message with no Call-ID.
pub fn shard_of(data: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    match find_call_id(data) {
        Some(cid) if health::is_probe_call_id(cid) => 0,
        Some(cid) => (hash::fnv1a(cid) % shards as u64) as usize,
        None => 0,
    }
}

/// The Call-ID's value, trimmed, looked for line by line up to the end of
/// the header: only lines starting `c`, `C`, `i` or `I` are looked at.
fn find_call_id(data: &[u8]) -> Option<&[u8]> {
    let mut rest = data;
    // The start line is no header.
    let nl = find_byte(b'\n', rest)?;
    rest = &rest[nl + 1..];
    loop {
        let end = find_byte(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.first() {
            // The blank line: the header is over.
            None => return None,
            Some(b'c' | b'C' | b'i' | b'I') => {
                if let Some(colon) = find_byte(b':', line) {
                    let name = line[..colon].trim_ascii();
                    if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
                        return Some(line[colon + 1..].trim_ascii());
                    }
                }
            }
            Some(_) => {}
        }
        if end == rest.len() {
            return None;
        }
        rest = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharding_by_call_id() {
        let a = b"INVITE sip:x SIP/2.0\r\nCall-ID: abc@h\r\n\r\n";
        let b = b"SIP/2.0 200 OK\r\ni:  abc@h \r\n\r\n";
        assert_eq!(shard_of(a, 4), shard_of(b, 4));
        assert_eq!(shard_of(b"garbage", 4), 0);
        let probe = b"SIP/2.0 200 OK\r\nCall-ID: tvp-1-0-3@h\r\n\r\n";
        for shards in 2..8 {
            assert_eq!(shard_of(probe, shards), 0);
        }
    }

    #[test]
    fn call_id_found_only_in_the_header() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (
                b"BYE sip:x SIP/2.0\r\nVia: a\r\ncall-ID :  k@h \r\n\r\n",
                Some(b"k@h"),
            ),
            (b"BYE sip:x SIP/2.0\nI: k\n\n", Some(b"k")),
            (
                b"BYE sip:x SIP/2.0\r\nCSeq: 1 BYE\r\nContact: <sip:c>\r\ni:k",
                Some(b"k"),
            ),
            // In the body, or a longer name: not the Call-ID.
            (
                b"BYE sip:x SIP/2.0\r\nCall-Info: x\r\n\r\nCall-ID: body",
                None,
            ),
            (b"Call-ID: start-line-only", None),
            (b"", None),
        ];
        for (msg, want) in cases {
            assert_eq!(find_call_id(msg), *want, "{}", String::from_utf8_lossy(msg));
        }
        let call = b"INVITE sip:x SIP/2.0\r\nCall-ID: abc@h\r\n\r\n";
        assert_eq!(shard_of(call, 1), 0);
    }
}
