//! DNS wire format: just enough parsing to route a query, check a reply and pass it through.
//!
//! Answers from upstream servers are not decoded and re-encoded: their bytes go to the client with
//! the ID, the question's casing, the RA flag and the EDNS record rewritten, so every section, TTL
//! and flag arrives as the server sent it.

use std::fmt;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Largest DNS message, the limit of TCP's length prefix.
pub const MAX_MESSAGE: usize = 65_535;
/// UDP answers without EDNS may not exceed this (RFC 1035).
pub const CLASSIC_UDP: usize = 512;
/// The EDNS buffer size offered to upstream servers (DNS flag day 2020).
pub const UPSTREAM_PAYLOAD: u16 = 1232;
/// Resource record type OPT (RFC 6891). The record types the per-query path reads are named
/// here, as numbers (that path reads bytes, not hickory records); a test holds them to
/// hickory's [`RecordType`](hickory_proto::rr::RecordType).
pub const TYPE_OPT: u16 = 41;
/// Resource record type A (RFC 1035).
pub const TYPE_A: u16 = 1;
/// Resource record type AAAA (RFC 3596).
pub const TYPE_AAAA: u16 = 28;

/// Length of the OPT record the daemon writes (root owner, no options).
const OPT_LEN: usize = 11;

const QR: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const AD: u16 = 0x0020;
const CD: u16 = 0x0010;
const RCODE: u16 = 0x000F;
const DO: u32 = 0x8000;

/// A message header: the ID, the flags and the four section counts (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy)]
struct Header {
    id: u16,
    flags: u16,
    /// Questions, answers, authority and additional records.
    counts: [u16; 4],
}

impl Header {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        for count in self.counts {
            out.extend_from_slice(&count.to_be_bytes());
        }
    }
}

/// Response codes the daemon sets itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// The query could not be parsed.
    FormErr = 1,
    /// The query could not be answered.
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// The opcode is not supported.
    NotImp = 4,
    /// The query is refused by policy.
    Refused = 5,
    /// The EDNS version is not supported (extended rcode).
    BadVers = 16,
}

/// EDNS parameters of a message (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The UDP payload size the sender can receive.
    pub payload: u16,
    /// The DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// The EDNS version.
    pub version: u8,
    /// The upper eight bits of the extended response code.
    pub ext_rcode: u8,
}

/// What to do with a datagram that is not a well-formed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Too short to answer, or itself a response: answer nothing.
    Drop,
    /// Answer with this reply (FORMERR, NOTIMP, BADVERS).
    Reply(Vec<u8>),
}

/// A parsed client query. It borrows the received bytes.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    bytes: &'a [u8],
    /// The client's message ID.
    pub id: u16,
    /// The header flags.
    pub flags: u16,
    qname_end: usize,
    question_end: usize,
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
    /// The client's EDNS record, if it sent one.
    pub edns: Option<Edns>,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("qname", &display_name(self.qname()))
            .field("qtype", &self.qtype)
            .finish()
    }
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads an uncompressed name starting at `at`; returns the offset just past it.
fn plain_name_end(buf: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    loop {
        let len = *buf.get(at)? as usize;
        if len == 0 {
            return Some(at + 1);
        }
        if len > 63 {
            return None; // a pointer or an extended label type
        }
        at += len + 1;
        if at - start > 254 {
            return None;
        }
    }
}

/// Skips a possibly compressed name; returns the offset just past it in this record.
fn skip_name(buf: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    loop {
        let len = *buf.get(at)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += len as usize + 1,
            0xC0 => return buf.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
        if at - start > 254 {
            return None;
        }
    }
}

/// One resource record's place in a message.
#[derive(Debug, Clone, Copy)]
struct RecordSpan {
    start: usize,
    rtype_at: usize,
    end: usize,
}

/// Walks `count` records from `at`; calls `each` with every record's span.
fn walk_records(
    buf: &[u8],
    mut at: usize,
    count: usize,
    mut each: impl FnMut(RecordSpan) -> Option<()>,
) -> Option<usize> {
    for _ in 0..count {
        let start = at;
        let rtype_at = skip_name(buf, at)?;
        let rdlen = u16_at(buf, rtype_at + 8)? as usize;
        let end = rtype_at + 10 + rdlen;
        if end > buf.len() {
            return None;
        }
        each(RecordSpan {
            start,
            rtype_at,
            end,
        })?;
        at = end;
    }
    Some(at)
}

