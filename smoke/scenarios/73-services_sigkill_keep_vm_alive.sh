#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# SIGKILL bangerd-root and bangerd (and restart them through their units): they come back
# (systemd restarts them; D-Bus activation brings them for the next call), the VM runs on with
# the same boot_id, its unit and VMM process are untouched, and it is listed as running:
# the new bangerd re-adopted it.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

cleanup() {
    local rc=$?
    vm_remove_all
    return "$rc"
}
trap cleanup EXIT

expect_rc 0 vm_up survivor
boot_id=$(vm_boot_id survivor)
id=$(vm_id survivor)
vmm=$(main_pid "banger-vm-$id.service")

for svc in bangerd-root.service bangerd.service; do
    old=$(main_pid "$svc")
    expect_ne "$old" 0 "MainPID of $svc"
    expect_rc 0 box_exec kill -KILL "$old"
    is_back() { local p; p=$(main_pid "$1"); [ "$p" != 0 ] && [ "$p" != "$2" ] && [ "$(unit_state "$1")" = active ]; }
    wait_for 30 "$svc back after SIGKILL" is_back "$svc" "$old"
    proved "$svc SIGKILLed (pid $old) and back (pid $(main_pid "$svc"))"
done
wait_daemon_ready
expect_eq "$(main_pid "banger-vm-$id.service")" "$vmm" "the VMM's pid after both SIGKILLs"
expect_eq "$(vm_field survivor state)" running "state listed by the new bangerd"
expect_eq "$(vm_boot_id survivor)" "$boot_id" "boot_id after both SIGKILLs"
proved "the VM runs on (VMM pid $vmm, boot_id $boot_id) and is listed as running"

expect_rc 0 box_exec systemctl stop bangerd.service bangerd-root.service
expect_eq "$(main_pid "banger-vm-$id.service")" "$vmm" "the VMM's pid with both services stopped"
expect_rc 0 as_owner "$BOX_BIN/banger" vm list
expect_line "$LAST_OUT" "^survivor +running " "vm list after activation"
expect_eq "$(vm_boot_id survivor)" "$boot_id" "boot_id after stop + activation"
proved "stopping both services leaves the VM alone; the next call activates them and finds it running"
