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
    /// What kind of error this is; its D-Bus name is [`ErrorKind::name`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            BusError::InteractiveAuthorizationRequired(_) => {
                ErrorKind::InteractiveAuthorizationRequired
            }
            BusError::NotAuthorized(_) => ErrorKind::NotAuthorized,
            BusError::InstallMetadata(_) => ErrorKind::InstallMetadata,
            BusError::Systemd(_) => ErrorKind::Systemd,
            BusError::Store(_) => ErrorKind::Store,
            BusError::NotReady(_) => ErrorKind::NotReady,
            BusError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            BusError::Busy(_) => ErrorKind::Busy,
            BusError::NotFound(_) => ErrorKind::NotFound,
            BusError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            BusError::InUse(_) => ErrorKind::InUse,
            BusError::Vm(_) => ErrorKind::Vm,
            BusError::Failed(_) => ErrorKind::Failed,
        }
    }

    /// The D-Bus error name.
    pub fn name_str(&self) -> &'static str {
        self.kind().name()
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

/// The kinds of D-Bus error reply banger's programs act on: banger's own (`org.banger.Error.*`,
/// what [`BusError`] sends) and the standard ones a client must tell apart. This is the one
/// place error names are spelled; everything else matches these variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `org.banger.Error.NotAuthorized`
    NotAuthorized,
    /// `org.banger.Error.InstallMetadata`
    InstallMetadata,
    /// `org.banger.Error.Systemd`
    Systemd,
    /// `org.banger.Error.Store`
    Store,
    /// `org.banger.Error.NotReady`
    NotReady,
    /// `org.banger.Error.InvalidArgument`
    InvalidArgument,
    /// `org.banger.Error.Busy`
    Busy,
    /// `org.banger.Error.NotFound`
    NotFound,
    /// `org.banger.Error.AlreadyExists`
    AlreadyExists,
    /// `org.banger.Error.InUse`
    InUse,
    /// `org.banger.Error.Vm`
    Vm,
    /// `org.banger.Error.Failed`
    Failed,
    /// The call needs interactive polkit authorization but did not allow it.
    InteractiveAuthorizationRequired,
    /// The bus's own policy refused the message.
    AccessDenied,
    /// Nobody owns the name and nothing can be activated for it.
    ServiceUnknown,
    /// No object at that path.
    UnknownObject,
    /// The object has no such interface.
    UnknownInterface,
    /// The interface has no such method.
    UnknownMethod,
    /// The bus refused the message because a limit was reached.
    LimitsExceeded,
    /// The call timed out or the service went away before it answered.
    NoReply,
}

impl ErrorKind {
    /// Every kind, for tests and for parsing.
    pub const ALL: [ErrorKind; 20] = [
        ErrorKind::NotAuthorized,
        ErrorKind::InstallMetadata,
        ErrorKind::Systemd,
        ErrorKind::Store,
        ErrorKind::NotReady,
        ErrorKind::InvalidArgument,
        ErrorKind::Busy,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InUse,
        ErrorKind::Vm,
        ErrorKind::Failed,
        ErrorKind::InteractiveAuthorizationRequired,
        ErrorKind::AccessDenied,
        ErrorKind::ServiceUnknown,
        ErrorKind::UnknownObject,
        ErrorKind::UnknownInterface,
        ErrorKind::UnknownMethod,
        ErrorKind::LimitsExceeded,
        ErrorKind::NoReply,
    ];

