#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# A rollback gives the old bangerd the store it understands, intact. 0.2.2's bangerd migrates
# the store (one more table, schema v4) and its doctor fails, so the update rolls back after
# the migration. The helper is killed as the rollback begins, and meanwhile a crashed writer
# leaves a hot journal of the migrated store next to it, as a bangerd killed mid-transaction
# would: the resumed rollback stops bangerd, removes what SQLite kept next to the replaced store,
# and only then renames the copy taken before the update into place. The old bangerd then
# opens a store that passes PRAGMA integrity_check, at the old schema, with the records made
# before the update.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

cleanup() {
    local rc=$?
    update_unpause || true
    vm_remove_all_and_image
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

store_query() {   # store_query SQL: one result row per line, read as the owner
    box_unit -p "User=$OWNER" python3 -c '
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
for row in db.execute(sys.argv[2]):
    print("|".join(str(c) for c in row))' "$BANGER_STORE" "$1"
}

update_scenario_start migrating
base=$(release_base_version)
expect_rc 0 vm_image_ready
expect_rc 0 as_owner "$BOX_BIN/banger" vm create kept --image "$GUEST_IMAGE"
old_version=$(store_user_version)
before=$(store_query "SELECT 'image', name FROM images UNION ALL SELECT 'vm', name FROM vms ORDER BY 1, 2")
expect_contains "$before" "vm|kept" "the store's records before the update"

update_pause_at rolling-back
bg_start migrate box_exec "$BANGER" update
wait_for 180 "the update to begin rolling back" update_paused_at rolling-back ||
    { _evidence "banger update so far:" "$(cat "$BG_DIR/migrate.out")"; exit 1; }
migrated=$(store_user_version)
expect_eq "$migrated" $((old_version + 1)) "the store's schema once 0.2.2's bangerd ran"
expect_eq "$(store_query "SELECT name FROM sqlite_master WHERE name = 'smoke_migrated'")" smoke_migrated \
    "0.2.2's table in the store"
proved "0.2.2's bangerd migrated the store to v$migrated before its doctor failed"

# A writer of the migrated store dies mid-transaction, after SQLite spilled some of its changes
# into the file (a tiny page cache): a hot journal is left beside it, which the next opener of
# that path plays back. Played back into the restored copy, it would turn it into (part of) the
# migrated store.
expect_rc 0 box_unit -p "User=$OWNER" python3 -c '
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 2")
db.execute("BEGIN IMMEDIATE")
db.execute("PRAGMA user_version = 99")
db.execute("CREATE TABLE smoke_crashed (x)")
for _ in range(300):
    db.execute("INSERT INTO smoke_crashed VALUES (?)", (os.urandom(3000),))
os._exit(0)' "$BANGER_STORE"
expect_rc 0 box_exec test -s "$BANGER_STORE-journal"
proved "a crashed writer left a hot journal of the migrated store (${BANGER_STORE}-journal)"

# Kill the helper at the start of the rollback; the restarted one resumes it.
pid=$(main_pid bangerd-root.service)
update_drop_pause
expect_rc 0 box_exec kill -KILL "$pid"
update_resume_paused
bg_wait migrate 180
expect_update_end 4 "\(rolled back to previous install\)$" "banger update to the migrating 0.2.2"
ended=$(last_line "$LAST_OUT")
expect_install_is "$base" "after the rollback from 0.2.2"

expect_eq "$(store_query 'PRAGMA integrity_check')" ok "PRAGMA integrity_check of the restored store"
expect_eq "$(store_user_version)" "$old_version" "the restored store's schema"
expect_eq "$(store_query "SELECT name FROM sqlite_master WHERE name LIKE 'smoke_%'")" "" "0.2.2's tables in the restored store"
expect_eq "$(store_query "SELECT 'image', name FROM images UNION ALL SELECT 'vm', name FROM vms ORDER BY 1, 2")" \
    "$before" "the restored store's records"
expect_eq "$(box_exec sh -c 'for f in "$1"-journal "$1"-wal "$1"-shm "$1".pre-update; do [ ! -e "$f" ] || echo "$f"; done' ls "$BANGER_STORE")" \
    "" "files left beside the restored store"
expect_rc 0 as_owner "$BOX_BIN/banger" vm show kept
proved "rolled back ('$ended'): the old bangerd runs on a store that passes integrity_check, at v$old_version, with its records; no journal, WAL or copy is left"
