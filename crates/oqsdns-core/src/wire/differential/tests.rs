//! The differential test on 20,000 seeded messages: arbitrary bytes, real queries and replies
//! mutated, and messages hickory builds, as they are and mutated.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, MX, NS, NULL, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::super::invariants::{garbage_query, garbage_reply, seed, valid_query, Prng};
use super::*;

const NAMES: [&str; 6] = [
    "hweb.oqs.onshikaku.org.",
    "www.example.com.",
    "a.b.c.d.e.f.example.",
    "x.",
    ".",
    "flets-east.jp.",
];

fn name(rng: &mut Prng) -> Name {
    let mut text = NAMES[rng.below(NAMES.len())].to_string();
    if rng.below(2) == 0 {
        text = text
            .chars()
            .map(|c| {
                if rng.below(2) == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
    }
    Name::from_ascii(text).unwrap()
}

fn rdata(rng: &mut Prng) -> RData {
    match rng.below(9) {
        0 => RData::A(Ipv4Addr::from(rng.next_u64() as u32).into()),
        1 => RData::AAAA(Ipv6Addr::from(u128::from(rng.next_u64())).into()),
        2 => RData::CNAME(CNAME(name(rng))),
        3 => RData::NS(NS(name(rng))),
        4 => RData::MX(MX::new(rng.next_u64() as u16, name(rng))),
        5 => {
            let n = 1 + rng.below(3);
            RData::TXT(TXT::new((0..n).map(|i| format!("line {i}")).collect()))
        }
        6 => RData::SOA(SOA::new(name(rng), name(rng), 1, 3600, 600, 86400, 300)),
        7 => {
            let n = 1 + rng.below(16);
            RData::NULL(NULL::with(rng.bytes(n)))
        }
        _ => RData::A(Ipv4Addr::new(10, 108, 65, rng.byte()).into()),
    }
}

fn records(rng: &mut Prng, most: usize) -> Vec<Record> {
    let n = rng.below(most);
    (0..n)
        .map(|_| {
            let ttl = rng.next_u64() as u32 >> rng.below(32);
            Record::from_rdata(name(rng), ttl, rdata(rng))
        })
        .collect()
}

/// A message hickory builds: a query or a reply, one question (now and then none or two),
/// records in every section, and often EDNS.
fn built(rng: &mut Prng) -> Vec<u8> {
    let kind = [MessageType::Query, MessageType::Response][rng.below(2)];
    let mut message = Message::new(rng.next_u64() as u16, kind, OpCode::Query);
    let m = &mut message.metadata;
    m.recursion_desired = rng.below(2) == 0;
    m.recursion_available = rng.below(2) == 0;
    m.authoritative = rng.below(2) == 0;
    m.authentic_data = rng.below(2) == 0;
    m.checking_disabled = rng.below(2) == 0;
    m.response_code = ResponseCode::from_low(rng.byte() % 6);
    let questions = [1, 1, 1, 1, 1, 1, 0, 2][rng.below(8)];
    for _ in 0..questions {
        let qtype = [
            RecordType::A,
            RecordType::AAAA,
            RecordType::TXT,
            RecordType::ANY,
        ][rng.below(4)];
        let mut query = Query::query(name(rng), qtype);
        if rng.below(8) == 0 {
            query.set_query_class(DNSClass::CH);
        }
        message.add_query(query);
    }
    if kind == MessageType::Response {
        message.answers = records(rng, 6);
        message.authorities = records(rng, 3);
        message.additionals = records(rng, 3);
    }
    if rng.below(3) != 0 {
        let mut edns = Edns::new();
        edns.set_max_payload([512, 1232, 4096, 100][rng.below(4)]);
        edns.set_dnssec_ok(rng.below(2) == 0);
        message.set_edns(edns);
    }
    message.to_vec().unwrap()
}

/// One to three mutations of the kinds that matter to a reader: bit flips, a byte set, cut
/// short, a byte inserted or removed, a count changed, a compression pointer written somewhere.
fn mutate(rng: &mut Prng, mut msg: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(3) {
        if msg.is_empty() {
            break;
        }
        let at = rng.below(msg.len());
        match rng.below(7) {
            0 => msg[at] ^= 1 << rng.below(8),
            1 => msg[at] = rng.byte(),
            2 => msg.truncate(at),
            3 => msg.insert(at, rng.byte()),
            4 => {
                msg.remove(at);
            }
            5 if msg.len() >= HEADER_LEN => {
                let count = 4 + 2 * rng.below(4) + 1;
                msg[count] = msg[count].wrapping_add([1, 255][rng.below(2)]);
            }
            _ if at + 1 < msg.len() => {
                msg[at] = 0xC0 | (rng.byte() & 0x3F) >> 4;
                msg[at + 1] = rng.byte();
            }
            _ => {}
        }
    }
    msg
}

#[test]
fn wire_and_hickory_agree_on_twenty_thousand_messages() {
    let seed = seed(0xD1FF_2026);
    let mut rng = Prng::new(seed);
    let mut seen: BTreeMap<(&str, Outcome), usize> = BTreeMap::new();
    for i in 0..20_000 {
        let (kind, msg) = match i % 5 {
            0 => {
                let n = rng.below(300);
                ("arbitrary", rng.bytes(n))
            }
            1 => ("query", garbage_query(&mut rng)),
            2 => {
                let query = valid_query(&mut rng);
                ("reply", garbage_reply(&mut rng, &query))
            }
            3 => ("built", built(&mut rng)),
            _ => {
                let msg = built(&mut rng);
                ("built, mutated", mutate(&mut rng, msg))
            }
        };
        let outcome = std::panic::catch_unwind(|| compare(&msg));
        let Ok(outcome) = outcome else {
            panic!("message {i} of seed {seed} (OQSDNS_SEED={seed} reproduces): {msg:02x?}");
        };
        *seen.entry((kind, outcome)).or_default() += 1;
    }
    let count = |kind: &str, outcome: Outcome| seen.get(&(kind, outcome)).copied().unwrap_or(0);
    // Every message hickory builds with one question is read alike: no exception applies.
    let questions = count("built", Outcome::OnlyHickory(Exception::QuestionCount));
    assert_eq!(
        count("built", Outcome::Agree) + questions,
        4000,
        "built messages: {seen:?}"
    );
    // Not vacuous: many mutated messages still read alike, and each exception is met.
    assert!(count("built, mutated", Outcome::Agree) > 400, "{seen:?}");
    assert!(count("reply", Outcome::Agree) > 1500, "{seen:?}");
    for exception in [
        Exception::QuestionCount,
        Exception::BadPointer,
        Exception::BadRdata,
        Exception::EmptyRdata,
    ] {
        let total: usize = seen
            .iter()
            .filter(|((_, o), _)| matches!(o, Outcome::OnlyWire(e) | Outcome::OnlyHickory(e) if *e == exception))
            .map(|(_, n)| n)
            .sum();
        assert!(total > 0, "{exception:?} never met: {seen:?}");
    }
}

#[test]
fn each_exception_on_a_message_made_for_it() {
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("a.example.").unwrap(),
        RecordType::A,
    ));
    let plain = query.to_vec().unwrap();
    assert_eq!(compare(&plain), Outcome::Agree);

    let mut two = query.clone();
    two.add_query(Query::query(
        Name::from_ascii("b.example.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        compare(&two.to_vec().unwrap()),
        Outcome::OnlyHickory(Exception::QuestionCount)
    );

    // A reply with one A record whose owner points at the question.
    let mut reply = plain.clone();
    reply[2] |= 0x80;
    reply[7] = 1;
    reply.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    assert_eq!(compare(&reply), Outcome::Agree);
    let mut forward = reply.clone();
    let owner = plain.len();
    forward[owner + 1] = 200; // points past the end
    assert_eq!(compare(&forward), Outcome::OnlyWire(Exception::BadPointer));
    let mut five = reply.clone();
    five[owner + 11] = 5;
    five.push(9);
    assert_eq!(compare(&five), Outcome::OnlyWire(Exception::BadRdata));
    let mut empty = reply.clone();
    empty[owner + 11] = 0;
    empty.truncate(empty.len() - 4);
    assert_eq!(compare(&empty), Outcome::OnlyWire(Exception::EmptyRdata));
    let mut opt_in_answer = reply.clone();
    opt_in_answer.truncate(owner);
    opt_in_answer.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        compare(&opt_in_answer),
        Outcome::OnlyWire(Exception::OptOutsideAdditional)
    );

    // Names of 255 bytes (the most, RFC 1035 §3.1) and of 256: both readers draw the line there.
    for (last, expect) in [(61, Outcome::Agree), (62, Outcome::BothRefuse)] {
        let mut long = plain[..HEADER_LEN].to_vec();
        for len in [63, 63, 63, last] {
            long.push(len);
            long.extend(std::iter::repeat_n(b'x', usize::from(len)));
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(compare(&long), expect, "a last label of {last}");
    }

    let mut sig_in_answer = reply.clone();
    sig_in_answer[owner + 3] = 250; // TSIG
    assert_eq!(
        compare(&sig_in_answer),
        Outcome::OnlyWire(Exception::SigOutsideAdditional)
    );

    // A question name that is a pointer into the header, whose ID and flags spell `a.`.
    let mut compressed = vec![0x01, b'a', 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    compressed.extend_from_slice(&[0xC0, 0, 0, 1, 0, 1]);
    assert_eq!(
        compare(&compressed),
        Outcome::OnlyHickory(Exception::CompressedQuestion)
    );
}
