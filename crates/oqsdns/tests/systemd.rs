//! The Debian package under a real systemd: a debootstrapped Debian 12 (`--variant=minbase`, with
//! systemd, dbus and dig) booted with `systemd-nspawn -b --private-network`, the `.deb` that CI
//! built (`OQSDNS_DEB`) installed with dpkg, then what a Debian user expects, step by step: enabled
//! and started on install, Type=notify with its STATUS, answers, the watchdog, reload without a
//! `kill` binary, plain-text journal lines, a bad file and a taken address ending in `failed`,
//! upgrade restarting, remove stopping, purge leaving nothing.
//!
//! Needs root, debootstrap, systemd-nspawn and nsenter; the base root is built once into
//! `target/systemd-root/bookworm` (about 300 MB) and copied for each run. Skipped with its reason
//! otherwise, unless `OQSDNS_SYSTEMD=require` (set by `.ci/debian.sh`), which turns a skip into a
//! failure. The container has only loopback: the test's configuration listens on 127.0.0.1:53 and
//! its upstream (a documentation address) is unreachable; `localhost` is answered by the daemon.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Debian's mirror, unless `OQSDNS_DEBIAN_MIRROR` names another.
const MIRROR: &str = "http://deb.debian.org/debian";

/// What the base root holds besides minbase.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,bind9-dnsutils";

/// The daemon's configuration for the test: loopback only, one unreachable upstream probed each
/// second and marked down at the first failure.
const TEST_CONFIG: &str = r#"area = "none"

[server]
listen = ["127.0.0.1:53"]

[forward]
default = ["192.0.2.53"]

[health]
interval = "1s"
fall = 1
"#;

/// The watchdog interval set by a drop-in for the test (the unit's 30 s would take minutes).
const WATCHDOG_SEC: u64 = 2;

fn require() -> bool {
    std::env::var("OQSDNS_SYSTEMD").as_deref() == Ok("require")
}

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return Some("needs root (debootstrap, systemd-nspawn)".into());
    }
    for tool in ["debootstrap", "systemd-nspawn", "nsenter"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (apt-get install debootstrap systemd-container util-linux)"
            ));
        }
    }
    match std::env::var_os("OQSDNS_DEB") {
        None => Some("OQSDNS_DEB is not set: .ci/debian.sh builds the package and sets it".into()),
        Some(path) if !Path::new(&path).is_file() => Some(format!(
            "OQSDNS_DEB={} is not a file",
            path.to_string_lossy()
        )),
        Some(_) => None,
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The cached base root, debootstrapped on first use (into a temporary name, renamed when done).
fn base_root() -> PathBuf {
    let dir = target_dir().join("systemd-root");
    let base = dir.join("bookworm");
    if base.join("usr/lib/systemd/systemd").exists() || base.join("lib/systemd/systemd").exists() {
        return base;
    }
    let tmp = dir.join("bookworm.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&dir).unwrap();
    let mirror = std::env::var("OQSDNS_DEBIAN_MIRROR").unwrap_or_else(|_| MIRROR.to_owned());
    let started = Instant::now();
    run(Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={INCLUDE}"),
            "bookworm",
        ])
        .arg(&tmp)
        .arg(&mirror));
    println!("debootstrap: {:?}", started.elapsed());
    std::fs::rename(&tmp, &base).unwrap();
    base
}

/// A booted container: systemd-nspawn, its init's host PID, the copied root; stopped on drop.
struct Container {
    nspawn: Child,
    leader: u32,
    root: PathBuf,
}

