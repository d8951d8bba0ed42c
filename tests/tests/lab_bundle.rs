//! `oqsdns check --bundle FILE` in the lab: the built binary run on the oqsdns host beside the
//! running daemon (East table, knotd at the guide's addresses). The file holds every section:
//! versions, the effective configuration, the check as text and as JSON, the status endpoint's
//! `/health` with its recent changes and `/metrics` when `[status]` is configured (and says it is
//! not otherwise), the daemon's recent changes of state either way (from `status.oqsdns`), and
//! the host's addresses; and not what it leaves out: a marker in a comment of the configuration
//! file and one in the check's environment appear nowhere in it.
//!
//! Without root or the tools the tests say they were skipped, unless `OQSDNS_LAB=require`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oqsdns::check::bundle::{heading, SECTIONS};
use oqsdns_tests::lab::topology::{OQSDNS_LAN4, OQSDNS_LAN6};
use oqsdns_tests::lab::{Area, Host, Lab};
use serde_json::Value;

/// The bundle split at its headings: section name -> body.
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("==== ")
            .and_then(|l| l.strip_suffix(" ===="))
        {
            current = Some(name.to_string());
            out.insert(name.to_string(), String::new());
        } else if let Some(name) = &current {
            let body = out.get_mut(name).unwrap();
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// A marker in a comment of the lab's configuration file: the bundle leaves comments out.
const COMMENT_MARKER: &str = "comment-marker-7f3a";
/// A marker in the check's environment: the bundle leaves the environment out.
const ENV_MARKER: &str = "env-marker-91c2";

/// The configuration added to the lab's, with a comment holding [`COMMENT_MARKER`].
fn extra(rest: &str) -> String {
    format!("\n# vendor note: {COMMENT_MARKER}\n{rest}")
}

/// Runs the check with `--bundle` on the oqsdns host, [`ENV_MARKER`] in its environment; the
/// exit code and the bundle's text.
fn bundle(lab: &Lab, test: &str) -> (Option<i32>, String, String) {
    let file =
        std::env::temp_dir().join(format!("oqsdns-bundle-{test}-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let out = lab.check_with_env(
        Host::Oqsdns,
        &["--bundle", file.to_str().unwrap()],
        &[("OQSDNS_VENDOR_SECRET", ENV_MARKER)],
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file)
            .map(|m| m.permissions())
            .unwrap_or_else(|e| panic!("no bundle at {} ({e})\n{}", file.display(), out.stderr)),
    );
    assert_eq!(mode & 0o777, 0o600, "the bundle is private: {mode:o}");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "no bundle at {} ({e})\nstdout:\n{}\nstderr:\n{}",
            file.display(),
            out.stdout,
            out.stderr
        )
    });
    let _ = std::fs::remove_file(&file);
    (out.status.and_then(|s| s.code()), text, out.stderr)
}

/// Whether `line` of the state changes tells a server of the lab's table (NW-base, NGN or the
/// default route) coming up, in Japan's time: `<time>+09:00 <route> <server>:53 <transport> up`.
fn server_came_up(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [at, route, server, "udp" | "tcp", "up", ..] => {
            at.ends_with("+09:00")
                && ["nw-base", "ngn", "default"].contains(&route)
                && server.ends_with(":53")
        }
        _ => false,
    }
}

