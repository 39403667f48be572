//! `banger image pull` and `banger image catalog`: images from the catalog the admin set in
//! `/etc/banger/config.toml` (docs/images.md).
//!
//! A pull is a job of the daemon (`org.banger.Daemon1.Job`): this module starts it, follows
//! its signals to the end and draws them, and turns Ctrl-C into `Cancel()`. It decides
//! nothing about the pull itself: every check is the daemon's.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use anyhow::{Context, anyhow};
use banger_api::job::{DaemonJobProperty as JobProperty, DaemonJobResult, JobState};
use banger_api::names::{
    DAEMON_JOB_INTERFACE, DAEMON_JOB_PATH_NAMESPACE, DAEMON1_NAME, JOB_FINISHED_SIGNAL,
};
use banger_api::proxies::{Daemon1Proxy, DaemonJobProxy};
use banger_api::wire::CatalogEntryInfo;
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use zbus::proxy::CacheProperties;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedObjectPath, OwnedVariant};

use super::daemon_client::failed;
use super::output::{mib_label, render_table};
use super::progress::{Lines, Progress, quiet};
use super::{CmdResult, EXIT_CANCELED, EXIT_INTERRUPTED, EXIT_OK, bus};

/// Queue for the job's signals.
const SIGNAL_QUEUE: NonZeroUsize = NonZeroUsize::new(1024).expect("non-zero");

/// What the follower knows of the job.
#[derive(Debug, Default, Clone, PartialEq)]
struct JobView {
    state: String,
    stage: String,
    progress: f64,
    bytes_done: u64,
    bytes_total: u64,
    result: String,
    error: String,
    image: String,
}

impl JobView {
    /// Applies properties read or announced; returns the events they make, in order.
    fn apply(&mut self, props: &HashMap<String, OwnedVariant>) -> Vec<Event> {
        let before = self.clone();
        let text = |k: JobProperty| {
            props
                .get(k.as_str())
                .and_then(|v| String::try_from(v.clone()).ok())
        };
        let num = |k: JobProperty| props.get(k.as_str()).and_then(|v| u64::try_from(v).ok());
        if let Some(s) = text(JobProperty::State) {
            self.state = s;
        }
        if let Some(s) = text(JobProperty::Stage) {
            self.stage = s;
        }
        if let Some(p) = props
            .get(JobProperty::Progress.as_str())
            .and_then(|v| f64::try_from(v).ok())
        {
            self.progress = p;
        }
        if let Some(n) = num(JobProperty::BytesDone) {
            self.bytes_done = n;
        }
        if let Some(n) = num(JobProperty::BytesTotal) {
            self.bytes_total = n;
        }
        if let Some(s) = text(JobProperty::Result) {
            self.result = s;
        }
        if let Some(s) = text(JobProperty::Error) {
            self.error = s;
        }
        if let Some(s) = text(JobProperty::Image) {
            self.image = s;
        }
        let mut events = Vec::new();
        if self.stage != before.stage && !self.stage.is_empty() {
            events.push(Event::Stage {
                stage: self.stage.clone(),
                bytes_total: self.bytes_total,
            });
        }
        if self.bytes_done != before.bytes_done && self.bytes_total > 0 {
            events.push(Event::Progress {
                stage: self.stage.clone(),
                bytes_done: self.bytes_done,
                bytes_total: self.bytes_total,
                progress: self.progress,
            });
        }
        events
    }

    fn finished(&self) -> bool {
        self.state == JobState::Finished.as_str()
    }
}

/// What is shown of a pull.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// The job was made.
    Started { job: String, reference: String },
    /// It entered a stage.
    Stage { stage: String, bytes_total: u64 },
    /// Bytes moved.
    Progress {
        stage: String,
        bytes_done: u64,
        bytes_total: u64,
        progress: f64,
    },
    /// Cancel was asked.
    Canceling,
    /// It ended.
    Finished {
        result: String,
        image: String,
        error: String,
    },
}

