#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# No blackout: while a full update restarts bangerd and the helper, a client of the owner calls
# Daemon1.ListOperations in a tight loop (a fresh busctl each time, 60 s call timeout). Thanks
# to D-Bus activation (SystemdService=) a call made while bangerd restarts waits instead of
# failing: the number of failed calls must be 0, for Daemon1 and for the Root1 property reads
# made alongside (the helper, too, gives its name back before it exits). The longest call is printed.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

WORK=/tmp/smoke-no-blackout        # inside the box (the owner writes there)
cleanup() {
    local rc=$?
    box_exec sh -c 'mkdir -p "$1" && touch "$1/stop"' stop "$WORK" || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
base=$(release_base_version)
daemon_pid=$(main_pid bangerd.service)

expect_rc 0 box_exec sh -c 'rm -rf "$1" && mkdir -p "$1" && chown "$2" "$1"' work "$WORK" "$OWNER"
# shellcheck disable=SC2016
client='
import json, os, subprocess, sys, time
work = sys.argv[1]
calls = {
    "daemon1": ["busctl", "--system", "--timeout=60", "call", "org.banger.Daemon1",
                "/org/banger/Daemon1", "org.banger.Daemon1", "ListOperations"],
    "root1": ["busctl", "--system", "--timeout=60", "get-property", "org.banger.Root1",
              "/org/banger/Root1", "org.banger.Root1", "UpdateState"],
}
stats = {k: {"calls": 0, "failures": 0, "max_ms": 0.0, "max_at": 0.0, "during": 0, "errors": []}
         for k in calls}
spans = []
first = True
while not os.path.exists(os.path.join(work, "stop")):
    for name in ("daemon1", "daemon1", "daemon1", "root1"):
        start, t = time.time(), time.monotonic()
        r = subprocess.run(calls[name], capture_output=True, text=True)
        ms = (time.monotonic() - t) * 1000
        spans.append((name, start, start + ms / 1000))
        s = stats[name]
        s["calls"] += 1
        if ms > s["max_ms"]:
            s["max_ms"], s["max_at"] = round(ms, 1), round(start, 3)
        if r.returncode != 0:
            s["failures"] += 1
            s["errors"].append("%.3f rc=%d %s" % (start, r.returncode, r.stderr.strip()))
    if first:
        open(os.path.join(work, "ready"), "w").close()
        first = False
# Calls that overlapped the update (the harness writes its start and end time).
begin, end = map(float, open(os.path.join(work, "window")).read().split())
for name, a, b in spans:
    if a < end and b > begin:
        stats[name]["during"] += 1
for s in stats.values():
    s["errors"] = s["errors"][:10]
print(json.dumps(stats))
'
bg_start client box_unit -p "User=$OWNER" -p RuntimeMaxSec=600 python3 -c "$client" "$WORK"
wait_for 30 "the owner's client loop to start" box_exec test -e "$WORK/ready"

t0=$EPOCHREALTIME
expect_rc 0 box_exec "$BANGER" update
t1=$EPOCHREALTIME
took=$(_box_elapsed "$t0")
expect_eq "$(last_line "$LAST_OUT")" "updated v$base → v0.2.0" "banger update during the client loop"
sleep 1
expect_rc 0 box_exec sh -c 'echo "$2 $3" >"$1/window" && touch "$1/stop"' stop "$WORK" "$t0" "$t1"
bg_wait client 90
[ "$LAST_RC" = 0 ] || { fail "the client loop failed (exit $LAST_RC)"; _evidence "output:" "$LAST_OUT"; exit 1; }
stats=$(tail -n 1 <<<"$LAST_OUT")
expect_ne "$(main_pid bangerd.service)" "$daemon_pid" "bangerd MainPID after the update"
expect_install_is 0.2.0 "after the update"
read -r calls during failures max_ms root_calls root_failures root_max errors <<<"$(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
d, r = s["daemon1"], s["root1"]
print(d["calls"], d["during"], d["failures"], d["max_ms"], r["calls"], r["failures"], r["max_ms"],
      json.dumps(d["errors"] + r["errors"]))' "$stats")"
echo "  client: Daemon1 $calls calls ($during while banger update ran), $failures failed, longest ${max_ms} ms; Root1 $root_calls calls, $root_failures failed, longest ${root_max} ms"
[ "$during" -ge 3 ] || fail "the client made only $during Daemon1 calls while banger update ran"
if [ "$failures" != 0 ]; then
    fail "$failures of $calls Daemon1.ListOperations calls failed during the update" || true
    _evidence "errors:" "$errors"
    exit 1
fi
if [ "$root_failures" != 0 ]; then
    fail "$root_failures of $root_calls Root1 property reads failed while the helper restarted" || true
    _evidence "errors:" "$errors"
    exit 1
fi
proved "$calls Daemon1.ListOperations calls by $OWNER, $during of them during a full update (${took}s, bangerd and the helper restarted): 0 failed, longest ${max_ms} ms (Root1 reads: $root_calls, $root_failures failed, longest ${root_max} ms)"
