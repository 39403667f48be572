#!/usr/bin/env bash
# An update on a host that cannot run VMs (here: /dev/net/tun closed to the owner, so doctor's
# "tun device" check fails before the update starts). The update is judged on what it changes:
# a check that already failed before it does not roll it back. banger update exits 0, v0.2.0 is
# installed, and doctor still names the same failing check afterwards.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    box_host_like || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
base=$(release_base_version)
expect_rc 0 box_exec chmod 0600 /dev/net/tun
expect_rc 1 box_as "$OWNER" "$BANGER" doctor
expect_line "$LAST_OUT" '^FAIL tun device: /dev/net/tun has mode 0600' "doctor before the update"
failing_before=$(grep '^FAIL' <<<"$LAST_OUT" | cut -d: -f1)
proved "doctor fails before the update: $(tr '\n' ';' <<<"$failing_before")"

expect_rc 0 box_exec "$BANGER" update
expect_eq "$(last_line "$LAST_OUT")" "updated v$base → v0.2.0" "the last line of banger update"
expect_install_is 0.2.0 "after banger update"
expect_eq "$(journal_state)" "done" "the update journal's state"
proved "banger update to 0.2.0 is not rolled back for a check that failed before it"

expect_rc 1 box_as "$OWNER" "$BANGER" doctor
expect_eq "$(grep '^FAIL' <<<"$LAST_OUT" | cut -d: -f1)" "$failing_before" "doctor's failing checks after the update"
box_host_like
expect_rc 0 box_as "$OWNER" "$BANGER" doctor
expect_no_line "$LAST_OUT" '^FAIL' "banger doctor once the tun device is open again"
proved "the same check fails after the update, and only it; with the tun device open again doctor passes"