fn edns_of(buf: &[u8], opt: RecordSpan) -> Edns {
    let ttl = u32_at(buf, opt.rtype_at + 4).unwrap_or(0);
    Edns {
        payload: u16_at(buf, opt.rtype_at + 2).unwrap_or(0),
        dnssec_ok: ttl & DO != 0,
        version: (ttl >> 16) as u8,
        ext_rcode: (ttl >> 24) as u8,
    }
}

/// Counts of the four sections.
fn counts(buf: &[u8]) -> [usize; 4] {
    [4, 6, 8, 10].map(|at| u16_at(buf, at).unwrap_or(0) as usize)
}

/// Finds the OPT record of the additional section; `Err` if the records do not parse or there are
/// two OPT records, or one whose owner is not the root.
fn find_opt(buf: &[u8], question_end: usize) -> Result<Option<RecordSpan>, ()> {
    let [_, an, ns, ar] = counts(buf);
    let after = walk_records(buf, question_end, an + ns, |_| Some(())).ok_or(())?;
    let mut opt = None;
    let mut bad = false;
    walk_records(buf, after, ar, |rec| {
        if u16_at(buf, rec.rtype_at) == Some(TYPE_OPT) {
            bad |= opt.is_some() || buf[rec.start] != 0;
            opt = Some(rec);
        }
        Some(())
    })
    .ok_or(())?;
    if bad {
        return Err(());
    }
    Ok(opt)
}

/// A reply with only a header: for queries whose question cannot be used. The opcode, RD and CD
/// are the query's (RFC 1035 §4.1.1, RFC 4035 §3.1.6).
fn header_reply(query: &[u8], rcode: Rcode) -> Vec<u8> {
    let flags = u16_at(query, 2).unwrap_or(0);
    let header = Header {
        id: u16_at(query, 0).unwrap_or(0),
        flags: QR | (flags & (OPCODE | RD | CD)) | RA | rcode as u16,
        counts: [0; 4],
    };
    let mut out = Vec::with_capacity(HEADER_LEN);
    header.write(&mut out);
    out
}

