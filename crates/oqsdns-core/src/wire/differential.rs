//! wire.rs against hickory-proto on the same bytes: wherever both read a message, they agree on
//! the header, the question (name, type, class), the section counts, where every record and every
//! section ends, and the OPT record. Where one reads a message the other refuses, the reason is
//! one of the [`Exception`]s, each understood and written down; any other disagreement panics.
//! Shared by the seeded test below and the fuzz target (`fuzz/`).

use hickory_proto::op::{Header, Message, MessageType};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};

use super::{
    counts, edns_of, find_opt, plain_name_end, records, skip_name, u16_at, Edns, Request, Section,
    HEADER_LEN,
};

/// Why wire.rs and hickory-proto may disagree on whether a message can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exception {
    /// QDCOUNT is not 1. wire reads only one-question messages (every query and reply the daemon
    /// handles has one; RFC 9619 makes it the rule); hickory reads any count.
    QuestionCount,
    /// The question's name is compressed. wire wants the question as plain bytes, to echo and to
    /// compare with the reply's; a query has no earlier name to point at, so only a pointer into
    /// the header can make one that hickory (which takes only pointers backwards) follows.
    CompressedQuestion,
    /// A record's owner name holds a compression pointer that hickory follows and refuses (it
    /// points forward or at itself, past the end, or makes the name longer than 255 bytes).
    /// wire skips a pointer without following it: the names pass through to the client as they
    /// are, and the client's parser judges them, as it would the server's.
    BadPointer,
    /// hickory decodes RDATA by type and refuses what does not parse (an A record of five bytes,
    /// a name in a CNAME that does not end...). wire never reads RDATA: it passes through.
    BadRdata,
    /// A record with RDLENGTH 0 of a type that is not OPT: hickory reads it as an UPDATE
    /// prerequisite (RFC 2136) and refuses it outside UPDATE. wire passes it through (an empty
    /// NULL or an APL with no items are legal).
    EmptyRdata,
    /// An OPT record in the answer or authority section: hickory refuses it there (RFC 6891
    /// allows it only in the additional section); wire looks for OPT only in the additional
    /// section and passes any other as a record.
    OptOutsideAdditional,
    /// A SIG or TSIG record in the answer or authority section: hickory refuses those outside the
    /// additional section (RFC 2931, RFC 8945); wire passes them through as records.
    SigOutsideAdditional,
}

/// A message as one reader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    id: u16,
    /// QR, opcode, AA, TC, RD, RA, AD, CD and the low rcode bits (hickory drops the Z bit).
    flags: u16,
    counts: [u16; 4],
    /// The question's name lower-cased in wire format, type and class.
    question: (Vec<u8>, u16, u16),
    question_end: usize,
    /// Every record: its section (0 answer, 1 authority, 2 additional), type and end offset.
    records: Vec<(u8, u16, usize)>,
    /// Payload (at least 512: RFC 6891 §6.2.5, and hickory so reads it), DO, version, ext rcode.
    opt: Option<(u16, bool, u8, u8)>,
}

/// Flag bits both readers keep (all but Z).
const FLAGS: u16 = 0xFFBF;

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

fn opt_of(edns: Edns) -> (u16, bool, u8, u8) {
    (
        edns.payload.max(512),
        edns.dnssec_ok,
        edns.version,
        edns.ext_rcode,
    )
}

/// How wire.rs reads `msg` as a reply: one plain question, records that walk, at most one OPT in
/// the additional section, owned by the root.
fn wire_shape(msg: &[u8]) -> Option<Shape> {
    let [qd, ..] = counts(msg);
    if msg.len() < HEADER_LEN || qd != 1 {
        return None;
    }
    let name_end = plain_name_end(msg, HEADER_LEN)?;
    let qtype = u16_at(msg, name_end)?;
    let qclass = u16_at(msg, name_end + 2)?;
    let question_end = name_end + 4;
    let all = records(msg)?;
    let opt = find_opt(msg, question_end).ok()?;
    let section = |s: Section| match s {
        Section::Answer => 0,
        Section::Authority => 1,
        Section::Additional => 2,
    };
    Some(Shape {
        id: u16_at(msg, 0)?,
        flags: u16_at(msg, 2)? & FLAGS,
        counts: [4, 6, 8, 10].map(|at| u16_at(msg, at).unwrap_or(0)),
        question: (lower(&msg[HEADER_LEN..name_end]), qtype, qclass),
        question_end,
        records: all
            .iter()
            .map(|r| (section(r.section), r.rtype, r.end))
            .collect(),
        opt: opt.map(|rec| opt_of(edns_of(msg, rec))),
    })
}

