//! Start-up and shutdown helpers shared by the two services: logging to the journal, owning the
//! bus name so that nobody can take it over, and a shutdown that drops no call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zbus::Connection;
use zbus::fdo::{RequestNameFlags, RequestNameReply};

/// Logs to stderr (the journal, under systemd) without colours or timestamps; the level comes
/// from `BANGER_LOG` (default `info`).
pub fn init_service_logging() {
    use tracing::level_filters::LevelFilter;
    let level = std::env::var("BANGER_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// Why a service could not own its bus name.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// The bus refused or failed the request.
    #[error("owning {name} on the system bus: {source}")]
    Bus {
        /// The name.
        name: String,
        /// The bus error.
        source: zbus::Error,
    },
    /// Another connection holds the name, and it is never taken over.
    #[error(
        "{name} is already owned by another connection ({owner}); refusing to take it over or \
         to queue for it: stop that process first"
    )]
    Taken {
        /// The name.
        name: String,
        /// Who holds it (unique name, and pid when the bus says).
        owner: String,
    },
}

/// Owns `name` on `conn` without `ALLOW_REPLACEMENT` (zbus's default flags allow it), so that no
/// other connection, even one the bus policy lets own the name, can silently take it over; and
/// without `REPLACE_EXISTING` or queueing, so a second instance fails at once instead.
pub async fn own_name(conn: &Connection, name: &str) -> Result<(), NameError> {
    let bus = |source: zbus::Error| NameError::Bus {
        name: name.to_string(),
        source,
    };
    let reply = conn
        .request_name_with_flags(name, RequestNameFlags::DO_NOT_QUEUE)
        .await
        .map_err(bus)?;
    match reply {
        RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => Ok(()),
        RequestNameReply::Exists | RequestNameReply::InQueue => Err(NameError::Taken {
            name: name.to_string(),
            owner: describe_owner(conn, name).await,
        }),
    }
}

/// "unique name, pid N" for the current owner of `name`, as far as the bus says.
async fn describe_owner(conn: &Connection, name: &str) -> String {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else {
        return "unknown".into();
    };
    let Ok(bus_name) = zbus::names::BusName::try_from(name) else {
        return "unknown".into();
    };
    match dbus.get_name_owner(bus_name).await {
        Ok(owner) => {
            let pid = dbus
                .get_connection_unix_process_id(owner.clone().into())
                .await
                .map(|p| format!(", pid {p}"))
                .unwrap_or_default();
            format!("{owner}{pid}")
        }
        Err(_) => "unknown".into(),
    }
}

/// Counts the method calls a service is answering, and every call it took, so that shutdown
/// can wait for them.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    active: Arc<AtomicUsize>,
    taken: Arc<AtomicUsize>,
}

/// One call being answered; dropping it ends the call.
#[derive(Debug)]
pub struct CallGuard(Arc<AtomicUsize>);

impl InFlight {
    /// Starts counting one call; keep the guard for as long as the call runs.
    pub fn enter(&self) -> CallGuard {
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.active.fetch_add(1, Ordering::SeqCst);
        CallGuard(self.active.clone())
    }

    /// Calls being answered now.
    pub fn count(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Calls taken since the service started.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::SeqCst)
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long no call may have arrived before a stopping service takes it that nothing more was
/// sent to it.
const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// The longest a stopping service waits for calls in progress (systemd's stop timeout is 90 s).
const DRAIN_MAX: Duration = Duration::from_secs(30);

/// Stops a service without dropping calls: gives `name` back first, so that calls made from now
/// on queue at the bus (and activate the next instance) instead of failing; then keeps serving
/// while calls already on their way to this connection still arrive (until none has come for
/// [`DRAIN_QUIET`]: a storm can leave a long backlog routed here before the name was given
/// back); then waits, bounded, until `calls` has none in progress.
pub async fn release_name_and_drain(conn: &Connection, name: &str, calls: &InFlight) {
    if let Err(e) = conn.release_name(name).await {
        tracing::warn!("releasing {name}: {e}");
    }
    let start = tokio::time::Instant::now();
    loop {
        let seen = calls.taken();
        tokio::time::sleep(DRAIN_QUIET).await;
        if calls.taken() == seen || start.elapsed() >= DRAIN_MAX {
            break;
        }
    }
    let mut logged = false;
    while calls.count() > 0 && start.elapsed() < DRAIN_MAX {
        if !logged {
            tracing::info!(calls = calls.count(), "finishing calls in progress");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if calls.count() > 0 {
        tracing::warn!(
            calls = calls.count(),
            "stopping with calls still in progress after {} s",
            DRAIN_MAX.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_guards() {
        let f = InFlight::default();
        assert_eq!(f.count(), 0);
        let a = f.enter();
        let b = f.clone().enter();
        assert_eq!(f.count(), 2);
        drop(a);
        assert_eq!(f.count(), 1);
        drop(b);
        assert_eq!(f.count(), 0);
        assert_eq!(f.taken(), 2, "every call taken is counted for good");
    }
}
