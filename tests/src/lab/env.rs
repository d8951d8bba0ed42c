//! What the lab needs from the machine: root, the tools, the built `oqsdns` binary; and the
//! decision to skip a lab test or, with `OQSDNS_LAB=require`, to fail it (`OQSDNS_LAB=skip`: skip it).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The programs the lab runs, found on the PATH or in the sbin folders.
#[derive(Debug, Clone)]
pub struct Tools {
    /// iproute2's `ip`.
    pub ip: PathBuf,
    /// Knot DNS's `knotd`.
    pub knotd: PathBuf,
    /// BIND's `dig`.
    pub dig: PathBuf,
    /// BIND's `nslookup`.
    pub nslookup: PathBuf,
    /// nftables' `nft`.
    pub nft: PathBuf,
    /// The `oqsdns` binary under test.
    pub oqsdns: PathBuf,
}

impl Tools {
    /// Finds everything, or says what is missing. A missing `oqsdns` binary is not a reason to
    /// skip: it panics.
    pub fn find() -> Result<Self, String> {
        if skipped() {
            return Err("OQSDNS_LAB=skip is set (as by .ci/cross.sh under qemu-user)".into());
        }
        if !is_root() {
            return Err("not running as root (namespaces need CAP_NET_ADMIN)".into());
        }
        let mut missing = Vec::new();
        let mut find = |name: &str, package: &str| {
            which(name).unwrap_or_else(|| {
                missing.push(format!("{name} (Debian package {package})"));
                PathBuf::new()
            })
        };
        let ip = find("ip", "iproute2");
        let knotd = find("knotd", "knot");
        let dig = find("dig", "bind9-dnsutils");
        let nslookup = find("nslookup", "bind9-dnsutils");
        let nft = find("nft", "nftables");
        if !missing.is_empty() {
            return Err(format!("missing {}", missing.join(", ")));
        }
        Ok(Self {
            ip,
            knotd,
            dig,
            nslookup,
            nft,
            oqsdns: oqsdns_binary(),
        })
    }
}

/// The tools, or `None` after printing why `test` is skipped. With `OQSDNS_LAB=require` a
/// missing prerequisite panics instead.
pub fn tools_or_skip(test: &str) -> Option<Tools> {
    match Tools::find() {
        Ok(tools) => Some(tools),
        Err(reason) if required() => {
            panic!("{test}: the lab cannot run: {reason} (OQSDNS_LAB=require is set)")
        }
        Err(reason) => {
            // Straight to stderr, past libtest's capture, so the skip shows in a normal run.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED, the lab cannot run: {reason}"
            );
            None
        }
    }
}

/// The program `name` (from Debian's `package`), or `None` after printing why `test` is skipped;
/// with `OQSDNS_LAB=require` its absence panics instead.
pub fn program_or_skip(test: &str, name: &str, package: &str) -> Option<PathBuf> {
    match which(name) {
        Some(path) => Some(path),
        None if required() => {
            panic!(
                "{test}: {name} is missing (Debian package {package}; OQSDNS_LAB=require is set)"
            )
        }
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED, {name} is missing (Debian package {package})"
            );
            None
        }
    }
}

fn required() -> bool {
    std::env::var("OQSDNS_LAB").is_ok_and(|v| v == "require")
}

/// `OQSDNS_LAB=skip`: the lab is not run even where it could.
fn skipped() -> bool {
    std::env::var("OQSDNS_LAB").is_ok_and(|v| v == "skip")
}

/// `target/<profile>/oqsdns`, next to the `deps` folder holding this test binary. Panics with a
/// clear message when it has not been built.
pub fn oqsdns_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("oqsdns");
    assert!(
        bin.is_file(),
        "the oqsdns binary is not at {}: build it first with `cargo build -p oqsdns` (same \
         profile as the tests; `cargo test --workspace` builds it when crates/oqsdns has an \
         integration test)",
        bin.display()
    );
    bin
}

/// Whether the effective user is root, from /proc/self/status (no unsafe `geteuid`).
fn is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
