//! What goes in and out of the core: addresses, transports, datagrams.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// As written in a Via: `UDP`, `TCP`, `TLS`.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// As written in a URI `transport` parameter.
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Connection-oriented transports retransmit nothing (RFC 3261 17.1.1.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    pub fn from_param(p: &[u8]) -> Option<Transport> {
        if p.eq_ignore_ascii_case(b"udp") {
            Some(Transport::Udp)
        } else if p.eq_ignore_ascii_case(b"tcp") {
            Some(Transport::Tcp)
        } else if p.eq_ignore_ascii_case(b"tls") {
            Some(Transport::Tls)
        } else {
            None
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.param())
    }
}

/// A TCP or TLS connection, numbered by the I/O shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub source: SocketAddr,
    pub transport: Transport,
    /// The connection it arrived on (TCP and TLS).
    pub connection: Option<ConnectionId>,
}

impl Incoming {
    pub fn udp(source: SocketAddr) -> Self {
        Incoming {
            source,
            transport: Transport::Udp,
            connection: None,
        }
    }
}

/// Which local address a message must leave from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The carrier-facing service address (the VIP on a pair): everything
    /// that belongs to a call.
    Service,
    /// The host's own address: health probes only, so the backup host of a
    /// pair keeps a true view of the Edges.
    Host,
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub transport: Transport,
    pub origin: Origin,
    /// Send on this connection when it is still open (responses go back
    /// over the connection the request came on, RFC 3261 section 18.2.2);
    /// otherwise the shell uses or opens one to `destination`.
    pub connection: Option<ConnectionId>,
    pub payload: Bytes,
}