    /// The D-Bus error name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotAuthorized => "org.banger.Error.NotAuthorized",
            ErrorKind::InstallMetadata => "org.banger.Error.InstallMetadata",
            ErrorKind::Systemd => "org.banger.Error.Systemd",
            ErrorKind::Store => "org.banger.Error.Store",
            ErrorKind::NotReady => "org.banger.Error.NotReady",
            ErrorKind::InvalidArgument => "org.banger.Error.InvalidArgument",
            ErrorKind::Busy => "org.banger.Error.Busy",
            ErrorKind::NotFound => "org.banger.Error.NotFound",
            ErrorKind::AlreadyExists => "org.banger.Error.AlreadyExists",
            ErrorKind::InUse => "org.banger.Error.InUse",
            ErrorKind::Vm => "org.banger.Error.Vm",
            ErrorKind::Failed => "org.banger.Error.Failed",
            ErrorKind::InteractiveAuthorizationRequired => {
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
            }
            ErrorKind::AccessDenied => "org.freedesktop.DBus.Error.AccessDenied",
            ErrorKind::ServiceUnknown => "org.freedesktop.DBus.Error.ServiceUnknown",
            ErrorKind::UnknownObject => "org.freedesktop.DBus.Error.UnknownObject",
            ErrorKind::UnknownInterface => "org.freedesktop.DBus.Error.UnknownInterface",
            ErrorKind::UnknownMethod => "org.freedesktop.DBus.Error.UnknownMethod",
            ErrorKind::LimitsExceeded => "org.freedesktop.DBus.Error.LimitsExceeded",
            ErrorKind::NoReply => "org.freedesktop.DBus.Error.NoReply",
        }
    }

    /// The kind with this D-Bus error name, if banger knows it.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind of a D-Bus error reply (a method error, or one zbus decoded as a standard
    /// error); `None` for other failures (a broken connection, a bad reply) and unknown names.
    pub fn of(e: &zbus::Error) -> Option<ErrorKind> {
        match e {
            zbus::Error::MethodError(name, _, _) => ErrorKind::from_name(name.as_str()),
            zbus::Error::FDO(f) => ErrorKind::from_name(zbus::DBusError::name(f.as_ref()).as_str()),
            _ => None,
        }
    }

    /// Whether this kind says the caller was refused (by polkit, by banger or by the bus).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            ErrorKind::NotAuthorized
                | ErrorKind::InteractiveAuthorizationRequired
                | ErrorKind::AccessDenied
        )
    }

    /// Whether this kind says the object, interface or method is not there (a job that ended,
    /// a helper too old to have it).
    pub fn is_no_such_object(self) -> bool {
        matches!(
            self,
            ErrorKind::UnknownObject | ErrorKind::UnknownInterface | ErrorKind::UnknownMethod
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

    #[test]
    fn every_kind_has_a_distinct_valid_name_that_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            ErrorName::try_from(k.name()).unwrap();
            assert!(seen.insert(k.name()), "{k:?} shares its name");
            assert_eq!(ErrorKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ErrorKind::from_name("org.banger.Error.Nope"), None);
    }

    #[test]
    fn the_wire_names_are_the_documented_ones() {
        // The contract (docs/dbus-api.md): renaming one breaks every client.
        assert_eq!(ErrorKind::Busy.name(), "org.banger.Error.Busy");
        assert_eq!(
            ErrorKind::NotAuthorized.name(),
            "org.banger.Error.NotAuthorized"
        );
        assert_eq!(
            ErrorKind::AccessDenied.name(),
            "org.freedesktop.DBus.Error.AccessDenied"
        );
    }

    #[test]
    fn kinds_of_replies_as_zbus_hands_them_over() {
        let method = zbus::Error::MethodError(
            zbus::names::OwnedErrorName::try_from("org.banger.Error.InUse").unwrap(),
            Some("in use".into()),
            Message::method_call("/", "X").build(&()).unwrap(),
        );
        assert_eq!(ErrorKind::of(&method), Some(ErrorKind::InUse));
        let fdo = zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("no".into())));
        assert_eq!(ErrorKind::of(&fdo), Some(ErrorKind::AccessDenied));
        assert_eq!(ErrorKind::of(&zbus::Error::InvalidReply), None);
        assert!(ErrorKind::AccessDenied.is_refusal() && !ErrorKind::Busy.is_refusal());
    }
}
