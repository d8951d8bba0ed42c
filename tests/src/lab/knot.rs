//! The lab's authoritative servers: one knotd per server address, each with its own config,
//! rundir and storage, each zone carrying a `whoami` TXT that names the server that answered.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use super::netns::Netns;
use super::process::Daemon;
use super::topology::{Host, INTERNET4, INTERNET6};

/// How long a knotd may take to load its zones and send READY=1.
const KNOT_READY: Duration = Duration::from_secs(20);

/// The six NW-base domains of the guide's table (手順3, p.4).
pub const NW_BASE_DOMAINS: [&str; 6] = [
    "onshikaku.org",
    "lineauth.mnw",
    "base.oqs-pdl.org",
    "managedpki.ne.jp",
    "cybertrust.ne.jp",
    "secomtrust.net",
];

/// One authoritative server of the lab.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// Its name, which its `whoami` TXT records answer: `nw-base-east-primary`, `internet`, ...
    pub id: &'static str,
    /// Where it runs.
    pub host: Host,
    /// The addresses it listens on, port 53.
    pub addrs: &'static [IpAddr],
    /// The folder of `tests/lab/zones` its zone files come from.
    pub zone_dir: &'static str,
    /// The zones it serves.
    pub zones: &'static [&'static str],
}

const fn v6(s: [u16; 8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
    ))
}

/// NW-base DNS East, primary (優先): 2404:1a8:f583:d00::53:1.
pub const NW_BASE_EAST_PRIMARY: IpAddr = v6([0x2404, 0x1a8, 0xf583, 0xd00, 0, 0, 0x53, 1]);
/// NW-base DNS East, alternate (代替): 2404:1a8:f583:d00::53:2.
pub const NW_BASE_EAST_ALTERNATE: IpAddr = v6([0x2404, 0x1a8, 0xf583, 0xd00, 0, 0, 0x53, 2]);
/// NW-base DNS West, primary: 2001:a7ff:f014:d00::53:1.
pub const NW_BASE_WEST_PRIMARY: IpAddr = v6([0x2001, 0xa7ff, 0xf014, 0xd00, 0, 0, 0x53, 1]);
/// NW-base DNS West, alternate: 2001:a7ff:f014:d00::53:2.
pub const NW_BASE_WEST_ALTERNATE: IpAddr = v6([0x2001, 0xa7ff, 0xf014, 0xd00, 0, 0, 0x53, 2]);
/// NGN DNS East, primary: 2404:1a8:7f01:a::3.
pub const NGN_EAST_PRIMARY: IpAddr = v6([0x2404, 0x1a8, 0x7f01, 0xa, 0, 0, 0, 3]);
/// NGN DNS East, alternate: 2404:1a8:7f01:b::3.
pub const NGN_EAST_ALTERNATE: IpAddr = v6([0x2404, 0x1a8, 0x7f01, 0xb, 0, 0, 0, 3]);
/// NGN DNS West, primary: 2001:a7ff:5f01::a.
pub const NGN_WEST_PRIMARY: IpAddr = v6([0x2001, 0xa7ff, 0x5f01, 0, 0, 0, 0, 0xa]);
/// NGN DNS West, alternate: 2001:a7ff:5f01:1::a.
pub const NGN_WEST_ALTERNATE: IpAddr = v6([0x2001, 0xa7ff, 0x5f01, 1, 0, 0, 0, 0xa]);

const EAST_NGN: &[&str] = &["flets-east.jp"];
const WEST_NGN: &[&str] = &["flets-west.jp"];

/// Every server of the lab: both areas' NW-base and NGN pairs, and the internet resolver's two
/// addresses.
pub const SERVERS: [Server; 10] = [
    nw_base("nw-base-east-primary", &[NW_BASE_EAST_PRIMARY], "east"),
    nw_base("nw-base-east-alternate", &[NW_BASE_EAST_ALTERNATE], "east"),
    nw_base("nw-base-west-primary", &[NW_BASE_WEST_PRIMARY], "west"),
    nw_base("nw-base-west-alternate", &[NW_BASE_WEST_ALTERNATE], "west"),
    ngn("ngn-east-primary", &[NGN_EAST_PRIMARY], "east", EAST_NGN),
    ngn(
        "ngn-east-alternate",
        &[NGN_EAST_ALTERNATE],
        "east",
        EAST_NGN,
    ),
    ngn("ngn-west-primary", &[NGN_WEST_PRIMARY], "west", WEST_NGN),
    ngn(
        "ngn-west-alternate",
        &[NGN_WEST_ALTERNATE],
        "west",
        WEST_NGN,
    ),
    internet("internet", &[IpAddr::V6(INTERNET6)]),
    internet("internet-v4", &[IpAddr::V4(INTERNET4)]),
];

/// The internet side's zones, served on each of the resolver's addresses by its own knotd, so a
/// test can tell which of the default servers answered.
const INTERNET_ZONES: &[&str] = &["example.com", "notonshikaku.org", "onshikaku.org"];

const fn internet(id: &'static str, addrs: &'static [IpAddr]) -> Server {
    Server {
        id,
        host: Host::Internet,
        addrs,
        zone_dir: "internet",
        zones: INTERNET_ZONES,
    }
}

const fn nw_base(id: &'static str, addrs: &'static [IpAddr], zone_dir: &'static str) -> Server {
    Server {
        id,
        host: Host::Ngn,
        addrs,
        zone_dir,
        zones: &NW_BASE_DOMAINS,
    }
}

const fn ngn(
    id: &'static str,
    addrs: &'static [IpAddr],
    zone_dir: &'static str,
    zones: &'static [&'static str],
) -> Server {
    Server {
        id,
        host: Host::Ngn,
        addrs,
        zone_dir,
        zones,
    }
}

/// Writes `server`'s configuration and zones under `scratch/<id>` and starts knotd in `ns`.
pub fn start(
    knotd: &Path,
    ns: &Netns,
    server: &Server,
    data: &Path,
    scratch: &Path,
) -> Result<Daemon, String> {
    let dir = scratch.join(server.id);
    let zones_dir = dir.join("zones");
    std::fs::create_dir_all(dir.join("db")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&zones_dir).map_err(|e| e.to_string())?;
    let mut zone_list = String::new();
    for zone in server.zones {
        let file = format!("{zone}.zone");
        let source = data.join("zones").join(server.zone_dir).join(&file);
        let mut text = std::fs::read_to_string(&source)
            .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
        let _ = writeln!(text, "whoami IN TXT \"{}\"", server.id);
        // Below it, any name answers the same: a test asks a fresh one when the cache must not.
        let _ = writeln!(text, "*.whoami IN TXT \"{}\"", server.id);
        std::fs::write(zones_dir.join(&file), text).map_err(|e| e.to_string())?;
        let _ = writeln!(zone_list, "  - domain: {zone}\n    file: \"{file}\"");
    }
    let listen: Vec<String> = server.addrs.iter().map(|a| format!("\"{a}@53\"")).collect();
    let template_path = data.join("knot.conf.in");
    let template = std::fs::read_to_string(&template_path)
        .map_err(|e| format!("cannot read {}: {e}", template_path.display()))?;
    let config = template
        .replace("@ID@", server.id)
        .replace("@DIR@", &dir.display().to_string())
        .replace("@LISTEN@", &listen.join(", "))
        .replace("@ZONES@", &zone_list);
    let config_path = dir.join("knot.conf");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut cmd = ns.command(knotd);
    cmd.arg("-c").arg(&config_path);
    Daemon::start(server.id, cmd, scratch, KNOT_READY)
}
