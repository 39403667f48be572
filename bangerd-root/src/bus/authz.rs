//! Authorization for every state-changing `Root1` call.
//!
//! Order of checks: root is always allowed; the install owner's UID is trusted only where the
//! caller asks for [`Trust::OwnerDaemon`] (VM plumbing asked by the owner's `bangerd`); everyone
//! else is decided by polkit, with the **caller's** bus name as the subject. The D-Bus
//! `ALLOW_INTERACTIVE_AUTHORIZATION` flag decides whether polkit may prompt: without it a call
//! that would need a password fails with `InteractiveAuthorizationRequired`.
//!
//! This module must run before any work starts, and must fail closed: an unreadable
//! `install.toml` means "no owner", never "everyone".

use std::collections::HashMap;
use std::path::PathBuf;

use banger_api::error::BusError;
use banger_host::install::InstallMeta;
use zbus::message::{Flags, Header};
use zbus::{Connection, fdo};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use crate::limits::Caller;

/// Whether the install owner's UID is trusted without asking polkit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Only root bypasses polkit.
    PolkitOnly,
    /// The install owner (whose `bangerd` asks for VM plumbing) bypasses polkit too.
    OwnerDaemon,
}

/// Why a caller was let in; useful in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The caller is root.
    Root,
    /// The caller is the install owner and the method trusts it.
    Owner,
    /// polkit said yes.
    Polkit,
}

/// The authorizer.
pub struct Authorizer {
    conn: Connection,
    install_toml: PathBuf,
    trust_root: bool,
}

impl Authorizer {
    /// An authorizer asking polkit over `conn`, reading the owner from `install_toml`.
    pub fn new(conn: Connection, install_toml: PathBuf) -> Self {
        Authorizer {
            conn,
            install_toml,
            trust_root: true,
        }
    }

    /// Sends root's calls to polkit too. Interface tests use this to exercise the polkit path
    /// from an in-process client, which runs as root on CI.
    pub fn without_root_trust(mut self) -> Self {
        self.trust_root = false;
        self
    }

    /// The Unix user id behind the message's sender.
    pub async fn caller_uid(&self, hdr: &Header<'_>) -> Result<u32, BusError> {
        let sender = hdr
            .sender()
            .ok_or_else(|| BusError::NotAuthorized("the call has no sender".into()))?;
        Ok(fdo::DBusProxy::new(&self.conn)
            .await?
            .get_connection_unix_user(sender.clone().into())
            .await
            .map_err(zbus::Error::from)?)
    }

    /// Who the caller of `hdr` is for [`crate::limits`] and for private details: root and the
    /// install owner are [`Caller::Trusted`], anyone else is counted by uid. (This is not
    /// authorization: root counts as trusted here even when [`Self::without_root_trust`] sends
    /// root's calls to polkit.)
    pub async fn caller(&self, hdr: &Header<'_>) -> Result<Caller, BusError> {
        let uid = self.caller_uid(hdr).await?;
        if uid == 0 {
            return Ok(Caller::Trusted);
        }
        match InstallMeta::read_trusted(&self.install_toml) {
            Ok(meta) if meta.owner.uid == uid => Ok(Caller::Trusted),
            _ => Ok(Caller::Other(uid)),
        }
    }

    /// Decides whether the caller of `hdr` may perform `action`. Call before any work.
    pub async fn authorize(
        &self,
        hdr: &Header<'_>,
        action: &str,
        trust: Trust,
    ) -> Result<Grant, BusError> {
        let uid = self.caller_uid(hdr).await?;
        if uid == 0 && self.trust_root {
            return Ok(Grant::Root);
        }
        if trust == Trust::OwnerDaemon {
            match InstallMeta::read_trusted(&self.install_toml) {
                Ok(meta) if meta.owner.uid == uid => return Ok(Grant::Owner),
                Ok(_) => {}
                Err(e) => tracing::warn!("owner trust disabled: {e}"),
            }
        }
        let interactive = hdr
            .primary()
            .flags()
            .contains(Flags::ALLOW_INTERACTIVE_AUTH);
        let subject = Subject::new_for_message_header(hdr)
            .map_err(|e| BusError::NotAuthorized(format!("cannot identify the caller: {e}")))?;
        let authority = AuthorityProxy::new(&self.conn).await.map_err(|e| {
            BusError::NotAuthorized(format!(
                "cannot reach polkit to authorize {action}: {e}; nothing was done"
            ))
        })?;
        let flags = if interactive {
            CheckAuthorizationFlags::ALLOW_USER_INTERACTION
        } else {
            CheckAuthorizationFlags::empty()
        };
        let result = authority
            .check_authorization(&subject, action, &HashMap::new(), flags, "")
            .await
            .map_err(|e| {
                BusError::NotAuthorized(format!(
                    "polkit could not check {action}: {e}; nothing was done"
                ))
            })?;
        tracing::info!(
            uid,
            action,
            interactive,
            authorized = result.is_authorized,
            challenge = result.is_challenge,
            "authorization checked"
        );
        if result.is_authorized {
            Ok(Grant::Polkit)
        } else if result.is_challenge && !interactive {
            Err(BusError::InteractiveAuthorizationRequired(format!(
                "{action} needs authentication: call again with interactive authorization allowed \
                 (banger does this from a terminal); nothing was done"
            )))
        } else if result.details.contains_key("polkit.dismissed") {
            Err(BusError::NotAuthorized(format!(
                "authentication for {action} was dismissed; nothing was done"
            )))
        } else {
            Err(BusError::NotAuthorized(format!(
                "uid {uid} is not authorized for {action} (polkit said no); nothing was done"
            )))
        }
    }
}
