# shellcheck shell=bash
# shellcheck disable=SC2016 # code that runs inside the box is single-quoted on purpose
# A test "upstream" network for the VM network scenarios, all inside the box.
#
# The box has no network but loopback. upstream_up makes a network namespace, smup, joined to the
# box by a veth pair on 192.0.2.0/24 (TEST-NET-1: the box is 192.0.2.1 on up0, smup 192.0.2.254
# on up1), points the box's default route and /etc/resolv.conf at it, and runs there:
#   - a web server on $UPSTREAM_WEB:8080 (198.51.100.80, TEST-NET-2, on smup's loopback: only
#     routed traffic reaches it, and smup has no route back to the VM subnet), serving
#     /token with $UPSTREAM_TOKEN;
#   - a DNS server on 192.0.2.254:53 (smoke/lib/upstream-dns.py) that knows
#     $UPSTREAM_NAME (www.upstream.test) → $UPSTREAM_WEB and nothing else; what it was asked is
#     in the journal of $UPSTREAM_DNS_UNIT.
# Traffic goes to those test hosts only. upstream_down removes it all and puts resolv.conf back.
#
# Needs lib/box.sh, lib/assert.sh.

UPSTREAM_WEB=198.51.100.80
UPSTREAM_NAME=www.upstream.test
UPSTREAM_DNS=192.0.2.254
UPSTREAM_WEB_UNIT=smoke-upstream-www.service
UPSTREAM_DNS_UNIT=smoke-upstream-dns.service
UPSTREAM_TOKEN="banger-upstream-$RANDOM$RANDOM"

upstream_up() {
    box_exec sh -euc '
        ip netns add smup
        ip link add up0 type veth peer name up1 netns smup
        ip addr add 192.0.2.1/24 dev up0
        ip link set up0 up
        ip netns exec smup sh -euc "
            ip link set lo up
            ip addr add 192.0.2.254/24 dev up1
            ip addr add $1/32 dev lo
            ip link set up1 up"
        ip route add default via 192.0.2.254 dev up0
        mkdir -p /run/smoke-www
        echo "$2" >/run/smoke-www/token
        # The box is an overlay: this changes the box only.
        if [ ! -e /run/smoke-resolv.conf.saved ]; then cp -P /etc/resolv.conf /run/smoke-resolv.conf.saved 2>/dev/null || : >/run/smoke-resolv.conf.saved; fi
        rm -f /etc/resolv.conf
        echo "nameserver 192.0.2.254" >/etc/resolv.conf
        ' up "$UPSTREAM_WEB" "$UPSTREAM_TOKEN" || return 1
    box_exec systemd-run --quiet --unit="$UPSTREAM_WEB_UNIT" -p NetworkNamespacePath=/run/netns/smup \
        python3 -m http.server --bind "$UPSTREAM_WEB" --directory /run/smoke-www 8080 || return 1
    box_exec systemd-run --quiet --unit="$UPSTREAM_DNS_UNIT" -p NetworkNamespacePath=/run/netns/smup \
        python3 -c "$(<"$SMOKE_LIB/upstream-dns.py")" "$UPSTREAM_DNS" "$UPSTREAM_NAME=$UPSTREAM_WEB" || return 1
    _upstream_serving() {
        [ "$(box_exec python3 -c "import urllib.request as u; print(u.urlopen('http://$UPSTREAM_WEB:8080/token', timeout=2).read().decode().strip())" 2>/dev/null)" = "$UPSTREAM_TOKEN" ]
    }
    wait_for 15 "the upstream web server, reached from the box over up0" _upstream_serving
}

upstream_down() {
    box_exec systemctl stop "$UPSTREAM_WEB_UNIT" "$UPSTREAM_DNS_UNIT" 2>/dev/null || true
    box_exec systemctl reset-failed "$UPSTREAM_WEB_UNIT" "$UPSTREAM_DNS_UNIT" 2>/dev/null || true
    box_exec ip route del default via 192.0.2.254 2>/dev/null || true
    box_exec ip link del up0 2>/dev/null || true
    box_exec ip netns del smup 2>/dev/null || true
    box_exec sh -c 'if [ -e /run/smoke-resolv.conf.saved ] || [ -L /run/smoke-resolv.conf.saved ]; then
        rm -f /etc/resolv.conf; cp -P /run/smoke-resolv.conf.saved /etc/resolv.conf; rm -f /run/smoke-resolv.conf.saved; fi' || true
}
