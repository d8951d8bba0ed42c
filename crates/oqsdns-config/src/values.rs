//! Scalar values of the configuration file: addresses, domain names, durations, allow entries.
//!
//! Each type parses from the string a user writes and prints back the same way, so that
//! `config show` output is itself a valid configuration file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Implements `Deserialize` through `FromStr` and `Serialize` through `Display`, so that a bad
/// value is reported by the TOML parser with its line and column.
macro_rules! string_serde {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse()
                    .map_err(|e: String| de::Error::custom(format!("{e}; expected {}", $expecting)))
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

/// The DNS port, used when an address is written without one.
pub const DNS_PORT: u16 = 53;

/// An IP address with a port; the port defaults to 53 when omitted.
///
/// Accepts `192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1` and `[2001:db8::1]:5353`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerAddr(pub SocketAddr);

impl FromStr for ServerAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self(addr));
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => Ok(Self(SocketAddr::new(ip, DNS_PORT))),
            Err(_) => Err(format!("{s:?} is not an IP address with an optional port")),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_serde!(
    ServerAddr,
    "an address such as \"192.0.2.1\", \"192.0.2.1:5353\", \"2001:db8::1\" or \"[2001:db8::1]:5353\""
);

/// A `server.listen` entry: one address, or `"auto"` for every address of the host's interfaces,
/// each bound on its own and followed as addresses come and go.
///
/// Accepts what [`ServerAddr`] accepts, `auto` (port 53) and `auto:5353`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listen {
    /// Every address of the interfaces (all, or those of `server.interfaces`) on this port.
    Auto(u16),
    /// This address, bound at start even before it exists on the host (FREEBIND).
    Addr(ServerAddr),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some(rest) = s.strip_prefix("auto") else {
            return s.parse().map(Self::Addr);
        };
        if rest.is_empty() {
            return Ok(Self::Auto(DNS_PORT));
        }
        match rest.strip_prefix(':').map(str::parse::<u16>) {
            Some(Ok(port)) if port != 0 => Ok(Self::Auto(port)),
            _ => Err(format!(
                "{s:?} is not \"auto\" with an optional port from 1 to 65535"
            )),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto(DNS_PORT) => f.write_str("auto"),
            Self::Auto(port) => write!(f, "auto:{port}"),
            Self::Addr(addr) => addr.fmt(f),
        }
    }
}

string_serde!(
    Listen,
    "an address such as \"192.0.2.1\", \"192.0.2.1:5353\" or \"[2001:db8::1]:5353\", or \"auto\" (\"auto:5353\" for another port)"
);

/// A server of the default route: an address, or `"system"` for the nameservers of
/// `/etc/resolv.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultServer {
    /// The nameservers in /etc/resolv.conf, minus the daemon's own listening addresses.
    System,
    /// One server address.
    Addr(ServerAddr),
}

impl DefaultServer {
    /// The addresses of `servers` in order, `"system"` replaced by `system` (the nameservers it
    /// stands for): the one expansion of `"system"`.
    pub fn expand(servers: &[Self], system: &[SocketAddr]) -> Vec<SocketAddr> {
        servers
            .iter()
            .flat_map(|server| match server {
                Self::System => system.to_vec(),
                Self::Addr(addr) => vec![addr.0],
            })
            .collect()
    }
}

impl FromStr for DefaultServer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "system" {
            Ok(Self::System)
        } else {
            s.parse().map(Self::Addr)
        }
    }
}

impl fmt::Display for DefaultServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::Addr(addr) => addr.fmt(f),
        }
    }
}

string_serde!(
    DefaultServer,
    "\"system\" or an address such as \"192.0.2.1\" or \"[2001:db8::1]:5353\""
);

/// A source allowed to query the daemon: a network, or `"local"` for the prefixes on this
/// host's own interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowEntry {
    /// Every prefix configured on one of this host's interfaces, tracked as they change.
    Local,
    /// One network; a bare address means that single host.
    Net(IpNet),
}

impl FromStr for AllowEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "local" {
            return Ok(Self::Local);
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self::Net(net.trunc()));
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => Ok(Self::Net(IpNet::from(ip))),
            Err(_) => Err(format!("{s:?} is not a network")),
        }
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Net(net) => net.fmt(f),
        }
    }
}

string_serde!(
    AllowEntry,
    "\"local\" or a network such as \"192.168.0.0/16\" or \"fc00::/7\""
);

