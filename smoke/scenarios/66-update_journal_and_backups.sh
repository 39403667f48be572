#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# The update never takes a step it could not record, and never deletes the only copy.
# (a) While an update downloads, its journal becomes unwritable but stays readable (a read-only
#     bind mount of it over itself: the rename that replaces it fails): the first change is
#     never made; the job ends failed, saying the journal could not be written and that nothing
#     was changed, and the install is byte-identical.
# (b) A `.previous` backup left by an update that did not finish, which differs from the
#     installed file (it may be the last copy of the previous install), makes the next update
#     refuse, naming it, and the backup is kept; `banger system install` (the repair) removes it,
#     and then the update works.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

JOURNAL=$BANGER_ROOT_STATE/update-journal.json
STALE=$BANGER_PREFIX/lib/banger/bin/banger.previous
cleanup() {
    local rc=$?
    box_exec umount "$JOURNAL" 2>/dev/null || true
    box_exec rm -rf "$STALE" || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

# --- (a) an unwritable journal -----------------------------------------------------------------
update_scenario_start slow
base=$(release_base_version)
snapshot_install before
bg_start unwritable box_exec "$BANGER" update
downloading() { [ "$(root1_prop UpdateState)" = 's "downloading"' ]; }
wait_for 60 "the update to be downloading" downloading
expect_rc 0 box_exec mount --bind -o ro "$JOURNAL" "$JOURNAL"
bg_wait unwritable 180
expect_update_end 1 "^update failed: recording the update before its first change failed: update journal .*update-journal\.json: .*; nothing was changed$" \
    "banger update whose journal became unwritable"
failed=$(last_line "$LAST_OUT")
snapshot_install after
expect_same_snapshot before after "after the update whose journal could not be written" "$BANGER_STORE"
expect_eq "$(update_leftovers)" "" "staging or backups after it"
expect_eq "$(box_exec test -e "$BANGER_ROOT_STATE/update-pending" && echo present)" "" "the pending-update marker"
proved "a journal that cannot be written stops the update before its first change: '$failed'; the install is byte-identical"
expect_rc 0 box_exec umount "$JOURNAL"

# --- (b) a backup that may be the only copy ------------------------------------------------------
release_config good
release_resign good
expect_rc 0 box_exec sh -c 'printf "a previous banger that is no more anywhere else\n" >"$1"' stale "$STALE"
stale_sum=$(box_sha256 "$STALE")
snapshot_install before-stale
run_capture box_exec "$BANGER" update
expect_update_end 1 "^update failed: $STALE is left from an update that did not finish cleanly and differs from .*: it may be the only copy of the previous install, so it was kept" \
    "banger update with a differing $STALE"
refused=$(last_line "$LAST_OUT")
expect_eq "$(box_sha256 "$STALE")" "$stale_sum" "$STALE after the refused update"
snapshot_install after-stale
expect_same_snapshot before-stale after-stale "after the refused update" "$BANGER_STORE"
proved "a differing .previous backup is kept and refuses the update: '$refused'"

expect_rc 0 box_exec "$BOX_BIN/banger" system install --owner "$OWNER"
expect_contains "$LAST_OUT" "removed $STALE, left by an update that did not finish" "system install"
expect_rc 1 box_exec test -e "$STALE"
wait_daemon_ready 30
run_capture box_exec "$BANGER" update
expect_update_end 0 "^updated v$base → v0\.2\.0$" "banger update after the reinstall"
proved "banger system install removes the leftover backup; then: $(last_line "$LAST_OUT")"
