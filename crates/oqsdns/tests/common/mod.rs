//! Shared by the binary's tests: a one-line upstream and the daemon run as a child process,
//! followed through its sd_notify messages instead of sleeps.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_oqsdns");

/// A scratch directory for one test, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("oqsdns-bin-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An upstream on 127.0.0.1 that answers every UDP query with its own bytes flagged as a
/// response with `rcode`; counts what it served.
pub struct Upstream {
    pub addr: SocketAddr,
    pub served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(rcode: u8) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop, served) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (halt, count) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !halt.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    buf[2] |= 0x80;
                    buf[3] = (buf[3] & 0xF0) | rcode;
                    let _ = socket.send_to(&buf[..len], from);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { addr, served, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The daemon binary running with a configuration file, and its sd_notify socket.
pub struct Running {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub config: PathBuf,
    notify: UnixDatagram,
}

impl Running {
    /// Starts `oqsdns run --config` on `config_text` in `scratch` and waits for READY=1.
    pub fn start(scratch: &Scratch, config_text: &str) -> Self {
        let config = scratch.path("oqsdns.toml");
        std::fs::write(&config, config_text).unwrap();
        let notify_path = scratch.path("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut running = Self {
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            config,
            notify,
        };
        let ready = running.wait_notify("READY=1");
        running.addr = ready
            .lines()
            .find_map(|l| l.strip_prefix("STATUS=serving DNS on "))
            .and_then(|s| s.split_whitespace().next())
            .expect("STATUS with the address")
            .parse()
            .unwrap();
        running
    }

    /// Reads sd_notify messages until one contains `what` (10 s at most); returns it.
    pub fn wait_notify(&self, what: &str) -> String {
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} within 10 s"
            );
            let len = match self.notify.recv(&mut buf) {
                Ok(len) => len,
                // A signal to the test process (another test's child exiting) interrupts recv.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("no {what} within 10 s: {e}"),
            };
            let message = String::from_utf8_lossy(&buf[..len]).to_string();
            if message.contains(what) {
                return message;
            }
        }
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// SIGHUP, then waits for the reload to finish (RELOADING=1, then READY=1).
    pub fn reload(&self) {
        self.signal(nix::sys::signal::SIGHUP);
        self.wait_notify("RELOADING=1");
        self.wait_notify("READY=1");
    }

    /// Stops the daemon with SIGTERM; its exit status and everything it logged.
    pub fn stop(&mut self) -> (ExitStatus, String) {
        self.signal(nix::sys::signal::SIGTERM);
        let mut child = self.child.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (done, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(child.wait()));
        let status = exited
            .recv_timeout(Duration::from_secs(10))
            .expect("stopped within 10 s")
            .unwrap();
        self.wait_notify("STOPPING=1");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut stderr_pipe, &mut stderr).unwrap();
        (status, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A query for `name` A IN with ID 0x1234 and RD, without EDNS.
pub fn query(name: &str) -> Vec<u8> {
    let mut out = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

/// Sends `query` over UDP to `server` and returns the answer (5 s at most).
pub fn ask(server: SocketAddr, query: &[u8]) -> Vec<u8> {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.connect(server).unwrap();
    client.send(query).unwrap();
    let mut buf = [0u8; 4096];
    let len = client.recv(&mut buf).expect("an answer within 5 s");
    buf[..len].to_vec()
}

/// The shipped example configuration.
pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/oqsdns.toml")
}
