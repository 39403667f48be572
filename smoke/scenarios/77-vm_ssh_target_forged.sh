#!/usr/bin/env bash
# A forged SSH target never reaches ssh's command line. With bangerd stopped, a process of the
# owner owns org.banger.Daemon1 (the bus policy allows the owner that) and answers GetSshTarget
# with an address, then a user, that is an ssh option (-oProxyCommand=touch FILE), then a host
# key that carries a second known_hosts line. `banger vm ssh`, run as root as `sudo banger vm
# ssh` would, refuses each with a message naming the field, exits 1 and runs nothing: FILE is
# never created.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

MARK=/tmp/smoke-proxycommand-ran      # in the box; root's ssh would create it
cleanup() {
    local rc=$?
    box_exec systemctl stop smoke-fake-daemon1.service 2>/dev/null || true
    box_exec sh -c 'rm -f "$1"*' rm "$MARK" || true
    box_exec systemctl start bangerd.service || true
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
box_exec sh -c 'rm -f "$1"*' rm "$MARK"
ran() { box_exec sh -c 'ls -d "$1"* 2>/dev/null' ls "$MARK"; }
expect_rc 0 box_exec systemctl stop bangerd.service
fake=$(<"$SMOKE_LIB/fake-daemon1.py")
expect_rc 0 box_exec systemd-run --quiet --collect --unit smoke-fake-daemon1.service -p "User=$OWNER" \
    -p RuntimeMaxSec=300 python3 -c "${fake//\$/\$\$}" "$MARK"
daemon1_owned() { [ "$(name_has_owner org.banger.Daemon1)" = true ]; }
wait_for 15 "the forged Daemon1 to own the name" daemon1_owned
proved "with bangerd stopped, a process of $OWNER owns org.banger.Daemon1"

for case in "addr|the address \"-oProxyCommand=touch $MARK\", which is not an IP address" \
    "user|the user \"-oProxyCommand=touch $MARK\", which is not a login name" \
    "key|the host key"; do
    vm=${case%%|*} want=${case#*|}
    rc=0 out=$(box_exec "$BANGER" vm ssh "$vm" -- true 2>&1) || rc=$?
    expect_eq "$(ran)" "" "files left by a ProxyCommand after sudo banger vm ssh $vm"
    expect_eq "$rc" 1 "exit status of sudo banger vm ssh $vm against the forged Daemon1 (output: $out)"
    expect_contains "$out" "refusing to connect to VM $vm: bangerd described it with $want" \
        "sudo banger vm ssh $vm against the forged Daemon1"
    expect_contains "$out" "nothing was run" "sudo banger vm ssh $vm"
    proved "a forged target ($vm) is refused by the CLI run as root, and no ProxyCommand ran: $(grep -o 'refusing.*, which is [^(,]*' <<<"$out" | head -n 1)"
done
