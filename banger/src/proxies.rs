//! Client proxies for banger's own services. The checked-in introspection XML in `dbus/` is the
//! contract; these traits mirror it.

use crate::wire::{DoctorCheck, OperationInfo, ServiceStatus};

/// The root helper, `org.banger.Root1`.
#[zbus::proxy(
    interface = "org.banger.Root1",
    default_service = "org.banger.Root1",
    default_path = "/org/banger/Root1"
)]
pub trait Root1 {
    /// Version of the running helper.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// Major version of the D-Bus API.
    #[zbus(property)]
    fn api_version(&self) -> zbus::Result<u32>;
    /// Version recorded in `/etc/banger/install.toml`.
    #[zbus(property)]
    fn installed_version(&self) -> zbus::Result<String>;
    /// Login name of the install's owner.
    #[zbus(property)]
    fn owner(&self) -> zbus::Result<String>;
    /// State of banger's systemd units.
    fn get_service_status(&self) -> zbus::Result<Vec<ServiceStatus>>;
    /// Starts `bangerd.service` (polkit `org.banger.daemon.manage`).
    fn start_daemon(&self) -> zbus::Result<()>;
    /// Stops `bangerd.service` (polkit `org.banger.daemon.manage`).
    fn stop_daemon(&self) -> zbus::Result<()>;
    /// Restarts `bangerd.service` (polkit `org.banger.daemon.manage`).
    fn restart_daemon(&self) -> zbus::Result<()>;
}

/// The owner daemon, `org.banger.Daemon1`.
#[zbus::proxy(
    interface = "org.banger.Daemon1",
    default_service = "org.banger.Daemon1",
    default_path = "/org/banger/Daemon1"
)]
pub trait Daemon1 {
    /// Version of the running daemon.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// Whether the daemon has opened its store and is serving.
    #[zbus(property)]
    fn ready(&self) -> zbus::Result<bool>;
    /// Operations in flight and recently finished.
    fn list_operations(&self) -> zbus::Result<Vec<OperationInfo>>;
    /// The daemon's own health checks.
    fn doctor(&self) -> zbus::Result<Vec<DoctorCheck>>;
}
