//! Process entry: command line and the service loop.

use std::sync::Arc;

use anyhow::Context;
use banger::build_info::BuildIdentity;
use banger::install::Layout;
use banger::names;
use banger::systemd::Systemd;
use clap::Parser;

use crate::authz::Authorizer;
use crate::core::RootCore;
use crate::root1::Root1;
use crate::update::engine::{Engine, UpdatePaths};

/// banger's root helper (normally started by systemd as bangerd-root.service).
#[derive(Debug, Parser)]
#[command(name = "bangerd-root", disable_version_flag = true)]
pub struct Args {
    /// Print the version line and exit.
    #[arg(short = 'V', long)]
    pub version: bool,
}

/// Runs bangerd-root; returns the process exit code.
pub fn main(args: Args) -> anyhow::Result<i32> {
    if args.version {
        println!("{}", BuildIdentity::current().version_line("bangerd-root"));
        return Ok(0);
    }
    banger::runtime::init_service_logging();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve())?;
    Ok(0)
}

async fn serve() -> anyhow::Result<()> {
    // One connection for serving and for our own calls to systemd and polkit.
    let conn = zbus::connection::Builder::system()
        .build()
        .await
        .context("connecting to the system bus")?;
    let layout = Layout::new("/");
    let systemd = Systemd::new(&conn).await.context("reaching systemd")?;
    let core = Arc::new(RootCore {
        systemd,
        layout: layout.clone(),
    });
    let authz = Arc::new(Authorizer::new(conn.clone(), layout.install_toml()));
    if let Err(e) = core.install_meta() {
        tracing::warn!("{e}");
    }
    let engine = Engine::new(
        conn.clone(),
        core.systemd.clone(),
        layout,
        UpdatePaths::system(),
        authz.clone(),
    );
    let root1 = Root1::new(core, authz, engine.clone());
    let calls = root1.calls();
    conn.object_server()
        .at(names::ROOT1_PATH, root1)
        .await
        .context("serving /org/banger/Root1")?;
    // Pick up an update the previous helper left unfinished, before taking calls.
    engine.resume().await;
    banger::runtime::own_name(&conn, names::ROOT1_NAME).await?;
    engine.continue_resumed();
    tracing::info!(version = banger::build_info::VERSION, "bangerd-root ready");
    banger::runtime::shutdown_signal().await;
    tracing::info!("bangerd-root stopping");
    banger::runtime::release_name_and_drain(&conn, names::ROOT1_NAME, &calls).await;
    Ok(())
}
