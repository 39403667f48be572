//! Before the point of no return: choose the release (manifest), download and verify it,
//! stage it next to the install, run the staged programs once, wait for the owner's
//! operations, and lay out the swap in the journal. A failure here changes nothing on the
//! install: it ends the job `failed` (or `canceled`).

use super::*;

impl Engine {
    pub(super) fn check_cancel(handle: &JobHandle) -> Result<(), Refused> {
        if handle.cancel.load(Ordering::SeqCst) {
            Err(Refused("canceled".into()))
        } else {
            Ok(())
        }
    }

    pub(super) async fn prepare(
        &self,
        handle: &Arc<JobHandle>,
        opts: &UpdateOptions,
        j: &mut Journal,
    ) -> Result<Outcome, Refused> {
        handle.stage(Stage::Checking, 0.02).await;
        let meta = InstallMeta::read_trusted(&self.layout.install_toml())?;
        let installed = Version::parse(&meta.release.version).map_err(Refused)?;
        let cfg = UpdateConfig::load(&self.paths.config)?;
        cfg.keys.require_some()?;
        let vm = fetch_manifest(&cfg).await?;
        let mut state = HelperState::load(&self.paths.state)?;
        if vm.issued_at < state.newest_manifest_issued_at {
            return Err(Refused(format!(
                "the release manifest was issued at {}, before one this host already verified ({}): refusing a replayed older manifest",
                vm.manifest.issued_at,
                banger_api::time::rfc3339(state.newest_manifest_issued_at)
            )));
        }
        state.newest_manifest_issued_at = vm.issued_at;
        state.save(&self.paths.state)?;
        let target = match &opts.version {
            Some(v) => Version::parse(v).map_err(Refused)?,
            None => vm.latest.clone(),
        };
        handle
            .update(|s| s.target_version = target.to_string())
            .await;
        let entry = vm.find(&target)?.clone();
        if target == installed && !opts.force {
            return Ok(Outcome::Finished {
                result: JobResult::UpToDate,
                message: String::new(),
            });
        }
        let floor = match state.highest() {
            Some(h) if h > installed => h,
            _ => installed.clone(),
        };
        if target < floor && !opts.allow_downgrade {
            return Err(Refused(format!(
                "v{target} is older than v{floor} (installed on or verified by this host): refusing to go back (anti-rollback); ask for a downgrade explicitly (--allow-downgrade)"
            )));
        }
        if entry.size > cfg.max_download_bytes {
            return Err(Refused(format!(
                "the v{target} tarball is {} bytes, over the configured limit of {} bytes",
                entry.size, cfg.max_download_bytes
            )));
        }
        Self::check_cancel(handle)?;

        handle.stage(Stage::Downloading, 0.05).await;
        handle.update(|s| s.bytes_total = entry.size).await;
        let sums_url = cfg.resolve(&entry.sums).map_err(Refused)?;
        let sig_url = cfg.resolve(&entry.sums_sig).map_err(Refused)?;
        let tar_url = cfg.resolve(&entry.tarball).map_err(Refused)?;
        let fetcher = Arc::new(Fetcher::new(&cfg.fetch_limits()));
        let (sums, sums_sig) = {
            let f = fetcher.clone();
            let (a, b) = (sums_url.clone(), sig_url.clone());
            blocking(move || {
                Ok::<_, DownloadError>((f.fetch_small(&a, SUMS_CAP)?, f.fetch_small(&b, SIG_CAP)?))
            })
            .await?
        };
        verify_signature(
            &cfg.keys,
            &format!("SHA256SUMS of v{target}"),
            &sums,
            &sums_sig,
        )?;
        let want = Sha256Sums::parse(&sums)?.digest_of(&tarball_name(&target))?;

        let _ = std::fs::remove_dir_all(&j.staging);
        std::fs::create_dir_all(j.staging.join("bin"))
            .map_err(|e| Refused(format!("creating {}: {e}", j.staging.display())))?;
        let tarball = j.staging.join(tarball_name(&target));
        let fetched = {
            let f = fetcher.clone();
            let h = handle.clone();
            let rt = tokio::runtime::Handle::current();
            let path = tarball.clone();
            let (size, cap) = (entry.size, cfg.max_download_bytes);
            blocking(move || {
                let mut last = std::time::Instant::now();
                f.fetch_to_file(&tar_url, size, cap, &path, &h.cancel, &mut |done| {
                    if last.elapsed() > Duration::from_millis(100) || done == size {
                        last = std::time::Instant::now();
                        let progress = 0.05 + 0.65 * (done as f64 / size.max(1) as f64);
                        let h = h.clone();
                        rt.spawn(async move {
                            h.update(|s| {
                                s.bytes_done = done;
                                s.progress = progress;
                            })
                            .await
                        });
                    }
                })
            })
            .await?
        };
        handle.update(|s| s.bytes_done = fetched.bytes).await;
        Self::check_cancel(handle)?;

        handle.stage(Stage::Verifying, 0.72).await;
        if fetched.sha256 != want {
            return Err(Refused(format!(
                "{} does not match SHA256SUMS: got {}, signed {}",
                tarball_name(&target),
                to_hex(&fetched.sha256),
                to_hex(&want)
            )));
        }

        handle.stage(Stage::Staging, 0.75).await;
        {
            let (t, d) = (tarball.clone(), j.staging.join("bin"));
            blocking(move || stage::extract(&t, &d)).await?;
        }
        let _ = std::fs::remove_file(&tarball);

        handle.stage(Stage::SanityCheck, 0.8).await;
        let (identity, migrates) =
            sanity_check(&j.staging.join("bin"), &target, &meta.owner).await?;
        state.raise(&target);
        state.save(&self.paths.state)?;
        handle
            .update(|s| s.target_version = identity.version.clone())
            .await;
        if opts.dry_run {
            return Ok(Outcome::Finished {
                result: JobResult::DryRun,
                message: String::new(),
            });
        }
        Self::check_cancel(handle)?;

        handle.stage(Stage::WaitingForOperations, 0.82).await;
        if !opts.force {
            let busy = self.operations_in_flight().await?;
            if !busy.is_empty() {
                return Err(Refused(format!(
                    "bangerd has operations in flight: {}; wait for them or use --force",
                    busy.join(", ")
                )));
            }
        }
        Self::check_cancel(handle)?;

        // What is already broken on this host (say, no VMM installed) is not the new release's
        // fault: the doctor after the swap is judged against this.
        j.failing_before = self
            .failing_checks_now(&self.installed_layout(&meta).program("banger"))
            .await;

        // A new bangerd that migrates the store would leave one the old bangerd refuses after a
        // rollback: keep a copy, made by the installed (old) bangerd, to restore then.
        let live_store = self.layout.store();
        if migrates && live_store.exists() {
            let snap = live_store.with_file_name("banger.db.pre-update");
            let _ = std::fs::remove_file(&snap);
            let old_bangerd = self.installed_layout(&meta).program("bangerd");
            let arg = snap.to_string_lossy().to_string();
            // As the owner: the directory is theirs, so root must not write or chown there.
            let out = run_with_timeout(
                &old_bangerd,
                &["--system", "--snapshot-store", &arg],
                Some(&meta.owner),
            )
            .await?;
            if !out.status.success() {
                let _ = std::fs::remove_file(&snap);
                return Err(Refused(format!(
                    "copying the store before the update failed: {}",
                    String::from_utf8_lossy(&out.stdout).trim()
                )));
            }
            j.store_snapshot = Some(snap);
        }

        // The new install metadata, from the new binary's own identity.
        let new_meta = InstallMeta {
            installed_at: banger_api::time::rfc3339(unix_now()),
            release: identity.clone(),
            ..meta.clone()
        };
        let staged_meta = self.staged_install_toml(j.job_id);
        new_meta
            .write(&staged_meta)
            .map_err(|e| Refused(format!("writing {}: {e}", staged_meta.display())))?;
        let mut items: Vec<SwapItem> = PROGRAMS
            .iter()
            .map(|p| SwapItem {
                target: self.installed_layout(&meta).program(p),
                staged: j.staging.join("bin").join(p),
            })
            .collect();
        items.push(SwapItem {
            target: self.layout.install_toml(),
            staged: staged_meta,
        });
        journal::clear_stale_backups(&items).map_err(Refused)?;
        j.target = Some(identity);
        j.items = items;
        Ok(Outcome::Apply(Box::new(j.clone())))
    }

