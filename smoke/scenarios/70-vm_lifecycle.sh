#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# A VM's whole life, as the owner: import the guest image (hashed into the store), create,
# start (banger waits until SSH answers and pins the host key), `vm ssh -- cat boot_id`, logs,
# list/show; the VMM is the transient unit banger-vm-<id>.service in banger.slice running as
# the owner, not a child of either service; stop, rm: record, unit, tap and files gone. Also
# prints the time from `banger vm start` to SSH answering beside raw QEMU on the same image.
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
vm_remove_all_and_image   # this scenario imports the image itself

# --- doctor: which back end and accelerator, and why ---------------------------------------
expect_rc 0 as_owner "$BOX_BIN/banger" doctor
expect_line "$LAST_OUT" '^PASS vm backend: qemu at .*qemu-system-x86_64: backend auto: Firecracker is not installed' \
    "doctor's back end line"
expect_line "$LAST_OUT" '^(WARN accelerator: tcg .+|PASS accelerator: kvm .+)' "doctor's accelerator line"
expect_line "$LAST_OUT" '^PASS tun device: ' "doctor's tun device line"
proved "doctor says which back end and accelerator VMs get, and why"

# --- image ---------------------------------------------------------------------------------
expect_rc 0 as_owner "$BOX_BIN/banger" image import "$GUEST_IMAGE" \
    --kernel "$GUEST_BOX/vmlinux" --initrd "$GUEST_BOX/initramfs.cpio.gz"
expect_contains "$LAST_OUT" "imported image $GUEST_IMAGE" "image import output"
want_sha=$(box_exec sha256sum "$GUEST_BOX/initramfs.cpio.gz" | cut -d' ' -f1)
expect_rc 0 as_owner "$BOX_BIN/banger" image list --json
expect_contains "$LAST_OUT" "$want_sha" "image list --json"
expect_rc 0 box_exec cmp "$GUEST_BOX/vmlinux" /var/lib/banger/images/$GUEST_IMAGE/kernel
proved "image import copies the files into /var/lib/banger/images and records their SHA-256"

# --- create + start ------------------------------------------------------------------------
expect_rc 0 as_owner "$BOX_BIN/banger" vm create web --image "$GUEST_IMAGE" --cpus 1 --memory 256M
id=$(vm_id web)
unit=banger-vm-$id.service
expect_eq "$(vm_field web state)" stopped "state after create"
t0=$EPOCHREALTIME
expect_rc 0 as_owner "$BOX_BIN/banger" vm start web
t1=$EPOCHREALTIME
expect_contains "$LAST_OUT" "SSH answered after" "vm start output"
banger_secs=$(grep -oE 'SSH answered after [0-9.]+' <<<"$LAST_OUT" | grep -oE '[0-9.]+$')
proved "vm start waits until SSH answers: $(tail -n 1 <<<"$LAST_OUT")"
expect_eq "$(vm_field web state)" running "state after start"
key=$(vm_field web host_key)
expect_contains "$key" "ssh-ed25519 " "pinned host key"
proved "the guest's host key was pinned on first contact"

expect_eq "$(box_exec systemctl show -p Slice --value "$unit")" banger.slice "slice of $unit"
expect_eq "$(box_exec systemctl show -p User --value "$unit")" "$OWNER" "user of $unit"
pid=$(box_exec systemctl show -p MainPID --value "$unit")
expect_ne "$pid" 0 "MainPID of $unit"
expect_eq "$(box_exec ps -o user= -p "$pid" | tr -d ' ')" "$OWNER" "the VMM process runs as"
expect_rc 0 box_exec grep -q "/banger.slice/$unit" "/proc/$pid/cgroup"
proved "the VMM (pid $pid) runs as $OWNER in its own unit $unit in banger.slice"
expect_rc 0 box_exec ip -o link show "bt-$id"
expect_contains "$LAST_OUT" "master banger0" "ip link show bt-$id"
proved "tap bt-$id is attached to the bridge banger0"

