//! `oqsdns openwrt setup|restore`: puts oqsdns behind OpenWrt's dnsmasq and undoes it.
//!
//! dnsmasq keeps port 53 and the LAN's own names (`*.lan`, DHCP hostnames, the router's name)
//! and forwards every other question to oqsdns on a loopback side port, as the https-dns-proxy
//! and stubby packages do: in the first `dnsmasq` section of /etc/config/dhcp, `noresolv` and
//! `server '127.0.0.1#PORT'`, plus a `rebind_domain` for each domain of the guide's table, whose
//! private answers (the NW-base's 10.x) rebind protection would drop. When odhcpd relays RA and
//! DHCPv6 on the LAN (a FLET'S line without prefix delegation), the line's RDNSS would reach the
//! terminals and bypass the router: the LAN section then announces the router (`dns_service`,
//! and `dns` with the addresses given).
//!
//! The file is edited as text, line by line, so that every other byte stays as it was; what was
//! changed is kept in a state file, and `restore` puts back exactly that: a value set is returned
//! to the line it replaced, a line added is removed. Values changed by hand since are left alone.

use std::fmt::Write as _;
use std::path::Path;

use oqsdns_config::{preset_routes, Area, Config, Listen};

use crate::uci::{self, Section};

/// The section of /etc/config/dhcp that holds dnsmasq's options.
const DNSMASQ: &str = "@dnsmasq[0]";
/// The LAN's section of /etc/config/dhcp (odhcpd's and dnsmasq's DHCP options).
const LAN: &str = "lan";

/// What `setup` needs to know.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The loopback port oqsdns listens on, which dnsmasq forwards to.
    pub port: u16,
    /// The domains whose private answers dnsmasq must let through.
    pub rebind_domains: Vec<String>,
    /// The router's addresses for the LAN's terminals, announced when odhcpd relays.
    pub announce: Vec<std::net::IpAddr>,
}

impl Setup {
    /// The setup for the oqsdns configuration `config`: its loopback port, and the domains of
    /// both areas' tables and of its own routes.
    pub fn for_config(config: &Config) -> Result<Self, String> {
        let port = config
            .server
            .listen
            .iter()
            .find_map(|l| match l {
                Listen::Auto(port) => Some(*port),
                Listen::Addr(a) if a.0.ip().is_loopback() || a.0.ip().is_unspecified() => {
                    Some(a.0.port())
                }
                Listen::Addr(_) => None,
            })
            .ok_or("oqsdns listens on no loopback address: dnsmasq could not forward to it")?;
        if port == 53 {
            return Err(
                "oqsdns listens on port 53 itself: dnsmasq is left as it is (give oqsdns a side port such as 'auto:5353')"
                    .into(),
            );
        }
        let mut domains: Vec<String> = Vec::new();
        let presets = Area::CONCRETE.iter().flat_map(|&a| preset_routes(a));
        let own = config.routes.iter().flat_map(|r| r.domains.clone());
        for domain in presets.flat_map(|r| r.domains).chain(own) {
            let name = domain.to_string().trim_end_matches('.').to_string();
            if !domains.contains(&name) {
                domains.push(name);
            }
        }
        Ok(Self {
            port,
            rebind_domains: domains,
            announce: Vec::new(),
        })
    }
}

/// One change made to the file, as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// `option KEY` set to `value` in `section`; `previous` is the line it replaced, if any.
    Option {
        section: String,
        key: String,
        value: String,
        previous: Option<String>,
    },
    /// `list KEY 'value'` added to `section`.
    Added {
        section: String,
        key: String,
        value: String,
    },
}

/// The result of `setup`: the new text of /etc/config/dhcp and the state to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// The new file.
    pub dhcp: String,
    /// The state file's text (what `restore` needs).
    pub state: String,
}

/// Applies `setup` to the text of /etc/config/dhcp, after undoing what `state` (the state file of
/// an earlier setup, if any) records. Running it twice gives the same file.
pub fn setup(dhcp: &str, state: Option<&str>, setup: &Setup) -> Result<Edited, String> {
    let base = match state {
        Some(state) => restore(dhcp, state)?,
        None => dhcp.to_string(),
    };
    let mut file = File::parse(&base)?;
    let mut changes = Vec::new();
    file.set_option(DNSMASQ, "noresolv", "1", &mut changes)?;
    file.add_list(
        DNSMASQ,
        "server",
        &format!("127.0.0.1#{}", setup.port),
        &mut changes,
    )?;
    for domain in &setup.rebind_domains {
        file.add_list(DNSMASQ, "rebind_domain", domain, &mut changes)?;
    }
    if file.relays(LAN) {
        file.set_option(LAN, "dns_service", "1", &mut changes)?;
        for addr in &setup.announce {
            file.add_list(LAN, "dns", &addr.to_string(), &mut changes)?;
        }
    }
    Ok(Edited {
        dhcp: file.text(),
        state: write_state(&changes),
    })
}

