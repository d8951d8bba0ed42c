//! What one probe learned: the addresses of its answer, or why it failed, as a typed error.
//! Its own module because both the probes (which write it) and the health history (which keeps
//! the last round) need it, and the probes use the health state.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use oqsdns_config::ProbeName;

use crate::upstream::UpstreamError;
use crate::wire;

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The question.
    pub probe: ProbeName,
    /// The addresses of the answer (A and AAAA), or why it failed.
    pub result: Result<Vec<IpAddr>, ProbeError>,
    /// Time to the answer (or to the failure).
    pub latency: Duration,
}

/// Why a probe failed. Its `Display` is the text the logs, the status page and `oqsdns check`
/// show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The question cannot be written (a name hickory does not take).
    #[error("the question cannot be asked")]
    Unaskable,
    /// No reply before the deadline.
    #[error("timed out")]
    Timeout,
    /// The network said no (unreachable, refused, reset): the text of the system's error.
    #[error("{message}")]
    Network {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The error as the system wrote it.
        message: String,
    },
    /// A reply that is not the answer to our query (over TCP, where it cannot be ignored).
    #[error("reply does not match the query: {0}")]
    Mismatch(wire::Mismatch),
    /// A response code other than the one expected (NOERROR unless the probe names one).
    #[error("{}", rcode_name(*.0))]
    Rcode(u16),
    /// A reply whose records cannot be read.
    #[error("malformed answer")]
    Malformed,
    /// A reply without a record of the type asked.
    #[error("no {0} record in the answer")]
    NoRecord(String),
}

impl ProbeError {
    /// Whether the server replied at all (an answer it could not use, or an error response code),
    /// as opposed to silence, a refused connection or an unreachable network.
    pub fn replied(&self) -> bool {
        match self {
            Self::Unaskable | Self::Timeout | Self::Network { .. } => false,
            Self::Mismatch(_) | Self::Rcode(_) | Self::Malformed | Self::NoRecord(_) => true,
        }
    }
}

impl From<UpstreamError> for ProbeError {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::Timeout => Self::Timeout,
            UpstreamError::Io(e) => Self::Network {
                kind: e.kind(),
                message: e.to_string(),
            },
            UpstreamError::Mismatch(m) => Self::Mismatch(m),
        }
    }
}

/// The mnemonic of a response code (`RCODE<n>` for one without a name here).
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_texts_are_those_the_logs_and_check_always_showed() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let cases = [
            (ProbeError::Timeout, "timed out".to_string(), false),
            (
                ProbeError::from(UpstreamError::Io(refused)),
                io::Error::from(io::ErrorKind::ConnectionRefused).to_string(),
                false,
            ),
            (
                ProbeError::Mismatch(wire::Mismatch::Id),
                "reply does not match the query: wrong message ID".into(),
                true,
            ),
            (ProbeError::Rcode(2), "SERVFAIL".into(), true),
            (ProbeError::Rcode(9), "RCODE9".into(), true),
            (ProbeError::Malformed, "malformed answer".into(), true),
            (
                ProbeError::NoRecord("AAAA".into()),
                "no AAAA record in the answer".into(),
                true,
            ),
        ];
        for (error, text, replied) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(error.replied(), replied, "{error:?}");
        }
    }
}
