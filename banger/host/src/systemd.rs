//! A client for systemd's `org.freedesktop.systemd1.Manager` D-Bus API.
//!
//! Every unit start, stop and restart banger makes goes through here, never through a
//! `systemctl` process. Each job is awaited by its `JobRemoved` signal, subscribed to *before* the
//! call so that a fast job cannot finish unseen.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::Connection;
use zbus::proxy::CacheProperties;
use zbus::{OwnedObjectPath, Variant};

/// One row of `ListUnits…`: name, description, load, active and sub state, followed unit, unit
/// path, job id, job type, job path.
pub type UnitListEntry = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// systemd's Manager interface (the subset banger uses).
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    /// Queues a start job.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queues a stop job.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queues a restart job.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Clears a failed unit's state.
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    /// Starts a transient unit described by `properties`.
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Variant<'_>)],
        aux: &[(&str, Vec<(&str, Variant<'_>)>)],
    ) -> zbus::Result<OwnedObjectPath>;
    /// Loads (or finds) a unit and returns its object path.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// Reloads unit files (`daemon-reload`).
    fn reload(&self) -> zbus::Result<()>;
    /// Enables unit files as their `[Install]` sections say; returns (carries-install-info,
    /// changes as (type, file, destination)).
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    /// Disables unit files; returns the changes as (type, file, destination).
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    /// Loaded units whose names match one of `patterns`, in any of `states` (all if empty).
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<Vec<UnitListEntry>>;
    /// Asks systemd to send job and unit signals to this client.
    fn subscribe(&self) -> zbus::Result<()>;
    /// A job finished.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// A unit's generic state.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    /// `active`, `inactive`, `failed`, `activating`, …
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    /// Type-specific state, e.g. `running`.
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    /// `loaded`, `not-found`, …
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
}

/// A service unit's state.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Service {
    /// PID of the main process, 0 if none.
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
}

/// The error systemd answers for a unit it has not loaded.
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// Whether a bus error is systemd saying it has no such unit.
fn is_no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _) if name.as_str() == NO_SUCH_UNIT)
}

/// Errors talking to systemd.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// The bus call failed.
    #[error("asking systemd to {what}: {source}")]
    Call {
        /// What was asked.
        what: String,
        /// The bus error.
        source: zbus::Error,
    },
    /// The job ended with a result other than `done`.
    #[error("systemd could not {what}: the job ended with '{result}' (see: journalctl -u {unit})")]
    JobFailed {
        /// What was asked.
        what: String,
        /// The unit.
        unit: String,
        /// systemd's job result (`failed`, `timeout`, `dependency`, `canceled`, …).
        result: String,
    },
    /// A command given to systemd does not start with an absolute path; nothing was sent.
    #[error("{what}: the {which} must start with an absolute path, got {argv:?}")]
    RelativeCommand {
        /// What was asked.
        what: String,
        /// Which command ("command", "stop-post command").
        which: &'static str,
        /// The command line.
        argv: Vec<String>,
    },
    /// No `JobRemoved` arrived in time.
    #[error("systemd did not finish the job to {what} within {secs} s")]
    Timeout {
        /// What was asked.
        what: String,
        /// The wait.
        secs: u64,
    },
}

impl SystemdError {
    /// Whether systemd said it has no such unit loaded.
    pub fn is_no_such_unit(&self) -> bool {
        matches!(self, SystemdError::Call { source, .. } if is_no_such_unit(source))
    }
}

/// The kind of job to run on a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// StartUnit.
    Start,
    /// StopUnit.
    Stop,
    /// RestartUnit.
    Restart,
}

impl JobKind {
    fn verb(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
        }
    }
}

