#!/usr/bin/env bash
# The owner updates from a terminal: banger update starts pkttyagent, the owner answers the
# polkit prompt with their own password (they are an administrator), and the update runs to
# the end — across the helper's restart — with the documented last line. Then a pinned update
# (--to 0.3.0) asks for org.banger.update.pinned the same way.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

BOX_TTY_TIMEOUT=240
cleanup() {
    local rc=$?
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
base=$(release_base_version)

t0=$SECONDS
expect_rc 0 box_as_tty "$OWNER" "$BANGER update" "$OWNER_PASS"
out=$LAST_OUT
expect_contains "$out" "org.banger.update" "the polkit prompt"
expect_eq "$(last_line "$out")" "updated v$base → v0.2.0" "the last line of the owner's banger update"
expect_install_is 0.2.0 "after the owner's update"
job=$(update_job_of "$out")
[ -n "$job" ] || job=$(latest_job_path)
expect_eq "$(job_prop "$job" Result)" 's "updated"' "Result of $job"
proved "$OWNER on a terminal answers the org.banger.update prompt; banger update exits 0 in $((SECONDS - t0))s: 'updated v$base → v0.2.0'; install entirely v0.2.0"

expect_rc 0 box_as_tty "$OWNER" "$BANGER update --to 0.3.0" "$OWNER_PASS"
out=$LAST_OUT
expect_contains "$out" "org.banger.update.pinned" "the polkit prompt for --to 0.3.0"
expect_eq "$(last_line "$out")" "updated v0.2.0 → v0.3.0" "the last line of banger update --to 0.3.0"
expect_install_is 0.3.0 "after the owner's pinned update"
proved "banger update --to 0.3.0 asks for org.banger.update.pinned; with the owner's password: 'updated v0.2.0 → v0.3.0'"

expect_rc 0 box_as "$OWNER" "$BANGER" doctor
expect_no_line "$LAST_OUT" '^FAIL' "banger doctor after the updates"
proved "banger doctor (v0.3.0) passes as $OWNER"
