//! The errors banger services send on the bus, named `org.banger.Error.*` (plus the standard
//! `org.freedesktop.DBus.Error.InteractiveAuthorizationRequired`).
//!
//! Each message says what happened, what was left unchanged and what to do next; the adapters
//! (`Root1`, `Daemon1`) map their core errors into these and nothing else.

use zbus::message::{Header, Message};
use zbus::names::ErrorName;

/// An error a banger service returns to a D-Bus caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The call needs an interactive polkit prompt but did not set the
    /// `ALLOW_INTERACTIVE_AUTHORIZATION` flag (the standard D-Bus error).
    #[error("{0}")]
    InteractiveAuthorizationRequired(String),
    /// The caller is not allowed to do this.
    #[error("{0}")]
    NotAuthorized(String),
    /// `/etc/banger/install.toml` is missing or unreadable.
    #[error("{0}")]
    InstallMetadata(String),
    /// A systemd job failed or systemd could not be reached.
    #[error("{0}")]
    Systemd(String),
    /// The store could not be read or written.
    #[error("{0}")]
    Store(String),
    /// The service is not ready yet.
    #[error("{0}")]
    NotReady(String),
    /// An argument was malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Another operation of the same kind is already running.
    #[error("{0}")]
    Busy(String),
    /// The named VM or image does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A VM or image of that name already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The image is used by a VM, or the VM is in a state that does not allow this.
    #[error("{0}")]
    InUse(String),
    /// Host plumbing for a VM (network, VMM unit) failed.
    #[error("{0}")]
    Vm(String),
    /// Something else went wrong.
    #[error("{0}")]
    Failed(String),
}

impl BusError {
    /// The D-Bus error name.
    pub fn name_str(&self) -> &'static str {
        match self {
            BusError::InteractiveAuthorizationRequired(_) => {
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
            }
            BusError::NotAuthorized(_) => "org.banger.Error.NotAuthorized",
            BusError::InstallMetadata(_) => "org.banger.Error.InstallMetadata",
            BusError::Systemd(_) => "org.banger.Error.Systemd",
            BusError::Store(_) => "org.banger.Error.Store",
            BusError::NotReady(_) => "org.banger.Error.NotReady",
            BusError::InvalidArgument(_) => "org.banger.Error.InvalidArgument",
            BusError::Busy(_) => "org.banger.Error.Busy",
            BusError::NotFound(_) => "org.banger.Error.NotFound",
            BusError::AlreadyExists(_) => "org.banger.Error.AlreadyExists",
            BusError::InUse(_) => "org.banger.Error.InUse",
            BusError::Vm(_) => "org.banger.Error.Vm",
            BusError::Failed(_) => "org.banger.Error.Failed",
        }
    }

    /// The message, for people.
    pub fn message(&self) -> &str {
        match self {
            BusError::InteractiveAuthorizationRequired(m)
            | BusError::NotAuthorized(m)
            | BusError::InstallMetadata(m)
            | BusError::Systemd(m)
            | BusError::Store(m)
            | BusError::NotReady(m)
            | BusError::InvalidArgument(m)
            | BusError::Busy(m)
            | BusError::NotFound(m)
            | BusError::AlreadyExists(m)
            | BusError::InUse(m)
            | BusError::Vm(m)
            | BusError::Failed(m) => m,
        }
    }
}

impl zbus::DBusError for BusError {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        Message::error(call, self.name()).build(&(self.message(),))
    }

    fn name(&self) -> ErrorName<'_> {
        ErrorName::from_static_str_unchecked(self.name_str())
    }

    fn description(&self) -> Option<&str> {
        Some(self.message())
    }
}

impl From<zbus::Error> for BusError {
    fn from(e: zbus::Error) -> Self {
        match &e {
            zbus::Error::FDO(f)
                if matches!(
                    f.as_ref(),
                    zbus::fdo::Error::InteractiveAuthorizationRequired(_)
                ) =>
            {
                BusError::InteractiveAuthorizationRequired(f.to_string())
            }
            _ => BusError::Failed(format!("bus error: {e}")),
        }
    }
}

impl From<zbus::fdo::Error> for BusError {
    fn from(e: zbus::fdo::Error) -> Self {
        zbus::Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_prefixed() {
        for e in [
            BusError::NotAuthorized(String::new()),
            BusError::InstallMetadata(String::new()),
            BusError::Systemd(String::new()),
            BusError::Store(String::new()),
            BusError::NotReady(String::new()),
            BusError::InvalidArgument(String::new()),
            BusError::Busy(String::new()),
            BusError::NotFound(String::new()),
            BusError::AlreadyExists(String::new()),
            BusError::InUse(String::new()),
            BusError::Vm(String::new()),
            BusError::Failed(String::new()),
        ] {
            ErrorName::try_from(e.name_str()).unwrap();
            assert!(e.name_str().starts_with(crate::names::ERROR_PREFIX));
        }
        ErrorName::try_from(BusError::InteractiveAuthorizationRequired(String::new()).name_str())
            .unwrap();
    }
}
