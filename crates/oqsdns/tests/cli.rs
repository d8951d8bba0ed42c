//! Smoke tests of the real binary: the subcommands' exit codes and messages, and one query
//! answered through a running daemon that stops cleanly on SIGTERM.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_oqsdns");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oqsdns-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/oqsdns.toml")
}

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

    let dir = scratch("check");
    let bad = dir.join("bad.toml");
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
    std::fs::remove_dir_all(dir).unwrap();
}

/// A minimal upstream: answers every query with its own bytes flagged as an NXDOMAIN response.
fn nxdomain_upstream(stop: Arc<AtomicBool>) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let mut served = 0;
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                buf[2] |= 0x80;
                buf[3] = (buf[3] & 0xF0) | 3;
                socket.send_to(&buf[..len], from).unwrap();
                served += 1;
            }
        }
        served
    });
    (addr, thread)
}

#[test]
fn the_daemon_answers_and_stops_on_sigterm() {
    // No area: the guide's servers are not reachable from here, and the health probes must not
    // send anything beyond loopback.
    let dir = scratch("run");
    let stop = Arc::new(AtomicBool::new(false));
    let (upstream, upstream_thread) = nxdomain_upstream(stop.clone());
    let config = dir.join("oqsdns.toml");
    std::fs::write(
        &config,
        format!("area = \"none\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n[forward]\ndefault = [\"{upstream}\"]\n"),
    )
    .unwrap();
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // READY=1 comes with STATUS=serving DNS on <addresses>.
    let mut buf = [0u8; 1024];
    let len = notify.recv(&mut buf).expect("READY within 10 s");
    let message = String::from_utf8_lossy(&buf[..len]).to_string();
    assert!(message.contains("READY=1"), "{message}");
    let addr: SocketAddr = message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=serving DNS on "))
        .and_then(|s| s.split_whitespace().next())
        .expect("STATUS with the address")
        .parse()
        .unwrap();

    // dig example.com: id 0x1234, RD, one question, no EDNS.
    let query =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.connect(addr).unwrap();
    client.send(query).unwrap();
    let len = client.recv(&mut buf).expect("an answer within 5 s");
    let answer = &buf[..len];
    assert_eq!(answer[..2], [0x12, 0x34], "the client's ID");
    assert_eq!(answer[2] & 0x80, 0x80, "a response");
    assert_eq!(answer[3] & 0x0F, 3, "NXDOMAIN passed through");
    assert_eq!(answer[3] & 0x80, 0x80, "RA");
    assert_eq!(answer[10..12], [0, 0], "no OPT for a client without EDNS");
    assert_eq!(&answer[12..len], &query[12..], "the question");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let (done, exited) = std::sync::mpsc::channel();
    let mut stderr_pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || done.send(child.wait()));
    let status = exited
        .recv_timeout(Duration::from_secs(10))
        .expect("stopped within 10 s")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let len = notify.recv(&mut buf).expect("STOPPING");
    assert!(String::from_utf8_lossy(&buf[..len]).contains("STOPPING=1"));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut stderr_pipe, &mut stderr).unwrap();
    assert!(
        stderr.contains("route default") && stderr.contains("listening"),
        "start-up log: {stderr}"
    );
    stop.store(true, Ordering::Relaxed);
    // The query, plus the health probes of the default server (`. NS`).
    assert!(upstream_thread.join().unwrap() >= 1);
    std::fs::remove_dir_all(dir).unwrap();
}
