//! `banger update --history`: the update jobs the journal recorded. bangerd-root writes the start
//! and the outcome of every job with a `MESSAGE_ID` of its own (`banger_api::journal`); this
//! asks `journalctl` for those entries, written by root (`_UID=0`, a field journald sets and no
//! client can forge), and joins each job's start and end.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::Context;
use banger_api::journal::{self, field};
use serde_json::{Value, json};

use crate::cli::{CmdResult, EXIT_OK};

/// One update job as the journal tells it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Job {
    /// The job's id.
    pub id: u32,
    /// When it started (Unix seconds), if its start is in the journal.
    pub started: Option<u64>,
    /// When it ended, if its end is in the journal.
    pub ended: Option<u64>,
    /// The UID that asked for it.
    pub initiator_uid: Option<u32>,
    /// The version installed when it started.
    pub from_version: String,
    /// The version it installed or tried to install.
    pub to_version: String,
    /// Its result (a `JobResult` word), `""` without an end in the journal.
    pub result: String,
    /// Why it failed or rolled back.
    pub error: String,
}

/// Joins the entries of `journalctl -o json` (one JSON object per line, oldest first) into jobs,
/// oldest first: an outcome belongs to the latest start of the same job id before it (ids
/// start again at 1 when the helper's state is removed, so an id alone is not a job). Entries
/// without a job id, or with one that is not a number, are skipped.
pub fn parse(json_lines: &str) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut open: BTreeMap<u32, usize> = BTreeMap::new();
    for line in json_lines.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let text = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or("");
        let Ok(id) = text(field::JOB_ID).parse::<u32>() else {
            continue;
        };
        let at = text("__REALTIME_TIMESTAMP")
            .parse::<u64>()
            .ok()
            .map(|us| us / 1_000_000);
        let started = text(field::MESSAGE_ID) == journal::UPDATE_STARTED;
        let index = match open.get(&id) {
            Some(&i) if !started => i,
            _ => {
                jobs.push(Job {
                    id,
                    ..Job::default()
                });
                jobs.len() - 1
            }
        };
        let job = &mut jobs[index];
        if let Ok(uid) = text(field::INITIATOR_UID).parse() {
            job.initiator_uid = Some(uid);
        }
        if !text(field::FROM_VERSION).is_empty() {
            job.from_version = text(field::FROM_VERSION).to_string();
        }
        if started {
            job.started = at;
            open.insert(id, index);
        } else {
            job.ended = at;
            job.result = text(field::RESULT).to_string();
            job.to_version = text(field::VERSION).to_string();
            job.error = text(field::ERROR).to_string();
            open.remove(&id);
        }
    }
    jobs
}

/// Groups whose members journald lets read the system journal (besides root).
const JOURNAL_GROUPS: [&str; 3] = ["systemd-journal", "adm", "wheel"];

/// Whether this process may read root's journal entries: root, or a member of a journal group.
fn may_read_system_journal() -> bool {
    if banger_host::users::current_uid() == 0 {
        return true;
    }
    let mine = process_groups();
    JOURNAL_GROUPS
        .iter()
        .any(|g| matches!(banger_host::users::group_id(g), Ok(Some(gid)) if mine.contains(&gid)))
}

/// This process's supplementary and primary groups, from `/proc/self/status`.
fn process_groups() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("Groups:") || l.starts_with("Gid:"))
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter_map(|g| g.parse().ok())
        .collect()
}

/// The user name of `uid`, or the number.
fn user_name(uid: u32) -> String {
    banger_host::users::lookup(&uid.to_string())
        .map(|a| a.name)
        .unwrap_or_else(|_| uid.to_string())
}

fn when(t: Option<u64>) -> String {
    t.map(banger_api::time::rfc3339).unwrap_or_default()
}

