#!/usr/bin/env bash
# smoke/guest/raw-boot.sh - boot the test guest with plain QEMU (no banger) and time boot-to-SSH:
# the baseline banger's own boot time is compared with. Must run as root (bridge, tap).
#
# usage: smoke/guest/raw-boot.sh [--kernel VMLINUX --initrd INITRAMFS] [--rootfs IMAGE]
#        (default: smoke/guest/build.sh; IMAGE, a root filesystem, is attached first, its writes
#        thrown away: an image made by banger from an OCI image boots its own init)
#
# Creates bridge bgraw0 (172.31.99.1/24) + tap bgrawtap0, a throwaway SSH key and a config disk
# (make-config-disk.sh; guest 172.31.99.2/24), boots QEMU -M microvm (TCG) and polls
#   ssh root@172.31.99.2 cat /proc/sys/kernel/random/boot_id
# every 50 ms. Then boots a second time with the same config disk and checks that the guest's
# ed25519 host key (ssh-keyscan) is unchanged and that `hostname` answers the configured name.
# stdout:
#   raw-qemu boot-to-ssh <seconds>s boot_id=<id>
#   host key stable across reboots: yes
# Progress and diagnostics go to stderr; exit status 1 on any failure (the serial log is shown and
# the work directory kept; RAW_BOOT_KEEP=1 keeps it always). QEMU, the tap and the bridge are removed on exit, only if we made them.
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BR=bgraw0
TAP=bgrawtap0
HOST_IP=172.31.99.1
GUEST_IP=172.31.99.2
MAC=52:54:00:31:99:02
GUEST_NAME=banger-raw-boot
SSH_TIMEOUT=${SSH_TIMEOUT:-120}

log() { printf 'raw-boot.sh: %s\n' "$*" >&2; }
die() { printf 'raw-boot.sh: FAIL: %s\n' "$*" >&2; exit 1; }

KERNEL="" INITRD="" ROOTFS=""
while [ "$#" -gt 0 ]; do
    case $1 in
        --kernel) KERNEL=${2:?--kernel needs a file}; shift ;;
        --initrd) INITRD=${2:?--initrd needs a file}; shift ;;
        --rootfs) ROOTFS=${2:?--rootfs needs a file}; shift ;;
        -h | --help) sed -n '4,7{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1'" ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || die "must run as root (it creates $BR and $TAP)"
for t in qemu-system-x86_64 ssh ssh-keygen ssh-keyscan ip; do
    command -v "$t" >/dev/null || die "$t is not installed"
done
if [ -z "$KERNEL" ] || [ -z "$INITRD" ]; then
    [ -z "$KERNEL$INITRD" ] || die "give both --kernel and --initrd, or neither"
    built=$("$GUEST_DIR/build.sh") || die "smoke/guest/build.sh failed"
    KERNEL=$(sed -n 's/^kernel=//p' <<<"$built")
    INITRD=$(sed -n 's/^initrd=//p' <<<"$built")
fi
[ -r "$KERNEL" ] || die "kernel '$KERNEL' not readable"
[ -r "$INITRD" ] || die "initrd '$INITRD' not readable"

for l in "$BR" "$TAP"; do
    ! ip link show "$l" >/dev/null 2>&1 || die "link $l already exists (another raw-boot.sh running, or left over: ip link del $l)"
