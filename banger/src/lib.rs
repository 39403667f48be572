//! The library every banger program shares: bus names and object paths, D-Bus proxies and wire
//! types, the D-Bus error enum, polkit action ids, the install layout and its metadata, the
//! systemd Manager client, and the build identity.
//!
//! It must never hold policy that only one side may decide (authorization lives in
//! `bangerd-root`, the store in `bangerd`); it only names and describes things.

pub mod assets;
pub mod build_info;
pub mod error;
pub mod fsutil;
pub mod install;
pub mod names;
pub mod proxies;
pub mod release;
pub mod runtime;
pub mod systemd;
#[cfg(feature = "test-support")]
pub mod testbus;
pub mod time;
pub mod users;
pub mod virt;
pub mod vmm;
pub mod wire;
