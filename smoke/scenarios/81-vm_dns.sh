#!/usr/bin/env bash
# Names that resolve. bangerd answers DNS on the host's bridge address (172.30.0.1:53): VM names
# under banger.internal from its store, everything else forwarded to the host's resolvers (here
# the upstream network's DNS server, lib/upstream.sh, which the box's /etc/resolv.conf names).
#
# 1. A guest resolves an upstream name through banger (the upstream server was asked) and fetches
#    the page from it by that name over NAT.
# 2. A guest resolves another VM by its full name (dns2.banger.internal) and by its bare name
#    (search domain); an unknown VM is NXDOMAIN. The host resolves VM names at 172.30.0.1 too.
# 3. With [network] isolate = false two guests reach each other by name.
# 4. doctor reports the resolver.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"
# shellcheck source=../lib/upstream.sh
source "$SMOKE_LIB/upstream.sh"

CONFIG=/etc/banger/config.toml
ASK=$(<"$SMOKE_LIB/dns-ask.py")

cleanup() {
    local rc=$?
    vm_remove_all
    box_exec rm -f "$CONFIG"
    upstream_down
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
box_exec rm -f "$CONFIG"
upstream_up || exit 1

# The box asks banger's resolver, as the host's own tools would.
host_ask() { box_exec python3 -c "$ASK" 172.30.0.1 "$@"; }
# busybox nslookup in the guest: the "Address" lines after the "Name:" line.
guest_lookup() {
    { vm_ssh "$1" nslookup "$2" 2>&1 || true; } | tr -d '\r' |
        awk '/^Name:/ {n = 1} n && /^Address/ {print $NF}' | head -n 1
}

expect_rc 0 vm_up dns1
expect_rc 0 vm_up dns2
addr1=$(vm_field dns1 address)
addr2=$(vm_field dns2 address)

# --- 1. upstream names, through the host's resolver
expect_eq "$(guest_lookup dns1 "$UPSTREAM_NAME")" "$UPSTREAM_WEB" "$UPSTREAM_NAME as the guest resolves it"
expect_contains "$(box_exec journalctl -u "$UPSTREAM_DNS_UNIT" --no-pager -o cat)" "asked $UPSTREAM_NAME 1" \
    "the upstream DNS server's log"
got=$({ vm_ssh dns1 "printf 'GET /token HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $UPSTREAM_NAME 8080" 2>&1 || true; } | tr -d '\r' | tail -n 1)
expect_eq "$got" "$UPSTREAM_TOKEN" "the page a guest fetched from http://$UPSTREAM_NAME:8080/token" || exit 1
proved "a guest resolves $UPSTREAM_NAME through banger's resolver (forwarded to the host's resolver, the upstream server was asked) and fetches http://$UPSTREAM_NAME:8080/token by name over NAT"

# --- 2. VM names
expect_eq "$(guest_lookup dns1 dns2.banger.internal)" "$addr2" "dns2.banger.internal from dns1"
expect_eq "$(guest_lookup dns1 dns2)" "$addr2" "the bare name dns2 from dns1 (search banger.internal)"
expect_eq "$(guest_lookup dns2 dns1.banger.internal)" "$addr1" "dns1.banger.internal from dns2"
expect_eq "$(host_ask dns1.banger.internal)" "A $addr1" "dns1.banger.internal asked from the host"
expect_eq "$(host_ask DNS2.Banger.Internal)" "A $addr2" "a name in other case asked from the host"
expect_eq "$(host_ask nope.banger.internal)" "NXDOMAIN" "an unknown VM"
expect_eq "$(host_ask dns1.banger.internal --tcp)" "A $addr1" "dns1.banger.internal asked over TCP"
expect_eq "$(host_ask "$UPSTREAM_NAME" --tcp)" "A $UPSTREAM_WEB" "$UPSTREAM_NAME asked over TCP (forwarded over TCP)"
proved "VM names resolve from guests (dns2.banger.internal and bare dns2 → $addr2) and from the host at 172.30.0.1, over UDP and TCP; an unknown VM is NXDOMAIN"

# A VM created later resolves at once (answers come from the store, not a zone file).
expect_rc 0 as_owner "$BOX_BIN/banger" vm create dns3 --image "$GUEST_IMAGE"
addr3=$(vm_field dns3 address)
expect_eq "$(host_ask dns3.banger.internal)" "A $addr3" "a VM created a moment ago"
expect_rc 0 as_owner "$BOX_BIN/banger" vm rm dns3
expect_eq "$(host_ask dns3.banger.internal)" "NXDOMAIN" "a VM deleted a moment ago"
proved "a VM resolves as soon as it is created and stops resolving when it is deleted"

# --- 3. guests that may see each other reach each other by name
if vm_ssh dns1 ping -c 1 -W 2 dns2 >/dev/null 2>&1; then
    fail "dns1 reached dns2 although guests are isolated (the default)"
    exit 1
fi
expect_rc 0 box_exec sh -c "umask 022; printf '[network]\nisolate = false\n' >$CONFIG"
for v in dns1 dns2; do
    expect_rc 0 as_owner "$BOX_BIN/banger" vm stop "$v"
    expect_rc 0 as_owner "$BOX_BIN/banger" vm start "$v" >/dev/null
done
expect_rc 0 vm_ssh dns1 ping -c 1 -W 2 dns2
expect_rc 0 vm_ssh dns2 ping -c 1 -W 2 dns1.banger.internal
proved "with [network] isolate = false, dns1 and dns2 reach each other by name (ping dns2, ping dns1.banger.internal); with the default they do not"

# --- 4. doctor
run_capture as_owner "$BOX_BIN/banger" doctor
expect_line "$LAST_OUT" 'PASS bangerd vm dns: serving <vm>\.banger\.internal at 172\.30\.0\.1:53; other names go to 192\.0\.2\.254' "banger doctor"
proved "doctor: '$(grep 'vm dns' <<<"$LAST_OUT")'"
