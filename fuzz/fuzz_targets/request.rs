//! Fuzzes the request path: a client's query and an upstream reply as arbitrary bytes through
//! `Request::parse`, `upstream_query`, `reply`, `check_reply` and `answer_from`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oqsdns_core::wire::invariants::exercise(data);
});
