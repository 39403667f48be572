#!/usr/bin/env bash
# Runs after 90-uninstall, on a box with no banger left. banger as a Debian package:
# 1. debian/build makes a .deb of the binaries under test and one of v0.2.0 (make install writes
#    the same file set); lintian finds no
#    error or warning; the package holds no file in /etc and names no user.
# 2. `apt-get install ./banger_0.1.0_amd64.deb` starts nothing and says how to choose the owner;
#    `banger system setup` without an owner, or with root, is refused; `--owner` sets it up
#    (the drop-in, the owner's bus policy, install.toml) and starts both services; every unit's
#    Documentation= resolves in the packaged man pages.
# 3. On the packaged install, `banger system install` (source or packaged binary) and
#    `banger update` are refused with the apt command, before any polkit prompt.
# 4. A VM runs; `apt-get install ./banger_0.2.0_amd64.deb` upgrades: the services restart onto
#    0.2.0 and the VM answers with the same boot_id from the same VMM process.
# 5. `apt-get remove` while the VM runs is refused by the package (the VM keeps running);
#    after the VM stops, `apt-get purge` leaves no file of the package, nothing setup or the
#    services wrote, no unit, bus name, nftables table or bridge.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

DEB_WORK=$SMOKE_DIR/deb             # host
DEB_BOX=/tmp/banger-debs            # box
PKG_BIN=/usr/bin/banger
OWNER_FILES=(/etc/systemd/system/bangerd.service.d/owner.conf
    /etc/dbus-1/system.d/org.banger.Daemon1.owner.conf
    /etc/banger/49-banger-owner.rules.example "$BANGER_INSTALL_TOML")

cleanup() {
    local rc=$?
    if [ "$rc" != 0 ]; then
        box_exec journalctl -b --no-pager -n 30 -u bangerd-root.service -u bangerd.service || true
    fi
    BOX_BIN=$PKG_BIN_DIR vm_remove_all >/dev/null 2>&1 || true
    box_exec env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q banger >/dev/null 2>&1 || true
    return "$rc"
}
trap cleanup EXIT
PKG_BIN_DIR=/usr/bin

# Nothing of a source install may be left (90-uninstall purged it; a lone run removes it).
if box_exec test -e "$BANGER_INSTALL_TOML"; then
    expect_rc 0 box_exec "$BOX_BIN/banger" system uninstall --purge --stop-vms
fi

# --- 1. build and lint ----------------------------------------------------------------------
[ -n "${SMOKE_BIN_DIR:-}" ] || { fail "SMOKE_BIN_DIR is not set (smoke/run sets it)"; exit 1; }
RELEASE_VERSIONS=(0.2.0)            # the only other version needed here
expect_rc 0 release_build_versions
rm -rf "$DEB_WORK"
mkdir -p "$DEB_WORK"
# The binaries under test, with the Cockpit page built beside them (make cockpit) if it is.
expect_rc 0 "$SMOKE_REPO/debian/build" --bin-dir "$SMOKE_BIN_DIR" --out "$DEB_WORK"
old_deb=$(last_line "$LAST_OUT")
expect_rc 0 "$SMOKE_REPO/debian/build" --bin-dir "$RELEASE_CACHE/0.2.0" --out "$DEB_WORK"
new_deb=$(last_line "$LAST_OUT")
expect_eq "${old_deb##*/} ${new_deb##*/}" "banger_0.1.0_amd64.deb banger_0.2.0_amd64.deb" "debian/build's packages"
proved "debian/build made $(du -h "$old_deb" | cut -f1) $old_deb and $new_deb"

expect_rc 0 lintian --fail-on error,warning "$old_deb"
expect_eq "$(grep -E '^(E|W):' <<<"$LAST_OUT")" "" "lintian errors and warnings"
proved "lintian reports no error or warning"

contents=$(dpkg-deb -c "$old_deb" | awk '{print $6}')
expect_eq "$(grep -c '^\./etc/' <<<"$contents")" 0 "files of the package in /etc"
for f in ./usr/lib/banger/bin/bangerd-root ./usr/lib/systemd/system/bangerd.service \
    ./usr/share/dbus-1/system.d/org.banger.Daemon1.conf ./usr/share/polkit-1/actions/org.banger.policy \
    ./usr/share/man/man1/banger.1.gz ./usr/share/bash-completion/completions/banger \
    ./usr/share/cockpit/banger/manifest.json ./usr/lib/banger/packaging.toml; do
    expect_line "$contents" "$f" "the package's file list"