done
W=$(mktemp -d /tmp/banger-raw-boot.XXXXXX)
QEMU_PID="" MADE_BR=0 MADE_TAP=0 OK=0
stop_qemu() {
    [ -n "$QEMU_PID" ] || return 0
    kill "$QEMU_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=""
}
cleanup() {
    set +e
    stop_qemu
    [ "$MADE_TAP" = 0 ] || ip link del "$TAP"
    [ "$MADE_BR" = 0 ] || ip link del "$BR"
    if [ "$OK" = 1 ] && [ -z "${RAW_BOOT_KEEP:-}" ]; then rm -rf "$W"; else log "work directory kept: $W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ network, key, config disk
ip link add "$BR" type bridge || die "cannot create bridge $BR"
MADE_BR=1
ip addr add "$HOST_IP/24" dev "$BR"
ip link set "$BR" up
ip tuntap add dev "$TAP" mode tap || die "cannot create tap $TAP"
MADE_TAP=1
ip link set "$TAP" master "$BR"
ip link set "$TAP" up

ssh-keygen -q -t ed25519 -N '' -C raw-boot -f "$W/id_ed25519"
"$GUEST_DIR/make-config-disk.sh" "$W/config.img" --vm-id raw-boot --hostname "$GUEST_NAME" \
    --ip "$GUEST_IP/24" --gateway "$HOST_IP" --key "$W/id_ed25519.pub"

KHZ=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
[ -n "$KHZ" ] || die "cannot read the host CPU frequency from /proc/cpuinfo"
SSH=(ssh -i "$W/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
     -o ConnectTimeout=1 -o LogLevel=ERROR "root@$GUEST_IP")

usec() { local t=${EPOCHREALTIME//[!0-9]/}; echo "$((10#$t))"; } # µs; locale-proof
secs() { printf '%d.%02d' $(($1 / 1000000)) $(($1 % 1000000 / 10000)); }

show_serial() {
    log "serial console ($1) ends with:"
    tail -n 25 "$1" 2>/dev/null | tr -d '\r' | sed 's/^/    | /' >&2 || true
    [ ! -s "$W/qemu.err" ] || { log "qemu stderr:"; head -20 "$W/qemu.err" | sed 's/^/    ! /' >&2; }
}

# boot N: starts QEMU, waits until SSH answers; sets BOOT_US (µs from QEMU start) and BOOT_ID.
boot() {
    local n=$1 log=$W/serial-$1.log t0 deadline
    # Forget the guest's MAC from the previous boot: measure like a first contact every time.
    ip neigh flush dev "$BR" 2>/dev/null || true
    local root=()
    [ -z "$ROOTFS" ] || root=(-drive "id=root,file=$ROOTFS,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=root)
    t0=$(usec)
    qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 256 -smp 1 -nodefaults -no-user-config \
        -display none -serial "file:$log" \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "console=ttyS0 quiet panic=-1 tsc_early_khz=$KHZ" \
        -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device "virtio-net-device,netdev=n0,mac=$MAC" \
        "${root[@]}" \
        -drive "id=cfg,file=$W/config.img,format=raw,if=none" -device virtio-blk-device,drive=cfg \
        </dev/null >"$W/qemu.err" 2>&1 &
    QEMU_PID=$!
    deadline=$((t0 + SSH_TIMEOUT * 1000000))
    until BOOT_ID=$("${SSH[@]}" cat /proc/sys/kernel/random/boot_id 2>>"$W/ssh-$n.err"); do
        kill -0 "$QEMU_PID" 2>/dev/null || { show_serial "$log"; die "boot $n: QEMU exited"; }
        if grep -aq '^BANGER-GUEST: sshd failed' "$log"; then show_serial "$log"; die "boot $n: sshd failed in the guest"; fi
        if [ "$(usec)" -gt "$deadline" ]; then
            show_serial "$log"; log "last ssh error: $(tail -n 1 "$W/ssh-$n.err")"
            die "boot $n: SSH did not answer within ${SSH_TIMEOUT}s"
        fi
        sleep 0.05
    done
    BOOT_US=$(($(usec) - t0))
    [ -n "$BOOT_ID" ] || die "boot $n: ssh succeeded but printed no boot_id"
    log "boot $n: SSH answered after $(secs "$BOOT_US")s; guest: $(tr -d '\r' <"$log" | sed -n 's/^BANGER-GUEST: //p' | paste -sd'|' | sed 's/|/ | /g')"
}

host_key() { # the guest's ed25519 host key as ssh-keyscan sees it
    local k
    k=$(ssh-keyscan -T 5 -t ed25519 "$GUEST_IP" 2>/dev/null | awk '$2=="ssh-ed25519" {print $3; exit}')
    [ -n "$k" ] || die "ssh-keyscan -t ed25519 $GUEST_IP returned no key"
    echo "$k"
}

# ------------------------------------------------------------------ boot 1: timed
log "booting $KERNEL with $INITRD"
boot 1
FIRST_US=$BOOT_US FIRST_ID=$BOOT_ID
KEY1=$(host_key)
name=$("${SSH[@]}" hostname) || die "ssh hostname failed"
[ "$name" = "$GUEST_NAME" ] || die "guest hostname is '$name', expected '$GUEST_NAME'"
log "hostname: $name (as configured)"
region=$(dd if="$W/config.img" bs=65536 skip=1 count=1 2>/dev/null | head -c 40 | tr -d '\0' | head -n 1)
[[ $region =~ ^BANGER-HOSTKEY-V1\ [0-9]+$ ]] || die "the guest did not persist its host key on the config disk (region starts '$region')"
log "config disk host-key region: '$region'"
printf 'raw-qemu boot-to-ssh %ss boot_id=%s\n' "$(secs "$FIRST_US")" "$FIRST_ID"

# ------------------------------------------------------------------ boot 2: same disk, same host key?
stop_qemu
boot 2
[ "$BOOT_ID" != "$FIRST_ID" ] || die "boot 2 has the boot_id of boot 1 ($BOOT_ID): not a new boot?"
KEY2=$(host_key)
[ "$KEY1" = "$KEY2" ] || die "host key changed across reboots: $KEY1 -> $KEY2"
name=$("${SSH[@]}" hostname) || die "ssh hostname failed after reboot"
[ "$name" = "$GUEST_NAME" ] || die "guest hostname after reboot is '$name', expected '$GUEST_NAME'"
echo "host key stable across reboots: yes"
OK=1
