//! `banger doctor`: checks the installation and the host from the caller's point of view.
//!
//! It reads and runs things, and never changes anything.

use std::time::Duration;

use banger_api::names;
use banger_api::proxies::Daemon1Proxy;
use banger_api::wire::{DoctorCheck, Level};
use banger_host::assets::ASSETS;
use banger_host::install::{InstallMeta, Layout, PROGRAMS};
use banger_host::systemd::Systemd;
use banger_host::virt::{self, Accelerator};
use zbus::proxy::MethodFlags;

use super::system::program_identity;
use super::{CmdResult, EXIT_FAILED, EXIT_OK, bus};

/// Runs every check and prints one line each (or, with `json`, one object).
pub async fn run(json: bool) -> CmdResult {
    let mut checks = Vec::new();
    let live = Layout::new("/");
    let meta = match InstallMeta::read(&live.install_toml()) {
        Ok(m) => {
            checks.push(DoctorCheck::new(
                Level::Pass,
                "install.toml",
                format!(
                    "v{} (commit {}), owner {}, prefix {}{}",
                    m.release.version,
                    m.release.commit,
                    m.owner,
                    m.prefix,
                    m.package
                        .as_ref()
                        .map(|p| format!(", installed by {} (updates: {})", p.manager, p.upgrade))
                        .unwrap_or_default()
                ),
            ));
            Some(m)
        }
        Err(e) => {
            checks.push(DoctorCheck::new(Level::Fail, "install.toml", e.to_string()));
            None
        }
    };
    let layout = meta
        .as_ref()
        .map(InstallMeta::layout)
        .unwrap_or_else(|| Layout::new(banger_host::install::DEFAULT_PREFIX));

    for program in PROGRAMS {
        let path = layout.program(program);
        let check = format!("binary {program}");
        checks.push(match program_identity(&path, program) {
            Err(e) => DoctorCheck::new(Level::Fail, check, format!("{e:#}")),
            Ok(id) => match &meta {
                Some(m) if m.release != id => DoctorCheck::new(
                    Level::Fail,
                    check,
                    format!(
                        "{} is v{} (commit {}, built {}) but install.toml records v{} (commit {}, built {}): reinstall or update",
                        path.display(), id.version, id.commit, id.built_at,
                        m.release.version, m.release.commit, m.release.built_at
                    ),
                ),
                Some(_) => DoctorCheck::new(Level::Pass, check, format!("{} matches install.toml", path.display())),
                None => DoctorCheck::new(Level::Warn, check, format!("{} is v{} (cannot compare: no install metadata)", path.display(), id.version)),
            },
        });
    }

    checks.extend(file_checks(&layout));

    match bus::system_bus().await {
        Err(e) => checks.push(DoctorCheck::new(
            Level::Fail,
            "system bus",
            format!("{e:#}"),
        )),
        Ok(conn) => {
            checks.extend(service_checks(&conn, meta.as_ref()).await);
            checks.extend(vm_host_checks(&conn).await);
        }
    }

    checks.extend(store_checks(&layout, meta.as_ref()).await);

    let worst = checks
        .iter()
        .map(DoctorCheck::level)
        .max()
        .unwrap_or(Level::Pass);
    if json {
        let count = |l: Level| checks.iter().filter(|c| c.level() == l).count();
        println!(
            "{}",
            serde_json::json!({
                "format_version": super::output::JSON_FORMAT_VERSION,
                "checks": checks,
                "passed": count(Level::Pass),
                "warned": count(Level::Warn),
                "failed": count(Level::Fail),
            })
        );
    } else {
        for c in &checks {
            println!("{c}");
        }
    }
    Ok(if worst == Level::Fail {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

fn file_checks(layout: &Layout) -> Vec<DoctorCheck> {
    let mut out = Vec::new();
    let policy = layout.polkit_policy();
    out.push(match std::fs::read_to_string(&policy) {
        Err(e) => DoctorCheck::new(
            Level::Fail,
            "polkit policy",
            format!(
                "{}: {e}: authorization for updates and daemon control cannot work; {}",
                policy.display(),
                repair_hint(layout)
            ),
        ),
        Ok(text) => {
            let missing: Vec<_> = names::action::ALL
                .iter()
                .filter(|a| !text.contains(&format!("<action id=\"{a}\"")))
                .collect();
            if missing.is_empty() {
                DoctorCheck::new(
                    Level::Pass,
                    "polkit policy",
                    format!(
                        "{} defines all {} actions",
                        policy.display(),
                        names::action::ALL.len()
                    ),
                )
            } else {
                DoctorCheck::new(
                    Level::Fail,
                    "polkit policy",
                    format!(
                        "{} lacks {:?}: {}",
                        policy.display(),
                        missing,
                        repair_hint(layout)
                    ),
                )
            }
        }
    });
    let missing: Vec<String> = ASSETS
        .iter()
        .filter(|a| a.name != banger_api::names::POLKIT_POLICY)
        .map(|a| a.path(layout))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    out.push(if missing.is_empty() {
        DoctorCheck::new(
            Level::Pass,
            "system files",
            "units, bus policy and activation files present",
        )
    } else {
        DoctorCheck::new(
            Level::Fail,
            "system files",
            format!("missing {}: {}", missing.join(", "), repair_hint(layout)),
        )
    });
    out
}

/// How to put missing or damaged system files back.
fn repair_hint(layout: &Layout) -> &'static str {
    if layout.packaged {
        "reinstall banger's package, then run: sudo banger system setup"
    } else {
        "reinstall with: sudo banger system install"
    }
}

async fn service_checks(conn: &zbus::Connection, meta: Option<&InstallMeta>) -> Vec<DoctorCheck> {
    let mut out = Vec::new();
    let systemd = match Systemd::new(conn).await {
        Ok(s) => s,
        Err(e) => return vec![DoctorCheck::new(Level::Fail, "systemd", e.to_string())],
    };
    let dbus = zbus::fdo::DBusProxy::new(conn).await.ok();
    for (unit, name) in [
        (names::ROOT_UNIT, names::ROOT1_NAME),
        (names::DAEMON_UNIT, names::DAEMON1_NAME),
    ] {
        out.push(match settled_state(&systemd, unit).await {
            Ok(s) if s.active_state == "active" => DoctorCheck::new(
                Level::Pass,
                unit,
                format!("active ({}), pid {}", s.sub_state, s.main_pid),
            ),
            Ok(s) => DoctorCheck::new(
                Level::Fail,
                unit,
                format!(
                    "{} ({}): see journalctl -u {unit}",
                    s.active_state, s.sub_state
                ),
            ),
            Err(e) => DoctorCheck::new(Level::Fail, unit, e.to_string()),
        });
        let owned = match &dbus {
            Some(d) => d
                .name_has_owner(name.try_into().expect("valid name"))
                .await
                .unwrap_or(false),
            None => false,
        };
        out.push(if owned {
            DoctorCheck::new(Level::Pass, "bus name", format!("{name} is owned"))
        } else {
            DoctorCheck::new(
                Level::Fail,
                "bus name",
                format!("{name} is not owned on the system bus"),
            )
        });
    }
    let me = banger_host::users::current_uid();
    let may_call_daemon = me == 0 || meta.is_some_and(|m| m.owner.uid == me);
    if may_call_daemon {
        // NO_AUTO_START: doctor looks, it must not start a stopped daemon (or wait for an
        // activation that cannot succeed).
        let found: zbus::Result<Option<Vec<DoctorCheck>>> = match Daemon1Proxy::new(conn).await {
            Ok(d) => {
                d.inner()
                    .call_with_flags("Doctor", MethodFlags::NO_AUTO_START, &())
                    .await
            }
            Err(e) => Err(e),
        };
        match found {
            Ok(found) => out.extend(found.unwrap_or_default().into_iter().map(|c| DoctorCheck {
                check: format!("bangerd {}", c.check),
                ..c
            })),
            Err(e) => out.push(DoctorCheck::new(
                Level::Fail,
                "bangerd",
                format!("cannot ask bangerd for its checks: {}", bus::message_of(&e)),
            )),
        }
    } else {
        out.push(DoctorCheck::new(
            Level::Warn,
            "bangerd",
            "only the owner and root may query bangerd; skipped its own checks",
        ));
    }
    out
}

/// How long doctor waits for a unit that is starting, stopping or about to be restarted by
/// systemd to settle before it judges it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether a unit in this state is on its way somewhere (systemd is starting, stopping,
/// reloading or about to restart it).
fn is_transitional(s: &banger_host::systemd::UnitState) -> bool {
    matches!(
        s.active_state.as_str(),
        "activating" | "deactivating" | "reloading" | "refreshing"
    ) || s.sub_state == "auto-restart"
}

/// The state of `unit` once it has settled, waiting at most [`SETTLE_TIMEOUT`]: a service
/// that crashed a moment ago and that systemd restarts is judged when it is back (or is not).
async fn settled_state(
    systemd: &Systemd,
    unit: &str,
) -> Result<banger_host::systemd::UnitState, banger_host::systemd::SystemdError> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let s = systemd.unit_state(unit).await?;
        if !is_transitional(&s) || tokio::time::Instant::now() >= deadline {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long the store check may take: it reads one page of a local file.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The store's schema, as the installed `bangerd --check-migrations` sees it. The store belongs
/// to the owner, who can put anything at its path (a link to any file, a FIFO), so the check
/// always runs as the owner, also when doctor runs as root, and is killed if it hangs.
async fn store_checks(layout: &Layout, meta: Option<&InstallMeta>) -> Vec<DoctorCheck> {
    let me = banger_host::users::current_uid();
    let owner = match meta {
        Some(m) if me == 0 || m.owner.uid == me => &m.owner,
        Some(_) => return Vec::new(),
        None if me == 0 => {
            return vec![DoctorCheck::new(
                Level::Warn,
                "store schema",
                "skipped: without install.toml the owner is unknown, and root never reads the \
                 owner's store itself",
            )];
        }
        None => return Vec::new(),
    };
    let bangerd = layout.program("bangerd");
    let mut cmd = tokio::process::Command::new(&bangerd);
    cmd.args(["--check-migrations", "--system"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if me == 0 {
        cmd.uid(owner.uid)
            .gid(owner.gid)
            .env_clear()
            .env("HOME", &owner.home)
            .env("USER", &owner.user)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    }
    let out = tokio::time::timeout(STORE_CHECK_TIMEOUT, cmd.output()).await;
    vec![match out {
        Err(_) => DoctorCheck::new(
            Level::Fail,
            "store schema",
            format!(
                "{} --check-migrations did not finish within {} s: something other than a store \
                 may be at {} (a FIFO?); it was stopped",
                bangerd.display(),
                STORE_CHECK_TIMEOUT.as_secs(),
                layout.store().display()
            ),
        ),
        Ok(Err(e)) => DoctorCheck::new(
            Level::Fail,
            "store schema",
            format!("running {} --check-migrations: {e}", bangerd.display()),
        ),
        Ok(Ok(o)) => {
            let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
            match o.status.code() {
                Some(0) => DoctorCheck::new(Level::Pass, "store schema", line),
                Some(1) => DoctorCheck::new(Level::Warn, "store schema", line),
                _ => DoctorCheck::new(Level::Fail, "store schema", line),
            }
        }
    }]
}

/// The root helper's view of the VM host: back end and why, accelerator, Firecracker version,
/// bridge, tun device. When the helper cannot be asked, what this process can see itself.
async fn vm_host_checks(conn: &zbus::Connection) -> Vec<DoctorCheck> {
    let asked = match banger_api::proxies::Root1Proxy::new(conn).await {
        Ok(r) => r.vmm_doctor().await,
        Err(e) => Err(e),
    };
    match asked {
        Ok(checks) => checks,
        Err(e) => {
            let mut out = vec![DoctorCheck::new(
                Level::Warn,
                "vm host",
                format!(
                    "cannot ask bangerd-root for its VM checks ({}); what banger sees itself:",
                    bus::message_of(&e)
                ),
            )];
            out.extend(virtualization_checks());
            out
        }
    }
}

fn virtualization_checks() -> Vec<DoctorCheck> {
    let mut out = vec![match Accelerator::detect() {
        Accelerator::Kvm { cpu_flag } => DoctorCheck::new(
            Level::Pass,
            "virtualization",
            format!("KVM usable (/dev/kvm present, CPU flag {cpu_flag})"),
        ),
        Accelerator::Tcg { why } => DoctorCheck::new(
            Level::Warn,
            "virtualization",
            format!("QEMU TCG software emulation will be used: {why}"),
        ),
    }];
    let qemu = virt::find_program("qemu-system-x86_64");
    let firecracker = virt::find_program("firecracker");
    out.push(match (&firecracker, &qemu) {
        (Some(f), _) => DoctorCheck::new(
            Level::Pass,
            "vmm",
            format!("Firecracker at {}", f.display()),
        ),
        (None, Some(q)) => DoctorCheck::new(
            Level::Pass,
            "vmm",
            format!("QEMU at {} (Firecracker not installed)", q.display()),
        ),
        (None, None) => DoctorCheck::new(
            Level::Warn,
            "vmm",
            "no VMM installed: install qemu-system-x86 (or Firecracker) to run VMs",
        ),
    });
    out
}
