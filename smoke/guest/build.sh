#!/usr/bin/env bash
# smoke/guest/build.sh - build the banger test guest (kernel + initramfs) from Debian packages.
#
# usage: smoke/guest/build.sh [--out DIR] [--agent FILE]
#        DIR: default smoke/.cache/guest
#        FILE: a static banger-agent; default target/x86_64-unknown-linux-gnu/release/banger-agent,
#        built first (`make agent`) when it is missing
#
# Prints exactly two lines on stdout, progress goes to stderr:
#   kernel=DIR/<key>/vmlinux             uncompressed ELF with a PVH entry note (QEMU -M microvm, Firecracker)
#   initrd=DIR/<key>/initramfs.cpio.gz   busybox-static + dropbear + banger-agent + virtio modules +
#                                        smoke/guest/init as /init
#
# Guest packages are only downloaded (apt-get download), never installed on the host:
#   the kernel linux-image-cloud-amd64 depends on, busybox-static, dropbear-bin and the libraries
#   dropbear-bin depends on (the DT_NEEDED closure of dropbear/dropbearkey is copied into the image).
# Missing host tools (cpio, gzip, xz, lz4, zstd, binutils) are installed with apt; only that and an
# `apt-get update` (run only when apt has no candidate or a download fails) need root.
#
# Cache: DIR/<key>/ where <key> is a hash of this script, init, the agent and the exact package versions. A
# complete DIR/<key>/ is printed at once (the version lookup is memoized against the state of apt's
# lists, so a hit does not even run apt-cache). Builds happen in DIR/.build.* and are renamed into
# place, so an interrupted build never leaves a half-filled cache entry; DIR/.lock serializes
# concurrent builds. Downloaded .debs are kept in DIR/debs/.
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(dirname "$GUEST_DIR")/.cache/guest
KERNEL_META=linux-image-cloud-amd64
# Modules the guest loads at boot (their dependencies are added automatically, in load order).
# Only virtio-mmio devices (QEMU microvm, Firecracker): every insmod costs ~15-30 ms under TCG.
# virtio_console: the guest agent's virtio-serial port (QEMU). A Firecracker guest would need
# vmw_vsock_virtio_transport instead; the test guest runs under QEMU only.
WANT_MODULES="virtio_mmio virtio_blk virtio_net virtio_console"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

