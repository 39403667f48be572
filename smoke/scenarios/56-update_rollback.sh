#!/usr/bin/env bash
# An update to a release that installs but does not work: 0.2.1's bangerd passes every check
# before the swap (--version, --check-migrations) but exits 1 when systemd starts it. The update
# swaps, restarts, notices, restores the .previous files, restarts again and reports it: exit 4,
# "update failed: … (rolled back to previous install)", Result rolled-back. Afterwards the
# install is byte-identical to before (install.toml included) and healthy.
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

update_scenario_start broken
base=$(release_base_version)
snapshot_install rollback-before
daemon_pid=$(main_pid bangerd.service)

t0=$EPOCHREALTIME
run_capture box_exec "$BANGER" update
out=$LAST_OUT
took=$(_box_elapsed "$t0")
expect_update_end 4 '^update failed: .+ \(rolled back to previous install\)$' "banger update to the broken 0.2.1"
job=$(update_job_of "$out")
[ -n "$job" ] || job=$(latest_job_path)
expect_eq "$(job_prop "$job" Result)" 's "rolled-back"' "Result of $job"
expect_eq "$(job_prop "$job" TargetVersion)" 's "0.2.1"' "TargetVersion of $job"
expect_ne "$(job_prop "$job" Error)" 's ""' "Error of $job"
expect_line "$out" 'stage: (swapping|restarting-daemon)' "the stages banger update showed"
expect_line "$out" 'stage: rolling-back' "the stages banger update showed"
proved "banger update to 0.2.1 exits 4 after ${took}s: '$(last_line "$out")'; $job Result=rolled-back"

box_exec journalctl -b --no-pager -o cat -u bangerd.service | grep -F "smoke fixture" | tail -n 1 |
    sed 's/^/  bangerd said: /' || true
expect_install_is "$base" "after the rollback"
snapshot_install rollback-after
expect_same_snapshot rollback-before rollback-after "after the rollback (store aside)" "$BANGER_STORE"
expect_eq "$(journal_state)" "done" "the update journal's state"
wait_update_idle 10
proved "the install is byte-identical to before (binaries and install.toml restored), entirely v$base, no staging or .previous left, journal done"

expect_ne "$(main_pid bangerd.service)" "$daemon_pid" "bangerd MainPID after the rollback"
expect_rc 0 box_as "$OWNER" "$BANGER" doctor
expect_no_line "$LAST_OUT" '^FAIL' "banger doctor after the rollback"
expect_rc 0 box_exec "$BANGER" system status
proved "the old bangerd is running again (restarted), banger doctor and banger system status pass"

# The helper verified 0.2.1 before swapping, so 0.2.1 is now its anti-rollback floor: the next
# good release must be above it.
release_config good
release_resign good
expect_rc 0 box_exec "$BANGER" update --to 0.3.0
expect_eq "$(last_line "$LAST_OUT")" "updated v$base → v0.3.0" "an update to a good release after the rollback"
expect_install_is 0.3.0 "after the update that followed the rollback"
proved "a following update to the good 0.3.0 succeeds: the rollback left nothing in the way"