/// Undoes the changes `state` records on the text of /etc/config/dhcp.
pub fn restore(dhcp: &str, state: &str) -> Result<String, String> {
    let changes = read_state(state)?;
    let mut file = File::parse(dhcp)?;
    for change in changes.iter().rev() {
        file.undo(change)?;
    }
    Ok(file.text())
}

/// The file as lines (each with its line end), and its sections.
struct File {
    lines: Vec<String>,
    sections: Vec<Section>,
}

impl File {
    fn parse(text: &str) -> Result<Self, String> {
        let sections = uci::parse(text).map_err(|e| format!("/etc/config/dhcp: {e}"))?;
        let lines = text.split_inclusive('\n').map(str::to_string).collect();
        Ok(Self { lines, sections })
    }

    fn text(&self) -> String {
        self.lines.concat()
    }

    /// Parses again after an edit, so line numbers stay true.
    fn reparse(&mut self) -> Result<(), String> {
        *self = Self::parse(&self.text())?;
        Ok(())
    }

    /// The section `@TYPE[n]` or the section named `name`.
    fn section(&self, reference: &str) -> Result<&Section, String> {
        let found = match reference
            .strip_prefix('@')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|r| r.split_once('['))
        {
            Some((kind, n)) => {
                let n: usize = n.parse().map_err(|_| format!("bad section {reference}"))?;
                self.sections.iter().filter(|s| s.kind == kind).nth(n)
            }
            None => self
                .sections
                .iter()
                .find(|s| s.name.as_deref() == Some(reference)),
        };
        found.ok_or_else(|| format!("/etc/config/dhcp has no section {reference}"))
    }

    /// Whether the section relays RA or DHCPv6 (odhcpd's relay mode).
    fn relays(&self, reference: &str) -> bool {
        self.section(reference).is_ok_and(|s| {
            s.statements
                .iter()
                .any(|st| matches!(st.key.as_str(), "ra" | "dhcpv6") && st.value == "relay")
        })
    }

    /// Where a new statement of `section` goes (after its last one) and its indentation.
    fn insertion(&self, section: &Section) -> (usize, String) {
        let last = section.statements.iter().map(|s| s.line).max();
        let indent = section.statements.first().map_or("\t".to_string(), |st| {
            let line = &self.lines[st.line - 1];
            line[..line.len() - line.trim_start().len()].to_string()
        });
        (last.unwrap_or(section.line), indent)
    }

    fn insert(&mut self, after_line: usize, text: String) {
        // A last line without its line end gets one first.
        if after_line == self.lines.len() {
            if let Some(last) = self.lines.last_mut() {
                if !last.ends_with('\n') {
                    last.push('\n');
                }
            }
        }
        self.lines.insert(after_line, text);
    }

    fn set_option(
        &mut self,
        reference: &str,
        key: &str,
        value: &str,
        changes: &mut Vec<Change>,
    ) -> Result<(), String> {
        let section = self.section(reference)?.clone();
        let existing = section.statements.iter().find(|s| s.key == key && !s.list);
        if existing.is_some_and(|s| s.value == value) {
            return Ok(());
        }
        let (at, indent) = self.insertion(&section);
        let new = format!("{indent}option {key} '{value}'\n");
        let previous = match existing {
            Some(st) => Some(std::mem::replace(&mut self.lines[st.line - 1], new)),
            None => {
                self.insert(at, new);
                None
            }
        };
        changes.push(Change::Option {
            section: reference.into(),
            key: key.into(),
            value: value.into(),
            previous,
        });
        self.reparse()
    }

    fn add_list(
        &mut self,
        reference: &str,
        key: &str,
        value: &str,
        changes: &mut Vec<Change>,
    ) -> Result<(), String> {
        let section = self.section(reference)?.clone();
        let present = section
            .statements
            .iter()
            .any(|s| s.key == key && s.value == value);
        if present {
            return Ok(());
        }
        let (at, indent) = self.insertion(&section);
        self.insert(at, format!("{indent}list {key} '{value}'\n"));
        changes.push(Change::Added {
            section: reference.into(),
            key: key.into(),
            value: value.into(),
        });
        self.reparse()
    }

    fn undo(&mut self, change: &Change) -> Result<(), String> {
        let (reference, key, value, list) = match change {
            Change::Option {
                section,
                key,
                value,
                ..
            } => (section, key, value, false),
            Change::Added {
                section,
                key,
                value,
            } => (section, key, value, true),
        };
        let Ok(section) = self.section(reference) else {
            return Ok(()); // the section is gone: nothing of ours is left in it
        };
        let ours = section
            .statements
            .iter()
            .find(|s| &s.key == key && &s.value == value && s.list == list)
            .map(|s| s.line - 1);
        let Some(index) = ours else {
            return Ok(()); // changed by hand since: left as it is
        };
        match change {
            Change::Option {
                previous: Some(previous),
                ..
            } => self.lines[index].clone_from(previous),
            _ => {
                self.lines.remove(index);
            }
        }
        self.reparse()
    }
}

