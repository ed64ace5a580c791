//! Heap held per transaction and per dialog, counted by an instrumented
//! allocator: `cargo bench -p trunkvip-proxy --bench memory`. Prints
//! figures; asserts nothing.

use std::alloc::System;
use std::time::Duration;

use bytes::Bytes;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

mod flow;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since the region began. stats_alloc
/// already adds a realloc's growth to `bytes_allocated` (and a shrink to
/// `bytes_deallocated`); `bytes_reallocated` repeats it and is not added.
fn held(r: &Region<'_, System>) -> i64 {
    let s = r.change();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

fn main() {
    const N: u64 = 20_000;
    let carrier: std::net::SocketAddr = flow::CARRIER.parse().unwrap();

    // Transactions: N INVITEs forwarded, no answer yet (server + client
    // side each, with the buffers they keep, and the dialog each binds).
    let mut d = flow::Driver::new();
    let invites: Vec<_> = (0..N).map(flow::invite).collect();
    let region = Region::new(GLOBAL);
    for inv in &invites {
        d.now += Duration::from_micros(50);
        // Each datagram is allocated here, as the daemon copies it out of
        // its receive buffer: whatever the core keeps of it is counted,
        // and what it frees nets to zero. The messages sent (the 100 and
        // the forwarded INVITE) are the shell's, freed once sent.
        d.deliver(carrier, Bytes::copy_from_slice(inv));
    }
    let per_txn_trying = held(&region) as f64 / N as f64;

    let (s, c) = d.core.transactions();
    println!("invite transactions in flight: {s} server + {c} client");
    println!("heap per INVITE transaction (server + client, the 800-byte INVITE kept): {per_txn_trying:.0} bytes");
    println!(
        "  core's own estimate: {:.0} bytes",
        d.core.transaction_bytes() as f64 / N as f64
    );
    drop(d);

    // Dialogs: calls set up (200, ACK) at 50 calls/s of simulated time,
    // their transactions run out; a first batch warms the slabs and the
    // timer heap, and the second batch's growth is what dialogs cost.
    let mut d = flow::Driver::new();
    let batch = |d: &mut flow::Driver, from: u64| {
        for n in from..from + N {
            d.now += Duration::from_millis(20);
            d.setup(n);
            d.timers();
        }
        d.now += Duration::from_secs(70);
        d.timers();
        assert_eq!(d.core.transactions(), (0, 0));
    };
    let region = Region::new(GLOBAL);
    batch(&mut d, 0);
    let first = held(&region);
    batch(&mut d, N);
    let marginal = (held(&region) - first) as f64 / N as f64;
    println!("dialogs held: {}", d.core.dialogs());
    println!("heap per confirmed dialog, marginal over the second {N}: {marginal:.0} bytes");
    println!(
        "  first {N} with the warm-up of slabs and timer heap: {:.0} bytes",
        first as f64 / N as f64
    );
    println!(
        "  table layout at full load: {} bytes",
        trunkvip_proxy::Core::dialog_bytes()
    );
}