impl Event {
    /// The `--json` line: one object with an `event` key.
    fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Event::Started { job, reference } => {
                json!({"event": "started", "job": job, "reference": reference})
            }
            Event::Stage { stage, bytes_total } => {
                json!({"event": "stage", "stage": stage, "bytes_total": bytes_total})
            }
            Event::Progress {
                stage,
                bytes_done,
                bytes_total,
                progress,
            } => json!({
                "event": "progress",
                "stage": stage,
                "bytes_done": bytes_done,
                "bytes_total": bytes_total,
                "progress": progress,
            }),
            Event::Canceling => json!({"event": "canceling"}),
            Event::Finished {
                result,
                image,
                error,
            } => json!({"event": "finished", "result": result, "image": image, "error": error}),
        }
    }

    /// The line for people, if the event has one (progress is drawn in place instead).
    fn to_line(&self) -> Option<String> {
        Some(match self {
            Event::Started { reference, .. } => format!("banger: pulling {reference}"),
            Event::Stage { stage, bytes_total } if *bytes_total > 0 => {
                format!("banger: {stage} ({})", mib_label(*bytes_total))
            }
            Event::Stage { stage, .. } => format!("banger: {stage}"),
            Event::Progress { .. } | Event::Finished { .. } => return None,
            Event::Canceling => {
                "banger: canceling the pull (Ctrl-C again to stop waiting)".to_string()
            }
        })
    }
}

/// Where events go: JSON lines on stdout, or lines for people on stderr with the bytes drawn
/// as a bar there when it is a terminal (see [`Progress`]); with `--quiet`, only the answer to
/// Ctrl-C (the result is printed by the caller).
struct Output {
    json: bool,
    progress: Progress,
}

impl Output {
    fn new(json: bool) -> Self {
        Output {
            json,
            progress: Progress::new(Lines::Stderr, json),
        }
    }

    fn emit(&mut self, event: &Event) {
        if self.json {
            println!("{}", event.to_json());
            return;
        }
        if let Event::Progress {
            stage,
            bytes_done,
            bytes_total,
            ..
        } = event
        {
            self.progress.bytes(stage, *bytes_done, *bytes_total);
            return;
        }
        if !matches!(event, Event::Canceling) {
            self.progress.clear();
        }
        if quiet() && !matches!(event, Event::Canceling) {
            return;
        }
        if let Some(line) = event.to_line() {
            self.progress.line(&line);
        }
    }
}

/// Subscribes to the signals of the daemon's jobs.
async fn subscribe(conn: &Connection) -> anyhow::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(DAEMON1_NAME)
        .path_namespace(DAEMON_JOB_PATH_NAMESPACE)
        .build()?;
    MessageStream::for_match_rule(rule, conn, Some(SIGNAL_QUEUE))
        .await
        .context("subscribing to the signals of bangerd's jobs")
}

/// All the job's properties.
async fn read_all(
    conn: &Connection,
    path: &OwnedObjectPath,
) -> anyhow::Result<HashMap<String, OwnedVariant>> {
    let props = zbus::fdo::PropertiesProxy::builder(conn)
        .destination(DAEMON1_NAME)
        .path(path.clone())
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let iface = zbus::names::InterfaceName::from_static_str_unchecked(DAEMON_JOB_INTERFACE);
    props
        .get_all(iface)
        .await
        .map_err(zbus::Error::from)
        .map_err(failed("reading the pull's job"))
}

/// What a signal of our job says: changed properties, or the end.
enum Said {
    Changed(HashMap<String, OwnedVariant>),
    Finished,
    Other,
}

fn said(msg: &Message, path: &OwnedObjectPath) -> Said {
    let h = msg.header();
    if h.path().map(|p| p.as_str()) != Some(path.as_str()) {
        return Said::Other;
    }
    match h.member().map(|m| m.as_str()) {
        Some(JOB_FINISHED_SIGNAL) => Said::Finished,
        Some("PropertiesChanged") => {
            match msg
                .body()
                .deserialize::<(String, HashMap<String, OwnedVariant>, Vec<String>)>()
            {
                Ok((iface, changed, _)) if iface == DAEMON_JOB_INTERFACE => Said::Changed(changed),
                _ => Said::Other,
            }
        }
        _ => Said::Other,
    }
}

