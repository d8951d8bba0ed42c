//! Unit tests of the wire helpers on hand-made messages.

use super::*;

/// A query for `name` A IN with the given flags, and an OPT record when `edns` is given.
fn query(id: u16, name: &str, edns: Option<(u16, u32)>) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    out.extend(name_to_wire_keep_case(name));
    out.extend_from_slice(&[0, 1, 0, 1]);
    if let Some((payload, ttl)) = edns {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out
}

/// A response to `query` (flags `flags`) with `answers` A records, the name compressed, and the
/// given additional records appended raw.
fn response(query: &[u8], flags: u16, answers: u16, additional: &[&[u8]], arcount: u16) -> Vec<u8> {
    let question_end = plain_name_end(query, HEADER_LEN).unwrap() + 4;
    let mut out = query[..2].to_vec();
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&arcount.to_be_bytes());
    out.extend_from_slice(&query[HEADER_LEN..question_end].to_ascii_lowercase());
    for i in 0..answers {
        out.extend_from_slice(&[
            0xC0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 108, 65, i as u8,
        ]);
    }
    for record in additional {
        out.extend_from_slice(record);
    }
    out
}

const OPT_FROM_UPSTREAM: &[u8] = &[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 4, 0, 10, 0, 0]; // DO, NSID option
const GLUE_A: &[u8] = &[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1];

#[test]
fn parses_a_query_with_edns() {
    let bytes = query(7, "HWeb.Oqs.OnShiKaku.Org", Some((4096, 0x8000)));
    let request = Request::parse(&bytes).unwrap();
    assert_eq!(request.id, 7);
    assert_eq!(display_name(request.qname()), "HWeb.Oqs.OnShiKaku.Org.");
    assert_eq!(
        request.edns,
        Some(Edns {
            payload: 4096,
            dnssec_ok: true,
            version: 0,
            ext_rcode: 0
        })
    );
    assert_eq!(request.udp_limit(1232), 1232);
    assert_eq!(
        Request::parse(&query(7, "a.example", None))
            .unwrap()
            .udp_limit(1232),
        512
    );
    assert_eq!(
        Request::parse(&query(7, "a.example", Some((100, 0))))
            .unwrap()
            .udp_limit(1232),
        512
    );
}

#[test]
fn rejects_what_is_not_a_single_question_query() {
    let good = query(9, "a.example", Some((1232, 0)));
    assert!(matches!(Request::parse(&good[..11]), Err(Rejected::Drop)));
    let mut response = good.clone();
    response[2] |= 0x80;
    assert!(matches!(Request::parse(&response), Err(Rejected::Drop)));
    let rcode_of = |bytes: &[u8]| match Request::parse(bytes) {
        Err(Rejected::Reply(reply)) => (u16::from_be_bytes([reply[0], reply[1]]), reply[3] & 0xF),
        other => panic!("expected an error reply, got {other:?}"),
    };
    let mut two = good.clone();
    two[5] = 2;
    assert_eq!(rcode_of(&two), (9, Rcode::FormErr as u8));
    let mut double_opt = good.clone();
    double_opt[11] = 2;
    double_opt.extend_from_slice(&good[good.len() - 11..]);
    assert_eq!(rcode_of(&double_opt), (9, Rcode::FormErr as u8));
    let mut long_label = good.clone();
    long_label[12] = 64;
    assert_eq!(rcode_of(&long_label), (9, Rcode::FormErr as u8));
    let mut opcode = good.clone();
    opcode[2] |= 5 << 3; // UPDATE
    assert_eq!(rcode_of(&opcode), (9, Rcode::NotImp as u8));
    let badvers = query(9, "a.example", Some((1232, 0x0001_0000)));
    let Err(Rejected::Reply(reply)) = Request::parse(&badvers) else {
        panic!()
    };
    assert_eq!(reply[3] & 0xF, 0);
    assert_eq!(
        reply[reply.len() - 6],
        1,
        "BADVERS is extended rcode 16: 1 in the OPT's high byte"
    );
}

