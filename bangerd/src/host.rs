//! What bangerd asks of the host for its VMs: the root helper's VM plumbing
//! (`Root1.StartVmmWithInfo`, `StopVmm`, `GetVmNetwork`) and the state of each VM's unit, from
//! systemd. [`crate::vms::Vms`] sees only the [`VmHost`] trait, so its lifecycle can be tested
//! without a bus; [`BusHost`] is the real one.
//!
//! This module must never decide anything about a VM: it carries requests and answers.

use std::future::Future;
use std::pin::Pin;

use banger_api::error::ErrorKind;
use banger_api::options::{StartVmmOptions, VmmStarted};
use banger_api::proxies::Root1Proxy;
use banger_api::wire::{BackendKind, CatalogSettings, VmState};
use banger_host::systemd::Systemd;

use crate::vms::{VmError, unit_name};

/// A boxed future of a host call.
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The host side of banger's VMs, as bangerd sees it.
pub trait VmHost: Send + Sync {
    /// The VM network: (bridge, subnet in CIDR form, host address on the bridge).
    fn vm_network(&self) -> HostFuture<'_, Result<(String, String, String), VmError>>;

    /// Starts VM `id`'s VMM; returns the back end that runs it, when the host says.
    fn start_vmm<'a>(
        &'a self,
        id: &'a str,
        options: &'a StartVmmOptions,
    ) -> HostFuture<'a, Result<Option<BackendKind>, VmError>>;

    /// Stops VM `id`'s VMM and removes its tap; a VM that is not running is fine.
    fn stop_vmm<'a>(&'a self, id: &'a str) -> HostFuture<'a, Result<(), VmError>>;

    /// VM `id`'s state, read from its unit now ([`VmState::Unknown`] when that fails).
    fn vm_state<'a>(&'a self, id: &'a str) -> HostFuture<'a, VmState>;

    /// Where images are pulled from: the `[catalog]` settings of the root-owned configuration
    /// (its `url` is "" when none is set).
    fn catalog_settings(&self) -> HostFuture<'_, Result<CatalogSettings, VmError>>;
}

/// The real host: `bangerd-root` and systemd on the system bus.
pub struct BusHost {
    conn: zbus::Connection,
    systemd: Systemd,
}

impl BusHost {
    /// The host reached over `conn` (the system bus).
    pub async fn new(conn: zbus::Connection) -> Result<Self, VmError> {
        let systemd = Systemd::new(&conn)
            .await
            .map_err(|e| VmError::Root(format!("reaching systemd: {e}")))?;
        Ok(BusHost { conn, systemd })
    }

    async fn root(&self) -> Result<Root1Proxy<'static>, VmError> {
        Root1Proxy::new(&self.conn)
            .await
            .map_err(|e| VmError::Root(format!("reaching bangerd-root: {e}")))
    }
}

/// Whether the peer does not have the method called.
fn is_unknown_method(e: &zbus::Error) -> bool {
    ErrorKind::of(e) == Some(ErrorKind::UnknownMethod)
}

impl VmHost for BusHost {
    fn vm_network(&self) -> HostFuture<'_, Result<(String, String, String), VmError>> {
        Box::pin(async move {
            self.root()
                .await?
                .get_vm_network()
                .await
                .map_err(|e| VmError::Root(format!("asking bangerd-root for the VM network: {e}")))
        })
    }

    fn start_vmm<'a>(
        &'a self,
        id: &'a str,
        options: &'a StartVmmOptions,
    ) -> HostFuture<'a, Result<Option<BackendKind>, VmError>> {
        Box::pin(async move {
            let root = self.root().await?;
            match root.start_vmm_with_info(id, options.to_dict()).await {
                Ok(info) => Ok(VmmStarted::from_dict(&info)
                    .map_err(|e| VmError::Root(format!("bangerd-root's answer: {e}")))?
                    .backend),
                // A helper older than the method (during an update, before it restarts onto
                // the new release): start the VM the old way; its back end is not known.
                Err(e) if is_unknown_method(&e) => {
                    root.start_vmm(id, options.to_dict())
                        .await
                        .map_err(|e| root_error(&e))?;
                    Ok(None)
                }
                Err(e) => Err(root_error(&e)),
            }
        })
    }

    fn stop_vmm<'a>(&'a self, id: &'a str) -> HostFuture<'a, Result<(), VmError>> {
        Box::pin(async move {
            self.root()
                .await?
                .stop_vmm(id)
                .await
                .map_err(|e| root_error(&e))
        })
    }

    fn catalog_settings(&self) -> HostFuture<'_, Result<CatalogSettings, VmError>> {
        Box::pin(async move {
            self.root()
                .await?
                .get_catalog_settings()
                .await
                .map_err(|e| {
                    VmError::Root(format!(
                        "asking bangerd-root for the catalog settings: {}",
                        zbus_message(&e)
                    ))
                })
        })
    }

    fn vm_state<'a>(&'a self, id: &'a str) -> HostFuture<'a, VmState> {
        Box::pin(async move {
            match self.systemd.unit_state(&unit_name(id)).await {
                Ok(s) => live_state(&s.active_state),
                Err(e) => {
                    tracing::warn!("reading the state of {}: {e}", unit_name(id));
                    VmState::Unknown
                }
            }
        })
    }
}

/// Maps systemd's ActiveState to what `banger vm list` shows.
pub fn live_state(active_state: &str) -> VmState {
    match active_state {
        "active" | "reloading" => VmState::Running,
        "activating" => VmState::Starting,
        "deactivating" => VmState::Stopping,
        "failed" => VmState::Failed,
        _ => VmState::Stopped,
    }
}

/// A root helper error as the caller should see it: a refusal stays a refusal, a bad request
/// stays a bad request, anything else is a VM error.
pub fn root_error(e: &zbus::Error) -> VmError {
    let msg = zbus_message(e);
    match ErrorKind::of(e) {
        Some(ErrorKind::NotAuthorized | ErrorKind::AccessDenied) => VmError::NotAuthorized(msg),
        Some(ErrorKind::InvalidArgument) => VmError::Invalid(msg),
        _ => VmError::Root(msg),
    }
}

fn zbus_message(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(_, Some(msg), _) => msg.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_errors_keep_their_kind() {
        let err = |kind: ErrorKind| {
            let msg = zbus::message::Message::method_call("/", "Probe")
                .build(&())
                .unwrap();
            zbus::Error::MethodError(
                zbus::names::OwnedErrorName::try_from(kind.name()).unwrap(),
                Some("what the helper said".into()),
                msg,
            )
        };
        let kind = |e: VmError| match e {
            VmError::NotAuthorized(m) => ("not authorized", m),
            VmError::Invalid(m) => ("invalid", m),
            VmError::Root(m) => ("root", m),
            other => panic!("{other:?}"),
        };
        let said = "what the helper said".to_string();
        assert_eq!(
            kind(root_error(&err(ErrorKind::NotAuthorized))),
            ("not authorized", said.clone())
        );
        assert_eq!(
            kind(root_error(&err(ErrorKind::AccessDenied))).0,
            "not authorized"
        );
        assert_eq!(
            kind(root_error(&err(ErrorKind::InvalidArgument))).0,
            "invalid"
        );
        assert_eq!(kind(root_error(&err(ErrorKind::Systemd))), ("root", said));
    }

    #[test]
    fn unit_states_map_to_vm_states() {
        assert_eq!(live_state("active"), VmState::Running);
        assert_eq!(live_state("activating"), VmState::Starting);
        assert_eq!(live_state("inactive"), VmState::Stopped);
        assert_eq!(live_state("failed"), VmState::Failed);
    }
}
