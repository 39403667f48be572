#!/usr/bin/env bash
# Anti-rollback: an older release is refused unless the caller asks for a downgrade
# (--allow-downgrade, polkit org.banger.update.downgrade); the floor is the highest version this
# host has installed or verified, and it survives a reinstall of an older build by the admin.
# An explicit downgrade installs the older release completely, and updating from it works.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    release_set_latest good 0.2.0 >/dev/null 2>&1 || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

release_setup
release_require_update_cli
release_reinstall_base
release_config good
release_set_latest good 0.2.0
base=$(release_base_version)
snapshot_install downgrade-before

# --- below the installed version ------------------------------------------------------------
mark=$(release_server_log_lines)
expect_rc 1 box_exec "$BANGER" update --to 0.0.9
expect_update_end 1 '^update failed: .*(anti-rollback|older|downgrade).*; nothing was changed$' \
    "banger update --to 0.0.9 without --allow-downgrade"
expect_contains "$LAST_OUT" "--allow-downgrade" "the refusal says how to ask for a downgrade"
expect_eq "$(release_requests_since "$mark" '\.tar\.gz')" "" "tarball downloads by the refused downgrade"
snapshot_install downgrade-refused
expect_same_snapshot downgrade-before downgrade-refused "after the refused downgrade"
proved "banger update --to 0.0.9 is refused with exit 1: '$(last_line "$LAST_OUT")'; no tarball fetched, nothing changed"

expect_rc 0 box_exec "$BANGER" update --to 0.0.9 --allow-downgrade
expect_eq "$(last_line "$LAST_OUT")" "updated v$base → v0.0.9" "banger update --to 0.0.9 --allow-downgrade"
expect_install_is 0.0.9 "after the downgrade"
expect_rc 0 box_as "$OWNER" "$BANGER" doctor
proved "with --allow-downgrade (root): 'updated v$base → v0.0.9', the install is entirely v0.0.9 and doctor passes"

expect_rc 0 box_exec "$BANGER" update
expect_eq "$(last_line "$LAST_OUT")" "updated v0.0.9 → v0.2.0" "banger update from the downgraded install"
expect_install_is 0.2.0 "after updating from 0.0.9"
proved "banger update from v0.0.9 brings the host back to the latest: 'updated v0.0.9 → v0.2.0'"

# --- the floor outlives a reinstall ---------------------------------------------------------
expect_rc 0 box_exec "$BOX_BIN/banger" system install --owner "$OWNER"
wait_daemon_ready 30
expect_install_is "$base" "after the admin reinstalled v$base"
release_set_latest good 0.0.9
expect_rc 1 box_exec "$BANGER" update
expect_update_end 1 '^update failed: .*v0\.2\.0.*; nothing was changed$' \
    "banger update to a signed latest of 0.0.9 after v0.2.0 was installed here"
proved "after v0.2.0 was installed here and the admin reinstalled v$base, a manifest whose latest is 0.0.9 is refused: '$(last_line "$LAST_OUT")'"

expect_rc 0 box_exec "$BANGER" update --allow-downgrade
expect_eq "$(last_line "$LAST_OUT")" "updated v$base → v0.0.9" "banger update --allow-downgrade"
expect_install_is 0.0.9 "after the explicit downgrade"
proved "--allow-downgrade takes the signed latest 0.0.9 anyway: 'updated v$base → v0.0.9'"
