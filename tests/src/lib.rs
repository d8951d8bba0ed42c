//! Test support for oqsdns: fake upstream servers, a DNS client, the in-process daemon, a real
//! Prometheus server, and the end-to-end lab in network namespaces.
#![forbid(unsafe_code)]

pub mod client;
pub mod daemon;
pub mod http;
pub mod lab;
pub mod prometheus;
pub mod upstream;

pub use hickory_proto;