/// `banger update --history [--json]`.
pub fn run(json: bool) -> CmdResult {
    let mut cmd = Command::new("journalctl");
    cmd.args(["--no-pager", "-o", "json", "_UID=0"]);
    for id in journal::UPDATE_IDS {
        cmd.arg(format!("{}={id}", field::MESSAGE_ID));
    }
    let out = cmd
        .output()
        .context("running journalctl to read the update history")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(
            anyhow::anyhow!("journalctl exited with {}: {}", out.status, stderr.trim()).into(),
        );
    }
    // journalctl shows a user outside groups adm and systemd-journal only their own entries
    // (and does not always say so).
    let partial = !may_read_system_journal()
        || stderr.contains("not seeing messages")
        || stderr.contains("insufficient");
    let jobs = parse(&String::from_utf8_lossy(&out.stdout));
    if json {
        let list: Vec<Value> = jobs
            .iter()
            .map(|j| {
                json!({
                    "job_id": j.id,
                    "started_at": j.started.map(banger_api::time::rfc3339),
                    "ended_at": j.ended.map(banger_api::time::rfc3339),
                    "initiator_uid": j.initiator_uid,
                    "initiator": j.initiator_uid.map(user_name),
                    "from_version": j.from_version,
                    "to_version": j.to_version,
                    "result": j.result,
                    "error": j.error,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "format_version": crate::cli::output::JSON_FORMAT_VERSION,
                "complete": !partial,
                "jobs": list,
            })
        );
    } else if jobs.is_empty() {
        println!("no update recorded in the journal");
    } else {
        println!(
            "{:<5} {:<20} {:<10} {:<20} {:<12} ENDED",
            "JOB", "STARTED", "BY", "VERSION", "RESULT"
        );
        for j in &jobs {
            let to = if j.to_version.is_empty() {
                "?"
            } else {
                &j.to_version
            };
            println!(
                "{:<5} {:<20} {:<10} {:<20} {:<12} {}",
                j.id,
                when(j.started),
                j.initiator_uid.map(user_name).unwrap_or_default(),
                format!("{} → {to}", j.from_version),
                if j.result.is_empty() {
                    "(no end)"
                } else {
                    &j.result
                },
                when(j.ended)
            );
            if !j.error.is_empty() {
                println!("      {}", j.error);
            }
        }
    }
    if partial {
        eprintln!(
            "banger: note: the journal shows this user only its own entries, so the history is \
             incomplete: run it as root (sudo banger update --history), or join group adm or \
             systemd-journal"
        );
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, job: &str, at_us: u64, extra: &[(&str, &str)]) -> String {
        let mut v = json!({
            "MESSAGE_ID": id,
            "JOB_ID": job,
            "__REALTIME_TIMESTAMP": at_us.to_string(),
        });
        for (k, x) in extra {
            v[*k] = json!(x);
        }
        v.to_string()
    }

    #[test]
    fn joins_each_start_with_its_end_in_time_order() {
        let lines = [
            entry(
                journal::UPDATE_STARTED,
                "3",
                1_000_000_000,
                &[("INITIATOR_UID", "0"), ("FROM_VERSION", "0.1.0")],
            ),
            entry(
                journal::UPDATE_UPDATED,
                "3",
                1_030_000_000,
                &[
                    ("RESULT", "updated"),
                    ("VERSION", "0.2.0"),
                    ("FROM_VERSION", "0.1.0"),
                ],
            ),
            entry(
                journal::UPDATE_STARTED,
                "4",
                2_000_000_000,
                &[("INITIATOR_UID", "1001"), ("FROM_VERSION", "0.2.0")],
            ),
            "not json".to_string(),
            entry(journal::UPDATE_STARTED, "x", 5, &[]),
            entry(
                journal::UPDATE_ROLLED_BACK,
                "4",
                2_050_000_000,
                &[
                    ("RESULT", "rolled-back"),
                    ("VERSION", "0.2.1"),
                    ("ERROR", "the new bangerd did not come up"),
                ],
            ),
            // The helper's state was removed: ids start again.
            entry(journal::UPDATE_STARTED, "3", 3_000_000_000, &[]),
            entry(
                journal::UPDATE_FAILED,
                "9",
                3_100_000_000,
                &[("RESULT", "failed")],
            ),
        ]
        .join("\n");
        let jobs = parse(&lines);
        assert_eq!(jobs.len(), 4, "{jobs:?}");
        assert_eq!(
            jobs[0],
            Job {
                id: 3,
                started: Some(1000),
                ended: Some(1030),
                initiator_uid: Some(0),
                from_version: "0.1.0".into(),
                to_version: "0.2.0".into(),
                result: "updated".into(),
                error: String::new(),
            }
        );
        assert_eq!(jobs[1].id, 4);
        assert_eq!(jobs[1].result, "rolled-back");
        assert_eq!(jobs[1].initiator_uid, Some(1001));
        assert_eq!(jobs[1].error, "the new bangerd did not come up");
        assert_eq!(
            (jobs[2].id, jobs[2].started, jobs[2].result.as_str()),
            (3, Some(3000), ""),
            "a new job 3, without an end"
        );
        assert_eq!(
            (jobs[3].id, jobs[3].started, jobs[3].result.as_str()),
            (9, None, "failed"),
            "an end whose start is not in the journal"
        );
    }
}
