//! The file descriptors the daemon may need at its busiest, and raising the soft limit to them.
//!
//! Every upstream question under way holds a UDP socket (two while a slow server is raced), every
//! TCP client a connection, and the upstream socket pool keeps idle ones: with the defaults that is
//! well over the soft limit of 1024 that systemd and most shells give a process. Past the limit a
//! question would fail with EMFILE and the client get SERVFAIL; so at start the soft limit is raised
//! towards the hard one, as far as needed.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::net::SocketAddr;

use oqsdns_config::{Config, DefaultServer};
use oqsdns_core::upstream::POOLED_IDLE;
use tracing::{debug, warn};

/// Listeners, the status endpoint, logging, the probes' sockets and some room.
const BASE: u64 = 256;

/// Descriptors `config` may need at once, `"system"` standing for the servers of `system`.
pub fn needed(config: &Config, system: &[SocketAddr]) -> u64 {
    let servers = config
        .routes_effective()
        .iter()
        .map(|r| r.servers.len())
        .sum::<usize>()
        + DefaultServer::expand(&config.forward.default, system).len();
    let inflight = config.server.max_inflight as u64;
    let tcp = config.server.tcp_connections as u64;
    BASE + 2 * inflight + 2 * tcp + (POOLED_IDLE * servers) as u64
}

/// Raises the soft limit on open files to what `config` needs (with `system` for `"system"`),
/// within the hard limit; warns when the hard limit is lower. The limits afterwards: (soft, hard).
pub fn raise_nofile(config: &Config, system: &[SocketAddr]) -> Option<(u64, u64)> {
    let need = needed(config, system);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= need {
        return Some((soft, hard));
    }
    let target = need.min(hard);
    if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        warn!(%error, soft, need, "cannot raise the open files limit from {soft} to {need}: {error}");
        return Some((soft, hard));
    }
    if target < need {
        warn!(
            limit = target,
            need, "open files limit {target} below the {need} that max_inflight and tcp_connections may need (raise LimitNOFILE)"
        );
    } else {
        debug!(from = soft, to = target, "open files limit raised");
    }
    Some((target, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_what_the_configuration_needs() {
        let config = Config::from_toml("area = \"east\"\n").unwrap();
        let need = needed(&config, &[]);
        // East: 2 NW-base + 2 NGN servers, plus the default resolvers; 1024 questions in flight.
        assert!(need > 2 * 1024, "{need}");
        // "system" counts as the servers it stands for, not as one.
        let system: Vec<SocketAddr> = ["192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"]
            .map(|a| a.parse().unwrap())
            .to_vec();
        let with_three = needed(&config, &system);
        assert_eq!(with_three - need, 3 * POOLED_IDLE as u64);
        // From systemd's soft limit (lowering needs no privilege; this test binary's other tests
        // open few files).
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 1024.min(hard), hard).unwrap();
        let (soft, _) = raise_nofile(&config, &[]).unwrap();
        assert_eq!(soft, need.min(hard));
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (soft, hard));
        // Already enough: left as it is.
        assert_eq!(raise_nofile(&config, &[]), Some((soft, hard)));
    }
}
