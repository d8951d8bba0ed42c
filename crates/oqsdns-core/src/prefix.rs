//! The host's global IPv6 prefixes: recorded at start and watched, because a new prefix means the
//! line authentication (回線認証) must be done again (guide FAQ Q18).

use std::sync::Mutex;
use std::time::Duration;

use ipnet::{IpNet, Ipv6Net};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::acl::interface_prefixes;

/// The global IPv6 prefixes at start and now.
#[derive(Debug, Default)]
pub struct PrefixWatch {
    state: Mutex<Prefixes>,
}

/// What the watch has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefixes {
    /// The global IPv6 prefixes when the daemon started.
    pub at_start: Vec<Ipv6Net>,
    /// The global IPv6 prefixes now.
    pub now: Vec<Ipv6Net>,
}

impl Prefixes {
    /// Whether the prefixes differ from those at start.
    pub fn changed(&self) -> bool {
        self.at_start != self.now
    }
}

/// The global unicast (2000::/3) IPv6 prefixes among `nets`, sorted and without duplicates.
pub fn global_ipv6(nets: &[IpNet]) -> Vec<Ipv6Net> {
    let mut out: Vec<Ipv6Net> = nets
        .iter()
        .filter_map(|n| match n {
            IpNet::V6(v6) if (v6.addr().segments()[0] & 0xE000) == 0x2000 => Some(v6.trunc()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl PrefixWatch {
    /// Records the host's prefixes now as those at start.
    pub fn start() -> Self {
        let now = global_ipv6(&interface_prefixes());
        Self {
            state: Mutex::new(Prefixes {
                at_start: now.clone(),
                now,
            }),
        }
    }

    /// What the watch has seen.
    pub fn get(&self) -> Prefixes {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Prefixes> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the current prefixes; warns once per change away from the start.
    pub fn update(&self, now: Vec<Ipv6Net>) {
        let mut state = self.lock();
        if state.now == now {
            return;
        }
        state.now = now;
        if state.changed() {
            let show = |p: &[Ipv6Net]| {
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            warn!(
                before = %show(&state.at_start),
                now = %show(&state.now),
                "the host's IPv6 prefix changed from {} to {}: line authentication (回線認証) must be done again at https://www.lineauth.mnw (guide FAQ Q18)", show(&state.at_start), show(&state.now)
            );
        }
    }

    /// Re-reads the interfaces every `interval` until `shutdown`.
    pub async fn watch(&self, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.update(global_ipv6(&interface_prefixes())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn only_global_ipv6_prefixes_count() {
        let got = global_ipv6(&nets(&[
            "10.0.0.0/8",
            "fe80::/64",
            "::1/128",
            "fd00::/64",
            "2408:82:1234:5600::1/64",
        ]));
        assert_eq!(got, ["2408:82:1234:5600::/64".parse::<Ipv6Net>().unwrap()]);
    }

    #[test]
    fn a_new_prefix_is_a_change_until_the_old_one_returns() {
        let watch = PrefixWatch::default();
        let old = global_ipv6(&nets(&["2408:82:1234:5600::/64"]));
        let new = global_ipv6(&nets(&["2408:82:9999:1200::/64"]));
        watch.lock().at_start = old.clone();
        watch.update(old.clone());
        assert!(!watch.get().changed());
        watch.update(new.clone());
        assert!(watch.get().changed());
        assert_eq!(watch.get().now, new);
        watch.update(old);
        assert!(!watch.get().changed());
    }
}
