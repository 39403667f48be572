//! `org.banger.Daemon1`: the D-Bus adapter over the daemon core. It only translates: checks the
//! caller, calls the core, maps errors to `org.banger.Error.*`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use banger::build_info;
use banger::error::BusError;
use banger::wire::{DoctorCheck, OperationInfo};
use zbus::message::Header;
use zbus::{Connection, fdo};

use crate::core::Daemon;

/// The object served at `/org/banger/Daemon1`.
pub struct Daemon1 {
    core: Arc<Daemon>,
    ready: Arc<AtomicBool>,
}

impl Daemon1 {
    /// An adapter over `core`; `ready` is shared with the service loop.
    pub fn new(core: Arc<Daemon>, ready: Arc<AtomicBool>) -> Self {
        Daemon1 { core, ready }
    }
}

/// Allows only the daemon's own user and root (the bus policy says the same; this is the second
/// lock on the door).
async fn check_caller(conn: &Connection, hdr: &Header<'_>) -> Result<(), BusError> {
    let sender = hdr
        .sender()
        .ok_or_else(|| BusError::NotAuthorized("call has no sender".into()))?;
    let uid = fdo::DBusProxy::new(conn)
        .await?
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(zbus::Error::from)?;
    let me = banger::users::current_uid();
    if uid == me || uid == 0 {
        Ok(())
    } else {
        Err(BusError::NotAuthorized(format!(
            "uid {uid} may not use org.banger.Daemon1: only its owner (uid {me}) and root may; nothing was done"
        )))
    }
}

#[zbus::interface(name = "org.banger.Daemon1")]
impl Daemon1 {
    /// Version of the running daemon.
    #[zbus(property)]
    fn version(&self) -> &str {
        build_info::VERSION
    }

    /// Whether the daemon has opened its store and serves requests.
    #[zbus(property)]
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Operations in flight, then recently finished ones: (id, kind, stage, started, done).
    /// Read-only; safe to repeat.
    async fn list_operations(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<OperationInfo>, BusError> {
        check_caller(conn, &hdr).await?;
        Ok(self.core.operations().list())
    }

    /// The daemon's health checks as (level, check, detail). Read-only; safe to repeat.
    async fn doctor(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<DoctorCheck>, BusError> {
        check_caller(conn, &hdr).await?;
        Ok(self.core.doctor())
    }
}
