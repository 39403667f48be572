#!/usr/bin/env bash
# OCI images (docs/images.md) from a real registry in the box: Debian's docker-registry on
# loopback (port 5055), images pushed with skopeo from OCI layouts made by lib/oci-layout.py; the bootable
# one is Debian (mmdebstrap minbase + openssh-server + busybox-static, smoke/guest/oci-rootfs.sh).
#
# 1. Without --kernel, or with a kernel image that has no initrd, the pull is refused.
# 2. `image pull oci://127.0.0.1:5000/smoke/debian:1 --kernel kern --json` reports resolving,
#    downloading (bytes), unpacking, building, and makes the image "debian": an ext4 root
#    filesystem whose files keep the image's ownership and modes (set-user-ID passwd root's,
#    /etc/shadow group shadow) although bangerd never runs as root.
# 3. A VM from it boots through banger's initramfs into the image's own init (busybox init,
#    then OpenSSH): `vm ssh` shows the image's /etc/os-release, its hostname, the layer that
#    whited out /etc/motd, and the host key banger pinned.
# 4. Hostile and unbootable images (a '..' member, a file below a symbolic link, a device node,
#    a whiteout naming '..', no init and no SSH server, arm64 only, a layer altered in the
#    registry's storage), an unknown tag, an unreachable registry, malformed references and a
#    name that exists are each refused naming the fault, leaving the image list and the images
#    directory as they were.
# 5. A pull onto a full file system (a small tmpfs over the images directory) fails naming
#    ENOSPC and leaves the tmpfs empty.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"
# shellcheck source=../lib/oci.sh
source "$SMOKE_LIB/oci.sh"

BANGER=$BOX_BIN/banger
IMAGES=/var/lib/banger/images
REG=$OCI_REG
WORK=$SMOKE_DIR/oci
PULLED=(debian kern konly)

cleanup() {
    local rc=$?
    if box_exec mountpoint -q "$IMAGES"; then
        box_exec umount "$IMAGES" || true
        box_exec systemctl restart bangerd.service || true
    fi
    vm_remove_all
    local i
    for i in "${PULLED[@]}"; do as_owner "$BANGER" image rm "$i" >/dev/null 2>&1 || true; done
    oci_registry_down
    return "$rc"
}
trap cleanup EXIT

pull() { as_owner "$BANGER" image pull "$@"; }
state() {
    as_owner "$BANGER" image list --json
    box_exec sh -c 'ls -A "$1" 2>/dev/null || true' ls "$IMAGES"
}

wait_daemon_ready 15

# --- the registry and the images
oci_registry_up "$WORK" debian trav link dev whiteout noboot digest arm || exit 1
# The registry now serves other bytes (of the same size) for the digest image's layer.
layer=$(cut -d: -f2 "$WORK/layouts/digest.layers")
data=$OCI_REG_BOX/data/docker/registry/v2/blobs/sha256/${layer:0:2}/$layer/data
box_exec sh -c 'size=$(stat -c %s "$1") && head -c "$size" /dev/urandom >"$1.new" && mv "$1.new" "$1"' alter "$data" ||
    { fail "could not alter $data"; exit 1; }
proved "registry $REG serves smoke/{debian,trav,link,dev,whiteout,noboot,digest,arm}:1, pushed with skopeo"

# --- 1. the kernel
expect_rc 0 as_owner "$BANGER" image import kern --kernel "$GUEST_BOX/vmlinux" --initrd "$GUEST_BOX/initramfs.cpio.gz"
expect_rc 0 as_owner "$BANGER" image import konly --kernel "$GUEST_BOX/vmlinux"
before=$(state)
expect_rc 1 pull "oci://$REG/smoke/debian:1"
expect_contains "$LAST_OUT" "an OCI image carries no kernel" "a pull without --kernel"
expect_rc 1 pull "oci://$REG/smoke/debian:1" --kernel konly
expect_contains "$LAST_OUT" 'image "konly" has no initrd' "a pull with a kernel image without initrd"
expect_rc 1 pull "oci://$REG/smoke/debian:1" --kernel nosuch
expect_contains "$LAST_OUT" 'no image named "nosuch"' "a pull with an unknown kernel image"
expect_rc 1 pull mini --kernel kern
expect_contains "$LAST_OUT" "a kernel is chosen only for OCI images" "--kernel for a catalog entry"
expect_eq "$(state)" "$before" "images after the refused pulls"
proved "without --kernel, with a kernel image lacking an initrd, an unknown one, or for a catalog entry: refused, nothing changed"

# --- 2. the pull
expect_rc 0 pull "oci://$REG/smoke/debian:1" --kernel kern --json
events=$LAST_OUT
for stage in resolving downloading unpacking building recording; do
    expect_line "$events" "\"stage\":\"$stage\"" "pull events"
