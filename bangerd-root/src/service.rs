//! Process entry: command line and the service loop.

use std::sync::Arc;

use anyhow::Context;
use banger_api::names;
use banger_host::build_info::BuildIdentity;
use banger_host::install::Layout;
use banger_host::systemd::Systemd;
use clap::Parser;

use crate::bus::authz::Authorizer;
use crate::bus::daemon::BusDaemon;
use crate::bus::job1::BusJobs;
use crate::bus::root1::Root1;
use crate::core::RootCore;
use crate::update::engine::{Engine, UpdatePaths};

/// banger's root helper (normally started by systemd as bangerd-root.service).
#[derive(Debug, Parser)]
#[command(name = "bangerd-root", disable_version_flag = true)]
pub struct Args {
    /// Print the version line and exit.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// Check that this binary can start as the helper (it reads the install metadata, the
    /// configuration and the update journal as the service does) and answer Root1's Version
    /// over the socket on standard input, then exit. The update engine runs this on a staged
    /// release before anything is swapped.
    #[arg(long, conflicts_with_all = ["recover", "resume_pending"])]
    pub self_test: bool,
    /// Finish the update recorded in the journal without the helper service: roll it back
    /// (or complete it, if it had passed its checks), then start bangerd-root.service. Run by
    /// bangerd-root-recover.service when bangerd-root.service fails.
    #[arg(long, conflicts_with = "resume_pending")]
    pub recover: bool,
    /// Start bangerd-root.service, which finishes the update recorded in the journal. Run at
    /// boot by bangerd-root-resume.service while an update is unfinished.
    #[arg(long)]
    pub resume_pending: bool,
}

/// Runs bangerd-root; returns the process exit code.
pub fn main(args: Args) -> anyhow::Result<i32> {
    if args.version {
        println!("{}", BuildIdentity::current().version_line("bangerd-root"));
        return Ok(0);
    }
    let log_level = banger_host::runtime::init_service_logging("bangerd-root");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.self_test {
        rt.block_on(crate::selftest::run())?;
    } else if args.recover {
        rt.block_on(recover())?;
    } else if args.resume_pending {
        rt.block_on(resume_pending())?;
    } else {
        rt.block_on(serve(log_level))?;
    }
    Ok(0)
}

async fn system_bus() -> anyhow::Result<zbus::Connection> {
    zbus::connection::Builder::system()
        .build()
        .await
        .context("connecting to the system bus")
}

/// `--recover` (see [`Engine::recover`]).
async fn recover() -> anyhow::Result<()> {
    let conn = system_bus().await?;
    let layout = Layout::new("/");
    let systemd = Systemd::new(&conn).await.context("reaching systemd")?;
    let authz = Arc::new(Authorizer::new(conn.clone(), layout.install_toml()));
    let jobs = BusJobs::new(conn.clone(), authz);
    let engine = Engine::for_recovery(
        systemd,
        layout,
        UpdatePaths::system(),
        jobs,
        BusDaemon::new(conn),
    );
    let done = engine.recover().await.map_err(anyhow::Error::msg)?;
    tracing::info!("{done}");
    Ok(())
}

/// `--resume-pending`: starts the helper, which resumes the journal before it takes calls.
async fn resume_pending() -> anyhow::Result<()> {
    let conn = system_bus().await?;
    let systemd = Systemd::new(&conn).await.context("reaching systemd")?;
    tracing::info!("an update is unfinished: starting {}", names::ROOT_UNIT);
    systemd.reset_failed(names::ROOT_UNIT).await;
    systemd
        .run_job(banger_host::systemd::JobKind::Start, names::ROOT_UNIT)
        .await
        .with_context(|| format!("starting {}", names::ROOT_UNIT))?;
    Ok(())
}

async fn serve(log_level: banger_host::runtime::LogLevel) -> anyhow::Result<()> {
    // One connection for serving and for our own calls to systemd and polkit.
    let conn = system_bus().await?;
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
        core.systemd.clone(),
        layout,
        UpdatePaths::system(),
        BusJobs::new(conn.clone(), authz.clone()),
        BusDaemon::new(conn.clone()),
    );
    let root1 = Root1::new(core, authz, engine.clone());
    let calls = root1.calls();
    let vms = root1.vm_host();
    conn.object_server()
        .at(names::ROOT1_PATH, root1)
        .await
        .context("serving /org/banger/Root1")?;
    // Its update jobs, for desktop tools: InterfacesAdded/Removed as jobs come and go.
    conn.object_server()
        .at(names::ROOT1_PATH, zbus::fdo::ObjectManager)
        .await
        .context("serving the ObjectManager at /org/banger/Root1")?;
    conn.object_server()
        .at(
            banger_host::runtime::LOG_CONTROL_PATH,
            banger_host::runtime::LogControl::new(log_level, "bangerd-root"),
        )
        .await
        .context("serving org.freedesktop.LogControl1")?;
    // Pick up an update the previous helper left unfinished, before taking calls.
    engine.resume().await;
    banger_host::runtime::own_name(&conn, names::ROOT1_NAME).await?;
    engine.continue_resumed();
    tracing::info!(
        version = banger_host::build_info::VERSION,
        "bangerd-root ready"
    );
    // VMs that ended while no helper ran (a guest powered off) left their outbound network;
    // from now on every VM unit's end is seen as it happens.
    vms.release_network_if_idle().await;
    tokio::spawn(vms.clone().follow_vm_units());
    // A storm of callers leaves megabytes of freed heap resident; give them back.
    tokio::spawn(banger_host::runtime::return_freed_memory("bangerd-root"));
    banger_host::runtime::shutdown_signal().await;
    tracing::info!("bangerd-root stopping");
    banger_host::runtime::release_name_and_drain(&conn, names::ROOT1_NAME, &calls).await;
    // The last chance before an uninstall; with VMs running (an update), nothing changes.
    vms.release_network_if_idle().await;
    Ok(())
}

#[cfg(test)]
mod man_page {
    use clap::CommandFactory;

    /// bangerd-root(8), generated from these arguments and checked in as docs/man/bangerd-root.8;
    /// `make update-generated` rewrites it.
    #[test]
    fn checked_in_generated_man_page_matches() {
        let mut out = Vec::new();
        clap_mangen::Man::new(super::Args::command())
            .section("8")
            .manual("banger manual")
            .source("banger")
            .render(&mut out)
            .unwrap();
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man/bangerd-root.8");
        banger_host::testbus::assert_contract(std::str::from_utf8(&out).unwrap(), &path);
    }
}
