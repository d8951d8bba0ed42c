//! The oqsdns query path: access control, routing, upstream transport, forwarding, listeners.
#![deny(unsafe_code)] // allowed only in server/udp/mmsg.rs and upstream/mmsg.rs (sendmmsg, recvmmsg)

pub mod acl;
pub mod cache;
pub mod clients;
pub mod compose;
pub mod forward;
pub mod handler;
pub mod hashing;
pub mod health;
pub mod inflight;
pub mod local;
pub mod metrics;
pub mod prefix;
pub mod probe;
pub mod probe_result;
pub mod ratelimit;
pub mod reach;
pub mod rebind;
pub mod router;
pub mod runtime;
pub mod server;
mod sets;
pub mod state;
pub mod status_txt;
pub mod system;
pub mod throttle;
pub mod upstream;
pub mod wire;

pub use forward::Group;
pub use handler::Handler;
pub use runtime::Runtime;
pub use upstream::Transport;
