//! The TLS key log, in the NSS key log format that SSLKEYLOGFILE uses and
//! Wireshark reads (`tls.keylog_file`): one line per secret,
//! `LABEL <client random, hex> <secret, hex>`. rustls calls
//! [`KeyLog::log`] during handshakes, on both our server and our client
//! configurations; the line goes through the capture queue to the capture
//! thread, which appends it to the file (mode 0600). Labels: `CLIENT_RANDOM`
//! (TLS 1.2), `CLIENT_HANDSHAKE_TRAFFIC_SECRET`,
//! `SERVER_HANDSHAKE_TRAFFIC_SECRET`, `CLIENT_TRAFFIC_SECRET_0`,
//! `SERVER_TRAFFIC_SECRET_0`, `EXPORTER_SECRET` (TLS 1.3).

use std::fmt::Write as _;

use tokio_rustls::rustls::KeyLog;

use super::{Capture, Item};

/// Formats one line, newline included.
pub fn line(label: &str, client_random: &[u8], secret: &[u8]) -> String {
    let mut s = String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
    s.push_str(label);
    s.push(' ');
    for b in client_random {
        let _ = write!(s, "{b:02x}");
    }
    s.push(' ');
    for b in secret {
        let _ = write!(s, "{b:02x}");
    }
    s.push('\n');
    s
}

/// What rustls holds: the way into the capture queue.
#[derive(Debug)]
pub struct Sink(pub(super) Capture);

impl KeyLog for Sink {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.0.push(Item::Key(line(label, client_random, secret)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nss_format() {
        assert_eq!(
            line("CLIENT_RANDOM", &[0x00, 0xab], &[0xff, 0x01, 0x10]),
            "CLIENT_RANDOM 00ab ff0110\n"
        );
    }
}