while [ "$#" -gt 0 ]; do
    case $1 in
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --out=*) OUT=${1#*=} ;;
        --agent) AGENT=${2:?--agent needs a file}; shift ;;
        --agent=*) AGENT=${1#*=} ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (usage: build.sh [--out DIR] [--agent FILE])" ;;
    esac
    shift
done
OUT=$(realpath -m -- "$OUT")
[ -f "$GUEST_DIR/init" ] || die "missing $GUEST_DIR/init"
REPO=$(cd "$GUEST_DIR/../.." && pwd)
if [ -z "${AGENT:-}" ]; then
    AGENT=$REPO/target/x86_64-unknown-linux-gnu/release/banger-agent
    if [ ! -x "$AGENT" ]; then
        log "building the static guest agent (make agent)"
        make -s -C "$REPO" agent >&2 || die "building banger-agent failed"
    fi
fi
[ -x "$AGENT" ] || die "no guest agent at $AGENT"
file_type=$(od -An -tx1 -N4 "$AGENT" | tr -d ' \n')
[ "$file_type" = 7f454c46 ] || die "$AGENT is not an ELF program"


sha() { sha256sum | cut -c1-"${1:-64}"; }
as_root_or_die() { [ "$(id -u)" = 0 ] || die "$* needs root (run this script as root once)"; }

# ------------------------------------------------------------------ package versions -> cache key
# Sets KPKG (kernel package), LIBS (dropbear-bin's dependencies), VERSIONS ("pkg=version" lines), KEY.
resolve_versions() {
    local deps policy pkg
    deps=$(apt-cache depends "$KERNEL_META" 2>&1) || { log "apt-cache depends $KERNEL_META: $deps"; return 1; }
    # "  Depends: dep" / " |Depends: dep" lines under the package name; <virtual> names skipped.
    KPKG=$(awk '{t=$1; sub(/^\|/, "", t)} t=="Depends:" && $2 ~ /^linux-image-/ {print $2; exit}' <<<"$deps")
    # dropbear-bin's run-time dependencies, recursively (libtomcrypt1 needs libgmp10, ...).
    deps=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances dropbear-bin 2>&1) || { log "apt-cache depends dropbear-bin: $deps"; return 1; }
    LIBS=$(grep -v -e '^ ' -e '^<' -e '^dropbear-bin$' <<<"$deps" | sort -u | tr '\n' ' ')
    [ -n "$KPKG" ] || { log "$KERNEL_META depends on no linux-image-* package"; return 1; }
    [ -n "$LIBS" ] || { log "dropbear-bin has no dependencies?"; return 1; }
    # shellcheck disable=SC2086 # LIBS is a word list
    policy=$(apt-cache policy "$KPKG" busybox-static dropbear-bin $LIBS 2>&1) || { log "apt-cache policy: $policy"; return 1; }
    VERSIONS=$(awk '/^[^ ].*:$/{p=substr($1, 1, length($1)-1)} $1=="Candidate:"{print p "=" $2}' <<<"$policy" | sort)
    for pkg in "$KPKG" busybox-static dropbear-bin $LIBS; do
        grep -q "^$pkg=" <<<"$VERSIONS" || { log "apt knows no package $pkg"; return 1; }
    done
    if grep -q '=(none)$' <<<"$VERSIONS"; then log "no installable candidate for: $(grep '=(none)$' <<<"$VERSIONS" | tr '\n' ' ')"; return 1; fi
    KEY=$( { sha256sum "$GUEST_DIR/build.sh" "$GUEST_DIR/init" | cut -d' ' -f1; echo "$VERSIONS"; } | sha 12)
}

