//! Stream framing: the input goes to a `StreamDecoder` in chunks whose
//! sizes come from its first four bytes; every framed message is read,
//! edited and compared with its datagram parse. See
//! `trunkvip_sip_fuzz::stream`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    trunkvip_sip_fuzz::stream(data);
});
