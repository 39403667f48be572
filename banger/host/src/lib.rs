//! Host utilities every banger program shares: the install layout and its metadata, the files
//! an install writes (units, bus policy, polkit actions), the systemd Manager client, users and
//! groups, root-owned file reading and atomic writes, the services' bus runtime, the host's
//! virtualization, the build identity and the Cockpit page's place.
//!
//! Like `banger-api`, it decides no policy; unlike it, it touches this host.

pub mod assets;
pub mod build_info;
pub mod cockpit;
pub mod diskcopy;
pub mod fsutil;
pub mod install;
pub mod nat;
pub mod resolved;
pub mod runtime;
pub mod systemd;
#[cfg(feature = "test-support")]
pub mod testbus;
pub mod users;
pub mod virt;
