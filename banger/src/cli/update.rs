//! `banger update`: asks the root helper whether a newer release exists, or starts an update job
//! and follows it to its end — across the helper's own restart, which every update goes through —
//! then turns the job's result into the last line and the exit code.
//!
//! It never decides anything about the update itself (which release, whether it is allowed,
//! whether it may still be canceled): the helper does. This module only asks, watches and reports.

use std::collections::HashMap;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, bail};
use banger_api::error::ErrorKind;
use banger_api::job::{JobResult, Stage};
use banger_api::names::{JOB_INTERFACE, JOB_PATH_NAMESPACE, ROOT1_NAME};
use banger_api::proxies::{JobProxy, Root1Proxy};
use futures_util::{FutureExt, StreamExt};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use zbus::message::Sequence;
use zbus::proxy::CacheProperties;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedObjectPath, OwnedVariant, Variant};

use super::bus::{self, CallError};
use super::{CmdResult, EXIT_CANCELED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_ROLLED_BACK};

/// How long to wait for the helper to come back after it went away.
const HELPER_RETURN_PATIENCE: Duration = Duration::from_secs(120);
/// Pause between two attempts to read the job while the helper comes back.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// How many "no such object" answers in a row mean the job is really gone (a helper that has
/// just taken its name is given a moment to serve the job it resumes).
const GONE_CONFIRMATIONS: u32 = 4;
/// How long a `Cancel()` may take before banger stops waiting for its answer.
const CANCEL_PATIENCE: Duration = Duration::from_secs(30);
/// Queue for the job's signals; progress comes in bursts while a read or a cancel is pending.
const SIGNAL_QUEUE: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// Options of `banger update`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UpdateArgs {
    /// Only say whether a newer release is available; changes nothing and asks for no password.
    #[arg(long, conflicts_with_all = ["dry_run", "force", "to", "allow_downgrade"])]
    pub check: bool,
    /// Download, verify and stage the release, then stop: nothing installed is changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Go ahead even while bangerd reports operations in flight (they may be cut short when it
    /// restarts).
    #[arg(long)]
    pub force: bool,
    /// Install this version (e.g. 0.2.0) instead of the latest stable release; asks polkit for
    /// org.banger.update.pinned.
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub to: Option<String>,
    /// Allow installing a version older than the one installed; asks polkit for
    /// org.banger.update.downgrade.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Print JSON on stdout instead of text: one object per line for each event of the update
    /// (the last one is "finished"), or a single object with --check.
    #[arg(long)]
    pub json: bool,
}

/// Accepts `0.2.0` and `v0.2.0`; the helper gets `0.2.0`.
fn parse_version(s: &str) -> Result<String, String> {
    let v = s.strip_prefix('v').unwrap_or(s).trim();
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err(format!(
            "{s:?} is not a version (expected something like 0.2.0)"
        ));
    }
    Ok(v.to_string())
}

/// `banger update`.
pub async fn run(args: UpdateArgs) -> CmdResult {
    let conn = bus::system_bus().await?;
    if args.check {
        return check(&conn, args.json).await;
    }
    // Subscribe before the job exists, so that none of its signals and no restart of the helper
    // can be missed.
    let signals = subscribe_job_signals(&conn).await?;
    let owners = zbus::fdo::DBusProxy::new(&conn)
        .await?
        .receive_name_owner_changed_with_args(&[(0, ROOT1_NAME)])
        .await
        .context("watching org.banger.Root1 on the bus")?;
    let options = update_options(&args);
    let job: OwnedObjectPath =
        match bus::call_gated(&conn, "Update", &(options,), "starting the update").await {
            Ok(job) => job,
            Err(e) => return Err(explain_busy(&conn, e).await.into()),
        };
    let mut follow = Follow {
        conn,
        job,
        view: JobView::default(),
        helper: None,
        out: Output::new(args.json),
    };
    Ok(follow.run(signals, owners).await?)
}

/// `banger update --check`.
async fn check(conn: &Connection, json: bool) -> CmdResult {
    let root1 = Root1Proxy::new(conn).await?;
    let (current, latest, available) = root1
        .check_for_update()
        .await
        .map_err(|e| anyhow::Error::new(CallError::from(&e)))
        .context("asking bangerd-root whether an update is available")?;
    if json {
        println!("{}", check_json(&current, &latest, available));
    } else {
        println!("{}", check_line(&current, &latest, available));
    }
    Ok(EXIT_OK)
}

/// The line `--check` prints.
fn check_line(current: &str, latest: &str, available: bool) -> String {
    if available {
        format!(
            "update available: {} → {}",
            version_label(current),
            version_label(latest)
        )
    } else {
        format!("up to date ({})", version_label(current))
    }
}

/// The object `--check --json` prints.
fn check_json(current: &str, latest: &str, available: bool) -> String {
    json!({"current": current, "latest": latest, "available": available}).to_string()
}

/// The options of `Update(a{sv})`: only those given on the command line.
fn update_options(args: &UpdateArgs) -> HashMap<&'static str, Variant<'static>> {
    banger_api::options::UpdateOptions {
        version: args.to.clone(),
        dry_run: args.dry_run,
        force: args.force,
        allow_downgrade: args.allow_downgrade,
    }
    .to_dict()
}