/// A transient service unit to start (`StartTransientUnit`).
#[derive(Debug, Clone, Default)]
pub struct TransientService {
    /// Unit name, e.g. `banger-vm-1.service`.
    pub name: String,
    /// Human description.
    pub description: String,
    /// Program and arguments; `argv[0]` must be an absolute path.
    pub argv: Vec<String>,
    /// Slice to run in.
    pub slice: Option<String>,
    /// User to run as.
    pub user: Option<String>,
    /// Extra environment.
    pub environment: Vec<(String, String)>,
    /// `Type=`, e.g. `exec` so that a command that cannot be executed fails the start job.
    /// Unset: systemd's default for transient services (`simple`).
    pub service_type: Option<String>,
    /// `SupplementaryGroups=` (names).
    pub supplementary_groups: Vec<String>,
    /// An open file for the service's standard output (`StandardOutputFileDescriptor=`). The
    /// caller opens it, so systemd never resolves a path on the unit's behalf.
    pub stdout_fd: Option<Arc<OwnedFd>>,
    /// An open file for the service's standard error (`StandardErrorFileDescriptor=`).
    pub stderr_fd: Option<Arc<OwnedFd>>,
    /// Keep the unit loaded after it fails (`CollectMode=inactive`), so its `failed` state and
    /// status stay visible until someone resets it. Otherwise systemd discards it as soon as it
    /// stops, failed or not.
    pub keep_failed: bool,
    /// A command systemd runs as root once the service has ended, however it ended
    /// (`ExecStopPostEx=` with the flags `privileged` and `ignore-failure`): the cleanup only
    /// root can do, for a service that runs as a user. `argv[0]` must be an absolute path.
    pub stop_post_as_root: Option<Vec<String>>,
    /// Further unit properties, such as the sandbox (`ProtectSystem=`, `DeviceAllow=`, …).
    pub properties: Vec<UnitProperty>,
}

