#!/usr/bin/env bash
# VMs and images as live D-Bus objects, watched the way desktop tools watch them.
#
# Three clients follow bangerd while VMs come and go: `banger events --json` and `gdbus
# monitor` (GLib's own client, as a GNOME tool would) as the owner, and `gdbus monitor` as the
# other user.
# 1. Importing the image and creating and starting a VM appear as InterfacesAdded and
#    PropertiesChanged (State running), in order; `banger vm list --watch --json` lists them.
# 2. A VM whose VMM is killed from a shell (nobody asks banger) turns State=failed on the bus.
# 3. Stopping and deleting a VM: State stopped, then InterfacesRemoved; a client that still
#    holds its path gets org.banger.Error.NotFound from a method and from Properties.Get, and
#    GetManagedObjects no longer lists it.
# 4. The other user sees none of it (the bus policy keeps Daemon1's signals from other users)
#    and cannot read the objects.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

BANGER=$BOX_BIN/banger
WORK=/tmp/smoke-objects
WATCHERS=(smoke-events-owner.service smoke-gdbus-owner.service smoke-gdbus-other.service)

cleanup() {
    local rc=$?
    local u
    for u in "${WATCHERS[@]}"; do box_exec systemctl stop "$u" 2>/dev/null || true; done
    vm_remove_all
    return "$rc"
}
trap cleanup EXIT

# watch UNIT USER FILE CMD...: CMD as USER in the background, stdout to FILE, stderr to FILE.err.
watch() {
    local unit=$1 user=$2 file=$3
    shift 3
    box_exec systemctl reset-failed "$unit" 2>/dev/null || true
    box_exec systemd-run --quiet --collect --unit="$unit" -p "User=$user" \
        -p "StandardOutput=truncate:$file" -p "StandardError=truncate:$file.err" \
        timeout 300 "$@"
}
file_has() { box_exec grep -qE -- "$2" "$1"; }

wait_daemon_ready 15
vm_remove_all_and_image
box_exec sh -c 'rm -rf "$1" && mkdir -m 1777 "$1"' mk "$WORK"
watch smoke-events-owner.service "$OWNER" "$WORK/events.json" "$BANGER" events --json
for who in "$OWNER" other; do
    watch "smoke-gdbus-$( [ "$who" = "$OWNER" ] && echo owner || echo other).service" "$who" \
        "$WORK/gdbus-$who.txt" gdbus monitor --system --dest org.banger.Daemon1
done
wait_for 15 "banger events to follow" file_has "$WORK/events.json.err" 'following changes' || exit 1
wait_for 15 "gdbus monitor (owner) to follow" file_has "$WORK/gdbus-$OWNER.txt" 'is owned by' || exit 1
wait_for 15 "gdbus monitor (other) to start" file_has "$WORK/gdbus-other.txt" 'org.banger.Daemon1' || exit 1

# --- 1. image and VMs appear
expect_rc 0 vm_image_ready
expect_rc 0 vm_up obj1
id1=$(vm_id obj1)
expect_rc 0 vm_up obj2
id2=$(vm_id obj2)
path1=/org/banger/Daemon1/vm/$id1
path2=/org/banger/Daemon1/vm/$id2
running() { file_has "$WORK/events.json" "\"name\":\"$1\".*\"properties\":\\{[^}]*\"State\":\"running\""; }
wait_for 15 "banger events to see obj1 running" running obj1 || exit 1
wait_for 15 "banger events to see obj2 running" running obj2 || exit 1
gd_owner=$(box_exec cat "$WORK/gdbus-$OWNER.txt")
expect_line "$gd_owner" "InterfacesAdded \\(objectpath '$path1', \\{'org.banger.Daemon1.Vm'" "gdbus monitor (owner)"
expect_line "$gd_owner" "^$path1: org.freedesktop.DBus.Properties.PropertiesChanged \\('org.banger.Daemon1.Vm', \\{'State': <'running'>" "gdbus monitor (owner)"
expect_line "$gd_owner" "InterfacesAdded \\(objectpath '/org/banger/Daemon1/image/smoke_2dguest'" "gdbus monitor (owner)"
proved "creating and starting obj1 and obj2 and importing the image are InterfacesAdded and PropertiesChanged State=running for GLib's gdbus monitor and for banger events"

