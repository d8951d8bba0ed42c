//! A parsed query without its bytes: what crosses from a listener's first look at a query to
//! the task that forwards it, and from there to each server's try, so the query is parsed once.
//!
//! The bytes go on as the owned copy the listener made; the offsets found by
//! [`Request::parse`] go beside them (a few words, `Copy`), and [`Request::from_parsed`] puts the
//! two together again without reading the message a second time. That costs nothing where an
//! owned parse would cost a copy of the name.

use super::{Edns, Request};

/// What [`Request::parse`] found in a message, without the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    len: usize,
    id: u16,
    flags: u16,
    qname_end: usize,
    question_end: usize,
    qtype: u16,
    qclass: u16,
    edns: Option<Edns>,
}

impl<'a> Request<'a> {
    /// What this request holds besides its bytes.
    pub fn parsed(&self) -> Parsed {
        Parsed {
            len: self.bytes.len(),
            id: self.id,
            flags: self.flags,
            qname_end: self.qname_end,
            question_end: self.question_end,
            qtype: self.qtype,
            qclass: self.qclass,
            edns: self.edns,
        }
    }

    /// The request `parsed` describes, over `bytes`: the message (or a copy of it) it was parsed
    /// from. `None` for bytes of another length, so that a mistaken pairing cannot slice past
    /// the end.
    pub fn from_parsed(bytes: &'a [u8], parsed: Parsed) -> Option<Self> {
        (bytes.len() == parsed.len && parsed.question_end <= bytes.len()).then_some(Self {
            bytes,
            id: parsed.id,
            flags: parsed.flags,
            qname_end: parsed.qname_end,
            question_end: parsed.question_end,
            qtype: parsed.qtype,
            qclass: parsed.qclass,
            edns: parsed.edns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{build_query, name_to_wire, Request};

    #[test]
    fn a_request_put_together_again_is_the_one_parsed() {
        let query = build_query(0x1234, &name_to_wire("www.lineauth.mnw"), 28);
        let request = Request::parse(&query).unwrap();
        let copy = query.clone();
        let again = Request::from_parsed(&copy, request.parsed()).unwrap();
        assert_eq!(again.parsed(), request.parsed());
        assert_eq!(again.question(), request.question());
        assert_eq!(again.qname(), request.qname());
        assert_eq!(again.edns, request.edns);
        assert!(Request::from_parsed(&copy[..copy.len() - 1], request.parsed()).is_none());
    }
}
