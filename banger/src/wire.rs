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
