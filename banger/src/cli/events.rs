//! `banger events` and `banger vm list --watch`: the daemon's VMs, images and jobs as they
//! change, from the signals of its objects (`InterfacesAdded`, `InterfacesRemoved`,
//! `PropertiesChanged` under the ObjectManager at `/org/banger/Daemon1`), never by polling.
//!
//! The subscription is made before the objects are read, so no change falls between the two.
//! When bangerd restarts (its name changes owner), its objects are read again and what
//! differs is reported as changes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::num::NonZeroUsize;

use anyhow::{Context, anyhow};
use banger_api::job::JobProperty;
use banger_api::names::{
    DAEMON_IMAGE_INTERFACE, DAEMON_JOB_INTERFACE, DAEMON_VM_INTERFACE, DAEMON1_NAME, DAEMON1_PATH,
};
use banger_api::objects::{ImageProperty, VmProperty};
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedVariant};

use super::daemon_client::failed;
use super::{CmdResult, EXIT_OK, bus};

/// Queue for the objects' signals.
const SIGNAL_QUEUE: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// What kind of object a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A VM.
    Vm,
    /// An image.
    Image,
    /// A job.
    Job,
}

impl Kind {
    fn of_interface(iface: &str) -> Option<Kind> {
        match iface {
            DAEMON_VM_INTERFACE => Some(Kind::Vm),
            DAEMON_IMAGE_INTERFACE => Some(Kind::Image),
            DAEMON_JOB_INTERFACE => Some(Kind::Job),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Image => "image",
            Kind::Job => "job",
        }
    }
}

/// A property value as JSON.
fn json_of(v: &OwnedVariant) -> serde_json::Value {
    use serde_json::Value as J;
    if let Ok(s) = String::try_from(v.clone()) {
        return J::from(s);
    }
    if let Ok(b) = bool::try_from(v) {
        return J::from(b);
    }
    if let Ok(n) = u32::try_from(v) {
        return J::from(n);
    }
    if let Ok(n) = u64::try_from(v) {
        return J::from(n);
    }
    if let Ok(n) = i64::try_from(v) {
        return J::from(n);
    }
    if let Ok(n) = f64::try_from(v) {
        return J::from(n);
    }
    if let Ok(list) = Vec::<String>::try_from(v.clone()) {
        return J::from(list);
    }
    J::from(format!("{v:?}"))
}

/// A value for people: text as it is, a list comma-separated, a number as it is.
fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) if s.is_empty() => "\"\"".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// One object as the follower knows it.
#[derive(Debug, Clone, PartialEq)]
struct Known {
    kind: Kind,
    properties: BTreeMap<String, serde_json::Value>,
}

impl Known {
    /// Its name for people: a VM's or image's Name, a job's Id.
    fn name(&self) -> String {
        let key = if self.kind == Kind::Job {
            JobProperty::Id.as_str()
        } else {
            VmProperty::Name.as_str()
        };
        self.properties.get(key).map(shown).unwrap_or_default()
    }
}

/// What is reported.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// An object that was there when following began (`vm list --watch` only).
    Present { path: String, object: Known },
    /// A new object.
    Added { path: String, object: Known },
    /// An object that is gone.
    Removed { path: String, object: Known },
    /// Properties of an object changed.
    Changed {
        path: String,
        object: Known,
        changed: BTreeMap<String, serde_json::Value>,
    },
    /// bangerd left the bus or came back.
    Daemon { running: bool },
}

