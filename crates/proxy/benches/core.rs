//! CPU per complete call through the core, no sockets: INVITE, 100, 180,
//! 200, ACK, BYE, 200, and every timer those transactions arm, run to the
//! end. Only the core's own calls are timed. `make bench-core`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

mod flow;

fn complete_call(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    g.bench_function("complete_call", |b| {
        b.iter_custom(|iters| {
            let mut d = flow::Driver::new();
            for n in 0..iters {
                // 1000 calls per second of simulated time.
                d.now += Duration::from_millis(1);
                d.setup(n);
                d.teardown(n);
                if n % 64 == 0 {
                    d.timers();
                }
            }
            // Let every transaction and dialog run out.
            d.now += Duration::from_secs(70);
            d.timers();
            assert_eq!(d.core.transactions_alive(), 0);
            d.spent
        })
    });
    g.finish();
}

criterion_group!(benches, complete_call);
criterion_main!(benches);
