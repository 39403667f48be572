#!/usr/bin/env bash
# Who may update: polkit decides, before any work. Without a password (no agent, no terminal,
# no session) nobody but root gets org.banger.update — not even the owner; a wrong password is
# refused; a pinned version and a downgrade ask for their own actions. A refused Update starts
# no job and fetches nothing. A running job may be canceled by its initiator without a
# password, but not by another user.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

BOX_TTY_TIMEOUT=240
cleanup() {
    local rc=$?
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
base=$(release_base_version)
snapshot_install unauthorized-before
mark=$(release_server_log_lines)

gdbus_update() {   # gdbus_update RUNNER... : Update({}) without allowing interactive authorization
    "$@" gdbus call --system --dest org.banger.Root1 --object-path /org/banger/Root1 \
        --method org.banger.Root1.Update '{}'
}

# --- no way to answer a prompt --------------------------------------------------------------
expect_rc 3 box_unit -p "User=$OTHER" "$BANGER" update
proved "$OTHER without a session: banger update exits 3 ('$(last_line "$LAST_OUT")')"
for user in "$OTHER" "$OWNER"; do
    expect_rc 3 box_as "$user" "$BANGER" update
    expect_rc '!0' gdbus_update box_as "$user"
    expect_contains "$LAST_OUT" org.freedesktop.DBus.Error.InteractiveAuthorizationRequired \
        "Root1.Update({}) from $user's session without interactive authorization"
done
proved "$OTHER and $OWNER in active sessions, no terminal: banger update exits 3; Update() fails with InteractiveAuthorizationRequired (the owner is not trusted by default)"

# --- wrong passwords, and which action each request needs -----------------------------------
expect_rc 3 box_as_tty "$OTHER" "$BANGER update" "wrong-password"
expect_contains "$LAST_OUT" "org.banger.update" "the prompt for banger update"
expect_no_line "$LAST_OUT" 'org\.banger\.update\.(pinned|downgrade)' "the prompt for banger update"
proved "$OTHER on a terminal: the agent asks for org.banger.update, a wrong password gives exit 3"

expect_rc 3 box_as_tty "$OWNER" "$BANGER update --to 0.3.0" "wrong-password"
expect_contains "$LAST_OUT" "org.banger.update.pinned" "the prompt for banger update --to 0.3.0"
expect_rc 3 box_as_tty "$OWNER" "$BANGER update --to 0.0.9 --allow-downgrade" "wrong-password"
expect_contains "$LAST_OUT" "org.banger.update.downgrade" "the prompt for banger update --allow-downgrade"
proved "--to asks for org.banger.update.pinned, --allow-downgrade for org.banger.update.downgrade; wrong passwords give exit 3"

# --- no work was done -----------------------------------------------------------------------
expect_eq "$(release_requests_since "$mark" '.')" "" "requests to the release server by refused updates"
expect_eq "$(latest_job_path)" "" "job objects after the refused updates"
expect_eq "$(root1_prop ActiveJob)" 'o "/"' "Root1 ActiveJob after the refused updates"
snapshot_install unauthorized-after
expect_same_snapshot unauthorized-before unauthorized-after "after the refused updates"
proved "authorization came first: no request reached the release server, no job was created, nothing changed"

# --- cancel: the initiator may, others may not ----------------------------------------------
release_config slow
release_resign slow
bg_start owner-update box_as_tty "$OWNER" "$BANGER update" "$OWNER_PASS"
is_downloading() {
    local stage
    stage=$(root1_prop UpdateState)
    echo "UpdateState $stage"
    [ "$stage" = 's "downloading"' ]
}
wait_for 90 "the owner's update to be downloading (slow server)" is_downloading
job=$(root1_prop ActiveJob)
job=${job#o \"}
job=${job%\"}
cancel_as() {   # cancel_as USER: Job.Cancel from USER's session, no interactive authorization
    box_as "$1" gdbus call --system --dest org.banger.Root1 --object-path "$job" \
        --method org.banger.Root1.Job.Cancel
}
expect_rc '!0' cancel_as "$OTHER"
expect_line "$LAST_OUT" 'InteractiveAuthorizationRequired|NotAuthorized' "Job.Cancel from $OTHER"
other_error=$(grep -oE 'org\.[A-Za-z.]+(InteractiveAuthorizationRequired|NotAuthorized)' <<<"$LAST_OUT" | head -n1)
expect_eq "$(job_prop "$job" State)" 's "running"' "State of $job after $OTHER's Cancel"
proved "$OTHER cannot cancel $OWNER's job $job ($other_error); it keeps running"

expect_rc 0 cancel_as "$OWNER"
bg_wait owner-update 60
expect_update_end 5 '^update canceled; nothing was changed$' "$OWNER's banger update after Cancel"
expect_eq "$(job_prop "$job" Result)" 's "canceled"' "Result of $job"
wait_update_idle 10
proved "$OWNER, who started it, cancels $job without a password; banger update exits 5 ('update canceled; nothing was changed'), Result=canceled"

snapshot_install unauthorized-canceled
expect_same_snapshot unauthorized-before unauthorized-canceled "after the canceled update"
expect_eq "$(update_leftovers)" "" "staging or backups after the canceled update"
expect_install_is "$base" "after the canceled update"
proved "after the cancel the install is byte-identical, still entirely v$base, no staging left"
