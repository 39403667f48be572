#!/usr/bin/env bash
# Images pulled from a signed catalog (docs/images.md), from the test's own catalog server on
# loopback in the box (lib/catalog.sh: indexes signed with openssl, a kernel bundle made from the
# smoke guest, ext4 root filesystems made from Debian's busybox-static with mkfs.ext4 -d).
#
# 1. Without [catalog] url a pull says so.
# 2. `image catalog` lists the signed index; `image pull mini --json` takes the newest version
#    (12, not 11) with its kernel entry, reports stages and bytes, and the image's files are
#    byte for byte the catalog's (digests); a VM made from it boots the catalog's kernel and sees
#    the catalog's root filesystem (its marker file) on /dev/vda.
# 3. A name that exists is refused; --name picks another (a raw artefact this time).
# 4. Hostile entries (traversal, link, device, unknown or doubled member, more bytes than signed
#    unpacked, digest mismatch, truncated and oversized downloads, not a file system, not a
#    kernel, over either cap, unknown entry) and malformed references are each refused with a
#    message naming the fault, and leave the image list and the images directory as they were.
# 5. Hostile indexes (other key, no signature, expired, issued in the future, unknown field, a
#    replay of an older index, an unreachable server) are refused the same way.
# 6. Ctrl-C cancels a slow pull: exit 5, nothing left.
# 7. A pull onto a full file system (a small tmpfs over the images directory) fails naming
#    ENOSPC, leaves the tmpfs empty and the image records as they were.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"
# shellcheck source=../lib/catalog.sh
source "$SMOKE_LIB/catalog.sh"

BANGER=$BOX_BIN/banger
IMAGES=/var/lib/banger/images
PULLED=(mini mini11 slowmini)

cleanup() {
    local rc=$?
    if box_exec mountpoint -q "$IMAGES"; then
        box_exec umount "$IMAGES" || true
        box_exec systemctl restart bangerd.service || true
    fi
    vm_remove_all
    local i
    for i in "${PULLED[@]}"; do as_owner "$BANGER" image rm "$i" >/dev/null 2>&1 || true; done
    catalog_down
    return "$rc"
}
trap cleanup EXIT

pull() { as_owner "$BANGER" image pull "$@"; }
# What a refused pull must leave as it was: the image records and the images directory.
state() {
    as_owner "$BANGER" image list --json
    box_exec sh -c 'ls -A "$1" 2>/dev/null || true' ls "$IMAGES"
}
image_field() {
    as_owner "$BANGER" image list --json |
        python3 -c 'import json, sys; print(next(i[sys.argv[2]] for i in json.load(sys.stdin) if i["name"] == sys.argv[1]))' "$1" "$2"
}

wait_daemon_ready 15
catalog_setup || exit 1

# --- 1. no catalog
box_exec rm -f "$CATALOG_CONFIG"
before=$(state)
expect_rc 1 pull mini
expect_contains "$LAST_OUT" "no catalog is configured" "a pull without [catalog] url"
expect_eq "$(state)" "$before" "images after a pull without a catalog"
proved "without [catalog] url: '$(grep -o 'no catalog is configured[^(]*' <<<"$LAST_OUT")'"

# --- 2. a pull, and a VM from it
catalog_config good
expect_rc 0 as_owner "$BANGER" image catalog
expect_line "$LAST_OUT" '^mini:12 +rootfs +guest:1\.0 ' "banger image catalog"
expect_line "$LAST_OUT" '^guest:1\.0 +kernel +- ' "banger image catalog"
expect_rc 0 pull mini --json
events=$LAST_OUT
expect_line "$events" '"event":"started"' "pull events"
expect_line "$events" '"stage":"resolving"' "pull events"
expect_line "$events" '"event":"stage".*"stage":"downloading"' "pull events"
expect_line "$events" '"bytes_done":[1-9][0-9]*,.*"event":"progress"' "pull events"
expect_line "$events" '"stage":"unpacking"' "pull events"
expect_line "$(tail -n 1 <<<"$events")" '"event":"finished".*"result":"done"' "the last pull event"
expect_contains "$(tail -n 1 <<<"$events")" '"image":"mini"' "the last pull event"
expect_eq "$(image_field mini rootfs_sha256)" "$(catalog_sha256 rootfs12.ext4)" "mini's rootfs (the newest version, 12)"
expect_eq "$(image_field mini kernel_sha256)" "$(catalog_sha256 vmlinux)" "mini's kernel (entry guest:1.0)"
expect_no_line "$(box_exec ls -A "$IMAGES")" '^\.pull-' "$IMAGES after the pull"
proved "image pull mini: newest version 12 with kernel guest:1.0, $(grep -c '"event":"progress"' <<<"$events") progress events, files identical to the catalog's (sha256), no temporary directory left"

as_owner "$BANGER" vm create cat1 --image mini >/dev/null
expect_rc 0 as_owner "$BANGER" vm start cat1
marker=$(vm_ssh cat1 "tr -c 'a-z0-9 ' '\\n' </dev/vda | grep -o -m 1 'banger catalog mini [0-9]*'" | tr -d '\r')
expect_eq "$marker" "banger catalog mini 12" "the marker on the VM's /dev/vda"
proved "a VM made from the pulled image boots its kernel and reads '$marker' from its root filesystem"