#[test]
fn an_answer_keeps_the_clients_id_case_and_gets_ra() {
    let client = query(0xBEEF, "HWeb.Example", None);
    let request = Request::parse(&client).unwrap();
    let upstream = response(&request.upstream_query(0x1111), 0x8500, 3, &[], 0);
    assert!(check_reply(&upstream, 0x1111, request.question()).is_ok());
    let answer = request.answer_from(&upstream, 512, 1232).unwrap();
    assert_eq!(answer[..2], [0xBE, 0xEF]);
    assert_eq!(
        u16::from_be_bytes([answer[2], answer[3]]),
        0x8580,
        "QR AA RD RA"
    );
    assert_eq!(
        &answer[12..12 + request.question().len()],
        request.question()
    );
    assert_eq!(
        answer[12 + request.question().len()..],
        upstream[12 + request.question().len()..]
    );
}

#[test]
fn the_upstream_opt_is_replaced_for_edns_clients_and_removed_for_others() {
    for client_edns in [None, Some((4096, 0x8000))] {
        let client = query(1, "a.example", client_edns);
        let request = Request::parse(&client).unwrap();
        let upstream = response(&client, 0x8180, 2, &[OPT_FROM_UPSTREAM, GLUE_A], 2);
        let answer = request.answer_from(&upstream, 4096, 1232).unwrap();
        let arcount = u16::from_be_bytes([answer[10], answer[11]]);
        let opt = find_opt(&answer, request.question_end).unwrap();
        match client_edns {
            None => {
                assert_eq!(arcount, 1, "the glue stays, the OPT goes");
                assert!(opt.is_none());
                assert!(answer.ends_with(GLUE_A));
            }
            Some(_) => {
                assert_eq!(arcount, 2);
                let edns = edns_of(&answer, opt.unwrap());
                assert_eq!(
                    (edns.payload, edns.dnssec_ok),
                    (1232, true),
                    "our size, upstream's DO"
                );
                assert_eq!(
                    answer[opt.unwrap().rtype_at + 8..opt.unwrap().end],
                    [0, 0],
                    "no upstream options"
                );
            }
        }
    }
}

