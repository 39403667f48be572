#!/usr/bin/env bash
# A service that systemd is restarting is judged once it is back. `banger doctor` run right
# after bangerd was SIGKILLed (systemd restarts it a second later) waits, bounded, for the unit
# to settle and passes; and an update whose new bangerd dies during `verifying-install` (the
# helper paused there by BANGER_UPDATE_PAUSE_AT, bangerd killed, the pause lifted at once, so
# the new doctor runs while bangerd is in auto-restart) completes instead of rolling back.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    update_unpause || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
base=$(release_base_version)

# --- doctor right after a crash ----------------------------------------------------------------
wait_daemon_ready 15
pid=$(main_pid bangerd.service)
expect_rc 0 box_exec kill -KILL "$pid"
expect_rc 0 box_exec "$BANGER" doctor
expect_line "$LAST_OUT" '^PASS bangerd\.service: active' "doctor run right after bangerd was killed"
expect_ne "$(main_pid bangerd.service)" "$pid" "bangerd MainPID after the kill"
proved "banger doctor run right after SIGKILL of bangerd waits for systemd's restart and passes: $(grep -E '^PASS bangerd\.service' <<<"$LAST_OUT")"

# --- an update whose bangerd dies while the new install is checked -----------------------------
update_pause_at verifying
bg_start settle box_exec "$BANGER" update
wait_for 120 "the new helper to pause at verifying" update_paused_at verifying ||
    { _evidence "banger update so far:" "$(cat "$BG_DIR/settle.out")"; exit 1; }
update_drop_pause
pid=$(main_pid bangerd.service)
# The doctor runs the moment the pause ends, while systemd has bangerd in auto-restart.
expect_rc 0 box_exec sh -c 'kill -KILL "$1" && rm -f "$2"' kill "$pid" "$PAUSED"
bg_wait settle 120
expect_update_end 0 "^updated v$base → v0\.2\.0$" "banger update whose bangerd died during verifying-install"
ended=$(last_line "$LAST_OUT")
expect_install_is 0.2.0 "after the update"
proved "bangerd killed while the new install was being checked: the update waited for systemd's restart and ended '$ended'"
