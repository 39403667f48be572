#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# Killing the helper at every step past the point of no return. For each journal state (the
# forward ones on a good release, the rollback ones on the broken 0.2.1), the helper is told to
# pause there (BANGER_UPDATE_PAUSE_AT in a /run drop-in), `banger update` is started, and when
# the helper reports the pause it is SIGKILLed. Once systemd has the services back
# (Restart=on-failure, D-Bus activation) the install must be entirely the old release or
# entirely the new one — all three binaries, install.toml, Root1, Daemon1 — never a mix; the
# job object must say which (Result updated / rolled-back); the CLI that was following it must
# re-attach and end with the matching exit code; and a second `banger update` must work.
# (Cancel at stage "swapping" is refused with Busy: it is the point of no return.)
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    update_unpause || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

release_setup
release_require_update_cli
base=$(release_base_version)
old_identity=$(expected_identity "$base")
new_identity=$(expected_identity 0.2.0)

update_finished() {
    is_update_idle || return 1
    local j
    j=$(journal_state)
    echo "journal: $j"
    [ "$j" = "done" ]
}

round=0
for point in swapping restarting-daemon restarting-helper verifying finalizing \
    rolling-back rollback-restarting-helper; do
    round=$((round + 1))
    case $point in
        rolling-back | rollback-restarting-helper) root=broken ;;
        *) root=good ;;
    esac
    echo "--- round $round: kill -9 at '$point' ($root release)"
    update_unpause
    release_reinstall_base
    release_config "$root"
    release_resign "$root"
    update_pause_at "$point"
    expect_contains "$(box_exec systemctl show -p Environment --value bangerd-root.service)" \
        "BANGER_UPDATE_PAUSE_AT=$point" "the helper's environment"

    bg_start "crash-$round" box_exec "$BANGER" update
    wait_for 120 "the helper to pause at $point" update_paused_at "$point" ||
        { _evidence "banger update so far:" "$(cat "$BG_DIR/crash-$round.out")"; exit 1; }
    pid=$(main_pid bangerd-root.service)
    expect_ne "$pid" 0 "bangerd-root MainPID while paused"
    job=$(root1_prop ActiveJob)
    job=${job#o \"}
    job=${job%\"}
    if [ "$point" = swapping ]; then
        # Stage "swapping" is the point of no return: Cancel must refuse.
        expect_rc '!0' box_exec gdbus call --system --dest org.banger.Root1 --object-path "$job" \
            --method org.banger.Root1.Job.Cancel
        expect_contains "$LAST_OUT" org.banger.Error.Busy "Job.Cancel at the point of no return"
        expect_contains "$LAST_OUT" "point of no return" "Job.Cancel at the point of no return"
        proved "at stage swapping, Job.Cancel fails with org.banger.Error.Busy ('past the point of no return')"
    fi
    # The drop-in goes before the kill (the restarted helper resumes instead of pausing again),
    # the pause marker after it (while it exists, the paused helper stays paused).
    update_drop_pause
    expect_rc 0 box_exec kill -KILL "$pid"
    update_resume_paused

    wait_for 180 "the update to end after the kill (Root1 idle, journal done)" update_finished || {
        show_journal bangerd-root.service 30
        exit 1
    }
    wait_daemon_ready 30
    bg_wait "crash-$round" 120
    cli_rc=$LAST_RC
    cli_out=$LAST_OUT

    got=$(install_identity)
    if [ "$got" = "$old_identity" ]; then
        which=$base want_result=rolled-back want_rc=4
    elif [ "$got" = "$new_identity" ]; then
        which=0.2.0 want_result=updated want_rc=0
    else
        fail "killed at $point: the install is a mix of v$base and v0.2.0" || true
        _evidence "installed:" "$got"
        _evidence "v$base would be:" "$old_identity"
        _evidence "v0.2.0 would be:" "$new_identity"
        exit 1
    fi
    if [ "$root" = broken ]; then
        expect_eq "$which" "$base" "the install after a kill during the rollback from 0.2.1"
    fi
    expect_eq "$(update_leftovers)" "" "staging or backups after the kill at $point"
    expect_install_is "$which" "after the kill at $point"
    expect_eq "$(job_prop "$job" Result)" "s \"$want_result\"" "Result of $job (the install is v$which)"
    if [ "$cli_rc" != "$want_rc" ]; then
        fail "the banger update that was following $job exited $cli_rc, want $want_rc (install v$which)" || true
        _evidence "its output:" "$cli_out"
        exit 1
    fi
    # The resumed job shows the stage it resumes at, not the "checking" of a new job. (The
    # first job's own "checking" may be over before the CLI's first read, on a loaded machine.)
    checking=$(grep -c '^stage: checking$' <<<"$cli_out" || true)
    if [ "$checking" -gt 1 ]; then
        fail "the following banger update printed 'stage: checking' $checking times (killed at $point): the resumed job must show the stage it resumes at" || true
        _evidence "its output:" "$cli_out"
        exit 1
    fi
    case $point in
        restarting-helper | rollback-restarting-helper) ;;
        *)  # The CLI says what happened: the helper went away unasked, it did not "restart".
            expect_line "$cli_out" "^bangerd-root left the bus during stage [a-z-]+ without the update asking it to" \
                "what the following banger update said when the helper was killed at $point"
            ;;
    esac
    proved "killed (SIGKILL, pid $pid) at '$point': the install is entirely v$which; $job Result=$want_result; the following banger update re-attached and exited $cli_rc: '$(last_line "$cli_out")'"

    # 0.3.0: above anything this round has verified (0.2.1 included), so no anti-rollback floor
    # stands in the way whichever way the round ended.
    release_config good
    release_resign good
    expect_rc 0 box_exec "$BANGER" update --to 0.3.0
    second=$(last_line "$LAST_OUT")
    expect_eq "$second" "updated v$which → v0.3.0" "a second banger update after the kill at $point"
    expect_install_is 0.3.0 "after the second update (round $round)"
    proved "a second banger update after it works: '$second'"
done
proved "$round kill points: every one ended in a complete old or complete new install, never a mix"
