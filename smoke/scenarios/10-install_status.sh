#!/usr/bin/env bash
# Right after `banger system install --owner owner`: services running, bus names owned, the
# documented D-Bus surface present, installed files complete and sane, version outputs in the
# documented form and consistent, `banger system status` and `banger doctor` happy.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

# --- services and names -------------------------------------------------------------------
wait_unit_state 15 bangerd-root.service active
wait_unit_state 15 bangerd.service active
proved "bangerd-root.service and bangerd.service are active after install"

is_name_owned() { [ "$(name_has_owner "$1")" = true ]; }
for name in org.banger.Root1 org.banger.Daemon1; do
    wait_for 10 "$name owned on the system bus" is_name_owned "$name"
done
wait_daemon_ready 15
proved "org.banger.Root1 and org.banger.Daemon1 are owned on the system bus; Daemon1 Ready=true"

# --- installed files ----------------------------------------------------------------------
snapshot_install after-install
snap=$(cat "$(snapshot_file after-install)")
expect_no_line "$snap" ' missing$' "installed files"
expect_line "$snap" "^$BANGER_PREFIX/bin/banger symlink (\.\./lib|$BANGER_PREFIX/lib)/banger/bin/banger$" \
    "$BANGER_PREFIX/bin/banger symlink to ../lib/banger/bin/banger"
