#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# An update that a power loss interrupted is finished at the next boot, before anyone calls
# org.banger.Root1. The helper pauses at a journal step (BANGER_UPDATE_PAUSE_AT), then the box
# is reset at once (`systemctl reboot --force --force`: no service is stopped or cleaned up)
# and boots again from the same disk. bangerd-root-resume.service (enabled at install, its
# condition the pending-update marker) starts the helper, which resumes the journal: paused
# at `swapping` the update is rolled back, paused at `restarting-daemon` (every file new) it is
# carried forward. Either way the journal ends `done` and the install is entirely one release,
# all without a call to Root1; then a further update works.
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

journal_phase() {
    box_exec python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["phase"])' \
        "$BANGER_ROOT_STATE/update-journal.json" 2>/dev/null || echo none
}
journal_done() { [ "$(journal_phase)" = done ]; }

for case in "swapping $(release_base_version) rolled-back" "restarting-daemon 0.2.0 updated"; do
    read -r point want want_result <<<"$case"
    echo "--- reset at '$point'"
    update_scenario_start good
    # In /etc, so that it could outlive the reboot: removed before it, unseen by systemd (the
    # power goes off before anyone reloads), so the helper after the boot does not pause.
    update_pause_at "$point" persistent
    bg_start boot box_exec "$BANGER" update
    wait_for 120 "the helper to pause at $point" update_paused_at "$point"
    expect_rc 0 box_exec rm "$PAUSE_DROPIN_PERSISTENT"
    expect_rc 0 box_reboot
    bg_wait boot 30 || true                 # that banger update died with the box
    # Nothing has called Root1 since the boot: the resume unit alone must finish the update.
    wait_for 120 "the update journal to be done after the boot (no call to Root1)" journal_done ||
        { show_journal bangerd-root-resume.service; show_journal bangerd-root.service 30; exit 1; }
    expect_eq "$(box_exec systemctl show -p Result --value bangerd-root-resume.service)" success \
        "bangerd-root-resume.service's result"
    expect_rc 1 box_exec test -e "$BANGER_ROOT_STATE/update-pending"
    expect_eq "$(install_identity)" "$(expected_identity "$want")" "the install after the boot"
    proved "reset at '$point': at boot bangerd-root-resume.service started the helper, which finished the journal; the install is entirely v$want, with no call to Root1"
    expect_eq "$(job_prop "$(latest_job_path)" Result)" "s \"$want_result\"" "the job's Result after the boot"
    expect_install_is "$want" "after the boot"
    proved "the job reads $want_result, and the services answer at v$want"
done

release_setup        # the release server did not survive the reboot
release_config good
release_resign good
run_capture box_exec "$BANGER" update --to 0.3.0
expect_update_end 0 "^updated v0\.2\.0 → v0\.3\.0$" "an update after the boots"
proved "a further update works: $(last_line "$LAST_OUT")"