/// Turns "another update is running" into a message that says what to do; other errors pass.
async fn explain_busy(conn: &Connection, e: anyhow::Error) -> anyhow::Error {
    let Some(busy) = bus::call_error(&e).filter(|c| c.is(ErrorKind::Busy)) else {
        return e;
    };
    let running = match Root1Proxy::new(conn).await {
        Ok(root1) => root1.active_job().await.ok(),
        Err(_) => None,
    };
    let mut msg = format!(
        "another update is already running ({}); nothing was changed",
        busy.message
    );
    if let Some(job) = running.filter(|j| j.as_str() != "/") {
        msg.push_str(&format!(". Watch it with: {}", watch_command(job.as_str())));
    }
    anyhow::anyhow!(msg)
}

/// A command that shows a job's stage without banger.
fn watch_command(job: &str) -> String {
    format!("busctl get-property {ROOT1_NAME} {job} {JOB_INTERFACE} Stage")
}

/// Subscribes to every signal of every job object of the helper, whichever process owns the name
/// at the time (the bus matches the well-known sender against its current owner, so the
/// subscription outlives restarts of the helper).
async fn subscribe_job_signals(conn: &Connection) -> anyhow::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(ROOT1_NAME)
        .path_namespace(JOB_PATH_NAMESPACE)
        .build()?;
    MessageStream::for_match_rule(rule, conn, Some(SIGNAL_QUEUE))
        .await
        .context("subscribing to the signals of update jobs")
}

/// The last line of a run and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What to tell the user.
    pub line: String,
    /// The exit code.
    pub code: i32,
}

/// The last line and exit code for a finished job, from its `Result`, `Error`, `FromVersion`
/// and `TargetVersion`.
pub fn outcome(result: &str, error: &str, from: &str, target: &str) -> Outcome {
    let error = if error.is_empty() {
        "no reason given"
    } else {
        error
    };
    let (line, code) = match JobResult::parse(result) {
        Some(JobResult::Updated) => (
            format!(
                "updated {} → {}",
                version_label(from),
                version_label(target)
            ),
            EXIT_OK,
        ),
        Some(JobResult::UpToDate) => (
            format!(
                "up to date ({})",
                version_label(if from.is_empty() { target } else { from })
            ),
            EXIT_OK,
        ),
        Some(JobResult::DryRun) => (
            format!(
                "dry run: {} downloaded, verified and staged; nothing was changed",
                version_label(target)
            ),
            EXIT_OK,
        ),
        // A failed rollback says so itself: never claim nothing changed then.
        Some(JobResult::Failed) if error.contains("ROLLBACK INCOMPLETE") => {
            (format!("update failed: {error}"), EXIT_FAILED)
        }
        Some(JobResult::Failed) => (
            format!("update failed: {error}; nothing was changed"),
            EXIT_FAILED,
        ),
        Some(JobResult::RolledBack) => (
            format!("update failed: {error} (rolled back to previous install)"),
            EXIT_ROLLED_BACK,
        ),
        Some(JobResult::Canceled) => (
            "update canceled; nothing was changed".to_string(),
            EXIT_CANCELED,
        ),
        None => (
            format!(
                "the update ended with a result banger does not know ({result:?}): {error}; \
                 check the install with: banger system status"
            ),
            EXIT_FAILED,
        ),
    };
    Outcome { line, code }
}

/// Whether the helper leaves the bus on purpose at `stage`: it restarts itself onto the new
/// binaries, or, after a rollback, back onto the old ones.
pub fn helper_restart_is_planned(stage: &str) -> bool {
    Stage::parse(stage) == Some(Stage::RestartingHelper)
}

/// The last line and exit code when the job object is gone after the helper restarted; what it
/// means depends on whether the job had reached the point of no return.
pub fn lost_outcome(last_stage: &str) -> Outcome {
    let line = if past_point_of_no_return(last_stage) {
        "the update job was lost when the helper restarted after the point of no return; the \
         install is either the previous or the new release — check it with: banger system status"
            .to_string()
    } else {
        "the update job was lost when the helper restarted before the point of no return; \
         nothing was changed"
            .to_string()
    };
    Outcome {
        line,
        code: EXIT_FAILED,
    }
}

/// Where a stage is in the order a job passes them; `None` for a word this banger does not
/// know (a newer helper's), which is shown but never compared.
fn stage_index(stage: &str) -> Option<usize> {
    Stage::parse(stage).map(Stage::position)
}

/// Whether a stage is at or after the swap of the binaries. Unknown stages count as before.
fn past_point_of_no_return(stage: &str) -> bool {
    Stage::parse(stage).is_some_and(Stage::past_point_of_no_return)
}

/// `v0.2.0` for `0.2.0`.
fn version_label(v: &str) -> String {
    if v.is_empty() {
        "an unknown version".to_string()
    } else if v.starts_with('v') {
        v.to_string()
    } else {
        format!("v{v}")
    }
}

/// A byte count for people: `512 B`, `12.3 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The download progress line shown on a terminal.
fn progress_line(done: u64, total: u64) -> String {
    if total == 0 {
        return format!("downloading: {}", human_bytes(done));
    }
    let percent = (done.min(total) as f64 * 100.0 / total as f64).floor();
    format!(
        "downloading: {} of {} ({percent:.0}%)",
        human_bytes(done),
        human_bytes(total)
    )
}

