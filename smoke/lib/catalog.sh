# shellcheck shell=bash
# shellcheck disable=SC2016 # code that runs inside the box is single-quoted on purpose
# Image catalogs for the catalog scenarios.
#
# catalog_setup makes them on the host with lib/catalog-make.py (a fresh P-256 key, indexes
# signed with openssl) from the smoke guest's kernel and initramfs and two ext4 root filesystems
# built here with mkfs.ext4 -d from the Debian package busybox-static (the guest build's copy),
# each with a marker file /etc/banger-catalog-marker ("banger catalog mini 12" / "… 11"). It
# serves them inside the box on 127.0.0.1:8788 (loopback only: the box has a private network)
# with lib/release-server.py, as the transient unit banger-catalog-server.service. The roots
# and entries are listed in catalog-make.py.
#
# Functions
#   catalog_setup                build and serve the catalogs (fresh on every call)
#   catalog_config ROOT [LINE…]  /etc/banger/config.toml with [catalog] pointing at ROOT's index
#                                (caps: 100 MiB per artefact, 1 GiB per image), the trusted key
#                                in /etc/banger/keys/; LINEs are added to [catalog]
#   catalog_replace ROOT FILE    serve ROOT/FILE(.sig) as ROOT's index.json(.sig) from now on
#   catalog_down                 stop the server, remove the config, the key and the roots
#   catalog_sha256 FILE          sha256 of a file catalog_setup built (rootfs12.ext4, …)
#
# Needs lib/box.sh, lib/assert.sh, lib/banger.sh and lib/vm.sh.

CATALOG_WORK=${CATALOG_WORK:-$SMOKE_DIR/catalog}
CATALOG_BOX=/srv/banger-smoke-catalog
CATALOG_PORT=8788
CATALOG_URL=http://127.0.0.1:$CATALOG_PORT
CATALOG_UNIT=banger-catalog-server.service
CATALOG_BOX_KEY=/etc/banger/keys/smoke-catalog.pub.pem
CATALOG_CONFIG=/etc/banger/config.toml

_catalog_log() { printf '  [catalog %s] %s\n' "$(date +%T)" "$*"; }

# _catalog_rootfs VERSION OUT DEBS: ext4 from busybox-static, with the marker.
_catalog_rootfs() {
    local tree=$CATALOG_WORK/tree-$1 deb
    deb=$(find "$3" -maxdepth 1 -name 'busybox-static_*.deb' | sort | tail -n 1)
    [ -n "$deb" ] || { fail "no busybox-static .deb in $3 (smoke/guest/build.sh keeps them there)"; return 1; }
    rm -rf "$tree" && mkdir -p "$tree/etc" "$tree/sbin" || return 1
    dpkg-deb -x "$deb" "$tree" || return 1
    printf 'banger catalog mini %s\n' "$1" >"$tree/etc/banger-catalog-marker"
    mkfs.ext4 -q -F -L "mini$1" -E root_owner=0:0 -d "$tree" "$2" 16M ||
        { fail "mkfs.ext4 -d $tree failed"; return 1; }
}

catalog_setup() {
    local guest kernel debs
    guest=$("$SMOKE_REPO/smoke/guest/build.sh" 2>/dev/null) || { fail "smoke/guest/build.sh failed"; return 1; }
    kernel=$(sed -n 's/^kernel=//p' <<<"$guest")
    debs=$(dirname "$(dirname "$kernel")")/debs
    rm -rf "$CATALOG_WORK" && mkdir -p "$CATALOG_WORK" || return 1
    _catalog_rootfs 12 "$CATALOG_WORK/rootfs12.ext4" "$debs" || return 1
    _catalog_rootfs 11 "$CATALOG_WORK/rootfs11.ext4" "$debs" || return 1
    _catalog_log "signing the catalog roots in $CATALOG_WORK/out (fresh P-256 key)"
    python3 "$SMOKE_LIB/catalog-make.py" --out "$CATALOG_WORK/out" --vmlinux "$kernel" \
        --initrd "$(dirname "$kernel")/initramfs.cpio.gz" \
        --rootfs12 "$CATALOG_WORK/rootfs12.ext4" --rootfs11 "$CATALOG_WORK/rootfs11.ext4" ||
        { fail "catalog-make.py failed"; return 1; }
    cp "$kernel" "$CATALOG_WORK/vmlinux"
    box_exec systemctl stop "$CATALOG_UNIT" 2>/dev/null || true
    box_exec rm -rf "$CATALOG_BOX" && box_exec mkdir -p "$CATALOG_BOX/www" || return 1
    tar -C "$CATALOG_WORK/out/www" -cf - . | box_exec tar -C "$CATALOG_BOX/www" --no-same-owner -xf - ||
        { fail "could not copy the catalog roots into the box"; return 1; }
    box_exec sh -c 'cat >"$1"' server "$CATALOG_BOX/server.py" <"$SMOKE_LIB/release-server.py" || return 1
    box_exec systemctl reset-failed "$CATALOG_UNIT" 2>/dev/null || true
    box_exec systemd-run --quiet --unit="$CATALOG_UNIT" --collect \
        --description="banger smoke catalog server" \
        python3 "$CATALOG_BOX/server.py" --dir "$CATALOG_BOX/www" --port "$CATALOG_PORT" \
        --log "$CATALOG_BOX/server.log" || { fail "could not start $CATALOG_UNIT"; return 1; }
    wait_for 15 "the catalog server to answer on $CATALOG_URL" box_exec python3 -c '
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$CATALOG_URL/good/index.json" ||
        { show_journal "$CATALOG_UNIT"; return 1; }
}

catalog_config() {
    local root=${1:?catalog_config ROOT} extra=""
    shift
    [ "$#" -gt 0 ] && extra=$(printf '%s\n' "$@")
    box_exec mkdir -p /etc/banger/keys || return 1
    box_exec sh -c 'cat >"$1" && chmod 0644 "$1"' key "$CATALOG_BOX_KEY" \
        <"$CATALOG_WORK/out/keys/catalog.pub.pem" || return 1
    box_exec sh -c 'cat >"$1" && chmod 0644 "$1"' config "$CATALOG_CONFIG" <<EOF
[catalog]
url = "$CATALOG_URL/$root/index.json"
trusted_key_files = ["$CATALOG_BOX_KEY"]
max_artefact_bytes = 104857600
max_unpacked_bytes = 1073741824
$extra
EOF
}

catalog_replace() {
    local dir=$CATALOG_BOX/www/${1:?catalog_replace ROOT FILE}
    box_exec sh -c 'cp "$1/$2" "$1/index.json.new" && cp "$1/$2.sig" "$1/index.json.sig.new" &&
        mv "$1/index.json.new" "$1/index.json" && mv "$1/index.json.sig.new" "$1/index.json.sig"' \
        replace "$dir" "${2:?catalog_replace ROOT FILE}"
}

catalog_down() {
    box_exec systemctl stop "$CATALOG_UNIT" 2>/dev/null || true
    box_exec rm -rf "$CATALOG_BOX" "$CATALOG_BOX_KEY" "$CATALOG_CONFIG"
}

catalog_sha256() { sha256sum "$CATALOG_WORK/${1:?catalog_sha256 FILE}" | cut -d' ' -f1; }
