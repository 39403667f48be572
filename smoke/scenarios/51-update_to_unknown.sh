#!/usr/bin/env bash
# Asking for what the signed manifest does not offer: `banger update --to 9.9.9` fails naming
# the versions that are offered, a malformed version is refused, and Root1.Update refuses
# unknown options and wrongly typed ones with org.banger.Error.InvalidArgument before any job
# exists. Nothing is downloaded beyond the manifest and nothing changes.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
snapshot_install to-unknown-before
mark=$(release_server_log_lines)

# --- a version the manifest does not offer --------------------------------------------------
expect_rc 1 box_exec "$BANGER" update --to 9.9.9
out=$LAST_OUT
expect_update_end 1 '^update failed: .*9\.9\.9.*; nothing was changed$' "banger update --to 9.9.9"
expect_contains "$out" "v0.3.0, v0.2.0, v0.0.9" "banger update --to 9.9.9 names what is offered"
job=$(update_job_of "$out")
[ -n "$job" ] || job=$(latest_job_path)
expect_eq "$(job_prop "$job" Result)" 's "failed"' "Result of $job"
expect_contains "$(job_prop "$job" Error)" "9.9.9" "Error of $job"
proved "banger update --to 9.9.9 exits 1: '$(last_line "$out")'; job $job Result=failed"

# --- a malformed version --------------------------------------------------------------------
for bad in banana 1.2 01.2.3; do
    expect_rc '!0' box_exec "$BANGER" update --to "$bad"
    expect_contains "$LAST_OUT" "$bad" "banger update --to $bad"
    case $LAST_RC in 1 | 2) ;; *) fail "banger update --to $bad exited $LAST_RC (want 1 or 2)" ;; esac
done
proved "banger update --to banana|1.2|01.2.3 is refused (exit 1 or 2), naming the bad version"

# --- Update() options, straight over D-Bus --------------------------------------------------
before_job=$(latest_job_path)
update_call() { box_exec gdbus call --system --dest org.banger.Root1 --object-path /org/banger/Root1 \
    --method org.banger.Root1.Update "$1"; }
for opts in "{'colour': <'red'>}" "{'version': <int32 42>}" "{'dry_run': <'yes'>}" \
    "{'allow_downgrade': <uint32 1>}" "{'version': <'not-a-version'>}"; do
    expect_rc '!0' update_call "$opts"
    expect_contains "$LAST_OUT" org.banger.Error.InvalidArgument "Root1.Update($opts)"
done
expect_eq "$(latest_job_path)" "$before_job" "newest job object after the refused Update() calls"
expect_eq "$(root1_prop ActiveJob)" 'o "/"' "Root1 ActiveJob after the refused Update() calls"
proved "Root1.Update with an unknown option, wrongly typed options or a malformed version fails with org.banger.Error.InvalidArgument; no job is created"

# --- nothing fetched, nothing changed -------------------------------------------------------
requests=$(release_requests_since "$mark" '.')
expect_no_line "$requests" '"path": "[^"]*/(SHA256SUMS|[^"]*\.tar\.gz)' "requests made by the refused updates"
snapshot_install to-unknown-after
expect_same_snapshot to-unknown-before to-unknown-after "after the refused updates"
expect_eq "$(update_leftovers)" "" "staging or backups after the refused updates"
expect_install_is "$(release_base_version)" "after the refused updates"
proved "only the manifest was fetched; the install is byte-identical and still entirely v$(release_base_version)"