# The candidate versions only change when apt's lists, sources or pins change: remember the result
# per (script, init, apt state) so a cache hit costs a few stat()s instead of ~1 s of apt-cache.
memo_file() {
    local f=()
    shopt -s nullglob
    f=(/var/lib/apt/lists/*_Packages* /etc/apt/sources.list[.]d/* /etc/apt/preferences[.]d/*)
    shopt -u nullglob
    [ ! -e /etc/apt/sources.list ] || f+=(/etc/apt/sources.list)
    [ ! -e /etc/apt/preferences ] || f+=(/etc/apt/preferences)
    echo "$OUT/.resolved/$( { cat "$GUEST_DIR/build.sh" "$GUEST_DIR/init"; [ "${#f[@]}" = 0 ] || stat -c '%n %s %Y' "${f[@]}"; } | sha 16)"
}
resolve_cached() { # $1: "fresh" to ignore the memo
    local memo
    memo=$(memo_file)
    if [ "${1:-}" != fresh ] && [ -s "$memo" ]; then
        { read -r KEY; read -r KPKG; read -r LIBS; VERSIONS=$(cat); } <"$memo"
        [ -n "$KEY" ] && [ -n "$VERSIONS" ] && return 0
    fi
    resolve_versions || return 1
    mkdir -p "$OUT/.resolved"
    printf '%s\n%s\n%s\n%s\n' "$KEY" "$KPKG" "$LIBS" "$VERSIONS" >"$memo.tmp.$$" && mv -f "$memo.tmp.$$" "$memo"
}

apt_update() {
    as_root_or_die "apt-get update"
    log "running apt-get update"
    apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 || die "apt-get update failed"
}

# The agent is built from this repository, not taken from a package: its bytes join the key.
with_agent_key() { KEY=$( { echo "$KEY"; sha256sum <"$AGENT"; } | sha 12); }

print_hit() { # prints the result and exits if the cache entry for KEY is complete
    local d=$OUT/$KEY
    if [ -s "$d/vmlinux" ] && [ -s "$d/initramfs.cpio.gz" ]; then
        printf 'kernel=%s\ninitrd=%s\n' "$d/vmlinux" "$d/initramfs.cpio.gz"
        exit 0
    fi
}

if ! resolve_cached; then
    log "apt cannot resolve the guest packages; refreshing the package lists"
    apt_update
    resolve_cached fresh || die "cannot resolve $KERNEL_META / busybox-static / dropbear-bin with apt (see above)"
fi
with_agent_key
print_hit

# ------------------------------------------------------------------ cache miss: host tools, lock
need=()
for tp in cpio:cpio gzip:gzip xz:xz-utils lz4:lz4 zstd:zstd objdump:binutils objcopy:binutils readelf:binutils \
          dpkg-deb:dpkg flock:util-linux; do
    command -v "${tp%%:*}" >/dev/null || need+=("${tp#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    as_root_or_die "installing host tools (${need[*]})"
    log "installing host tools: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >&2 \
        || { apt_update; apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >&2; } \
        || die "apt-get install ${need[*]} failed"
fi

mkdir -p "$OUT/debs"
exec 9>"$OUT/.lock"
flock 9 || die "cannot lock $OUT/.lock"
print_hit # another build may have finished while we waited for the lock
rm -rf "$OUT"/.build.* # leftovers of killed builds (we hold the lock: nobody else is building)

# ------------------------------------------------------------------ download the .debs (kept in DIR/debs)
deb_path() { # $1 pkg  $2 version -> path of the cached .deb ("" if absent); apt writes ':' as %3a
    local f=()
    shopt -s nullglob
    f=("$OUT/debs/${1}_${2//:/%3a}_"*.deb)
    shopt -u nullglob
    [ "${#f[@]}" = 0 ] || echo "${f[0]}"
}
download_debs() {
    local line want=() tmp rc=0
    while IFS= read -r line; do
        [ -n "$(deb_path "${line%%=*}" "${line#*=}")" ] || want+=("$line")
    done <<<"$VERSIONS"
    [ "${#want[@]}" -gt 0 ] || return 0
    log "downloading ${want[*]}"
    tmp=$(mktemp -d "$OUT/debs/.dl.XXXXXX")
    # -o APT::Sandbox::User=root: the _apt user cannot write into our temp dir (and would only warn).
    (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "${want[@]}" >&2) || rc=$?
    if [ "$rc" = 0 ]; then mv -f "$tmp"/*.deb "$OUT/debs/"; fi
    rm -rf "$tmp"
    return "$rc"
}
if ! download_debs; then
    log "apt-get download failed; refreshing the package lists and retrying"
    apt_update
    resolve_cached fresh || die "cannot resolve the guest packages after apt-get update"
    with_agent_key
    print_hit
    download_debs || die "apt-get download of the guest packages failed (see above)"
fi

# ------------------------------------------------------------------ build in DIR/.build.XXXXXX
W=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$W"' EXIT
X=$W/x        # extracted packages
R=$W/root     # initramfs tree
RES=$W/result # becomes DIR/<key>
mkdir -p "$X" "$R" "$RES"
KVER=${KPKG#linux-image-}
log "building guest $KEY (kernel $KVER) in $W"

while IFS= read -r line; do
    deb=$(deb_path "${line%%=*}" "${line#*=}")
    [ -n "$deb" ] || die "downloaded package ${line} not found in $OUT/debs"
    dpkg-deb -x "$deb" "$X" || die "cannot unpack $deb"
done <<<"$VERSIONS"

# --- vmlinux: the compressed payload of the bzImage, located through the boot protocol header
BZ=$X/boot/vmlinuz-$KVER
[ -f "$BZ" ] || die "$KPKG has no /boot/vmlinuz-$KVER"
u8() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; } # little-endian host (amd64)
[ "$(od -An -c -j $((0x202)) -N4 "$BZ" | tr -d ' ')" = HdrS ] || die "$BZ is not a bzImage (no HdrS header)"
setup_sects=$(u8 "$BZ" $((0x1f1))); [ "$setup_sects" != 0 ] || setup_sects=4
payload_off=$(( (setup_sects + 1) * 512 + $(u32 "$BZ" $((0x248))) ))
payload_len=$(u32 "$BZ" $((0x24c)))
magic=$(od -An -tx1 -j "$payload_off" -N4 "$BZ" | tr -d ' \n')
case $magic in
    1f8b*) comp=gzip; dec=(gzip -dc) ;;
    fd377a58) comp=xz; dec=(xz -dc --single-stream) ;;
    02214c18) comp=lz4; dec=(lz4 -dc) ;;
    28b52ffd) comp=zstd; dec=(zstd -qdc) ;;
    425a68*) comp=bzip2; dec=(bzip2 -dc) ;;
    5d0000*) comp=lzma; dec=(xz --format=lzma -dc) ;;
    *) die "unknown kernel compression (payload magic $magic at offset $payload_off of $BZ)" ;;
esac
command -v "${dec[0]}" >/dev/null || die "${dec[0]} is needed to decompress the $comp kernel"
# The payload ends with the 4-byte uncompressed size, which some decompressors call trailing
# garbage: ignore their exit status and check the ELF instead (every LOAD segment present).
tail -c +$((payload_off + 1)) "$BZ" | head -c "$payload_len" | "${dec[@]}" >"$RES/vmlinux" 2>"$W/decompress.err" || true
[ "$(head -c4 "$RES/vmlinux" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] \
    || die "decompressing the $comp payload of $BZ gave no ELF: $(head -c 300 "$W/decompress.err")"
need_size=0
while read -r typ off _ _ filesz _; do
    if [ "$typ" = LOAD ] && [ $((off + filesz)) -gt "$need_size" ]; then need_size=$((off + filesz)); fi
done < <(readelf -lW "$RES/vmlinux")
{ [ "$need_size" -gt 0 ] && [ "$(stat -c %s "$RES/vmlinux")" -ge "$need_size" ]; } \
    || die "vmlinux from $BZ is truncated ($(stat -c %s "$RES/vmlinux") bytes, segments need $need_size)"
readelf -nW "$RES/vmlinux" | grep -qE 'Xen .*(0x00000012|PHYS32_ENTRY)' \
    || die "vmlinux of $KVER has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): QEMU/Firecracker cannot boot it"
log "vmlinux: $comp payload, $(stat -c %s "$RES/vmlinux") bytes, PVH entry note present"

# --- initramfs tree
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/dropbear,proc,sys,dev,run,tmp,root,var/log,lib/modules,lib/x86_64-linux-gnu,lib64}
chmod 1777 "$R/tmp"; chmod 700 "$R/root"
ln -s ../run "$R/var/run"
[ -x "$X/bin/busybox" ] || die "busybox-static has no /bin/busybox"
cp "$X/bin/busybox" "$R/bin/busybox"
# Applet links made here rather than with `busybox --install` at every boot (the host runs the static binary).
"$R/bin/busybox" --list-full >"$W/applets" || die "cannot run busybox --list-full"
while IFS= read -r a; do
    if [ -z "$a" ] || [ -e "$R/$a" ] || [ -L "$R/$a" ]; then continue; fi
    mkdir -p "$R/$(dirname "$a")"
    ln -s /bin/busybox "$R/$a"
done <"$W/applets"
for tool in sh ip dd head tr hostname insmod arping usleep setsid cttyhack sleep cat mount umount switch_root sed grep cp rm mkdir chmod; do
    grep -qE "(^|/)$tool\$" "$W/applets" || die "busybox-static lacks the '$tool' applet"
done

[ -x "$X/usr/sbin/dropbear" ] || die "dropbear-bin has no /usr/sbin/dropbear"
[ -x "$X/usr/bin/dropbearkey" ] || die "dropbear-bin has no /usr/bin/dropbearkey"
[ -x "$X/usr/bin/dropbearconvert" ] || die "dropbear-bin has no /usr/bin/dropbearconvert"
cp "$X/usr/sbin/dropbear" "$R/usr/sbin/dropbear"
if readelf -lW "$AGENT" | grep -q 'Requesting program interpreter'; then
    die "$AGENT is dynamically linked; the guest needs a static one (make agent)"
fi
cp "$AGENT" "$R/usr/sbin/banger-agent"
cp "$X/usr/bin/dropbearkey" "$R/usr/bin/dropbearkey"
# The hand-over to an image's OpenSSH gives it the same host key, in OpenSSH's format.
cp "$X/usr/bin/dropbearconvert" "$R/usr/bin/dropbearconvert"
declare -A copied=()
copy_libs() { # copies the DT_NEEDED closure of ELF $1 to /lib/x86_64-linux-gnu (the loader's default path)
    local lib src
    for lib in $(objdump -p "$1" | awk '$1=="NEEDED" {print $2}'); do
        [ -z "${copied[$lib]:-}" ] || continue
        src=""
        for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
            [ -e "$X/$d/$lib" ] && { src=$X/$d/$lib; break; }
        done
        [ -n "$src" ] || die "library $lib (needed by ${1#"$X"/}) is in none of: $LIBS"
        cp -L "$src" "$R/lib/x86_64-linux-gnu/$lib"
        copied[$lib]=1
        copy_libs "$src"
    done
}
copy_libs "$X/usr/sbin/dropbear"
copy_libs "$X/usr/bin/dropbearkey"
copy_libs "$X/usr/bin/dropbearconvert"
interp=$(readelf -lW "$X/usr/sbin/dropbear" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ "$interp" = /lib64/ld-linux-x86-64.so.2 ] || die "unexpected ELF interpreter '$interp' for dropbear"
[ -e "$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] \
    || cp -L "$X/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$R/lib/x86_64-linux-gnu/" \
    || die "libc6 has no ld-linux-x86-64.so.2"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"

# --- kernel modules: WANT_MODULES plus their dependencies, dependencies first (/etc/modules = load order)
MODROOT=$X/lib/modules/$KVER
[ -d "$MODROOT" ] || MODROOT=$X/usr/lib/modules/$KVER
[ -d "$MODROOT/kernel" ] || die "$KPKG has no modules directory for $KVER"
declare -A modfile=() modstate=()
while IFS= read -r f; do
    n=${f##*/}; n=${n%%.ko*}; modfile[${n//-/_}]=$f
done < <(find "$MODROOT/kernel" -name '*.ko*')
builtin_mod() { grep -qE "/${1}\.ko\$|/${1//_/-}\.ko\$" "$MODROOT/modules.builtin" 2>/dev/null; }
add_module() {
    local m=${1//-/_} f dep deps
    case ${modstate[$m]:-} in loaded) return 0 ;; visiting) die "module dependency cycle at $m" ;; esac
    f=${modfile[$m]:-}
    if [ -z "$f" ]; then
        builtin_mod "$m" || die "module $m is neither in $KPKG nor built into $KVER"
        modstate[$m]=loaded; return 0
    fi
    modstate[$m]=visiting
    case $f in
        *.ko) cp "$f" "$R/lib/modules/$m.ko" ;;
        *.ko.xz) xz -dc "$f" >"$R/lib/modules/$m.ko" ;;
        *.ko.zst) zstd -qdc "$f" >"$R/lib/modules/$m.ko" ;;
        *.ko.gz) gzip -dc "$f" >"$R/lib/modules/$m.ko" ;;
        *) die "unknown module compression: $f" ;;
    esac
    objcopy -O binary --only-section=.modinfo "$R/lib/modules/$m.ko" "$W/modinfo" || die "cannot read .modinfo of $f"
    deps=$(tr '\0' '\n' <"$W/modinfo" | sed -n 's/^depends=//p' | tr ',' ' ')
    for dep in $deps; do add_module "$dep"; done
    modstate[$m]=loaded
    echo "$m" >>"$R/etc/modules"
}
: >"$R/etc/modules"
for m in $WANT_MODULES; do add_module "$m"; done
log "modules (load order): $(tr '\n' ' ' <"$R/etc/modules")"

