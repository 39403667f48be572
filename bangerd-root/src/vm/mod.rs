//! Host plumbing for VMs: the bridge and taps, and each VM's VMM as its own transient systemd
//! unit `banger-vm-<id>.service` in `banger.slice` (see `docs/vm-plumbing.md`).
//!
//! The D-Bus adapter (`root1.rs`) authorizes and then calls [`VmHost`]; nothing here knows about
//! D-Bus callers. `config` reads `[vm]`/`[network]`, `options` checks what a caller asked for,
//! `safefs` reads the owner-writable state directory without following links, `net` drives
//! `ip`, `sandbox` confines each VMM, `launch` puts it together and `doctor` reports on it.
//!
//! This module must never run a VMM as its own child (a VM must outlive the helper), never open
//! a path below the state directory by name as root, and never leave a tap or a unit behind when
//! a start fails.

pub mod config;
pub mod doctor;
pub mod kvm;
pub mod launch;
pub mod nat;
pub mod net;
pub mod options;
pub mod safefs;
pub mod sandbox;
/// Test support, shared by the unit and the interface tests.
#[doc(hidden)]
pub mod testns;

pub use launch::{Programs, Started, VmError, VmHost, VmPaths};
