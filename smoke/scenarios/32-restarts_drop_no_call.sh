#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# Restarts drop no call: a client of the owner reads Root1's and Daemon1's Version in a tight
# loop (one connection each, 30 s call timeout) while root restarts bangerd-root and bangerd
# ten times each. Both services give their name back before they exit and answer what was
# already sent to them, so a call made meanwhile waits at the bus for the next instance
# (D-Bus activation) instead of failing with NoReply. The failures must be 0; the figure is
# printed. (Restarts are 2.5 s apart: systemd allows 5 starts in 10 s.)
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

WORK=/tmp/smoke-restarts        # inside the box (the owner writes there)
cleanup() {
    local rc=$?
    box_exec sh -c 'mkdir -p "$1" && touch "$1/stop"' stop "$WORK" || true
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
expect_rc 0 box_exec sh -c 'rm -rf "$1" && mkdir -p "$1" && chown "$2" "$1"' work "$WORK" "$OWNER"
client=$(<"$SMOKE_LIB/bus-client.py")
bg_start restarts box_unit -p "User=$OWNER" -p RuntimeMaxSec=300 python3 -c "$client" loop "$WORK" root1 daemon1
wait_for 30 "the owner's client loop to start" box_exec test -e "$WORK/ready"

root_pids=() daemon_pids=()
for _ in $(seq 10); do
    root_pids+=("$(main_pid bangerd-root.service)")
    expect_rc 0 box_exec systemctl restart bangerd-root.service
    daemon_pids+=("$(main_pid bangerd.service)")
    expect_rc 0 box_exec systemctl restart bangerd.service
    sleep 2.5
done
root_pids+=("$(main_pid bangerd-root.service)")
daemon_pids+=("$(main_pid bangerd.service)")
distinct() { printf '%s\n' "$@" | sort -u | wc -l; }
expect_eq "$(distinct "${root_pids[@]}")" 11 "distinct bangerd-root pids over 10 restarts"
expect_eq "$(distinct "${daemon_pids[@]}")" 11 "distinct bangerd pids over 10 restarts"

sleep 1
box_exec touch "$WORK/stop"
bg_wait restarts 60
[ "$LAST_RC" = 0 ] || { fail "the client loop failed (exit $LAST_RC)"; _evidence "output:" "$LAST_OUT"; exit 1; }
stats=$(tail -n 1 <<<"$LAST_OUT")
read -r rc rf rmax dc df dmax errors <<<"$(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
r, d = s["root1"], s["daemon1"]
print(r["calls"], r["failures"], r["max_ms"], d["calls"], d["failures"], d["max_ms"], json.dumps(r["errors"] + d["errors"]))' "$stats")"
echo "FIGURE: calls failing over 10 restarts of each service: Root1 $rf of $rc (longest ${rmax} ms), Daemon1 $df of $dc (longest ${dmax} ms); target 0"
if [ "$rf" != 0 ] || [ "$df" != 0 ]; then
    fail "calls failed while the services restarted: Root1 $rf of $rc, Daemon1 $df of $dc" || true
    _evidence "errors:" "$errors"
    exit 1
fi
proved "10 restarts of bangerd-root and of bangerd: 0 of $rc Root1 and 0 of $dc Daemon1 calls failed (longest ${rmax} / ${dmax} ms)"
