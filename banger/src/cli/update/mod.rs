//! `banger update`: asks the root helper whether a newer release exists, or starts an update job
//! and follows it to its end — across the helper's own restart, which every update goes through —
//! then turns the job's result into the last line and the exit code.
//!
//! This module holds the command line, `--check`, the options sent with `Update` and the
//! explanation of a refusal because another update runs; what is shown is in [`view`], and
//! following the job over the bus is in [`follow`].
//!
//! It never decides anything about the update itself (which release, whether it is allowed,
//! whether it may still be canceled): the helper does. This module only asks, watches and reports.

mod follow;
mod history;
mod view;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use banger_api::error::ErrorKind;
use banger_api::names::ROOT1_NAME;
use banger_api::proxies::Root1Proxy;
use serde_json::json;
use zbus::{Connection, OwnedObjectPath, Variant};

use self::follow::{Follow, subscribe_job_signals};
use self::view::{version_label, watch_command};
use super::bus::{self, CallError};
use super::{CmdResult, EXIT_OK};

/// How long to wait for the helper to come back after it went away.
const HELPER_RETURN_PATIENCE: Duration = Duration::from_secs(120);

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
    /// List the updates the journal recorded: each job's start, who asked, the versions and
    /// its result (root sees them all; other users only with journal access, group adm or
    /// systemd-journal). Asks no service.
    #[arg(long, conflicts_with_all = ["check", "dry_run", "force", "to", "allow_downgrade"])]
    pub history: bool,
    /// Print JSON on stdout instead of text: one object per line for each event of the update
    /// (the last one is "finished"), or a single object with --check or --history.
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
    if args.history {
        return history::run(args.json);
    }
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
    let mut follow = Follow::new(conn, job, args.json);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
