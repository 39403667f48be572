//! Structures sent over the bus. Field order is the D-Bus signature; keep it additive.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// One of banger's systemd units as seen by the root helper: `(sssu)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ServiceStatus {
    /// Unit name, e.g. `bangerd.service`.
    pub unit: String,
    /// systemd `ActiveState` (`active`, `inactive`, `failed`, …).
    pub active_state: String,
    /// systemd `SubState` (`running`, `dead`, …).
    pub sub_state: String,
    /// Main PID, 0 when not running.
    pub main_pid: u32,
}

/// An operation registered with the owner daemon: `(ssstb)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct OperationInfo {
    /// Opaque id.
    pub id: String,
    /// What it is, e.g. `vm.create`.
    pub kind: String,
    /// Where it is, e.g. `booting`.
    pub stage: String,
    /// Start time, seconds since the Unix epoch.
    pub started: u64,
    /// Whether it has finished.
    pub done: bool,
}

/// Severity of one doctor check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// All good.
    Pass,
    /// Works, but worth knowing.
    Warn,
    /// Broken; `banger doctor` exits non-zero.
    Fail,
}

impl Level {
    /// The word printed at the start of a doctor line.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }

    /// Parses `PASS`/`WARN`/`FAIL`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PASS" => Some(Level::Pass),
            "WARN" => Some(Level::Warn),
            "FAIL" => Some(Level::Fail),
            _ => None,
        }
    }
}

/// One doctor finding: `(sss)` = level, check name, detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DoctorCheck {
    /// `PASS`, `WARN` or `FAIL`.
    pub level: String,
    /// Short name of what was checked, e.g. `store`.
    pub check: String,
    /// What was found, and what to do about it when it is not a pass.
    pub detail: String,
}

impl DoctorCheck {
    /// A finding at `level`.
    pub fn new(level: Level, check: impl Into<String>, detail: impl Into<String>) -> Self {
        DoctorCheck {
            level: level.as_str().into(),
            check: check.into(),
            detail: detail.into(),
        }
    }

    /// The parsed level; an unknown word counts as a failure.
    pub fn level(&self) -> Level {
        Level::parse(&self.level).unwrap_or(Level::Fail)
    }
}

impl std::fmt::Display for DoctorCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.level().as_str(),
            self.check,
            self.detail
        )
    }
}

/// An image as listed by the owner daemon: `(sssstxas)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ImageInfo {
    /// Name, unique.
    pub name: String,
    /// SHA-256 of the kernel, lowercase hex.
    pub kernel_sha256: String,
    /// SHA-256 of the initrd, "" when the image has none.
    pub initrd_sha256: String,
    /// SHA-256 of the root filesystem, "" when the image has none.
    pub rootfs_sha256: String,
    /// Bytes stored for the image, all files together.
    pub bytes: u64,
    /// Import time, seconds since the Unix epoch.
    pub created: i64,
    /// Names of the VMs made from it.
    pub used_by: Vec<String>,
}

/// Where image catalogs come from, as the root helper reads `[catalog]` of
/// `/etc/banger/config.toml` for the owner's daemon: `(sa(ss)ttttas)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CatalogSettings {
    /// URL of the signed index, "" when no catalog is configured.
    pub url: String,
    /// Keys trusted for the index: (where the key comes from, PEM public key).
    pub trusted_keys: Vec<(String, String)>,
    /// Largest artefact downloaded.
    pub max_artefact_bytes: u64,
    /// Largest image made (all its files unpacked).
    pub max_unpacked_bytes: u64,
    /// Connect timeout, seconds.
    pub connect_timeout_secs: u64,
    /// Stall timeout (no data for this long), seconds.
    pub read_timeout_secs: u64,
    /// Hosts a redirect may lead to besides the URL's own.
    pub redirect_hosts: Vec<String>,
}

/// An entry of the configured catalog, as the owner daemon lists it: `(ssssttss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CatalogEntryInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `kernel` or `rootfs`.
    pub kind: String,
    /// For a root filesystem, the kernel it boots with (`NAME:VERSION`); "" for a kernel.
    pub kernel: String,
    /// Download size, bytes.
    pub size: u64,
    /// The most its files take once unpacked, bytes.
    pub unpacked_size: u64,
    /// `raw`, `tar` or `tar.gz`.
    pub format: String,
    /// What it is.
    pub description: String,
}

