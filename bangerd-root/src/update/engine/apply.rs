//! From the point of no return on: swap the files, restart the daemon and the helper, judge the
//! new install by its doctor, then finalize, or roll back to the previous install. Driven by
//! the journal's phase, so that the same code resumes after a helper restart or a kill.

use super::*;

impl Engine {
    /// Shows the stage of `phase` on the job.
    pub(super) async fn announce(handle: &JobHandle, phase: Phase) {
        let (stage, progress) = phase.stage();
        handle.stage(stage, progress).await;
    }

    /// Announces and records `phase`. A step whose phase could not be recorded is taken only
    /// when resuming from what the journal does record would take it too (rolling back, when
    /// the journal already says the update is being undone); otherwise the update stops here,
    /// and `false` is returned: the journal stays at the last phase it records, which the next
    /// start of the helper resumes from.
    pub(super) async fn enter(&self, handle: &JobHandle, j: &mut Journal, phase: Phase) -> bool {
        Self::announce(handle, phase).await;
        let recorded = j.phase;
        match self.checkpoint(j, phase).await {
            Ok(()) => true,
            Err(_) if phase.undoes() && recorded.resumes_as().undoes() => {
                tracing::warn!(
                    "could not record phase {} in the update journal; going on, as the recorded \
                     phase {} also leads there",
                    phase.as_str(),
                    recorded.as_str()
                );
                j.phase = phase;
                true
            }
            Err(e) => {
                let msg = format!(
                    "the update journal could not be written ({e}), so the update stopped before \
                     {}: the journal still records {}, and the next start of bangerd-root takes it \
                     on from there (make room on the disk, then: sudo banger system restart)",
                    phase.as_str(),
                    recorded.as_str()
                );
                tracing::error!("{msg}");
                let cause = j
                    .error
                    .clone()
                    .map(|c| format!("{c}; "))
                    .unwrap_or_default();
                self.announce_end(handle, JobResult::Failed, &format!("{cause}{msg}"))
                    .await;
                false
            }
        }
    }

