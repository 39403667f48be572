//! Following one update job over the bus to its end: the subscription to the job's signals,
//! reads of its properties that survive the helper's restart, Ctrl-C (a first one asks the helper
//! to cancel, a second one stops following), and the terminal [`Output`] events are drawn on.
//!
//! It never words anything itself (that is [`super::view`]) and never decides whether the job
//! may be canceled: it sends `Cancel()` and reports the helper's answer.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, bail};
use banger_api::error::ErrorKind;
use banger_api::job::Stage;
use banger_api::names::{JOB_FINISHED_SIGNAL, JOB_INTERFACE, JOB_PATH_NAMESPACE, ROOT1_NAME};
use banger_api::proxies::JobProxy;
use futures_util::{FutureExt, StreamExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use zbus::message::Sequence;
use zbus::proxy::CacheProperties;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedObjectPath, OwnedVariant};

use super::HELPER_RETURN_PATIENCE;
use super::view::{
    CancelStep, Event, JobView, helper_changed, helper_restart_is_planned, lost_outcome,
};
use crate::cli::bus::CallError;
use crate::cli::progress::{Lines, Progress, quiet};
use crate::cli::{EXIT_FAILED, EXIT_INTERRUPTED};

/// Pause between two attempts to read the job while the helper comes back.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// How many "no such object" answers in a row mean the job is really gone (a helper that has
/// just taken its name is given a moment to serve the job it resumes).
const GONE_CONFIRMATIONS: u32 = 4;
/// How long a `Cancel()` may take before banger stops waiting for its answer.
const CANCEL_PATIENCE: Duration = Duration::from_secs(30);
/// Queue for the job's signals; progress comes in bursts while a read or a cancel is pending.
const SIGNAL_QUEUE: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// Subscribes to every signal of every job object of the helper, whichever process owns the name
/// at the time (the bus matches the well-known sender against its current owner, so the
/// subscription outlives restarts of the helper).
pub(super) async fn subscribe_job_signals(conn: &Connection) -> anyhow::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(ROOT1_NAME)
        .path_namespace(JOB_PATH_NAMESPACE)
        .build()?;
    MessageStream::for_match_rule(rule, conn, Some(SIGNAL_QUEUE))
        .await
        .context("subscribing to the signals of update jobs")
}

/// Where events go: JSON lines on stdout, or lines for people on stdout with the download
/// drawn as a bar on stderr when that is a terminal (see [`Progress`]); with `--quiet`, only
/// the outcome and the answers to Ctrl-C.
struct Output {
    json: bool,
    progress: Progress,
}

impl Output {
    fn new(json: bool) -> Self {
        Output {
            json,
            progress: Progress::new(Lines::Stdout, json),
        }
    }

    fn emit(&mut self, event: &Event) {
        if self.json {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", event.to_json());
            let _ = stdout.flush();
            return;
        }
        match event {
            Event::Progress {
                bytes_done,
                bytes_total,
            } => self
                .progress
                .bytes(Stage::Downloading.as_str(), *bytes_done, *bytes_total),
            _ => {
                // The download is over once anything else happens.
                self.progress.clear();
                if quiet() && !event.shown_when_quiet() {
                    return;
                }
                if let Some(line) = event.to_line() {
                    self.progress.line(&line);
                }
            }
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
pub(super) struct Follow {
    conn: Connection,
    job: OwnedObjectPath,
    view: JobView,
    /// The unique name of the helper that last answered for the job.
    helper: Option<String>,
    out: Output,
}

impl Follow {
    /// Follows `job` on `conn`, printing JSON lines when `json`.
    pub(super) fn new(conn: Connection, job: OwnedObjectPath, json: bool) -> Self {
        Follow {
            conn,
            job,
            view: JobView::default(),
            helper: None,
            out: Output::new(json),
        }
    }

    /// Follows the job to its end and returns the exit code. `signals` and `owners` were
    /// subscribed to before the job was started, so nothing it did can have been missed.
    pub(super) async fn run(
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
                            let stage = self.view.stage().to_string();
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
                                return Ok(self.end(self.view.finished_from_properties()));
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
                            return Ok(self.end(Event::Lost { outcome: lost_outcome(self.view.stage()) }));
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
            (Some(JOB_INTERFACE), Some(JOB_FINISHED_SIGNAL)) => {
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
