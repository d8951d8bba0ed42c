//! Header bits and answer sizes end to end: the built binary in the lab, with the East preset,
//! real knotd servers at the guide's addresses and real dig.
//!
//! Each test builds its own namespaces (see `oqsdns_tests::lab`); without root or the tools it
//! says it was skipped, unless `OQSDNS_LAB=require`.

use oqsdns_tests::lab::{Area, Lab};

/// `dig +norec` then `dig +rec` for the same name, the second answered from the cache, and the
/// other way round for another name: each reply's `rd` is the one its query had (RFC 1035
/// §4.1.1), not the one of the query that filled the cache.
#[test]
fn rd_follows_each_query_through_the_cache() {
    let Some(lab) = Lab::start("rd_follows_each_query_through_the_cache", Area::East) else {
        return;
    };
    for (name, first) in [("www.lineauth.mnw", "+norec"), ("www.example.com", "+rec")] {
        let second = if first == "+norec" { "+rec" } else { "+norec" };
        for (i, option) in [first, second, first].into_iter().enumerate() {
            let answer = lab.query(name, "AAAA").option(option).run();
            assert_eq!(answer.status, "NOERROR", "{answer}");
            assert_eq!(answer.records.len(), 1, "{answer}");
            assert_eq!(
                answer.has_flag("rd"),
                option == "+rec",
                "query {i} for {name} with {option}:\n{answer}"
            );
            assert!(answer.has_flag("ra"), "{answer}");
        }
    }
}

/// The daemon's status with the East table is larger than 512 bytes: a client without EDNS gets
/// TC and no records over UDP (`+ignore` keeps dig from retrying), and the whole status over TCP
/// when dig retries as it does by default.
#[test]
fn the_status_fits_a_client_without_edns() {
    let Some(lab) = Lab::start("the_status_fits_a_client_without_edns", Area::East) else {
        return;
    };
    let status = |options: &[&str]| {
        let mut query = lab.query("status.oqsdns", "TXT").class("CH");
        for option in options {
            query = query.option(option);
        }
        query.run()
    };
    let whole = status(&["+tcp"]);
    assert!(whole.mentions("area=east"), "{whole}");
    let lines = whole.data("TXT");
    let size: usize = lines.iter().map(|l| l.len() + 13).sum::<usize>() + 31;
    assert!(
        size > 512,
        "the status must need more than 512 bytes: {whole}"
    );
    let short = status(&["+noedns", "+ignore"]);
    assert!(short.has_flag("tc"), "{short}");
    assert!(short.records.is_empty(), "{short}");
    let retried = status(&["+noedns"]);
    assert!(!retried.has_flag("tc"), "{retried}");
    // The same lines; the health states in them may have moved on meanwhile, and the probes of
    // the first seconds may have added state changes (`change=` lines) between the two queries.
    let what = |lines: Vec<String>| -> Vec<String> {
        lines
            .iter()
            .filter(|l| !l.starts_with("change="))
            .map(|l| l.split(" udp=").next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(what(retried.data("TXT")), what(lines), "{retried}");
}
