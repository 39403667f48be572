#!/usr/bin/env bash
# The services log to journald natively: real priorities, structured fields and a MESSAGE_ID per
# update outcome, so the journal answers an admin's questions without grep.
# 1. An update (as root) and a rolled-back update (to the broken release) with a VM running,
#    then a restart of the helper (which announces the last end again on the bus):
#    `journalctl MESSAGE_ID=<updated>` and `MESSAGE_ID=<rolled back>` list exactly those jobs,
#    with JOB_ID, FROM_VERSION, VERSION, INITIATOR_UID and RESULT; the start has its own id.
# 2. `journalctl -p warning -u bangerd-root.service` finds the rollback; info lines are
#    PRIORITY 6, under SYSLOG_IDENTIFIER bangerd-root / bangerd.
# 3. `journalctl VM_ID=<id>` finds the VM's start in both services, with UNIT= in the helper's.
# 4. `banger update --history` (root) shows both jobs: versions, who asked, result, the reason
#    of the rollback; --json the same; the owner (no journal access) is told the history is
#    incomplete.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

BANGER=$BOX_BIN/banger

cleanup() {
    local rc=$?
    vm_remove_all
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

# The ids, as the source defines them (banger-api's journal module).
msg_id() {
    grep -oE "pub const $1: &str = \"[0-9a-f]{32}\"" "$SMOKE_REPO/banger/api/src/journal.rs" |
        grep -oE '[0-9a-f]{32}'
}
STARTED=$(msg_id UPDATE_STARTED)
UPDATED=$(msg_id UPDATE_UPDATED)
ROLLED_BACK=$(msg_id UPDATE_ROLLED_BACK)
[ -n "$STARTED" ] && [ -n "$UPDATED" ] && [ -n "$ROLLED_BACK" ] ||
    fail "could not read the MESSAGE_IDs from banger/api/src/journal.rs" || exit 1
# journal FIELDS MATCH...: the matching entries of this boot as "FIELD=VALUE ..." lines.
journal() {
    local fields=$1
    shift
    box_exec journalctl -b --no-pager -o json "$@" | python3 -c '
import json, sys
fields = sys.argv[1].split(",")
for line in sys.stdin:
    e = json.loads(line)
    print(" ".join("%s=%s" % (f, e.get(f, "")) for f in fields))' "$fields"
}

update_scenario_start good
base=$(release_base_version)
expect_rc 0 vm_up jr1
id=$(vm_id jr1)
since=$(box_exec date +%s)

run_capture box_exec "$BANGER" update
expect_update_end 0 "^updated v$base → v0\\.2\\.0$" "the update" || exit 1
release_config broken && release_resign broken
run_capture box_exec "$BANGER" update
expect_update_end 4 'rolled back to previous install' "the update to the broken release" || exit 1

# A restarted helper re-announces the last job's end on the bus, but must not log it again.
expect_rc 0 box_exec systemctl restart bangerd-root.service || exit 1
wait_unit_state 15 bangerd-root.service active || exit 1

# --- 1. one MESSAGE_ID per outcome, with its fields (once each, also after the restart)
F=MESSAGE_ID,JOB_ID,FROM_VERSION,VERSION,INITIATOR_UID,RESULT,SYSLOG_IDENTIFIER
upd=$(journal "$F" "MESSAGE_ID=$UPDATED" --since "@$since")
rb=$(journal "$F" "MESSAGE_ID=$ROLLED_BACK" --since "@$since")
st=$(journal "$F" "MESSAGE_ID=$STARTED" --since "@$since")
expect_eq "$(wc -l <<<"$upd")" 1 "entries with the updated MESSAGE_ID" || { echo "$upd"; exit 1; }
expect_line "$upd" "JOB_ID=[0-9]+ FROM_VERSION=$base VERSION=0\\.2\\.0 INITIATOR_UID=0 RESULT=updated SYSLOG_IDENTIFIER=bangerd-root$" \
    "the updated entry" || exit 1
expect_eq "$(wc -l <<<"$rb")" 1 "entries with the rolled-back MESSAGE_ID" || { echo "$rb"; exit 1; }
expect_line "$rb" "FROM_VERSION=0\\.2\\.0 VERSION=0\\.2\\.1 INITIATOR_UID=0 RESULT=rolled-back" "the rolled-back entry" || exit 1
expect_eq "$(wc -l <<<"$st")" 2 "entries with the started MESSAGE_ID" || { echo "$st"; exit 1; }
proved "journalctl MESSAGE_ID=…: the update ($(grep -oE 'JOB_ID=[0-9]+' <<<"$upd")), the rollback ($(grep -oE 'JOB_ID=[0-9]+' <<<"$rb")) and their two starts, each with its versions, initiator and result"

# --- 2. priorities
warn=$(box_exec journalctl -b --no-pager -o cat -p warning -u bangerd-root.service --since "@$since")
expect_contains "$warn" "rolled back, v0.2.0 is installed again" "journalctl -p warning -u bangerd-root.service" || exit 1
prio=$(journal PRIORITY,SYSLOG_IDENTIFIER "MESSAGE_ID=$UPDATED" --since "@$since")
expect_eq "$prio" "PRIORITY=6 SYSLOG_IDENTIFIER=bangerd-root" "the updated entry's priority" || exit 1
daemon_ready_prio=$(box_exec journalctl -b --no-pager -o json -u bangerd.service --since "@$since" |
    python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("MESSAGE") == "bangerd ready":
        print(e.get("PRIORITY"), e.get("SYSLOG_IDENTIFIER"), e.get("VERSION"))' | tail -n 1)
expect_line "$daemon_ready_prio" '^6 bangerd [0-9]' "bangerd's ready entry (PRIORITY, SYSLOG_IDENTIFIER, VERSION)" || exit 1
proved "-p warning finds the rollback ($(grep -c . <<<"$warn") lines); info entries are PRIORITY 6 (bangerd ready: $daemon_ready_prio)"

# --- 3. VM_ID and UNIT
vmlog=$(journal SYSLOG_IDENTIFIER,UNIT,MESSAGE "VM_ID=$id")
expect_line "$vmlog" "^SYSLOG_IDENTIFIER=bangerd-root UNIT=banger-vm-$id\\.service MESSAGE=VM started$" "journalctl VM_ID=$id" || exit 1
expect_line "$vmlog" "^SYSLOG_IDENTIFIER=bangerd UNIT= MESSAGE=VM started$" "journalctl VM_ID=$id" || exit 1
proved "journalctl VM_ID=$id: $(wc -l <<<"$vmlog") entries from both services, the helper's with UNIT=banger-vm-$id.service"

# --- 4. banger update --history
expect_rc 0 box_exec "$BANGER" update --history || exit 1
expect_line "$LAST_OUT" "root +$base → 0\\.2\\.0 +updated" "banger update --history" || exit 1
expect_line "$LAST_OUT" "root +0\\.2\\.0 → 0\\.2\\.1 +rolled-back" "banger update --history" || exit 1
expect_line "$LAST_OUT" "^ +the new bangerd did not come up" "banger update --history (the reason)" || exit 1
hist=$LAST_OUT
expect_rc 0 box_exec "$BANGER" update --history --json || exit 1
expect_contains "$LAST_OUT" '"complete":true' "update --history --json as root" || exit 1
expect_contains "$LAST_OUT" '"result":"rolled-back"' "update --history --json as root" || exit 1
expect_rc 0 as_owner "$BANGER" update --history || exit 1
expect_contains "$LAST_OUT" "history is incomplete" "update --history as the owner (not in adm)" || exit 1
proved "banger update --history as root:"$'\n'"$hist"$'\n'"and as the owner it says the history is incomplete"
