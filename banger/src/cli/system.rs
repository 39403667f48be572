//! `banger system install|status|restart|uninstall`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use banger_api::names;
use banger_api::time;
use banger_host::assets::ASSETS;
use banger_host::build_info::BuildIdentity;
use banger_host::install::{InstallMeta, Layout, Owner, PACKAGING_FILE, PROGRAMS, Packaging};
use banger_host::systemd::{JobKind, Systemd};
use banger_host::{cockpit, fsutil, users};
use clap::CommandFactory;

use super::{CmdResult, EXIT_FAILED, EXIT_OK, bus};

fn require_root(what: &str) -> anyhow::Result<()> {
    if users::current_uid() != 0 {
        bail!("{what} must run as root (try: sudo banger {what}); nothing was changed");
    }
    Ok(())
}

/// Runs `PROGRAM --version` and parses its identity.
pub fn program_identity(path: &Path, program: &str) -> anyhow::Result<BuildIdentity> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", path.display()))?;
    if !out.status.success() {
        bail!("{} --version exited with {}", path.display(), out.status);
    }
    BuildIdentity::parse_version_line(program, &String::from_utf8_lossy(&out.stdout))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn resolve_owner(owner: Option<String>) -> anyhow::Result<Owner> {
    let name = match owner.or_else(|| std::env::var("SUDO_USER").ok().filter(|u| u != "root")) {
        Some(n) => n,
        None => bail!(
            "name the owner: banger system install --owner USER (the user who will run VMs); nothing was changed"
        ),
    };
    banger_host::assets::check_owner(&name)?;
    let a = users::lookup(&name).with_context(|| format!("resolving owner {name:?}"))?;
    banger_host::assets::check_owner(&a.name)?;
    if a.uid == 0 {
        bail!("the owner must be an unprivileged user, not root; nothing was changed");
    }
    Ok(Owner {
        user: a.name,
        uid: a.uid,
        gid: a.gid,
        home: a.home,
    })
}

async fn reload_bus_config(conn: &zbus::Connection) -> anyhow::Result<()> {
    zbus::fdo::DBusProxy::new(conn)
        .await?
        .reload_config()
        .await
        .context("asking dbus-daemon to reload its configuration")
}

/// The identity of the three programs in `src_dir`, refusing a set that is incomplete or
/// mixed (not all of this banger's release).
fn check_program_set(src_dir: &Path) -> anyhow::Result<BuildIdentity> {
    let identity = BuildIdentity::current();
    for program in PROGRAMS {
        let src = src_dir.join(program);
        if !src.is_file() {
            bail!(
                "{} is missing: install needs bangerd-root, bangerd and banger side by side; nothing was changed",
                src.display()
            );
        }
        let id = program_identity(&src, program)?;
        if id != identity {
            bail!(
                "{} is v{} (commit {}) but this banger is v{} (commit {}): refusing to install a mixed set; nothing was changed",
                src.display(),
                id.version,
                id.commit,
                identity.version,
                identity.commit
            );
        }
    }
    Ok(identity)
}

/// The directory this banger runs from.
fn own_dir() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this banger binary")?;
    Ok(me
        .parent()
        .context("locating this banger's directory")?
        .to_path_buf())
}

/// The prefix of an install whose binaries are in `bin` (`PREFIX/lib/banger/bin`).
fn prefix_of_bin_dir(bin: &Path) -> Option<PathBuf> {
    if bin.ends_with("lib/banger/bin") {
        bin.parent()?.parent()?.parent().map(Path::to_path_buf)
    } else {
        None
    }
}