    /// Runs the journal to its end from wherever it stands.
    pub(super) async fn drive(&self, handle: &Arc<JobHandle>, j: &mut Journal) {
        let mut phase = j.phase;
        if phase == Phase::Preparing {
            // Nothing has changed yet: the marker that makes a boot finish an interrupted
            // update, then the journal, are written before the first file is touched.
            let marked = write_pending_marker(&self.paths.pending_marker, j.job_id);
            let recorded = match marked {
                Ok(()) => {
                    Self::announce(handle, Phase::Swapping).await;
                    self.checkpoint(j, Phase::Swapping).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                self.cleanup_staging(j);
                let _ = banger_host::fsutil::remove_if_exists(&self.paths.pending_marker);
                self.finish(
                    handle,
                    j,
                    JobResult::Failed,
                    &format!("recording the update before its first change failed: {e}"),
                )
                .await;
                return;
            }
            phase = Phase::Swapping;
        } else if phase != Phase::Done && !self.enter(handle, j, phase).await {
            return;
        }
        loop {
            match phase {
                Phase::Preparing => unreachable!("mapped above"),
                Phase::Swapping => {
                    let mut failed = None;
                    for item in j.items.clone() {
                        if !j.touched.contains(&item.target) {
                            j.touched.push(item.target.clone());
                            if let Err(e) = self.record(j).await {
                                // Its backup is not recorded, so it is not made: undo the
                                // others (resuming from the journal would do the same).
                                j.touched.pop();
                                failed = Some(format!("recording it in the update journal: {e}"));
                                break;
                            }
                        }
                        if let Err(e) = journal::swap_one(&item) {
                            failed = Some(e);
                            break;
                        }
                    }
                    phase = match failed {
                        Some(e) => {
                            j.error = Some(format!("swapping files failed: {e}"));
                            Phase::RollingBack
                        }
                        None => Phase::RestartingDaemon,
                    };
                }
                Phase::RestartingDaemon => {
                    phase = match self.restart_daemon().await {
                        Ok(()) => Phase::RestartingHelper,
                        Err(e) => {
                            j.error = Some(format!("the new bangerd did not come up: {e}"));
                            Phase::RollingBack
                        }
                    };
                }
                Phase::RestartingHelper => {
                    // Hand over to the new binary, which resumes from the journal at
                    // `verifying` (see `resume`): this process does not come back here.
                    match self
                        .systemd
                        .queue_job(JobKind::Restart, names::ROOT_UNIT)
                        .await
                    {
                        Ok(()) => {
                            tracing::info!("restarting bangerd-root onto the new binary");
                            std::future::pending::<()>().await;
                        }
                        Err(e) => {
                            j.error = Some(format!("restarting bangerd-root failed: {e}"));
                            phase = Phase::RollingBack;
                        }
                    }
                }
                Phase::Verifying => {
                    phase = match self.run_doctor(j).await {
                        Ok(()) => Phase::Finalizing,
                        Err(e) => {
                            j.error = Some(format!("the new install is unhealthy: {e}"));
                            Phase::RollingBack
                        }
                    };
                }
                Phase::Finalizing => {
                    let errors = journal::drop_backups(&j.items);
                    self.cleanup_staging(j);
                    if let Some(t) = &j.target
                        && let (Ok(mut state), Ok(v)) = (
                            HelperState::load(&self.paths.state),
                            Version::parse(&t.version),
                        )
                    {
                        state.raise(&v);
                        let _ = state.save(&self.paths.state);
                    }
                    let note = if errors.is_empty() {
                        String::new()
                    } else {
                        format!("updated, but cleaning up failed: {}", errors.join("; "))
                    };
                    self.finish(handle, j, JobResult::Updated, &note).await;
                    return;
                }
                Phase::RollingBack => {
                    let mut errors = journal::restore(&j.items, &j.touched);
                    errors.extend(self.restore_store(j).await);
                    self.cleanup_staging(j);
                    if !errors.is_empty() {
                        let cause = j.error.clone().unwrap_or_default();
                        let msg = format!(
                            "{cause}; ROLLBACK INCOMPLETE: {}; the install may be mixed: reinstall with sudo banger system install",
                            errors.join("; ")
                        );
                        self.finish(handle, j, JobResult::Failed, &msg).await;
                        return;
                    }
                    if let Err(e) = self.restart_daemon().await {
                        let cause = j.error.clone().unwrap_or_default();
                        j.error = Some(format!(
                            "{cause}; the old bangerd did not come back either: {e}"
                        ));
                    }
                    phase = Phase::RollbackRestartingHelper;
                }
                Phase::RollbackRestartingHelper => {
                    if BuildIdentity::current() != j.from && !self.recovering {
                        Self::announce(handle, Phase::RestartingHelper).await;
                        // The new helper is running: hand back to the restored old binary.
                        if self
                            .systemd
                            .queue_job(JobKind::Restart, names::ROOT_UNIT)
                            .await
                            .is_ok()
                        {
                            std::future::pending::<()>().await;
                        }
                    }
                    let err = j.error.clone().unwrap_or_default();
                    self.finish(handle, j, JobResult::RolledBack, &err).await;
                    return;
                }
                Phase::Done => {
                    // Recorded (and logged) by whoever ended it: only announced again here.
                    let err = j.error.clone().unwrap_or_default();
                    handle.finish_again(j.ended(), &err).await;
                    return;
                }
            }
            if !matches!(phase, Phase::Done) && !self.enter(handle, j, phase).await {
                return;
            }
        }
    }

    /// Puts back the copy of the store taken before a new bangerd migrated it, if there is one
    /// (the changes the new bangerd made since the swap are given up with it). bangerd is stopped
    /// first, so that no daemon writes to the store being replaced, or leaves a journal of it
    /// behind. Idempotent: once restored, the copy is gone. Returns what went wrong.
    pub(super) async fn restore_store(&self, j: &Journal) -> Vec<String> {
        let Some(snap) = j.store_snapshot.clone().filter(|s| s.exists()) else {
            return Vec::new();
        };
        if let Err(e) = self
            .systemd
            .run_job(JobKind::Stop, names::DAEMON_UNIT)
            .await
        {
            return vec![format!(
                "stopping bangerd before restoring the store failed ({e}), so the store was not \
                 restored from {}",
                snap.display()
            )];
        }
        match journal::restore_store(&snap, &self.layout.store()) {
            Ok(()) => {
                tracing::info!(snapshot = %snap.display(), "bangerd stopped; store restored");
                Vec::new()
            }
            Err(e) => vec![e],
        }
    }

    pub(super) async fn restart_daemon(&self) -> Result<(), String> {
        self.systemd.reset_failed(names::DAEMON_UNIT).await;
        self.systemd
            .run_job(JobKind::Restart, names::DAEMON_UNIT)
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..100 {
            if self.daemon.ready().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("bangerd did not report Ready within 10 s".into())
    }

    /// Runs `banger doctor` with a time limit.
    pub(super) async fn doctor(banger: &Path) -> Result<std::process::Output, String> {
        tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(banger)
                .arg("doctor")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| format!("{} doctor did not finish within 120 s", banger.display()))?
        .map_err(|e| format!("running {} doctor: {e}", banger.display()))
    }

    /// The checks the installed doctor reports failing now (none if it cannot be run: then
    /// the new install is judged strictly).
    pub(super) async fn failing_checks_now(&self, banger: &Path) -> Vec<String> {
        match Self::doctor(banger).await {
            Ok(out) => failing_checks(&String::from_utf8_lossy(&out.stdout))
                .into_iter()
                .map(|(name, line)| {
                    tracing::warn!("before the update: {line}");
                    name.to_string()
                })
                .collect(),
            Err(e) => {
                tracing::warn!("{e}");
                Vec::new()
            }
        }
    }

    pub(super) async fn run_doctor(&self, j: &Journal) -> Result<(), String> {
        let banger = j
            .items
            .iter()
            .map(|i| i.target.clone())
            .find(|t| t.file_name().is_some_and(|n| n == "banger"))
            .ok_or("the journal names no banger binary")?;
        let out = Self::doctor(&banger).await?;
        judge_doctor(
            &j.failing_before,
            out.status.success(),
            &String::from_utf8_lossy(&out.stdout),
        )
    }
}

/// `banger doctor`'s FAIL lines, with each check's name.
pub(super) fn failing_checks(stdout: &str) -> Vec<(&str, &str)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("FAIL ")?;
            Some((rest.split_once(':').map_or(rest, |(name, _)| name), l))
        })
        .collect()
}

