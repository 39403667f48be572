#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# Trust on first use: the host key pinned when the VM first answered is the only one banger
# accepts. The guest keeps its key across a stop/start (it lives on the VM's config disk), so a
# restart is accepted; after the key region of the config disk is wiped, the guest comes up
# with a new key and both `vm start` and `vm ssh` refuse it with a clear message, exit 1, and
# the pin is not replaced.
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

expect_rc 0 vm_up keyed
pinned=$(vm_field keyed host_key)
id=$(vm_id keyed)
first_boot=$(vm_boot_id keyed)

expect_rc 0 as_owner "$BOX_BIN/banger" vm stop keyed
expect_rc 0 as_owner "$BOX_BIN/banger" vm start keyed
expect_ne "$(vm_boot_id keyed)" "$first_boot" "boot_id after a restart"
expect_eq "$(vm_field keyed host_key)" "$pinned" "pinned key after a restart"
proved "a restarted VM (new boot_id) keeps its host key and is accepted"

expect_rc 0 as_owner "$BOX_BIN/banger" vm stop keyed
# The guest's key lives in the config disk's second 64 KiB: wipe it, as a replaced disk would.
expect_rc 0 as_owner dd if=/dev/zero of="/var/lib/banger/vms/$id/config.img" bs=65536 seek=1 count=1 \
    conv=notrunc status=none
expect_rc 1 as_owner "$BOX_BIN/banger" vm start keyed
expect_contains "$LAST_OUT" "refusing to connect to VM keyed: its SSH host key changed since first use" \
    "vm start with a changed host key"
proved "vm start refuses the changed key: $(grep -m1 refusing <<<"$LAST_OUT")"
expect_rc 1 as_owner "$BOX_BIN/banger" vm ssh keyed -- true
expect_contains "$LAST_OUT" "refusing to connect to VM keyed: its SSH host key changed since first use" \
    "vm ssh with a changed host key"
expect_contains "$LAST_OUT" "delete and recreate the VM" "the advice"
expect_eq "$(vm_field keyed host_key)" "$pinned" "the pin after the refusals"
proved "vm ssh refuses too (exit 1), and the pinned key was not replaced"