# --- ssh, logs, list -----------------------------------------------------------------------
boot_id=$(vm_boot_id web)
[[ $boot_id =~ ^[0-9a-f-]{36}$ ]] || fail "boot_id over SSH: '$boot_id'"
expect_rc 0 vm_ssh web hostname
expect_eq "$(tr -d '\r\n' <<<"$LAST_OUT")" web "the guest's hostname"
proved "vm ssh reaches the guest: boot_id $boot_id, hostname web"
expect_rc 0 as_owner "$BOX_BIN/banger" vm logs web
expect_contains "$LAST_OUT" "BANGER-GUEST: ready" "vm logs"
proved "vm logs shows the serial console"
expect_rc 0 as_owner "$BOX_BIN/banger" vm list
expect_line "$LAST_OUT" "^web +running " "vm list"
expect_eq "$(vm_boot_id web)" "$boot_id" "boot_id on a second connection"

# --- timing beside raw QEMU on the same image ------------------------------------------------
# The same image under plain QEMU (no banger, no systemd unit), booted to SSH in this run.
expect_rc 0 box_exec bash "$GUEST_TOOLS_BOX/raw-boot.sh" --kernel "$GUEST_BOX/vmlinux" \
    --initrd "$GUEST_BOX/initramfs.cpio.gz"
raw=$(grep -oE 'boot-to-ssh [0-9.]+' <<<"$LAST_OUT" | grep -oE '[0-9.]+$') || raw=""
[ -n "$raw" ] || fail "raw-boot.sh printed no boot-to-ssh time"
echo "FIGURE: vm start → SSH answering: banger ${banger_secs}s (whole command $(
    python3 -c 'import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))' "$t0" "$t1")s), raw QEMU ${raw}s, ratio $(
    python3 -c 'import sys; print(round(float(sys.argv[1]) / float(sys.argv[2]), 2))' "$banger_secs" "$raw")"

# --- a VMM that dies shows as failed, and starts again ---------------------------------------
expect_rc 0 box_exec kill -KILL "$pid"
vm_failed() { [ "$(vm_field web state)" = failed ]; }
wait_for 20 "VM web to show as failed" vm_failed
expect_rc 0 as_owner "$BOX_BIN/banger" vm list
expect_line "$LAST_OUT" "^web +failed " "vm list after the VMM was killed"
expect_rc 1 box_exec ip -o link show "bt-$id"
proved "the dead VMM's unit removed its tap bt-$id as it ended (no banger command ran)"
expect_rc 0 as_owner "$BOX_BIN/banger" vm start web
expect_eq "$(vm_field web state)" running "state after starting the failed VM again"
expect_ne "$(vm_boot_id web)" "$boot_id" "boot_id after the restart"
pid=$(box_exec systemctl show -p MainPID --value "$unit")
proved "a VMM killed with SIGKILL shows as failed; vm start boots it again (a new boot_id, a new tap)"

# --- stop, rm ------------------------------------------------------------------------------
expect_rc 0 as_owner "$BOX_BIN/banger" vm stop web
expect_eq "$(vm_field web state)" stopped "state after stop"
expect_rc 1 box_exec ip -o link show "bt-$id"
expect_rc 0 as_owner "$BOX_BIN/banger" vm rm web
expect_rc 0 as_owner "$BOX_BIN/banger" vm list --json
expect_eq "$(tr -d ' \n' <<<"$LAST_OUT")" "[]" "VM list after rm"
expect_eq "$(box_exec systemctl show -p LoadState --value "$unit")" not-found "$unit after rm"
expect_rc 1 box_exec test -e "/var/lib/banger/vms/$id"
proved "after stop + rm: no record, no unit, no tap, no files"

# --- a VM created without a name gets one --------------------------------------------------
expect_rc 0 as_owner "$BOX_BIN/banger" vm create --image "$GUEST_IMAGE"
created=$LAST_OUT
picked=$(sed -n 's/^created vm \([a-z0-9-]*\) .*/\1/p' <<<"$created")
expect_line "$picked" '^[a-z]+-[a-z]+(-[0-9]+)?$' "the name picked for an unnamed VM"
expect_eq "$(vm_field "$picked" state)" stopped "the unnamed VM"
expect_rc 0 as_owner "$BOX_BIN/banger" vm rm "$picked"
proved "vm create without a name picks one and prints it: '$(head -n 1 <<<"$created")'"

expect_rc 0 as_owner "$BOX_BIN/banger" image rm "$GUEST_IMAGE"
expect_rc 1 box_exec test -e "/var/lib/banger/images/$GUEST_IMAGE"
proved "image rm removes the record and the files"
