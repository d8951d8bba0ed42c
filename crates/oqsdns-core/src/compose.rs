//! Messages the daemon composes itself, written with hickory-proto: local answers, the status
//! answer, and the queries of probes and `oqsdns check`; and reading the answers those get.
//!
//! None of this is on the per-query path of forwarded or cached answers: those pass through
//! [`wire`](crate::wire) as bytes. Here every message is a hickory [`Message`] built from typed
//! records, so no offset, count or record type is written by hand.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use crate::wire::{self, Rcode, Request};

/// The answer section and the authority section of an answer of our own.
#[derive(Debug, Default)]
pub struct Records {
    /// Records that answer the question.
    pub answers: Vec<Record>,
    /// Records of the authority section (the SOA of a negative answer).
    pub authorities: Vec<Record>,
}

/// The question of `request` as hickory reads it, with the client's casing; `None` for a name
/// hickory does not take (see the differential test for which).
pub fn question(request: &Request<'_>) -> Option<Query> {
    Query::from_bytes(request.question()).ok()
}

/// The question's name of `request`, with the client's casing.
pub fn qname(request: &Request<'_>) -> Option<Name> {
    question(request).map(|q| q.name)
}

/// An authoritative answer of our own to `request` with `rcode` and `records`.
///
/// The header takes the ID, opcode, RD and CD from the query and sets QR, AA and RA; the question
/// is the client's, as written; an EDNS client gets our OPT record with `payload` and its own DO
/// bit. When the whole answer exceeds `limit` it goes without records and with TC set: the records
/// of one answer are one RRset, which a client must not use in part (RFC 2181 §9), and a client
/// asks again over TCP for a truncated answer. `None` if hickory cannot take the question or
/// write the records.
pub fn authoritative(
    request: &Request<'_>,
    rcode: Rcode,
    records: Records,
    limit: usize,
    payload: u16,
) -> Option<Vec<u8>> {
    let mut message = Message::new(request.id, MessageType::Response, OpCode::Query);
    let header = &mut message.metadata;
    header.authoritative = true;
    header.recursion_desired = request.recursion_desired();
    header.checking_disabled = request.checking_disabled();
    header.recursion_available = true;
    header.response_code = <ResponseCode as From<u16>>::from(rcode as u16);
    message.add_query(question(request)?);
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        edns.set_dnssec_ok(request.dnssec_ok());
        message.set_edns(edns);
    }
    message.answers = records.answers;
    message.authorities = records.authorities;
    let bytes = message.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    message.answers.clear();
    message.authorities.clear();
    message.metadata.truncation = true;
    message.to_vec().ok().filter(|short| short.len() <= limit)
}

/// A record owned by `name` in `class` with `ttl`.
pub fn record(name: &Name, class: DNSClass, ttl: u32, data: RData) -> Record {
    let mut record = Record::from_rdata(name.clone(), ttl, data);
    record.dns_class = class;
    record
}

/// A recursive query for `name` `rtype` in `class` with our EDNS record, for probes and
/// `oqsdns check`; also its question section in wire format, to check the reply against.
pub fn query(
    id: u16,
    name: &Name,
    rtype: RecordType,
    class: DNSClass,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let mut question = Query::query(name.clone(), rtype);
    question.set_query_class(class);
    message.add_query(question);
    let mut edns = Edns::new();
    edns.set_max_payload(wire::UPSTREAM_PAYLOAD);
    message.set_edns(edns);
    let bytes = message.to_vec().ok()?;
    let end = wire::question_end(&bytes)?;
    let question = bytes[wire::HEADER_LEN..end].to_vec();
    Some((bytes, question))
}

/// What an answer says, read by hickory: its response code, whether it was truncated, and the
/// records of its answer section.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The full response code (with EDNS's upper bits).
    pub rcode: ResponseCode,
    /// The TC bit.
    pub truncated: bool,
    /// The answer section.
    pub answers: Vec<Record>,
}

/// Reads a reply; `None` if hickory does not take it.
pub fn read(reply: &[u8]) -> Option<Reading> {
    let message = Message::from_vec(reply).ok()?;
    Some(Reading {
        rcode: message.metadata.response_code,
        truncated: message.metadata.truncation,
        answers: message.answers,
    })
}

impl Reading {
    /// The A and AAAA addresses of the answer section.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect()
    }

    /// The strings of every TXT record of the answer section, one string per record (its
    /// character-strings joined).
    pub fn txt(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
