//! Child processes of the lab: commands run under a deadline, and daemons that report readiness
//! over sd_notify and are killed when dropped.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a bounded command did.
#[derive(Debug)]
pub struct Output {
    /// The exit status, or `None` when the deadline killed it.
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` with no input, killing it when it outlives `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().map(read_in_thread);
    let stderr = child.stderr.take().map(read_in_thread);
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let join = |h: Option<thread::JoinHandle<String>>| h.and_then(|h| h.join().ok());
    Ok(Output {
        status,
        stdout: join(stdout).unwrap_or_default(),
        stderr: join(stderr).unwrap_or_default(),
    })
}

fn read_in_thread(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `cmd` under `limit` and fails, with the command and its output, unless it exits with 0.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let line = format!("{cmd:?}");
    let out = run_bounded(cmd, limit).map_err(|e| format!("cannot run {line}: {e}"))?;
    match out.status {
        Some(status) if status.success() => Ok(out.stdout),
        Some(status) => Err(format!(
            "{line} failed ({status}): {}{}",
            out.stderr.trim(),
            out.stdout.trim()
        )),
        None => Err(format!("{line} did not finish within {limit:?}")),
    }
}

/// A long-running child: killed and reaped when dropped. Its stdout and stderr go to a log file.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    notify: UnixDatagram,
}

impl Daemon {
    /// Starts `cmd` with `NOTIFY_SOCKET` set to a socket of its own in `dir`, and waits until it
    /// sends `READY=1`, exits, or `limit` passes.
    pub fn start(
        name: &str,
        mut cmd: Command,
        dir: &Path,
        limit: Duration,
    ) -> Result<Self, String> {
        let socket_path = dir.join(format!("{name}.notify"));
        let socket = UnixDatagram::bind(&socket_path)
            .map_err(|e| format!("cannot bind {}: {e}", socket_path.display()))?;
        let log = dir.join(format!("{name}.log"));
        let file =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let file2 = file.try_clone().map_err(|e| e.to_string())?;
        let line = format!("{cmd:?}");
        let child = cmd
            .env("NOTIFY_SOCKET", &socket_path)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({line}): {e}"))?;
        let mut daemon = Self {
            name: name.to_string(),
            child,
            log,
            notify: socket,
        };
        daemon.wait_for("READY=1", limit)?;
        Ok(daemon)
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<(), String> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).map_err(|e| format!("cannot signal {}: {e}", self.name))
    }

    /// Waits until the daemon sends an sd_notify line equal to `line`, exits, or `limit` passes.
    pub fn wait_for(&mut self, line: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{} sent no {line} within {limit:?}; its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            let _ = self
                .notify
                .set_read_timeout(Some(left.min(Duration::from_millis(100))));
            match self.notify.recv(&mut buf) {
                Ok(len) => {
                    if String::from_utf8_lossy(&buf[..len])
                        .lines()
                        .any(|l| l == line)
                    {
                        return Ok(());
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(format!(
                            "{} exited ({status}); its log:\n{}",
                            self.name,
                            self.log()
                        ));
                    }
                }
                Err(e) => return Err(format!("{}: notify socket: {e}", self.name)),
            }
        }
    }

    /// What it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Kills it and waits until it is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