# Root runs or trusts these: they must belong to root and be writable by nobody else.
bad_perms=$(awk '
    $1 ~ /^\/var\/lib\/banger/ || ($2 != "file" && $2 != "dir") { next }
    $4 != "root:root" { print $1 " is owned by " $4 }
    { g = substr($3, length($3) - 1, 1); o = substr($3, length($3), 1) }
    g ~ /[2367]/ || o ~ /[2367]/ { print $1 " has mode " $3 }' <<<"$snap")
expect_eq "$bad_perms" "" "ownership/permissions of the installed files"
expect_line "$snap" "^$BANGER_STORE file [0-7]+ $OWNER:" "the store owned by $OWNER"
expect_line "$snap" "^/var/lib/banger dir [0-7]+ $OWNER:" "/var/lib/banger owned by $OWNER"
proved "every file of the installed layout exists, root's files are root-owned and not writable by others, the store is $OWNER's"
expect_eq "$(box_exec systemctl is-enabled bangerd-root-resume.service)" enabled "bangerd-root-resume.service"
expect_eq "$(box_exec systemctl show -p OnFailure --value bangerd-root.service)" bangerd-root-recover.service \
    "bangerd-root.service OnFailure="
proved "bangerd-root-resume.service is enabled (it finishes an interrupted update at boot) and bangerd-root.service has OnFailure=bangerd-root-recover.service"

mapfile -t text_files < <(banger_installed_paths | grep -E '\.(service|slice|conf|policy|example|toml)$')
expect_rc 1 box_exec grep -n -e @OWNER@ -e @PREFIX@ -e @LIBEXEC@ -- "${text_files[@]}"
expect_rc 0 box_exec grep -q "user=\"$OWNER\"" /etc/dbus-1/system.d/org.banger.Daemon1.owner.conf
expect_rc 0 box_exec grep -qx "User=$OWNER" /etc/systemd/system/bangerd.service.d/owner.conf
expect_eq "$(box_exec systemctl show -p User --value bangerd.service)" "$OWNER" "bangerd.service User= (its drop-in)"
expect_rc 0 box_exec grep -q "$OWNER" "$BANGER_PREFIX/share/banger/49-banger-owner.rules.example"
expect_rc 1 box_exec test -e /etc/polkit-1/rules.d/49-banger-owner.rules
proved "no @OWNER@/@PREFIX@/@LIBEXEC@ placeholder left; the owner's Daemon1 policy, bangerd drop-in and example rule name $OWNER; the example rule is not active"

expect_rc 0 box_exec python3 -c '
import sys, tomllib
t = tomllib.load(open(sys.argv[1], "rb"))
o = t["owner"]
print(o["user"], o["uid"], o["gid"], o["home"])
r = t["release"]
print(r["version"])' "$BANGER_INSTALL_TOML"
toml_owner=$(sed -n 1p <<<"$LAST_OUT")
toml_version=$(sed -n 2p <<<"$LAST_OUT")
want_owner="$OWNER $(box_exec id -u "$OWNER") $(box_exec id -g "$OWNER") /home/$OWNER"
expect_eq "$toml_owner" "$want_owner" "install.toml [owner] user uid gid home"
proved "install.toml parses as TOML and records the owner ($toml_owner)"

# --- D-Bus surface ------------------------------------------------------------------------
expect_rc 0 box_exec busctl --system introspect --no-pager org.banger.Root1 /org/banger/Root1 org.banger.Root1
root1=$LAST_OUT
for member in 'Version property s' 'ApiVersion property u' 'InstalledVersion property s' \
    'Owner property s' 'GetServiceStatus method - a\(sssu\)' 'StartDaemon method - -' \
    'StopDaemon method - -' 'RestartDaemon method - -'; do
    read -r m kind rest <<<"$member"
    expect_line "$root1" "^\.$m +$kind +${rest// / +}( |$)" "org.banger.Root1 member $m"
done
proved "Root1 exposes Version, ApiVersion, InstalledVersion, Owner, GetServiceStatus, StartDaemon, StopDaemon, RestartDaemon with the documented types"

expect_rc 0 box_exec busctl --system introspect --no-pager org.banger.Daemon1 /org/banger/Daemon1 org.banger.Daemon1
daemon1=$LAST_OUT
for member in 'Version property s' 'Ready property b' 'ListOperations method - a\(ssstb\)' \
    'Doctor method - a\(sss\)'; do
    read -r m kind rest <<<"$member"
    expect_line "$daemon1" "^\.$m +$kind +${rest// / +}( |$)" "org.banger.Daemon1 member $m"
done
proved "Daemon1 exposes Version, Ready, ListOperations, Doctor with the documented types"

get_root1() { box_unit -p "User=$OTHER" busctl --system get-property org.banger.Root1 /org/banger/Root1 org.banger.Root1 "$1"; }
expect_rc 0 get_root1 Version
root1_version=$LAST_OUT
expect_line "$root1_version" '^s "[0-9]+\.[0-9]+\.[0-9]+[^"]*"$' "Root1 Version read by $OTHER"
expect_rc 0 get_root1 ApiVersion
expect_eq "$LAST_OUT" "u 1" "Root1 ApiVersion"
expect_rc 0 get_root1 Owner
expect_eq "$LAST_OUT" "s \"$OWNER\"" "Root1 Owner"
expect_rc 0 get_root1 InstalledVersion
expect_eq "$LAST_OUT" "$root1_version" "Root1 InstalledVersion (= Version)"
proved "$OTHER (not the owner, no session) reads Root1 Version=${root1_version#s }, ApiVersion=1, Owner=$OWNER, InstalledVersion"

expect_rc 0 box_unit -p "User=$OTHER" busctl --system call org.banger.Root1 /org/banger/Root1 \
    org.banger.Root1 GetServiceStatus
status=$LAST_OUT
for unit in bangerd-root.service bangerd.service; do
    pid=$(main_pid "$unit")
    expect_contains "$status" "\"$unit\" \"active\" \"running\" $pid" "GetServiceStatus entry for $unit"
done
proved "$OTHER calls GetServiceStatus without authorization; it reports both units active/running with systemd's MainPIDs"

# --- versions -----------------------------------------------------------------------------
expect_rc 0 box_unit -p "User=$OTHER" "$BANGER" version
ver_out=$(tr -d '\r' <<<"$LAST_OUT")
expect_eq "$(wc -l <<<"$ver_out")" 3 "number of lines of 'banger version'"
expect_line "$ver_out" '^version: [0-9]+\.[0-9]+\.[0-9]+' "banger version: version line"
expect_line "$ver_out" '^commit: [^ ]+$' "banger version: commit line"
expect_line "$ver_out" '^built_at: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$' \
    "banger version: built_at line (RFC 3339, UTC)"
version=$(sed -n 's/^version: //p' <<<"$ver_out")
commit=$(sed -n 's/^commit: //p' <<<"$ver_out")
built=$(sed -n 's/^built_at: //p' <<<"$ver_out")
expect_eq "$root1_version" "s \"$version\"" "Root1 Version vs banger version"
expect_eq "$toml_version" "$version" "install.toml release.version vs banger version"
expect_rc 0 box_exec busctl --system get-property org.banger.Daemon1 /org/banger/Daemon1 org.banger.Daemon1 Version
expect_eq "$LAST_OUT" "s \"$version\"" "Daemon1 Version vs banger version"
proved "banger version prints version/commit/built_at ($version, $commit, $built); Root1, Daemon1 and install.toml agree"

for bin in "$BANGER" "$BANGER_PREFIX/lib/banger/bin/bangerd" "$BANGER_PREFIX/lib/banger/bin/bangerd-root"; do
    expect_rc 0 box_exec "$bin" --version
    expect_eq "$(tr -d '\r' <<<"$LAST_OUT")" "$(basename "$bin") v$version (commit $commit, built $built)" \
        "$(basename "$bin") --version"
done
proved "banger/bangerd/bangerd-root --version print '<name> v$version (commit $commit, built $built)'"

# --- status and doctor --------------------------------------------------------------------
expect_rc 0 box_exec "$BANGER" system status
expect_contains "$LAST_OUT" bangerd-root "banger system status"
expect_contains "$LAST_OUT" bangerd.service "banger system status"
proved "banger system status exits 0 and names both services"

expect_rc 0 box_as "$OWNER" "$BANGER" doctor
doctor=$(tr -d '\r' <<<"$LAST_OUT")
expect_no_line "$doctor" '^FAIL' "banger doctor as $OWNER"
expect_line "$doctor" '^PASS [^:]+: ' "banger doctor as $OWNER"
grep -E '^WARN' <<<"$doctor" | sed 's/^/  note: doctor says /' || true
proved "banger doctor as $OWNER exits 0 with $(grep -c '^PASS' <<<"$doctor") PASS and no FAIL line"

# --- --json: one object of a versioned shape, what the lines say ------------------------------
# json_field JSON PYEXPR: the value of PYEXPR over the parsed object `j`.
json_field() { python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
expect_rc 0 box_exec "$BANGER" version --json
v=$LAST_OUT
expect_eq "$(json_field "$v" 'j["format_version"], j["version"], j["commit"]')" "(1, '$version', '$commit')" "banger version --json"
expect_rc 0 box_exec "$BANGER" system status --json
st=$LAST_OUT
expect_eq "$(json_field "$st" 'j["format_version"], j["healthy"], j["installed"]["version"], j["installed"]["owner"]')" \
    "(1, True, '$version', '$OWNER')" "banger system status --json"
expect_eq "$(json_field "$st" '[(s["unit"], s["active_state"], s["bus_name_owned"]) for s in j["services"]]')" \
    "[('bangerd-root.service', 'active', True), ('bangerd.service', 'active', True)]" "services in banger system status --json"
expect_rc 0 box_as "$OWNER" "$BANGER" daemon status --json
expect_eq "$(json_field "$LAST_OUT" 'j["format_version"], j["daemon_ready"], len(j["services"])')" "(1, True, 2)" "banger daemon status --json"
expect_rc 0 box_as "$OWNER" "$BANGER" doctor --json
dj=$LAST_OUT
expect_eq "$(json_field "$dj" 'j["format_version"], j["failed"], j["passed"] == sum(c["level"] == "PASS" for c in j["checks"])')" \
    "(1, 0, True)" "banger doctor --json"
expect_eq "$(json_field "$dj" 'j["passed"]')" "$(grep -c '^PASS' <<<"$doctor")" "PASS checks of doctor --json and of doctor"
proved "version, system status, daemon status and doctor --json each print one object (format_version 1) agreeing with their lines"
