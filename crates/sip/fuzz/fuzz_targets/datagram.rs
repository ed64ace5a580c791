//! Datagram parsing: `Message::parse_datagram`, `validate`, every accessor,
//! and the forwarding edits (whose output must re-parse when the input
//! validated). See `trunkvip_sip_fuzz::datagram`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    trunkvip_sip_fuzz::datagram(data);
});
