#!/usr/bin/env bash
# Who may do what: Daemon1 only answers the owner and root (bus policy); nobody but root may
# own the banger names; Root1's daemon control is polkit's decision (auth_admin), asked
# interactively only when the caller allows it, and the shipped example rule, once enabled,
# lets the owner manage the daemon without a prompt.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

RULE=/etc/polkit-1/rules.d/49-banger-owner.rules
EXAMPLE=$BANGER_PREFIX/share/banger/49-banger-owner.rules.example
cleanup() {
    local rc=$?
    box_exec rm -f "$RULE" || true
    return "$rc"
}
trap cleanup EXIT

# dbus-send prints the D-Bus error *name*, which is what these checks are about.
send_as() {   # send_as USER DEST PATH IFACE.METHOD [ARGS...]   (no login session)
    local user=$1 dest=$2 path=$3 method=$4
    shift 4
    box_unit -p "User=$user" dbus-send --system --print-reply --dest="$dest" "$path" "$method" "$@"
}
session_send_as() {   # same, from a logind session (active, seat0)
    local user=$1 dest=$2 path=$3 method=$4
    shift 4
    box_as "$user" dbus-send --system --print-reply --dest="$dest" "$path" "$method" "$@"
}
may_manage() {   # may_manage USER: polkit says yes for org.banger.daemon.manage without a prompt
    box_as "$1" sh -c 'exec pkcheck --action-id org.banger.daemon.manage --process $$'
}
may_not_manage() { ! may_manage "$1" >/dev/null 2>&1; }

wait_daemon_ready 15

# --- Daemon1: bus policy ------------------------------------------------------------------
expect_rc '!0' send_as "$OTHER" org.banger.Daemon1 /org/banger/Daemon1 org.banger.Daemon1.ListOperations
expect_contains "$LAST_OUT" org.freedesktop.DBus.Error.AccessDenied "$OTHER calling Daemon1.ListOperations"
expect_rc '!0' box_unit -p "User=$OTHER" busctl --system call org.banger.Daemon1 /org/banger/Daemon1 \
    org.banger.Daemon1 ListOperations
expect_rc '!0' send_as "$OTHER" org.banger.Daemon1 /org/banger/Daemon1 org.freedesktop.DBus.Properties.Get \
    string:org.banger.Daemon1 string:Version
expect_contains "$LAST_OUT" org.freedesktop.DBus.Error.AccessDenied "$OTHER reading Daemon1 Version"
expect_rc '!0' box_unit -p "User=$OTHER" busctl --system get-property org.banger.Daemon1 /org/banger/Daemon1 \
    org.banger.Daemon1 Version
proved "$OTHER gets org.freedesktop.DBus.Error.AccessDenied from Daemon1 (ListOperations, Get Version)"

expect_rc 0 box_unit -p "User=$OWNER" busctl --system call org.banger.Daemon1 /org/banger/Daemon1 \
    org.banger.Daemon1 ListOperations
expect_line "$LAST_OUT" '^a\(ssstb\) ' "ListOperations reply to $OWNER"
expect_rc 0 box_unit -p "User=$OWNER" busctl --system get-property org.banger.Daemon1 /org/banger/Daemon1 \
    org.banger.Daemon1 Version
proved "$OWNER calls Daemon1.ListOperations and reads Version (the denial above is policy, not a broken daemon)"

# --- bus names ----------------------------------------------------------------------------
for user in "$OTHER" "$OWNER"; do
    for name in org.banger.Root1 org.banger.Daemon1; do
        [ "$user" = "$OWNER" ] && [ "$name" = org.banger.Daemon1 ] && continue   # bangerd runs as the owner
        expect_rc '!0' send_as "$user" org.freedesktop.DBus /org/freedesktop/DBus \
            org.freedesktop.DBus.RequestName "string:$name" uint32:0
        expect_contains "$LAST_OUT" org.freedesktop.DBus.Error.AccessDenied "$user requesting $name"
    done
