#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# What root runs on the owner's files runs as the owner, with a time limit. The owner can put
# anything at the store's path: a FIFO (SQLite would block on it forever) or a symbolic link
# (SQLite would follow it, as root, to any file). `sudo banger doctor` then says FAIL naming
# what is there within seconds, and never opens the link's target (a root-only database it
# points to stays unread); `banger update` in that state is refused, naming it, before
# anything changes.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

SECRET=/root/smoke-secret.db
cleanup() {
    local rc=$?
    harness_stop_daemon
    box_exec rm -f "$BANGER_STORE" "$SECRET" || true
    store_unstash orig || true
    box_exec systemctl start bangerd.service || true
    release_reinstall_base >/dev/null 2>&1 || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

# doctor_as_root WHAT: `banger doctor` as root, bounded; sets DOCTOR_SECS and the store line.
doctor_as_root() {
    local t0=$SECONDS
    expect_rc 1 box_exec timeout 60 "$BANGER" doctor
    DOCTOR_SECS=$((SECONDS - t0))
    store_line=$(grep -E '^FAIL store schema' <<<"$LAST_OUT" || true)
    [ -n "$store_line" ] || { fail "$1: sudo banger doctor has no FAIL store schema line"; _evidence "output:" "$LAST_OUT"; return 1; }
    echo "  sudo banger doctor took ${DOCTOR_SECS} s: $store_line"
}

update_scenario_start good
wait_daemon_ready 15
harness_stop_daemon
store_stash orig

# (a) A FIFO where the store should be.
expect_rc 0 box_unit -p "User=$OWNER" mkfifo -m 0600 "$BANGER_STORE"
doctor_as_root "a FIFO at the store"
expect_contains "$store_line" "is a FIFO, not a regular file" "doctor's store line with a FIFO at $BANGER_STORE"
[ "$DOCTOR_SECS" -lt 30 ] || fail "sudo banger doctor took ${DOCTOR_SECS} s with a FIFO at the store"
proved "a FIFO at $BANGER_STORE: sudo banger doctor says FAIL within ${DOCTOR_SECS} s: ${store_line#FAIL }"

# An update in that state is refused before the point of no return, naming the FIFO.
snapshot_install before-update
t0=$SECONDS
expect_rc 1 box_exec timeout 120 "$BANGER" update
took=$((SECONDS - t0))
expect_contains "$LAST_OUT" "is a FIFO, not a regular file" "banger update with a FIFO at the store"
expect_not_contains "$LAST_OUT" "did not finish within" "banger update with a FIFO at the store"
snapshot_install after-update
expect_same_snapshot before-update after-update "after the refused update" "$BANGER_STORE"
proved "banger update with a FIFO at the store is refused in ${took} s, naming it: $(last_line "$LAST_OUT")"
box_exec rm -f "$BANGER_STORE"

# (b) A symbolic link to a database only root may read: root must never open it.
expect_rc 0 box_exec python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1]); db.execute("PRAGMA user_version = 4242"); db.commit()' "$SECRET"
expect_rc 0 box_exec chmod 0600 "$SECRET"
expect_rc 0 box_unit -p "User=$OWNER" ln -s "$SECRET" "$BANGER_STORE"
doctor_as_root "a symbolic link at the store"
expect_contains "$store_line" "is a symbolic link, not a regular file" "doctor's store line with a link at $BANGER_STORE"
expect_not_contains "$LAST_OUT" "4242" "sudo banger doctor with a link to a root-only database"
proved "a link at $BANGER_STORE to a root-only database: FAIL (${store_line#FAIL store schema: }); its schema (v4242) never shows, so root did not open it"
