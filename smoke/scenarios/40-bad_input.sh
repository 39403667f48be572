#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# Damaged installations: `banger doctor` names what is wrong (a corrupt install.toml, a missing
# polkit policy, a store from a newer schema) and nothing rewrites the damaged file or touches
# any other installed file. Each damage is undone before the next.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

BACKUP=/root/smoke-backup
restore() {
    local rc=$?
    box_exec bash -c '
        [ -e "$1/install.toml" ] && cp -a "$1/install.toml" "$2"
        [ -e "$1/org.banger.policy" ] && mv "$1/org.banger.policy" "$3"
        rm -rf "$1"' restore "$BACKUP" "$BANGER_INSTALL_TOML" "$BANGER_POLICY" || true
    if box_exec test -d "$STASH/orig"; then
        harness_stop_daemon
        store_unstash orig || true
    fi
    box_exec systemctl start bangerd.service || true
    return "$rc"
}
trap restore EXIT

doctor() { box_as "$OWNER" "$BANGER" doctor; }
# expect_fail_line ERE WHAT: the last doctor output has a FAIL line matching ERE -> $line
expect_fail_line() {
    line=$(tr -d '\r' <<<"$LAST_OUT" | grep -E '^FAIL' | grep -E -m1 -- "$1" || true)
    [ -n "$line" ] && return 0
    fail "banger doctor has no FAIL line $2" || true
    _evidence "output:" "$LAST_OUT"
    return 1
}

wait_daemon_ready 15
expect_rc 0 box_exec mkdir -p "$BACKUP"
snapshot_install before-damage

# --- (a) install.toml is not TOML -----------------------------------------------------------
expect_rc 0 box_exec cp -a "$BANGER_INSTALL_TOML" "$BACKUP/install.toml"
expect_rc 0 box_exec bash -c 'printf "%s\n" "[owner" "user = \"owner" "= = = not toml" >"$1"' \
    garbage "$BANGER_INSTALL_TOML"
sha=$(box_sha256 "$BANGER_INSTALL_TOML")
expect_rc '!0' doctor
expect_fail_line 'install\.toml' "naming install.toml"
expect_line "$line" '[Pp]ars|TOML|[Ii]nvalid|[Ee]xpected|[Ss]yntax|line [0-9]' "the FAIL line explains the parse problem"
expect_eq "$(box_sha256 "$BANGER_INSTALL_TOML")" "$sha" "corrupt install.toml sha256 after banger doctor"
snapshot_install damaged-toml
expect_same_snapshot before-damage damaged-toml "while install.toml is corrupt" "$BANGER_INSTALL_TOML"
proved "with a corrupt install.toml banger doctor exits non-zero with '$line'; the corrupt file and every other installed file are left as they were"

expect_rc 0 box_exec cp -a "$BACKUP/install.toml" "$BANGER_INSTALL_TOML"
expect_rc 0 box_exec rm "$BACKUP/install.toml"
snapshot_install restored-toml
expect_same_snapshot before-damage restored-toml "after restoring install.toml"
expect_rc 0 doctor
proved "install.toml restored: installation identical to before, banger doctor exits 0 again"

# --- (b) the polkit policy is missing -------------------------------------------------------
expect_rc 0 box_exec mv "$BANGER_POLICY" "$BACKUP/org.banger.policy"
expect_rc '!0' doctor
expect_fail_line 'org\.banger\.policy' "naming org.banger.policy"
snapshot_install damaged-policy
expect_same_snapshot before-damage damaged-policy "while the policy is missing" "$BANGER_POLICY"
proved "without $BANGER_POLICY banger doctor exits non-zero with '$line' and changes nothing else"

expect_rc 0 box_exec mv "$BACKUP/org.banger.policy" "$BANGER_POLICY"
snapshot_install restored-policy
expect_same_snapshot before-damage restored-policy "after restoring the policy"
expect_rc 0 doctor
proved "policy restored: installation identical to before, banger doctor exits 0 again"

# --- (c) the store comes from a newer schema ------------------------------------------------
expect_rc 0 box_exec "$BANGER" daemon stop
wait_unit_state 10 bangerd.service inactive
snapshot_install daemon-stopped       # the store's bytes settle once bangerd has closed it
store_stash orig
store_copy_with_version orig 999
sha=$(box_sha256 "$BANGER_STORE")
t0=$SECONDS
expect_rc '!0' doctor
took=$((SECONDS - t0))
if [ "$took" -gt 5 ]; then
    echo "  note: banger doctor took ${took}s while bangerd cannot start"
fi
expect_fail_line '999|[Nn]ewer' "naming the store's newer schema (999)"
expect_eq "$(box_sha256 "$BANGER_STORE")" "$sha" "schema-999 store sha256 after banger doctor"
snapshot_install damaged-store
expect_same_snapshot daemon-stopped damaged-store "while the store is from schema 999" "$BANGER_STORE"
proved "with a schema-999 store banger doctor as $OWNER exits non-zero with '$line'; the store stays byte-identical"

harness_stop_daemon      # in case doctor bus-activated bangerd and it is failing
store_unstash orig
snapshot_install restored-store
expect_same_snapshot daemon-stopped restored-store "after restoring the store"
expect_same_snapshot before-damage restored-store "after all three repairs" "$BANGER_STORE"
expect_rc 0 box_exec "$BANGER" daemon start
wait_daemon_ready 15
expect_rc 0 doctor
proved "store restored: installation identical to before, bangerd Ready, banger doctor exits 0"
