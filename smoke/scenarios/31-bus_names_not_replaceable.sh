#!/usr/bin/env bash
# Nobody takes a banger name over: both services own their names without ALLOW_REPLACEMENT, so
# a process the bus policy lets own the name (any process of the owner for Daemon1, any root
# process for Root1) asking with REPLACE_EXISTING is told the name exists, and the service keeps
# it. (With zbus's default flags the second process silently became the owner, and `sudo banger
# vm ssh` would then have asked it where to connect.)
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

cleanup() {
    local rc=$?
    if [ "$rc" != 0 ]; then   # a service that lost its name is of no use to the next scenario
        box_exec systemctl restart bangerd-root.service bangerd.service || true
    fi
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
box_exec busctl --system get-property org.banger.Root1 /org/banger/Root1 org.banger.Root1 Version >/dev/null

owner_of() {
    box_exec busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        GetNameOwner s "${1:?name}" | sed -E 's/^s "(.*)"$/\1/'
}

# RequestName flags: 2 = REPLACE_EXISTING, 4 = DO_NOT_QUEUE. Replies: 1 primary owner, 3 exists.
for case in "$OWNER org.banger.Daemon1 bangerd.service" "root org.banger.Root1 bangerd-root.service"; do
    read -r user name unit <<<"$case"
    before=$(owner_of "$name")
    pid=$(main_pid "$unit")
    expect_rc 0 box_unit -p "User=$user" dbus-send --system --print-reply --dest=org.freedesktop.DBus \
        /org/freedesktop/DBus org.freedesktop.DBus.RequestName "string:$name" uint32:6
    expect_line "$LAST_OUT" '^ +uint32 3$' "RequestName($name, REPLACE_EXISTING|DO_NOT_QUEUE) by $user"
    expect_eq "$(owner_of "$name")" "$before" "the owner of $name after the attempt"
    expect_eq "$(main_pid "$unit")" "$pid" "$unit MainPID after the attempt"
    proved "a process of $user asking for $name with REPLACE_EXISTING gets EXISTS; $unit (pid $pid) keeps the name"
done

# The service still answers on its name (it was never replaced, not even for a moment).
expect_rc 0 box_as "$OWNER" "$BANGER" vm list
expect_rc 0 box_exec busctl --system get-property org.banger.Root1 /org/banger/Root1 org.banger.Root1 Version
proved "Daemon1 and Root1 answer as before"
