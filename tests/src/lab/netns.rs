//! Network namespaces and the lab's scratch directory, each removed when dropped (also on panic).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::process::{run_bounded, run_ok};

/// Every `ip` command of the harness gets this long.
const IP_LIMIT: Duration = Duration::from_secs(10);

/// A name unique to this test process and lab: `oqs<pid><n>`.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("oqs{}x{n}", std::process::id())
}

/// A named network namespace (`ip netns add`). Dropping it kills whatever still runs inside and
/// deletes it, with every interface and address it holds.
#[derive(Debug)]
pub struct Netns {
    name: String,
    ip: PathBuf,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    pub fn create(ip: &Path, name: &str) -> Result<Self, String> {
        run_ok(Command::new(ip).args(["netns", "add", name]), IP_LIMIT)?;
        let ns = Self {
            name: name.to_string(),
            ip: ip.to_path_buf(),
        };
        // No duplicate address detection, for the link-local addresses too: until it ends, the
        // first packets over a new link wait in neighbour discovery for about two seconds.
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        run_ok(
            Command::new(&self.ip).args(["-n", &self.name]).args(args),
            IP_LIMIT,
        )
        .map(drop)
    }

    /// Sets a sysctl of the namespace by writing its /proc/sys file from inside it.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let mut cmd = self.command(Path::new("/bin/sh"));
        cmd.args(["-c", "echo \"$1\" > \"$2\"", "sh", value, &path]);
        run_ok(&mut cmd, IP_LIMIT).map(drop)
    }

    /// A TCP server on `addr` inside the namespace that accepts every connection and closes it
    /// at once: a thread of this process enters the namespace and binds (the socket stays in the
    /// namespace), another accepts until the server is dropped.
    pub fn tcp_server(&self, addr: std::net::SocketAddr) -> Result<TcpServer, String> {
        let path = Path::new("/run/netns").join(&self.name);
        let listener = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot enter {}: {e}", path.display()))?;
            std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))
        })
        .join()
        .map_err(|_| "the listener thread panicked".to_string())??;
        let listener = std::sync::Arc::new(listener);
        let accepting = listener.clone();
        let thread = std::thread::spawn(move || {
            // Ends when the listener is shut down: accept then fails.
            for stream in accepting.incoming() {
                match stream {
                    Ok(stream) => drop(stream),
                    Err(_) => return,
                }
            }
        });
        Ok(TcpServer {
            addr,
            listener,
            thread: Some(thread),
        })
    }

    /// `GET path` over HTTP/1.1 to `addr` from inside the namespace (a thread of this process
    /// enters it): the status code and the body, within `limit`.
    pub fn http_get(
        &self,
        addr: std::net::SocketAddr,
        path: &str,
        limit: Duration,
    ) -> Result<(u16, String), String> {
        use std::io::{Read as _, Write as _};
        let ns_path = Path::new("/run/netns").join(&self.name);
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&ns_path)
                .map_err(|e| format!("cannot open {}: {e}", ns_path.display()))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot enter {}: {e}", ns_path.display()))?;
            let mut stream = std::net::TcpStream::connect_timeout(&addr, limit)
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            stream
                .set_read_timeout(Some(limit))
                .map_err(|e| e.to_string())?;
            stream
                .write_all(request.as_bytes())
                .map_err(|e| e.to_string())?;
            let mut reply = Vec::new();
            stream
                .read_to_end(&mut reply)
                .map_err(|e| format!("reading from {addr}: {e}"))?;
            let reply = String::from_utf8_lossy(&reply).into_owned();
            let (head, body) = reply.split_once("\r\n\r\n").ok_or("no HTTP head")?;
            let code = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("no status in {head:?}"))?;
            Ok((code, body.to_string()))
        })
        .join()
        .map_err(|_| "the HTTP thread panicked".to_string())?
    }

    fn pids(&self) -> Vec<String> {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "pids", &self.name]);
        match run_bounded(&mut cmd, IP_LIMIT) {
            Ok(out) => out.stdout.split_whitespace().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The daemons are killed by their own guards first; this catches anything left, such as
        // a client the harness gave up on. Every one of them was started by this lab.
        let pids = self.pids();
        if !pids.is_empty() {
            // The shell's builtin kill: /bin/kill (procps) may be absent from a minimal image.
            let mut kill = Command::new("/bin/sh");
            kill.args(["-c", "kill -KILL \"$@\"", "sh"]).args(&pids);
            let _ = run_bounded(&mut kill, IP_LIMIT);
        }
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "del", &self.name]);
        if let Ok(out) = run_bounded(&mut cmd, IP_LIMIT) {
            if !out.success() {
                eprintln!(
                    "lab: cannot delete namespace {}: {}",
                    self.name,
                    out.stderr.trim()
                );
            }
        }
    }
}

/// A TCP server from [`Netns::tcp_server`]; dropping it stops it.
#[derive(Debug)]
pub struct TcpServer {
    addr: std::net::SocketAddr,
    listener: std::sync::Arc<std::net::TcpListener>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpServer {
    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        // Shutting a listening socket down wakes its blocked accept with an error (Linux).
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&*self.listener),
            nix::sys::socket::Shutdown::Both,
        );
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A scratch directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/<name>`, empty.
    pub fn create(name: &str) -> Result<Self, String> {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("OQSDNS_LAB_KEEP").is_some() {
            eprintln!("lab: keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