/// One property of a transient unit, with the D-Bus type systemd expects for its name (see
/// `org.freedesktop.systemd1(5)`): `NoNewPrivileges` is `b`, `ProtectSystem` is `s`,
/// `ReadWritePaths` is `as`, `CapabilityBoundingSet` is `t`, `UMask` is `u`,
/// `RestrictAddressFamilies` and `SystemCallFilter` are `(bas)`, `DeviceAllow` is `a(ss)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitProperty {
    /// A boolean (`b`).
    Bool(&'static str, bool),
    /// A string (`s`).
    Str(&'static str, String),
    /// A list of strings (`as`).
    Strs(&'static str, Vec<String>),
    /// A 64-bit number (`t`).
    U64(&'static str, u64),
    /// A 32-bit number (`u`).
    U32(&'static str, u32),
    /// An allow list (`true`) or deny list (`false`) of names (`(bas)`).
    NameList(&'static str, bool, Vec<String>),
    /// Device nodes and their access (`a(ss)`, e.g. `("/dev/kvm", "rw")`).
    Devices(&'static str, Vec<(String, String)>),
}

impl UnitProperty {
    /// The property's name.
    pub fn name(&self) -> &'static str {
        match self {
            UnitProperty::Bool(n, _)
            | UnitProperty::Str(n, _)
            | UnitProperty::Strs(n, _)
            | UnitProperty::U64(n, _)
            | UnitProperty::U32(n, _)
            | UnitProperty::NameList(n, _, _)
            | UnitProperty::Devices(n, _) => n,
        }
    }

    fn value(&self) -> Variant<'static> {
        match self {
            UnitProperty::Bool(_, b) => Variant::from(*b),
            UnitProperty::Str(_, s) => Variant::from(s.clone()),
            UnitProperty::Strs(_, v) => Variant::from(v.clone()),
            UnitProperty::U64(_, n) => Variant::from(*n),
            UnitProperty::U32(_, n) => Variant::from(*n),
            UnitProperty::NameList(_, allow, names) => Variant::from((*allow, names.clone())),
            UnitProperty::Devices(_, devices) => Variant::from(devices.clone()),
        }
    }
}

/// State of one unit, as reported by systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `loaded`, `not-found`, …
    pub load_state: String,
    /// `active`, `inactive`, `failed`, …
    pub active_state: String,
    /// Sub-state.
    pub sub_state: String,
    /// Main PID (services only), 0 if none.
    pub main_pid: u32,
}

/// Where systemd serves its unit objects.
const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit/";

pub use banger_api::names::escape_path_label;

/// The object path systemd serves unit `name` at.
pub fn unit_object_path(name: &str) -> String {
    format!("{UNIT_PATH_PREFIX}{}", escape_path_label(name))
}

/// systemd Manager client on a given bus connection.
#[derive(Clone)]
pub struct Systemd {
    conn: Connection,
    manager: ManagerProxy<'static>,
    /// How long to wait for a job.
    pub job_timeout: Duration,
}

impl Systemd {
    /// A client on `conn` (normally the system bus).
    pub async fn new(conn: &Connection) -> Result<Self, SystemdError> {
        let manager = ManagerProxy::new(conn)
            .await
            .map_err(|source| SystemdError::Call {
                what: "connect".into(),
                source,
            })?;
        Ok(Systemd {
            conn: conn.clone(),
            manager,
            job_timeout: Duration::from_secs(90),
        })
    }

    /// Runs a start/stop/restart job on `unit` and waits until systemd reports it done.
    pub async fn run_job(&self, kind: JobKind, unit: &str) -> Result<(), SystemdError> {
        let what = format!("{} {unit}", kind.verb());
        // The call is only made when awaited, after the signal subscription is in place.
        let call = async {
            match kind {
                JobKind::Start => self.manager.start_unit(unit, "replace").await,
                JobKind::Stop => self.manager.stop_unit(unit, "replace").await,
                JobKind::Restart => self.manager.restart_unit(unit, "replace").await,
            }
        };
        self.queue_and_wait(&what, unit, call).await
    }

    /// Starts a transient service unit and waits until its start job is done. The unit lives
    /// on its own: stopping or restarting the caller's unit does not touch it.
    pub async fn start_transient(&self, svc: &TransientService) -> Result<(), SystemdError> {
        let what = format!("start transient unit {}", svc.name);
        let argv: Vec<&str> = svc.argv.iter().map(String::as_str).collect();
        if argv.first().is_none_or(|p| !p.starts_with('/')) {
            return Err(SystemdError::RelativeCommand {
                what,
                which: "command",
                argv: svc.argv.clone(),
            });
        }
        let exec: Vec<(&str, Vec<&str>, bool)> = vec![(argv[0], argv.clone(), false)];
        let mut props: Vec<(&str, Variant<'_>)> = vec![
            ("Description", Variant::from(svc.description.as_str())),
            ("ExecStart", Variant::from(exec)),
            (
                "CollectMode",
                Variant::from(if svc.keep_failed {
                    "inactive"
                } else {
                    "inactive-or-failed"
                }),
            ),
        ];
        if let Some(slice) = &svc.slice {
            props.push(("Slice", Variant::from(slice.as_str())));
        }
        if let Some(user) = &svc.user {
            props.push(("User", Variant::from(user.as_str())));
        }
        if !svc.environment.is_empty() {
            let env: Vec<String> = svc
                .environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            props.push(("Environment", Variant::from(env)));
        }
        if let Some(post) = &svc.stop_post_as_root {
            if post.first().is_none_or(|p| !p.starts_with('/')) {
                return Err(SystemdError::RelativeCommand {
                    what,
                    which: "stop-post command",
                    argv: post.clone(),
                });
            }
            let argv: Vec<&str> = post.iter().map(String::as_str).collect();
            let cmd: Vec<(&str, Vec<&str>, Vec<&str>)> =
                vec![(argv[0], argv.clone(), vec!["privileged", "ignore-failure"])];
            props.push(("ExecStopPostEx", Variant::from(cmd)));
        }
        if let Some(t) = &svc.service_type {
            props.push(("Type", Variant::from(t.as_str())));
        }
        if !svc.supplementary_groups.is_empty() {
            let groups: Vec<&str> = svc
                .supplementary_groups
                .iter()
                .map(String::as_str)
                .collect();
            props.push(("SupplementaryGroups", Variant::from(groups)));
        }
        if let Some(fd) = &svc.stdout_fd {
            props.push((
                "StandardOutputFileDescriptor",
                Variant::from(zbus::Fd::from(fd.as_fd())),
            ));
        }
        if let Some(fd) = &svc.stderr_fd {
            props.push((
                "StandardErrorFileDescriptor",
                Variant::from(zbus::Fd::from(fd.as_fd())),
            ));
        }
        for p in &svc.properties {
            props.push((p.name(), p.value()));
        }
        let call = self
            .manager
            .start_transient_unit(&svc.name, "fail", &props, &[]);
        self.queue_and_wait(&what, &svc.name, call).await
    }

    async fn queue_and_wait(
        &self,
        what: &str,
        unit: &str,
        call: impl std::future::Future<Output = zbus::Result<OwnedObjectPath>>,
    ) -> Result<(), SystemdError> {
        let err = |source| SystemdError::Call {
            what: what.to_string(),
            source,
        };
        // Subscribe and open the signal stream before queuing the job.
        let mut removed = self.manager.receive_job_removed().await.map_err(err)?;
        match self.manager.subscribe().await {
            Ok(()) => {}
            // One subscription per connection; a second job on the same client finds it made.
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            Err(e) => return Err(err(e)),
        }
        let job = call.await.map_err(err)?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job == job {
                    return Some(args.result);
                }
            }
            None
        };
        let result = tokio::time::timeout(self.job_timeout, wait)
            .await
            .map_err(|_| SystemdError::Timeout {
                what: what.to_string(),
                secs: self.job_timeout.as_secs(),
            })?
            .unwrap_or_else(|| "lost (signal stream ended)".into());
        if result == "done" {
            Ok(())
        } else {
            Err(SystemdError::JobFailed {
                what: what.to_string(),
                unit: unit.into(),
                result,
            })
        }
    }

    /// Queues a job without waiting for it: for a service restarting itself, which will not be
    /// there to see the job finish.
    pub async fn queue_job(&self, kind: JobKind, unit: &str) -> Result<(), SystemdError> {
        let r = match kind {
            JobKind::Start => self.manager.start_unit(unit, "replace").await,
            JobKind::Stop => self.manager.stop_unit(unit, "replace").await,
            JobKind::Restart => self.manager.restart_unit(unit, "replace").await,
        };
        r.map(drop).map_err(|source| SystemdError::Call {
            what: format!("{} {unit}", kind.verb()),
            source,
        })
    }

    /// `daemon-reload`.
    pub async fn reload(&self) -> Result<(), SystemdError> {
        self.manager
            .reload()
            .await
            .map_err(|source| SystemdError::Call {
                what: "reload unit files".into(),
                source,
            })
    }

    /// Enables `unit` (its `[Install]` section), as `systemctl enable` would, and reloads.
    pub async fn enable(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .enable_unit_files(&[unit], false, true)
            .await
            .map_err(|source| SystemdError::Call {
                what: format!("enable {unit}"),
                source,
            })?;
        self.reload().await
    }

    /// Disables `unit`, as `systemctl disable` would, and reloads. A unit systemd does not know
    /// is not an error.
    pub async fn disable(&self, unit: &str) -> Result<(), SystemdError> {
        match self.manager.disable_unit_files(&[unit], false).await {
            Ok(_) => {}
            Err(e) if is_no_such_unit(&e) => {}
            Err(source) => {
                return Err(SystemdError::Call {
                    what: format!("disable {unit}"),
                    source,
                });
            }
        }
        self.reload().await
    }

    /// Clears a unit's failed state (ignores units that are not failed).
    pub async fn reset_failed(&self, unit: &str) {
        let _ = self.manager.reset_failed_unit(unit).await;
    }

    /// Loaded units whose names match `pattern` (a shell glob), with their active state.
    pub async fn units_matching(
        &self,
        pattern: &str,
    ) -> Result<Vec<(String, String)>, SystemdError> {
        let rows = self
            .manager
            .list_units_by_patterns(&[], &[pattern])
            .await
            .map_err(|source| SystemdError::Call {
                what: format!("list units matching {pattern}"),
                source,
            })?;
        Ok(rows.into_iter().map(|r| (r.0, r.3)).collect())
    }

    /// The bus connection it talks over.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Each time a unit whose name starts with `name_prefix` ends (its `ActiveState` becomes
    /// `inactive` or `failed`, however that came about: a stop, a crash, a guest powering off),
    /// the stream yields the unit's object path. Subscribes to systemd's unit signals first.
    pub async fn unit_ends(
        &self,
        name_prefix: &str,
    ) -> Result<impl futures_util::Stream<Item = String> + use<>, SystemdError> {
        Ok(self
            .unit_states(name_prefix)
            .await?
            .filter_map(|(path, state)| async move {
                matches!(state.as_str(), "inactive" | "failed").then_some(path)
            }))
    }

    /// Every change of the `ActiveState` of a unit whose name starts with `name_prefix`, in
    /// the order systemd announces them, as (the unit's object path, the new `ActiveState`).
    /// Subscribes to systemd's unit signals first; nothing is polled.
    pub async fn unit_states(
        &self,
        name_prefix: &str,
    ) -> Result<impl futures_util::Stream<Item = (String, String)> + use<>, SystemdError> {
        let err = |source| SystemdError::Call {
            what: format!("follow the units {name_prefix}*"),
            source,
        };
        match self.manager.subscribe().await {
            Ok(()) => {}
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            Err(e) => return Err(err(e)),
        }
        let prefix = format!("{UNIT_PATH_PREFIX}{}", escape_path_label(name_prefix));
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace(UNIT_PATH_PREFIX.trim_end_matches('/'))
            .arg(0, "org.freedesktop.systemd1.Unit")
            .build()
            .map_err(err)?;
        let stream =
            zbus::MessageStream::for_match_rule(rule, &self.conn, std::num::NonZeroUsize::new(256))
                .await
                .map_err(err)?;
        Ok(stream.filter_map(move |m| {
            let prefix = prefix.clone();
            async move {
                let m = m.ok()?;
                let path = m.header().path()?.to_string();
                if !path.starts_with(&prefix) {
                    return None;
                }
                let (_, changed, _): (
                    String,
                    std::collections::HashMap<String, zbus::OwnedVariant>,
                    Vec<String>,
                ) = m.body().deserialize().ok()?;
                let state = changed.get("ActiveState")?;
                let state: &str = state.downcast_ref().ok()?;
                Some((path, state.to_string()))
            }
        }))
    }

    /// Reads a unit's state without starting it.
    pub async fn unit_state(&self, unit: &str) -> Result<UnitState, SystemdError> {
        let call = |source| SystemdError::Call {
            what: format!("read the state of {unit}"),
            source,
        };
        let path = self.manager.load_unit(unit).await.map_err(call)?;
        let u = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(call)?;
        let main_pid = if unit.ends_with(".service") {
            let s = ServiceProxy::builder(&self.conn)
                .path(path)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(call)?;
            s.main_pid().await.map_err(call)?
        } else {
            0
        };
        Ok(UnitState {
            load_state: u.load_state().await.map_err(call)?,
            active_state: u.active_state().await.map_err(call)?,
            sub_state: u.sub_state().await.map_err(call)?,
            main_pid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_escaped_as_systemd_spells_their_paths() {
        assert_eq!(
            escape_path_label("banger-vm-0123456789ab.service"),
            "banger_2dvm_2d0123456789ab_2eservice"
        );
        assert_eq!(escape_path_label("dbus.socket"), "dbus_2esocket");
    }
}