/// A VM as listed by the owner daemon: `(sssuussssxs)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct VmInfo {
    /// Id (12 lowercase hex digits); the unit is `banger-vm-<id>.service`.
    pub id: String,
    /// Name, unique.
    pub name: String,
    /// Image it was made from.
    pub image: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// `running`, `stopped` or `failed` (from its unit, read live).
    pub state: String,
    /// The guest's IPv4 address.
    pub address: String,
    /// Back end that runs (or last ran) it, "" before the first start.
    pub backend: String,
    /// Its systemd unit.
    pub unit: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// The pinned SSH host key (`type base64`), "" until first contact.
    pub host_key: String,
}

/// A running VM's guest, as its agent reports it: `(sssdsa(ss))`. Every string came from the
/// guest and was cut to 255 characters with control characters replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct GuestInfo {
    /// The agent's version.
    pub agent_version: String,
    /// The guest's host name.
    pub hostname: String,
    /// The guest kernel's release.
    pub kernel: String,
    /// Seconds since the guest booted.
    pub uptime_s: f64,
    /// The guest kernel's boot id.
    pub boot_id: String,
    /// (interface, `ADDRESS/PREFIX`) for every interface but loopback.
    pub addresses: Vec<(String, String)>,
}

/// A socket listening in a VM's guest, as its agent reports it: `(ssqus)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GuestPort {
    /// `tcp` or `udp`.
    pub proto: String,
    /// The local address (`0.0.0.0`, `::`, `127.0.0.1`…).
    pub address: String,
    /// The local port.
    pub port: u16,
    /// A process that holds it, 0 when the agent could not tell.
    pub pid: u32,
    /// That process's name, "" when unknown.
    pub process: String,
}

/// Where and how to reach a VM over SSH: `(ssss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SshTarget {
    /// The guest's address.
    pub address: String,
    /// User to log in as.
    pub user: String,
    /// Private key file to authenticate with.
    pub identity_file: String,
    /// The pinned host key (`type base64`), "" until first contact.
    pub host_key: String,
}

words! {
    /// The kinds of back end banger knows (`VmInfo.backend`, `[vm] backend`).
    BackendKind {
        /// QEMU's `microvm` machine.
        Qemu => "qemu",
        /// Firecracker.
        Firecracker => "firecracker",
    }
}

words! {
    /// `VmInfo.state`: read live from the VM's unit. The store keeps only what the owner asked
    /// for, [`VmState::Running`] or [`VmState::Stopped`].
    VmState {
        /// The VMM runs.
        Running => "running",
        /// The VMM's unit is starting.
        Starting => "starting",
        /// The VMM's unit is stopping.
        Stopping => "stopping",
        /// The VMM's unit failed (it crashed or was killed).
        Failed => "failed",
        /// Not running.
        Stopped => "stopped",
        /// systemd could not be asked.
        Unknown => "unknown",
    }
}

impl VmState {
    /// Whether the VM's unit is up or on its way up or down (it cannot be removed, and its
    /// host key cannot be re-pinned).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            VmState::Running | VmState::Starting | VmState::Stopping
        )
    }
}

words! {
    /// The fixed stages of an operation (`OperationInfo.stage`); between them an operation
    /// names what it does in free text (`booting`, `stopping web`).
    OperationStage {
        /// Just begun.
        Started => "started",
        /// Finished as asked.
        Done => "done",
        /// Finished with an error.
        Failed => "failed",
        /// An inhibit hold ended: its holder released it.
        Released => "released",
        /// An inhibit hold ended: its holder left the bus.
        ReleasedCallerLeft => "released (caller left)",
        /// The daemon dropped the operation without finishing it (it is not running any more).
        Abandoned => "abandoned",
    }
}

#[cfg(test)]
mod word_tests {
    use super::*;
    use crate::words::check_words as check;

    #[test]
    fn every_word_parses_back_and_is_distinct() {
        check(BackendKind::ALL, BackendKind::as_str, BackendKind::parse);
        check(VmState::ALL, VmState::as_str, VmState::parse);
        check(
            OperationStage::ALL,
            OperationStage::as_str,
            OperationStage::parse,
        );
    }

    #[test]
    fn live_states_are_the_ones_with_a_unit_up_or_changing() {
        let live: Vec<_> = VmState::ALL.iter().filter(|s| s.is_live()).collect();
        assert_eq!(
            live,
            [&VmState::Running, &VmState::Starting, &VmState::Stopping]
        );
    }
}
