//! Reading the records of a reply already accepted: where each sits, its type and TTL, for the
//! cache, the rebind filter and the probes. Nothing is decoded; the bytes stay where they are.

use super::{counts, skip_name, u16_at, u32_at, walk_records, HEADER_LEN, TC};

/// A section of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Answers.
    Answer,
    /// Authority records.
    Authority,
    /// Additional records.
    Additional,
}

/// Where one record sits in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAt {
    /// Its section.
    pub section: Section,
    /// Its type.
    pub rtype: u16,
    /// Offset of its TTL field.
    pub ttl_at: usize,
    /// Offset of its data.
    pub data_at: usize,
    /// Offset just past it.
    pub end: usize,
}

/// Every record of a message after the question; `None` if they do not parse.
pub fn records(msg: &[u8]) -> Option<Vec<RecordAt>> {
    let question_end = skip_name(msg, HEADER_LEN)? + 4;
    let [_, an, ns, ar] = counts(msg);
    let mut out = Vec::with_capacity(an + ns + ar);
    let mut at = question_end;
    for (section, count) in [
        (Section::Answer, an),
        (Section::Authority, ns),
        (Section::Additional, ar),
    ] {
        at = walk_records(msg, at, count, |rec| {
            out.push(RecordAt {
                section,
                rtype: u16_at(msg, rec.rtype_at)?,
                ttl_at: rec.rtype_at + 4,
                data_at: rec.rtype_at + 10,
                end: rec.end,
            });
            Some(())
        })?;
    }
    Some(out)
}

/// The offset just past a message's (single) question.
pub fn question_end(msg: &[u8]) -> Option<usize> {
    Some(skip_name(msg, HEADER_LEN)? + 4).filter(|&end| end <= msg.len())
}

/// Whether a message's header has the TC bit.
pub fn is_truncated(msg: &[u8]) -> bool {
    u16_at(msg, 2).is_some_and(|flags| flags & TC != 0)
}

/// Reads the TTL at `at`.
pub fn ttl_at(msg: &[u8], at: usize) -> u32 {
    u32_at(msg, at).unwrap_or(0)
}

/// The response code in a message's header (low four bits).
pub fn rcode_of(msg: &[u8]) -> u8 {
    msg.get(3).map_or(0, |b| b & 0xF)
}

/// The type and data of every record in a reply's answer section; `None` if it does not parse.
pub fn answer_records(reply: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let question_end = skip_name(reply, HEADER_LEN)? + 4;
    let mut records = Vec::new();
    walk_records(reply, question_end, counts(reply)[1], |rec| {
        let rtype = u16_at(reply, rec.rtype_at)?;
        records.push((rtype, &reply[rec.rtype_at + 10..rec.end]));
        Some(())
    })?;
    Some(records)
}
