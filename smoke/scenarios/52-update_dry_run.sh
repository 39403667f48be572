#!/usr/bin/env bash
# `banger update --dry-run` downloads, verifies, stages and sanity-runs the release, then stops:
# exit 0, the documented last line, the job's Result "dry-run", no service restarted, no staging
# left, and every installed file byte-identical. --json prints one JSON object per event.
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
base=$(release_base_version)
snapshot_install dry-run-before
root_pid=$(main_pid bangerd-root.service)
daemon_pid=$(main_pid bangerd.service)
mark=$(release_server_log_lines)

expect_rc 0 box_exec "$BANGER" update --dry-run
out=$LAST_OUT
expect_update_end 0 '^dry run: v0\.2\.0 downloaded, verified and staged; nothing was changed$' \
    "banger update --dry-run"
job=$(update_job_of "$out")
[ -n "$job" ] || job=$(latest_job_path)
expect_eq "$(job_prop "$job" Result)" 's "dry-run"' "Result of $job"
expect_eq "$(job_prop "$job" TargetVersion)" 's "0.2.0"' "TargetVersion of $job"
expect_eq "$(job_prop "$job" State)" 's "finished"' "State of $job"
proved "banger update --dry-run exits 0: '$(last_line "$out")'; job $job Result=dry-run TargetVersion=0.2.0"

name=$(_release_tarball_name 0.2.0)
got=$(release_requests_since "$mark" "/good/0\.2\.0/$name")
expect_eq "$(grep -c . <<<"$got")" 1 "downloads of $name during the dry run"
expect_contains "$got" '"complete": true' "the download of $name"
proved "the tarball was downloaded exactly once, in full"

snapshot_install dry-run-after
expect_same_snapshot dry-run-before dry-run-after "after banger update --dry-run"
expect_eq "$(update_leftovers)" "" "staging or backups after the dry run"
expect_eq "$(main_pid bangerd-root.service)" "$root_pid" "bangerd-root MainPID after the dry run"
expect_eq "$(main_pid bangerd.service)" "$daemon_pid" "bangerd MainPID after the dry run"
expect_install_is "$base" "after the dry run"
proved "nothing was changed: installed files byte-identical, no staging left, neither service restarted, still entirely v$base"

# --- a pinned dry run, as JSON --------------------------------------------------------------
expect_rc 0 box_exec "$BANGER" update --dry-run --to 0.3.0 --json
expect_rc 0 python3 -c '
import json, sys
events = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
assert all(isinstance(e, dict) for e in events), events
last = events[-1]
assert last.get("event") == "finished", last
assert last.get("result") == "dry-run" and last.get("exit_code") == 0, last
assert last.get("target_version") == "0.3.0", last
assert any(e.get("event") == "job" for e in events), events
print("%d events, last: %s" % (len(events), json.dumps(last)))' "$LAST_OUT"
proved "banger update --dry-run --to 0.3.0 --json: every line is a JSON object; $LAST_OUT"

snapshot_install dry-run-after-json
expect_same_snapshot dry-run-before dry-run-after-json "after banger update --dry-run --to 0.3.0 --json"
expect_eq "$(update_leftovers)" "" "staging or backups after the pinned dry run"
proved "the pinned dry run changed nothing either"

# --- on a terminal, and --quiet --------------------------------------------------------------
# On a terminal (a pseudo-terminal from script(1)) the download is an indicatif bar on stderr,
# coloured unless NO_COLOR is set; off a terminal there is none; --quiet prints the last line
# only. (Pinned to 0.3.0: the pinned dry run above raised the anti-rollback floor to it.)
for colour in yes no; do
    if [ "$colour" = no ]; then env=(NO_COLOR=1); else env=(); fi
    expect_rc 0 box_exec env TERM=xterm "${env[@]}" script -qefc "$BANGER update --dry-run --to 0.3.0" /dev/null
    tty_out=$LAST_OUT
    expect_update_end 0 '^dry run: v0\.3\.0 downloaded, verified and staged; nothing was changed.?$' \
        "banger update --dry-run on a terminal (colour: $colour)"
    expect_contains "$tty_out" "downloading [" "the bar on a terminal (colour: $colour)"
    if [ "$colour" = yes ]; then
        expect_contains "$tty_out" $'\e[36m' "the bar's colour on a terminal"
    else
        expect_not_contains "$tty_out" $'\e[3' "the bar with NO_COLOR=1"
    fi
done
expect_not_contains "$out" "downloading [" "banger update --dry-run off a terminal"
proved "on a terminal the download is drawn as a bar (coloured, and plain with NO_COLOR=1); off a terminal it is not"

expect_rc 0 box_exec "$BANGER" --quiet update --dry-run --to 0.3.0
expect_eq "$LAST_OUT" "dry run: v0.3.0 downloaded, verified and staged; nothing was changed" \
    "banger --quiet update --dry-run"
expect_rc 0 box_exec env TERM=xterm script -qefc "$BANGER update -q --dry-run --to 0.3.0" /dev/null
expect_not_contains "$LAST_OUT" "downloading" "banger update -q --dry-run on a terminal"
expect_update_end 0 '^dry run: v0\.3\.0 downloaded, verified and staged; nothing was changed.?$' \
    "banger update -q --dry-run on a terminal"
proved "--quiet prints the outcome only, on a terminal too"
snapshot_install dry-run-after-tty
expect_same_snapshot dry-run-before dry-run-after-tty "after the dry runs on a terminal"