done
expect_line "$events" '"bytes_done":[1-9][0-9]*,.*"event":"progress"' "pull events"
expect_line "$(tail -n 1 <<<"$events")" '"event":"finished".*"result":"done"' "the last pull event"
expect_contains "$(tail -n 1 <<<"$events")" '"image":"debian"' "the last pull event"
expect_no_line "$(box_exec ls -A "$IMAGES")" '^\.pull-' "$IMAGES after the pull"
img=$IMAGES/debian/rootfs
st() { box_exec debugfs -R "stat $1" "$img" 2>/dev/null | grep -oE '(Mode|User|Group): +[0-9]+' | tr -s ' ' | tr '\n' ' '; }
expect_eq "$(st /usr/bin/passwd)" "Mode: 04755 User: 0 Group: 0 " "owner and mode of /usr/bin/passwd in the image"
expect_eq "$(st /etc/shadow)" "Mode: 0640 User: 0 Group: 42 " "owner and mode of /etc/shadow in the image"
expect_eq "$(box_exec stat -c %U "$img")" "$OWNER" "the owner of the image file on the host"
handover=$(box_exec debugfs -R "cat /etc/banger-image" "$img" 2>/dev/null)
expect_line "$handover" '^init=/sbin/init$' "/etc/banger-image"
expect_line "$handover" '^ssh=/usr/sbin/sshd$' "/etc/banger-image"
expect_line "$handover" "oci://$REG/smoke/debian@sha256:[0-9a-f]{64}" "/etc/banger-image"
proved "pull of oci://$REG/smoke/debian:1: stages resolving…recording, $(grep -c '"event":"progress"' <<<"$events") progress events; in the ext4 image passwd is 0:0 04755 and shadow 0:42 0640 while the file is $OWNER's; /etc/banger-image names init=/sbin/init"

# --- 3. a VM of it
expect_rc 0 as_owner "$BANGER" vm create oci1 --image debian --memory 256M
expect_rc 0 as_owner "$BANGER" vm start oci1
os=$(vm_ssh oci1 cat /etc/os-release | tr -d '\r')
expect_line "$os" '^ID=debian$' "/etc/os-release in the VM"
expect_line "$os" '^VERSION_CODENAME=bookworm$' "/etc/os-release in the VM"
expect_eq "$(vm_ssh oci1 cat /etc/banger-smoke-oci | tr -d '\r')" "banger smoke oci image" "the image's top layer in the VM"
expect_eq "$(vm_ssh oci1 'test -e /etc/motd && echo present || echo gone' | tr -d '\r')" "gone" "/etc/motd, whited out by the top layer"
expect_eq "$(vm_ssh oci1 readlink /proc/1/exe | tr -d '\r')" "/usr/bin/busybox" "the VM's PID 1"
expect_eq "$(vm_ssh oci1 hostname | tr -d '\r')" "oci1" "the VM's hostname"
expect_line "$(as_owner "$BANGER" vm logs oci1)" 'handing over to /sbin/init on /dev/vd' "the VM's console"
proved "a VM of the pulled image runs the image's own init (PID 1 /usr/bin/busybox) and OpenSSH: $(sed -n 's/^PRETTY_NAME=//p' <<<"$os"), hostname oci1, /etc/motd whited out"
expect_rc 0 as_owner "$BANGER" vm rm --force oci1

# --- 4. hostile images and bad input
before=$(state)
while IFS='|' read -r ref want; do
    expect_rc 1 pull "$ref" --kernel kern --name fresh
    expect_contains "$LAST_OUT" "$want" "pull $ref"
    expect_eq "$(state)" "$before" "images and $IMAGES after the refused pull of $ref"
    proved "pull $ref refused: $(tail -n 1 <<<"$LAST_OUT" | cut -c1-160)"
done <<EOF
oci://$REG/smoke/trav:1|its path has a '..' component
oci://$REG/smoke/link:1|above it is a symbolic link
oci://$REG/smoke/dev:1|it is a character device
oci://$REG/smoke/whiteout:1|names no plain file name
oci://$REG/smoke/noboot:1|it has no init (/sbin/init is missing
oci://$REG/smoke/noboot:1|it has no SSH server
oci://$REG/smoke/arm:1|the index has no linux/amd64 image (it offers: linux/arm64)
oci://$REG/smoke/digest:1|does not match its digest
oci://$REG/smoke/debian:nosuchtag|HTTP 404
oci://127.0.0.1:9/smoke/debian:1|127.0.0.1:9
EOF
for ref in 'oci://reg/Upper:1' "oci://$REG/../x:1" 'oci://reg/x:' "oci://$REG/smoke/debian@sha256:12"; do
    expect_rc 1 pull "$ref" --kernel kern
    expect_contains "$LAST_OUT" "is not an image reference" "pull '$ref'"
    expect_eq "$(state)" "$before" "images after pull '$ref'"
done
proved "malformed references (a capital in the repository, '..', an empty tag, a short digest) refused, nothing changed"
expect_rc 1 pull "oci://$REG/smoke/debian:1" --kernel kern
expect_contains "$LAST_OUT" 'an image named "debian" already exists' "pulling a name that exists"
expect_eq "$(state)" "$before" "images after pulling a name that exists"

# --- 5. a full disk
box_exec mount -t tmpfs -o size=64m,mode=0700,uid="$(box_exec id -u "$OWNER")" tmpfs "$IMAGES"
box_exec systemctl restart bangerd.service
wait_daemon_ready 15
expect_rc 1 pull "oci://$REG/smoke/debian:1" --kernel kern --name full
expect_contains "$LAST_OUT" "No space left on device" "a pull onto a full file system"
expect_eq "$(box_exec ls -A "$IMAGES")" "" "the tmpfs after the failed pull"
proved "a pull onto a 64 MiB tmpfs fails naming ENOSPC and leaves it empty"
