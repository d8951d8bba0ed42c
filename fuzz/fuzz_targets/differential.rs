//! Fuzzes wire.rs against hickory-proto: arbitrary bytes read by both, which must agree wherever
//! both read them, or disagree for one of the documented reasons (`wire::differential`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oqsdns_core::wire::differential::compare(data);
});
