#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# A full update, v(base) → v0.2.0, as root: exit 0 and "updated vA → vB"; the three binaries are
# byte-identical to the 0.2.0 build (mode 0755, root's); install.toml carries the new version,
# commit and build time and nothing else changed in it; both services were restarted through
# systemd's D-Bus API — no systemctl process ran (a logging wrapper replaces systemctl for the
# duration); no staging or .previous is left; the journal says done; doctor passes; every other
# installed file is byte-identical.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

SYSTEMCTL=/usr/bin/systemctl
SYSTEMCTL_REAL=/usr/bin/systemctl.smoke-real
SYSTEMCTL_LOG=/run/smoke-systemctl.log
unwrap_systemctl() {
    box_exec sh -c '[ ! -e "$2" ] || mv -f "$2" "$1"' unwrap "$SYSTEMCTL" "$SYSTEMCTL_REAL"
}
cleanup() {
    local rc=$?
    unwrap_systemctl || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
base=$(release_base_version)
snapshot_install happy-before
root_pid=$(main_pid bangerd-root.service)
daemon_pid=$(main_pid bangerd.service)
owner_before=$(box_exec python3 -c '
import sys, tomllib
t = tomllib.load(open(sys.argv[1], "rb"))
print(t["owner"], t.get("prefix"))' "$BANGER_INSTALL_TOML")

# Every systemctl invocation (by PATH or by absolute path: /bin is /usr/bin) is logged with the
# caller's cgroup, to a file and (for sandboxed callers that cannot write /run) to the journal,
# then runs the real one. Nothing else runs systemctl during the update.
expect_rc 0 box_exec sh -euc '
    [ -e "$2" ] || mv "$1" "$2"
    : >"$3"
    cat >"$1" <<WRAPPER
#!/bin/sh
line="pid \$\$ ppid \$PPID cgroup \$(tail -n1 /proc/\$\$/cgroup) args: \$*"
echo "\$(date +%T.%N) \$line" >>"$3" 2>/dev/null
logger -t smoke-systemctl -- "\$line" 2>/dev/null
exec "$2" "\$@"
WRAPPER
    chmod 0755 "$1"' wrap "$SYSTEMCTL" "$SYSTEMCTL_REAL" "$SYSTEMCTL_LOG"
journal_calls() { box_exec journalctl -b --no-pager -o cat -t smoke-systemctl; }
expect_rc 0 box_exec systemctl --version
expect_rc 0 box_exec sh -c 'grep -c "args: --version" "$1"' log "$SYSTEMCTL_LOG"
journal_has_version() { journal_calls | grep -q "args: --version"; }
wait_for 10 "the wrapper's line in the journal" journal_has_version
expect_rc 0 box_exec sh -c ': >"$1"' truncate "$SYSTEMCTL_LOG"
journal_mark=$(journal_calls | wc -l)

t0=$EPOCHREALTIME
expect_rc 0 box_exec "$BANGER" update
out=$LAST_OUT
took=$(_box_elapsed "$t0")
calls=$(box_exec cat "$SYSTEMCTL_LOG")
unwrap_systemctl
journal_after=$(journal_calls | tail -n "+$((journal_mark + 1))")
expect_eq "$(last_line "$out")" "updated v$base → v0.2.0" "the last line of banger update"
expect_eq "$calls" "" "systemctl invocations during the update (wrapper log file)"
expect_eq "$journal_after" "" "systemctl invocations during the update (journal)"
proved "banger update exits 0 in ${took}s: 'updated v$base → v0.2.0'; no systemctl process ran during it"

# --- the new install ------------------------------------------------------------------------
expect_install_is 0.2.0 "after banger update"
for p in "${RELEASE_PROGRAMS[@]}"; do
    want=$(sha256sum <"$RELEASE_CACHE/0.2.0/$p" | cut -d' ' -f1)
    expect_eq "$(box_sha256 "$BANGER_PREFIX/lib/banger/bin/$p")" "$want" "sha256 of the installed $p"
    expect_eq "$(box_exec stat -c '%a %U:%G %F' "$BANGER_PREFIX/lib/banger/bin/$p")" \
        "755 root:root regular file" "mode and owner of the installed $p"
done
expect_eq "$(box_exec readlink "$BANGER_PREFIX/bin/banger")" \
    "$(grep "^$BANGER_PREFIX/bin/banger " "$(snapshot_file happy-before)" | cut -d' ' -f3)" \
    "the $BANGER_PREFIX/bin/banger symlink"
proved "the three binaries are byte-identical to the 0.2.0 build, 0755 root:root regular files; every --version, install.toml, Root1 and Daemon1 report 0.2.0"

expect_rc 0 box_exec python3 -c '
import sys, tomllib
t = tomllib.load(open(sys.argv[1], "rb"))
print(t["owner"], t.get("prefix"))' "$BANGER_INSTALL_TOML"
expect_eq "$LAST_OUT" "$owner_before" "install.toml [owner] and prefix after the update"
proved "install.toml: new [release] from the new binary, owner and prefix unchanged"

expect_ne "$(main_pid bangerd-root.service)" "$root_pid" "bangerd-root MainPID after the update"
expect_ne "$(main_pid bangerd.service)" "$daemon_pid" "bangerd MainPID after the update"
expect_eq "$(journal_state)" "done" "the update journal's state"
job=$(update_job_of "$out")
[ -n "$job" ] || job=$(latest_job_path)
for prop in 'Result s "updated"' 'FromVersion s "'"$base"'"' 'TargetVersion s "0.2.0"' 'Error s ""' \
    'State s "finished"'; do
    read -r name value <<<"$prop"
    expect_eq "$(job_prop "$job" "$name")" "$value" "$name of $job"
done
wait_update_idle 10
proved "both services restarted (new MainPIDs); journal 'done'; $job Result=updated FromVersion=$base TargetVersion=0.2.0; Root1 idle"

snapshot_install happy-after
expect_same_snapshot happy-before happy-after "after the update (binaries, install.toml and store aside)" \
    "$BANGER_PREFIX/lib/banger/bin/banger" "$BANGER_PREFIX/lib/banger/bin/bangerd" \
    "$BANGER_PREFIX/lib/banger/bin/bangerd-root" "$BANGER_INSTALL_TOML" "$BANGER_STORE"
proved "every other installed file (units, bus policy, activation files, polkit policy, directories, symlink) is byte-identical"

expect_rc 0 box_as "$OWNER" "$BANGER" doctor
expect_no_line "$LAST_OUT" '^FAIL' "banger doctor after the update"
expect_rc 0 box_exec "$BANGER" system status
proved "banger doctor (as $OWNER) and banger system status pass on v0.2.0"

expect_rc 0 box_exec "$BANGER" update
expect_eq "$(last_line "$LAST_OUT")" "up to date (v0.2.0)" "a second banger update"
proved "a second banger update says 'up to date (v0.2.0)'"
