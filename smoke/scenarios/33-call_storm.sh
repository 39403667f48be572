#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# Another user's call storm neither stops the owner's update nor the helper. While `other`
# keeps 2000 VmmDoctor and 2000 CheckForUpdate calls in flight (over 100 connections, for 15 s: the
# system bus allows 128 pending calls per connection),
# the owner runs `banger update` (allowed by the example polkit rule): the update completes; every one
# of other's calls is answered (an answer, or at once org.banger.Error.Busy: at most 4 calls of
# one user are in progress, 32 of all such users; while the helper restarts during the update,
# the bus itself answers org.freedesktop.DBus.Error.LimitsExceeded once more than 512 calls
# wait for it to come back); the helper's threads and memory stay bounded. Printed: what other
# got, the longest call, the helper's peak threads and RSS.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

RULE=/etc/polkit-1/rules.d/49-banger-owner.rules
SAMPLES=$SMOKE_DIR/storm-samples.txt
cleanup() {
    local rc=$?
    [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null
    box_exec rm -f "$RULE" || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

may_update() { box_as "$OWNER" sh -c 'exec pkcheck --action-id org.banger.update --process $$'; }
update_scenario_start good
base=$(release_base_version)
expect_rc 0 box_exec cp "$BANGER_PREFIX/share/banger/49-banger-owner.rules.example" "$RULE"
wait_for 10 "polkitd to load $RULE" may_update

# The helper's threads and RSS, every 0.2 s, whichever process it is (it restarts itself).
: >"$SAMPLES"
(
    while :; do
        box_exec sh -c 'p=$(systemctl show -p MainPID --value bangerd-root.service)
            [ "$p" -gt 0 ] && grep -E "^(Threads|VmRSS):" "/proc/$p/status" | tr -s " \t" " " | tr "\n" " "; echo' \
            >>"$SAMPLES" 2>/dev/null || true
        sleep 0.2
    done
) &
sampler=$!

client=$(<"$SMOKE_LIB/bus-client.py")
bg_start storm box_unit -p "User=$OTHER" -p RuntimeMaxSec=300 python3 -c "$client" storm 2000 100 15 \
    root1.VmmDoctor root1.CheckForUpdate
sleep 2
expect_rc 0 box_as "$OWNER" "$BANGER" update
updated=$(last_line "$LAST_OUT")
expect_eq "$updated" "updated v$base → v0.2.0" "the owner's banger update during the storm"
bg_wait storm 180
[ "$LAST_RC" = 0 ] || { fail "the storm client failed (exit $LAST_RC)"; _evidence "output:" "$LAST_OUT"; exit 1; }
kill "$sampler" 2>/dev/null; sampler=
stats=$(tail -n 1 <<<"$LAST_OUT")
expect_install_is 0.2.0 "after the update during the storm"
proved "the owner's update completed during the storm: $updated"

read -r threads rss_kb <<<"$(awk '{for (i = 1; i < NF; i++) { if ($i == "Threads:") t = ($(i+1) > t ? $(i+1) : t); if ($i == "VmRSS:") r = ($(i+1) > r ? $(i+1) : r) }} END {print t + 0, r + 0}' "$SAMPLES")"
summary=$(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
parts = []
for m, st in s["methods"].items():
    errs = ", ".join("%s %d" % (k.rsplit(".", 1)[-1], v) for k, v in sorted(st["errors"].items()))
    parts.append("%s: %d calls, %d answered, errors: %s, longest %.0f ms" % (m.split(".")[1], st["calls"], st["answers"], errs or "none", st["max_ms"]))
print("; ".join(parts) + "; wall %.1f s, unanswered %d" % (s["wall_s"], s["unanswered"]))' "$stats")
echo "FIGURE: storm by $OTHER (2000 VmmDoctor + 2000 CheckForUpdate in flight for 15 s): $summary"
echo "FIGURE: bangerd-root during the storm: at most $threads threads, RSS at most $((rss_kb / 1024)) MiB ($(wc -l <"$SAMPLES") samples)"
read -r unanswered busy other_errors <<<"$(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
busy = sum(st["errors"].get("org.banger.Error.Busy", 0) for st in s["methods"].values())
expected = ("org.banger.Error.Busy", "org.freedesktop.DBus.Error.LimitsExceeded")
other = {k: v for st in s["methods"].values() for k, v in st["errors"].items() if k not in expected}
print(s["unanswered"], busy, json.dumps(other).replace(" ", ""))' "$stats")"
expect_eq "$unanswered" 0 "calls of $OTHER left unanswered"
[ "$busy" -gt 0 ] || fail "no call of $OTHER was refused with org.banger.Error.Busy: nothing bounds the work another user can cause"
expect_eq "$other_errors" "{}" "errors other than Busy (and the bus's LimitsExceeded) that $OTHER got"
[ "$threads" -le 32 ] || fail "bangerd-root ran up to $threads threads during the storm (at most 32 expected)"
proved "$OTHER's storm: every call answered, $busy refused at once with org.banger.Error.Busy; the helper stayed at ≤ $threads threads, ≤ $((rss_kb / 1024)) MiB"