/// Writes the files of an install that name no owner: the binaries (unless they are already
/// in place), the `banger` link, units, bus policy, activation files, polkit policy, man pages
/// and completions. Every file is rendered (and its values checked) before any is written.
fn write_shared_files(src_dir: &Path, layout: &Layout) -> anyhow::Result<()> {
    let rendered = ASSETS
        .iter()
        .filter(|a| !a.owner)
        .map(|a| Ok((a.path(layout), a.render_shared(layout)?.into_bytes())))
        .collect::<Result<Vec<_>, banger_host::assets::TemplateError>>()?;
    std::fs::create_dir_all(layout.bin_dir())
        .with_context(|| format!("creating {}", layout.bin_dir().display()))?;
    if let Some(bin) = layout.cli_link().parent() {
        std::fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
    }
    for program in PROGRAMS {
        let (src, dst) = (src_dir.join(program), layout.program(program));
        if src != dst {
            fsutil::atomic_copy(&src, &dst, 0o755)
                .with_context(|| format!("installing {}", dst.display()))?;
        }
    }
    link_cli(layout)?;
    let docs = super::generated::doc_files(layout, &super::Cli::command());
    for (path, text) in rendered.into_iter().chain(docs) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fsutil::atomic_write(&path, &text, 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Checks the Cockpit page built beside the binaries, if there is one.
fn check_built_page(src_dir: &Path) -> anyhow::Result<()> {
    if let Some(page) = cockpit::built_page(src_dir) {
        cockpit::check_tree(&page).with_context(|| {
            format!(
                "checking the Cockpit page in {}; nothing was changed",
                page.display()
            )
        })?;
    }
    Ok(())
}

/// `banger system install`.
pub async fn install(owner: Option<String>, prefix: PathBuf) -> CmdResult {
    require_root("system install")?;
    if !prefix.is_absolute() {
        return Err(anyhow::anyhow!(
            "--prefix {} must be an absolute path; nothing was changed",
            prefix.display()
        )
        .into());
    }
    banger_host::assets::check_prefix(&prefix)?;
    let src_dir = own_dir()?;
    let own_package = match prefix_of_bin_dir(&src_dir) {
        Some(p) => Packaging::read(&p.join(PACKAGING_FILE))?,
        None => None,
    };
    if let Some(p) = own_package {
        return Err(anyhow::anyhow!(
            "this banger ({}) belongs to {}: set it up with: sudo banger system setup --owner USER; nothing was changed",
            src_dir.display(),
            p.manager
        ).into());
    }
    if let (_, Some(meta), _) = installed_layout()
        && let Some(p) = &meta.package
    {
        return Err(anyhow::anyhow!(
            "banger v{} is installed by {} under {}: installing over it would break both; \
                 update it with: {}, or remove it first ({}); nothing was changed",
            meta.release.version,
            p.manager,
            meta.prefix,
            p.upgrade,
            p.remove
        )
        .into());
    }
    let owner = resolve_owner(owner)?;
    let identity = check_program_set(&src_dir)?;
    check_built_page(&src_dir)?;
    let layout = Layout::new(&prefix);
    write_shared_files(&src_dir, &layout)?;
    install_cockpit_page(&src_dir, &prefix)?;
    configure(&layout, &owner, &identity, None).await?;
    println!(
        "installed banger v{} (commit {}) under {} for owner {}",
        identity.version,
        identity.commit,
        prefix.display(),
        owner
    );
    println!(
        "services started: {} and {}",
        names::ROOT_UNIT,
        names::DAEMON_UNIT
    );
    Ok(EXIT_OK)
}

/// `banger system install --destdir DIR`: a package's file set under `destdir`.
pub fn stage(destdir: &Path, prefix: &Path, managed_by: &str) -> CmdResult {
    if !destdir.is_absolute() || !prefix.is_absolute() {
        return Err(anyhow::anyhow!(
            "--destdir {} and --prefix {} must be absolute paths; nothing was written",
            destdir.display(),
            prefix.display()
        )
        .into());
    }
    banger_host::assets::check_prefix(prefix)?;
    if managed_by.is_empty() || !managed_by.chars().all(|c| c.is_ascii_graphic()) {
        return Err(anyhow::anyhow!(
            "--managed-by {managed_by:?} must be the package manager's name, e.g. dpkg; nothing was written"
        ).into());
    }
    let src_dir = own_dir()?;
    check_program_set(&src_dir)?;
    check_built_page(&src_dir)?;
    let layout = Layout::packaged(prefix).under(destdir);
    write_shared_files(&src_dir, &layout)?;
    let marker = layout.packaging_file();
    fsutil::atomic_write(
        &marker,
        Packaging::for_manager(managed_by).render().as_bytes(),
        0o644,
    )
    .with_context(|| format!("writing {}", marker.display()))?;
    if let Some(page) = cockpit::built_page(&src_dir) {
        let dst = destdir.join(
            cockpit::page_dir(prefix)
                .strip_prefix("/")
                .expect("the prefix is absolute"),
        );
        let n = cockpit::install(&page, &dst)
            .with_context(|| format!("copying the Cockpit page to {}", dst.display()))?;
        println!("staged the Cockpit page ({n} files) in {}", dst.display());
    }
    println!(
        "staged banger v{} for {} under {} (prefix {}); on the host it is installed on, run: sudo banger system setup --owner USER",
        BuildIdentity::current().version,
        managed_by,
        destdir.display(),
        prefix.display()
    );
    Ok(EXIT_OK)
}

/// `banger system setup`: the owner's files and the services of a packaged install.
pub async fn setup(owner: Option<String>) -> CmdResult {
    require_root("system setup")?;
    let src_dir = own_dir()?;
    let prefix = prefix_of_bin_dir(&src_dir).filter(|p| {
        Packaging::read(&p.join(PACKAGING_FILE))
            .ok()
            .flatten()
            .is_some()
    });
    let Some(prefix) = prefix else {
        return Err(anyhow::anyhow!(
            "this banger ({}) is not part of a packaged install (no {PACKAGING_FILE} under its prefix): \
             install it with: sudo banger system install; nothing was changed",
            src_dir.display()
        ).into());
    };
    let layout = Layout::packaged(&prefix);
    let package = Packaging::read(&layout.packaging_file())?.expect("checked above");
    let previous = match InstallMeta::read(&layout.install_toml()) {
        Ok(m) => Some(m),
        Err(banger_host::install::MetaError::Missing { .. }) => None,
        Err(e) => {
            eprintln!("banger: note: {e}; setting it up again");
            None
        }
    };
    if let Some(m) = &previous
        && (m.package.is_none() || Path::new(&m.prefix) != prefix)
    {
        return Err(anyhow::anyhow!(
                "banger v{} is already installed under {} by `banger system install`: remove it \
                 first (sudo {}/bin/banger system uninstall), then run setup again; nothing was changed",
                m.release.version,
                m.prefix,
                m.prefix
            ).into());
    }
    let owner = match (owner, &previous) {
        (Some(o), _) => resolve_owner(Some(o))?,
        (None, Some(m)) => resolve_owner(Some(m.owner.user.clone()))?,
        (None, None) => resolve_owner(None).map_err(|_| {
            anyhow::anyhow!(
                "name the owner: sudo banger system setup --owner USER (the user who will run VMs); nothing was changed"
            )
        })?,
    };
    let identity = check_program_set(&src_dir)?;
    configure(&layout, &owner, &identity, Some(package)).await?;
    println!(
        "set up banger v{} (commit {}) under {} for owner {}; services started: {} and {}",
        identity.version,
        identity.commit,
        prefix.display(),
        owner,
        names::ROOT_UNIT,
        names::DAEMON_UNIT
    );
    Ok(EXIT_OK)
}

/// Writes the files that name the owner and the install metadata, then (re)starts the
/// services: the end of both `install` and `setup`.
async fn configure(
    layout: &Layout,
    owner: &Owner,
    identity: &BuildIdentity,
    package: Option<Packaging>,
) -> anyhow::Result<()> {
    let rendered = ASSETS
        .iter()
        .filter(|a| a.owner)
        .map(|a| Ok((a.path(layout), a.render(layout, &owner.user)?)))
        .collect::<Result<Vec<_>, banger_host::assets::TemplateError>>()?;
    std::fs::create_dir_all(layout.etc_dir())
        .with_context(|| format!("creating {}", layout.etc_dir().display()))?;
    for (path, text) in rendered {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fsutil::atomic_write(&path, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let meta = InstallMeta {
        installed_at: time::rfc3339(time::unix_now()),
        prefix: layout.prefix.to_string_lossy().into(),
        owner: owner.clone(),
        release: identity.clone(),
        package,
    };
    meta.write(&layout.install_toml())
        .with_context(|| format!("writing {}", layout.install_toml().display()))?;
    // The install is whole again: backups an unfinished update left of these files are moot.
    for target in PROGRAMS
        .iter()
        .map(|p| layout.program(p))
        .chain([layout.install_toml()])
    {
        let mut backup = target.clone().into_os_string();
        backup.push(".previous");
        let backup = PathBuf::from(backup);
        if fsutil::remove_if_exists(&backup)
            .with_context(|| format!("removing {}", backup.display()))?
        {
            println!(
                "removed {}, left by an update that did not finish",
                backup.display()
            );
        }
    }

    // The owner's state directory exists before either service starts: bangerd-root's
    // sandbox only makes it writable (for VM logs) if it exists when the helper starts.
    let state = layout.state_dir();
    if !state.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&state)
            .and_then(|()| std::os::unix::fs::chown(&state, Some(owner.uid), Some(owner.gid)))
            .with_context(|| format!("creating {}", state.display()))?;
    }

    let conn = bus::system_bus().await?;
    reload_bus_config(&conn).await?;
    let systemd = Systemd::new(&conn).await?;
    systemd.reload().await?;
    systemd.enable(names::RESUME_UNIT).await.with_context(|| {
        format!(
            "enabling {} (it finishes an interrupted update at boot)",
            names::RESUME_UNIT
        )
    })?;
    for unit in [names::ROOT_UNIT, names::DAEMON_UNIT] {
        let state = systemd.unit_state(unit).await?;
        systemd.reset_failed(unit).await;
        let kind = if state.active_state == "active" {
            JobKind::Restart
        } else {
            JobKind::Start
        };
        systemd
            .run_job(kind, unit)
            .await
            .with_context(|| format!("starting {unit}; the files are installed, fix the cause and run: sudo banger system restart"))?;
    }
    Ok(())
}

/// Installs the Cockpit page built beside the binaries when Cockpit is on this host.
fn install_cockpit_page(src_dir: &Path, prefix: &Path) -> anyhow::Result<()> {
    let present = cockpit::cockpit_present();
    let dst = cockpit::page_dir(prefix);
    match cockpit::built_page(src_dir) {
        Some(src) if present => {
            // The rest of the install is written by now: a page that cannot be copied is
            // reported, not allowed to stop the services from being set up.
            if let Err(e) = cockpit::install(&src, &dst) {
                eprintln!(
                    "banger: warning: the Cockpit page was not installed in {}: {e}; everything else is",
                    dst.display()
                );
                return Ok(());
            }
            println!("installed the Cockpit page in {}", dst.display());
            if !cockpit::prefix_is_searched(prefix) {
                println!(
                    "note: Cockpit reads pages only under {}: link {} into one of them to see it",
                    cockpit::SEARCHED_PREFIXES
                        .map(|p| format!("{p}/share/cockpit"))
                        .join(" and "),
                    dst.display()
                );
            }
        }
        Some(_) => println!(
            "Cockpit is not installed: skipped the Cockpit page (install cockpit-ws and run this again to add it)"
        ),
        None if present => println!(
            "note: Cockpit is installed but no page was built beside this banger ({} is missing; make cockpit builds it)",
            src_dir
                .join(cockpit::BUILD_DIR)
                .join(cockpit::MANIFEST)
                .display()
        ),
        None => {}
    }
    Ok(())
}

fn link_cli(layout: &Layout) -> anyhow::Result<()> {
    let link = layout.cli_link();
    // Relative, so the link stays right if the prefix is moved or seen from a chroot.
    let target = Path::new("../lib/banger/bin/banger");
    let tmp = link.with_file_name(".banger.link-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .and_then(|()| std::fs::rename(&tmp, &link))
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

/// Reads install metadata, falling back to the default layout when it is unreadable.
fn installed_layout() -> (Layout, Option<InstallMeta>, Option<String>) {
    let path = Layout::new("/").install_toml();
    match InstallMeta::read(&path) {
        Ok(m) => (m.layout(), Some(m), None),
        Err(e) => (
            Layout::new(banger_host::install::DEFAULT_PREFIX),
            None,
            Some(e.to_string()),
        ),
    }
}

/// `banger system status`.
pub async fn status(json: bool) -> CmdResult {
    let (layout, meta, meta_err) = installed_layout();
    let conn = bus::system_bus().await?;
    let systemd = Systemd::new(&conn).await?;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
    let mut healthy = meta.is_some();
    let mut services = Vec::new();
    for (unit, name) in [
        (names::ROOT_UNIT, names::ROOT1_NAME),
        (names::DAEMON_UNIT, names::DAEMON1_NAME),
    ] {
        let s = systemd.unit_state(unit).await?;
        let owned = dbus
            .name_has_owner(name.try_into().expect("valid bus name"))
            .await
            .unwrap_or(false);
        healthy &= s.active_state == "active" && owned;
        services.push((unit, name, s, owned));
    }
    if json {
        let installed = meta.as_ref().map(|m| {
            serde_json::json!({
                "version": m.release.version,
                "commit": m.release.commit,
                "built_at": m.release.built_at,
                "prefix": layout.prefix,
                "owner": m.owner.user,
                "owner_uid": m.owner.uid,
                "installed_at": m.installed_at,
                "managed_by": m.package.as_ref().map(|p| &p.manager),
            })
        });
        let services: Vec<serde_json::Value> = services
            .iter()
            .map(|(unit, name, s, owned)| {
                serde_json::json!({
                    "unit": unit,
                    "active_state": s.active_state,
                    "sub_state": s.sub_state,
                    "main_pid": s.main_pid,
                    "bus_name": name,
                    "bus_name_owned": owned,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "format_version": super::output::JSON_FORMAT_VERSION,
                "installed": installed,
                "install_error": meta_err.as_ref().map(|e| e.to_string()),
                "services": services,
                "healthy": healthy,
            })
        );
    } else {
        match (&meta, &meta_err) {
            (Some(m), _) => {
                println!(
                    "installed: banger v{} (commit {}, built {}) under {}",
                    m.release.version,
                    m.release.commit,
                    m.release.built_at,
                    layout.prefix.display()
                );
                println!("owner: {}", m.owner);
                println!("installed at: {}", m.installed_at);
                if let Some(p) = &m.package {
                    println!("managed by: {} (update with: {})", p.manager, p.upgrade);
                }
            }
            (None, Some(e)) => println!("installed: unknown ({e})"),
            (None, None) => {}
        }
        for (unit, name, s, owned) in &services {
            println!(
                "{unit}: {} ({}), pid {}, {name} {}",
                s.active_state,
                s.sub_state,
                s.main_pid,
                if *owned { "owned" } else { "not owned" }
            );
        }
    }
    Ok(if healthy { EXIT_OK } else { EXIT_FAILED })
}

/// `banger system restart`.
pub async fn restart() -> CmdResult {
    require_root("system restart")?;
    let conn = bus::system_bus().await?;
    let systemd = Systemd::new(&conn).await?;
    for unit in [names::ROOT_UNIT, names::DAEMON_UNIT] {
        systemd.reset_failed(unit).await;
        systemd.run_job(JobKind::Restart, unit).await?;
        println!("restarted {unit}");
    }
    Ok(EXIT_OK)
}

/// `banger system uninstall [--purge]`.
/// Before the services go: every VM unit is stopped and its tap removed by the helper (while it
/// is still installed). Refused, with nothing changed, while VMs run and `stop_vms` is not given.
async fn stop_vm_units(
    conn: &zbus::Connection,
    systemd: &Systemd,
    stop_vms: bool,
) -> anyhow::Result<()> {
    let units = systemd
        .units_matching(names::VM_UNIT_PATTERN)
        .await
        .context("listing VM units; nothing was removed")?;
    let running: Vec<&str> = units
        .iter()
        .filter(|(_, state)| !matches!(state.as_str(), "inactive" | "failed"))
        .map(|(u, _)| u.as_str())
        .collect();
    if !running.is_empty() && !stop_vms {
        if let Some(package) = dpkg_maintainer_script() {
            bail!(
                "{} VM(s) still running ({}): removing {package} would leave them without \
                 their services; stop them first (banger vm stop NAME, as their owner), then \
                 remove the package again; nothing was removed",
                running.len(),
                running.join(", ")
            );
        }
        bail!(
            "{} VM(s) still running ({}): stop them first (banger vm stop NAME, as their \
             owner) or pass --stop-vms to stop them now; nothing was removed",
            running.len(),
            running.join(", ")
        );
    }
    if units.is_empty() {
        return Ok(());
    }
    let root = banger_api::proxies::Root1Proxy::new(conn).await?;
    for (unit, _) in &units {
        let Some(id) = unit
            .strip_prefix("banger-vm-")
            .and_then(|u| u.strip_suffix(".service"))
        else {
            continue;
        };
        root.stop_vmm(id).await.map_err(|e| {
            anyhow::anyhow!(
                "stopping {unit}: {}; nothing was removed",
                bus::message_of(&e)
            )
        })?;
        println!("stopped {unit} and removed its tap");
    }
    Ok(())
}

/// The package whose maintainer script runs this banger, if dpkg runs it.
fn dpkg_maintainer_script() -> Option<String> {
    std::env::var("DPKG_MAINTSCRIPT_PACKAGE")
        .ok()
        .filter(|p| !p.is_empty())
}

/// Removes the VM bridge if bangerd-root created it (it carries [`names::BRIDGE_ALIAS`]) and
/// nothing is attached to it any more. Returns its name when it was removed.
fn remove_own_bridge(layout: &Layout, errors: &mut Vec<String>) -> Option<String> {
    let bridge = configured_bridge(&layout.etc_dir().join("config.toml"));
    let sys = Path::new("/sys/class/net").join(&bridge);
    let alias = std::fs::read_to_string(sys.join("ifalias")).ok()?;
    if alias.trim_end() != names::BRIDGE_ALIAS {
        return None;
    }
    let ports = std::fs::read_dir(sys.join("brif"))
        .map(|d| d.count())
        .unwrap_or(0);
    if ports > 0 {
        println!("kept bridge {bridge}: {ports} interface(s) are still attached to it");
        return None;
    }
    match std::process::Command::new("ip")
        .args(["link", "delete", "dev", &bridge])
        .output()
    {
        Ok(o) if o.status.success() => Some(bridge),
        Ok(o) => {
            errors.push(format!(
                "removing bridge {bridge}: ip link delete: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            None
        }
        Err(e) => {
            errors.push(format!("removing bridge {bridge}: running ip: {e}"));
            None
        }
    }
}

/// `[network] bridge` from the helper's configuration, or its default.
fn configured_bridge(config: &Path) -> String {
    std::fs::read_to_string(config)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("network")?
                .get("bridge")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| names::DEFAULT_BRIDGE.to_string())
}

pub async fn uninstall(purge: bool, stop_vms: bool) -> CmdResult {
    require_root("system uninstall")?;
    let (layout, meta, meta_err) = installed_layout();
    let mut package_note = None;
    if let Some(e) = meta_err {
        eprintln!(
            "banger: note: {e}; removing the default layout under {}",
            layout.prefix.display()
        );
    }
    let conn = bus::system_bus().await?;
    let systemd = Systemd::new(&conn).await?;
    stop_vm_units(&conn, &systemd, stop_vms).await?;
    // The daemon first, so it never runs without its helper.
    for unit in [names::DAEMON_UNIT, names::ROOT_UNIT] {
        let s = systemd.unit_state(unit).await?;
        if s.load_state == "loaded" && s.active_state != "inactive" {
            systemd
                .run_job(JobKind::Stop, unit)
                .await
                .with_context(|| format!("stopping {unit}; nothing was removed"))?;
            println!("stopped {unit}");
        }
        systemd.reset_failed(unit).await;
    }
    let mut errors = Vec::new();
    if let Err(e) = systemd.disable(names::RESUME_UNIT).await {
        errors.push(format!("disabling {}: {e}", names::RESUME_UNIT));
    }
    let mut removed = Vec::new();
    let mut remove = |p: PathBuf| match fsutil::remove_if_exists(&p) {
        Ok(true) => removed.push(p),
        Ok(false) => {}
        Err(e) => errors.push(format!("removing {}: {e}", p.display())),
    };
    if let Some(p) = meta.as_ref().and_then(|m| m.package.as_ref()) {
        // The package manager's files are its own to remove; only what setup wrote goes,
        // and (like the package's configuration) only on a purge.
        if purge {
            for asset in ASSETS.iter().filter(|a| a.owner) {
                remove(asset.path(&layout));
            }
            let _ = std::fs::remove_dir(
                layout
                    .admin_unit_dir()
                    .join(format!("{}.d", names::DAEMON_UNIT)),
            );
        }
        package_note = Some(format!(
            "the files of the package stay for {}: {}",
            p.manager, p.remove
        ));
    } else {
        for asset in ASSETS {
            remove(asset.path(&layout));
        }
        let _ = std::fs::remove_dir(
            layout
                .admin_unit_dir()
                .join(format!("{}.d", names::DAEMON_UNIT)),
        );
        for (path, _) in super::generated::doc_files(&layout, &super::Cli::command()) {
            remove(path);
        }
        if std::fs::read_link(layout.cli_link()).is_ok() {
            remove(layout.cli_link());
        }
        for program in PROGRAMS {
            remove(layout.program(program));
        }
        remove(layout.install_toml());
        let page = cockpit::page_dir(&layout.prefix);
        match cockpit::remove(&page) {
            Ok(true) => removed.push(page),
            Ok(false) => {}
            Err(e) => errors.push(format!("removing {}: {e}", page.display())),
        }
        for dir in [
            layout.bin_dir(),
            layout.prefix.join("lib/banger"),
            layout.share_dir(),
        ] {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    systemd.reload().await?;
    reload_bus_config(&conn).await?;
    if let Some(bridge) = remove_own_bridge(&layout, &mut errors) {
        removed.push(PathBuf::from(format!("bridge {bridge}")));
    }
    // The helper releases outbound network when the last VM stops; this finds anything a
    // helper that could not do so left.
    let nft = banger_host::virt::find_program(banger_host::nat::NFT_PROGRAM);
    match banger_host::nat::release(nft.as_deref(), Path::new(banger_host::nat::RECORD)) {
        Ok(done) => {
            if done.table {
                removed.push(PathBuf::from(format!(
                    "nftables table {} {}",
                    banger_host::nat::FAMILY,
                    banger_host::nat::TABLE
                )));
            }
            for p in done.restored {
                println!("restored {} to its value before banger", p.display());
            }
        }
        Err(e) => errors.push(format!("releasing outbound network: {e}")),
    }
    for p in &removed {
        println!("removed {}", p.display());
    }
    if purge {
        for dir in [layout.state_dir(), layout.etc_dir()] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => println!("purged {}", dir.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("purging {}: {e}", dir.display())),
            }
        }
    } else {
        println!(
            "kept {} (VM records and images) and {}: remove them with --purge",
            layout.state_dir().display(),
            layout.etc_dir().display()
        );
    }
    if let Some(note) = package_note
        && errors.is_empty()
    {
        match dpkg_maintainer_script() {
            Some(_) => println!("banger's services are stopped"),
            None => println!("banger's services are stopped; {note}"),
        }
        return Ok(EXIT_OK);
    }
    if errors.is_empty() {
        println!("banger is uninstalled");
        Ok(EXIT_OK)
    } else {
        for e in &errors {
            eprintln!("banger: {e}");
        }
        Ok(EXIT_FAILED)
    }
}
