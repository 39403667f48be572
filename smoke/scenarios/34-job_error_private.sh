#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# An update job's reason for failing is the owner's business. The owner holds off updates with
# `banger inhibit --why "<a private reason>"`; root's `banger update` is refused naming that
# operation and its reason. Root (who started the job) and the owner read the reason as
# Job.Error; `other` reads a sentence saying it is withheld, and the job's signals, which every
# user can receive, never carry it either.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

SECRET="quarterly-numbers-vm-7"
cleanup() {
    local rc=$?
    box_exec pkill -f 'sleep 4343' || true
    box_exec systemctl stop smoke-listen.service 2>/dev/null || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
bg_start inhibit box_as "$OWNER" "$BANGER" inhibit --why "$SECRET" -- sleep 4343
has_inhibit() {
    box_as "$OWNER" busctl call org.banger.Daemon1 /org/banger/Daemon1 org.banger.Daemon1 ListOperations |
        grep -F "$SECRET"
}
wait_for 30 "bangerd to list the owner's inhibit operation" has_inhibit

# other listens to everything Root1 sends, as any user may.
client=$(<"$SMOKE_LIB/bus-client.py")
expect_rc 0 box_exec systemd-run --quiet --collect --unit smoke-listen.service -p "User=$OTHER" \
    -p StandardOutput=file:/tmp/smoke-listen.log -p RuntimeMaxSec=120 python3 -c "${client//\$/\$\$}" listen 60
wait_for 10 "other's signal listener" box_exec grep -q listening /tmp/smoke-listen.log

expect_rc 1 box_exec "$BANGER" update
expect_contains "$LAST_OUT" "(inhibit, $SECRET)" "root's banger update (root started the job)"
proved "root, who started the job, is told why: $(last_line "$LAST_OUT")"
job=$(latest_job_path)
[ -n "$job" ] || fail "no job object after the refused update"

error_as() { box_unit -p "User=$1" busctl --system get-property org.banger.Root1 "$job" org.banger.Root1.Job Error; }
expect_rc 0 error_as "$OWNER"
expect_contains "$LAST_OUT" "$SECRET" "Job.Error read by $OWNER"
expect_rc 0 error_as "$OTHER"
expect_not_contains "$LAST_OUT" "$SECRET" "Job.Error read by $OTHER"
expect_contains "$LAST_OUT" "shown only to root, to the owner of this banger install and to the user who started the job" "Job.Error read by $OTHER"
withheld=$LAST_OUT
expect_rc 0 box_unit -p "User=$OTHER" busctl --system --json=short call org.banger.Root1 "$job" \
    org.freedesktop.DBus.Properties GetAll s org.banger.Root1.Job
expect_not_contains "$LAST_OUT" "$SECRET" "Job properties (GetAll) read by $OTHER"
proved "$OWNER reads the reason as Job.Error; $OTHER reads only $withheld (also through GetAll)"

sleep 1
box_exec systemctl stop smoke-listen.service 2>/dev/null || true
signals=$(box_exec cat /tmp/smoke-listen.log)
expect_line "$signals" '"member": "Finished"' "the signals $OTHER received"
expect_not_contains "$signals" "$SECRET" "the signals $OTHER received"
proved "$OTHER received the job's signals ($(grep -c member <<<"$signals") of them, Finished included) without the reason"