impl Event {
    fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let time = banger_api::time::rfc3339(banger_api::time::unix_now());
        match self {
            Event::Present { path, object } | Event::Added { path, object } => json!({
                "time": time,
                "event": if matches!(self, Event::Present { .. }) { "present" } else { "added" },
                "kind": object.kind.word(),
                "path": path,
                "name": object.name(),
                "properties": object.properties,
            }),
            Event::Removed { path, object } => json!({
                "time": time, "event": "removed", "kind": object.kind.word(), "path": path,
                "name": object.name(),
            }),
            Event::Changed {
                path,
                object,
                changed,
            } => json!({
                "time": time, "event": "changed", "kind": object.kind.word(), "path": path,
                "name": object.name(), "properties": changed,
            }),
            Event::Daemon { running } => json!({
                "time": time, "event": if *running { "daemon-started" } else { "daemon-stopped" },
            }),
        }
    }

    fn to_line(&self) -> String {
        let summary = |o: &Known| {
            let keys: Vec<&str> = match o.kind {
                Kind::Vm => [VmProperty::State, VmProperty::Address, VmProperty::Image]
                    .iter()
                    .map(|p| p.as_str())
                    .collect(),
                Kind::Image => [ImageProperty::Bytes, ImageProperty::UsedBy]
                    .iter()
                    .map(|p| p.as_str())
                    .collect(),
                Kind::Job => [JobProperty::Kind, JobProperty::State]
                    .iter()
                    .map(|p| p.as_str())
                    .collect(),
            };
            keys.iter()
                .filter_map(|k| o.properties.get(*k).map(|v| format!("{k}={}", shown(v))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Event::Present { object, .. } => {
                format!(
                    "{} {} present: {}",
                    object.kind.word(),
                    object.name(),
                    summary(object)
                )
            }
            Event::Added { object, .. } => {
                format!(
                    "{} {} added: {}",
                    object.kind.word(),
                    object.name(),
                    summary(object)
                )
            }
            Event::Removed { object, .. } => {
                format!("{} {} removed", object.kind.word(), object.name())
            }
            Event::Changed {
                object, changed, ..
            } => format!(
                "{} {}: {}",
                object.kind.word(),
                object.name(),
                changed
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shown(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Event::Daemon { running: true } => "bangerd started".into(),
            Event::Daemon { running: false } => "bangerd stopped".into(),
        }
    }
}

type Managed = HashMap<String, Known>;

/// Reads every object of the daemon (of the kinds banger knows).
async fn read_all(conn: &Connection) -> anyhow::Result<Managed> {
    let om = zbus::fdo::ObjectManagerProxy::builder(conn)
        .destination(DAEMON1_NAME)
        .path(DAEMON1_PATH)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let all = om
        .get_managed_objects()
        .await
        .map_err(zbus::Error::from)
        .map_err(failed("reading bangerd's objects"))?;
    let mut out = Managed::new();
    for (path, ifaces) in all {
        for (iface, props) in ifaces {
            if let Some(kind) = Kind::of_interface(iface.as_str()) {
                let properties = props.iter().map(|(k, v)| (k.clone(), json_of(v))).collect();
                out.insert(path.to_string(), Known { kind, properties });
            }
        }
    }
    Ok(out)
}

/// What a signal says, applied to what is known.
fn apply(known: &mut Managed, msg: &Message) -> Vec<Event> {
    let h = msg.header();
    let Some(member) = h.member().map(|m| m.to_string()) else {
        return Vec::new();
    };
    match member.as_str() {
        "InterfacesAdded" => {
            let Ok((path, ifaces)) = msg.body().deserialize::<(
                zbus::OwnedObjectPath,
                HashMap<String, HashMap<String, OwnedVariant>>,
            )>() else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for (iface, props) in ifaces {
                if let Some(kind) = Kind::of_interface(&iface) {
                    let object = Known {
                        kind,
                        properties: props.iter().map(|(k, v)| (k.clone(), json_of(v))).collect(),
                    };
                    known.insert(path.to_string(), object.clone());
                    out.push(Event::Added {
                        path: path.to_string(),
                        object,
                    });
                }
            }
            out
        }
        "InterfacesRemoved" => {
            let Ok((path, _)) = msg
                .body()
                .deserialize::<(zbus::OwnedObjectPath, Vec<String>)>()
            else {
                return Vec::new();
            };
            known
                .remove(path.as_str())
                .map(|object| Event::Removed {
                    path: path.to_string(),
                    object,
                })
                .into_iter()
                .collect()
        }
        "PropertiesChanged" => {
            let Some(path) = h.path().map(|p| p.to_string()) else {
                return Vec::new();
            };
            let Ok((iface, changed, _)) =
                msg.body()
                    .deserialize::<(String, HashMap<String, OwnedVariant>, Vec<String>)>()
            else {
                return Vec::new();
            };
            if Kind::of_interface(&iface).is_none() {
                return Vec::new();
            }
            let Some(object) = known.get_mut(&path) else {
                return Vec::new();
            };
            let changed: BTreeMap<String, serde_json::Value> = changed
                .iter()
                .map(|(k, v)| (k.clone(), json_of(v)))
                .collect();
            object.properties.extend(changed.clone());
            vec![Event::Changed {
                path,
                object: object.clone(),
                changed,
            }]
        }
        _ => Vec::new(),
    }
}

/// What differs between two readings, as events.
fn differences(before: &Managed, after: &Managed) -> Vec<Event> {
    let mut out = Vec::new();
    for (path, object) in before {
        if !after.contains_key(path) {
            out.push(Event::Removed {
                path: path.clone(),
                object: object.clone(),
            });
        }
    }
    let mut paths: Vec<&String> = after.keys().collect();
    paths.sort();
    for path in paths {
        let object = &after[path];
        match before.get(path) {
            None => out.push(Event::Added {
                path: path.clone(),
                object: object.clone(),
            }),
            Some(old) => {
                let changed: BTreeMap<String, serde_json::Value> = object
                    .properties
                    .iter()
                    .filter(|(k, v)| old.properties.get(*k) != Some(v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !changed.is_empty() {
                    out.push(Event::Changed {
                        path: path.clone(),
                        object: object.clone(),
                        changed,
                    });
                }
            }
        }
    }
    out
}

/// What runs once the subscription is made, before the first event is printed (the table of
/// `vm list --watch`).
pub type Prelude = std::pin::Pin<Box<dyn std::future::Future<Output = CmdResult>>>;

/// Prints events of `only` (every kind when `None`) until Ctrl-C, one line or one JSON object
/// each; `present` first reports the objects there now, after `prelude`.
pub async fn follow(
    only: Option<Kind>,
    json: bool,
    present: bool,
    prelude: Option<Prelude>,
) -> CmdResult {
    let conn = bus::system_bus().await?;
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(DAEMON1_NAME)
        .path_namespace(DAEMON1_PATH)
        .build()?;
    let mut signals = MessageStream::for_match_rule(rule, &conn, Some(SIGNAL_QUEUE))
        .await
        .context("subscribing to bangerd's signals")?;
    let mut owners = zbus::fdo::DBusProxy::new(&conn)
        .await?
        .receive_name_owner_changed_with_args(&[(0, DAEMON1_NAME)])
        .await?;
    let mut interrupts = signal(SignalKind::interrupt()).context("handling Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut known = read_all(&conn).await?;
    if let Some(prelude) = prelude {
        prelude.await?;
    }
    // On stderr: a script that starts this in the background can wait for it.
    eprintln!(
        "banger: following changes ({} objects now); Ctrl-C to stop",
        known.len()
    );
    let mut out = std::io::stdout().lock();
    let mut emit = |events: Vec<Event>| -> std::io::Result<()> {
        for e in events {
            let kind = match &e {
                Event::Present { object, .. }
                | Event::Added { object, .. }
                | Event::Removed { object, .. }
                | Event::Changed { object, .. } => Some(object.kind),
                Event::Daemon { .. } => None,
            };
            if only.is_some() && kind.is_some() && kind != only {
                continue;
            }
            if json {
                writeln!(out, "{}", e.to_json())?;
            } else {
                writeln!(out, "{}", e.to_line())?;
            }
        }
        out.flush()
    };
    if present {
        let mut paths: Vec<&String> = known.keys().collect();
        paths.sort();
        let now: Vec<Event> = paths
            .into_iter()
            .map(|p| Event::Present {
                path: p.clone(),
                object: known[p].clone(),
            })
            .collect();
        emit(now)?;
    }
    loop {
        tokio::select! {
            msg = signals.next() => {
                let Some(Ok(msg)) = msg else {
                    return Err(anyhow!("the bus connection closed").into());
                };
                emit(apply(&mut known, &msg))?;
            }
            change = owners.next() => {
                let Some(change) = change else { continue };
                let Ok(args) = change.args() else { continue };
                if args.new_owner().is_none() {
                    emit(vec![Event::Daemon { running: false }])?;
                } else {
                    emit(vec![Event::Daemon { running: true }])?;
                    match read_all(&conn).await {
                        Ok(now) => {
                            emit(differences(&known, &now))?;
                            known = now;
                        }
                        Err(e) => eprintln!("banger: {e:#}"),
                    }
                }
            }
            _ = interrupts.recv() => return Ok(EXIT_OK),
            _ = terminate.recv() => return Ok(EXIT_OK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, state: &str) -> Known {
        Known {
            kind: Kind::Vm,
            properties: [
                ("Name".to_string(), serde_json::json!(name)),
                ("State".to_string(), serde_json::json!(state)),
                ("Address".to_string(), serde_json::json!("172.30.0.2")),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn lines_and_json_name_the_object_and_what_changed() {
        let e = Event::Changed {
            path: "/org/banger/Daemon1/vm/0123456789ab".into(),
            object: vm("web1", "running"),
            changed: [("State".to_string(), serde_json::json!("running"))]
                .into_iter()
                .collect(),
        };
        assert_eq!(e.to_line(), "vm web1: State=running");
        let j = e.to_json();
        assert_eq!(
            (j["event"].as_str(), j["kind"].as_str(), j["name"].as_str()),
            (Some("changed"), Some("vm"), Some("web1"))
        );
        assert_eq!(j["properties"], serde_json::json!({"State": "running"}));
        let added = Event::Added {
            path: "/p".into(),
            object: vm("web2", "stopped"),
        };
        assert_eq!(
            added.to_line(),
            "vm web2 added: State=stopped Address=172.30.0.2"
        );
    }

    #[test]
    fn a_second_reading_is_told_as_changes() {
        let before: Managed = [
            ("/a".to_string(), vm("a", "running")),
            ("/b".to_string(), vm("b", "running")),
        ]
        .into_iter()
        .collect();
        let after: Managed = [
            ("/a".to_string(), vm("a", "failed")),
            ("/c".to_string(), vm("c", "stopped")),
        ]
        .into_iter()
        .collect();
        let lines: Vec<String> = differences(&before, &after)
            .iter()
            .map(Event::to_line)
            .collect();
        assert_eq!(
            lines,
            [
                "vm b removed",
                "vm a: State=failed",
                "vm c added: State=stopped Address=172.30.0.2"
            ]
        );
    }
}
