//! The root helper's core: systemd operations on banger's own units. No D-Bus adapter logic.

use banger_api::names;
use banger_api::wire::ServiceStatus;
use banger_host::install::{InstallMeta, Layout};
use banger_host::systemd::{JobKind, Systemd, SystemdError};

/// The helper's state.
pub struct RootCore {
    /// systemd Manager client.
    pub systemd: Systemd,
    /// Where install metadata lives (the live one, except in tests).
    pub layout: Layout,
}

impl RootCore {
    /// The install metadata, read now.
    pub fn install_meta(&self) -> Result<InstallMeta, banger_host::install::MetaError> {
        InstallMeta::read_trusted(&self.layout.install_toml())
    }

    /// State of banger's units.
    pub async fn service_status(&self) -> Result<Vec<ServiceStatus>, SystemdError> {
        let mut out = Vec::new();
        for unit in [names::ROOT_UNIT, names::DAEMON_UNIT] {
            let s = self.systemd.unit_state(unit).await?;
            out.push(ServiceStatus {
                unit: unit.into(),
                active_state: s.active_state,
                sub_state: s.sub_state,
                main_pid: s.main_pid,
            });
        }
        Ok(out)
    }

    /// Starts, stops or restarts `bangerd.service` and waits for systemd's job.
    pub async fn daemon_job(&self, kind: JobKind) -> Result<(), SystemdError> {
        if kind != JobKind::Stop {
            // A unit that failed before (for example on a bad store) must be startable again.
            self.systemd.reset_failed(names::DAEMON_UNIT).await;
        }
        self.systemd.run_job(kind, names::DAEMON_UNIT).await
    }
}
