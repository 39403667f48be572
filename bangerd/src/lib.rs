//! bangerd, the owner daemon: runs as the user who installed banger and owns
//! `org.banger.Daemon1` on the system bus. It keeps VM and image records in its SQLite store and
//! registers every long-running operation, so that an update never swaps binaries under one.
//!
//! It never does anything that needs root: host plumbing is asked of `bangerd-root`.

pub mod agent;
pub mod core;
pub mod daemon1;
pub mod daemon_job;
pub mod dns;
pub mod guest;
pub mod host;
mod images;
pub mod jobs;
pub mod manager;
pub mod namegen;
pub mod objects;
pub mod ops;
pub mod pull;
mod pull_oci;
pub mod service;
pub mod store;
pub mod vms;
