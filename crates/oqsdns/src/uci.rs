//! OpenWrt's UCI configuration (`/etc/config/oqsdns`) read into a [`Config`].
//!
//! The procd init script runs `oqsdns config from-uci /etc/config/oqsdns` and starts the daemon on
//! the TOML it prints, so the translation lives here, tested, rather than in shell. The syntax is
//! UCI's: `config TYPE ['NAME']`, `option KEY 'VALUE'`, `list KEY 'VALUE'`, values quoted with
//! single or double quotes or not at all, `#` comments. The sections:
//!
//! ```text
//! config oqsdns 'main'            # at most one
//!     option enabled '1'          # read by the init script only
//!     option dnsmasq '1'          # init script: put oqsdns behind dnsmasq (`oqsdns openwrt`)
//!     option area 'east'          # east | west | auto | none
//!     list listen 'auto:5353'     # server.listen
//!     list interface 'lan'        # server.interfaces; a network of /etc/config/network becomes
//!                                 # its device (br-lan)
//!     list forwarder '192.168.1.1'  # server.forwarders; forwarder_rate, forwarder_burst,
//!                                 # rate_loopback as in [server]
//!     list allow 'local'          # server.allow
//!     list default 'system'       # forward.default
//!     option timeout '1s'         # forward.timeout
//!     option resolvfile '/tmp/resolv.conf.d/resolv.conf.auto'  # what 'system' stands for
//!     option max_inflight '1024'  # and tcp_connections, tcp_idle_timeout, udp_payload, rate,
//!                                 # burst, tcp_connections_per_client, tcp_frame_timeout
//!     list probe '. NS'           # forward.names
//!     option rebind_protection '1'  # forward.rebind_protection
//!     option health_interval '30s'  # health.interval; health_timeout: health.timeout
//!     option cache_entries '10000'  # cache.entries; serve_stale, serve_stale_default
//!
//! config route 'clinic'           # a [[route]]; the section name is the route's name
//!     option enabled '1'          # '0' leaves the route out
//!     list domain 'clinic.example'
//!     list server '192.168.1.10'
//! ```
//!
//! Unknown sections and options are errors, as unknown keys are in the TOML file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oqsdns_config::{Config, ConfigError, DefaultServer, RouteConfig, ServerAddr};

/// Why a UCI file was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UciError {
    /// A syntax error or a bad value, on a line of the file (counted from 1).
    #[error("line {line}: {message}")]
    Line {
        /// The line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The values parse but do not make a working configuration.
    #[error("{0}")]
    Config(#[from] ConfigError),
}

fn at(line: usize, message: impl Into<String>) -> UciError {
    UciError::Line {
        line,
        message: message.into(),
    }
}

/// A `config` section as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type: `oqsdns`, `route`.
    pub kind: String,
    /// The section name, when it has one.
    pub name: Option<String>,
    /// The line of its `config` statement.
    pub line: usize,
    /// Its `option` and `list` statements in file order.
    pub statements: Vec<Statement>,
}

/// One `option KEY 'VALUE'` or `list KEY 'VALUE'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The key.
    pub key: String,
    /// The value, unquoted.
    pub value: String,
    /// Whether it was written with `list`.
    pub list: bool,
    /// Its line.
    pub line: usize,
}

