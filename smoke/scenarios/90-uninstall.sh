#!/usr/bin/env bash
# Runs last. `banger system uninstall` refuses while a VM runs (nothing removed); with
# --stop-vms it stops the VM (unit and tap gone, its NAT table and forwarding sysctls put back),
# removes the bridge banger created, removes
# everything it installed and stops the services, keeping the owner's data (/var/lib/banger) and
# /etc/banger; `--purge` (run from a copy of the binary, as an admin would once the installed one
# is gone) removes those too.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

SPARE=/tmp/banger-spare          # inside the box
kept_paths=(/etc/banger /var/lib/banger "$BANGER_STORE")
# install.toml may go or stay with a plain uninstall; --purge removes it with /etc/banger.
is_kept() {
    local k
    for k in "${kept_paths[@]}" "$BANGER_INSTALL_TOML"; do [ "$1" = "$k" ] && return 0; done
    return 1
}

expect_rc 0 box_exec cp "$BANGER_PREFIX/lib/banger/bin/banger" "$SPARE"
wait_unit_state 15 bangerd.service active

# --- a running VM, with outbound network (a default route through a veth pair: 192.0.2.0/24) ---
cleanup() {
    local rc=$?
    box_exec ip route del default via 192.0.2.254 2>/dev/null || true
    box_exec ip link del up0 2>/dev/null || true
    return "$rc"
}
trap cleanup EXIT
expect_rc 0 box_exec sh -euc 'ip link add up0 type veth peer name up1; ip link set up1 up
    ip addr add 192.0.2.1/24 dev up0; ip link set up0 up; ip route add default via 192.0.2.254'
expect_rc 0 vm_up last --memory 128M
id=$(vm_id last)
expect_contains "$(box_exec nft list tables)" "table ip banger" "nftables tables while the VM runs"
snapshot_install before-uninstall
expect_rc 1 box_exec "$BANGER" system uninstall
expect_contains "$LAST_OUT" "1 VM(s) still running (banger-vm-$id.service)" "uninstall with a VM running"
expect_contains "$LAST_OUT" "nothing was removed" "uninstall with a VM running"
snapshot_install refused-uninstall
expect_same_snapshot before-uninstall refused-uninstall "after the refused uninstall" "$BANGER_STORE"
expect_eq "$(vm_field last state)" running "the VM after the refused uninstall"
proved "uninstall refuses while VM last runs, naming its unit; nothing was removed and the VM runs on"

expect_rc 0 box_exec "$BANGER" system uninstall --stop-vms
printf '%s\n' "$LAST_OUT" | sed 's/^/  uninstall: /'
expect_contains "$LAST_OUT" "stopped banger-vm-$id.service and removed its tap" "uninstall --stop-vms"
expect_contains "$LAST_OUT" "removed bridge banger0" "uninstall --stop-vms"
proved "banger system uninstall --stop-vms exits 0 as root"
expect_eq "$(box_exec systemctl show -p LoadState --value "banger-vm-$id.service")" not-found \
    "the VM's unit after uninstall"
expect_rc 1 box_exec ip -o link show "bt-$id"
expect_rc 1 box_exec ip -o link show banger0
proved "the VM's unit, its tap bt-$id and the bridge banger0 are gone"
expect_not_contains "$(box_exec nft list tables)" "table ip banger" "nftables tables after uninstall"
expect_eq "$(box_exec cat /proc/sys/net/ipv4/conf/up0/forwarding)" 0 "up0 forwarding after uninstall"
expect_rc 1 box_exec test -e /run/bangerd-root/nat.toml
proved "no nftables table, forwarding sysctl or NAT record of banger's is left"

# --- files ----------------------------------------------------------------------------------
snapshot_install after-uninstall
snap=$(cat "$(snapshot_file after-uninstall)")
left=""
while IFS= read -r path; do
    is_kept "$path" && continue
    grep -qx -- "$path missing" <<<"$snap" || left+="$(grep -- "^$path " <<<"$snap")"$'\n'
done < <(banger_installed_paths)
expect_eq "$left" "" "installed files left after uninstall"
proved "no binary, symlink, unit, bus policy, activation file, polkit policy or example rule is left"

for path in "${kept_paths[@]}"; do
    expect_no_line "$(grep -- "^$path " <<<"$snap")" ' missing$' "$path after uninstall (without --purge)"
done
expect_rc 0 store_user_version
toml_state=kept
grep -qx -- "$BANGER_INSTALL_TOML missing" <<<"$snap" && toml_state=removed
proved "/var/lib/banger (store readable, schema $LAST_OUT) and /etc/banger are kept ($BANGER_INSTALL_TOML $toml_state)"

# --- services, names, actions ---------------------------------------------------------------
for unit in bangerd-root.service bangerd.service; do
    expect_eq "$(unit_state "$unit")" inactive "$unit ActiveState after uninstall"
    expect_eq "$(box_exec systemctl show -p LoadState --value "$unit")" not-found \
        "$unit LoadState after uninstall (systemd reloaded)"
done
for exe in bangerd bangerd-root; do
    expect_rc 1 box_exec pgrep -x "$exe"
done
proved "both services are stopped and unknown to systemd; no bangerd or bangerd-root process is left"

activatable() {
    box_exec busctl --system call org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus ListActivatableNames
}
not_activatable() { ! activatable | grep -q "\"$1\""; }
for name in org.banger.Root1 org.banger.Daemon1; do
    expect_eq "$(name_has_owner "$name")" false "$name owned after uninstall"
    wait_for 10 "dbus-daemon to forget the activation file of $name" not_activatable "$name"
done
proved "org.banger.Root1 and org.banger.Daemon1 are neither owned nor activatable"

no_action() { ! box_exec pkaction --action-id org.banger.daemon.manage >/dev/null 2>&1; }
wait_for 10 "polkitd to forget org.banger.daemon.manage" no_action
proved "polkit no longer knows org.banger.daemon.manage"

# --- purge ----------------------------------------------------------------------------------
expect_rc 0 box_exec "$SPARE" system uninstall --purge
printf '%s\n' "$LAST_OUT" | sed 's/^/  purge: /'
snapshot_install after-purge
left=$(grep -v ' missing$' "$(snapshot_file after-purge)" || true)
expect_eq "$left" "" "files left after uninstall --purge"
proved "banger system uninstall --purge (from a copy of the binary, after a plain uninstall) removes /var/lib/banger and /etc/banger"
