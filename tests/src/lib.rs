//! Test support.

pub mod lab;
