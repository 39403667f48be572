#!/usr/bin/env bash
# Container launcher, started by box_up (lib/box.sh) as
#   setsid unshare --mount --propagation private -- box-boot.sh [extra nspawn args...]
# It runs in a private mount namespace: everything it mounts (a tmpfs on /run for
# nspawn's own state, the tmpfs holding the overlay's upper layer, the overlay of
# the host's /) disappears with the last process of that namespace.
# It joins the box's host cgroups, prepares the overlay root and runs systemd-nspawn, which
# boots systemd as the container's PID 1, recording nspawn's PID. When the container reboots
# (nspawn exits 133), the same overlay boots again, as a machine's disk would after a reset.
#
# Environment (set by box_up): BOX_NAME, BOX_STATE (state dir), BOX_CGROUPS
# (space-separated cgroup directories), BOX_OVERLAY_SIZE (tmpfs size, e.g. 4G).
set -euo pipefail

: "${BOX_NAME:?set by box_up}" "${BOX_STATE:?set by box_up}" "${BOX_CGROUPS:?set by box_up}"

# 1. Join our own cgroups first, so that teardown can find every process we start.
for cg in $BOX_CGROUPS; do
    printf '%s\n' "$$" >"$cg/cgroup.procs"
done

# 2. The overlay: lower = host /, upper = a tmpfs (all writes inside are discarded).
root=$BOX_STATE/root
mount -n -t tmpfs -o mode=0755 tmpfs /run
mount -n -t tmpfs -o "mode=0755,size=${BOX_OVERLAY_SIZE:-4G}" tmpfs "$BOX_STATE/ovl"
mkdir "$BOX_STATE/ovl/upper" "$BOX_STATE/ovl/work"
mount -n -t overlay overlay \
    -o "lowerdir=/,upperdir=$BOX_STATE/ovl/upper,workdir=$BOX_STATE/ovl/work" "$root"

# 3. Make it a fresh machine that starts nothing the host admin enabled.
systemd-id128 new >"$root/etc/machine-id"
printf '%s\n' "$BOX_NAME" >"$root/etc/hostname"
rm -rf "$root"/etc/systemd/system/*.wants "$root"/etc/systemd/system/*.requires
ln -sfn /dev/null "$root/etc/systemd/system/console-getty.service"
ln -sfn /lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"

# 4. Boot. --register=no --keep-unit: there is no host systemd/machined to talk to.
args=(
    --quiet
    --directory="$root"
    --machine="$BOX_NAME"
    --boot
    --register=no
    --keep-unit
    --link-journal=no
    --console=read-only
    --tmpfs=/tmp
    --kill-signal=SIGRTMIN+4
    --private-network
)
if [ -c /dev/kvm ]; then
    args+=(--bind=/dev/kvm)
fi
while :; do
    systemd-nspawn "${args[@]}" "$@" &
    printf '%s\n' "$!" >"$BOX_STATE/nspawn.pid"
    rc=0
    wait "$!" || rc=$?
    [ "$rc" = 133 ] || exit "$rc"
    echo "box-boot: the container rebooted; booting it again" >&2
done
