#!/usr/bin/env bash
# VM state is the owner's alone. After an image import, a VM create and a start, every
# directory under /var/lib/banger is 0700 and every file 0600 (the store, the images, the VM's
# config disk with the guest's private host key, its console and VMM logs, the SSH key), so a
# user who shares the owner's primary group reads none of it: `other`, added to that group,
# is refused. An older install's 0750 state directory is made 0700 again when bangerd starts.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

cleanup() {
    local rc=$?
    vm_remove_all
    box_exec gpasswd -d "$OTHER" "$(box_exec id -gn "$OWNER")" >/dev/null 2>&1 || true
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
expect_rc 0 vm_up priv
id=$(vm_id priv)
group=$(box_exec id -gn "$OWNER")

# Modes of everything under the state directory (symbolic links would be listed too).
listing=$(box_exec find /var/lib/banger -printf '%y %m %u %p\n')
echo "$listing" | sed 's/^/  /'
for p in /var/lib/banger "/var/lib/banger/vms/$id" "/var/lib/banger/images/$GUEST_IMAGE" \
    /var/lib/banger/ssh; do
    expect_line "$listing" "^d 700 $OWNER $p\$" "mode of $p"
done
for f in /var/lib/banger/banger.db "/var/lib/banger/vms/$id/config.img" \
    "/var/lib/banger/vms/$id/serial.log" "/var/lib/banger/vms/$id/vmm.log" \
    "/var/lib/banger/images/$GUEST_IMAGE/kernel" /var/lib/banger/ssh/id_ed25519; do
    expect_line "$listing" "^f 600 $OWNER $f\$" "mode of $f"
done
expect_no_line "$listing" '^d 7[^0]|^d 70[^0]|^f 6[^0]|^f 60[^0]' "a group- or world-accessible entry"
proved "after import, create and start: every directory under /var/lib/banger is 0700 and every file 0600, owned by $OWNER"

# A user in the owner's primary group reads nothing.
expect_rc 0 box_exec usermod -aG "$group" "$OTHER"
for f in "/var/lib/banger/vms/$id/config.img" "/var/lib/banger/vms/$id/serial.log" \
    /var/lib/banger/banger.db; do
    expect_rc '!0' box_unit -p "User=$OTHER" cat "$f"
    expect_contains "$LAST_OUT" "Permission denied" "$OTHER (in group $group) reading $f"
done
proved "$OTHER, a member of $OWNER's primary group $group, cannot read the config disk, the console or the store"

# An install from before keeps a 0750 directory until bangerd starts.
expect_rc 0 box_exec chmod 0750 /var/lib/banger
expect_rc 0 box_exec systemctl restart bangerd.service
wait_daemon_ready 15
expect_eq "$(box_exec stat -c %a /var/lib/banger)" 700 "mode of /var/lib/banger after bangerd restarted"
proved "a 0750 /var/lib/banger left by an older install is 0700 again once bangerd starts"
