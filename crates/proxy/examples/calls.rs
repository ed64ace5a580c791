//! Runs complete calls through the core, for profilers:
//! `valgrind --tool=callgrind target/release/examples/calls 2000`.

use std::time::Duration;

#[path = "../benches/flow/mod.rs"]
mod flow;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut d = flow::Driver::new();
    for i in 0..n {
        d.now += Duration::from_millis(1);
        d.setup(i);
        d.teardown(i);
        if i % 64 == 0 {
            d.timers();
        }
    }
    d.now += Duration::from_secs(70);
    d.timers();
    println!(
        "{n} calls, {:.2} us per call in the core",
        d.spent.as_secs_f64() * 1e6 / n as f64
    );
}