/// The state file: one change a line, fields separated by tabs, `\`, tab and line ends escaped.
fn write_state(changes: &[Change]) -> String {
    let mut text =
        String::from("# oqsdns: what `oqsdns openwrt setup` changed in /etc/config/dhcp\n");
    for change in changes {
        let _ = match change {
            Change::Option {
                section,
                key,
                value,
                previous,
            } => writeln!(
                text,
                "option\t{}\t{}\t{}\t{}",
                escape(section),
                escape(key),
                escape(value),
                previous
                    .as_deref()
                    .map_or("-".to_string(), |p| format!("={}", escape(p)))
            ),
            Change::Added {
                section,
                key,
                value,
            } => writeln!(
                text,
                "list\t{}\t{}\t{}",
                escape(section),
                escape(key),
                escape(value)
            ),
        };
    }
    text
}

fn read_state(text: &str) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<String> = line.split('\t').map(unescape).collect();
        let bad = || format!("state file line {}: not a change: {line:?}", i + 1);
        let change = match fields.as_slice() {
            [kind, section, key, value, previous] if kind == "option" => Change::Option {
                section: section.clone(),
                key: key.clone(),
                value: value.clone(),
                previous: match previous.as_str() {
                    "-" => None,
                    p => Some(p.strip_prefix('=').ok_or_else(bad)?.to_string()),
                },
            },
            [kind, section, key, value] if kind == "list" => Change::Added {
                section: section.clone(),
                key: key.clone(),
                value: value.clone(),
            },
            _ => return Err(bad()),
        };
        changes.push(change);
    }
    Ok(changes)
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// `setup` on the files: reads oqsdns's UCI file `config` and /etc/config/dhcp (`dhcp`), writes
/// the state first (if the file is not written after all, restore finds nothing of its own),
/// then the file. Whether the file changed.
pub fn setup_files(
    dhcp: &Path,
    config: &Path,
    state: &Path,
    announce: Vec<std::net::IpAddr>,
) -> Result<bool, String> {
    let uci = read(config)?;
    let config = uci::from_uci(&uci, &|p| std::fs::read_to_string(p))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let mut wanted = Setup::for_config(&config)?;
    wanted.announce = announce;
    let text = read(dhcp)?;
    let saved = std::fs::read_to_string(state).ok();
    let edited = setup(&text, saved.as_deref(), &wanted)?;
    if edited.dhcp == text && saved.as_deref() == Some(edited.state.as_str()) {
        return Ok(false);
    }
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write(state, &edited.state)?;
    write(dhcp, &edited.dhcp)?;
    Ok(edited.dhcp != text)
}

/// `restore` on the files, then the state file removed; nothing when there is no state (never
/// set up, or restored already). Whether the file changed.
pub fn restore_files(dhcp: &Path, state: &Path) -> Result<bool, String> {
    let Ok(saved) = std::fs::read_to_string(state) else {
        return Ok(false);
    };
    let text = read(dhcp)?;
    let restored = restore(&text, &saved)?;
    if restored != text {
        write(dhcp, &restored)?;
    }
    std::fs::remove_file(state).map_err(|e| format!("{}: {e}", state.display()))?;
    Ok(restored != text)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    oqsdns_core::state::write_atomically(path, text.as_bytes(), 0o644)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