/// A domain name in its canonical form: lower case, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// The name, lower case, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Domain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.trim().strip_suffix('.').unwrap_or(s.trim());
        if name.is_empty() {
            return Err(format!(
                "{s:?} is not a domain name (the root cannot be routed)"
            ));
        }
        if name.len() > 253 {
            return Err(format!("{s:?} is longer than 253 characters"));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(format!("{s:?} has an empty label"));
            }
            if label.len() > 63 {
                return Err(format!("{s:?} has a label longer than 63 characters"));
            }
            let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if !label.chars().all(valid) {
                return Err(format!(
                    "{s:?} has a character outside letters, digits, '-' and '_'"
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!("{s:?} has a label that starts or ends with '-'"));
            }
        }
        Ok(Self(name.to_ascii_lowercase()))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(Domain, "a domain name such as \"clinic.example\"");

/// A positive duration written with a unit: `500ms`, `1s`, `2m`, `1h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let bad = || format!("{s:?} is not a duration");
        let n: u64 = number.parse().map_err(|_| bad())?;
        let millis = match unit.trim() {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => return Err(bad()),
        }
        .ok_or_else(bad)?;
        if millis == 0 {
            return Err(format!("{s:?} must be longer than zero"));
        }
        Ok(Self(Duration::from_millis(millis)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (size, unit) in units {
            if ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

string_serde!(
    HumanDuration,
    "a duration such as \"500ms\", \"1s\" or \"2m\""
);

/// Deserializes a list that must hold at least one element.
pub(crate) fn non_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let list = Vec::<T>::deserialize(deserializer)?;
    if list.is_empty() {
        return Err(de::Error::custom(
            "the list is empty; expected at least one entry",
        ));
    }
    Ok(list)
}

/// A health-probe question: `"NAME"`, `"NAME TYPE"` or `"NAME TYPE RCODE"`.
///
/// A probe passes on NOERROR with an answer of the asked type, or on the given response code.
/// The type defaults to AAAA (the guide's names all have one); `"."` asks the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeName {
    /// The name, `"."` for the root.
    pub name: String,
    /// The record type asked, as a number.
    pub rtype: u16,
    /// The expected response code when not NOERROR-with-answer.
    pub rcode: Option<u8>,
}

const PROBE_TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("SRV", 33),
    ("HTTPS", 65),
];

const PROBE_RCODES: &[(&str, u8)] = &[("NOERROR", 0), ("NXDOMAIN", 3)];

impl ProbeName {
    /// The record type's mnemonic.
    pub fn type_name(&self) -> String {
        PROBE_TYPES
            .iter()
            .find(|(_, n)| *n == self.rtype)
            .map_or_else(|| format!("TYPE{}", self.rtype), |(s, _)| (*s).to_string())
    }
}

impl FromStr for ProbeName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let name = words
            .next()
            .ok_or_else(|| "an empty probe name".to_string())?;
        let name = if name == "." {
            ".".to_string()
        } else {
            name.parse::<Domain>()?.to_string()
        };
        let rtype = match words.next() {
            None => 28,
            Some(t) => PROBE_TYPES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(t))
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("{t:?} is not a probe type"))?,
        };
        let rcode = match words.next() {
            None => None,
            Some(r) => Some(
                PROBE_RCODES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(r))
                    .map(|(_, v)| *v)
                    .ok_or_else(|| format!("{r:?} is not NOERROR or NXDOMAIN"))?,
            ),
        };
        if words.next().is_some() {
            return Err(format!(
                "{s:?} has more than a name, a type and a response code"
            ));
        }
        Ok(Self { name, rtype, rcode })
    }
}

impl fmt::Display for ProbeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.type_name())?;
        if let Some(code) = self.rcode {
            let name = PROBE_RCODES
                .iter()
                .find(|(_, v)| *v == code)
                .map_or("NOERROR", |(n, _)| n);
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

string_serde!(
    ProbeName,
    "a probe such as \"www.lineauth.mnw\", \"www.example.com A\" or \". NS\""
);

/// A duration, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub Option<Duration>);

impl FromStr for Window {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "off" {
            return Ok(Self(None));
        }
        s.parse::<HumanDuration>().map(|d| Self(Some(d.0)))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(d) => HumanDuration(d).fmt(f),
        }
    }
}

string_serde!(Window, "\"off\" or a duration such as \"1d\" or \"12h\"");