# --- 3. names
expect_rc 1 pull mini:11
expect_contains "$LAST_OUT" 'an image named "mini" already exists' "pulling a name that exists"
expect_rc 0 pull mini:11 --name mini11
expect_eq "$(image_field mini11 rootfs_sha256)" "$(catalog_sha256 rootfs11.ext4)" "mini11's rootfs (raw)"
proved "a name that exists is refused; --name mini11 pulls the raw mini:11"

# --- 4. hostile entries and bad references
before=$(state)
while IFS='|' read -r ref want; do
    expect_rc 1 pull "$ref"
    expect_contains "$LAST_OUT" "$want" "pull $ref"
    expect_contains "$LAST_OUT" "nothing was imported" "pull $ref"
    expect_eq "$(state)" "$before" "images and $IMAGES after the refused pull of $ref"
    proved "pull $ref refused: $(tail -n 1 <<<"$LAST_OUT" | cut -c1-150)"
done <<'EOF'
trav:1|its path leads out of the bundle
link:1|it is a symbolic link
dev:1|it is a device node
extra:1|a rootfs bundle holds only rootfs
dup:1|it is given twice
swell:1|unpacks to more than its signed unpacked_size of 4096 bytes
digest:1|does not match the SHA-256 the catalog signed for digest:1
short:1|truncated
long:1|larger than the
notext:1|is not an ext2/3/4 file system image
huge:1|more than the 104857600 allowed by [catalog] max_artefact_bytes
vast:1|more than the 1073741824 allowed by [catalog] max_unpacked_bytes
notkernel:1|is not a Linux kernel
nope:1|the catalog has no entry nope:1
EOF
for ref in '../x' 'mini:' 'mini:1/2' 'Mini'; do
    expect_rc 1 pull "$ref"
    expect_contains "$LAST_OUT" "is not a catalog reference NAME[:VERSION]" "pull '$ref'"
    expect_eq "$(state)" "$before" "images after pull '$ref'"
done
proved "malformed references ('../x', 'mini:', 'mini:1/2', 'Mini') are refused, nothing changed"

# --- 5. hostile indexes
while IFS='|' read -r root want; do
    if [ "$root" = unreachable ]; then
        CATALOG_URL=http://127.0.0.1:9 catalog_config x
    else
        catalog_config "$root"
    fi
    expect_rc 1 pull mini --name fresh
    expect_contains "$LAST_OUT" "$want" "pull from root $root"
    expect_eq "$(state)" "$before" "images after a pull from root $root"
    expect_rc 1 as_owner "$BANGER" image catalog
    expect_contains "$LAST_OUT" "$want" "image catalog of root $root"
    proved "index of root $root refused: $(tail -n 1 <<<"$LAST_OUT" | cut -c1-150)"
done <<'EOF'
badsig|the catalog index: signature does not verify with any trusted key
nosig|HTTP 404
expired|the catalog index expired at
future|in the future
malformed|the catalog index is malformed
unreachable|127.0.0.1:9
EOF
catalog_config replay
expect_rc 0 as_owner "$BANGER" image catalog
catalog_replace replay index-old.json
expect_rc 1 pull mini --name fresh
expect_contains "$LAST_OUT" "refusing a replayed older index" "a pull from a replayed index"
expect_eq "$(state)" "$before" "images after a pull from a replayed index"
proved "an older index served after a newer one was verified is refused as a replay"

# --- 6. Ctrl-C
catalog_config good
run_capture as_owner timeout --preserve-status -s INT 3 "$BANGER" image pull slow:12 --name slowmini
expect_eq "$LAST_RC" 5 "exit status of a pull interrupted by Ctrl-C"
expect_contains "$LAST_OUT" "canceling the pull" "an interrupted pull"
expect_contains "$LAST_OUT" "was canceled; nothing was imported" "an interrupted pull"
expect_eq "$(state)" "$before" "images after a canceled pull"
proved "Ctrl-C during the download of slow:12 cancels the pull (exit 5), nothing left"

# --- 7. a full disk
records=$(as_owner "$BANGER" image list --json)
owner_ids=$(box_exec sh -c 'printf "uid=%s,gid=%s" "$(id -u "$1")" "$(id -g "$1")"' ids "$OWNER")
box_exec mount -t tmpfs -o "size=8m,mode=0700,$owner_ids" smoke-full "$IMAGES"
# bangerd's mount namespace is made when it starts: restart it to see the tmpfs.
box_exec systemctl restart bangerd.service
wait_daemon_ready 15
expect_rc 1 pull mini:12 --name full
expect_contains "$LAST_OUT" "No space left on device" "a pull onto a full file system"
expect_contains "$LAST_OUT" "nothing was imported" "a pull onto a full file system"
expect_eq "$(box_exec ls -A "$IMAGES")" "" "the full file system after the failed pull"
expect_eq "$(as_owner "$BANGER" image list --json)" "$records" "the image records after a pull onto a full file system"
proved "a pull onto a full file system: '$(grep -o 'writing [^;]*No space left on device[^;]*' <<<"$LAST_OUT" | head -n 1)'; nothing left, records unchanged"
box_exec umount "$IMAGES"
box_exec systemctl restart bangerd.service
wait_daemon_ready 15