# --- config files, /init
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
printf '/bin/sh\n' >"$R/etc/shells"
printf '127.0.0.1 localhost\n' >"$R/etc/hosts"
printf 'key=%s\nkernel=%s\n%s\n' "$KEY" "$KVER" "$VERSIONS" >"$R/etc/banger-guest"
install -m 755 "$GUEST_DIR/init" "$R/init"

# Sanity: the programs run from inside the tree, with no LD_LIBRARY_PATH (only possible as root).
if [ "$(id -u)" = 0 ]; then
    chroot "$R" /usr/sbin/dropbear -V 2>&1 | grep -q 'Dropbear v' \
        || die "dropbear does not run inside the initramfs tree: $(chroot "$R" /usr/sbin/dropbear -V 2>&1 | head -3)"
    chroot "$R" /usr/bin/dropbearkey -t ed25519 -f /tmp/k >/dev/null 2>"$W/dropbearkey.err" \
        || die "dropbearkey does not run inside the initramfs tree: $(head -3 "$W/dropbearkey.err")"
    chroot "$R" /usr/bin/dropbearconvert dropbear openssh /tmp/k /tmp/k.openssh >/dev/null 2>"$W/dropbearconvert.err" \
        || die "dropbearconvert does not run inside the initramfs tree: $(head -3 "$W/dropbearconvert.err")"
    chroot "$R" /bin/sh -c 'hostname >/dev/null && cat /etc/modules >/dev/null' || die "busybox does not run inside the tree"
    # The tests above leave plain files like /dev/null, /dev/urandom, /tmp/k behind: start those afresh.
    rm -rf "${R:?}/dev" "${R:?}/tmp"
    mkdir -m 755 "$R/dev"; mkdir -m 1777 "$R/tmp"
