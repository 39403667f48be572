#!/usr/bin/env bash
# The guest agent: banger-agent in the test guest, asked over the VM's virtio-serial port.
#
# 1. `banger vm ports` lists what listens in the guest (dropbear on 22, nc on TCP 8080, udhcpd
#    on UDP 67) with the pids the guest itself reports, and everything the guest's own netstat
#    lists; --json gives the same.
# 2. `banger vm show` adds the agent's view: uptime, kernel, eth0's address and the boot id that
#    SSH reads; --json carries it as "guest".
# 3. The channel is not the network: with the guest's eth0 down, vm ports still answers.
# 4. Hostile or missing agents (a silent guest, a 300000-byte line, garbage, escape sequences
#    in process names) are refused or cleaned with a message naming the fault; bangerd, the VM
#    and SSH are unaffected, and the real agent answers again afterwards.
# 5. Another user cannot ask; a stopped VM's agent is not asked, and the error says why.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

BANGER=$BOX_BIN/banger

cleanup() {
    local rc=$?
    vm_remove_all
    return "$rc"
}
trap cleanup EXIT

ports() { as_owner "$BANGER" vm ports "$@"; }
guest_pid() { vm_ssh ag1 "pidof $1" | tr -d '\r\n'; }
# setsid made the script a process group of its own: kill all of it (a writer left blocked on
# the port would feed the next connection).
STOP_HOSTILE='[ ! -s /tmp/hostile.pid ] || kill -9 -$(cat /tmp/hostile.pid) 2>/dev/null; rm -f /tmp/hostile.pid'
# hostile NAME: replaces the agent (or the hostile one before) with the shell script on standard
# input, run in the guest as /tmp/NAME.sh. Each script finds the port by name (its number
# depends on the devices before it). The port can be open once at a time (hence one
# read-write descriptor, retried while the one before lets go); while the host is not
# connected, reads return end-of-file at once and writes are dropped.
hostile() {
    vm_ssh ag1 "cat >/tmp/$1.sh && kill \$(pidof banger-agent) 2>/dev/null; $STOP_HOSTILE; \
        setsid sh /tmp/$1.sh </dev/null >/dev/null 2>&1 & echo \$! >/tmp/hostile.pid"
}
still_fine() { # the daemon answers, the VM runs, SSH works
    expect_eq "$(vm_field ag1 state)" running "ag1's state after $1" &&
        expect_eq "$(vm_ssh ag1 echo alive | tr -d '\r')" alive "SSH into ag1 after $1"
}

wait_daemon_ready 15
vm_remove_all_and_image
expect_rc 0 vm_up ag1 || exit 1

# --- 1. ports
vm_ssh ag1 'setsid nc -l -p 8080 </dev/null >/dev/null 2>&1 &
    printf "interface eth0\nlease_file /tmp/leases\n" >/tmp/udhcpd.conf; : >/tmp/leases; udhcpd /tmp/udhcpd.conf' || exit 1
nc_pid=$(guest_pid nc)
dhcp_pid=$(guest_pid udhcpd)
sshd_pid=$(vm_ssh ag1 'cat /run/dropbear.pid' | tr -d '\r\n')
[ -n "$nc_pid" ] && [ -n "$dhcp_pid" ] && [ -n "$sshd_pid" ] ||
    { fail "the guest's listeners did not start (nc '$nc_pid', udhcpd '$dhcp_pid', dropbear '$sshd_pid')"; exit 1; }
