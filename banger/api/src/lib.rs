//! banger's D-Bus API, as Rust: bus names, object paths and polkit action ids, the wire types,
//! the rules for VM ids, VM names and image names, the `org.banger.Error.*` enum and the proxies
//! of `org.banger.Root1` and `org.banger.Daemon1`. The CLI, both services and any third-party
//! Rust client use it.
//!
//! It must never hold policy that only one side may decide (authorization lives in
//! `bangerd-root`, the store in `bangerd`), nor anything about this host: it only names and
//! describes what crosses the bus.

#[macro_use]
mod words;

pub mod error;
pub mod ids;
pub mod job;
pub mod journal;
pub mod names;
pub mod net;
pub mod objects;
pub mod options;
pub mod proxies;
pub mod time;
pub mod wire;