/// Parses UCI text into its sections.
pub fn parse(text: &str) -> Result<Vec<Section>, UciError> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let words = tokens(raw).map_err(|m| at(line, m))?;
        let Some((keyword, args)) = words.split_first() else {
            continue;
        };
        match keyword.as_str() {
            "package" => {}
            "config" => {
                let (kind, name) = match args {
                    [kind] => (kind, None),
                    [kind, name] => (kind, Some(name.clone())),
                    _ => return Err(at(line, "expected: config TYPE ['NAME']")),
                };
                for word in std::iter::once(kind).chain(name.as_ref()) {
                    if !is_identifier(word) {
                        return Err(at(line, format!("{word:?} is not a valid section type or name; use letters, digits and '_'")));
                    }
                }
                sections.push(Section {
                    kind: kind.clone(),
                    name,
                    line,
                    statements: Vec::new(),
                });
            }
            "option" | "list" => {
                let is_option = keyword == "option";
                let [key, value] = args else {
                    return Err(at(line, format!("expected: {keyword} KEY 'VALUE'")));
                };
                let Some(section) = sections.last_mut() else {
                    return Err(at(line, format!("{keyword} before any config section")));
                };
                if !is_identifier(key) {
                    return Err(at(line, format!("{key:?} is not a valid option name")));
                }
                match section.statements.iter().find(|s| &s.key == key) {
                    Some(earlier) if earlier.list == is_option => {
                        return Err(at(
                            line,
                            format!(
                                "{key} is used both as option and as list (line {})",
                                earlier.line
                            ),
                        ));
                    }
                    _ => section.statements.push(Statement {
                        key: key.clone(),
                        value: value.clone(),
                        list: !is_option,
                        line,
                    }),
                }
            }
            other => {
                return Err(at(
                    line,
                    format!("unknown statement {other:?}; expected config, option or list"),
                ))
            }
        }
    }
    Ok(sections)
}