done
proved "$OTHER may own neither org.banger.Root1 nor org.banger.Daemon1, $OWNER may not own org.banger.Root1 (AccessDenied)"

# --- Root1: polkit, non-interactive -------------------------------------------------------
# shellcheck disable=SC2016 # expanded inside the session
expect_rc 0 box_as "$OTHER" sh -c 'loginctl show-session "$XDG_SESSION_ID" -p Active -p Class -p Seat'
expect_eq "$(sort <<<"$LAST_OUT" | tr '\n' ' ')" "Active=yes Class=user Seat=seat0 " \
    "the logind session box_as gives $OTHER"

pid=$(main_pid bangerd.service)
for user in "$OTHER" "$OWNER"; do
    expect_rc '!0' session_send_as "$user" org.banger.Root1 /org/banger/Root1 org.banger.Root1.RestartDaemon
    expect_contains "$LAST_OUT" org.freedesktop.DBus.Error.InteractiveAuthorizationRequired \
        "$user calling RestartDaemon without allowing interaction"
    expect_rc '!0' box_as "$user" busctl --system --allow-interactive-authorization=no call \
        org.banger.Root1 /org/banger/Root1 org.banger.Root1 RestartDaemon
done
expect_eq "$(main_pid bangerd.service)" "$pid" "bangerd MainPID after the refused RestartDaemon calls"
proved "RestartDaemon from an active session without ALLOW_INTERACTIVE_AUTHORIZATION fails with InteractiveAuthorizationRequired, for $OTHER and for $OWNER (owner not trusted by default); bangerd untouched"

# --- Root1: polkit, interactive (pkttyagent on a terminal) --------------------------------
expect_rc '!0' box_as_tty "$OTHER" "$BANGER daemon restart" "wrong-password"
expect_contains "$LAST_OUT" "org.banger.daemon.manage" "the password prompt names the action"
expect_contains "$LAST_OUT" "$OWNER" "the password prompt asks for the administrator ($OWNER)"
expect_eq "$(main_pid bangerd.service)" "$pid" "bangerd MainPID after a wrong password"
proved "banger daemon restart as $OTHER on a tty: pkttyagent asks for $OWNER's password; a wrong one is refused (non-zero, bangerd untouched)"

expect_rc 0 box_as_tty "$OTHER" "$BANGER daemon restart" "$OWNER_PASS"
wait_daemon_ready 15
new_pid=$(main_pid bangerd.service)
expect_ne "$new_pid" "$pid" "bangerd MainPID after an authenticated restart"
proved "with the administrator's password banger daemon restart as $OTHER succeeds (MainPID $pid -> $new_pid)"

# --- the example rule ---------------------------------------------------------------------
expect_rc 1 box_exec test -e "$RULE"
may_not_manage "$OWNER" || fail "$OWNER may manage the daemon without a prompt before the rule is enabled"
expect_rc 0 box_exec cp "$EXAMPLE" "$RULE"
wait_for 10 "polkitd to load $RULE (pkcheck as $OWNER)" may_manage "$OWNER"
pid=$(main_pid bangerd.service)
expect_rc 0 box_as "$OWNER" "$BANGER" daemon restart
wait_daemon_ready 15
new_pid=$(main_pid bangerd.service)
expect_ne "$new_pid" "$pid" "bangerd MainPID after $OWNER's restart under the rule"
proved "with the example rule enabled, banger daemon restart as $OWNER succeeds with no tty and no agent (MainPID $pid -> $new_pid)"

expect_rc '!0' box_as "$OTHER" "$BANGER" daemon restart
expect_eq "$(main_pid bangerd.service)" "$new_pid" "bangerd MainPID after $OTHER's attempt under the rule"
proved "the rule trusts only $OWNER: $OTHER's non-interactive restart is still refused"

expect_rc 0 box_exec rm "$RULE"
wait_for 10 "polkitd to drop $RULE" may_not_manage "$OWNER"
proved "removing the rule takes the owner's prompt-free access away again"
