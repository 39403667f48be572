//! Connections to the system bus and calls that may need polkit authorization.

use std::time::Duration;

use anyhow::Context;
use banger_api::error::ErrorKind;
use banger_api::proxies::Root1Proxy;
use zbus::Connection;
use zbus::proxy::MethodFlags;

use super::agent::Agent;
use super::remote;
use zbus::address::Address;
use zbus::address::transport::{Transport, Unixexec};

/// Connects to the system bus (another host's with `-H`) with a call timeout long enough for
/// a password prompt.
pub async fn system_bus() -> anyhow::Result<Connection> {
    let builder = match remote::get() {
        None => zbus::connection::Builder::system(),
        Some(host) => {
            let ssh = Unixexec::new("ssh".into(), None, host.ssh_args());
            zbus::connection::Builder::address(Address::from(Transport::Unixexec(ssh)))
        }
    };
    let conn = builder
        .method_timeout(Duration::from_secs(600))
        .build()
        .await;
    match remote::get() {
        None => conn.context("connecting to the system bus (is dbus running?)"),
        Some(host) => conn.with_context(|| {
            format!(
                "reaching the system bus of {} over ssh failed (ssh's own words, if any, are \
                 above; the host must accept your SSH login, be in your known_hosts, and have \
                 {} from systemd)",
                host.spec,
                remote::BRIDGE
            )
        }),
    }
}

/// Whether `banger --verbose` asked for the raw texts behind messages.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Shows raw D-Bus error texts from now on (`banger --verbose`).
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A D-Bus error reply, reduced to its name and its message for people.
#[derive(Debug)]
pub struct CallError {
    /// The D-Bus error name (empty when the call failed without an error reply).
    pub name: String,
    /// What kind of error the name says, when banger knows it.
    pub kind: Option<ErrorKind>,
    /// The message.
    pub message: String,
    /// The sender's own text, when `message` says it more plainly (shown with `--verbose`).
    pub raw: Option<String>,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{} ({})", self.message, self.name)?;
        }
        match &self.raw {
            Some(raw) if verbose() => write!(f, "; the bus said: {raw}"),
            _ => Ok(()),
        }
    }
}

/// The plain message for a refusal by the bus's own policy: dbus-daemon's text ("Rejected send
/// message, 2 matched rules; type=…") lists its rules, which helps nobody but a debugger.
fn plain_bus_refusal(kind: Option<ErrorKind>, message: String) -> (String, Option<String>) {
    if kind == Some(ErrorKind::AccessDenied) && message.starts_with("Rejected send message") {
        (
            "the system bus refused the call: its security policy does not let this user send it"
                .to_string(),
            Some(message),
        )
    } else {
        (message, None)
    }
}

impl std::error::Error for CallError {}

impl From<&zbus::Error> for CallError {
    fn from(e: &zbus::Error) -> Self {
        let (name, message) = match e {
            zbus::Error::MethodError(name, msg, _) => {
                (name.to_string(), msg.clone().unwrap_or_default())
            }
            zbus::Error::FDO(f) => (
                zbus::DBusError::name(f.as_ref()).to_string(),
                zbus::DBusError::description(f.as_ref())
                    .unwrap_or_default()
                    .to_string(),
            ),
            other => (String::new(), other.to_string()),
        };
        let kind = ErrorKind::from_name(&name);
        let (message, raw) = plain_bus_refusal(kind, message);
        CallError {
            name,
            kind,
            message,
            raw,
        }
    }
}

/// Whether an error chain is an authorization refusal.
pub fn is_authorization_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let kind = if let Some(c) = c.downcast_ref::<CallError>() {
            c.kind
        } else if let Some(z) = c.downcast_ref::<zbus::Error>() {
            ErrorKind::of(z)
        } else {
            None
        };
        kind.is_some_and(ErrorKind::is_refusal)
    })
}

/// The message of a D-Bus error without its name, for people.
pub fn message_of(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(_, Some(msg), _) => msg.clone(),
        zbus::Error::FDO(f) => zbus::DBusError::description(f.as_ref())
            .map(str::to_string)
            .unwrap_or_else(|| f.to_string()),
        other => other.to_string(),
    }
}

/// Calls a polkit-gated `Root1` method with `body` as its arguments and returns its reply. From
/// a terminal (and not as root) a `pkttyagent` is started first and the call allows interactive
/// authorization, so polkit can ask for a password; otherwise a call that needs one fails with a
/// message saying how to get authorized. A refusal or failure is a [`CallError`] wrapped in
/// context naming `what`.
pub async fn call_gated<B, R>(
    conn: &Connection,
    method: &str,
    body: &B,
    what: &str,
) -> anyhow::Result<R>
where
    B: serde::Serialize + zbus::DynamicType,
    R: for<'d> zbus::wire::DynamicDeserialize<'d>,
{
    let root1 = Root1Proxy::new(conn).await?;
    // A local agent cannot answer for another host's polkit.
    let agent = match remote::get() {
        None => Agent::start_if_interactive().context("starting the polkit agent")?,
        Some(_) => None,
    };
    let flags = if agent.is_some() {
        MethodFlags::ALLOW_INTERACTIVE_AUTH
    } else {
        MethodFlags::empty()
    };
    let result: zbus::Result<Option<R>> = root1.inner().call_with_flags(method, flags, body).await;
    drop(agent);
    match result {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(anyhow::anyhow!("{what}: bangerd-root sent no reply")),
        Err(e) => {
            let e = CallError::from(&e);
            if e.kind == Some(ErrorKind::InteractiveAuthorizationRequired)
                && let Some(host) = remote::get()
            {
                eprintln!(
                    "banger: hint: {} wants a password for this, which cannot be asked over -H. \
                     Run it there ({}), or enable the example polkit rule in PREFIX/share/banger \
                     on {} so that it needs none.",
                    host.spec,
                    host.run_there("…"),
                    host.spec
                );
            } else if e.kind == Some(ErrorKind::InteractiveAuthorizationRequired) {
                eprintln!(
                    "banger: hint: this needs authentication. Run it from a terminal so banger can \
                     ask for a password, run it as root, or enable the example polkit rule in \
                     PREFIX/share/banger."
                );
            }
            Err(anyhow::Error::new(e).context(format!("{what} was refused or failed")))
        }
    }
}

impl CallError {
    /// An error without a reply (no answer, a broken connection), with its message.
    pub fn without_reply(message: impl Into<String>) -> Self {
        CallError {
            name: String::new(),
            kind: None,
            message: message.into(),
            raw: None,
        }
    }

    /// Whether the reply was an error of this kind.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == Some(kind)
    }
}

/// The [`CallError`] in an error chain, if the chain holds a D-Bus error reply.
pub fn call_error(e: &anyhow::Error) -> Option<&CallError> {
    e.chain().find_map(|c| c.downcast_ref::<CallError>())
}