    pub(super) async fn operations_in_flight(&self) -> Result<Vec<String>, Refused> {
        match self.daemon.operations().await {
            Ok(ops) => Ok(ops
                .into_iter()
                .filter(|o| !o.done)
                .map(|o| format!("{} ({}, {})", o.id, o.kind, o.stage))
                .collect()),
            Err(e) => Err(Refused(format!(
                "cannot ask bangerd for operations in flight ({e}); use --force to update anyway"
            ))),
        }
    }
}

pub(super) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Refused>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| Refused(e.to_string())),
        Err(e) => Err(Refused(format!("internal task failed: {e}"))),
    }
}

/// Downloads the manifest and its signature (not verified yet).
pub(super) async fn fetch_manifest_bytes(cfg: UpdateConfig) -> ManifestBytes {
    let fetcher = Fetcher::new(&cfg.fetch_limits());
    let url = cfg.manifest_url;
    blocking(move || {
        Ok::<_, DownloadError>((
            Arc::new(fetcher.fetch_small(&url, MANIFEST_CAP)?),
            Arc::new(fetcher.fetch_small(&format!("{url}.sig"), SIG_CAP)?),
        ))
    })
    .await
    .map_err(|Refused(m)| m)
}

pub(super) async fn fetch_manifest(
    cfg: &UpdateConfig,
) -> Result<banger_release::manifest::VerifiedManifest, Refused> {
    cfg.keys.require_some()?;
    let (bytes, sig) = fetch_manifest_bytes(cfg.clone()).await.map_err(Refused)?;
    Ok(Manifest::verify(
        &bytes,
        &sig,
        &cfg.keys,
        &cfg.channel,
        unix_now(),
    )?)
}