/// `banger image pull REFERENCE [--name NAME] [--kernel IMAGE] [--json]`.
pub async fn pull(
    reference: &str,
    name: Option<&str>,
    kernel: Option<&str>,
    json: bool,
) -> CmdResult {
    let conn = bus::system_bus().await?;
    let daemon = Daemon1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .context("making a proxy for bangerd")?;
    // Before the call: no signal of the job is missed, and a Ctrl-C during it cancels it.
    let mut signals = subscribe(&conn).await?;
    let mut daemon_left = zbus::fdo::DBusProxy::new(&conn)
        .await?
        .receive_name_owner_changed_with_args(&[(0, DAEMON1_NAME)])
        .await?;
    let mut interrupts = signal(SignalKind::interrupt()).context("handling Ctrl-C")?;
    let what = format!("pulling {reference}");
    // PullImage without options, so that a daemon without PullImageWith still pulls.
    let path = if let Some(k) = kernel {
        let options = HashMap::from([("kernel", zbus::Variant::from(k))]);
        daemon
            .pull_image_with(reference, name.unwrap_or(""), options)
            .await
    } else {
        daemon.pull_image(reference, name.unwrap_or("")).await
    }
    .map_err(failed(&what))?;
    let job = DaemonJobProxy::builder(&conn)
        .path(path.clone())
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut out = Output::new(json);
    out.emit(&Event::Started {
        job: path.to_string(),
        reference: reference.to_string(),
    });
    let mut view = JobView::default();
    for e in view.apply(&read_all(&conn, &path).await?) {
        out.emit(&e);
    }
    let mut cancel_asked = false;
    while !view.finished() {
        tokio::select! {
            msg = signals.next() => {
                let Some(Ok(msg)) = msg else {
                    return Err(anyhow!("{what}: the bus connection closed while following the pull").into());
                };
                match said(&msg, &path) {
                    Said::Changed(changed) => {
                        for e in view.apply(&changed) {
                            out.emit(&e);
                        }
                    }
                    Said::Finished => break,
                    Said::Other => {}
                }
            }
            _ = interrupts.recv() => {
                if cancel_asked {
                    drop(out);
                    eprintln!(
                        "banger: stopped following; the pull goes on as job {path} \
                         (cancel it with: busctl call {DAEMON1_NAME} {path} \
                         {DAEMON_JOB_INTERFACE} Cancel)"
                    );
                    return Ok(EXIT_INTERRUPTED);
                }
                cancel_asked = true;
                out.emit(&Event::Canceling);
                if let Err(e) = job.cancel().await {
                    let e = bus::CallError::from(&e);
                    eprintln!("banger: the pull could not be canceled: {e}");
                }
            }
            change = daemon_left.next() => {
                if change.is_some_and(|c| c.args().is_ok_and(|a| a.new_owner().is_none())) {
                    return Err(anyhow!(
                        "{what}: bangerd stopped before the pull finished; nothing was imported \
                         (bangerd removes what the pull left when it starts again)"
                    ).into());
                }
            }
        }
    }
    view.apply(&read_all(&conn, &path).await?);
    let end = Event::Finished {
        result: view.result.clone(),
        image: view.image.clone(),
        error: view.error.clone(),
    };
    out.emit(&end);
    drop(out);
    match DaemonJobResult::parse(&view.result) {
        Some(DaemonJobResult::Done) => {
            if !json {
                println!("pulled image {} ({reference})", view.image);
            }
            Ok(EXIT_OK)
        }
        Some(DaemonJobResult::Canceled) => {
            if !json {
                eprintln!("banger: the pull of {reference} was canceled; nothing was imported");
            }
            Ok(EXIT_CANCELED)
        }
        _ => Err(anyhow!("{what}: {}", view.error).into()),
    }
}