# --- 2. a VMM killed behind banger's back
expect_rc 0 box_exec systemctl kill --signal=KILL "banger-vm-$id2.service"
failed() { file_has "$WORK/events.json" "\"name\":\"obj2\".*\"State\":\"failed\""; }
wait_for 15 "banger events to see obj2 failed" failed || exit 1
wait_for 15 "gdbus monitor to see obj2 failed" file_has "$WORK/gdbus-$OWNER.txt" \
    "^$path2: org.freedesktop.DBus.Properties.PropertiesChanged \\('org.banger.Daemon1.Vm', \\{'State': <'failed'>" || exit 1
proved "obj2's VMM killed with systemctl kill: State=failed on the bus, with no banger command run"

run_capture as_owner timeout --preserve-status -s INT 5 "$BANGER" vm list --watch --json
expect_line "$LAST_OUT" '"event":"present".*"name":"obj1".*"State":"running"' "vm list --watch --json"
expect_line "$LAST_OUT" '"event":"present".*"name":"obj2".*"State":"failed"' "vm list --watch --json"
expect_no_line "$LAST_OUT" '"kind":"image"' "vm list --watch --json (VMs only)"
proved "vm list --watch --json lists obj1 running and obj2 failed, then follows"

# --- 3. stop and delete
expect_rc 0 as_owner "$BANGER" vm stop obj1
expect_rc 0 as_owner "$BANGER" vm rm obj1
wait_for 15 "banger events to see obj1 removed" \
    file_has "$WORK/events.json" '"event":"removed".*"name":"obj1"' || exit 1
wait_for 15 "gdbus monitor to see obj1 removed" \
    file_has "$WORK/gdbus-$OWNER.txt" "InterfacesRemoved \\(objectpath '$path1'" || exit 1
# A client still holding the path: GLib names the error, busctl prints its message.
expect_rc '!0' as_owner gdbus call --system --dest org.banger.Daemon1 --object-path "$path1" \
    --method org.banger.Daemon1.Vm.Start
expect_contains "$LAST_OUT" "org.banger.Error.NotFound" "Start on a deleted VM's path"
expect_contains "$LAST_OUT" "obj1" "Start on a deleted VM's path"
expect_rc '!0' as_owner busctl --system get-property org.banger.Daemon1 "$path1" \
    org.banger.Daemon1.Vm State
expect_contains "$LAST_OUT" "was deleted" "busctl get-property State of a deleted VM"
expect_rc 0 as_owner busctl --system --json=short call org.banger.Daemon1 /org/banger/Daemon1 \
    org.freedesktop.DBus.ObjectManager GetManagedObjects
expect_not_contains "$LAST_OUT" "$path1" "GetManagedObjects after obj1 was deleted"
expect_contains "$LAST_OUT" "$id2" "GetManagedObjects after obj1 was deleted (obj2 stays)"
proved "a deleted VM's path answers org.banger.Error.NotFound and is no longer listed"
# The order banger events saw for obj1: added, running, stopped, removed.
order=$(box_exec cat "$WORK/events.json" | python3 -c '
import json, sys
seen = []
for line in sys.stdin:
    e = json.loads(line)
    if e.get("name") != "obj1":
        continue
    state = e.get("properties", {}).get("State")
    if e["event"] in ("added", "removed"):
        seen.append(e["event"])
    elif state in ("running", "stopped"):
        seen.append(state)
print(" ".join(seen))')
expect_line "$order" '^added( [a-z]+)* running( [a-z]+)* stopped( [a-z]+)* removed$' "obj1's events in order"
proved "obj1's events, in order: $order"

# --- 4. the other user
for u in "${WATCHERS[@]}"; do box_exec systemctl stop "$u" 2>/dev/null || true; done
gd_other=$(box_exec cat "$WORK/gdbus-other.txt")
expect_not_contains "$gd_other" "org.banger.Daemon1.Vm" "what the other user's gdbus monitor saw"
expect_not_contains "$gd_other" "$id1" "what the other user's gdbus monitor saw"
expect_not_contains "$gd_other" "smoke_2dguest" "what the other user's gdbus monitor saw"
expect_rc '!0' box_as other busctl --system call org.banger.Daemon1 /org/banger/Daemon1 \
    org.freedesktop.DBus.ObjectManager GetManagedObjects
expect_contains "$LAST_OUT" "ccess denied" "GetManagedObjects as the other user"
proved "the other user received none of these signals ($(wc -l <<<"$gd_other") lines of gdbus monitor, none about banger's objects) and GetManagedObjects is refused"
