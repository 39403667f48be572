#!/usr/bin/env bash
# Root manages bangerd through `banger daemon stop|start|restart` (Root1 -> systemd), and the
# store's schema handling: `bangerd --check-migrations` never writes and tells compatible (0),
# pending migrations (1) and a newer schema (2) apart; bangerd migrates an older store and
# refuses a newer one without touching it.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

# Whatever happens, leave the original store in place and bangerd running.
restore() {
    local rc=$?
    if box_exec test -d "$STASH/orig"; then
        echo "  (restoring the original store)"
        harness_stop_daemon
        store_unstash orig || true
    fi
    box_exec systemctl start bangerd.service || true
    return "$rc"
}
trap restore EXIT

check_migrations() { box_exec "$BANGERD" --check-migrations --system; }

# --- stop / start / restart ---------------------------------------------------------------
wait_unit_state 15 bangerd.service active
expect_rc 0 box_exec "$BANGER" daemon stop
wait_unit_state 10 bangerd.service inactive
proved "banger daemon stop (root) stops bangerd.service"

expect_rc 0 box_exec "$BANGER" daemon start
wait_daemon_ready 15
proved "banger daemon start (root) starts bangerd.service and Daemon1 reports Ready=true"

pid_before=$(main_pid bangerd.service)
expect_rc 0 box_exec "$BANGER" daemon restart
wait_daemon_ready 15
pid_after=$(main_pid bangerd.service)
expect_ne "$pid_after" "$pid_before" "bangerd MainPID after banger daemon restart"
expect_ne "$pid_after" 0 "bangerd MainPID after banger daemon restart"
proved "banger daemon restart (root) restarts bangerd (MainPID $pid_before -> $pid_after)"

expect_rc 0 box_exec "$BANGER" daemon status
proved "banger daemon status (root) exits 0 while bangerd runs"

# --- migrations: current store --------------------------------------------------------------
expect_rc 0 box_exec "$BANGER" daemon stop
wait_unit_state 10 bangerd.service inactive
mapfile -t migrations < <(migration_files)
[ "${#migrations[@]}" -gt 0 ] || fail "no migration files in $SMOKE_REPO/bangerd/src/store/migrations"
current=${#migrations[@]}
expect_eq "$(store_user_version)" "$current" "user_version of the installed store (= number of migrations)"

listing=$(store_dir_listing)
sha=$(box_sha256 "$BANGER_STORE")
expect_rc 0 check_migrations
expect_eq "$(box_sha256 "$BANGER_STORE")" "$sha" "store sha256 after --check-migrations"
expect_eq "$(store_dir_listing)" "$listing" "/var/lib/banger after --check-migrations"
proved "bangerd --check-migrations --system exits 0 on the installed store (schema $current) and writes nothing"

# --- an older store -------------------------------------------------------------------------
store_stash orig
if [ "$current" -ge 2 ]; then
    old_version=1
    store_write_schema orig 1 "${migrations[0]}"
else
    old_version=0          # only one migration exists: the oldest store is an empty one
    store_write_schema orig 0
fi
sha=$(box_sha256 "$BANGER_STORE")
listing=$(store_dir_listing)
expect_rc 1 check_migrations
expect_line "$LAST_OUT" '[Pp]ending' "--check-migrations on a store at schema $old_version names pending migrations"
why=$LAST_OUT
expect_eq "$(box_sha256 "$BANGER_STORE")" "$sha" "older store sha256 after --check-migrations"
expect_eq "$(store_dir_listing)" "$listing" "/var/lib/banger after --check-migrations"
proved "on a store at schema $old_version of $current, --check-migrations exits 1 ('$why') and writes nothing"

expect_rc 0 box_exec "$BANGER" daemon start
wait_daemon_ready 15
expect_rc 0 box_exec "$BANGER" daemon stop
wait_unit_state 10 bangerd.service inactive
expect_eq "$(store_user_version)" "$current" "user_version after bangerd ran on the older store"
expect_rc 0 check_migrations
proved "bangerd migrates a schema-$old_version store to $current on start; --check-migrations then exits 0"

# --- a newer store --------------------------------------------------------------------------
box_exec rm -f "$BANGER_STORE" "$BANGER_STORE-wal" "$BANGER_STORE-shm" "$BANGER_STORE-journal"
store_copy_with_version orig 999
expect_eq "$(store_user_version)" 999 "user_version of the doctored store"
sha=$(box_sha256 "$BANGER_STORE")
listing=$(store_dir_listing)
expect_rc 2 check_migrations
expect_line "$LAST_OUT" '999' "--check-migrations on a schema-999 store names the schema it found"
why=$LAST_OUT
expect_eq "$(box_sha256 "$BANGER_STORE")" "$sha" "schema-999 store sha256 after --check-migrations"
expect_eq "$(store_dir_listing)" "$listing" "/var/lib/banger after --check-migrations"
proved "on a schema-999 store --check-migrations exits 2 ('$why') and writes nothing"

# `banger daemon start` either fails, or bangerd comes up and exits refusing the store.
refused() {
    local state
    state=$(unit_state bangerd.service)
    [ "$state" = failed ] || [ "$state" = inactive ] ||
        [ "$(box_exec systemctl show -p SubState --value bangerd.service)" = auto-restart ]
}
run_capture box_exec "$BANGER" daemon start
start_rc=$LAST_RC
start_out=$LAST_OUT
if [ "$start_rc" = 0 ]; then
    wait_for 15 "bangerd to refuse the schema-999 store (unit failed or stopped)" refused
fi
expect_eq "$(box_sha256 "$BANGER_STORE")" "$sha" "schema-999 store sha256 after bangerd tried it"
expect_eq "$(store_user_version)" 999 "user_version after bangerd tried the schema-999 store"
box_exec journalctl -b --no-pager -o cat -u bangerd.service -n 5 | sed 's/^/  journal: /' || true
proved "bangerd refuses a schema-999 store (daemon start rc=$start_rc${start_out:+: $(head -n1 <<<"$start_out")}, unit $(unit_state bangerd.service)) and leaves it byte-identical"

# --- back to the original -------------------------------------------------------------------
harness_stop_daemon
store_unstash orig
expect_rc 0 box_exec "$BANGER" daemon start
wait_daemon_ready 15
proved "with the original store back, banger daemon start brings bangerd up Ready again"
