//! `banger daemon status|start|stop|restart`, through the root helper.

use anyhow::Context;
use banger_api::proxies::{Daemon1Proxy, Root1Proxy};

use super::{CmdResult, EXIT_FAILED, EXIT_OK, bus};

/// A daemon control verb.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    /// Start.
    Start,
    /// Stop.
    Stop,
    /// Restart.
    Restart,
}

/// `banger daemon status [--json]`.
pub async fn status(json: bool) -> CmdResult {
    let conn = bus::system_bus().await?;
    let root1 = Root1Proxy::new(&conn).await?;
    let units = root1
        .get_service_status()
        .await
        .context("asking bangerd-root for the service status")?;
    let healthy = units.iter().all(|u| u.active_state == "active");
    // Only the owner and root may talk to the daemon; others just see the unit state.
    let ready: Result<bool, String> = match Daemon1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
    {
        Ok(d) => d.ready().await.map_err(|e| bus::message_of(&e)),
        Err(e) => Err(e.to_string()),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "format_version": super::output::JSON_FORMAT_VERSION,
                "services": units,
                "daemon_ready": ready.as_ref().ok(),
                "daemon_ready_error": ready.as_ref().err(),
                "healthy": healthy,
            })
        );
    } else {
        for u in &units {
            println!(
                "{}: {} ({}), pid {}",
                u.unit, u.active_state, u.sub_state, u.main_pid
            );
        }
        match ready {
            Ok(ready) => println!("bangerd ready: {ready}"),
            Err(e) => println!("bangerd ready: unknown ({e})"),
        }
    }
    Ok(if healthy { EXIT_OK } else { EXIT_FAILED })
}

/// `banger daemon start|stop|restart`.
pub async fn control(verb: Verb) -> CmdResult {
    let conn = bus::system_bus().await?;
    let (method, what, done) = match verb {
        Verb::Start => ("StartDaemon", "starting bangerd", "bangerd started"),
        Verb::Stop => ("StopDaemon", "stopping bangerd", "bangerd stopped"),
        Verb::Restart => ("RestartDaemon", "restarting bangerd", "bangerd restarted"),
    };
    bus::call_gated::<_, ()>(&conn, method, &(), what).await?;
    println!("{done}");
    Ok(EXIT_OK)
}
