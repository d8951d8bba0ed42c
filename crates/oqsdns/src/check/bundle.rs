//! `oqsdns check --bundle FILE`: one UTF-8 text file a clinic can send to its vendor, holding
//! what the vendor would otherwise ask for one by one: versions, the effective configuration,
//! the check's result as text and as JSON, the daemon's recent changes of state (from its
//! `status.oqsdns CH TXT` lines, so also without `[status]`; its `/health` and counters when
//! `[status]` is configured), and this host's addresses and resolvers.
//!
//! [`write`] creates the file anew, readable by its owner only, and never through a symlink.
//!
//! Nothing secret: the configuration has no passwords or keys. Left out on purpose: logs, the
//! cache's contents, the environment, and the configuration file's comments; the bundle's head
//! says so in Japanese and English.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oqsdns_config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{render, Report};
use crate::status::view::Time;

/// How long the daemon's status endpoint may take to answer one request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from the status endpoint.
const HTTP_MAX: usize = 4 << 20;

/// The line that opens each section: `==== NAME ====`. Tools split the bundle on it.
pub fn heading(name: &str) -> String {
    format!("==== {name} ====")
}

/// The sections of a bundle, in order (their headings' names).
pub const SECTIONS: [&str; 9] = [
    "versions",
    "configuration",
    "check (text)",
    "check (json)",
    "state changes (status.oqsdns)",
    "status (/health)",
    "metrics (/metrics)",
    "addresses",
    "resolv.conf",
];

/// The bundle of `config` (the file as loaded) and the check's `report`, asking the daemon's
/// status endpoint when `[status]` is configured.
pub async fn collect(config: &Config, report: &Report, config_path: Option<&Path>) -> String {
    let mut out = String::new();
    let created = Time::of(SystemTime::now());
    let _ = writeln!(out, "oqsdns サポート用ファイル / support bundle");
    let _ = writeln!(out, "作成 / created: {}", created.jst);
    let _ = writeln!(
        out,
        "判定 / verdict: {}",
        report
            .verdicts
            .iter()
            .map(|v| v.id)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "含むもの: バージョン、有効な設定、oqsdns check の結果（テキストと JSON）、oqsdns の最近の\n\
         状態変化、状態ページの /health とカウンター（[status] があるとき）、このホストのアドレスと\n\
         DNS サーバー。\n\
         Holds: versions, the effective configuration, the check's result (text and JSON), the\n\
         daemon's recent changes of state, the status endpoint's /health and counters (with\n\
         [status]), this host's addresses and DNS servers.\n\
         含まないもの: ログ、キャッシュの内容、環境変数、設定ファイルのコメント。設定にパスワード等の\n\
         秘密はありません。server.allow（状態ページの許可リストを兼ねる）と、/health の端末の一覧\n\
         （アドレスと最後の問合せの日時）はそのまま含みます。必要ならログ（journalctl -u oqsdns /\n\
         logread -e oqsdns）を別に送ってください。\n\
         Left out: logs, the cache's contents, the environment, the configuration file's comments.\n\
         The configuration holds no passwords or keys; server.allow (also the status page's allow\n\
         list) and /health's list of terminals (addresses, last query times) are kept. Send the\n\
         log separately if asked."
    );

    section(&mut out, SECTIONS[0]);
    let _ = writeln!(
        out,
        "oqsdns {} ({}-{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    let _ = writeln!(out, "os: {}", os_release());
    let _ = writeln!(
        out,
        "kernel: {}",
        read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
    );

    section(&mut out, SECTIONS[1]);
    if let Some(path) = config_path {
        let _ = writeln!(out, "# file: {}", path.display());
    } else {
        let _ = writeln!(out, "# no file: the built-in defaults");
    }
    out.push_str(&config.with_area(report.area).to_effective_toml());

    section(&mut out, SECTIONS[2]);
    out.push_str(&render::text(report));
    section(&mut out, SECTIONS[3]);
    out.push_str(&render::json(report));

    section(&mut out, SECTIONS[4]);
    out.push_str(&state_changes(report.status.as_deref()));

    let status = config.status.as_ref().map(|s| reachable(s.listen));
    for (name, path) in [(SECTIONS[5], "/health"), (SECTIONS[6], "/metrics")] {
        section(&mut out, name);
        match status {
            None => {
                let _ = writeln!(
                    out,
                    "# [status] listen が設定されていません。最近の状態は上の check の\n\
                     # 「oqsdns の状態」（status.oqsdns）と state changes を参照してください。\n\
                     # [status] listen is not configured: the daemon's own view is in the\n\
                     # check's \"status.oqsdns\" lines and the state changes above."
                );
            }
            Some(addr) => match get(addr, path).await {
                Ok((code, body)) => {
                    let _ = writeln!(out, "# GET http://{addr}{path}: {code}");
                    if code == 403 {
                        let _ = writeln!(
                            out,
                            "# 403: server.allow にこのホストのアドレス（{ip}）がありません。\n\
                             # 403: server.allow does not include this host's address ({ip}).",
                            ip = addr.ip()
                        );
                    }
                    out.push_str(&body);
                    if !body.ends_with('\n') {
                        out.push('\n');
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "# GET http://{addr}{path} failed: {e}");
                }
            },
        }
    }

    section(&mut out, SECTIONS[7]);
    out.push_str(&addresses());

    section(&mut out, SECTIONS[8]);
    let resolv = std::fs::read_to_string(crate::RESOLV_CONF).unwrap_or_default();
    let _ = writeln!(out, "# {} (nameserver lines)", crate::RESOLV_CONF);
    for line in resolv
        .lines()
        .filter(|l| l.trim_start().starts_with("nameserver"))
    {
        let _ = writeln!(out, "{}", line.trim());
    }
    out
}

/// Writes the bundle to `path`: a new file (an existing file or a symlink at `path` is an error,
/// so nothing planted there is followed or truncated), mode 0600.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The daemon's recent changes of state from its `change=` status lines, newest first, with
/// the time in JST: `TIME ROUTE SERVER TRANSPORT STATE REASON`.
fn state_changes(status: Option<&[String]>) -> String {
    let Some(lines) = status else {
        return "# oqsdns が status.oqsdns に応答しません / no answer to status.oqsdns\n".into();
    };
    let mut out = String::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("change=") else {
            continue;
        };
        let (secs, what) = rest.split_once(' ').unwrap_or((rest, ""));
        let time = secs.parse::<u64>().map_or_else(
            |_| secs.to_string(),
            |s| Time::of(UNIX_EPOCH + Duration::from_secs(s)).jst,
        );
        let _ = writeln!(out, "{time} {what}");
    }
    if out.is_empty() {
        out.push_str("# 起動後の状態変化はありません / no change of state since the start\n");
    }
    out
}

