#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# Bad VM and image requests each get a clear error naming what was wrong, and change nothing:
# unknown image, duplicate name, impossible sizes, malformed names, missing image files (at
# import and inside the store), a deleted image in use; and the second user cannot touch the
# owner's VM at all (refused by the bus policy, exit 3). The store's rows, the files under
# /var/lib/banger and the units are compared before and after every refusal.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

cleanup() {
    local rc=$?
    vm_remove_all
    as_owner "$BOX_BIN/banger" image rm broken >/dev/null 2>&1 || true
    return "$rc"
}
trap cleanup EXIT

state() {   # everything a refusal must leave alone
    box_exec sh -c '
        find /var/lib/banger/images /var/lib/banger/vms -printf "%p %s %m\n" 2>/dev/null | sort
        sqlite3 -readonly /var/lib/banger/banger.db "SELECT * FROM vms; SELECT * FROM images;" 2>/dev/null ||
            python3 -c "
import sqlite3
c = sqlite3.connect(\"file:/var/lib/banger/banger.db?mode=ro\", uri=True)
for t in (\"vms\", \"images\"):
    for r in c.execute(\"SELECT * FROM \" + t): print(t, r)"
        systemctl list-units --all --plain --no-legend "banger-vm-*" | sort
        ip -o link show | grep -oE "bt-[0-9a-f]+" | sort'
}

refused() {   # refused RC NEEDLE WHAT CMD...: exit RC, NEEDLE in the output, nothing changed
    local rc=$1 needle=$2 what=$3 before
    shift 3
    before=$(state)
    expect_rc "$rc" "$@"
    expect_contains "$LAST_OUT" "$needle" "$what"
    expect_eq "$(state)" "$before" "state after: $what"
    proved "$what: exit $rc, '$needle', nothing changed"
}

expect_rc 0 vm_image_ready
expect_rc 0 as_owner "$BOX_BIN/banger" vm create web --image "$GUEST_IMAGE"
B=$BOX_BIN/banger

refused 1 'no image named "nope"' "unknown image" as_owner "$B" vm create db --image nope
refused 1 'a VM named "web" already exists' "duplicate VM name" as_owner "$B" vm create web --image "$GUEST_IMAGE"
refused 1 "MiB of memory is impossible" "more memory than the host has" \
    as_owner "$B" vm create db --image "$GUEST_IMAGE" --memory 512G
refused 2 "memory" "a memory size that is no size" as_owner "$B" vm create db --image "$GUEST_IMAGE" --memory lots
refused 2 "memory" "zero memory" as_owner "$B" vm create db --image "$GUEST_IMAGE" --memory 0
refused 1 "CPUs is impossible" "more CPUs than the host has" as_owner "$B" vm create db --image "$GUEST_IMAGE" --cpus 999
refused 1 "not valid" "a name that is not a hostname" as_owner "$B" vm create ../etc --image "$GUEST_IMAGE"
refused 1 "does not exist" "an image whose kernel file is missing" \
    as_owner "$B" image import other --kernel /nonexistent/vmlinux
expect_rc 0 box_exec install -m 0644 "$GUEST_BOX/vmlinux" /tmp/smoke-vmlinux
refused 1 "private /tmp" "a kernel in /tmp, which bangerd cannot see" \
    as_owner "$B" image import other --kernel /tmp/smoke-vmlinux
expect_rc 0 box_exec rm -f /tmp/smoke-vmlinux
refused 1 "not a Linux kernel" "an image whose kernel is not a kernel" \
    as_owner "$B" image import other --kernel /etc/hostname
refused 1 "already exists" "importing over an existing image" \
    as_owner "$B" image import "$GUEST_IMAGE" --kernel "$GUEST_BOX/vmlinux"
refused 1 "is used by" "removing an image a VM uses" as_owner "$B" image rm "$GUEST_IMAGE"
refused 1 'no VM named "ghost"' "starting an unknown VM" as_owner "$B" vm start ghost

# An image whose file vanished from the store after import.
expect_rc 0 as_owner "$B" image import broken --kernel "$GUEST_BOX/vmlinux" --initrd "$GUEST_BOX/initramfs.cpio.gz"
expect_rc 0 box_exec rm /var/lib/banger/images/broken/initrd
refused 1 "is damaged" "an image whose initrd is missing from the store" \
    as_owner "$B" vm create db --image broken

# The second user: refused by the bus policy before bangerd sees anything.
for cmd in "vm list" "vm show web" "vm start web" "vm stop web" "vm rm web" "vm ssh web -- true" \
    "image list" "image rm $GUEST_IMAGE"; do
    # shellcheck disable=SC2086 # split the command words on purpose
    refused 3 "only that user and root" "$OTHER runs banger $cmd" box_as "$OTHER" "$B" $cmd
    # The hint and a plain reason; the bus's own rule listing only with --verbose.
    expect_contains "$LAST_OUT" "the system bus refused the call" "$OTHER runs banger $cmd"
    expect_not_contains "$LAST_OUT" "Rejected send message" "$OTHER runs banger $cmd (without --verbose)"
done
expect_rc 3 box_as "$OTHER" "$B" --verbose vm list
expect_contains "$LAST_OUT" "the bus said: Rejected send message" "$OTHER runs banger --verbose vm list"
proved "$OTHER sees the hint and a plain reason; dbus-daemon's own text only with --verbose"
expect_eq "$(vm_field web state)" stopped "the owner's VM after the other user's attempts"
