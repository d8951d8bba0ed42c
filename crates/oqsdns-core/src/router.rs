//! Routing: which upstream group answers a name. The longest matching suffix wins, on whole
//! labels and without regard to case; a name under no route goes to the default group.

use std::collections::HashMap;

use crate::hashing::Keyed;
use crate::wire;

/// Maps domains to group indexes.
#[derive(Debug, Clone)]
pub struct Router {
    /// Lower-case wire-format domain (with its root label) to group index. (Hashed as the
    /// cache is: every query looks up each of its name's suffixes here.)
    suffixes: HashMap<Box<[u8]>, usize, Keyed>,
    default: usize,
}

impl Router {
    /// A router that sends names under no domain to the group `default`.
    pub fn new(default: usize) -> Self {
        Self {
            suffixes: HashMap::with_hasher(crate::hashing::keyed()),
            default,
        }
    }

    /// Routes `domain` (presentation format) and every name under it to `group`.
    pub fn insert(&mut self, domain: &str, group: usize) {
        self.suffixes
            .insert(wire::name_to_wire(domain).into_boxed_slice(), group);
    }

    /// The group for a wire-format name: the longest routed suffix, else the default group.
    pub fn lookup(&self, qname: &[u8]) -> usize {
        self.matching(qname).unwrap_or(self.default)
    }

    /// The group of the longest routed suffix of `qname`, if any.
    pub fn matching(&self, qname: &[u8]) -> Option<usize> {
        if self.suffixes.is_empty() {
            return None;
        }
        let mut buf = [0u8; 255];
        let len = wire::lowercase_name(qname, &mut buf);
        let name = &buf[..len];
        let mut at = 0;
        while at < len && name[at] != 0 {
            if let Some(&group) = self.suffixes.get(&name[at..]) {
                return Some(group);
            }
            at += name[at] as usize + 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let mut r = Router::new(0);
        for d in [
            "onshikaku.org",
            "lineauth.mnw",
            "base.oqs-pdl.org",
            "managedpki.ne.jp",
        ] {
            r.insert(d, 1);
        }
        r.insert("flets-east.jp", 2);
        r.insert("oqs-st.onshikaku.org", 3);
        r
    }

    #[test]
    fn longest_suffix_on_whole_labels() {
        let r = router();
        let cases = [
            ("hweb.oqs.onshikaku.org", 1),
            ("onshikaku.org", 1),
            ("ONSHIKAKU.ORG.", 1),
            ("HWeb.Oqs.OnShiKaku.Org", 1),
            ("notonshikaku.org", 0),
            ("onshikaku.org.example", 0),
            ("org", 0),
            ("www.lineauth.mnw", 1),
            ("pweb.base.oqs-pdl.org", 1),
            ("oqs-pdl.org", 0),
            ("xbase.oqs-pdl.org", 0),
            ("assv.asc.flets-east.jp", 2),
            ("flets-west.jp", 0),
            ("crldownload.obn.managedpki.ne.jp", 1),
            ("hweb.oqs-st.onshikaku.org", 3),
            ("oqs-st.onshikaku.org", 3),
            ("example.com", 0),
            (".", 0),
        ];
        for (name, want) in cases {
            assert_eq!(
                r.lookup(&wire::name_to_wire_keep_case(name)),
                want,
                "{name}"
            );
        }
    }
}