/// What happened to a request to cancel the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelStep {
    /// Ctrl-C was pressed; `Cancel()` is on its way.
    Asked,
    /// The helper accepted it; the job ends as canceled.
    Accepted,
    /// The helper refused: the job is past the point of no return.
    PastPointOfNoReturn,
    /// The call failed for another reason.
    Failed(String),
}

/// Something that happened while following an update, as shown to the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The helper started this job.
    Job {
        /// The job's object path.
        job: String,
    },
    /// The job entered a stage.
    Stage {
        /// The stage.
        stage: String,
    },
    /// Download progress.
    Progress {
        /// Bytes downloaded so far.
        bytes_done: u64,
        /// Bytes to download (0 when not known yet).
        bytes_total: u64,
    },
    /// The helper left the bus: on purpose when `planned` (it restarts itself during every
    /// update, and again when it rolls back), else it crashed, was stopped or was killed.
    HelperRestarting {
        /// The job's stage when it left.
        stage: String,
        /// Whether the update had asked for the restart.
        planned: bool,
    },
    /// The helper is back and the job is followed again.
    Reattached {
        /// The job's object path.
        job: String,
    },
    /// Progress of a cancel request.
    Cancel(CancelStep),
    /// A second Ctrl-C: banger stops following; the job goes on.
    Detached {
        /// The job's object path.
        job: String,
    },
    /// The job ended.
    Finished {
        /// `success` from the job's `Finished` signal (or derived from the result).
        success: bool,
        /// The job's `Result`.
        result: String,
        /// The job's `Error`.
        error: String,
        /// The version installed when the job started.
        from_version: String,
        /// The version the job installs.
        target_version: String,
        /// The last line and exit code.
        outcome: Outcome,
    },
    /// The job object no longer exists after the helper restarted.
    Lost {
        /// The last line and exit code.
        outcome: Outcome,
    },
}

impl Event {
    /// The event as one line of JSON.
    pub fn to_json(&self) -> String {
        let value = match self {
            Event::Job { job } => json!({"event": "job", "job": job}),
            Event::Stage { stage } => json!({"event": "stage", "stage": stage}),
            Event::Progress {
                bytes_done,
                bytes_total,
            } => json!({"event": "progress", "bytes_done": bytes_done, "bytes_total": bytes_total}),
            Event::HelperRestarting { stage, planned } => {
                json!({"event": "helper-restarting", "stage": stage, "planned": planned})
            }
            Event::Reattached { job } => json!({"event": "reattached", "job": job}),
            Event::Cancel(step) => match step {
                CancelStep::Asked => json!({"event": "cancel", "outcome": "asked"}),
                CancelStep::Accepted => json!({"event": "cancel", "outcome": "accepted"}),
                CancelStep::PastPointOfNoReturn => {
                    json!({"event": "cancel", "outcome": "past-point-of-no-return"})
                }
                CancelStep::Failed(error) => {
                    json!({"event": "cancel", "outcome": "failed", "error": error})
                }
            },
            Event::Detached { job } => json!({"event": "detached", "job": job}),
            Event::Finished {
                success,
                result,
                error,
                from_version,
                target_version,
                outcome,
            } => json!({
                "event": "finished",
                "success": success,
                "result": result,
                "error": error,
                "from_version": from_version,
                "target_version": target_version,
                "message": outcome.line,
                "exit_code": outcome.code,
            }),
            Event::Lost { outcome } => json!({
                "event": "lost",
                "message": outcome.line,
                "exit_code": outcome.code,
            }),
        };
        value.to_string()
    }

    /// The event as a line for people; `None` for events a person does not need to see and for
    /// progress, which is drawn in place on a terminal only.
    pub fn to_line(&self) -> Option<String> {
        match self {
            Event::Job { job } => Some(format!("job: {job}")),
            Event::Stage { stage } => Some(format!("stage: {stage}")),
            Event::Progress { .. } => None,
            Event::HelperRestarting { planned: true, .. } => Some(
                "bangerd-root is restarting itself onto the installed binaries, as every update \
                 (and every rollback) does; waiting for it to come back…"
                    .to_string(),
            ),
            Event::HelperRestarting {
                stage,
                planned: false,
            } => Some(format!(
                "bangerd-root left the bus during stage {} without the update asking it to (it \
                 crashed, or was stopped or killed). systemd restarts it after a failure, and \
                 whatever starts it next resumes the update from its journal; waiting up to {} s \
                 for it… If it does not come back: sudo banger system status, and journalctl -u \
                 bangerd-root",
                if stage.is_empty() { "(unknown)" } else { stage },
                HELPER_RETURN_PATIENCE.as_secs()
            )),
            Event::Reattached { .. } => Some("bangerd-root is back; following the update".into()),
            Event::Cancel(CancelStep::Asked) => Some(
                "canceling the update… (press Ctrl-C again to stop following and leave it running)"
                    .to_string(),
            ),
            Event::Cancel(CancelStep::Accepted) => None,
            Event::Cancel(CancelStep::PastPointOfNoReturn) => Some(
                "the update is past the point of no return and will finish on its own; following it…"
                    .to_string(),
            ),
            Event::Cancel(CancelStep::Failed(error)) => Some(format!(
                "could not cancel the update: {error}; following it…"
            )),
            Event::Detached { job } => Some(format!(
                "stopped following; the update continues in the background. See its stage with: {}",
                watch_command(job)
            )),
            Event::Finished { outcome, .. } | Event::Lost { outcome } => Some(outcome.line.clone()),
        }
    }
}