expect_rc 0 ports ag1 || exit 1
table=$LAST_OUT
expect_line "$table" '^PROTO +ADDRESS +PORT +PID +PROCESS$' "vm ports header" || exit 1
expect_line "$table" "^tcp +0\.0\.0\.0 +22 +$sshd_pid +dropbear$" "dropbear in vm ports" || exit 1
expect_line "$table" "^tcp +(0\.0\.0\.0|::) +8080 +$nc_pid +nc$" "nc in vm ports" || exit 1
expect_line "$table" "^udp +0\.0\.0\.0 +67 +$dhcp_pid +udhcpd$" "udhcpd in vm ports" || exit 1
# Everything the guest's own netstat lists as listening appears, with the same port.
netstat=$(vm_ssh ag1 'netstat -lntu' | tr -d '\r')
missing=$(awk 'NR > 2 && ($1 ~ /^(tcp|udp)/) { n = split($4, a, ":"); print substr($1, 1, 3) " " a[n] }' <<<"$netstat" |
    sort -u | while read -r proto port; do
        grep -qE "^$proto +[^ ]+ +$port " <<<"$table" || echo "$proto/$port"
    done)
expect_eq "$missing" "" "listening sockets netstat lists but vm ports does not" || exit 1
json=$(ports ag1 --json) || { fail "vm ports --json failed"; exit 1; }
got=$(python3 -c '
import json, sys
ports = json.loads(sys.argv[1])
want = {("tcp", 22): "dropbear", ("tcp", 8080): "nc", ("udp", 67): "udhcpd"}
print(" ".join(sorted({"%s/%d=%d" % (p["proto"], p["port"], p["pid"]) for p in ports if (p["proto"], p["port"]) in want})))
' "$json")
expect_eq "$got" "tcp/22=$sshd_pid tcp/8080=$nc_pid udp/67=$dhcp_pid" "vm ports --json" || exit 1
proved "vm ports ag1: dropbear on tcp/22, nc on tcp/8080 and udhcpd on udp/67 with the guest's own pids, everything the guest's netstat lists, the same in --json"

# --- 2. vm show
boot_id=$(vm_boot_id ag1)
addr=$(vm_field ag1 address)
expect_rc 0 as_owner "$BANGER" vm show ag1 || exit 1
show=$LAST_OUT
expect_line "$show" '^uptime: +[0-9]+ (s|min [0-9]{2} s)$' "uptime in vm show" || exit 1
expect_line "$show" "^guest addresses: +$addr/24 \(eth0\)" "eth0's address in vm show" || exit 1
expect_line "$show" "^boot id: +$boot_id$" "the boot id in vm show" || exit 1
expect_line "$show" '^guest kernel: +[0-9]+\.[0-9]+' "the guest kernel in vm show" || exit 1
guest_boot=$(as_owner "$BANGER" vm show ag1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["guest"]["boot_id"])')
expect_eq "$guest_boot" "$boot_id" "guest.boot_id in vm show --json" || exit 1
proved "vm show ag1: uptime, kernel, $addr/24 on eth0 and the boot id SSH reads ($boot_id), also in --json"

# --- 3. not the network
vm_ssh ag1 'setsid sh -c "sleep 1; ip link set eth0 down; sleep 8; ip link set eth0 up" </dev/null >/dev/null 2>&1 &' || exit 1
sleep 3
expect_rc '!0' box_exec ping -c 1 -W 1 "$addr" || exit 1
expect_rc 0 ports ag1 || exit 1
expect_line "$LAST_OUT" '^tcp +(0\.0\.0\.0|::) +8080 ' "vm ports with the guest's network down" || exit 1
proved "with the guest's eth0 down (ping fails) vm ports still answers: the agent's channel is not the network"
wait_for 30 "ag1 to answer SSH again" vm_ssh ag1 true || exit 1

# --- 4. hostile and missing agents
vm_ssh ag1 'kill $(pidof banger-agent)' || exit 1
t0=$SECONDS
expect_rc '!0' ports ag1 || exit 1
took=$((SECONDS - t0))
expect_contains "$LAST_OUT" "did not answer within 3 s: is banger-agent running in the guest?" "a silent guest" || exit 1
[ "$took" -le 10 ] || { fail "vm ports took $took s against a silent guest"; exit 1; }
still_fine "a silent agent" || exit 1
proved "no agent in the guest: 'did not answer within 3 s: is banger-agent running in the guest?' after $took s"

hostile long <<'EOF' || exit 1
dev=/dev/$(grep -l '^org.banger.agent.0$' /sys/class/virtio-ports/*/name | cut -d/ -f5)
while :; do
    {
    while read -r l <&3; do
        [ -n "$l" ] || continue
        head -c 300000 /dev/zero | tr '\000' x >&3
        echo >&3
    done
    } 3<>"$dev"
    sleep 0.2
done
EOF
expect_rc '!0' ports ag1 || exit 1
expect_contains "$LAST_OUT" "sent a line longer than 262144 bytes" "a 300000-byte line" || exit 1
still_fine "an oversized answer" || exit 1
proved "a 300000-byte answer is refused: 'sent a line longer than 262144 bytes'"

hostile garbage <<'EOF' || exit 1
dev=/dev/$(grep -l '^org.banger.agent.0$' /sys/class/virtio-ports/*/name | cut -d/ -f5)
while :; do
    { while read -r l <&3; do [ -z "$l" ] || echo 'this is not json' >&3; done; } 3<>"$dev"
    sleep 0.2
done
EOF
expect_rc '!0' ports ag1 || exit 1
expect_contains "$LAST_OUT" "the guest agent's answer is malformed: expected" "garbage answers" || exit 1
still_fine "garbage answers" || exit 1
proved "garbage answers are refused: '$(grep -o "the guest agent's answer is malformed.*" <<<"$LAST_OUT" | head -n 1)'"

# Echoes the request's id and claims a process whose name holds ESC [ 2 J (clears a terminal).
hostile escape <<'EOF' || exit 1
dev=/dev/$(grep -l '^org.banger.agent.0$' /sys/class/virtio-ports/*/name | cut -d/ -f5)
while :; do
    {
    while read -r l <&3; do
        case $l in *'"id":'*) ;; *) continue ;; esac
        id=${l#*\"id\":}; id=${id%%,*}
        printf '{"v":1,"id":%s,"ok":[{"proto":"tcp","address":"0.0.0.0","port":7,"pid":1,"process":"\\u001b[2Jevil"}]}\n' "$id" >&3
    done
    } 3<>"$dev"
    sleep 0.2
done
EOF
raw=$(ports ag1) || { fail "vm ports against the escaping agent failed"; exit 1; }
expect_line "$raw" '^tcp +0\.0\.0\.0 +7 +1 +\?\[2Jevil$' "the cleaned process name" || exit 1
if printf '%s' "$raw" | grep -q $'\x1b'; then fail "an escape character reached the terminal"; exit 1; fi
still_fine "an escaping agent" || exit 1
proved "a process name with ESC[2J is shown as '?[2Jevil': no escape character reaches the terminal"

vm_ssh ag1 "$STOP_HOSTILE; setsid banger-agent </dev/null >/dev/null 2>&1 &" || exit 1
wait_for 10 "the real agent to answer again" ports ag1 || exit 1
expect_rc 0 ports ag1 || exit 1
expect_line "$LAST_OUT" "^tcp +0\.0\.0\.0 +22 +$sshd_pid +dropbear$" "vm ports after the real agent is back" || exit 1
proved "after the hostile agents, the real one answers again"

# --- 5. others, and stopped VMs
expect_rc '!0' box_as other "$BANGER" vm ports ag1 || exit 1
expect_contains "$LAST_OUT" "only that user and root can manage them" "another user's vm ports" || exit 1
expect_rc 0 as_owner "$BANGER" vm stop ag1 || exit 1
expect_rc '!0' ports ag1 || exit 1
expect_contains "$LAST_OUT" "VM ag1 is stopped: its guest agent answers only while it runs" "vm ports on a stopped VM" || exit 1
expect_rc 0 as_owner "$BANGER" vm show ag1 || exit 1
expect_no_line "$LAST_OUT" '^(uptime|guest agent):' "vm show of a stopped VM" || exit 1
proved "another user is refused; a stopped VM: 'VM ag1 is stopped: its guest agent answers only while it runs', and vm show asks nothing"