fn section(out: &mut String, name: &str) {
    let _ = writeln!(out, "\n{}", heading(name));
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The distribution's name: `PRETTY_NAME` of os-release, or OpenWrt's `DISTRIB_DESCRIPTION`.
fn os_release() -> String {
    let field = |path: &str, key: &str| {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|l| {
            let value = l.strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim_matches(|c| c == '"' || c == '\'').to_string())
        })
    };
    field("/etc/os-release", "PRETTY_NAME")
        .or_else(|| field("/etc/openwrt_release", "DISTRIB_DESCRIPTION"))
        .unwrap_or_else(|| "unknown".into())
}

/// The status endpoint's address as this host reaches it: a wildcard becomes loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// Every address on this host's interfaces, one line each: `IFACE ADDRESS/PREFIXLEN`.
fn addresses() -> String {
    let mut out = String::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return "# cannot read the interfaces\n".into();
    };
    for ifa in addrs {
        let (Some(addr), mask) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let (ip, bits): (IpAddr, Option<u32>) = if let Some(a) = addr.as_sockaddr_in() {
            let bits = mask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in())
                .map(|m| m.ip().to_bits().count_ones());
            (a.ip().into(), bits)
        } else if let Some(a) = addr.as_sockaddr_in6() {
            let bits = mask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in6())
                .map(|m| m.ip().to_bits().count_ones());
            (a.ip().into(), bits)
        } else {
            continue;
        };
        let bits = bits.map_or_else(String::new, |b| format!("/{b}"));
        let _ = writeln!(out, "{} {ip}{bits}", ifa.interface_name);
    }
    out
}

/// One GET of `path` from the status endpoint at `addr`: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        (&mut stream)
            .take(HTTP_MAX as u64)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(bytes)
    };
    let bytes = tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {HTTP_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "not an HTTP answer".to_string())?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_string())?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_file_is_new_private_and_never_through_a_symlink() {
        let dir = std::env::temp_dir().join(format!("oqsdns-bundle-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("bundle.txt");
        write(&file, "one\n").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\n");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        // An existing file is kept as it was.
        assert!(write(&file, "two\n").is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\n");
        // A symlink planted at the path is not followed: its target is not touched or created.
        let target = dir.join("target");
        std::fs::write(&target, "keep\n").unwrap();
        let link = dir.join("link.txt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write(&link, "evil\n").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
        let dangling = dir.join("dangling.txt");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        assert!(write(&dangling, "evil\n").is_err());
        assert!(!dir.join("nowhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_changes_come_from_the_status_lines_in_jst() {
        let lines: Vec<String> = [
            "area=east",
            "server=nw-base [2404:1a8:f583:d00::53:1]:53 udp=up tcp=up use=udp",
            "change=1709251199 nw-base [2404:1a8:f583:d00::53:1]:53 udp down timed out",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            state_changes(Some(&lines)),
            "2024-03-01T08:59:59+09:00 nw-base [2404:1a8:f583:d00::53:1]:53 udp down timed out\n"
        );
        assert!(state_changes(Some(&lines[..2])).contains("no change of state"));
        assert!(state_changes(None).contains("no answer"));
    }
}
