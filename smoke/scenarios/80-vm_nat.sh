#!/usr/bin/env bash
# VMs reach the outside world through NAT, and banger puts the host back as it was.
#
# The test's own "upstream" network (lib/upstream.sh): a namespace behind up0 with a web server
# on 198.51.100.80 that has no route back to the VM subnet. Traffic goes to those test hosts only.
#
# 1. With the default config a guest fetches a page from the upstream server (masqueraded out of
#    the default route); banger's table `ip banger` is there and doctor reports it; a foreign
#    table the test made is untouched; guests are isolated from each other (a second VM cannot
#    be pinged) but both reach the host.
# 2. When the last VM stops, the table is gone and the forwarding sysctls are what they were;
#    the same when the last VM ends by itself (its VMM killed).
# 3. With `[network] nat = false` the fetch fails, and banger adds no rule and changes no sysctl.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"
# shellcheck source=../lib/upstream.sh
source "$SMOKE_LIB/upstream.sh"

CONFIG=/etc/banger/config.toml
UPSTREAM=$UPSTREAM_WEB
TOKEN=$UPSTREAM_TOKEN

cleanup() {
    local rc=$?
    vm_remove_all
    box_exec rm -f "$CONFIG"
    box_exec nft delete table inet smoke_foreign 2>/dev/null || true
    upstream_down
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
box_exec rm -f "$CONFIG"
upstream_up || exit 1

# A table banger must never touch.
expect_rc 0 box_exec sh -c 'nft add table inet smoke_foreign &&
    nft add chain inet smoke_foreign smokechain "{ type filter hook forward priority 10; policy accept; }" &&
    nft add rule inet smoke_foreign smokechain counter'
sysctls() {
    box_exec sh -c 'for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/forwarding; do
        printf "%s=%s\n" "$f" "$(cat "$f")"; done' | grep -v -e '/bt-' -e '/banger0/'
}
ruleset_without_counters() { box_exec nft list ruleset | sed 's/counter packets [0-9]* bytes [0-9]*/counter/'; }
sysctls_before=$(sysctls)
ip_forward_before=$(box_exec cat /proc/sys/net/ipv4/ip_forward)
foreign_before=$(box_exec nft list table inet smoke_foreign | sed 's/counter packets [0-9]* bytes [0-9]*/counter/')
ruleset_before=$(ruleset_without_counters)
expect_not_contains "$ruleset_before" "table ip banger" "banger's table before any VM"

# The guest fetches a page upstream: an HTTP/1.0 request through busybox nc (5 s at most); the
# body is the last line of the answer.
fetch() {
    { vm_ssh "$1" "printf 'GET /token HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $UPSTREAM 8080" 2>&1 || true; } |
        tr -d '\r' | tail -n 1
}

# --- 1. NAT on (the default)
expect_rc 0 vm_up nat1
got=$(fetch nat1)
expect_eq "$got" "$TOKEN" "the page a VM fetched from $UPSTREAM" || exit 1
proved "a VM fetches http://$UPSTREAM:8080/token from the upstream network (masqueraded out of up0)"

table=$(box_exec nft list table ip banger)
expect_contains "$table" "masquerade" "table ip banger"
expect_contains "$table" 'oifname "up0"' "table ip banger"
expect_eq "$(box_exec cat /proc/sys/net/ipv4/ip_forward)" "$ip_forward_before" "the global ip_forward (banger never changes it)"
expect_eq "$(box_exec cat /proc/sys/net/ipv4/conf/banger0/forwarding)" 1 "banger0 forwarding"
expect_eq "$(box_exec cat /proc/sys/net/ipv4/conf/up0/forwarding)" 1 "up0 forwarding"
foreign_now=$(box_exec nft list table inet smoke_foreign | sed 's/counter packets [0-9]* bytes [0-9]*/counter/')
expect_eq "$foreign_now" "$foreign_before" "the foreign table while NAT is on"
proved "NAT lives in table ip banger (masquerade out of up0); forwarding is on for banger0 and up0 only, global ip_forward unchanged ($ip_forward_before); a foreign table is untouched"

run_capture as_owner "$BOX_BIN/banger" doctor
expect_line "$LAST_OUT" 'vm nat: 172\.30\.0\.0/24 is masqueraded out of up0' "banger doctor"
proved "doctor: '$(grep 'vm nat' <<<"$LAST_OUT")'"

# Isolation: a second guest cannot be reached from the first; the host can.
expect_rc 0 vm_up nat2
addr2=$(vm_field nat2 address)
if vm_ssh nat1 ping -c 2 -W 2 "$addr2" >/dev/null 2>&1; then
    fail "VM nat1 reached VM nat2 ($addr2) although guests are isolated"
    exit 1
fi
expect_rc 0 vm_ssh nat1 ping -c 1 -W 2 172.30.0.1
expect_rc 0 vm_ssh nat2 ping -c 1 -W 2 172.30.0.1
expect_eq "$(box_exec ip -j -d link show "bt-$(vm_id nat2)" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["linkinfo"]["info_slave_data"]["isolated"])')" \
    True "the tap's bridge port isolation"
proved "guests are isolated from each other (nat1 cannot ping nat2 at $addr2) and both reach the host (172.30.0.1)"

# --- 2. The last VM's stop puts the host back.
expect_rc 0 as_owner "$BOX_BIN/banger" vm stop nat1
expect_contains "$(box_exec nft list tables)" "table ip banger" "tables while nat2 still runs"
expect_rc 0 as_owner "$BOX_BIN/banger" vm stop nat2
expect_not_contains "$(box_exec nft list tables)" "table ip banger" "tables after the last VM stopped"
expect_eq "$(sysctls)" "$sysctls_before" "the forwarding sysctls after the last VM stopped"
expect_eq "$(box_exec cat /proc/sys/net/ipv4/conf/banger0/forwarding)" 0 "banger0 forwarding after the last VM stopped (the kernel's default when banger made it)"
expect_eq "$(ruleset_without_counters)" "$ruleset_before" "the whole ruleset after the last VM stopped"
expect_rc 1 box_exec test -e /run/bangerd-root/nat.toml
proved "after the last VM stopped: no table ip banger, the forwarding sysctls and the whole ruleset are as before, no record left"

# A VM that ends by itself (its VMM killed) is seen ending: as the last VM, its end releases
# outbound network without any banger command.
expect_rc 0 as_owner "$BOX_BIN/banger" vm start nat1
expect_contains "$(box_exec nft list tables)" "table ip banger" "tables while nat1 runs again"
pid=$(main_pid "banger-vm-$(vm_id nat1).service")
expect_rc 0 box_exec kill -KILL "$pid"
nat_released() { ! box_exec nft list tables | grep -q 'table ip banger'; }
wait_for 15 "the helper to release outbound network after the last VM's VMM was killed" nat_released || exit 1
expect_eq "$(sysctls)" "$sysctls_before" "the forwarding sysctls after the last VM died"
proved "a VM whose VMM was killed (pid $pid) is seen ending: no table ip banger and the sysctls as before, with no banger command run"

# --- 3. NAT off
expect_rc 0 box_exec sh -c "umask 022; printf '[network]\nnat = false\n' >$CONFIG"
run_capture as_owner "$BOX_BIN/banger" doctor
expect_line "$LAST_OUT" 'vm nat: off' "banger doctor with nat = false"
expect_rc 0 as_owner "$BOX_BIN/banger" vm start nat1
got=$(fetch nat1)
expect_ne "$got" "$TOKEN" "a fetch with nat = false"
expect_eq "$(ruleset_without_counters)" "$ruleset_before" "the ruleset with nat = false"
expect_eq "$(sysctls)" "$sysctls_before" "the sysctls with nat = false"
expect_rc 0 vm_ssh nat1 ping -c 1 -W 2 172.30.0.1
proved "with [network] nat = false the fetch fails ('$(head -c 80 <<<"$got")'), the VM still reaches the host, and the ruleset and sysctls are untouched"