/// Runs the staged binaries: each must report `target`, all the same build, and the staged
/// bangerd must accept the live store.
/// Returns the staged build's identity and whether its bangerd will migrate the store.
/// The store is read as its owner, never as root.
pub(super) async fn sanity_check(
    dir: &Path,
    target: &Version,
    owner: &Owner,
) -> Result<(BuildIdentity, bool), Refused> {
    let mut identity: Option<BuildIdentity> = None;
    for program in PROGRAMS {
        let path = dir.join(program);
        let out = run_with_timeout(&path, &["--version"], None).await?;
        let id = BuildIdentity::parse_version_line(program, &String::from_utf8_lossy(&out.stdout))
            .map_err(|e| Refused(format!("staged {program} --version: {e}")))?;
        if Version::parse(&id.version).as_ref() != Ok(target) {
            return Err(Refused(format!(
                "staged {program} reports v{}, but the signed release is v{target}",
                id.version
            )));
        }
        match &identity {
            Some(first) if *first != id => {
                return Err(Refused(format!(
                    "the staged binaries are from different builds ({program}: commit {}, built {}; others: commit {}, built {})",
                    id.commit, id.built_at, first.commit, first.built_at
                )));
            }
            _ => identity = Some(id),
        }
    }
    let identity = identity.expect("three programs checked");
    // A helper that cannot start would leave an install nothing can roll back: the old helper
    // hands over and exits. So it must show it starts before anything is swapped.
    crate::selftest::check_staged_helper(&dir.join("bangerd-root"), &identity.version)
        .await
        .map_err(|e| {
            Refused(format!(
                "{e}; refusing to install a helper that cannot start"
            ))
        })?;
    let mut migrates = false;
    let out = run_with_timeout(
        &dir.join("bangerd"),
        &["--check-migrations", "--system"],
        Some(owner),
    )
    .await?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) => {}
        Some(1) => migrates = true,
        Some(2) => {
            return Err(Refused(format!(
                "the new bangerd refuses the store: {line}"
            )));
        }
        _ => {
            return Err(Refused(format!(
                "staged bangerd --check-migrations failed ({}): {line}",
                out.status
            )));
        }
    }
    Ok((identity, migrates))
}

/// Runs `path args`, as `as_user` when given (else as root), for at most 20 s.
pub(super) async fn run_with_timeout(
    path: &Path,
    args: &[&str],
    as_user: Option<&Owner>,
) -> Result<std::process::Output, Refused> {
    // A binary just staged can be "busy" for a moment: a process this helper forked meanwhile
    // (`ip`, `nft`) holds the descriptor it was written through until it execs. Retried, 20
    // times 50 ms apart.
    let mut busy = 0;
    loop {
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(args).kill_on_drop(true);
        if let Some(o) = as_user {
            cmd.uid(o.uid)
                .gid(o.gid)
                .env("HOME", &o.home)
                .env("USER", &o.user);
            // The standard library drops root's supplementary groups before setuid.
        }
        let ran = tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .map_err(|_| {
                Refused(format!(
                    "{} {} did not finish within 20 s",
                    path.display(),
                    args.join(" ")
                ))
            })?;
        match ran {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && busy < 20 => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => {
                return other.map_err(|e| Refused(format!("running {}: {e}", path.display())));
            }
        }
    }
}
