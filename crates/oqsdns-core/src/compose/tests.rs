//! The messages composed here, read back by wire.rs and by hickory.

use super::*;
use hickory_proto::rr::rdata::A;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

#[test]
fn a_query_parses_as_a_request_with_its_question() {
    let (bytes, question) = query(
        0x1234,
        &name("HWeb.example."),
        RecordType::AAAA,
        DNSClass::CH,
    )
    .unwrap();
    let request = Request::parse(&bytes).unwrap();
    assert_eq!(request.id, 0x1234);
    assert!(request.recursion_desired());
    assert_eq!((request.qtype, request.qclass), (28, 3));
    assert_eq!(request.question(), question);
    assert_eq!(wire::display_name(request.qname()), "HWeb.example.");
    assert_eq!(
        request.edns.map(|e| e.payload),
        Some(wire::UPSTREAM_PAYLOAD)
    );
}

#[test]
fn an_authoritative_answer_copies_the_querys_header_and_question() {
    let (mut bytes, _) = query(9, &name("Www.Example."), RecordType::A, DNSClass::IN).unwrap();
    bytes[2] &= !0x01; // RD off
    bytes[3] |= 0x10; // CD on
    let request = Request::parse(&bytes).unwrap();
    let owner = qname(&request).unwrap();
    let answers = vec![record(
        &owner,
        DNSClass::IN,
        60,
        RData::A(A::new(192, 0, 2, 1)),
    )];
    let records = Records {
        answers,
        authorities: Vec::new(),
    };
    let bytes = authoritative(&request, Rcode::NoError, records, 512, 1232).unwrap();
    let message = Message::from_vec(&bytes).unwrap();
    let header = message.metadata;
    assert_eq!(header.id, 9);
    assert_eq!(header.message_type, MessageType::Response);
    assert!(header.authoritative && header.recursion_available && header.checking_disabled);
    assert!(!header.recursion_desired && !header.truncation);
    assert_eq!(message.queries[0].name().to_ascii(), "Www.Example.");
    assert_eq!(message.edns.as_ref().map(Edns::max_payload), Some(1232));
    let reading = read(&bytes).unwrap();
    assert_eq!(
        reading.addresses(),
        ["192.0.2.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(reading.rcode, ResponseCode::NoError);
}

#[test]
fn an_answer_too_large_for_the_limit_has_tc_and_no_records() {
    let (bytes, _) = query(9, &name("big.example."), RecordType::A, DNSClass::IN).unwrap();
    let request = Request::parse(&bytes).unwrap();
    let owner = qname(&request).unwrap();
    let answers: Vec<Record> = (0..40)
        .map(|i| record(&owner, DNSClass::IN, 60, RData::A(A::new(192, 0, 2, i))))
        .collect();
    let records = Records {
        answers,
        authorities: Vec::new(),
    };
    let bytes = authoritative(&request, Rcode::NoError, records, 512, 1232).unwrap();
    assert!(bytes.len() <= 512);
    let reading = read(&bytes).unwrap();
    assert!(reading.truncated && reading.answers.is_empty());
}
