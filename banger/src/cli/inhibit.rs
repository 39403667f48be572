//! `banger inhibit [--why TEXT] -- CMD…`: hold off updates while a command runs.

use anyhow::Context;
use banger_api::proxies::Daemon1Proxy;

use super::{CmdResult, EXIT_FAILED, bus};

/// Registers the hold, runs the command, releases the hold (leaving the bus releases it too).
pub async fn run(why: String, command: Vec<String>) -> CmdResult {
    let conn = bus::system_bus().await?;
    let daemon = Daemon1Proxy::new(&conn).await?;
    let id = daemon
        .inhibit(&why)
        .await
        .context("asking bangerd to hold off updates")?;
    eprintln!(
        "banger: updates held off ({id}: {why}) while {:?} runs",
        command.join(" ")
    );
    let status = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .await
        .with_context(|| format!("running {:?}", command[0]));
    if let Err(e) = daemon.uninhibit(&id).await {
        eprintln!("banger: releasing {id}: {}", bus::message_of(&e));
    }
    let status = status?;
    Ok(status.code().unwrap_or(EXIT_FAILED))
}