/// What banger knows of the job, from its properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobView {
    state: String,
    stage: String,
    bytes_done: u64,
    bytes_total: u64,
    from_version: String,
    target_version: String,
    result: String,
    error: String,
}

impl JobView {
    /// Takes in changed (or all) properties and returns the events they make, in the order a
    /// person reads them: the stage first, then progress.
    pub fn apply(&mut self, changed: &HashMap<String, OwnedVariant>) -> Vec<Event> {
        let text = |name: &str| {
            changed
                .get(name)
                .and_then(|v| <&str>::try_from(v).ok())
                .map(str::to_string)
        };
        let number = |name: &str| changed.get(name).and_then(|v| u64::try_from(v).ok());
        let mut events = Vec::new();
        if let Some(stage) = text("Stage")
            && stage != self.stage
        {
            self.stage = stage;
            if !self.stage.is_empty() {
                events.push(Event::Stage {
                    stage: self.stage.clone(),
                });
            }
        }
        let (done, total) = (number("BytesDone"), number("BytesTotal"));
        let moved = done.is_some_and(|d| d != self.bytes_done)
            || total.is_some_and(|t| t != self.bytes_total);
        self.bytes_done = done.unwrap_or(self.bytes_done);
        self.bytes_total = total.unwrap_or(self.bytes_total);
        if moved {
            events.push(Event::Progress {
                bytes_done: self.bytes_done,
                bytes_total: self.bytes_total,
            });
        }
        for (name, field) in [
            ("State", &mut self.state),
            ("FromVersion", &mut self.from_version),
            ("TargetVersion", &mut self.target_version),
            ("Result", &mut self.result),
            ("Error", &mut self.error),
        ] {
            if let Some(v) = text(name) {
                *field = v;
            }
        }
        events
    }

    /// Takes in a full read of the properties. A read can be overtaken by a change the helper
    /// signalled while it was answering, so a read never moves the stage or the download back.
    pub fn apply_read(&mut self, properties: &HashMap<String, OwnedVariant>) -> Vec<Event> {
        let mut properties: HashMap<String, OwnedVariant> = properties
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.try_clone().ok()?)))
            .collect();
        let stage = properties
            .get("Stage")
            .and_then(|v| <&str>::try_from(v).ok());
        if let (Some(read), Some(known)) = (stage.and_then(stage_index), stage_index(&self.stage))
            && read < known
        {
            properties.remove("Stage");
        }
        let done = properties
            .get("BytesDone")
            .and_then(|v| u64::try_from(v).ok());
        if done.is_some_and(|d| d < self.bytes_done) {
            properties.remove("BytesDone");
            properties.remove("BytesTotal");
        }
        self.apply(&properties)
    }

    /// Whether the properties say the job has ended.
    pub fn is_finished(&self) -> bool {
        self.state == "finished" && !self.result.is_empty()
    }

    /// The `Finished` event for this job.
    pub fn finished(&self, success: Option<bool>, result: &str, error: &str) -> Event {
        let outcome = outcome(result, error, &self.from_version, &self.target_version);
        Event::Finished {
            success: success.unwrap_or(outcome.code == EXIT_OK),
            result: result.to_string(),
            error: error.to_string(),
            from_version: self.from_version.clone(),
            target_version: self.target_version.clone(),
            outcome,
        }
    }
}

/// Whether a change of the owner of `org.banger.Root1` means the helper banger follows went away
/// or was replaced. `helper` is the unique name that last answered; stale changes (an owner that
/// left before the current one answered) do not count.
pub fn helper_changed(helper: Option<&str>, old: Option<&str>, new: Option<&str>) -> bool {
    match new {
        Some(new) => Some(new) != helper,
        None => old.is_some() && old == helper,
    }
}

/// Where events go: JSON lines, or lines for people with a progress line redrawn in place when
/// stdout is a terminal.
struct Output {
    json: bool,
    terminal: bool,
    progress_drawn: bool,
}

impl Output {
    fn new(json: bool) -> Self {
        Output {
            json,
            terminal: !json && std::io::stdout().is_terminal(),
            progress_drawn: false,
        }
    }

    fn emit(&mut self, event: &Event) {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(stdout, "{}", event.to_json());
        } else if let Event::Progress {
            bytes_done,
            bytes_total,
        } = event
        {
            if self.terminal {
                let _ = write!(
                    stdout,
                    "\r{}\x1b[K",
                    progress_line(*bytes_done, *bytes_total)
                );
                self.progress_drawn = true;
            }
        } else if let Some(line) = event.to_line() {
            if self.progress_drawn {
                let _ = write!(stdout, "\r\x1b[K");
                self.progress_drawn = false;
            }
            let _ = writeln!(stdout, "{line}");
        }
        let _ = stdout.flush();
    }
}

impl Drop for Output {
    /// Ends a progress line left drawn, so that an error printed next starts on its own line.
    fn drop(&mut self) {
        if self.progress_drawn {
            println!();
        }
    }
}

