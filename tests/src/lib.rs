//! Test support for oqsdns: fake upstream servers, a DNS client, and the in-process daemon.

pub mod client;
pub mod daemon;
pub mod upstream;

pub use hickory_proto;
