#!/usr/bin/env bash
# Updates wait for work in flight: while the owner holds an operation in bangerd (here
# `banger inhibit -- sleep …`, which lists an "inhibit" operation until the command ends), a
# banger update is refused naming that operation and nothing changes; with --force it proceeds.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    box_exec pkill -f 'sleep 4242' 2>/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
base=$(release_base_version)

# --- an operation in flight ------------------------------------------------------------------
bg_start inhibit box_as "$OWNER" "$BANGER" inhibit --why "smoke benchmark" -- sleep 4242
has_inhibit() {
    local ops
    ops=$(box_as "$OWNER" busctl call org.banger.Daemon1 /org/banger/Daemon1 org.banger.Daemon1 ListOperations)
    echo "$ops"
    grep -q '"inhibit" "smoke benchmark"' <<<"$ops"
}
wait_for 30 "bangerd to list the owner's inhibit operation" has_inhibit
proved "banger inhibit makes bangerd list an operation in flight (kind inhibit, stage 'smoke benchmark')"

snapshot_install in-flight-before
run_capture box_exec "$BANGER" update
expect_update_end 1 '^update failed: bangerd has operations in flight: op-[0-9]+-[0-9]+ \(inhibit, smoke benchmark\); wait for them or use --force; nothing was changed$' \
    "banger update while an operation is in flight"
snapshot_install in-flight-after
expect_same_snapshot in-flight-before in-flight-after "after the refused update"
expect_eq "$(update_leftovers)" "" "staging or backups after the refused update"
expect_install_is "$base" "after the refused update"
proved "banger update is refused naming the operation ('$(last_line "$LAST_OUT")'); the install is byte-identical"

# --- --force goes ahead ----------------------------------------------------------------------
run_capture box_exec "$BANGER" update --force
expect_update_end 0 "^updated v$base → v0\.2\.0$" "banger update --force while an operation is in flight"
expect_install_is 0.2.0 "after banger update --force"
proved "banger update --force proceeds despite the operation: '$(last_line "$LAST_OUT")'"

box_exec pkill -f 'sleep 4242' || true
bg_wait inhibit 30 || true
