#!/usr/bin/env bash
# Both services serve org.freedesktop.LogControl1: `systemctl service-log-level UNIT [LEVEL]`
# reads and changes their log level while they run (same PID), an unknown level is refused,
# and another user cannot change it.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

wait_daemon_ready 15
for unit in bangerd-root.service bangerd.service; do
    pid=$(main_pid "$unit")
    expect_rc 0 box_exec systemctl service-log-level "$unit"
    expect_eq "$LAST_OUT" info "the log level of $unit"
    expect_rc 0 box_exec systemctl service-log-level "$unit" debug
    expect_rc 0 box_exec systemctl service-log-level "$unit"
    expect_eq "$LAST_OUT" debug "the log level of $unit after setting debug"
    # systemctl checks a level's name itself; the service's own check, through busctl:
    dest=org.banger.Root1
    [ "$unit" = bangerd.service ] && dest=org.banger.Daemon1
    expect_rc '!0' box_exec busctl --system set-property "$dest" /org/freedesktop/LogControl1 \
        org.freedesktop.LogControl1 LogLevel s loud
    expect_contains "$LAST_OUT" "unknown log level" "setting LogLevel 'loud' on $dest"
    expect_eq "$(main_pid "$unit")" "$pid" "the main PID of $unit (no restart)"
    expect_rc 0 box_exec systemctl service-log-level "$unit"
    expect_eq "$LAST_OUT" debug "the log level of $unit after the refused 'loud'"
    expect_rc 0 box_exec systemctl service-log-level "$unit" info
    proved "systemctl service-log-level $unit: info → debug → info on PID $pid; 'loud' refused by the service"
done
expect_rc '!0' box_as other busctl --system set-property org.banger.Root1 /org/freedesktop/LogControl1 \
    org.freedesktop.LogControl1 LogLevel s debug
expect_contains "$LAST_OUT" "ccess denied" "the other user setting bangerd-root's log level"
expect_rc 0 box_exec systemctl service-log-level bangerd-root.service
expect_eq "$LAST_OUT" info "bangerd-root's log level after the other user's attempt"
proved "the other user cannot change bangerd-root's log level"
