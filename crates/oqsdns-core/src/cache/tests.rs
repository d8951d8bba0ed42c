//! Cache behaviour on messages built with hickory-proto.

use super::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

const LIMITS: Limits = Limits {
    entries: 1000,
    min_ttl: 0,
    max_ttl: 86_400,
    keep_stale: Duration::from_secs(86_400),
};

fn query(name: &str, dnssec_ok: bool) -> Vec<u8> {
    let mut q = Message::query();
    q.metadata.id = 1;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_dnssec_ok(dnssec_ok);
    q.edns = Some(edns);
    q.to_vec().unwrap()
}

fn reply(
    name: &str,
    code: ResponseCode,
    answer_ttl: Option<u32>,
    soa: Option<(u32, u32)>,
) -> Vec<u8> {
    let mut m = Message::new(1, MessageType::Response, OpCode::Query);
    m.metadata.response_code = code;
    let owner = Name::from_ascii(name).unwrap();
    m.add_query(Query::query(owner.clone(), RecordType::A));
    if let Some(ttl) = answer_ttl {
        m.add_answer(Record::from_rdata(
            owner.clone(),
            ttl,
            RData::A(A::new(10, 108, 65, 21)),
        ));
        m.add_answer(Record::from_rdata(
            owner,
            ttl + 100,
            RData::A(A::new(10, 108, 64, 217)),
        ));
    }
    if let Some((ttl, minimum)) = soa {
        let zone = Name::from_ascii("example.").unwrap();
        let rdata = SOA::new(
            zone.clone(),
            Name::from_ascii("h.example.").unwrap(),
            1,
            2,
            3,
            4,
            minimum,
        );
        m.add_authority(Record::from_rdata(zone, ttl, RData::SOA(rdata)));
    }
    m.to_vec().unwrap()
}

fn ttls(bytes: &[u8]) -> Vec<u32> {
    Message::from_vec(bytes)
        .unwrap()
        .all_sections()
        .map(|r| r.ttl)
        .collect()
}

fn key_of(q: &[u8]) -> Key {
    key(&Request::parse(q).unwrap())
}

#[test]
fn ttls_count_down_and_expired_answers_are_served_stale_with_ttl_30() {
    let cache = Cache::new(LIMITS);
    let t0 = Instant::now();
    cache.insert(
        &key_of(&query("hweb.example.", false)),
        &reply("hweb.example.", ResponseCode::NoError, Some(300), None),
        7,
        t0,
    );
    let hit = cache
        .get(
            &key_of(&query("HWEB.Example.", false)),
            7,
            t0 + Duration::from_secs(100),
        )
        .unwrap();
    assert_eq!(
        ttls(&hit.bytes),
        [200, 300],
        "each TTL counts down from its own value"
    );
    assert!(!hit.stale);
    assert!(cache
        .get(
            &key_of(&query("hweb.example.", false)),
            7,
            t0 + Duration::from_secs(301)
        )
        .is_none());
    let stale = cache
        .get_stale(
            &key_of(&query("hweb.example.", false)),
            7,
            t0 + Duration::from_secs(3600),
            Duration::from_secs(86_400),
        )
        .unwrap();
    assert!(stale.stale);
    assert_eq!(ttls(&stale.bytes), [30, 30]);
    let too_old = t0 + Duration::from_secs(300 + 86_400 + 1);
    assert!(cache
        .get_stale(
            &key_of(&query("hweb.example.", false)),
            7,
            too_old,
            Duration::from_secs(86_400)
        )
        .is_none());
}

#[test]
fn the_key_ignores_case_but_not_the_dnssec_bit() {
    let cache = Cache::new(LIMITS);
    let t0 = Instant::now();
    cache.insert(
        &key_of(&query("a.example.", false)),
        &reply("a.example.", ResponseCode::NoError, Some(60), None),
        1,
        t0,
    );
    assert!(cache
        .get(&key_of(&query("A.EXAMPLE.", false)), 1, t0)
        .is_some());
    assert!(cache
        .get(&key_of(&query("a.example.", true)), 1, t0)
        .is_none());
}

#[test]
fn negative_answers_live_for_the_soa_minimum() {
    let cache = Cache::new(LIMITS);
    let t0 = Instant::now();
    let k = key_of(&query("missing.example.", false));
    cache.insert(
        &k,
        &reply(
            "missing.example.",
            ResponseCode::NXDomain,
            None,
            Some((3600, 120)),
        ),
        1,
        t0,
    );
    let hit = cache.get(&k, 1, t0 + Duration::from_secs(20)).unwrap();
    assert_eq!(
        ttls(&hit.bytes),
        [3580],
        "the SOA's own TTL counts down too"
    );
    assert!(cache.get(&k, 1, t0 + Duration::from_secs(119)).is_some());
    assert!(
        cache.get(&k, 1, t0 + Duration::from_secs(121)).is_none(),
        "gone after the SOA minimum"
    );
    // NODATA without an SOA cannot be timed; SERVFAIL and REFUSED are not cached.
    for (code, soa) in [
        (ResponseCode::NoError, None),
        (ResponseCode::ServFail, None),
        (ResponseCode::Refused, Some((60, 60))),
    ] {
        let k = key_of(&query("other.example.", false));
        cache.insert(&k, &reply("other.example.", code, None, soa), 1, t0);
        assert!(cache.get(&k, 1, t0).is_none(), "{code:?} cached");
    }
}

