//! The file descriptors the daemon may need at its busiest, and raising the soft limit to them.
//!
//! Every upstream question under way holds a UDP socket (two while a slow server is raced), every
//! TCP client a connection, and the upstream socket pool keeps idle ones: with the defaults that is
//! well over the soft limit of 1024 that systemd and most shells give a process. Past the limit a
//! question would fail with EMFILE and the client get SERVFAIL; so at start the soft limit is raised
//! towards the hard one, as far as needed.

use nix::libc::{rlim_t, RLIM_INFINITY};
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
    let (soft, hard) = nofile()?;
    if soft >= need {
        return Some((soft, hard));
    }
    let target = need.min(hard);
    if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, narrow(target), narrow(hard)) {
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

/// The open files limits (soft, hard), widened to `u64`.
fn nofile() -> Option<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    Some((widen(soft), widen(hard)))
}

// `rlim_t` is `u64` on 64-bit targets but `u32` on 32-bit glibc (armv7, mipsel): convert at the
// boundary, so the arithmetic above is the same everywhere. On 64-bit targets the conversions are
// the identity, which clippy would call useless.

/// A limit as the kernel gives it, as `u64`.
#[allow(clippy::useless_conversion)]
fn widen(limit: rlim_t) -> u64 {
    u64::from(limit)
}

/// A limit for the kernel; what is past `RLIM_INFINITY` (`u32::MAX` on 32-bit glibc, `i32::MAX`
/// on 32-bit MIPS) becomes it. The callers never pass such: they stay within the hard limit.
#[allow(clippy::useless_conversion, clippy::unnecessary_min_or_max)] // both on 64-bit targets
fn narrow(limit: u64) -> rlim_t {
    rlim_t::try_from(limit).map_or(RLIM_INFINITY, |l| l.min(RLIM_INFINITY))
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
        let (_, hard) = nofile().unwrap();
        setrlimit(
            Resource::RLIMIT_NOFILE,
            narrow(1024.min(hard)),
            narrow(hard),
        )
        .unwrap();
        let (soft, _) = raise_nofile(&config, &[]).unwrap();
        assert_eq!(soft, need.min(hard));
        assert_eq!(nofile(), Some((soft, hard)));
        // Already enough: left as it is.
        assert_eq!(raise_nofile(&config, &[]), Some((soft, hard)));
    }

    #[test]
    fn limits_convert_to_and_from_the_kernels_width() {
        // 32-bit glibc: `rlim_t` is `u32`, RLIM_INFINITY `u32::MAX` (`i32::MAX` on MIPS).
        let infinity = widen(RLIM_INFINITY);
        assert!(infinity >= u64::from(i32::MAX as u32), "{infinity}");
        for limit in [0, 1024, 4096, 1 << 20, infinity] {
            assert_eq!(widen(narrow(limit)), limit);
        }
        // Past `rlim_t`: infinity, not a truncation (5e9 mod 2^32 would be 705 032 704).
        assert_eq!(widen(narrow(5_000_000_000)), 5_000_000_000.min(infinity));
        assert_eq!(narrow(u64::MAX), RLIM_INFINITY);
    }
}
