//! The systemd unit in `packaging/systemd/`: `systemd-analyze verify` accepts it with the built
//! binary in place of `/usr/bin/oqsdns`, and `systemd-analyze security` rates its exposure 1.5
//! ("OK") or lower; its settings agree with the binary (exit statuses, reload, open files). Skipped
//! with a reason when `systemd-analyze` is absent, unless `OQSDNS_LAB=require`. The package under a
//! booted systemd is `tests/systemd.rs`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const UNIT: &str = include_str!("../../../packaging/systemd/oqsdns.service");

/// The highest exposure accepted, as `systemd-analyze security` prints it.
const MAX_EXPOSURE: f64 = 1.5;

fn systemd_analyze(args: &[&str]) -> Option<Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let reason = "systemd-analyze is not installed (apt-get install systemd)";
            if std::env::var("OQSDNS_LAB").as_deref() == Ok("require") {
                panic!("OQSDNS_LAB=require but {reason}");
            }
            eprintln!("skipped: {reason}");
            None
        }
        Err(error) => panic!("cannot run systemd-analyze: {error}"),
    }
}

/// Writes `text` as `oqsdns.service` in a fresh directory, the binary path rewritten.
fn write_unit(text: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new();
    let path = dir.0.join("oqsdns.service");
    let text = text.replace("/usr/bin/oqsdns", env!("CARGO_BIN_EXE_oqsdns"));
    std::fs::write(&path, text).expect("write the unit");
    (dir, path)
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("oqsdns-unit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The overall exposure `systemd-analyze security --offline=yes` gives the unit at `path`.
fn exposure(path: &Path) -> Option<f64> {
    let output = systemd_analyze(&["security", "--offline=yes", path.to_str()?])?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure in the output:\n{text}"));
    let value = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"));
    Some(value)
}

#[test]
fn unit_verifies() {
    let (_dir, path) = write_unit(UNIT);
    // --man=no: the man page is installed by the package, not on the build machine.
    let Some(output) = systemd_analyze(&["verify", "--man=no", path.to_str().unwrap()]) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        output.status
    );
}

#[test]
fn unit_exposure_is_ok() {
    let (_dir, path) = write_unit(UNIT);
    let Some(score) = exposure(&path) else { return };
    println!("systemd-analyze security exposure: {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE}"
    );
}

/// The check can fail: the same unit without its sandboxing is rated above the limit.
#[test]
fn unit_without_hardening_is_rejected() {
    let bare: String = UNIT
        .lines()
        .take_while(|l| !l.starts_with("# Runs as"))
        .chain(["", "[Install]", "WantedBy=multi-user.target"])
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        bare.contains("ExecStart="),
        "the cut kept the service section"
    );
    let (_dir, path) = write_unit(&bare);
    let Some(score) = exposure(&path) else { return };
    assert!(score > MAX_EXPOSURE, "bare unit rated {score}");
}

/// What the daemon relies on: notify, reload through its own binary, its state directory, no
/// restart loop for a start that cannot work, and the network of the host.
#[test]
fn unit_settings() {
    let has = |line: &str| UNIT.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/oqsdns run --config /etc/oqsdns/oqsdns.toml",
        "ExecReload=/usr/bin/oqsdns config check /etc/oqsdns/oqsdns.toml",
        "ExecReload=/usr/bin/oqsdns reload $MAINPID",
        "StateDirectory=oqsdns",
        "RestartPreventExitStatus=2",
        "StartLimitBurst=5",
        "StartLimitIntervalSec=30s",
        "Restart=on-failure",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    ] {
        assert!(has(line), "the unit lacks {line:?}");
    }
    let setting = |key: &str| UNIT.lines().any(|l| l.trim_start().starts_with(key));
    assert!(
        !setting("PrivateNetwork") && !setting("IPAddressDeny"),
        "the daemon serves the LAN: no private network, no address deny list"
    );
    // A minimal Debian has no kill binary (procps): the unit must not need one.
    let kill = UNIT
        .lines()
        .any(|l| !l.starts_with('#') && l.contains("kill"));
    assert!(!kill, "the unit runs a kill binary");
}

/// The unit's value of `key` (the last one, as systemd reads it).
fn value(key: &str) -> &'static str {
    UNIT.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

/// LimitNOFILE's soft limit covers the defaults with the largest table (east) and three
/// resolvers; the hard one leaves the daemon room to raise it for a larger configuration.
#[test]
fn open_files_limit_covers_the_defaults() {
    let config = oqsdns_config::Config::from_toml(
        "area = \"east\"\n[forward]\ndefault = [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\"]\n",
    )
    .unwrap();
    let need = oqsdns::limits::needed(&config, &[]);
    let (soft, hard) = value("LimitNOFILE").split_once(':').expect("soft:hard");
    let (soft, hard): (u64, u64) = (soft.parse().unwrap(), hard.parse().unwrap());
    assert!(soft >= need, "LimitNOFILE soft {soft} < {need} needed");
    assert!(hard >= 8 * need, "LimitNOFILE hard {hard}");
}

/// `oqsdns run` exits with 2 for a bad file, the status the unit does not restart.
#[test]
fn a_bad_file_exits_with_the_status_not_restarted() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, "area = \"north\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_oqsdns"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(value("RestartPreventExitStatus"), "2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("error: {}: ", path.display())),
        "{stderr}"
    );
}

/// `listen = ["auto:PORT"]` on loopback only, with the port held on every loopback address (as
/// another DNS server on the wildcard would): exit 3, not a daemon that serves nothing.
#[test]
fn auto_with_every_address_taken_exits_3() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // ::1 too where the host has it (a host without IPv6 on loopback has only 127.0.0.1).
    let _taken6 = std::net::UdpSocket::bind(("::1", port)).ok();
    let dir = TempDir::new();
    let path = dir.0.join("auto.toml");
    std::fs::write(
        &path,
        format!(
            "area = \"none\"\n[server]\nlisten = [\"auto:{port}\"]\ninterfaces = [\"lo\"]\n\
             [forward]\ndefault = [\"192.0.2.53\"]\n"
        ),
    )
    .unwrap();
    // Bounded: a daemon that starts anyway is stopped after 10 s (coreutils' timeout: exit 124).
    let output = Command::new("timeout")
        .args(["10", env!("CARGO_BIN_EXE_oqsdns"), "run", "--config"])
        .arg(&path)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("could bind no address"), "{stderr}");
}

/// A taken listen address: exit 3 with the address and the reason in a plain line on stderr
/// (a pipe: no escape codes).
#[test]
fn a_taken_address_exits_3_with_the_reason() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_oqsdns"))
        .args(["run", "--listen", &addr.to_string()])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("ERROR cannot listen on {addr} (udp): "))
            && stderr.contains("not starting"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes on a pipe: {stderr:?}"
    );
}

/// `oqsdns reload PID`, the unit's ExecReload, makes the daemon read its configuration again.
#[test]
fn reload_subcommand_reloads_the_daemon() {
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_oqsdns"))
        .args(["run", "--listen", "127.0.0.1:0"])
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stderr = daemon.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let wait = |needle: &str| loop {
        match seen.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    };
    wait("listening on 127.0.0.1:");
    let status = Command::new(env!("CARGO_BIN_EXE_oqsdns"))
        .args(["reload", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let line = wait("configuration reloaded");
    assert!(line.contains("from the built-in defaults"), "{line}");
    let _ = daemon.kill();
    let _ = daemon.wait();
}
