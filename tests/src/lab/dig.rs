//! Real clients: `dig` (and `nslookup`) run inside a namespace, their output parsed into the
//! status, header flags and answer records a test asserts on.

use std::fmt;

/// One answer record as dig prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name, as printed (with the trailing dot).
    pub name: String,
    /// The TTL.
    pub ttl: u32,
    /// The type: `AAAA`, `A`, `TXT`, ...
    pub rtype: String,
    /// The data, as printed (TXT strings keep their quotes).
    pub data: String,
}

/// A reply as dig saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The rcode name: `NOERROR`, `SERVFAIL`, `REFUSED`, ...
    pub status: String,
    /// The header flags: `qr`, `rd`, `ra`, `tc`, `aa`, ...
    pub flags: Vec<String>,
    /// The answer section.
    pub records: Vec<Record>,
    /// dig's whole output, for assertion messages.
    pub raw: String,
}

impl Answer {
    /// Parses dig's output (run without `+short`, with the header comments kept).
    pub fn parse(output: &str) -> Option<Self> {
        let mut status = None;
        let mut flags = Vec::new();
        let mut records = Vec::new();
        for line in output.lines() {
            if let Some(rest) = line.split_once("status: ").map(|(_, r)| r) {
                status = rest.split(',').next().map(|s| s.trim().to_string());
            } else if let Some(rest) = line.strip_prefix(";; flags: ") {
                let until = rest.split(';').next().unwrap_or("");
                flags = until.split_whitespace().map(str::to_string).collect();
            } else if !line.starts_with(';') && !line.trim().is_empty() {
                let mut words = line.split_whitespace();
                let (Some(name), Some(ttl), Some(_class), Some(rtype)) =
                    (words.next(), words.next(), words.next(), words.next())
                else {
                    continue;
                };
                records.push(Record {
                    name: name.to_string(),
                    ttl: ttl.parse().unwrap_or(0),
                    rtype: rtype.to_string(),
                    data: words.collect::<Vec<_>>().join(" "),
                });
            }
        }
        Some(Self {
            status: status?,
            flags,
            records,
            raw: output.to_string(),
        })
    }

    /// The data of the answer records of `rtype`, in order; TXT strings without their quotes.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(rtype))
            .map(|r| r.data.trim_matches('"').to_string())
            .collect()
    }

    /// The data of the answer records of `rtype`, sorted.
    pub fn sorted(&self, rtype: &str) -> Vec<String> {
        let mut data = self.data(rtype);
        data.sort();
        data
    }

    /// Whether the header has `flag` (`tc`, `aa`, ...).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Whether `text` occurs anywhere in the answer section.
    pub fn mentions(&self, text: &str) -> bool {
        self.records.iter().any(|r| r.data.contains(text))
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.raw.trim_end())
    }
}

/// The options every dig of the lab gets: one try, a bounded wait, no recursion into the output
/// of sections the tests do not read.
pub const DIG_OPTIONS: [&str; 5] = [
    "+tries=1",
    "+nocmd",
    "+noquestion",
    "+noauthority",
    "+nostats",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_digs_output() {
        let out = ";; Got answer:\n\
            ;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\
            ;; flags: qr rd ra tc; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1\n\n\
            ;; ANSWER SECTION:\n\
            www.lineauth.mnw.\t300\tIN\tAAAA\t2404:1a8:f583:af0::1\n\
            whoami.lineauth.mnw. 300 IN TXT \"nw-base-east-primary\"\n";
        let answer = Answer::parse(out).unwrap();
        assert_eq!(answer.status, "NOERROR");
        assert!(answer.has_flag("tc") && answer.has_flag("ra") && !answer.has_flag("aa"));
        assert_eq!(answer.data("AAAA"), ["2404:1a8:f583:af0::1"]);
        assert_eq!(answer.data("txt"), ["nw-base-east-primary"]);
        assert!(Answer::parse(";; connection timed out; no servers could be reached\n").is_none());
    }
}
