#!/usr/bin/env bash
# A release whose bangerd-root cannot start never leaves the host on it.
# (a) 0.2.3's helper answers --version and nothing else: the staged helper's self-test (serve
#     Root1 on a socket pair, answer Version) fails before anything is swapped: the update ends
#     failed, nothing changed, the old helper runs, and the next update works.
# (b) 0.2.4's helper passes the self-test but cannot run as the service: the old helper hands
#     over, systemd restarts the new one until it gives up, bangerd-root.service fails, its
#     OnFailure= starts bangerd-root-recover.service, which runs the previous helper
#     (bangerd-root.previous --recover): the update is rolled back from the journal and the old
#     helper starts again. The job ends rolled-back (exit 4 for the CLI that followed it), and the
#     next update works.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start helper-broken
base=$(release_base_version)
snapshot_install before

# --- (a) refused by the self-test --------------------------------------------------------------
pid=$(main_pid bangerd-root.service)
run_capture box_exec "$BANGER" update
expect_update_end 1 "^update failed: the staged bangerd-root cannot start: its self-test exited with exit status: 1; it said: .*refusing to install a helper that cannot start; nothing was changed$" \
    "banger update to 0.2.3 (a helper that cannot start)"
expect_contains "$LAST_OUT" "this build cannot start" "what the staged helper said"
refused=$(last_line "$LAST_OUT")
snapshot_install after
expect_same_snapshot before after "after the refused update to 0.2.3" "$BANGER_STORE"
expect_install_is "$base" "after the refused update to 0.2.3"
expect_eq "$(main_pid bangerd-root.service)" "$pid" "the helper's MainPID"
proved "0.2.3's helper fails its self-test before the swap: '$refused'; the install is byte-identical and the old helper (pid $pid) runs on"

# --- (b) rolled back by the recovery unit ------------------------------------------------------
release_config helper-unstartable
release_resign helper-unstartable
t0=$SECONDS
run_capture box_exec timeout 240 "$BANGER" update
took=$((SECONDS - t0))
expect_update_end 4 "\(rolled back to previous install\)$" "banger update to 0.2.4 (a helper that cannot run as the service)"
expect_contains "$LAST_OUT" "the new bangerd-root could not start" "the reason of the rollback"
ended=$(last_line "$LAST_OUT")
job=$(update_job_of "$LAST_OUT")
expect_install_is "$base" "after the update to 0.2.4"
expect_eq "$(job_prop "$job" Result)" 's "rolled-back"' "Result of $job"
expect_eq "$(box_exec systemctl show -p Result --value bangerd-root-recover.service)" success \
    "bangerd-root-recover.service's result"
expect_line "$(box_exec journalctl -b --no-pager -o cat -u bangerd-root-recover.service)" \
    'recovering the update' "the recovery unit's journal"
proved "0.2.4's helper could not run as the service: bangerd-root-recover.service rolled it back (${took} s): '$ended'; the old helper runs"

# --- the next update works -----------------------------------------------------------------------
release_config good
release_resign good
run_capture box_exec "$BANGER" update --to 0.3.0
expect_update_end 0 "^updated v$base → v0\.3\.0$" "the next update"
next=$(last_line "$LAST_OUT")
expect_install_is 0.3.0 "after the next update"
proved "the next update works: $next"
