//! Smoke tests of the real binary: the subcommands' exit codes and messages, and one query
//! answered through a running daemon that stops cleanly on SIGTERM.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{example, Running, Scratch, Upstream, BIN};

#[test]
fn version_and_config_subcommands() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("oqsdns "));

    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(example())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let scratch = Scratch::new("check");
    let bad: PathBuf = scratch.path("bad.toml");
    std::fs::write(&bad, "[forward]\ntimeout = \"soon\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("line 2") && stderr.contains("duration"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["config", "show", "--config"])
        .arg(example())
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("2404:1a8:f583:d00::53:1") && shown.contains("clinic.example"),
        "{shown}"
    );

    // A broken file stops `run` before anything starts.
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_daemon_answers_and_stops_on_sigterm() {
    // No area: the guide's servers are not reachable from here, and the health probes must not
    // send anything beyond loopback.
    let scratch = Scratch::new("run");
    let upstream = Upstream::start(3);
    let text = format!(
        "area = \"none\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n[forward]\ndefault = [\"{}\"]\n",
        upstream.addr
    );
    let mut daemon = Running::start(&scratch, &text);

    let query = common::query("example.com");
    let answer = common::ask(daemon.addr, &query);
    assert_eq!(answer[..2], [0x12, 0x34], "the client's ID");
    assert_eq!(answer[2] & 0x80, 0x80, "a response");
    assert_eq!(answer[3] & 0x0F, 3, "NXDOMAIN passed through");
    assert_eq!(answer[3] & 0x80, 0x80, "RA");
    assert_eq!(answer[10..12], [0, 0], "no OPT for a client without EDNS");
    assert_eq!(&answer[12..], &query[12..], "the question");

    let (status, stderr) = daemon.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        stderr.contains("route default") && stderr.contains("listening"),
        "start-up log: {stderr}"
    );
    // The query, plus the health probes of the default server (`. NS`).
    assert!(upstream.served.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}