impl Container {
    fn boot(base: &Path, deb: &Path) -> Self {
        let root = target_dir()
            .join("systemd-root")
            .join(format!("run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        run(Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(base)
            .arg(&root));
        std::fs::create_dir_all(root.join("root/deb")).unwrap();
        std::fs::copy(deb, root.join("root/deb/oqsdns.deb")).unwrap();
        let console = File::create(root.with_extension("console.log")).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "-q",
                "-b",
                "--private-network",
                "--register=no",
                "--keep-unit",
            ])
            .arg("--console=read-only")
            .arg("-D")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("start systemd-nspawn");
        let mut container = Self {
            nspawn,
            leader: 0,
            root,
        };
        container.leader = container.find_leader();
        container.wait_booted();
        container
    }

    /// The container's PID 1 as the host sees it: a descendant of nspawn whose NSpid ends in 1.
    fn find_leader(&mut self) -> u32 {
        let nspawn = self.nspawn.id();
        wait_for("the container's init", Duration::from_secs(30), || {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited: {status}; {}", self.console());
            }
            std::fs::read_dir("/proc").ok()?.find_map(|entry| {
                let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                };
                let nspid = field("NSpid:")?;
                let ppid: u32 = field("PPid:")?.first()?.parse().ok()?;
                (nspid.len() > 1 && nspid.last()? == "1" && descends(ppid, nspawn)).then_some(pid)
            })
        })
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.root.with_extension("console.log")).unwrap_or_default()
    }

    fn wait_booted(&self) {
        wait_for("the container to boot", Duration::from_secs(120), || {
            let state = self.sh_output("systemctl is-system-running");
            matches!(state.trim(), "running" | "degraded").then_some(())
        });
    }

    /// `sh -c script` inside the container.
    fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.leader.to_string(),
                "-a",
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("run nsenter")
    }

    /// `script`'s stdout; its exit status ignored.
    fn sh_output(&self, script: &str) -> String {
        String::from_utf8_lossy(&self.sh(script).stdout).into_owned()
    }

    /// `script`, which must succeed; its stdout.
    fn ok(&self, script: &str) -> String {
        let output = self.sh(script);
        assert!(
            output.status.success(),
            "in the container: {script}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `systemctl show oqsdns -p key --value`.
    fn prop(&self, key: &str) -> String {
        self.sh_output(&format!("systemctl show oqsdns -p {key} --value"))
            .trim()
            .to_owned()
    }

    fn main_pid(&self) -> u32 {
        self.prop("MainPID").parse().unwrap_or(0)
    }

    /// Waits for the service to be active with a main process; its PID.
    fn wait_active(&self, what: &str) -> u32 {
        wait_for(what, Duration::from_secs(30), || {
            let pid = self.main_pid();
            (self.prop("ActiveState") == "active" && pid != 0).then_some(pid)
        })
    }

    /// Waits for the service to end in `failed`.
    fn wait_failed(&self, what: &str, within: Duration) {
        wait_for(what, within, || {
            (self.prop("ActiveState") == "failed").then_some(())
        });
    }

    /// The plain journal of the unit (what `journalctl -u oqsdns` shows, without the prefix).
    fn journal(&self) -> String {
        self.sh_output("journalctl -u oqsdns -o cat --no-pager")
    }

    /// Waits for a journal line containing every one of `parts`; the line.
    fn wait_journal(&self, what: &str, parts: &[&str]) -> String {
        wait_for(what, Duration::from_secs(20), || {
            self.journal()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_owned)
        })
    }

    fn dig_localhost(&self) -> String {
        self.ok("dig @127.0.0.1 localhost A +time=2 +tries=3 +short")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.leader != 0 {
            // Power off from inside; SIGKILL to nspawn if that does not end it in time.
            let _ = self.sh("systemctl poweroff --no-block");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.nspawn.try_wait(), Ok(Some(_))) {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
            let _ = std::fs::remove_file(self.root.with_extension("console.log"));
        } else {
            eprintln!(
                "the container's root is kept for a look: {}",
                self.root.display()
            );
        }
    }
}

/// Whether `pid` is `ancestor` or one of its descendants.
fn descends(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..16 {
        if pid == ancestor {
            return true;
        }
        let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_owned();
                rest.split_whitespace().nth(1)?.parse().ok()
            })
        else {
            return false;
        };
        if ppid <= 1 {
            return false;
        }
        pid = ppid;
    }
    false
}

