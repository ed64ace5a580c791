//! Runs complete calls through the core, for profilers. Instructions per
//! call, counting only what the benchmark times (the core's calls, not the
//! making of the carrier's and Edge's messages): total Ir / 2000 of
//! `valgrind --tool=callgrind --toggle-collect='*Driver::deliver*'
//! --toggle-collect='*Driver::timers*' target/release/examples/calls 2000`.

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
