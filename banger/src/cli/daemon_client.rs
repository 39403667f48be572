//! The connection to the owner daemon, and how its refusals are told: shared by `banger vm`
//! and `banger image`.

use anyhow::Context;
use banger_api::error::ErrorKind as Reply;
use banger_api::proxies::Daemon1Proxy;

use super::bus;

/// Connects to the system bus and returns a proxy for the owner daemon (started on demand).
pub async fn daemon() -> anyhow::Result<Daemon1Proxy<'static>> {
    let conn = bus::system_bus().await?;
    Daemon1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .context("making a proxy for bangerd")
}

/// Turns a failed call to the owner daemon into an error that starts with `what` (which names
/// the object, e.g. "creating VM web1") and ends with the daemon's message and error name.
/// When the bus itself refused the caller, prints a hint saying who may manage VMs.
pub fn failed(what: impl std::fmt::Display) -> impl FnOnce(zbus::Error) -> anyhow::Error {
    let what = what.to_string();
    move |e| {
        let e = bus::CallError::from(&e);
        if let Some(hint) = e.kind.and_then(hint_for) {
            eprintln!("banger: hint: {hint}");
        }
        anyhow::Error::new(e).context(what)
    }
}

/// What to tell people after a D-Bus error of this kind, if anything.
pub(super) fn hint_for(kind: Reply) -> Option<&'static str> {
    match kind {
        Reply::AccessDenied => Some(
            "VMs belong to the user who installed banger (see `banger system status`); only that \
             user and root can manage them.",
        ),
        Reply::ServiceUnknown => {
            Some("banger's services are not installed; see `banger system install`.")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_exits_3_with_a_hint() {
        let e = zbus::Error::MethodError(
            zbus::names::OwnedErrorName::try_from(Reply::AccessDenied.name()).unwrap(),
            Some("Rejected send message".into()),
            zbus::message::Message::method_call("/", "Ping")
                .build(&())
                .unwrap(),
        );
        let e = failed("listing VMs")(e);
        assert_eq!(
            format!("{e:#}"),
            format!(
                "listing VMs: the system bus refused the call: its security policy does not let \
                 this user send it ({})",
                Reply::AccessDenied.name()
            ),
            "the bus's own text is for --verbose"
        );
        assert_eq!(
            super::super::Failure::from(e).code,
            super::super::EXIT_NOT_AUTHORIZED
        );
        // zbus may also hand the bus's own refusal over as an fdo error.
        let fdo = zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("no".into())));
        let e = failed("listing VMs")(fdo);
        assert_eq!(
            super::super::Failure::from(e).code,
            super::super::EXIT_NOT_AUTHORIZED
        );
        assert!(
            hint_for(Reply::AccessDenied)
                .unwrap()
                .contains("only that user and root")
        );
        assert_eq!(hint_for(Reply::NotFound), None);
    }
}