/// The `image catalog` table.
fn catalog_table(entries: &[CatalogEntryInfo]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                format!("{}:{}", e.name, e.version),
                e.kind.clone(),
                if e.kernel.is_empty() {
                    "-".into()
                } else {
                    e.kernel.clone()
                },
                mib_label(e.size),
                mib_label(e.unpacked_size),
                e.description.clone(),
            ]
        })
        .collect();
    render_table(
        &[
            "ENTRY",
            "KIND",
            "KERNEL",
            "DOWNLOAD",
            "UNPACKED",
            "DESCRIPTION",
        ],
        &rows,
    )
}

/// `banger image catalog [--json]`.
pub async fn catalog(json: bool) -> CmdResult {
    let daemon = super::daemon_client::daemon().await?;
    let mut entries = daemon
        .list_catalog()
        .await
        .map_err(failed("reading the image catalog"))?;
    entries.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        eprintln!("the catalog offers nothing");
    } else {
        print!("{}", catalog_table(&entries));
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::Variant as Value;

    fn props(pairs: &[(&str, Value<'static>)]) -> HashMap<String, OwnedVariant> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v.clone()).unwrap()))
            .collect()
    }

    #[test]
    fn changes_become_stage_and_progress_events() {
        let mut v = JobView::default();
        let e = v.apply(&props(&[
            ("State", Value::from("running")),
            ("Stage", Value::from("downloading")),
            ("BytesTotal", Value::from(4u64 << 20)),
        ]));
        assert_eq!(
            e,
            [Event::Stage {
                stage: "downloading".into(),
                bytes_total: 4 << 20
            }]
        );
        assert_eq!(
            e[0].to_line().unwrap(),
            "banger: downloading (4 MiB)",
            "a stage with bytes says how many"
        );
        let e = v.apply(&props(&[
            ("BytesDone", Value::from(1u64 << 20)),
            ("Progress", Value::from(0.25f64)),
        ]));
        assert_eq!(
            e[0].to_json(),
            serde_json::json!({"event": "progress", "stage": "downloading",
                "bytes_done": 1 << 20, "bytes_total": 4 << 20, "progress": 0.25})
        );
        assert!(e[0].to_line().is_none(), "progress is drawn, not printed");
        assert!(
            v.apply(&props(&[("Progress", Value::from(0.25f64))]))
                .is_empty()
        );
        assert!(!v.finished());
        v.apply(&props(&[
            ("State", Value::from("finished")),
            ("Result", Value::from("done")),
            ("Image", Value::from("mini")),
        ]));
        assert!(v.finished());
        assert_eq!((v.result.as_str(), v.image.as_str()), ("done", "mini"));
    }

    #[test]
    fn finished_json_names_everything() {
        let e = Event::Finished {
            result: "failed".into(),
            image: String::new(),
            error: "digest mismatch".into(),
        };
        assert_eq!(
            e.to_json(),
            serde_json::json!({"event": "finished", "result": "failed", "image": "",
                "error": "digest mismatch"})
        );
    }

    #[test]
    fn catalog_lists_entries() {
        let entry = |name: &str, kind: &str, kernel: &str| CatalogEntryInfo {
            name: name.into(),
            version: "1.0".into(),
            kind: kind.into(),
            kernel: kernel.into(),
            size: 3 << 20,
            unpacked_size: 9 << 20,
            format: "tar.gz".into(),
            description: format!("the {name} {kind}"),
        };
        assert_eq!(
            catalog_table(&[
                entry("guest", "kernel", ""),
                entry("mini", "rootfs", "guest:1.0")
            ]),
            "ENTRY      KIND    KERNEL     DOWNLOAD  UNPACKED  DESCRIPTION\n\
             guest:1.0  kernel  -          3 MiB     9 MiB     the guest kernel\n\
             mini:1.0   rootfs  guest:1.0  3 MiB     9 MiB     the mini rootfs\n"
        );
    }
}