/// A read of all the job's properties.
enum Read {
    /// The properties, when they were received, and who answered.
    Snapshot {
        properties: HashMap<String, OwnedVariant>,
        received: Sequence,
        helper: Option<String>,
    },
    /// The job object does not exist.
    Gone,
}

type Pending<T> = Pin<Box<dyn Future<Output = T>>>;

/// Reads all the job's properties. A call to a name without an owner starts the helper through
/// bus activation, so this also brings a helper back that did not come back by itself. Retries
/// while the helper is away, for `patience`.
async fn read_job(
    conn: Connection,
    job: OwnedObjectPath,
    patience: Duration,
) -> anyhow::Result<Read> {
    let deadline = Instant::now() + patience;
    let mut gone = 0;
    loop {
        let call = conn.call_method(
            Some(ROOT1_NAME),
            job.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
            &(JOB_INTERFACE,),
        );
        let left = deadline.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(left.max(RETRY_INTERVAL), call).await {
            Ok(Ok(reply)) => {
                let properties = reply
                    .body()
                    .deserialize::<HashMap<String, OwnedVariant>>()
                    .with_context(|| format!("reading the properties of {job}"))?;
                return Ok(Read::Snapshot {
                    properties,
                    received: reply.recv_position(),
                    helper: reply.header().sender().map(|s| s.to_string()),
                });
            }
            Ok(Err(e)) => CallError::from(&e),
            Err(_) => CallError::without_reply("no answer from bangerd-root"),
        };
        if error.kind.is_some_and(ErrorKind::is_no_such_object) {
            gone += 1;
            if gone >= GONE_CONFIRMATIONS {
                return Ok(Read::Gone);
            }
        } else {
            gone = 0;
        }
        if Instant::now() >= deadline {
            return Err(anyhow::Error::new(error).context(format!(
                "bangerd-root did not answer about {job} for {}s; the update may still be \
                 running — see: systemctl status bangerd-root",
                patience.as_secs()
            )));
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

/// Following one job to its end.
struct Follow {
    conn: Connection,
    job: OwnedObjectPath,
    view: JobView,
    /// The unique name of the helper that last answered for the job.
    helper: Option<String>,
    out: Output,
}

impl Follow {
    async fn run(
        &mut self,
        mut signals: MessageStream,
        mut owners: zbus::fdo::NameOwnerChangedStream,
    ) -> anyhow::Result<i32> {
        let mut interrupts = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        let job_proxy = JobProxy::builder(&self.conn)
            .path(self.job.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        self.out.emit(&Event::Job {
            job: self.job.to_string(),
        });

        // Property changes received before the newest full read are older than it.
        let mut read_at: Option<Sequence> = None;
        let mut pending_read: Option<Pending<anyhow::Result<Read>>> = Some(Box::pin(read_job(
            self.conn.clone(),
            self.job.clone(),
            HELPER_RETURN_PATIENCE,
        )));
        let mut restarted = false;
        let mut read_again = false;
        let mut pending_cancel: Option<Pending<Option<zbus::Result<()>>>> = None;
        let mut cancel_asked = false;

        loop {
            tokio::select! {
                msg = signals.next() => {
                    let Some(msg) = msg else {
                        bail!("the bus connection closed while following {}", self.job);
                    };
                    let Ok(msg) = msg else { continue };
                    if let Some(end) = self.on_signal(&msg, read_at) {
                        let end = self.with_private_error(end, &job_proxy).await;
                        return Ok(self.end(end));
                    }
                }
                change = owners.next() => {
                    let Some(change) = change else {
                        bail!("the bus connection closed while following {}", self.job);
                    };
                    let Ok(args) = change.args() else { continue };
                    let old = args.old_owner().as_ref().map(|n| n.to_string());
                    let new = args.new_owner().as_ref().map(|n| n.to_string());
                    if pending_read.is_some() {
                        // The read in flight may have been answered by the helper that left.
                        read_again |= old.is_some();
                        continue;
                    }
                    if helper_changed(self.helper.as_deref(), old.as_deref(), new.as_deref()) {
                        if !restarted {
                            let stage = self.view.stage.clone();
                            let planned = helper_restart_is_planned(&stage);
                            self.out.emit(&Event::HelperRestarting { stage, planned });
                        }
                        restarted = true;
                        pending_read = Some(Box::pin(read_job(
                            self.conn.clone(),
                            self.job.clone(),
                            HELPER_RETURN_PATIENCE,
                        )));
                    }
                }
                read = async { pending_read.as_mut().expect("guarded").await }, if pending_read.is_some() => {
                    pending_read = None;
                    match read? {
                        Read::Snapshot { properties, received, helper } => {
                            read_at = Some(received);
                            self.helper = helper;
                            for event in self.view.apply_read(&properties) {
                                self.out.emit(&event);
                            }
                            if self.view.is_finished() {
                                let (result, error) = (self.view.result.clone(), self.view.error.clone());
                                return Ok(self.end(self.view.finished(None, &result, &error)));
                            }
                            if restarted {
                                restarted = false;
                                self.out.emit(&Event::Reattached { job: self.job.to_string() });
                            }
                        }
                        Read::Gone => {
                            // A Finished signal may be queued behind the answer.
                            while let Some(Some(Ok(msg))) = signals.next().now_or_never() {
                                if let Some(end) = self.on_signal(&msg, read_at) {
                                    let end = self.with_private_error(end, &job_proxy).await;
                                    return Ok(self.end(end));
                                }
                            }
                            if read_at.is_none() {
                                bail!(
                                    "the update job {} ended before banger could read it, so its \
                                     result is unknown; check the install with: banger system status",
                                    self.job
                                );
                            }
                            return Ok(self.end(Event::Lost { outcome: lost_outcome(&self.view.stage) }));
                        }
                    }
                    if std::mem::take(&mut read_again) {
                        pending_read = Some(Box::pin(read_job(
                            self.conn.clone(),
                            self.job.clone(),
                            HELPER_RETURN_PATIENCE,
                        )));
                    }
                }
                answer = async { pending_cancel.as_mut().expect("guarded").await }, if pending_cancel.is_some() => {
                    pending_cancel = None;
                    let step = match answer {
                        Some(Ok(())) => CancelStep::Accepted,
                        Some(Err(e)) => {
                            let e = CallError::from(&e);
                            if e.is(ErrorKind::Busy) {
                                CancelStep::PastPointOfNoReturn
                            } else {
                                CancelStep::Failed(e.message)
                            }
                        }
                        None => CancelStep::Failed("bangerd-root did not answer".to_string()),
                    };
                    self.out.emit(&Event::Cancel(step));
                }
                _ = interrupts.recv() => {
                    if cancel_asked {
                        self.out.emit(&Event::Detached { job: self.job.to_string() });
                        return Ok(EXIT_INTERRUPTED);
                    }
                    cancel_asked = true;
                    self.out.emit(&Event::Cancel(CancelStep::Asked));
                    let proxy = job_proxy.clone();
                    pending_cancel = Some(Box::pin(async move {
                        tokio::time::timeout(CANCEL_PATIENCE, proxy.cancel()).await.ok()
                    }));
                }
            }
        }
    }

    /// Handles one signal of some job; returns the end event when it says our job ended.
    fn on_signal(&mut self, msg: &Message, read_at: Option<Sequence>) -> Option<Event> {
        let header = msg.header();
        if header.path().map(|p| p.as_str()) != Some(self.job.as_str()) {
            return None;
        }
        let interface = header.interface().map(|i| i.to_string());
        let member = header.member().map(|m| m.to_string());
        match (interface.as_deref(), member.as_deref()) {
            (Some("org.freedesktop.DBus.Properties"), Some("PropertiesChanged")) => {
                if read_at.is_some_and(|at| msg.recv_position() < at) {
                    return None;
                }
                let Ok((iface, changed, _)) =
                    msg.body()
                        .deserialize::<(String, HashMap<String, OwnedVariant>, Vec<String>)>()
                else {
                    return None;
                };
                if iface == JOB_INTERFACE {
                    for event in self.view.apply(&changed) {
                        self.out.emit(&event);
                    }
                }
                None
            }
            (Some(JOB_INTERFACE), Some("Finished")) => {
                let (success, result, error) =
                    msg.body().deserialize::<(bool, String, String)>().ok()?;
                Some(self.view.finished(Some(success), &result, &error))
            }
            _ => None,
        }
    }

    /// A `Finished` signal carries only a placeholder for the error (it reaches every user);
    /// the reason itself is read from `Job.Error`, which the helper shows to root, the owner
    /// and the initiator. Keeps the placeholder when the read fails.
    async fn with_private_error(&mut self, event: Event, job: &JobProxy<'_>) -> Event {
        let Event::Finished {
            success,
            result,
            error,
            ..
        } = &event
        else {
            return event;
        };
        if error.is_empty() {
            return event;
        }
        match tokio::time::timeout(Duration::from_secs(10), job.error()).await {
            Ok(Ok(detail)) if !detail.is_empty() => {
                let (success, result) = (*success, result.clone());
                self.view.finished(Some(success), &result, &detail)
            }
            _ => event,
        }
    }

    /// Reports the end and returns its exit code.
    fn end(&mut self, event: Event) -> i32 {
        let code = match &event {
            Event::Finished { outcome, .. } | Event::Lost { outcome } => outcome.code,
            _ => EXIT_FAILED,
        };
        self.out.emit(&event);
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, OwnedVariant)]) -> HashMap<String, OwnedVariant> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.try_clone().unwrap()))
            .collect()
    }

    fn s(v: &str) -> OwnedVariant {
        OwnedVariant::try_from(Variant::from(v)).unwrap()
    }

    #[test]
    fn outcome_for_every_result() {
        let cases = [
            ("updated", "", "updated v0.1.0 → v0.2.0", EXIT_OK),
            ("up-to-date", "", "up to date (v0.1.0)", EXIT_OK),
            (
                "dry-run",
                "",
                "dry run: v0.2.0 downloaded, verified and staged; nothing was changed",
                EXIT_OK,
            ),
            (
                "failed",
                "signature does not verify",
                "update failed: signature does not verify; nothing was changed",
                EXIT_FAILED,
            ),
            (
                "rolled-back",
                "bangerd did not become ready",
                "update failed: bangerd did not become ready (rolled back to previous install)",
                EXIT_ROLLED_BACK,
            ),
            (
                "canceled",
                "canceled by uid 1000",
                "update canceled; nothing was changed",
                EXIT_CANCELED,
            ),
        ];
        for (result, error, line, code) in cases {
            assert_eq!(
                outcome(result, error, "0.1.0", "0.2.0"),
                Outcome {
                    line: line.to_string(),
                    code
                },
                "{result}"
            );
        }
    }

    #[test]
    fn failed_rollback_never_claims_nothing_changed() {
        let o = outcome(
            "failed",
            "swap failed; ROLLBACK INCOMPLETE: restoring x: EIO",
            "0.1.0",
            "0.2.0",
        );
        assert_eq!(
            o.line,
            "update failed: swap failed; ROLLBACK INCOMPLETE: restoring x: EIO"
        );
        assert_eq!(o.code, EXIT_FAILED);
    }

    #[test]
    fn outcome_without_details() {
        assert_eq!(
            outcome("failed", "", "0.1.0", "").line,
            "update failed: no reason given; nothing was changed"
        );
        assert_eq!(
            outcome("up-to-date", "", "", "0.2.0").line,
            "up to date (v0.2.0)"
        );
        assert_eq!(
            outcome("updated", "", "v0.1.0", "0.2.0").line,
            "updated v0.1.0 → v0.2.0"
        );
        let unknown = outcome("exploded", "boom", "0.1.0", "0.2.0");
        assert_eq!(unknown.code, EXIT_FAILED);
        assert!(unknown.line.contains("\"exploded\""), "{}", unknown.line);
    }

    #[test]
    fn lost_job_depends_on_the_point_of_no_return() {
        for stage in ["", "checking", "downloading", "waiting-for-operations"] {
            let o = lost_outcome(stage);
            assert_eq!(o.code, EXIT_FAILED);
            assert_eq!(
                o.line,
                "the update job was lost when the helper restarted before the point of no \
                 return; nothing was changed",
                "{stage}"
            );
        }
        for stage in [
            "swapping",
            "restarting-helper",
            "finalizing",
            "rolling-back",
        ] {
            let o = lost_outcome(stage);
            assert_eq!(o.code, EXIT_FAILED);
            assert!(o.line.contains("after the point of no return"), "{stage}");
            assert!(!o.line.contains("nothing was changed"), "{stage}");
        }
    }

    #[test]
    fn check_lines() {
        assert_eq!(check_line("0.1.0", "0.1.0", false), "up to date (v0.1.0)");
        assert_eq!(
            check_line("0.1.0", "0.2.0", true),
            "update available: v0.1.0 → v0.2.0"
        );
        let v: serde_json::Value =
            serde_json::from_str(&check_json("0.1.0", "0.2.0", true)).unwrap();
        assert_eq!(
            v,
            json!({"current": "0.1.0", "latest": "0.2.0", "available": true})
        );
    }

    #[test]
    fn options_hold_only_what_was_given() {
        assert!(update_options(&UpdateArgs::default()).is_empty());
        let o = update_options(&UpdateArgs {
            to: Some("0.2.0".into()),
            dry_run: true,
            allow_downgrade: true,
            ..UpdateArgs::default()
        });
        let mut keys: Vec<_> = o.keys().copied().collect();
        keys.sort();
        assert_eq!(keys, ["allow_downgrade", "dry_run", "version"]);
        assert_eq!(o["version"], Variant::from("0.2.0"));
        assert_eq!(o["dry_run"], Variant::from(true));
        assert_eq!(parse_version("v0.2.0").unwrap(), "0.2.0");
        assert!(parse_version("v").is_err());
    }

    #[test]
    fn events_render_as_one_json_object_each() {
        let view = JobView {
            from_version: "0.1.0".into(),
            target_version: "0.2.0".into(),
            ..JobView::default()
        };
        let cases = [
            (
                Event::Stage {
                    stage: "downloading".into(),
                },
                json!({"event": "stage", "stage": "downloading"}),
            ),
            (
                Event::Progress {
                    bytes_done: 10,
                    bytes_total: 100,
                },
                json!({"event": "progress", "bytes_done": 10, "bytes_total": 100}),
            ),
            (
                Event::Cancel(CancelStep::PastPointOfNoReturn),
                json!({"event": "cancel", "outcome": "past-point-of-no-return"}),
            ),
            (
                view.finished(Some(false), "rolled-back", "doctor failed"),
                json!({
                    "event": "finished",
                    "success": false,
                    "result": "rolled-back",
                    "error": "doctor failed",
                    "from_version": "0.1.0",
                    "target_version": "0.2.0",
                    "message": "update failed: doctor failed (rolled back to previous install)",
                    "exit_code": 4,
                }),
            ),
            (
                view.finished(None, "updated", ""),
                json!({
                    "event": "finished",
                    "success": true,
                    "result": "updated",
                    "error": "",
                    "from_version": "0.1.0",
                    "target_version": "0.2.0",
                    "message": "updated v0.1.0 → v0.2.0",
                    "exit_code": 0,
                }),
            ),
        ];
        for (event, expected) in cases {
            let text = event.to_json();
            assert!(!text.contains('\n'), "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v, expected);
        }
    }

    #[test]
    fn lines_for_people() {
        assert_eq!(
            Event::Stage {
                stage: "verifying".into()
            }
            .to_line()
            .unwrap(),
            "stage: verifying"
        );
        assert_eq!(
            Event::Cancel(CancelStep::PastPointOfNoReturn)
                .to_line()
                .unwrap(),
            "the update is past the point of no return and will finish on its own; following it…"
        );
        let detached = Event::Detached {
            job: "/org/banger/Root1/job/3".into(),
        }
        .to_line()
        .unwrap();
        assert!(
            detached.ends_with(
                "busctl get-property org.banger.Root1 /org/banger/Root1/job/3 \
                 org.banger.Root1.Job Stage"
            ),
            "{detached}"
        );
        assert_eq!(
            Event::Progress {
                bytes_done: 1,
                bytes_total: 2
            }
            .to_line(),
            None
        );
    }

    #[test]
    fn a_helper_that_went_away_unasked_is_not_called_restarting() {
        let left = |stage: &str| Event::HelperRestarting {
            stage: stage.into(),
            planned: helper_restart_is_planned(stage),
        };
        let planned = left("restarting-helper").to_line().unwrap();
        assert!(
            planned.starts_with("bangerd-root is restarting itself"),
            "{planned}"
        );
        for stage in [
            "downloading",
            "swapping",
            "verifying-install",
            "rolling-back",
        ] {
            let line = left(stage).to_line().unwrap();
            assert!(
                line.starts_with(&format!(
                    "bangerd-root left the bus during stage {stage} without the update asking it to"
                )),
                "{line}"
            );
            assert!(!line.contains("is restarting"), "{line}");
            assert!(line.contains("sudo banger system status"), "{line}");
        }
        let v: serde_json::Value = serde_json::from_str(&left("swapping").to_json()).unwrap();
        assert_eq!(
            v,
            json!({"event": "helper-restarting", "stage": "swapping", "planned": false})
        );
    }

    #[test]
    fn progress_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12 * 1024 * 1024 + 300 * 1024), "12.3 MiB");
        assert_eq!(
            progress_line(5 * 1024 * 1024, 20 * 1024 * 1024),
            "downloading: 5.0 MiB of 20.0 MiB (25%)"
        );
        assert_eq!(progress_line(2048, 0), "downloading: 2.0 KiB");
    }

    #[test]
    fn view_reports_stage_and_progress_changes_once() {
        let mut view = JobView::default();
        let events = view.apply(&props(&[
            ("State", s("running")),
            ("Stage", s("downloading")),
            ("BytesDone", OwnedVariant::from(0u64)),
            ("BytesTotal", OwnedVariant::from(100u64)),
            ("FromVersion", s("0.1.0")),
            ("TargetVersion", s("0.2.0")),
            ("Result", s("")),
        ]));
        assert_eq!(
            events,
            [
                Event::Stage {
                    stage: "downloading".into()
                },
                Event::Progress {
                    bytes_done: 0,
                    bytes_total: 100
                }
            ]
        );
        assert!(!view.is_finished());
        // The same values again (a re-read after a restart) say nothing new.
        assert!(
            view.apply(&props(&[
                ("Stage", s("downloading")),
                ("BytesTotal", OwnedVariant::from(100u64))
            ]))
            .is_empty()
        );
        assert_eq!(
            view.apply(&props(&[("BytesDone", OwnedVariant::from(40u64))])),
            [Event::Progress {
                bytes_done: 40,
                bytes_total: 100
            }]
        );
        view.apply(&props(&[
            ("State", s("finished")),
            ("Stage", s("done")),
            ("Result", s("updated")),
        ]));
        assert!(view.is_finished());
        assert_eq!(
            view.finished(None, "updated", "").to_line().unwrap(),
            "updated v0.1.0 → v0.2.0"
        );
    }

    #[test]
    fn a_read_overtaken_by_a_signal_does_not_move_back() {
        let mut view = JobView::default();
        view.apply(&props(&[
            ("Stage", s("verifying-install")),
            ("BytesDone", OwnedVariant::from(100u64)),
            ("BytesTotal", OwnedVariant::from(100u64)),
        ]));
        let events = view.apply_read(&props(&[
            ("State", s("running")),
            ("Stage", s("restarting-helper")),
            ("BytesDone", OwnedVariant::from(0u64)),
            ("BytesTotal", OwnedVariant::from(0u64)),
            ("TargetVersion", s("0.2.0")),
        ]));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(view.stage, "verifying-install");
        assert_eq!(view.target_version, "0.2.0");
        assert_eq!(
            view.apply_read(&props(&[("Stage", s("finalizing"))])),
            [Event::Stage {
                stage: "finalizing".into()
            }]
        );
    }

    #[test]
    fn helper_changes_that_matter() {
        // The followed helper left, or another one took the name.
        assert!(helper_changed(Some(":1.5"), Some(":1.5"), None));
        assert!(helper_changed(Some(":1.5"), Some(":1.5"), Some(":1.9")));
        assert!(helper_changed(Some(":1.5"), None, Some(":1.9")));
        // Stale: the activation of the helper that is followed, or an older helper leaving.
        assert!(!helper_changed(Some(":1.5"), None, Some(":1.5")));
        assert!(!helper_changed(Some(":1.5"), Some(":1.2"), None));
    }
}