fn is_identifier(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Splits one line into words: quotes group, `\` escapes outside single quotes, `#` starts a
/// comment where a word could start.
fn tokens(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '#' if word.is_none() => break,
            '\'' => {
                let text = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => text.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                let text = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => text.push(c),
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => text.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("'\\' at the end of the line".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// Parses UCI text and translates it into a validated [`Config`]. `read_file` reads the
/// `resolvfile` when one is set.
pub fn from_uci(
    text: &str,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Config, UciError> {
    let sections = parse(text)?;
    let mut config = Config::default();
    let mut resolvfile = None;
    let mut main_seen = None;
    for section in &sections {
        match section.kind.as_str() {
            "oqsdns" => {
                if let Some(first) = main_seen {
                    return Err(at(
                        section.line,
                        format!("a second oqsdns section; the first is on line {first}"),
                    ));
                }
                main_seen = Some(section.line);
                resolvfile = apply_main(&mut config, section)?;
            }
            "route" => {
                if let Some(route) = route(section)? {
                    config.routes.push(route);
                }
            }
            other => {
                return Err(at(
                    section.line,
                    format!("unknown section type {other:?}; expected oqsdns or route"),
                ))
            }
        }
    }
    if let Some(path) = resolvfile {
        expand_system(&mut config.forward.default, &path, read_file);
    }
    if !config.server.interfaces.is_empty() {
        if let Ok(network) = read_file(Path::new(NETWORK)) {
            config.server.interfaces = devices_of(&config.server.interfaces, &network);
        }
    }
    config.validate()?;
    Ok(config)
}

/// OpenWrt's network configuration: its `interface` sections name the devices of `lan`, `wan`...
pub const NETWORK: &str = "/etc/config/network";

/// The kernel interfaces for `names`: an OpenWrt network (`lan`) becomes its device (`option
/// device 'br-lan'`; before OpenWrt 21.02 `option type 'bridge'` made `br-lan`, else `option
/// ifname`); any other name (`br-lan`, `eth0`, `lo`) is kept as written.
fn devices_of(names: &[String], network: &str) -> Vec<String> {
    let Ok(sections) = parse(network) else {
        return names.to_vec();
    };
    let device = |name: &String| {
        let mut name = name.clone();
        // An alias (`option device '@wan'`) is its network's device; one level, as netifd.
        for _ in 0..2 {
            let section = sections
                .iter()
                .find(|s| s.kind == "interface" && s.name.as_ref() == Some(&name))?;
            let get = |key: &str| {
                let st = section.statements.iter().find(|st| st.key == key)?;
                Some(st.value.clone())
            };
            match get("device") {
                Some(alias) if alias.starts_with('@') => name = alias[1..].to_string(),
                Some(device) => return Some(device),
                None if get("type").as_deref() == Some("bridge") => {
                    return Some(format!("br-{name}"))
                }
                None => {
                    return get("ifname")
                        .and_then(|i| i.split_whitespace().next().map(str::to_string))
                }
            }
        }
        None
    };
    let mut devices: Vec<String> = Vec::new();
    for name in names {
        let dev = device(name).unwrap_or_else(|| name.clone());
        if !devices.contains(&dev) {
            devices.push(dev);
        }
    }
    devices
}

/// Replaces `"system"` with the nameservers of `path`, OpenWrt's list of the upstream servers the
/// line gave (`/etc/resolv.conf` there names the router itself). Left as it is when the file
/// cannot be read or lists none: the daemon then falls back to `/etc/resolv.conf`.
fn expand_system(
    default: &mut Vec<DefaultServer>,
    path: &Path,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) {
    let Ok(text) = read_file(path) else { return };
    let servers = oqsdns_core::system::parse_resolv_conf(&text);
    if servers.is_empty() {
        return;
    }
    let mut expanded: Vec<DefaultServer> = DefaultServer::expand(default, &servers)
        .into_iter()
        .map(|addr| DefaultServer::Addr(ServerAddr(addr)))
        .collect();
    expanded.dedup();
    *default = expanded;
}

/// Applies the main section; returns its `resolvfile`.
fn apply_main(config: &mut Config, section: &Section) -> Result<Option<PathBuf>, UciError> {
    let mut resolvfile = None;
    let mut status_clients = None;
    let mut seen = HashSet::new();
    for st in &section.statements {
        // A list's first statement replaces the default; the following ones add to it.
        let fresh = seen.insert(st.key.as_str());
        match st.key.as_str() {
            // Read by the init script only.
            "enabled" | "dnsmasq" => {
                enabled(st)?;
            }
            "area" => config.area = single(st)?,
            "listen" => extend(&mut config.server.listen, st, fresh)?,
            "interface" => extend(&mut config.server.interfaces, st, fresh)?,
            "forwarder" => extend(&mut config.server.forwarders, st, fresh)?,
            "forwarder_rate" => config.server.forwarder_rate = single(st)?,
            "forwarder_burst" => config.server.forwarder_burst = single(st)?,
            "rate_loopback" => config.server.rate_loopback = enabled(st)?,
            "allow" => extend(&mut config.server.allow, st, fresh)?,
            "max_inflight" => config.server.max_inflight = single(st)?,
            "tcp_connections" => config.server.tcp_connections = single(st)?,
            "tcp_idle_timeout" => config.server.tcp_idle_timeout = single(st)?,
            "udp_payload" => config.server.udp_payload = single(st)?,
            "rate" => config.server.rate = single(st)?,
            "burst" => config.server.burst = single(st)?,
            "tcp_connections_per_client" => config.server.tcp_connections_per_client = single(st)?,
            "tcp_frame_timeout" => config.server.tcp_frame_timeout = single(st)?,
            "default" => extend(&mut config.forward.default, st, fresh)?,
            "timeout" => config.forward.timeout = single(st)?,
            "resolvfile" => resolvfile = Some(single::<PathBuf>(st)?),
            "probe" => extend_whole(&mut config.forward.names, st, fresh)?,
            "rebind_protection" => config.forward.rebind_protection = enabled(st)?,
            "health_interval" => config.health.interval = single(st)?,
            "health_timeout" => config.health.timeout = single(st)?,
            "cache_entries" => config.cache.entries = single(st)?,
            "serve_stale" => config.cache.serve_stale = single(st)?,
            "serve_stale_default" => config.cache.serve_stale_default = single(st)?,
            "status_listen" => {
                config.status = Some(oqsdns_config::StatusConfig::on(single(st)?));
            }
            "status_clients" => status_clients = Some(enabled(st)?),
            other => {
                return Err(at(st.line, format!("unknown option {other:?} in the oqsdns section; expected enabled, dnsmasq, area, listen, interface, allow, forwarder, forwarder_rate, forwarder_burst, rate_loopback, default, timeout, probe, rebind_protection, max_inflight, tcp_connections, tcp_idle_timeout, udp_payload, rate, burst, tcp_connections_per_client, tcp_frame_timeout, health_interval, health_timeout, cache_entries, serve_stale, serve_stale_default, status_listen, status_clients or resolvfile")));
            }
        }
    }
    // In any order with status_listen; without it there is no page to list the clients on.
    if let (Some(status), Some(clients)) = (config.status.as_mut(), status_clients) {
        status.clients = clients;
    }
    Ok(resolvfile)
}

fn route(section: &Section) -> Result<Option<RouteConfig>, UciError> {
    let mut route = RouteConfig {
        name: section.name.clone(),
        domains: Vec::new(),
        servers: Vec::new(),
        names: Vec::new(),
    };
    for st in &section.statements {
        match st.key.as_str() {
            "enabled" => {
                if !enabled(st)? {
                    return Ok(None);
                }
            }
            "name" => route.name = Some(single(st)?),
            "domain" => extend(&mut route.domains, st, false)?,
            "server" => extend(&mut route.servers, st, false)?,
            "probe" => extend_whole(&mut route.names, st, false)?,
            other => {
                return Err(at(st.line, format!("unknown option {other:?} in a route section; expected enabled, name, domain, server or probe")));
            }
        }
    }
    for (key, empty) in [
        ("domain", route.domains.is_empty()),
        ("server", route.servers.is_empty()),
    ] {
        if empty {
            return Err(at(
                section.line,
                format!("this route has no {key}; add: list {key} '...'"),
            ));
        }
    }
    Ok(Some(route))
}

/// UCI's booleans.
fn enabled(st: &Statement) -> Result<bool, UciError> {
    match st.value.as_str() {
        "1" | "yes" | "on" | "true" | "enabled" => Ok(true),
        "0" | "no" | "off" | "false" | "disabled" => Ok(false),
        _ => Err(at(st.line, "enabled must be '1' or '0'")),
    }
}

/// The value of a key that takes one.
fn single<T>(st: &Statement) -> Result<T, UciError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    if st.list {
        return Err(at(
            st.line,
            format!("{} takes one value; use option, not list", st.key),
        ));
    }
    st.value
        .parse()
        .map_err(|e| at(st.line, format!("{}: {e}", st.key)))
}

/// Adds the value of a `list` statement, or the words of an `option` (which replaces what was
/// there, as does the first statement of a key when `fresh`).
/// Like [`extend`], for values that hold spaces themselves (a probe: `www.example.com A`): each
/// `list` line is one item.
fn extend_whole<T>(items: &mut Vec<T>, st: &Statement, fresh: bool) -> Result<(), UciError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    if fresh || !st.list {
        items.clear();
    }
    let item = st
        .value
        .parse()
        .map_err(|e| at(st.line, format!("{}: {e}", st.key)))?;
    items.push(item);
    Ok(())
}

fn extend<T>(items: &mut Vec<T>, st: &Statement, fresh: bool) -> Result<(), UciError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    if fresh || !st.list {
        items.clear();
    }
    let before = items.len();
    for word in st.value.split_whitespace() {
        let item = word
            .parse()
            .map_err(|e| at(st.line, format!("{}: {e}", st.key)))?;
        items.push(item);
    }
    if items.len() == before {
        return Err(at(st.line, format!("{} is empty", st.key)));
    }
    Ok(())
}

/// The TOML `oqsdns run --config` reads, with a header naming where it came from.
pub fn to_toml(config: &Config, source: &str) -> String {
    format!(
        "# generated by `oqsdns config from-uci {source}`: edit that file, not this one\n{}",
        toml::to_string(config).expect("configuration serializes")
    )
}

#[cfg(test)]
mod tests;
