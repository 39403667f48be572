#!/usr/bin/env bash
# smoke/guest/oci-rootfs.sh - the root filesystem of the smoke suite's OCI image, from Debian packages.
#
# usage: smoke/guest/oci-rootfs.sh [--out DIR]      DIR: default smoke/.cache/oci
#
# Prints the path of a tarball (rootfs.tar) on stdout; progress goes to stderr. The tree is made
# by mmdebstrap from the host's own apt sources (variant minbase, plus openssh-server and
# busybox-static) with busybox as /sbin/init and an inittab that mounts /run and keeps sshd
# running; no device nodes (the guest's /dev is the kernel's) and no SSH host keys (the VM gets
# its own). Needs root. Cached in DIR/<key>/ (the key hashes this script and the candidate
# versions of the packages), built in DIR/.build.* and renamed into place.
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(dirname "$GUEST_DIR")/.cache/oci
log() { printf 'oci-rootfs.sh: %s\n' "$*" >&2; }
die() { printf 'oci-rootfs.sh: error: %s\n' "$*" >&2; exit 1; }
while [ "$#" -gt 0 ]; do
    case $1 in
        --out) OUT=${2:?--out needs a directory}; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (usage: oci-rootfs.sh [--out DIR])" ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || die "mmdebstrap needs root here"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (make deps)"

PKGS=(openssh-server busybox-static)
# shellcheck disable=SC1091
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")
versions=$(apt-cache policy "${PKGS[@]}" | awk '/^[^ ].*:$/{p=$1} $1=="Candidate:"{print p $2}')
grep -q '(none)' <<<"$versions" && die "apt has no candidate for: $versions"
KEY=$( { sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1; echo "$SUITE $versions"; } | sha256sum | cut -c1-12)
if [ -s "$OUT/$KEY/rootfs.tar" ]; then
    echo "$OUT/$KEY/rootfs.tar"
    exit 0
fi

sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && sources+=("$f")
done
[ "${#sources[@]}" -gt 0 ] || die "the host has no apt sources"
mkdir -p "$OUT"
W=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$W"' EXIT
log "mmdebstrap $SUITE (minbase, ${PKGS[*]}) from the host's apt sources"
# shellcheck disable=SC2016 # the hooks' $1 is mmdebstrap's
mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${PKGS[*]}")" \
    --skip=output/dev --skip=output/mknod \
    --customize-hook='ln -sf /bin/busybox "$1/sbin/init"' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='printf "%s\n" "::sysinit:/bin/busybox mount -t tmpfs -o mode=755 tmpfs /run" "::sysinit:/bin/busybox mkdir -p /run/sshd" "::sysinit:/bin/busybox echo BANGER-OCI-GUEST: init" "::respawn:/usr/sbin/sshd -D -e" "::shutdown:/bin/busybox sync" >"$1/etc/inittab"' \
    "$SUITE" "$W/rootfs.tar" "${sources[@]}" >&2 || die "mmdebstrap failed"
tar -tf "$W/rootfs.tar" >"$W/list" && grep -qE "^(\./)?usr/sbin/sshd$" "$W/list" || die "the tarball has no usr/sbin/sshd: $(grep -c . "$W/list") entries"
rm -rf "${OUT:?}/$KEY" && mkdir "$OUT/$KEY" && mv "$W/rootfs.tar" "$OUT/$KEY/rootfs.tar"
log "built $OUT/$KEY/rootfs.tar ($(du -h "$OUT/$KEY/rootfs.tar" | cut -f1))"
echo "$OUT/$KEY/rootfs.tar"
