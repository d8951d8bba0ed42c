//! `oqsdns check --bundle FILE` in the lab: the built binary run on the oqsdns host beside the
//! running daemon (East table, knotd at the guide's addresses). The file holds every section:
//! versions, the effective configuration, the check as text and as JSON, the status endpoint's
//! `/health` with its recent changes and `/metrics` when `[status]` is configured (and says it is
//! not otherwise), and the host's addresses.
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

/// Runs the check with `--bundle` on the oqsdns host; the exit code and the bundle's text.
fn bundle(lab: &Lab, test: &str) -> (Option<i32>, String, String) {
    let file =
        std::env::temp_dir().join(format!("oqsdns-bundle-{test}-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let out = lab.check(Host::Oqsdns, &["--bundle", file.to_str().unwrap()]);
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
        "\n[health]\ninterval = \"2s\"\n\n[status]\nlisten = \"[::1]:9153\"\n",
    ) else {
        return;
    };
    // Right after start the daemon's own verdict waits for its probes (`/health` says 503
    // until then): take bundles until it has settled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, text, stderr) = loop {
        let (code, text, stderr) = bundle(&lab, TEST);
        if text.contains("# GET http://[::1]:9153/health: 200") || Instant::now() >= deadline {
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
    let Some(lab) = Lab::start(TEST, Area::East) else {
        return;
    };
    let (code, text, stderr) = bundle(&lab, TEST);
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
