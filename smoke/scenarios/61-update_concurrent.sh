#!/usr/bin/env bash
# One update at a time. While a job downloads (from a deliberately slow server) a second
# `banger update` and a direct Root1.Update() are refused with org.banger.Error.Busy naming the
# running job, `--check` still answers, and the job's progress is visible on the bus. Ctrl-C in
# the first `banger update` (before the point of no return) cancels the job: exit 5, Result
# canceled, nothing changed. A new update is accepted right after.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

CLIENT_UNIT=smoke-update-first.service
cleanup() {
    local rc=$?
    box_exec systemctl stop "$CLIENT_UNIT" 2>/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start slow
base=$(release_base_version)
size=$(release_tarball_size slow 0.2.0)
snapshot_install concurrent-before

# The first update runs as its own unit, so that Ctrl-C (SIGINT) can be sent to it alone.
bg_start first box_exec systemd-run --unit="$CLIENT_UNIT" --wait --pipe --quiet --collect \
    -p RuntimeMaxSec=300 "$BANGER" update
is_downloading() {
    local stage
    stage=$(root1_prop UpdateState)
    echo "UpdateState $stage"
    [ "$stage" = 's "downloading"' ]
}
wait_for 60 "the first update to be downloading" is_downloading
job=$(root1_prop ActiveJob)
job=${job#o \"}
job=${job%\"}
expect_line "$job" '^/org/banger/Root1/job/[0-9]+$' "Root1 ActiveJob while downloading"
proved "the first banger update is downloading (slow server, $RELEASE_SLOW_RATE B/s): ActiveJob $job"

# --- a second update is refused -------------------------------------------------------------
expect_rc 1 box_exec "$BANGER" update --dry-run
expect_contains "$LAST_OUT" "$job" "the second banger update names the running job"
second=$(last_line "$LAST_OUT")
expect_rc '!0' box_exec gdbus call --system --dest org.banger.Root1 --object-path /org/banger/Root1 \
    --method org.banger.Root1.Update '{}'
expect_contains "$LAST_OUT" org.banger.Error.Busy "a second Root1.Update()"
expect_contains "$LAST_OUT" "$job" "the Busy error names the running job"
proved "a second banger update exits 1 ('$second') and Root1.Update() fails with org.banger.Error.Busy naming $job"

expect_rc 0 box_unit -p "User=$OTHER" "$BANGER" update --check
proved "banger update --check still answers during the update: '$(last_line "$LAST_OUT")'"

# --- progress on the bus --------------------------------------------------------------------
expect_eq "$(job_prop "$job" BytesTotal)" "t $size" "BytesTotal of $job"
done1=$(job_prop "$job" BytesDone)
sleep 1.5
done2=$(job_prop "$job" BytesDone)
[ "${done2#t }" -gt "${done1#t }" ] || fail "BytesDone of $job did not grow ($done1 -> $done2)"
progress=$(job_prop "$job" Progress)
expect_rc 0 python3 -c 'import sys; p = float(sys.argv[1].split()[1]); assert 0 < p < 1, p' "$progress"
expect_eq "$(job_prop "$job" Stage)" 's "downloading"' "Stage of $job"
proved "$job shows its progress: BytesTotal $size, BytesDone ${done1#t } -> ${done2#t }, Progress ${progress#d }"

# --- Ctrl-C cancels -------------------------------------------------------------------------
expect_rc 0 box_exec systemctl kill --signal=SIGINT "$CLIENT_UNIT"
bg_wait first 60
expect_update_end 5 '^update canceled; nothing was changed$' "the first banger update after Ctrl-C"
expect_eq "$(job_prop "$job" Result)" 's "canceled"' "Result of $job"
wait_update_idle 10
proved "Ctrl-C in the first banger update cancels $job: exit 5, 'update canceled; nothing was changed', Result=canceled"

snapshot_install concurrent-after
expect_same_snapshot concurrent-before concurrent-after "after the canceled update"
expect_eq "$(update_leftovers)" "" "staging or backups after the canceled update"
expect_install_is "$base" "after the canceled update"
proved "nothing changed: installed files byte-identical, no staging left"

release_config good
release_resign good
expect_rc 0 box_exec "$BANGER" update --dry-run
expect_line "$(last_line "$LAST_OUT")" '^dry run: v0\.2\.0 ' "a new update after the cancel"
proved "a new update is accepted right after: '$(last_line "$LAST_OUT")'"