/// What every bundle holds, status endpoint or not.
fn common(text: &str, parts: &BTreeMap<String, String>) {
    for name in SECTIONS {
        assert!(
            text.contains(&heading(name)),
            "no section {name:?}:\n{text}"
        );
    }
    assert!(
        text.contains("含まないもの") && text.contains("Left out"),
        "the bundle says what it leaves out"
    );
    for marker in [COMMENT_MARKER, ENV_MARKER] {
        assert!(!text.contains(marker), "{marker} is in the bundle:\n{text}");
    }
    // The daemon's own changes of state, with or without the status page: servers of the table
    // coming up after the start. (The status.oqsdns lines carry the newest CHANGES_LISTED, 8, of
    // the 12 at start, in the order the probes ended: which routes' are among them varies.)
    let changes = &parts["state changes (status.oqsdns)"];
    assert!(changes.lines().any(server_came_up), "{changes}");
    assert!(
        parts["versions"].contains(&format!("oqsdns {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        parts["versions"]
    );
    let config = &parts["configuration"];
    for words in [
        "area = \"east\"",
        "[2404:1a8:f583:d00::53:1]:53",
        "[2404:1a8:7f01:a::3]:53",
        "lineauth.mnw",
    ] {
        assert!(config.contains(words), "no {words:?} in:\n{config}");
    }
    assert!(
        parts["check (text)"].contains("すべて正常です"),
        "{}",
        parts["check (text)"]
    );
    let json: Value = serde_json::from_str(&parts["check (json)"])
        .unwrap_or_else(|e| panic!("check (json) is not JSON ({e}):\n{}", parts["check (json)"]));
    assert_eq!(json["verdicts"][0]["id"], "ok", "{json:#}");
    assert_eq!(json["area"], "east");
    let addresses = &parts["addresses"];
    assert!(
        addresses.contains(&format!("lan0 {OQSDNS_LAN6}/64"))
            && addresses.contains(&format!("lan0 {OQSDNS_LAN4}/24")),
        "{addresses}"
    );
}

#[test]
fn bundle_with_the_status_endpoint() {
    const TEST: &str = "bundle_with_the_status_endpoint";
    let Some(lab) = Lab::start_with(
        TEST,
        Area::East,
        &extra("\n[health]\ninterval = \"2s\"\n\n[status]\nlisten = \"[::1]:9153\"\n"),
    ) else {
        return;
    };
    // Right after start the daemon's own verdict waits for its probes (`/health` says 503
    // until then): take bundles until it has settled, in both places the bundle reads it
    // (`/health`, and the status.oqsdns lines asked a moment before: one bundle could find the
    // servers up in the one and not yet in the other).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, text, stderr) = loop {
        let (code, text, stderr) = bundle(&lab, TEST);
        let settled = text.contains("# GET http://[::1]:9153/health: 200")
            && text.lines().any(server_came_up);
        if settled || Instant::now() >= deadline {
            break (code, text, stderr);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(code, Some(0), "{stderr}\n{text}\n{}", lab.oqsdns_log());
    assert!(stderr.contains("support bundle written"), "{stderr}");
    let parts = sections(&text);
    common(&text, &parts);
    assert!(
        parts["configuration"].contains("listen = \"[::1]:9153\""),
        "{}",
        parts["configuration"]
    );

    let health = &parts["status (/health)"];
    let (first, body) = health.split_once('\n').unwrap();
    assert_eq!(first, "# GET http://[::1]:9153/health: 200", "{health}");
    let status: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("/health in the bundle is not JSON ({e}):\n{health}"));
    assert_eq!(status["ok"], true, "{status:#}");
    let changes = status["changes"].as_array().expect("recent changes");
    assert!(
        changes
            .iter()
            .any(|c| c["route"] == "nw-base" && c["state"] == "up"),
        "the NW-base servers coming up are among the recent changes: {changes:?}"
    );
    let metrics = &parts["metrics (/metrics)"];
    assert!(
        metrics.starts_with("# GET http://[::1]:9153/metrics: 200\n")
            && metrics.contains("oqsdns_build_info{")
            && metrics.contains("oqsdns_prefix_changed 0"),
        "{metrics}"
    );
}

#[test]
fn bundle_without_the_status_endpoint() {
    const TEST: &str = "bundle_without_the_status_endpoint";
    let Some(lab) = Lab::start_with(TEST, Area::East, &extra("")) else {
        return;
    };
    // Right after start the probes may not have brought the servers up yet: take bundles until
    // a first change of state is in.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, text, stderr) = loop {
        let (code, text, stderr) = bundle(&lab, TEST);
        if text.lines().any(server_came_up) || Instant::now() >= deadline {
            break (code, text, stderr);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(code, Some(0), "{stderr}\n{text}");
    let parts = sections(&text);
    common(&text, &parts);
    assert!(
        parts["status (/health)"].contains("[status] listen is not configured"),
        "{}",
        parts["status (/health)"]
    );
    // The daemon's own view still comes through the check's status.oqsdns lines.
    assert!(
        parts["check (text)"].contains("prefix-changed=no"),
        "{}",
        parts["check (text)"]
    );
}