done
# `make install` writes the same file set (the .deb adds its doc directory and gzips man pages).
expect_rc 0 make -s -C "$SMOKE_REPO" install DESTDIR="$DEB_WORK/mi" PREFIX=/usr MANAGED_BY=dpkg
mi_files=$(cd "$DEB_WORK/mi" && find . ! -type d | sort)
deb_files=$(grep -v '/$' <<<"$contents" | grep -v '^\./usr/share/doc/' | sed 's/\.gz$//' | sort)
expect_eq "$mi_files" "$deb_files" "make install's files against the package's"
expect_contains "$(cat "$DEB_WORK/mi/usr/lib/banger/packaging.toml")" 'manager = "dpkg"' "make install's packaging marker"
proved "make install DESTDIR=… PREFIX=/usr writes the package's file set ($(wc -l <<<"$mi_files") files)"
dpkg-deb -x "$old_deb" "$DEB_WORK/x"
expect_rc 1 grep -rlE "(User=|user=\")($OWNER|@OWNER@)" "$DEB_WORK/x/usr/lib/systemd" "$DEB_WORK/x/usr/share/dbus-1" \
    "$DEB_WORK/x/usr/share/polkit-1"
proved "the package has no file in /etc, and its units and bus and polkit files name no user"

box_exec rm -rf "$DEB_BOX"
expect_rc 0 box_exec mkdir -p "$DEB_BOX"
for deb in "$old_deb" "$new_deb"; do
    box_exec sh -c 'cat >"$1"' push "$DEB_BOX/${deb##*/}" <"$deb" || { fail "copying $deb into the box"; exit 1; }
done
apt_box() { box_exec env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=60 "$@"; }

# --- 2. install, setup ----------------------------------------------------------------------
expect_rc 0 apt_box install -y -q "$DEB_BOX/${old_deb##*/}"
expect_contains "$LAST_OUT" "sudo banger system setup --owner USER" "apt-get install of the package"
expect_eq "$(unit_state bangerd-root.service) $(unit_state bangerd.service)" "inactive inactive" \
    "the services after apt-get install, before setup"
expect_rc 0 box_exec test ! -e "$BANGER_INSTALL_TOML"
proved "apt-get install ./${old_deb##*/} installs the files, starts nothing and says how to choose the owner"

expect_rc 1 box_exec "$PKG_BIN" system setup
expect_contains "$LAST_OUT" "name the owner: sudo banger system setup --owner USER" "setup without an owner"
expect_rc 1 box_exec "$PKG_BIN" system setup --owner root
expect_contains "$LAST_OUT" "must be an unprivileged user" "setup --owner root"
expect_rc 1 box_exec test -e "$BANGER_INSTALL_TOML"
proved "setup without an owner, or with root, is refused and writes nothing"

expect_rc 0 box_exec "$PKG_BIN" system setup --owner "$OWNER"
expect_contains "$LAST_OUT" "set up banger v0.1.0" "banger system setup --owner $OWNER"
for f in "${OWNER_FILES[@]}"; do
    expect_rc 0 box_exec grep -q "$OWNER" "$f"
done
expect_eq "$(box_exec dpkg -S /etc/banger/install.toml 2>/dev/null)" "" "dpkg's owner of install.toml"
wait_daemon_ready 30
expect_eq "$(box_exec systemctl show -p User --value bangerd.service)" "$OWNER" "bangerd.service User="
expect_rc 0 box_exec "$PKG_BIN" system status
expect_contains "$LAST_OUT" "under /usr" "system status on the packaged install"
# (systemd may name it /lib/systemd/system/…: /lib is /usr/lib on a merged-/usr system.)
expect_eq "$(box_exec readlink -f "$(box_exec systemctl show -p FragmentPath --value bangerd-root.service)")" \
    /usr/lib/systemd/system/bangerd-root.service "bangerd-root.service's unit file"
proved "setup --owner $OWNER writes the owner's drop-in, bus policy and install.toml (none of them dpkg's) and starts both services from /usr/lib/systemd/system"

