#!/usr/bin/env bash
# A guest's router advertisement changes nothing on the host. With a VM running (so the bridge
# and a tap exist), IPv6 is off on the bridge and the tap (accept_ra 0, autoconf 0,
# accept_redirects 0, disable_ipv6 1). A veth attached to the bridge plays the hostile guest
# (its far end in a network namespace of its own; its near end, like a tap, with IPv6 off) sends
# an RA with a default route and an autoconfiguration prefix: the host's IPv6 routes and
# addresses are unchanged. The same RA sent on a control veth pair outside the bridge does give
# the host a default route, so the RA itself is one the kernel accepts.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

cleanup() {
    local rc=$?
    box_exec ip link del smra0 2>/dev/null || true
    box_exec ip link del smctl0 2>/dev/null || true
    box_exec ip netns del smguest 2>/dev/null || true
    box_exec ip netns del smctl 2>/dev/null || true
    vm_remove_all
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
expect_rc 0 vm_up ra
tap=bt-$(vm_id ra)

ra=$(<"$SMOKE_LIB/send-ra.py")
state() { box_exec sh -c 'ip -6 route show table all; ip -6 addr show' | grep -v 'proto kernel.*fe80::/64' || true; }
# veth_pair HOST_END PEER_END NETNS: the peer, in NETNS, plays the guest (no DAD: it sends at once)
veth_pair() {
    box_exec sh -euc '
        ip netns add "$3"
        ip link add "$1" type veth peer name "$2" netns "$3"
        ip netns exec "$3" sh -c "echo 0 >/proc/sys/net/ipv6/conf/$2/accept_dad; ip link set $2 up"
        ' veth "$1" "$2" "$3"
}
send_ra() { box_exec ip netns exec "$1" python3 -c "$ra" "$2"; }

# The hostile "guest": a port of the VM bridge.
expect_rc 0 veth_pair smra0 smra1 smguest
expect_rc 0 box_exec sh -c 'echo 1 >/proc/sys/net/ipv6/conf/smra0/disable_ipv6 &&
    ip link set smra0 master banger0 && ip link set smra0 up'
sleep 1
before=$(state)
expect_rc 0 send_ra smguest smra1
sleep 2
after=$(state)
if [ "$before" != "$after" ]; then
    fail "the host's IPv6 routes or addresses changed after a router advertisement on the VM bridge" || true
    _evidence "diff:" "$(diff <(echo "$before") <(echo "$after"))"
    exit 1
fi
expect_no_line "$(box_exec ip -6 route show default)" 'dev banger0' "a default route via the VM bridge"
expect_no_line "$(box_exec ip -6 addr show dev banger0)" '2001:db8:76:' "an autoconfigured address on banger0"
proved "a router advertisement from the VM bridge (default route, prefix 2001:db8:76::/64) leaves the host's IPv6 routes and addresses unchanged"

# The control: the same RA on a link with the kernel's defaults is accepted.
expect_rc 0 veth_pair smctl0 smctl1 smctl
expect_rc 0 box_exec ip link set smctl0 up
sleep 1
expect_rc 0 send_ra smctl smctl1
control_route() { box_exec ip -6 route show default | grep 'dev smctl0'; }
wait_for 10 "the control link to take the advertised default route" control_route
proved "the same router advertisement on a link with the kernel's defaults adds a default route (so the RA is one the kernel accepts)"

for dev in banger0 "$tap"; do
    for kv in accept_ra=0 autoconf=0 accept_redirects=0 disable_ipv6=1; do
        expect_eq "$(box_exec cat "/proc/sys/net/ipv6/conf/$dev/${kv%=*}")" "${kv#*=}" "$dev ${kv%=*}"
    done
done
proved "IPv6 is off on banger0 and $tap (accept_ra 0, autoconf 0, accept_redirects 0, disable_ipv6 1)"
