#!/usr/bin/env bash
# 100 independent clients (100 bus connections of the owner, dbus-python) subscribe to
# PropertiesChanged of bangerd's VM objects while 10 VMs start and stop.
# 1. Every client receives every State change, in the same order as every other client, and
#    for each VM that order is the order of what happened (running, then stopped).
# 2. bangerd's RSS before, with the subscribers connected and after the changes is printed
#    (a figure, not a limit).
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

BANGER=$BOX_BIN/banger
WORK=/tmp/smoke-signals-load
CLIENTS=100
VMS=10
UNIT=smoke-subscribers.service

cleanup() {
    local rc=$?
    box_exec systemctl stop "$UNIT" 2>/dev/null || true
    vm_remove_all
    return "$rc"
}
trap cleanup EXIT

rss_kib() { box_exec awk '/^VmRSS:/ {print $2}' "/proc/$(main_pid bangerd.service)/status"; }
has() { box_exec test -e "$WORK/$1"; }

wait_daemon_ready 15
vm_remove_all
expect_rc 0 vm_image_ready
box_exec sh -c 'rm -rf "$1" && mkdir -m 1777 "$1"' mk "$WORK"
for i in $(seq 1 "$VMS"); do
    expect_rc 0 as_owner "$BANGER" vm create "load$i" --image "$GUEST_IMAGE" || exit 1
done
pid_before=$(main_pid bangerd.service)
rss_idle=$(rss_kib)

client=$(<"$SMOKE_LIB/bus-client.py")
box_exec systemctl reset-failed "$UNIT" 2>/dev/null || true
box_exec systemd-run --quiet --collect --unit="$UNIT" -p "User=$OWNER" \
    -p "StandardOutput=truncate:$WORK/clients.log" -p "StandardError=append:$WORK/clients.log" \
    python3 -c "$client" subscribers "$CLIENTS" "$WORK" 600
wait_for 60 "$CLIENTS subscribers to be connected and subscribed" has ready ||
    { box_exec cat "$WORK/clients.log"; exit 1; }
rss_subscribed=$(rss_kib)

for i in $(seq 1 "$VMS"); do
    expect_rc 0 as_owner "$BANGER" vm start "load$i" --no-wait || exit 1
done
for i in $(seq 1 "$VMS"); do
    expect_rc 0 as_owner "$BANGER" vm stop "load$i" || exit 1
done
sleep 2
box_exec touch "$WORK/stop"
wait_for 30 "the subscribers to write what they saw" has seen.json ||
    { box_exec cat "$WORK/clients.log"; exit 1; }
rss_after=$(rss_kib)
expect_eq "$(main_pid bangerd.service)" "$pid_before" "bangerd's pid (no restart during the run)" || exit 1

declare -A id_of=()
for i in $(seq 1 "$VMS"); do id_of[load$i]=$(vm_id "load$i"); done
ids=$(for n in "${!id_of[@]}"; do printf '%s=%s\n' "$n" "${id_of[$n]}"; done)
run_capture box_exec python3 -c '
import json, sys
seen = json.load(open(sys.argv[1]))
clients = int(sys.argv[2])
names = dict(l.split("=") for l in sys.argv[3].split())
problems = []
if len(seen) != clients:
    problems.append(f"{len(seen)} clients reported, not {clients}")
ref = seen[0]
for i, s in enumerate(seen):
    if s != ref:
        first = next((k for k in range(min(len(s), len(ref))) if s[k] != ref[k]), min(len(s), len(ref)))
        problems.append(f"client {i} saw {len(s)} changes, client 0 {len(ref)}; they differ from change {first}")
        if len(problems) > 5:
            break
for name, vid in sorted(names.items()):
    path = "/org/banger/Daemon1/vm/" + vid
    states = [st for p, st in ref if p == path]
    try:
        r = states.index("running")
        states.index("stopped", r)
    except ValueError:
        problems.append(f"{name}: states seen {states}, not running then stopped")
if problems:
    print("\n".join(problems))
    sys.exit(1)
per_vm = len(ref) / len(names)
print(f"{clients} clients each saw the same {len(ref)} State changes ({per_vm:.1f} per VM, e.g. "
      + " → ".join(st for p, st in ref if p.endswith(names["load1"])) + " for load1)")
' "$WORK/seen.json" "$CLIENTS" "$ids"
[ "$LAST_RC" = 0 ] || fail "the subscribers did not all see every change in order" || exit 1
proved "$LAST_OUT"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo "FIGURE bangerd RSS: $(mib "$rss_idle") idle with $VMS VMs, $(mib "$rss_subscribed") with $CLIENTS subscribers, $(mib "$rss_after") after the changes"
proved "bangerd kept its pid through the run; RSS $(mib "$rss_idle") → $(mib "$rss_subscribed") → $(mib "$rss_after") (printed, not a limit)"
