//! A real Prometheus server (Debian's `prometheus`) on loopback, scraping one target every
//! second, and its HTTP API; killed when dropped.
//!
//! It listens on `127.0.0.1:0` and the test reads the port the kernel gave it from its log (the
//! `msg="Listening on"` line), so no port is chosen before it is bound and nothing can take it
//! in between.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http;
use crate::lab::netns::ScratchDir;

/// The `clinic` label of the target, as the setup guide tells vendors to set it.
pub const CLINIC: &str = "test-clinic";

/// How long Prometheus may take to open its storage and listen.
const START: Duration = Duration::from_secs(30);

/// A running Prometheus server.
#[derive(Debug)]
pub struct Prometheus {
    // Field order is drop order: the process (killed in `drop`), then its folder.
    child: Child,
    addr: SocketAddr,
    scratch: ScratchDir,
}

impl Prometheus {
    /// Starts `program` scraping `target`'s `/metrics` every second (job `oqsdns`, label
    /// `clinic` [`CLINIC`]) with its storage in a folder of its own, and waits until it listens.
    pub fn start(program: &Path, target: SocketAddr) -> Result<Self, String> {
        Self::start_with_rules(program, target, &[])
    }

    /// [`Prometheus::start`] with the alerting `rules` files loaded, evaluated every second.
    pub fn start_with_rules(
        program: &Path,
        target: SocketAddr,
        rules: &[&Path],
    ) -> Result<Self, String> {
        let scratch = ScratchDir::create(&format!(
            "oqsdns-prometheus-{}-{}",
            std::process::id(),
            target.port()
        ))?;
        let dir = scratch.path();
        let config = dir.join("prometheus.yml");
        let rule_files = rules
            .iter()
            .map(|r| format!("'{}'", r.display()))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [{rule_files}]\nscrape_configs:\n  \
                 - job_name: oqsdns\n    static_configs:\n      - targets: ['{target}']\n        \
                 labels: {{clinic: '{CLINIC}'}}\n"
            ),
        )
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let log = dir.join("prometheus.log");
        let file = File::create(&log).map_err(|e| format!("cannot create the log: {e}"))?;
        let file2 = file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .args(["--web.listen-address=127.0.0.1:0", "--log.format=logfmt"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut prometheus = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            scratch,
        };
        prometheus.addr = prometheus.listening()?;
        Ok(prometheus)
    }

    /// The address its log says it listens on, once it says so.
    fn listening(&mut self) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + START;
        loop {
            let log = self.log();
            let said = log.lines().find_map(|l| {
                let (_, after) = l.split_once("msg=\"Listening on\"")?;
                let (_, addr) = after.split_once("address=")?;
                addr.split_whitespace().next()?.parse().ok()
            });
            if let Some(addr) = said {
                return Ok(addr);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("prometheus exited ({status}); its log:\n{log}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "prometheus did not listen within {START:?}:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        let path = self.scratch.path().join("prometheus.log");
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// GETs `path` (query already encoded) from the API until `check` accepts the `data` of a
    /// successful answer, and returns that; panics, with the last answer and the log, when
    /// `limit` passes first.
    pub async fn until(
        &self,
        path: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let answer = http::get(self.addr, path).await;
            if answer.status == 200 {
                let json: Value = serde_json::from_str(&answer.body)
                    .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", answer.body));
                if json["status"] == "success" && check(&json["data"]) {
                    return json["data"].clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{path}: not as expected within {limit:?}; last answer {} {}\n--- prometheus \
                 log ---\n{}",
                answer.status,
                answer.body,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/api/v1/query?query=<promql>`, the query percent-encoded.
pub fn query_path(promql: &str) -> String {
    let mut path = "/api/v1/query?query=".to_string();
    for b in promql.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

/// The values of an instant query's vector result.
pub fn values(data: &Value) -> Vec<f64> {
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|series| series["value"][1].as_str()?.parse().ok())
        .collect()
}