/// Whether the doctor after an update passes: no check fails that did not fail before it.
/// Already-failing checks are logged, not blamed on the release.
pub(super) fn judge_doctor(
    failing_before: &[String],
    success: bool,
    stdout: &str,
) -> Result<(), String> {
    if success {
        return Ok(());
    }
    let all = failing_checks(stdout);
    if all.is_empty() {
        return Err(format!(
            "banger doctor failed without saying which check: {}",
            stdout.trim()
        ));
    }
    let (known, new): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(name, _)| failing_before.iter().any(|b| b == name));
    for (_, line) in &known {
        tracing::warn!("still failing, as before the update: {line}");
    }
    if new.is_empty() {
        Ok(())
    } else {
        Err(new
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: &str = "PASS install.toml: v0.2.0\n\
        FAIL vm backend: no VMM installed: install qemu-system-x86\n\
        WARN accelerator: tcg\n\
        FAIL tun device: /dev/net/tun has mode 0600\n";

    #[test]
    fn doctor_lines_name_their_checks() {
        assert_eq!(
            failing_checks(AFTER)
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>(),
            ["vm backend", "tun device"]
        );
    }

    #[test]
    fn checks_failing_before_the_update_are_not_blamed_on_it() {
        let before = ["vm backend".to_string(), "tun device".to_string()];
        assert_eq!(judge_doctor(&before, false, AFTER), Ok(()));
        assert_eq!(judge_doctor(&[], true, ""), Ok(()));
    }

    #[test]
    fn a_check_the_release_broke_rolls_it_back() {
        let e = judge_doctor(&["vm backend".to_string()], false, AFTER).unwrap_err();
        assert_eq!(e, "FAIL tun device: /dev/net/tun has mode 0600");
        let e = judge_doctor(&[], false, AFTER).unwrap_err();
        assert!(e.contains("vm backend") && e.contains("tun device"), "{e}");
    }

    #[test]
    fn a_doctor_that_fails_without_a_fail_line_rolls_it_back() {
        let before = ["vm backend".to_string()];
        let e = judge_doctor(&before, false, "thread 'main' panicked\n").unwrap_err();
        assert!(e.contains("without saying which check"), "{e}");
    }
}
