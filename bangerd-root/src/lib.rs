//! bangerd-root, the narrow root helper: owns `org.banger.Root1` on the system bus, authorizes
//! every state-changing call (polkit, or UID trust for the owner's daemon), and does the work
//! that needs root: units through systemd's D-Bus API, the VM bridge and taps with iproute2's
//! `ip` (see [`vm`]).
//!
//! It must never run `systemctl` or any other tool to manage units, and never let a D-Bus caller
//! choose where updates come from or which keys are trusted.

pub mod bus;
pub mod catalog;
pub mod config;
pub mod core;
pub mod limits;
pub mod selftest;
pub mod service;
pub mod update;
pub mod vm;
pub mod vmm;
