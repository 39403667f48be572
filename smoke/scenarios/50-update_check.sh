#!/usr/bin/env bash
# `banger update --check` and Root1.CheckForUpdate: anyone may ask, with no password and no
# session; the answer comes from the signed manifest (only the manifest and its signature are
# fetched); nothing is started or changed. With no trusted key but the embedded placeholder, the
# check refuses and says so.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    release_set_latest good 0.2.0 >/dev/null 2>&1 || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

release_setup
release_require_update_cli
wait_daemon_ready 15
base=$(release_base_version)
snapshot_install update-check-before

# --- only the placeholder key ---------------------------------------------------------------
release_unconfig
expect_rc 1 box_exec "$BANGER" update --check
expect_contains "$LAST_OUT" placeholder "banger update --check without /etc/banger/config.toml"
proved "without config.toml (only the embedded placeholder key) banger update --check exits 1: '$(last_line "$LAST_OUT")'"

# --- an update is available -----------------------------------------------------------------
release_config good
release_resign good
mark=$(release_server_log_lines)
want="update available: v$base → v0.2.0"
expect_rc 0 box_exec "$BANGER" update --check
expect_eq "$(last_line "$LAST_OUT")" "$want" "banger update --check as root"
expect_rc 0 box_unit -p "User=$OTHER" "$BANGER" update --check
expect_eq "$(last_line "$LAST_OUT")" "$want" "banger update --check as $OTHER (no session)"
expect_rc 0 box_as "$OWNER" "$BANGER" update --check
expect_eq "$(last_line "$LAST_OUT")" "$want" "banger update --check as $OWNER (active session, no tty)"
proved "root, $OTHER (no session) and $OWNER (no terminal, no agent) all get '$want' with exit 0: no password asked"

expect_rc 0 box_unit -p "User=$OTHER" "$BANGER" update --check --json
expect_rc 0 python3 -c '
import json, sys
o = json.loads(sys.argv[1].strip().splitlines()[-1])
assert o == {"current": sys.argv[2], "latest": "0.2.0", "available": True}, o
print(o)' "$LAST_OUT" "$base"
proved "banger update --check --json prints {\"current\": \"$base\", \"latest\": \"0.2.0\", \"available\": true}"

expect_rc 0 box_unit -p "User=$OTHER" busctl --system call "${ROOT1_DEST[@]}" org.banger.Root1 CheckForUpdate
expect_eq "$LAST_OUT" "ssb \"$base\" \"0.2.0\" true" "Root1.CheckForUpdate called by $OTHER"
proved "Root1.CheckForUpdate() called by $OTHER with busctl returns (\"$base\", \"0.2.0\", true)"

requests=$(release_requests_since "$mark" '.')
expect_no_line "$requests" '"path": "[^"]*/(SHA256SUMS|[^"]*\.tar\.gz)' "requests made by the checks"
expect_line "$requests" '"path": "/good/manifest\.json\.sig"' "requests made by the checks"
proved "the checks fetched only manifest.json and manifest.json.sig ($(grep -c . <<<"$requests") requests), never SHA256SUMS or a tarball"

expect_eq "$(root1_prop UpdateState)" 's "idle"' "Root1 UpdateState after the checks"
expect_eq "$(root1_prop ActiveJob)" 'o "/"' "Root1 ActiveJob after the checks"
expect_eq "$(latest_job_path)" "" "job objects after the checks"
proved "no job was started: UpdateState idle, ActiveJob /, no job object on the bus"

# --- up to date -----------------------------------------------------------------------------
# (As root and the owner: the manifest another user's check downloaded is shared with other
# such users for up to 10 s, so theirs may still show the previous latest.)
release_set_latest good 0.0.9
expect_rc 0 box_exec "$BANGER" update --check
expect_eq "$(last_line "$LAST_OUT")" "up to date (v$base)" "banger update --check with latest 0.0.9"
expect_rc 0 box_as "$OWNER" busctl --system call "${ROOT1_DEST[@]}" org.banger.Root1 CheckForUpdate
expect_eq "$LAST_OUT" "ssb \"$base\" \"0.0.9\" false" "Root1.CheckForUpdate with latest 0.0.9"
proved "when the signed latest (0.0.9) is older than v$base: 'up to date (v$base)', CheckForUpdate available=false"

snapshot_install update-check-after
expect_same_snapshot update-check-before update-check-after "after every check"
expect_eq "$(update_leftovers)" "" "staging or backups after the checks"
proved "the installed files are byte-identical after all the checks"
