//! Runs one operation of the `parse` bench N times, for instruction counts
//! that do not depend on machine load:
//!
//! ```sh
//! cargo build --release -p trunkvip-sip --example icount
//! valgrind --tool=callgrind target/release/examples/icount invite 1000
//! ```
//!
//! Operations: `invite`, `200ok` (parse and locate), `invite-parse`,
//! `200ok-parse` (`Message::parse` alone), `forward` (the forwarding edit).
//! The cost of one operation is the difference between the totals of two
//! runs with different N, which cancels start-up and the cross-check.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use trunkvip_sip::Message;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{trunkvip_forward, trunkvip_parse_locate, INVITE, OK200};

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let invite = Bytes::from_static(INVITE.as_bytes());
    let ok = Bytes::from_static(OK200.as_bytes());
    let mut out = BytesMut::with_capacity(2048);
    let mut digest = 0usize;
    for _ in 0..n {
        digest += match op.as_str() {
            "invite" => trunkvip_parse_locate(black_box(&invite)),
            "200ok" => trunkvip_parse_locate(black_box(&ok)),
            "invite-parse" => Message::parse(black_box(&invite).clone())
                .expect("parses")
                .header_count(),
            "200ok-parse" => Message::parse(black_box(&ok).clone())
                .expect("parses")
                .header_count(),
            "forward" => {
                trunkvip_forward(black_box(&invite), &mut out);
                out.len()
            }
            _ => {
                eprintln!("usage: icount invite|200ok|invite-parse|200ok-parse|forward [N]");
                std::process::exit(2);
            }
        };
    }
    println!("{digest}");
}
