//! Listeners: UDP and TCP servers that feed the [`Handler`](crate::Handler).

mod tcp;
mod udp;

pub use tcp::{serve_tcp, TcpLimits};
pub use udp::{enable_pktinfo, serve_udp};