for unit in bangerd-root.service bangerd.service bangerd-root-recover.service \
    bangerd-root-resume.service banger.slice; do
    for ref in $(box_exec systemctl show -p Documentation --value "$unit"); do
        [[ $ref == man:* ]] || continue
        name=${ref#man:}
        section=${name##*(}
        section=${section%)}
        expect_rc 0 box_exec man -w "$section" "${name%(*}"
        expect_contains "$LAST_OUT" /usr/share/man/ "man -w $section ${name%(*}"
    done
done
proved "every unit's Documentation= resolves to a page of the package"

# --- 3. what the package manager owns, banger leaves alone ------------------------------------
before=$(box_exec sh -c 'sha256sum /usr/lib/banger/bin/* "$1"; ls /usr/local/lib' - "$BANGER_INSTALL_TOML")
expect_rc 1 box_exec "$PKG_BIN" system install --owner "$OWNER"
expect_contains "$LAST_OUT" "belongs to dpkg: set it up with: sudo banger system setup" "system install from the package's banger"
expect_rc 1 box_exec "$BOX_BIN/banger" system install --owner "$OWNER"
expect_contains "$LAST_OUT" "is installed by dpkg under /usr" "system install over the package"
expect_contains "$LAST_OUT" "apt-get install --only-upgrade banger" "system install over the package"
expect_rc 1 as_owner "$PKG_BIN" update
expect_contains "$LAST_OUT" "installed here by dpkg" "banger update on the packaged install"
expect_contains "$LAST_OUT" "sudo apt-get install --only-upgrade banger" "banger update on the packaged install"
expect_not_contains "$LAST_OUT" "password" "banger update on the packaged install (no polkit prompt)"
after=$(box_exec sh -c 'sha256sum /usr/lib/banger/bin/* "$1"; ls /usr/local/lib' - "$BANGER_INSTALL_TOML")
expect_eq "$after" "$before" "the binaries and install.toml after the refused install and update"
proved "system install over the package and banger update are refused with the apt command; nothing changed"

# --- 4. upgrade with a VM running -------------------------------------------------------------
BOX_BIN=$PKG_BIN_DIR
expect_rc 0 vm_up deb1 --memory 128M
boot_id=$(vm_boot_id deb1)
[ -n "$boot_id" ] || { fail "no boot_id from deb1"; exit 1; }
vmm_pid=$(main_pid "banger-vm-$(vm_id deb1).service")
root_pid=$(main_pid bangerd-root.service)
expect_rc 0 apt_box install -y -q "$DEB_BOX/${new_deb##*/}"
expect_contains "$LAST_OUT" "set up banger v0.2.0" "apt-get install of the newer package (its postinst)"
wait_daemon_ready 30
expect_eq "$(box_exec "$PKG_BIN" --version | cut -d' ' -f2)" v0.2.0 "banger --version after the upgrade"
expect_contains "$(root1_prop Version)" '"0.2.0"' "Root1 Version after the upgrade"
expect_ne "$(main_pid bangerd-root.service)" "$root_pid" "bangerd-root MainPID after the upgrade"
expect_eq "$(vm_boot_id deb1)" "$boot_id" "deb1's boot_id after the upgrade"
expect_eq "$(main_pid "banger-vm-$(vm_id deb1).service")" "$vmm_pid" "deb1's VMM after the upgrade"
expect_contains "$(box_exec cat "$BANGER_INSTALL_TOML")" 'version = "0.2.0"' "install.toml after the upgrade"
proved "apt-get upgrades 0.1.0 → 0.2.0: services restarted onto it, the VM kept its boot_id ($boot_id) and VMM (pid $vmm_pid)"

# --- 5. remove refused while a VM runs, then purge --------------------------------------------
expect_rc 100 apt_box remove -y -q banger
expect_contains "$LAST_OUT" "VM(s) still running" "apt-get remove with a VM running"
expect_eq "$(box_exec dpkg-query -W -f='${db:Status-Abbrev}' banger | tr -d ' ')" ii "banger's package state after the refused removal"
expect_eq "$(vm_boot_id deb1)" "$boot_id" "deb1's boot_id after the refused removal"
proved "apt-get remove is refused while a VM runs; the package and the VM stay"

expect_rc 0 vm_remove_all
expect_rc 0 apt_box purge -y -q banger
expect_rc 1 box_exec dpkg-query -W -f='${db:Status-Abbrev}' banger
left=""
while IFS= read -r f; do
    f=${f#.}
    case $f in /|/usr/|/usr/bin/|/usr/lib/|/usr/share/|/usr/lib/systemd/|/usr/lib/systemd/system/|\
        /usr/share/*/|/usr/share/man/*/) continue ;; esac
    box_exec test -e "$f" -o -L "$f" && left+="$f "
done <<<"$contents"
for f in "${OWNER_FILES[@]}" /etc/banger /var/lib/banger /var/lib/banger-root \
    /etc/systemd/system/bangerd.service.d \
    /etc/systemd/system/multi-user.target.wants/bangerd-root-resume.service; do
    box_exec test -e "$f" -o -L "$f" && left+="$f "
done
expect_eq "$left" "" "files left after apt-get purge"
for unit in bangerd-root.service bangerd.service; do
    expect_eq "$(box_exec systemctl show -p LoadState --value "$unit")" not-found "$unit LoadState after purge"
done
expect_rc 1 box_exec pgrep -x 'bangerd|bangerd-root'
expect_not_contains "$(box_exec busctl --system call org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus ListActivatableNames)" org.banger "activatable bus names after purge"
expect_not_contains "$(box_exec nft list tables)" banger "nftables tables after purge"
expect_rc 1 box_exec ip link show banger0
proved "apt-get purge leaves no file, unit, process, bus name, nftables table or bridge of banger's"
