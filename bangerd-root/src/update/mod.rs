//! The self-update engine (see docs/update-protocol.md).
//!
//! `config` says where releases come from and which keys are trusted (root-owned files and the
//! binary only), downloads go through `banger_fetch` with caps and timeouts, `stage` extracts strictly,
//! `journal` records and performs the swap, `engine` drives it all, `job` is what clients see
//! (published through the bus layer's [`job::JobPublisher`]) and `daemon` is the owner's daemon
//! as the engine asks it. Nothing here imports zbus: the bus layer (`crate::bus`) exports and
//! emits. It must never let a D-Bus caller influence the source or the keys, and never leave a
//! mix of old and new files once services are back.

pub mod config;
pub mod daemon;
pub mod engine;
pub mod job;
pub mod journal;
pub mod paths;
pub mod stage;
pub mod state;
