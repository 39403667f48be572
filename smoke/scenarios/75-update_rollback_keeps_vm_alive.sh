#!/usr/bin/env bash
# A VM runs while an update to the broken 0.2.1 (its bangerd cannot start) installs, fails and
# rolls back (services restarted twice): SSH probes every 0.5 s never fail, the same boot_id
# answers throughout, and the restored bangerd lists the VM as running.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

cleanup() {
    local rc=$?
    vm_probe_stop
    vm_remove_all
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

vm_through_update broken 4 '^update failed: .+ \(rolled back to previous install\)$' \
    "banger update to the broken 0.2.1 with a VM running"
expect_install_is "$(release_base_version)" "after the rollback"
