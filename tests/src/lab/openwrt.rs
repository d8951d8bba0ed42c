//! OpenWrt's dnsmasq in the lab: the `dnsmasq` section of an /etc/config/dhcp turned into the
//! options OpenWrt's init script (`/etc/init.d/dnsmasq`, its `append_*` calls) writes for them,
//! then a real dnsmasq run with them on the oqsdns host, in front of oqsdns.

use std::net::IpAddr;
use std::path::Path;

use super::beside::Program;
use super::netns::Netns;

/// The DHCP host of the lab's addn-hosts file (as OpenWrt keeps static leases under /tmp/hosts):
/// the terminal.
pub const LAN_HOST: &str = "terminal";
/// The router's own name, as OpenWrt's init script adds it.
pub const ROUTER_NAME: &str = "OpenWrt";

/// The dnsmasq options OpenWrt's init script writes for the first `dnsmasq` section of `dhcp`,
/// with `hosts` as the addn-hosts folder (OpenWrt: /tmp/hosts). The options that need the DHCP
/// server or files of the router (leases, ethers, resolvfile without noresolv) are left out;
/// an option this function does not know is an error, so that a fixture cannot slip past it.
pub fn dnsmasq_options(dhcp: &str, hosts: &Path) -> Result<Vec<String>, String> {
    let sections = oqsdns::uci::parse(dhcp).map_err(|e| e.to_string())?;
    let section = sections
        .iter()
        .find(|s| s.kind == "dnsmasq")
        .ok_or("no dnsmasq section")?;
    let flag = |value: &str, option: &str| (value == "1").then(|| option.to_string());
    let mut options = Vec::new();
    let mut noresolv = false;
    for st in &section.statements {
        let v = st.value.as_str();
        let option = match st.key.as_str() {
            "domainneeded" => flag(v, "domain-needed"),
            "boguspriv" => flag(v, "bogus-priv"),
            "filterwin2k" => flag(v, "filterwin2k"),
            "localise_queries" => flag(v, "localise-queries"),
            "rebind_protection" => flag(v, "stop-dns-rebind"),
            "rebind_localhost" => flag(v, "rebind-localhost-ok"),
            "expandhosts" => flag(v, "expand-hosts"),
            "nonegcache" => flag(v, "no-negcache"),
            "nonwildcard" => flag(v, "bind-dynamic"),
            "localservice" => flag(v, "local-service"),
            "noresolv" => {
                noresolv = v == "1";
                flag(v, "no-resolv")
            }
            "filter_aaaa" => flag(v, "filter-AAAA"),
            "filter_a" => flag(v, "filter-A"),
            "local" => Some(format!("server={v}")),
            "domain" => Some(format!("domain={v}")),
            "cachesize" => Some(format!("cache-size={v}")),
            "ednspacket_max" => Some(format!("edns-packet-max={v}")),
            "server" => Some(format!("server={v}")),
            "rebind_domain" => Some(format!("rebind-domain-ok=/{}/", v.trim_matches('/'))),
            // DHCP and the router's files: not run in the lab.
            "authoritative" | "readethers" | "leasefile" | "resolvfile" => None,
            other => return Err(format!("dnsmasq option {other:?} unknown to the lab")),
        };
        options.extend(option);
    }
    if !noresolv {
        return Err("the lab runs dnsmasq with noresolv only (no resolv.conf.auto here)".into());
    }
    options.push(format!("addn-hosts={}", hosts.display()));
    Ok(options)
}

/// Starts a real dnsmasq in `ns` with the options of `dhcp` (see [`dnsmasq_options`]) and an
/// addn-hosts file naming the router and [`LAN_HOST`]; waits until it answers the router's name
/// on `router`.
pub fn start_dnsmasq(
    ns: &Netns,
    dnsmasq: &Path,
    dig_path: &Path,
    dir: &Path,
    dhcp: &str,
    router: &[IpAddr],
    lan_host: &[IpAddr],
) -> Result<Program, String> {
    let hosts = dir.join("hosts");
    std::fs::create_dir_all(&hosts).map_err(|e| e.to_string())?;
    let mut list = String::new();
    for addr in router {
        list += &format!("{addr} {ROUTER_NAME}\n");
    }
    for addr in lan_host {
        list += &format!("{addr} {LAN_HOST}\n");
    }
    std::fs::write(hosts.join("dhcp.cfg01411c"), list).map_err(|e| e.to_string())?;
    let mut conf =
        String::from("# written as OpenWrt's /etc/init.d/dnsmasq would from /etc/config/dhcp\n");
    for option in dnsmasq_options(dhcp, &hosts)? {
        conf += &option;
        conf.push('\n');
    }
    let conf_path = dir.join("dnsmasq.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let mut cmd = ns.command(dnsmasq);
    cmd.arg(format!("--conf-file={}", conf_path.display()))
        .args([
            "--keep-in-foreground",
            "--no-hosts",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
            "--log-queries",
        ]);
    let mut program = Program::start("dnsmasq", cmd, dir)?;
    program.wait_answering(ns, dig_path, router[0], &format!("{ROUTER_NAME}.lan"))?;
    Ok(program)
}