impl<'a> Request<'a> {
    /// Parses a client's query; a message that cannot be answered as a query is rejected with the
    /// reply it deserves.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Rejected> {
        if bytes.len() < HEADER_LEN {
            return Err(Rejected::Drop);
        }
        let id = u16_at(bytes, 0).unwrap_or(0);
        let flags = u16_at(bytes, 2).unwrap_or(0);
        if flags & QR != 0 {
            return Err(Rejected::Drop);
        }
        if (flags >> 11) & 0xF != 0 {
            return Err(Rejected::Reply(header_reply(bytes, Rcode::NotImp)));
        }
        let formerr = || Rejected::Reply(header_reply(bytes, Rcode::FormErr));
        if counts(bytes)[0] != 1 {
            return Err(formerr());
        }
        let qname_end = plain_name_end(bytes, HEADER_LEN).ok_or_else(formerr)?;
        let qtype = u16_at(bytes, qname_end).ok_or_else(formerr)?;
        let qclass = u16_at(bytes, qname_end + 2).ok_or_else(formerr)?;
        let question_end = qname_end + 4;
        let opt = find_opt(bytes, question_end).map_err(|()| formerr())?;
        let request = Self {
            bytes,
            id,
            flags,
            qname_end,
            question_end,
            qtype,
            qclass,
            edns: opt.map(|opt| edns_of(bytes, opt)),
        };
        if request.edns.is_some_and(|e| e.version != 0) {
            return Err(Rejected::Reply(request.reply(
                Rcode::BadVers,
                0,
                UPSTREAM_PAYLOAD,
            )));
        }
        Ok(request)
    }

    /// The whole query as received.
    pub fn message(&self) -> &'a [u8] {
        self.bytes
    }

    /// The question name in wire format, as the client wrote it.
    pub fn qname(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..self.qname_end]
    }

    /// The question section (name, type, class) as the client wrote it.
    pub fn question(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..self.question_end]
    }

    /// The DNSSEC OK bit of the client's EDNS record.
    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }

    /// Whether the client set the checking-disabled bit.
    pub fn checking_disabled(&self) -> bool {
        self.flags & CD != 0
    }

    /// The largest UDP answer this client accepts, capped at `cap`.
    pub fn udp_limit(&self, cap: u16) -> usize {
        match self.edns {
            Some(e) => (e.payload.min(cap) as usize).max(CLASSIC_UDP),
            None => CLASSIC_UDP,
        }
    }

    /// A query for the same question with a new ID, to send to an upstream server: RD, AD and CD
    /// as the client set them, EDNS with our buffer size and the client's DO bit.
    pub fn upstream_query(&self, id: u16) -> Vec<u8> {
        let question = self.question();
        let mut out = Vec::with_capacity(HEADER_LEN + question.len() + OPT_LEN);
        let header = Header {
            id,
            flags: self.flags & (RD | AD | CD),
            counts: [1, 0, 0, 1],
        };
        header.write(&mut out);
        out.extend_from_slice(question);
        push_opt(&mut out, UPSTREAM_PAYLOAD, 0, self.dnssec_ok());
        out
    }

    /// Whether the client set the recursion-desired bit.
    pub fn recursion_desired(&self) -> bool {
        self.flags & RD != 0
    }

    /// The header bits every answer to this client takes from its query: the opcode, RD (RFC 1035
    /// §4.1.1) and CD (RFC 4035 §3.2.2); with QR and RA set.
    fn answer_flags(&self) -> u16 {
        QR | RA | (self.flags & (OPCODE | RD | CD))
    }

    /// A reply of our own with the question and no records: errors, and truncated answers.
    /// `extra_flags` adds header bits (TC, AA, AD) to QR, RD, CD and RA.
    pub fn reply(&self, rcode: Rcode, extra_flags: u16, payload: u16) -> Vec<u8> {
        let rcode = rcode as u16;
        self.question_only(extra_flags | (rcode & RCODE), (rcode >> 4) as u8, payload)
    }

    /// The header (with `flags` added to [`answer_flags`](Self::answer_flags)), the question as
    /// the client wrote it, and our OPT record with `ext_rcode` when the client sent one.
    fn question_only(&self, flags: u16, ext_rcode: u8, payload: u16) -> Vec<u8> {
        let question = self.question();
        let mut out = Vec::with_capacity(HEADER_LEN + question.len() + OPT_LEN);
        let header = Header {
            id: self.id,
            flags: self.answer_flags() | flags,
            counts: [1, 0, 0, u16::from(self.edns.is_some())],
        };
        header.write(&mut out);
        out.extend_from_slice(question);
        if self.edns.is_some() {
            push_opt(&mut out, payload, ext_rcode, self.dnssec_ok());
        }
        out
    }

    /// Turns an upstream (or cached) reply into the client's answer: the client's ID, opcode, RD
    /// and CD bits and question casing, RA set, AD only for a client that asked for DNSSEC (RFC
    /// 6840 §5.8), the OPT record rewritten for this client, and truncated with TC when it exceeds
    /// `limit`. The reply's sections pass through as they are.
    ///
    /// `None` if `reply` is not a response to this question or its records do not parse: nothing
    /// here trusts that the caller checked it.
    pub fn answer_from(&self, reply: &[u8], limit: usize, payload: u16) -> Option<Vec<u8>> {
        let question_end = self.question_end;
        let reply_flags = u16_at(reply, 2).filter(|f| f & QR != 0)?;
        let [questions, answers, authority, additional] = counts(reply);
        let theirs = reply.get(HEADER_LEN..question_end)?;
        if questions != 1 || !same_question(theirs, self.question()) {
            return None;
        }
        let opt = find_opt(reply, question_end).ok()?;
        let (records, after_opt, ext_rcode) = match opt {
            // The upstream's OPT goes (its size and options are for us, not the client); any
            // record after it moves up unchanged.
            Some(rec) => (
                &reply[question_end..rec.start],
                &reply[rec.end..],
                edns_of(reply, rec).ext_rcode,
            ),
            None => (&reply[question_end..], &[][..], 0),
        };
        if self.edns.is_none() && ext_rcode != 0 {
            // An extended rcode cannot be told to a client without EDNS.
            return Some(self.reply(Rcode::ServFail, 0, payload));
        }
        let mut kept = reply_flags & (AA | AD | RCODE);
        if !self.dnssec_ok() && self.flags & AD == 0 {
            kept &= !AD;
        }
        let opt_len = if self.edns.is_some() { OPT_LEN } else { 0 };
        let len = question_end + records.len() + after_opt.len() + opt_len;
        if len > limit {
            return Some(self.question_only(TC | kept, ext_rcode, payload));
        }
        let additional = additional - usize::from(opt.is_some()) + usize::from(opt_len > 0);
        let header = Header {
            id: self.id,
            flags: self.answer_flags() | kept | (reply_flags & TC),
            counts: [
                1,
                answers as u16,
                authority as u16,
                u16::try_from(additional).ok()?,
            ],
        };
        let mut out = Vec::with_capacity(len);
        header.write(&mut out);
        out.extend_from_slice(self.question());
        out.extend_from_slice(records);
        out.extend_from_slice(after_opt);
        if self.edns.is_some() {
            push_opt(&mut out, payload, ext_rcode, self.dnssec_ok());
        }
        Some(out)
    }
}

