#!/usr/bin/env bash
# A VM runs while banger updates itself (v(base) → v0.2.0: new binaries, both services
# restarted): SSH probes every 0.5 s (plain ssh with the pinned host key, so they do not depend
# on banger's services) never fail, the same boot_id answers before,
# during and after, the VMM process is the same, and the new bangerd lists the VM as running.
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

vm_through_update good 0 '^updated v.+ → v0\.2\.0$' "banger update to 0.2.0 with a VM running"
expect_install_is 0.2.0 "after the update"
