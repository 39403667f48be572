//! Process entry: command line, `--check-migrations`, and the service loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use banger_api::names;
use banger_host::build_info::BuildIdentity;
use banger_host::install::{Layout, STATE_DIR, STORE_FILE};
use clap::Parser;

use crate::core::Daemon;
use crate::daemon1::Daemon1;
use crate::store;
use crate::vms::Vms;

/// banger's owner daemon (normally started by systemd as bangerd.service).
#[derive(Debug, Parser)]
#[command(name = "bangerd", disable_version_flag = true)]
pub struct Args {
    /// Print the version line and exit.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// Report whether the store is compatible with this binary and exit without writing:
    /// 0 compatible, 1 migrations pending (applied on start), 2 incompatible or unreadable.
    #[arg(long)]
    pub check_migrations: bool,
    /// Write a consistent copy of the store to PATH (which must not exist) and exit; used by
    /// the update engine before a new bangerd may migrate the store.
    #[arg(long, value_name = "PATH")]
    pub snapshot_store: Option<PathBuf>,
    /// Use the installed system store (/var/lib/banger/banger.db).
    #[arg(long, conflicts_with = "db")]
    pub system: bool,
    /// Use the store at this path.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

impl Args {
    fn store_path(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(|| PathBuf::from(STATE_DIR).join(STORE_FILE))
    }
}

/// Runs bangerd; returns the process exit code.
pub fn main(args: Args) -> anyhow::Result<i32> {
    if args.version {
        println!("{}", BuildIdentity::current().version_line("bangerd"));
        return Ok(0);
    }
    let chosen = if args.system {
        Layout::new("/").store()
    } else {
        args.store_path()
    };
    if let Some(dest) = &args.snapshot_store {
        return Ok(match store::snapshot(&chosen, dest) {
            Ok(()) => {
                println!("store {} copied to {}", chosen.display(), dest.display());
                0
            }
            Err(e) => {
                println!("{e}; the store was not touched");
                2
            }
        });
    }
    if args.check_migrations {
        let path = chosen;
        return Ok(match store::check(&path) {
            Ok(status) => {
                println!("{}", status.describe(&path));
                status.exit_code()
            }
            Err(e) => {
                println!("{e}; it was not touched");
                2
            }
        });
    }
    if banger_host::users::current_uid() == 0 {
        anyhow::bail!(
            "bangerd runs as the owner of the install, never as root: if bangerd.service has no \
             User= (a packaged install not set up yet), choose the owner with: sudo banger \
             system setup --owner USER"
        );
    }
    let log_level = banger_host::runtime::init_service_logging("bangerd");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(args.store_path(), log_level))?;
    Ok(0)
}

async fn serve(
    store_path: PathBuf,
    log_level: banger_host::runtime::LogLevel,
) -> anyhow::Result<()> {
    let core = Arc::new(
        Daemon::open(&store_path)
            .with_context(|| format!("opening store {}", store_path.display()))?,
    );
    let ready = Arc::new(AtomicBool::new(false));
    let conn = zbus::connection::Builder::system()
        .build()
        .await
        .context("connecting to the system bus")?;
    let state_dir = store_path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(STATE_DIR));
    let vms = Arc::new(
        Vms::new(
            state_dir,
            core.store().clone(),
            core.operations().clone(),
            conn.clone(),
        )
        .await
        .context("starting the VM manager")?,
    );
    vms.sweep_pull_leftovers();
    let daemon1 = Daemon1::new(core, vms.clone(), ready.clone());
    let calls = daemon1.calls();
    let managed = daemon1.managed();
    conn.object_server()
        .at(names::DAEMON1_PATH, daemon1)
        .await
        .context("serving /org/banger/Daemon1")?;
    conn.object_server()
        .at(
            banger_host::runtime::LOG_CONTROL_PATH,
            banger_host::runtime::LogControl::new(log_level, "bangerd"),
        )
        .await
        .context("serving org.freedesktop.LogControl1")?;
    // Running VMs are their own units: find them again before answering anyone.
    vms.reconcile().await;
    // VMs, images and jobs as objects, served before the name is owned.
    conn.object_server()
        .at(
            names::DAEMON1_PATH,
            crate::manager::ObjectManager::new(managed.clone()),
        )
        .await
        .context("serving the ObjectManager at /org/banger/Daemon1")?;
    let systemd = banger_host::systemd::Systemd::new(&conn).await.ok();
    let objects = crate::objects::Objects::start(
        conn.clone(),
        vms.clone(),
        calls.clone(),
        managed,
        systemd.as_ref(),
    )
    .await;
    tokio::spawn(objects.run());
    // In the background: it asks bangerd-root for the VM network, which may be restarting.
    tokio::spawn({
        let vms = vms.clone();
        async move { vms.start_resolver().await }
    });
    ready.store(true, Ordering::SeqCst);
    // Request the name only once the object is served and ready.
    banger_host::runtime::own_name(&conn, names::DAEMON1_NAME).await?;
    tracing::info!(version = banger_host::build_info::VERSION, "bangerd ready");
    // A storm of callers leaves megabytes of freed heap resident; give them back.
    tokio::spawn(banger_host::runtime::return_freed_memory("bangerd"));
    banger_host::runtime::shutdown_signal().await;
    ready.store(false, Ordering::SeqCst);
    banger_host::runtime::release_name_and_drain(&conn, names::DAEMON1_NAME, &calls).await;
    tracing::info!("bangerd stopping");
    Ok(())
}

#[cfg(test)]
mod man_page {
    use clap::CommandFactory;

    /// bangerd(8), generated from these arguments and checked in as docs/man/bangerd.8;
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
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man/bangerd.8");
        banger_host::testbus::assert_contract(std::str::from_utf8(&out).unwrap(), &path);
    }
}
