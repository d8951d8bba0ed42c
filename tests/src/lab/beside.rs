//! Other DNS software on the oqsdns host, as on the boxes oqsdns is dropped into: a real dnsmasq
//! holding 127.0.0.53 the way systemd-resolved does, or a real dnsmasq run with the options
//! OpenWrt's init script writes, in front of oqsdns; plus `ss` and `dnsperf` on the host.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::process::{run_bounded, run_ok, Output};
use super::{dig, tools_or_skip, Area, Host, Lab, CLIENT_SLACK};

/// How long a program started beside oqsdns may take to answer its first query.
const READY: Duration = Duration::from_secs(20);

/// A program started in a namespace, killed when dropped.
#[derive(Debug)]
pub struct Program {
    child: Child,
    log: PathBuf,
}

impl Program {
    /// Starts `cmd` with its output in `<dir>/<name>.log`.
    pub fn start(name: &str, mut cmd: Command, dir: &Path) -> Result<Self, String> {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let file2 = file.try_clone().map_err(|e| e.to_string())?;
        let line = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({line}): {e}"))?;
        Ok(Self { child, log })
    }

    /// What it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Waits until `dig` in `ns` gets an answer to `name` A from `server`, or fails after
    /// [`READY`] (dnsmasq sends no readiness notification: its first answer is the sign).
    pub fn wait_answering(
        &mut self,
        ns: &Netns,
        dig_path: &Path,
        server: IpAddr,
        name: &str,
    ) -> Result<(), String> {
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}); its log:\n{}", self.log()));
            }
            let mut cmd = ns.command(dig_path);
            cmd.arg(format!("@{server}"))
                .args(dig::DIG_OPTIONS)
                .args(["+time=1", name, "A"]);
            if let Ok(out) = run_bounded(&mut cmd, Duration::from_secs(1) + CLIENT_SLACK) {
                if dig::Answer::parse(&out.stdout).is_some_and(|a| a.status == "NOERROR") {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no answer within {READY:?}; its log:\n{}",
            self.log()
        ))
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real dnsmasq holding `addrs` port 53 over UDP and TCP, bound to those addresses alone as
/// systemd-resolved holds 127.0.0.53, answering `<name>.test` with 127.0.0.54.
pub fn dnsmasq_holding(
    ns: &Netns,
    dnsmasq: &Path,
    dig_path: &Path,
    dir: &Path,
    name: &str,
    addrs: &[IpAddr],
) -> Result<Program, String> {
    let mut cmd = ns.command(dnsmasq);
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--port=53",
        "--user=root",
        "--pid-file=",
        "--log-facility=-",
    ]);
    for addr in addrs {
        cmd.arg(format!("--listen-address={addr}"));
    }
    cmd.arg(format!("--host-record={name}.test,127.0.0.54"));
    let mut program = Program::start(name, cmd, dir)?;
    program.wait_answering(ns, dig_path, addrs[0], &format!("{name}.test"))?;
    Ok(program)
}

/// What a test starts before oqsdns: given the oqsdns namespace, `dig` and the scratch directory.
pub type StartBefore<'a> = &'a dyn Fn(&Netns, &Path, &Path) -> Result<Vec<Program>, String>;

impl Lab {
    /// [`Lab::start_with`], with `before` started in the oqsdns namespace first (given the
    /// namespace, the `dig` and the scratch directory), and kept running beside it.
    pub fn start_beside(
        test: &str,
        area: Area,
        extra: &str,
        before: StartBefore<'_>,
    ) -> Option<Self> {
        let tools = tools_or_skip(test)?;
        let dig_path = tools.dig.clone();
        let before = move |ns: &Netns, dir: &Path| before(ns, &dig_path, dir);
        match Self::build(tools, area, extra, &before) {
            Ok(lab) => Some(lab),
            Err(e) => panic!("{test}: cannot build the lab: {e}"),
        }
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: Host) -> &Netns {
        self.net.ns(host)
    }

    /// The lab's scratch directory.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// `dig`'s path.
    pub fn dig_path(&self) -> &Path {
        &self.tools.dig
    }

    /// The programs started beside oqsdns, in the order `before` returned them.
    pub fn beside(&mut self) -> &mut [Program] {
        &mut self.beside
    }

    /// Whether a socket of `transport` ("udp" or "tcp") is bound to `addr` on the oqsdns host,
    /// by `ss` (iproute2).
    pub fn bound(&self, transport: &str, addr: std::net::SocketAddr) -> bool {
        let flag = if transport == "udp" { "-lnu" } else { "-lnt" };
        let mut cmd = self.net.ns(Host::Oqsdns).command(Path::new("ss"));
        cmd.args(["-H", flag]);
        let out = run_ok(&mut cmd, Duration::from_secs(10)).unwrap_or_else(|e| panic!("ss: {e}"));
        let want = match addr {
            std::net::SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
            std::net::SocketAddr::V4(v4) => v4.to_string(),
        };
        out.lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .any(|local| local == want)
    }

    /// Runs `program` with `args` on `host`, bounded by `limit`.
    pub fn run_on(&self, host: Host, program: &Path, args: &[&str], limit: Duration) -> Output {
        let mut cmd = self.net.ns(host).command(program);
        cmd.args(args);
        run_bounded(&mut cmd, limit).unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"))
    }

    /// What oqsdns logged, and what every program beside it logged, for assertion messages.
    pub fn logs(&self) -> String {
        let mut text = format!("--- oqsdns ---\n{}", self.oqsdns.log());
        for program in &self.beside {
            text += &format!("--- {} ---\n{}", program.log.display(), program.log());
        }
        text
    }
}