#[test]
fn too_large_for_the_client_becomes_truncated_with_the_question() {
    let client = query(5, "big.example", None);
    let request = Request::parse(&client).unwrap();
    let upstream = response(&client, 0x8580, 40, &[], 0);
    assert!(upstream.len() > 512);
    let answer = request.answer_from(&upstream, 512, 1232).unwrap();
    assert_eq!(answer.len(), 12 + request.question().len());
    assert_eq!(answer[2] & 0x02, 0x02, "TC");
    assert_eq!(answer[2] & 0x04, 0x04, "AA kept");
    assert_eq!(answer[4..12], [0, 1, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn replies_must_match_id_and_question() {
    let client = query(5, "A.Example", None);
    let request = Request::parse(&client).unwrap();
    let upstream = response(&request.upstream_query(77), 0x8180, 1, &[], 0);
    assert_eq!(
        check_reply(&upstream, 78, request.question()),
        Err(Mismatch::Id)
    );
    let other = response(&query(77, "b.example", None), 0x8180, 1, &[], 0);
    assert_eq!(
        check_reply(&other, 77, request.question()),
        Err(Mismatch::Question)
    );
    assert_eq!(
        check_reply(&client, 5, request.question()),
        Err(Mismatch::NotResponse)
    );
    let info = check_reply(&upstream, 77, request.question()).unwrap();
    assert_eq!(
        info,
        ReplyInfo {
            rcode: 0,
            truncated: false
        }
    );
}

#[test]
fn malformed_replies_are_not_passed_on() {
    let client = query(5, "a.example", None);
    let request = Request::parse(&client).unwrap();
    let mut upstream = response(&client, 0x8180, 2, &[], 0);
    upstream.truncate(upstream.len() - 3);
    assert!(request.answer_from(&upstream, 4096, 1232).is_none());
}

#[test]
fn answer_from_refuses_what_is_not_a_reply_to_the_question_instead_of_panicking() {
    let client = query(5, "a.example", Some((1232, 0)));
    let request = Request::parse(&client).unwrap();
    let good = response(&client, 0x8180, 2, &[], 0);
    assert!(request.answer_from(&good, 4096, 1232).is_some());
    // Cut anywhere: too short for the header, the question, or the records.
    for len in 0..good.len() {
        assert!(
            request.answer_from(&good[..len], 4096, 1232).is_none(),
            "cut at {len}"
        );
    }
    // Counts of zero but no question at all (the old code sliced past the end here).
    let mut bare = good[..HEADER_LEN].to_vec();
    bare[4..12].fill(0);
    assert!(request.answer_from(&bare, 4096, 1232).is_none());
    // Not a response, another question, two questions.
    let mut query_bit = good.clone();
    query_bit[2] &= 0x7F;
    assert!(request.answer_from(&query_bit, 4096, 1232).is_none());
    let other = response(&query(5, "b.example", None), 0x8180, 1, &[], 0);
    assert!(request.answer_from(&other, 4096, 1232).is_none());
    let mut longer = response(&query(5, "a.example.org", None), 0x8180, 1, &[], 0);
    assert!(request.answer_from(&longer, 4096, 1232).is_none());
    longer[5] = 2;
    assert!(request.answer_from(&longer, 4096, 1232).is_none());
    // An additional count at the limit, with a client OPT to add: no room in the header.
    let mut full = good.clone();
    full[10..12].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(request.answer_from(&full, 4096, 1232).is_none());
}

#[test]
fn an_answer_takes_rd_cd_and_the_opcode_from_the_client_not_from_the_reply() {
    // The reply a cache holds was asked with RD clear and says so; a client that sets RD and CD
    // must see both set, and one that sets neither must see neither.
    for (client_flags, expect) in [(0x0110u16, 0x8590u16), (0x0000, 0x8480)] {
        let mut client = query(0x4242, "A.Example", None);
        client[2..4].copy_from_slice(&client_flags.to_be_bytes());
        let request = Request::parse(&client).unwrap();
        // The opposite RD and CD, opcode STATUS, the Z bit: none of it reaches the client.
        let reply_flags = 0x8400 | (!client_flags & 0x0110) | (2 << 11) | 0x0040;
        let upstream = response(&client, reply_flags, 1, &[], 0);
        for limit in [512, 20] {
            let answer = request.answer_from(&upstream, limit, 1232).unwrap();
            let flags = u16::from_be_bytes([answer[2], answer[3]]);
            let tc = if limit == 20 { TC } else { 0 };
            assert_eq!(
                flags,
                expect | tc,
                "{flags:#06x} for a client's {client_flags:#06x}"
            );
            assert_eq!(answer[..2], [0x42, 0x42]);
        }
    }
}

#[test]
fn ad_reaches_only_a_client_that_asked_for_dnssec() {
    for (edns, ad_flag, expect_ad) in [
        (None, 0, false),
        (None, AD, true),
        (Some((1232, 0x8000)), 0, true),
        (Some((1232, 0)), 0, false),
    ] {
        let mut client = query(1, "a.example", edns);
        client[3] |= ad_flag as u8;
        let request = Request::parse(&client).unwrap();
        let upstream = response(&client, 0x81A0, 1, &[], 0); // QR RD RA AD
        let answer = request.answer_from(&upstream, 4096, 1232).unwrap();
        assert_eq!(answer[3] & AD as u8 != 0, expect_ad, "{edns:?} {ad_flag}");
    }
}

#[test]
fn our_replies_copy_rd_cd_and_do_from_the_query() {
    let mut client = query(3, "a.example", Some((1232, 0x8000)));
    client[2..4].copy_from_slice(&0x0010u16.to_be_bytes()); // CD, no RD
    let request = Request::parse(&client).unwrap();
    let reply = request.reply(Rcode::Refused, 0, 1232);
    assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 0x8095);
    let opt = find_opt(&reply, request.question_end).unwrap().unwrap();
    assert!(edns_of(&reply, opt).dnssec_ok);
}

#[test]
fn the_record_types_named_here_are_hickorys() {
    use hickory_proto::rr::RecordType;
    for (ours, theirs) in [
        (TYPE_OPT, RecordType::OPT),
        (TYPE_A, RecordType::A),
        (TYPE_AAAA, RecordType::AAAA),
    ] {
        assert_eq!(ours, u16::from(theirs), "{theirs}");
    }
}