/// How hickory reads `msg`: `Err` when `Message::from_vec` refuses it; the shape of its first
/// question and its records otherwise (`None` for a message without a question).
fn hickory_shape(msg: &[u8]) -> Result<Option<Shape>, ()> {
    let message = Message::from_vec(msg).map_err(|_| ())?;
    let mut decoder = BinDecoder::new(msg);
    let header = Header::read(&mut decoder).map_err(|_| ())?;
    let mut question = None;
    for _ in 0..header.counts.queries {
        let q = hickory_proto::op::Query::read(&mut decoder).map_err(|_| ())?;
        let name = q.name.to_lowercase().to_bytes().map_err(|_| ())?;
        question.get_or_insert((name, u16::from(q.query_type), u16::from(q.query_class)));
    }
    let question_end = decoder.index();
    let sections = [
        header.counts.answers,
        header.counts.authorities,
        header.counts.additionals,
    ];
    let mut records = Vec::new();
    for (section, count) in sections.into_iter().enumerate() {
        for _ in 0..count {
            let record = Record::read(&mut decoder).map_err(|_| ())?;
            records.push((
                section as u8,
                u16::from(record.record_type()),
                decoder.index(),
            ));
        }
    }
    let Some(question) = question else {
        return Ok(None);
    };
    let m = &message.metadata;
    let flags = u16::from(m.message_type == MessageType::Response) << 15
        | u16::from(u8::from(m.op_code)) << 11
        | u16::from(m.authoritative) << 10
        | u16::from(m.truncation) << 9
        | u16::from(m.recursion_desired) << 8
        | u16::from(m.recursion_available) << 7
        | u16::from(m.authentic_data) << 5
        | u16::from(m.checking_disabled) << 4
        | u16::from(m.response_code.low());
    let c = header.counts;
    Ok(Some(Shape {
        id: m.id,
        flags,
        counts: [c.queries, c.answers, c.authorities, c.additionals],
        question,
        question_end,
        records,
        opt: message.edns.as_ref().map(|e| {
            (
                e.max_payload(),
                e.flags().dnssec_ok,
                e.version(),
                e.rcode_high(),
            )
        }),
    }))
}

/// What [`compare`] found for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Both read it, and agree.
    Agree,
    /// Both refuse it.
    BothRefuse,
    /// Only wire reads it, for this reason.
    OnlyWire(Exception),
    /// Only hickory reads it, for this reason.
    OnlyHickory(Exception),
}

/// Reads `msg` with both and panics on any disagreement that is not an [`Exception`]. A query
/// that `Request::parse` takes must also agree with hickory's reading of it.
pub fn compare(msg: &[u8]) -> Outcome {
    let ours = wire_shape(msg);
    let theirs = hickory_shape(msg);
    if let Ok(request) = Request::parse(msg) {
        check_request(msg, &request, ours.as_ref());
    }
    match (ours, theirs) {
        (Some(ours), Ok(Some(theirs))) => {
            assert_eq!(ours, theirs, "wire and hickory read {msg:02x?} differently");
            Outcome::Agree
        }
        (Some(_), Ok(None)) => unreachable!("wire read a question hickory did not"),
        (None, Err(())) => Outcome::BothRefuse,
        (Some(_), Err(())) => Outcome::OnlyWire(why_hickory_refuses(msg)),
        (None, Ok(_)) => Outcome::OnlyHickory(why_wire_refuses(msg)),
    }
}

/// A parsed request is a one-question message whose shape wire reads (the same question, the
/// same OPT) and, when hickory reads it, hickory agrees.
fn check_request(msg: &[u8], request: &Request<'_>, shape: Option<&Shape>) {
    let shape = shape.unwrap_or_else(|| panic!("parsed a request wire_shape refuses: {msg:02x?}"));
    assert_eq!(request.id, shape.id);
    assert_eq!(request.flags & FLAGS, shape.flags);
    assert_eq!(
        (lower(request.qname()), request.qtype, request.qclass),
        shape.question
    );
    assert_eq!(request.question().len() + HEADER_LEN, shape.question_end);
    assert_eq!(request.edns.map(opt_of), shape.opt);
}

/// Why hickory refuses a message wire reads; panics if it is none of the known reasons.
fn why_hickory_refuses(msg: &[u8]) -> Exception {
    let [_, an, ns, ar] = counts(msg);
    let question_end = plain_name_end(msg, HEADER_LEN).map_or(0, |end| end + 4);
    let mut decoder = BinDecoder::new(msg);
    decoder
        .read_slice(question_end)
        .expect("wire read the question");
    for (section, count) in [an, ns, ar].into_iter().enumerate() {
        for _ in 0..count {
            let start = decoder.index();
            let owner = skip_name(msg, start).expect("wire read the records");
            let rtype = u16_at(msg, owner).unwrap_or(0);
            let rdlen = usize::from(u16_at(msg, owner + 8).unwrap_or(0));
            if Name::read(&mut decoder).is_err() || decoder.index() != owner {
                return Exception::BadPointer;
            }
            let mut whole = BinDecoder::new(msg);
            whole.read_slice(start).expect("in bounds");
            let record = Record::read(&mut whole);
            let rtype = RecordType::from(rtype);
            if rtype == RecordType::OPT && section < 2 {
                return Exception::OptOutsideAdditional;
            }
            if matches!(rtype, RecordType::SIG | RecordType::TSIG) && section < 2 {
                return Exception::SigOutsideAdditional;
            }
            match record {
                Err(_) if rdlen > 0 => return Exception::BadRdata,
                Err(_) => panic!("hickory refuses an empty record of {msg:02x?}"),
                Ok(_) if rdlen == 0 && rtype != RecordType::OPT => return Exception::EmptyRdata,
                Ok(_) => {}
            }
            decoder = whole;
        }
    }
    panic!("hickory refuses {msg:02x?} for none of the known reasons");
}

/// Why wire refuses a message hickory reads; panics if it is none of the known reasons.
fn why_wire_refuses(msg: &[u8]) -> Exception {
    if counts(msg)[0] != 1 {
        return Exception::QuestionCount;
    }
    if plain_name_end(msg, HEADER_LEN).is_none() {
        return Exception::CompressedQuestion;
    }
    panic!("wire refuses {msg:02x?}, which hickory reads");
}

#[cfg(test)]
mod tests;
