//! Running things in the lab's namespaces beside the daemon: `oqsdns check` with the lab's
//! configuration, and `ip` to change a host's addresses.

use std::time::Duration;

use super::process::{run_bounded, Output};
use super::{Host, Lab, CLIENT_SLACK};

/// How long `oqsdns check` may take: its probes wait at most `health.timeout` (2 s) each, run at
/// once, after the status query.
const CHECK_LIMIT: Duration = Duration::from_secs(15);

impl Lab {
    /// Runs `oqsdns check --config <the lab's configuration> <args>` on `host`.
    pub fn check(&self, host: Host, args: &[&str]) -> Output {
        self.check_with_env(host, args, &[])
    }

    /// [`Lab::check`] with `env` added to its environment.
    pub fn check_with_env(&self, host: Host, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.net.ns(host).command(&self.tools.oqsdns);
        cmd.envs(env.iter().copied());
        cmd.arg("check")
            .arg("--config")
            .arg(self.scratch.path().join("oqsdns.toml"))
            .args(args);
        run_bounded(&mut cmd, CHECK_LIMIT + CLIENT_SLACK)
            .unwrap_or_else(|e| panic!("cannot run oqsdns check: {e}"))
    }

    /// `GET path` from `host` to the status endpoint at `addr`: the status code and the body;
    /// panics when no reply comes within 10 s.
    pub fn http_get(&self, host: Host, addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        self.try_http_get(host, addr, path).unwrap_or_else(|e| {
            panic!(
                "GET {path} from {host:?}: {e}\n--- oqsdns log ---\n{}",
                self.oqsdns_log()
            )
        })
    }

    /// `GET path` from `host` to the status endpoint at `addr`: the status code and the body,
    /// or why there was none within 10 s.
    pub fn try_http_get(
        &self,
        host: Host,
        addr: std::net::SocketAddr,
        path: &str,
    ) -> Result<(u16, String), String> {
        self.net
            .ns(host)
            .http_get(addr, path, Duration::from_secs(10))
    }

    /// The sum of the samples of `series` (such as `oqsdns_upstream_queries_total`) in the
    /// daemon's `/metrics` at `addr` whose labels include every one of `labels` (such as
    /// `route="nw-base"`); panics when `/metrics` does not answer 200.
    pub fn metric_sum(&self, addr: std::net::SocketAddr, series: &str, labels: &[&str]) -> u64 {
        let (code, body) = self
            .try_http_get(Host::Oqsdns, addr, "/metrics")
            .unwrap_or_else(|e| panic!("/metrics: {e}"));
        assert_eq!(code, 200, "/metrics:\n{body}");
        body.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter(|rest| rest.starts_with('{') || rest.starts_with(' '))
            .filter(|rest| labels.iter().all(|label| rest.contains(label)))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Runs `ip -n <host's namespace> <args>`; panics when it fails.
    pub fn ip(&self, host: Host, args: &[&str]) {
        if let Err(e) = self.net.ns(host).ip(args) {
            panic!("ip {args:?} on {host:?}: {e}");
        }
    }
}

/// The verdict ids in the JSON of `oqsdns check --json`.
pub fn verdict_ids(json: &serde_json::Value) -> Vec<String> {
    json["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}