fi

# --- pack (sorted, owned by root, fixed mtimes: the same inputs give the same bytes)
find "$R" -exec touch -h -d @0 {} +
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n >"$RES/initramfs.cpio.gz" \
    || die "packing the initramfs failed"
{
    echo "key=$KEY"; echo "kernel_release=$KVER"; echo "kernel_compression=$comp"; echo "$VERSIONS"
    echo "modules=$(tr '\n' ' ' <"$R/etc/modules")"
    echo "vmlinux_bytes=$(stat -c %s "$RES/vmlinux")"
    echo "initramfs_bytes=$(stat -c %s "$RES/initramfs.cpio.gz") (unpacked $(du -sb "$R" | cut -f1))"
} >"$RES/manifest.txt"
log "initramfs: $(stat -c %s "$RES/initramfs.cpio.gz") bytes gzipped, $(du -sb "$R" | cut -f1) unpacked"

rm -rf "${OUT:?}/$KEY" # only an incomplete entry can be here (a complete one was a cache hit)
mv -T "$RES" "$OUT/$KEY" || die "cannot move the result to $OUT/$KEY"

# Prune: keep this entry and the two newest others (someone may still be booting them), and only
# the .debs of this build.
find "$OUT" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{12}' ! -name "$KEY" \
    -printf '%T@ %p\n' | sort -rn | tail -n +3 | cut -d' ' -f2- | while IFS= read -r old; do
    log "pruning old cache entry $old"; rm -rf "$old"
done
declare -A keep_deb=()
while IFS= read -r line; do
    f=$(deb_path "${line%%=*}" "${line#*=}"); keep_deb[$f]=1
done <<<"$VERSIONS"
for f in "$OUT"/debs/*.deb; do
    [ -n "${keep_deb[$f]:-}" ] || { log "pruning $f"; rm -f "$f"; }
done
find "$OUT/.resolved" -type f -mtime +30 -delete 2>/dev/null || true
print_hit
die "internal error: $OUT/$KEY is incomplete after the build"