/// Polls `check` every 100 ms until it gives a value; panics after `within`.
fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_package_under_a_real_systemd() {
    if let Some(reason) = missing() {
        assert!(!require(), "OQSDNS_SYSTEMD=require but {reason}");
        eprintln!("skipped: {reason}");
        return;
    }
    let deb = PathBuf::from(std::env::var_os("OQSDNS_DEB").unwrap());
    let base = base_root();
    let started = Instant::now();
    let c = Container::boot(&base, &deb);
    println!("booted in {:?}", started.elapsed());
    // A minimal system: no kill binary, which the old ExecReload needed.
    c.ok("test ! -e /bin/kill && test ! -e /usr/bin/kill");

    // dpkg -i: enabled and started, with the shipped configuration.
    c.ok("dpkg -i /root/deb/oqsdns.deb");
    assert_eq!(c.sh_output("systemctl is-enabled oqsdns").trim(), "enabled");
    c.ok("test -L /etc/systemd/system/multi-user.target.wants/oqsdns.service");
    c.wait_active("the service started by the install");
    c.ok("oqsdns config check /etc/oqsdns/oqsdns.toml");
    c.ok("grep -qx /etc/oqsdns/oqsdns.toml /var/lib/dpkg/info/oqsdns.conffiles");
    c.ok("systemd-analyze verify --man=no oqsdns.service");

    // The test's configuration, as an administrator would edit the conffile.
    c.ok(&format!(
        "cat >/etc/oqsdns/oqsdns.toml <<'EOF'\n{TEST_CONFIG}EOF\n\
         mkdir -p /etc/systemd/system/oqsdns.service.d\n\
         printf '[Service]\\nWatchdogSec={WATCHDOG_SEC}s\\n' \
           >/etc/systemd/system/oqsdns.service.d/watchdog.conf\n\
         systemctl daemon-reload && systemctl restart oqsdns"
    ));
    // Type=notify: active only once ready, with the daemon's STATUS.
    let pid = c.wait_active("the restarted service");
    assert_eq!(c.prop("Type"), "notify");
    assert_eq!(c.prop("StatusText"), "serving DNS on 127.0.0.1:53");
    assert_eq!(c.prop("WatchdogUSec"), format!("{WATCHDOG_SEC}s"));
    assert_eq!(c.dig_localhost().trim(), "127.0.0.1");
    c.wait_journal(
        "the listen line",
        &["listening on 127.0.0.1:53 over UDP and TCP"],
    );

    // The unit's environment and limits, as the running process has them.
    let environ = c.ok(&format!("tr '\\0' '\\n' </proc/{pid}/environ"));
    assert!(
        environ
            .lines()
            .any(|l| l == "STATE_DIRECTORY=/var/lib/oqsdns"),
        "{environ}"
    );
    c.ok("test -d /var/lib/oqsdns");
    let limits = c.ok(&format!("grep 'Max open files' /proc/{pid}/limits"));
    let soft: u64 = limits.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(soft >= 8192, "{limits}");

    // Journal, plain view: which server is down, and why, in the text itself.
    let down = c.wait_journal(
        "the upstream marked down",
        &["upstream 192.0.2.53:53 (", ") is down over UDP: "],
    );
    println!("journal: {down}");
    assert!(
        !c.journal().contains('\u{1b}'),
        "escape codes in the journal"
    );

    // The watchdog: the same process past twice WatchdogSec, no restart.
    let since = Instant::now();
    wait_for(
        "twice WatchdogSec",
        Duration::from_secs(4 * WATCHDOG_SEC + 10),
        || {
            assert_eq!(c.main_pid(), pid, "the watchdog restarted the daemon");
            (since.elapsed() > Duration::from_secs(2 * WATCHDOG_SEC + 1)).then_some(())
        },
    );
    assert_eq!(c.prop("NRestarts"), "0");
    assert_eq!(c.prop("ActiveState"), "active");

    // systemctl reload: the same process, the reload in the journal.
    c.ok("systemctl reload oqsdns");
    assert_eq!(c.main_pid(), pid);
    c.wait_journal(
        "the reload line",
        &["configuration reloaded from /etc/oqsdns/oqsdns.toml"],
    );
    assert_eq!(c.prop("ActiveState"), "active");
    assert_eq!(c.dig_localhost().trim(), "127.0.0.1");

    // A bad file: reload refuses it and the daemon keeps running; a start fails for good (exit 2).
    c.ok("cp /etc/oqsdns/oqsdns.toml /root/good.toml && echo 'area = \"north\"' >>/etc/oqsdns/oqsdns.toml");
    assert!(!c.sh("systemctl reload oqsdns").status.success());
    assert_eq!(c.main_pid(), pid, "a refused reload kept the daemon");
    let _ = c.sh("systemctl restart oqsdns");
    c.wait_failed("a bad file to fail the start", Duration::from_secs(20));
    assert_eq!(c.prop("ExecMainStatus"), "2");
    assert_eq!(c.prop("NRestarts"), "0", "exit 2 is not restarted");
    c.wait_journal(
        "the configuration error",
        &["error: /etc/oqsdns/oqsdns.toml: "],
    );
    c.ok("cp /root/good.toml /etc/oqsdns/oqsdns.toml && systemctl reset-failed oqsdns");

    // The address taken by another server: `failed` within a few restarts, the reason logged.
    c.ok("systemctl start oqsdns");
    c.wait_active("the service back");
    c.ok("systemctl stop oqsdns && systemd-run --unit=squatter /usr/bin/oqsdns run --listen 127.0.0.1:53");
    wait_for("the squatter", Duration::from_secs(20), || {
        c.sh("dig @127.0.0.1 localhost +time=1 +tries=1 +short")
            .status
            .success()
            .then_some(())
    });
    let _ = c.sh("systemctl start oqsdns");
    c.wait_failed("a taken address to fail", Duration::from_secs(60));
    let restarts: u32 = c.prop("NRestarts").parse().unwrap();
    println!(
        "taken address: failed after {restarts} restarts, result {}",
        c.prop("Result")
    );
    assert!(restarts <= 5, "{restarts} restarts");
    assert_eq!(c.prop("ExecMainStatus"), "3");
    c.wait_journal(
        "the reason",
        &["cannot listen on 127.0.0.1:53 (udp): ", "not starting"],
    );
    c.ok("systemctl stop squatter && systemctl reset-failed oqsdns && systemctl start oqsdns");
    let pid = c.wait_active("the service after the address is free");

    // Upgrade (dpkg -i of the same package): a new process running the new binary.
    c.ok("dpkg -i /root/deb/oqsdns.deb");
    let new = c.wait_active("the upgraded service");
    assert_ne!(new, pid, "the upgrade did not restart the daemon");
    let exe = c.ok(&format!("readlink /proc/{new}/exe"));
    assert_eq!(exe.trim(), "/usr/bin/oqsdns");
    assert!(
        c.ok("cat /etc/oqsdns/oqsdns.toml").contains("192.0.2.53"),
        "the upgrade kept the edited conffile"
    );
    assert_eq!(c.dig_localhost().trim(), "127.0.0.1");

    // Upgrade to a newer version (the same package repacked as VERSION+test1): restarted too.
    c.ok("cd /root/deb && dpkg-deb -R oqsdns.deb newer \
          && sed -i 's/^Version: .*/&+test1/' newer/DEBIAN/control \
          && dpkg-deb -b newer newer.deb >/dev/null && dpkg -i newer.deb");
    assert!(c
        .ok("dpkg-query -W -f '${Version}' oqsdns")
        .ends_with("+test1"));
    let newer = c.wait_active("the service upgraded to the newer version");
    assert_ne!(
        newer, new,
        "the upgrade to a newer version did not restart the daemon"
    );
    let exe = c.ok(&format!("readlink /proc/{newer}/exe"));
    assert_eq!(exe.trim(), "/usr/bin/oqsdns");
    let new = newer;

    // dpkg -r while running: stopped, nothing answers; the configuration stays.
    c.ok("dpkg -r oqsdns");
    assert!(
        matches!(c.prop("ActiveState").as_str(), "inactive" | ""),
        "{}",
        c.prop("ActiveState")
    );
    c.ok(&format!("test ! -e /proc/{new}"));
    assert!(!c
        .sh("dig @127.0.0.1 localhost +time=1 +tries=1")
        .status
        .success());
    c.ok("test -f /etc/oqsdns/oqsdns.toml");

    // Purge, after enable: no symlink, no configuration, no state.
    c.ok("rm -r /etc/systemd/system/oqsdns.service.d && dpkg -P oqsdns");
    for path in [
        "/etc/systemd/system/multi-user.target.wants/oqsdns.service",
        "/etc/oqsdns",
        "/var/lib/oqsdns",
        "/var/lib/private/oqsdns",
        "/usr/bin/oqsdns",
    ] {
        c.ok(&format!(
            "if [ -e {path} ] || [ -L {path} ]; then echo {path} left; exit 1; fi"
        ));
    }
    c.ok("! find /etc/systemd /var/lib/systemd -name 'oqsdns*' | grep .");
    println!("all steps in {:?}", started.elapsed());
}