#[test]
fn an_answer_from_another_route_is_a_miss() {
    let cache = Cache::new(LIMITS);
    let t0 = Instant::now();
    let k = key_of(&query("a.example.", false));
    cache.insert(
        &k,
        &reply("a.example.", ResponseCode::NoError, Some(60), None),
        1,
        t0,
    );
    assert!(cache.get(&k, 2, t0).is_none());
}

#[test]
fn the_number_of_entries_is_bounded() {
    let cache = Cache::new(Limits {
        entries: 100,
        ..LIMITS
    });
    let t0 = Instant::now();
    for i in 0..5000u32 {
        let name = format!("n{i}.example.");
        cache.insert(
            &key_of(&query(&name, false)),
            &reply(&name, ResponseCode::NoError, Some(60 + i % 7), None),
            1,
            t0,
        );
    }
    assert!(cache.len() <= 100 + SHARDS, "{} entries", cache.len());
    let disabled = Cache::new(Limits {
        entries: 0,
        ..LIMITS
    });
    let k = key_of(&query("a.example.", false));
    disabled.insert(
        &k,
        &reply("a.example.", ResponseCode::NoError, Some(60), None),
        1,
        t0,
    );
    assert!(disabled.is_empty() && disabled.get(&k, 1, t0).is_none());
}

#[test]
fn a_full_cache_keeps_the_newest_answers() {
    // One new name a millisecond, each answer living an hour: long after the cache filled, the
    // most recent half of what it can hold must all be there. Eviction drops the answer expiring
    // soonest among a random sample of entries; a sample always taken from the same end of the
    // table let old answers sit forever while each new one was evicted almost at once.
    let entries = 1600;
    let cache = Cache::new(Limits {
        entries,
        keep_stale: Duration::ZERO,
        ..LIMITS
    });
    let t0 = Instant::now();
    let names = 20_000u32;
    let at = |i: u32| t0 + Duration::from_millis(u64::from(i));
    for i in 0..names {
        let name = format!("n{i}.example.");
        cache.insert(
            &key_of(&query(&name, false)),
            &reply(&name, ResponseCode::NoError, Some(3600), None),
            1,
            at(i),
        );
    }
    let now = at(names);
    let newest = entries as u32 / 2;
    let kept = (names - newest..names)
        .filter(|i| {
            let k = key_of(&query(&format!("n{i}.example."), false));
            cache.get(&k, 1, now).is_some()
        })
        .count();
    assert!(
        kept >= newest as usize * 99 / 100,
        "{kept} of the newest {newest} answers kept"
    );
    assert!(cache.len() <= entries, "{} entries", cache.len());
}

#[test]
fn eviction_drops_the_answers_expiring_soonest() {
    // Each shard full of answers living an hour, then as many living a second, with some of the
    // first answered anew for two hours (an entry replaced in its slot), then a quarter as many
    // living an hour and a half: the second-long ones go first, then those of an hour.
    let entries = 16 * 40;
    let cache = Cache::new(Limits {
        entries,
        keep_stale: Duration::ZERO,
        ..LIMITS
    });
    let t0 = Instant::now();
    let put = |name: &str, ttl: u32| {
        cache.insert(
            &key_of(&query(name, false)),
            &reply(name, ResponseCode::NoError, Some(ttl), None),
            1,
            t0,
        );
    };
    let held = |name: &str| cache.get(&key_of(&query(name, false)), 1, t0).is_some();
    for i in 0..entries {
        put(&format!("long{i}.example."), 3600);
    }
    for i in 0..entries {
        put(&format!("short{i}.example."), 1);
        put(&format!("long{}.example.", i % 50), 7200);
    }
    for i in 0..entries / 4 {
        put(&format!("late{i}.example."), 5400);
    }
    let late = (0..entries / 4)
        .filter(|i| held(&format!("late{i}.example.")))
        .count();
    let short = (0..entries)
        .filter(|i| held(&format!("short{i}.example.")))
        .count();
    assert!(
        late >= entries / 4 * 9 / 10,
        "{late} of {} late answers kept",
        entries / 4
    );
    assert!(short < entries / 4, "{short} short-lived answers kept");
}

#[test]
fn min_and_max_ttl_bound_the_lifetime() {
    let cache = Cache::new(Limits {
        min_ttl: 60,
        max_ttl: 120,
        ..LIMITS
    });
    let t0 = Instant::now();
    let short = key_of(&query("short.example.", false));
    cache.insert(
        &short,
        &reply("short.example.", ResponseCode::NoError, Some(5), None),
        1,
        t0,
    );
    assert!(
        cache.get(&short, 1, t0 + Duration::from_secs(30)).is_some(),
        "min_ttl keeps it 60 s"
    );
    let long = key_of(&query("long.example.", false));
    cache.insert(
        &long,
        &reply("long.example.", ResponseCode::NoError, Some(3600), None),
        1,
        t0,
    );
    assert_eq!(ttls(&cache.get(&long, 1, t0).unwrap().bytes), [120, 120]);
    assert!(cache.get(&long, 1, t0 + Duration::from_secs(121)).is_none());
}