/// Whether two questions in wire format are the same: the name without regard to ASCII case (label
/// lengths are below 64 and so unaffected by case folding), the type and class exactly.
fn same_question(theirs: &[u8], ours: &[u8]) -> bool {
    let Some(tail) = ours.len().checked_sub(4) else {
        return false;
    };
    theirs.len() == ours.len()
        && theirs[..tail].eq_ignore_ascii_case(&ours[..tail])
        && theirs[tail..] == ours[tail..]
}

fn push_opt(out: &mut Vec<u8>, payload: u16, ext_rcode: u8, dnssec_ok: bool) {
    let ttl = (u32::from(ext_rcode) << 24) | if dnssec_ok { DO } else { 0 };
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
}

/// What a reply from upstream says, once it is known to answer our query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyInfo {
    /// The header's response code (low four bits).
    pub rcode: u8,
    /// The TC bit: the answer did not fit and must be asked again over TCP.
    pub truncated: bool,
}

/// Why a datagram is not the reply to our query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// Not a DNS response at all.
    #[error("not a DNS response")]
    NotResponse,
    /// Another query's ID.
    #[error("wrong message ID")]
    Id,
    /// Another question.
    #[error("wrong question")]
    Question,
}

/// Accepts `reply` only if it is a response with our ID and exactly our question (name compared
/// without regard to case), as RFC 5452 asks.
pub fn check_reply(reply: &[u8], id: u16, question: &[u8]) -> Result<ReplyInfo, Mismatch> {
    if reply.len() < HEADER_LEN || u16_at(reply, 2).is_none_or(|f| f & QR == 0) {
        return Err(Mismatch::NotResponse);
    }
    if u16_at(reply, 0) != Some(id) {
        return Err(Mismatch::Id);
    }
    let theirs = reply.get(HEADER_LEN..HEADER_LEN + question.len());
    if counts(reply)[0] != 1 || !theirs.is_some_and(|q| same_question(q, question)) {
        return Err(Mismatch::Question);
    }
    let flags = u16_at(reply, 2).unwrap_or(0);
    Ok(ReplyInfo {
        rcode: (flags & 0xF) as u8,
        truncated: flags & TC != 0,
    })
}

/// A recursive query with a fresh EDNS record, for probes and `oqsdns check`.
pub fn build_query(id: u16, qname: &[u8], qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + qname.len() + 4 + OPT_LEN);
    let header = Header {
        id,
        flags: RD,
        counts: [1, 0, 0, 1],
    };
    header.write(&mut out);
    out.extend_from_slice(qname);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    push_opt(&mut out, UPSTREAM_PAYLOAD, 0, false);
    out
}

mod names;
mod parsed;
mod records;

pub use names::{display_name, lowercase_name, name_to_wire, name_to_wire_keep_case};
pub use parsed::Parsed;
pub use records::{
    answer_records, is_truncated, question_end, rcode_of, records, ttl_at, RecordAt, Section,
};

#[cfg(any(test, feature = "fuzz"))]
pub mod differential;
#[cfg(any(test, feature = "fuzz"))]
pub mod invariants;
#[cfg(test)]
mod tests;
