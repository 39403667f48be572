#!/usr/bin/env bash
# VM units are sandboxed. A VM still boots and answers SSH; `systemd-analyze security` is
# printed for both services and for the VM's unit, which must reach "OK" or better; the unit
# carries the properties that confine the VMM (read-only system but for the VM's directory,
# no capabilities, closed device policy with /dev/net/tun, Unix sockets only, a system call
# filter, limits), and from inside the VMM's own mount namespace the system, the images and
# the other VMs' directories are read-only while its own directory is writable.
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

wait_daemon_ready 15
expect_rc 0 vm_up sandboxed
started=$LAST_OUT
id=$(vm_id sandboxed)
unit=banger-vm-$id.service
expect_eq "$(vm_ssh sandboxed echo alive | tr -d '\r')" alive "a command over SSH in the sandboxed VM"
proved "the sandboxed VM boots and answers SSH: $started"

for u in bangerd-root.service bangerd.service "$unit"; do
    report=$(box_exec systemd-analyze security --no-pager "$u")
    echo "--- systemd-analyze security $u"
    grep -E '✗|Overall' <<<"$report" | sed 's/^/  /'
    level=$(grep -oE 'Overall exposure level for [^:]+: [0-9.]+ [A-Z]+' <<<"$report" | awk '{print $(NF-1), $NF}')
    echo "FIGURE: systemd-analyze security $u: $level"
    [ "$u" = "$unit" ] || continue
    case ${level#* } in
        OK | SAFE) proved "the VM's unit $unit is rated $level by systemd-analyze security" ;;
        *) fail "the VM's unit $unit is rated $level (want OK or better)" ;;
    esac
done

props=$(box_exec systemctl show "$unit" -p NoNewPrivileges -p ProtectSystem -p ProtectHome \
    -p PrivateTmp -p DevicePolicy -p DeviceAllow -p CapabilityBoundingSet \
    -p RestrictAddressFamilies -p ReadWritePaths -p UMask -p LimitNOFILE -p TasksMax \
    -p MemoryDenyWriteExecute -p RestrictNamespaces)
echo "$props" | sed 's/^/  /'
for want in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    DevicePolicy=closed 'CapabilityBoundingSet=$' RestrictAddressFamilies=AF_UNIX \
    "ReadWritePaths=/var/lib/banger/vms/$id\$" UMask=0077 LimitNOFILE=1024 \
    MemoryDenyWriteExecute=no RestrictNamespaces=yes; do
    expect_line "$props" "^$want" "$unit property $want"
done
expect_line "$props" '^DeviceAllow=.*/dev/net/tun rw' "$unit DeviceAllow"
proved "$unit: read-only system but its own directory, no capabilities, closed devices but /dev/net/tun, AF_UNIX only, umask 0077 (MemoryDenyWriteExecute stays off under TCG)"

pid=$(main_pid "$unit")
inside() { box_exec nsenter -t "$pid" -m -- "$@"; }
expect_rc '!0' inside touch /etc/banger-sandbox-test
expect_contains "$LAST_OUT" "Read-only file system" "the VMM writing /etc"
expect_rc '!0' inside touch "/var/lib/banger/images/$GUEST_IMAGE/kernel"
expect_contains "$LAST_OUT" "Read-only file system" "the VMM writing its image's kernel"
expect_rc 0 inside sh -c "echo x >/var/lib/banger/vms/$id/sandbox-test && rm /var/lib/banger/vms/$id/sandbox-test"
proved "inside the VMM's mount namespace /etc and the image are read-only, its own directory is writable"
