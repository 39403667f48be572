//! Start-up and shutdown helpers shared by the two services: logging to the journal, owning the
//! bus name so that nobody can take it over, and a shutdown that drops no call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zbus::Connection;
use zbus::fdo::{RequestNameFlags, RequestNameReply};

/// Sets up the service's logging. Under systemd, with stderr connected to the journal
/// (`JOURNAL_STREAM` names stderr), events go to journald natively: `PRIORITY` from their level
/// (error 3, warning 4, info 6, debug 7), `SYSLOG_IDENTIFIER` `identifier`, and every tracing
/// field as a journal field of its upper-cased name (`vm_id` → `VM_ID`, `message_id` →
/// `MESSAGE_ID`). Elsewhere, or if the journal cannot be reached, they go to stderr as plain
/// lines. The level comes from `BANGER_LOG` (default `info`) and can be changed while the
/// service runs through [`LogControl`] (`systemctl service-log-level UNIT LEVEL`).
pub fn init_service_logging(identifier: &str) -> LogLevel {
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::prelude::*;
    let level = std::env::var("BANGER_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let (filter, handle) = tracing_subscriber::reload::Layer::new(level);
    let journal = stderr_is_journal()
        .then(tracing_journald::layer)
        .and_then(Result::ok)
        .map(|layer| {
            use tracing_journald::{Priority, PriorityMappings};
            layer
                .with_field_prefix(None)
                .with_syslog_identifier(identifier.to_string())
                .with_priority_mappings(PriorityMappings {
                    error: Priority::Error,
                    warn: Priority::Warning,
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    trace: Priority::Debug,
                })
        });
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(stderr)
        .init();
    LogLevel { handle }
}

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM` to the device and
/// inode of the stream it connected, and a program whose stderr was redirected must not take
/// that for its own.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2")
        .map(|m| journal_stream_is(&stream.to_string_lossy(), m.dev(), m.ino()))
        .unwrap_or(false)
}

/// Whether `JOURNAL_STREAM`'s value (`DEVICE:INODE`) names the file `dev`, `ino`.
fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The running service's log level, changeable without a restart.
#[derive(Clone)]
pub struct LogLevel {
    handle: tracing_subscriber::reload::Handle<
        tracing::level_filters::LevelFilter,
        tracing_subscriber::Registry,
    >,
}

/// syslog's level names (as `LogControl1.LogLevel` speaks them) and the tracing level each is.
const SYSLOG_LEVELS: [(&str, tracing::level_filters::LevelFilter); 8] = {
    use tracing::level_filters::LevelFilter as L;
    [
        ("emerg", L::ERROR),
        ("alert", L::ERROR),
        ("crit", L::ERROR),
        ("err", L::ERROR),
        ("warning", L::WARN),
        ("notice", L::INFO),
        ("info", L::INFO),
        ("debug", L::DEBUG),
    ]
};

impl LogLevel {
    /// The level now, in syslog's words (`err`, `warning`, `info`, `debug`).
    pub fn get(&self) -> String {
        use tracing::level_filters::LevelFilter as L;
        let now = self.handle.clone_current().unwrap_or(L::INFO);
        match now {
            L::OFF | L::ERROR => "err",
            L::WARN => "warning",
            L::INFO => "info",
            _ => "debug",
        }
        .to_string()
    }

    /// Sets the level from a syslog level name; an unknown name is an error naming the
    /// known ones.
    pub fn set(&self, name: &str) -> Result<(), String> {
        let Some((_, level)) = SYSLOG_LEVELS.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "unknown log level {name:?}: use one of {}",
                SYSLOG_LEVELS.map(|(n, _)| n).join(", ")
            ));
        };
        self.handle
            .modify(|l| *l = *level)
            .map_err(|e| format!("changing the log level: {e}"))?;
        tracing::info!("log level set to {name}");
        Ok(())
    }
}

/// `org.freedesktop.LogControl1` at `/org/freedesktop/LogControl1`, so that `systemctl
/// service-log-level UNIT [LEVEL]` reads and changes the service's log level without a
/// restart. Only root and the service's own user may change it.
pub struct LogControl {
    level: LogLevel,
    identifier: &'static str,
}

/// Where `org.freedesktop.LogControl1` is served.
pub const LOG_CONTROL_PATH: &str = "/org/freedesktop/LogControl1";

impl LogControl {
    /// The control of `level` for the program `identifier` (its syslog identifier).
    pub fn new(level: LogLevel, identifier: &'static str) -> Self {
        LogControl { level, identifier }
    }
}

/// Whether the caller of a property write is root or this process's user.
async fn may_set(
    conn: &Connection,
    hdr: Option<&zbus::message::Header<'_>>,
) -> zbus::fdo::Result<()> {
    let sender = hdr
        .and_then(|h| h.sender())
        .ok_or_else(|| zbus::fdo::Error::AccessDenied("the call has no sender".into()))?;
    let uid = zbus::fdo::DBusProxy::new(conn)
        .await?
        .get_connection_unix_user(sender.clone().into())
        .await?;
    let me = crate::users::current_uid();
    if uid == 0 || uid == me {
        Ok(())
    } else {
        Err(zbus::fdo::Error::AccessDenied(format!(
            "uid {uid} may not change the log level: only root and uid {me} may"
        )))
    }
}

#[zbus::interface(name = "org.freedesktop.LogControl1")]
impl LogControl {
    /// The log level: emerg, alert, crit, err, warning, notice, info or debug.
    #[zbus(property)]
    fn log_level(&self) -> String {
        self.level.get()
    }

    /// Changes the log level (root and the service's own user only).
    #[zbus(property)]
    async fn set_log_level(
        &self,
        value: String,
        #[zbus(header)] hdr: Option<zbus::message::Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<()> {
        may_set(conn, hdr.as_ref()).await?;
        self.level
            .set(&value)
            .map_err(zbus::fdo::Error::InvalidArgs)
    }

    /// Where logs go: `journal` under systemd (stderr connected to the journal: events are
    /// written to journald natively), else `console`.
    #[zbus(property)]
    fn log_target(&self) -> String {
        if stderr_is_journal() {
            "journal"
        } else {
            "console"
        }
        .to_string()
    }

    /// The target is chosen at start: only the one it has (or `auto`) is accepted.
    #[zbus(property)]
    async fn set_log_target(
        &self,
        value: String,
        #[zbus(header)] hdr: Option<zbus::message::Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<()> {
        may_set(conn, hdr.as_ref()).await?;
        if value == "auto" || value == self.log_target() {
            Ok(())
        } else {
            Err(zbus::fdo::Error::NotSupported(format!(
                "{} chose its log target ({}) at start; log target {value:?} is not supported",
                self.identifier,
                self.log_target()
            )))
        }
    }

    /// The program's syslog identifier.
    #[zbus(property)]
    fn syslog_identifier(&self) -> String {
        self.identifier.to_string()
    }
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
    fn journal_stream_must_name_this_very_file() {
        assert!(journal_stream_is("8:12345", 8, 12345));
        assert!(!journal_stream_is("8:12345", 8, 12346), "another inode");
        assert!(!journal_stream_is("9:12345", 8, 12345), "another device");
        for bad in ["", "8", "8:", ":1", "x:1", "8:12345:1"] {
            assert!(!journal_stream_is(bad, 8, 12345), "{bad:?}");
        }
    }

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

/// How often [`return_freed_memory`] looks at the resident size.
pub const TRIM_PERIOD: Duration = Duration::from_secs(10);
/// How far above the smallest size a trim has left the resident size must be for another.
const TRIM_SLACK_BYTES: u64 = 256 << 10;
/// After how many looks at an unchanged resident size the heap is trimmed again anyway.
const RETRIM_LOOKS: u32 = 6;

/// What [`return_freed_memory`] decides at each look at the resident size.
#[derive(Debug, Default)]
struct TrimPolicy {
    /// The smallest resident size a trim has left: what this service needs when idle.
    floor: Option<u64>,
    /// The resident size the last trim left, and the looks since that found it unchanged.
    last: Option<(u64, u32)>,
}

impl TrimPolicy {
    /// Whether to trim now, at resident size `now`: when it is above the floor by more than
    /// [`TRIM_SLACK_BYTES`] and the service has done something since the last trim. A trim
    /// in the middle of a burst is followed by another once the burst has freed its memory,
    /// and a size that does not change is trimmed again every [`RETRIM_LOOKS`] looks, in case
    /// the burst ended without touching a new page.
    fn due(&mut self, now: u64) -> bool {
        let Some(floor) = self.floor else {
            return true;
        };
        if now <= floor + TRIM_SLACK_BYTES {
            return false;
        }
        match &mut self.last {
            Some((left, looks)) if *left == now && *looks + 1 < RETRIM_LOOKS => {
                *looks += 1;
                false
            }
            _ => true,
        }
    }

    /// A trim has left the resident size at `after`.
    fn trimmed(&mut self, after: u64) {
        self.floor = Some(self.floor.map_or(after, |f| f.min(after)));
        self.last = Some((after, 0));
    }
}

/// The resident size of this process, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Hands the heap's free pages back to the kernel (glibc's `malloc_trim(0)`); returns whether
/// any memory was released.
#[allow(unsafe_code)]
pub fn trim_heap() -> bool {
    // SAFETY: malloc_trim only walks and releases the allocator's own free chunks; it takes the
    // allocator's locks like any malloc call and is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Returns the memory a burst of calls left in the heap, for the life of the service.
///
/// glibc's malloc keeps freed memory inside its heap for reuse, and a burst (a thousand callers
/// at once, each call's messages and tasks) leaves the heap fragmented: megabytes that nothing
/// uses stay resident. Every [`TRIM_PERIOD`] this reads the resident size and trims the heap
/// when [`TrimPolicy`] says so: the first time, and then whenever the size is well above the
/// smallest a trim has left. An idle service only reads `/proc/self/statm` once a period (and
/// trims a few KiB of heap once a minute if its size sits above that floor).
pub async fn return_freed_memory(identifier: &'static str) {
    let mut policy = TrimPolicy::default();
    let mut tick = tokio::time::interval(TRIM_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(now) = resident_bytes() else { return };
        if policy.due(now) {
            trim_heap();
            let after = resident_bytes().unwrap_or(now);
            let returned = now.saturating_sub(after);
            if returned >= 64 << 10 {
                tracing::debug!(
                    "{identifier}: returned {} KiB of freed heap to the kernel ({} KiB resident)",
                    returned >> 10,
                    after >> 10
                );
            }
            policy.trimmed(after);
        }
    }
}

#[cfg(test)]
mod trim_tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_trim_in_the_middle_of_a_burst_is_followed_by_one_after_it() {
        let mut p = TrimPolicy::default();
        // The first look trims, and sets the floor.
        assert!(p.due(8 * MIB));
        p.trimmed(7 * MIB);
        // Idle at the floor, or within the slack of it: nothing to do.
        assert!(!p.due(7 * MIB));
        assert!(!p.due(7 * MIB + TRIM_SLACK_BYTES));
        // A burst: trimmed while it runs, so the trim leaves its live memory.
        assert!(p.due(11 * MIB));
        p.trimmed(10 * MIB);
        // The burst ends; its freed memory stays resident at about the same size. The size has
        // changed since the last trim, so it is trimmed again, back to the floor.
        assert!(p.due(10 * MIB + 4096));
        p.trimmed(7 * MIB + 4096);
        assert!(!p.due(7 * MIB + 4096), "back within the slack of the floor");
        assert_eq!(
            p.floor,
            Some(7 * MIB),
            "the floor is the smallest size a trim left"
        );
    }

    #[test]
    fn an_unchanged_size_above_the_floor_is_trimmed_again_only_now_and_then() {
        let mut p = TrimPolicy::default();
        assert!(p.due(7 * MIB));
        p.trimmed(7 * MIB);
        assert!(p.due(10 * MIB));
        p.trimmed(9 * MIB);
        // Nothing happened since: no trim for the next RETRIM_LOOKS - 1 looks, then one.
        let looks: Vec<bool> = (0..RETRIM_LOOKS).map(|_| p.due(9 * MIB)).collect();
        let mut want = vec![false; RETRIM_LOOKS as usize - 1];
        want.push(true);
        assert_eq!(looks, want);
        p.trimmed(9 * MIB);
        assert!(!p.due(9 * MIB), "the count starts again after that trim");
    }

    #[test]
    fn trimming_returns_a_fragmented_heap_to_the_kernel() {
        // 4000 blocks of 8 KiB (from the heap, not mmap), every tenth kept: the other 90% are
        // freed in the middle of the heap, so shrinking its top cannot return them; only
        // malloc_trim's release of whole free pages does. Other tests share the process, so the
        // figures are compared with a wide margin, never exactly.
        let blocks: Vec<Vec<u8>> = (0..4000).map(|i| vec![i as u8; 8 << 10]).collect();
        let kept: Vec<Vec<u8>> = blocks.into_iter().step_by(10).collect();
        let before = resident_bytes().expect("statm");
        trim_heap();
        let after = resident_bytes().expect("statm");
        assert!(
            after + (8 << 20) <= before,
            "trimming released only {} KiB of about 28 MiB freed (before {} KiB, after {} KiB)",
            before.saturating_sub(after) >> 10,
            before >> 10,
            after >> 10
        );
        assert_eq!(kept.len(), 400);
    }
}
