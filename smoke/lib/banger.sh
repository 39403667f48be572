# shellcheck shell=bash
# shellcheck disable=SC2016 # code that runs inside the box is single-quoted on purpose
# Looking at (and, for setup, poking) an installed banger inside the box. The scenarios may
# use systemctl/busctl to observe; the product itself never shells out to them.
# Needs lib/box.sh and lib/assert.sh.

SMOKE_REPO=${SMOKE_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BOX_BIN=${BOX_BIN:-/opt/banger-smoke/bin}        # binaries under test, bound read-only
# shellcheck disable=SC2034 # used by the scenarios
BANGER=$BANGER_PREFIX/bin/banger
# shellcheck disable=SC2034
BANGERD=$BANGER_PREFIX/lib/banger/bin/bangerd
OWNER=${OWNER:-owner}
OWNER_PASS=${OWNER_PASS:-owner-pass}
OTHER=${OTHER:-other}
OTHER_PASS=${OTHER_PASS:-other-pass}
STASH=/root/smoke-stash                          # inside the box

unit_state() { box_exec systemctl show -p ActiveState --value "${1:?unit}"; }
main_pid() { box_exec systemctl show -p MainPID --value "${1:?unit}"; }

# "true" / "false"
name_has_owner() {
    local out
    out=$(box_exec busctl --system call org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus NameHasOwner s "${1:?name}") || return 1
    [ "$out" = "b true" ] && echo true || echo false
}

# Daemon1's Ready property, read as root ("b true" / "b false"). Bus-activates bangerd.
daemon_ready() {
    box_exec busctl --system get-property org.banger.Daemon1 /org/banger/Daemon1 \
        org.banger.Daemon1 Ready
}

is_unit_state() {
    local state
    state=$(unit_state "$1")
    echo "$1: ActiveState=$state"
    [ "$state" = "$2" ]
}
is_daemon_ready() {
    local ready
    ready=$(daemon_ready 2>&1)
    echo "Daemon1 Ready: $ready"
    [ "$ready" = "b true" ]
}

# Recent journal lines of a unit, as evidence after a failed check.
show_journal() {
    box_exec journalctl -b --no-pager -o short-monotonic -n "${2:-15}" -u "$1" 2>&1 |
        sed "s/^/    journal($1) | /" >&2 || true
}

# wait_unit_state SECONDS UNIT STATE
wait_unit_state() {
    wait_for "$1" "$2 to be $3" is_unit_state "$2" "$3" || { show_journal "$2"; return 1; }
}

wait_daemon_ready() {
    wait_unit_state "${1:-15}" bangerd.service active || return 1
    wait_for "${1:-15}" "org.banger.Daemon1 Ready=true" is_daemon_ready ||
        { show_journal bangerd.service; return 1; }
}

# PRAGMA user_version of a store, read through SQLite (so a -wal file counts) by a read-only
# connection opened as the owner (any -shm it needs belongs to the owner, as bangerd's would).
store_user_version() {
    box_unit -p "User=$OWNER" python3 -c '
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(db.execute("PRAGMA user_version").fetchone()[0])
db.close()' "${1:-$BANGER_STORE}"
}

# Directory listing of /var/lib/banger (names, sizes, owners): shows stray files.
store_dir_listing() { box_exec ls -ln --time-style=+ /var/lib/banger; }

# The migration files in the repository, in order.
migration_files() {
    local f
    for f in "$SMOKE_REPO"/bangerd/src/store/migrations/[0-9][0-9][0-9][0-9]_*.sql; do
        [ -f "$f" ] && printf '%s\n' "$f"
    done
}

# Move the store (and any -wal/-shm/-journal) to $STASH/NAME. bangerd must be stopped.
store_stash() {
    local name=${1:?store_stash NAME}
    box_exec bash -euc '
        mkdir -p "$1/$2"
        for f in "$3" "$3-wal" "$3-shm" "$3-journal"; do
            if [ -e "$f" ]; then mv "$f" "$1/$2/"; fi
        done' stash "$STASH" "$name" "$BANGER_STORE"
}

# Replace whatever store is there by the stashed one.
store_unstash() {
    local name=${1:?store_unstash NAME}
    box_exec bash -euc '
        [ -f "$1/$2/$(basename "$3")" ] || { echo "nothing stashed under $1/$2" >&2; exit 1; }
        rm -f "$3" "$3-wal" "$3-shm" "$3-journal"
        mv "$1/$2"/* "$(dirname "$3")/"
        rmdir "$1/$2"' unstash "$STASH" "$name" "$BANGER_STORE"
}

# store_write_schema REF VERSION [SQLFILE...]: a new store made by applying the SQL files (read
# on the host) and setting user_version=VERSION; mode and owner copied from the stashed store REF.
store_write_schema() {
    local ref=${1:?} version=${2:?store_write_schema REF VERSION [SQLFILE...]}
    shift 2
    local refdb
    refdb=$STASH/$ref/$(basename "$BANGER_STORE")
    cat -- "$@" </dev/null | box_exec python3 -c '
import sqlite3, sys
path, version = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path)
db.executescript(sys.stdin.read())
db.execute("PRAGMA user_version = %d" % version)
db.commit()
db.close()' "$BANGER_STORE" "$version" &&
        box_exec chown --reference="$refdb" "$BANGER_STORE" &&
        box_exec chmod --reference="$refdb" "$BANGER_STORE"
}

# store_copy_with_version NAME VERSION: the stashed store NAME, with user_version changed.
store_copy_with_version() {
    local name=${1:?} version=${2:?store_copy_with_version NAME VERSION}
    box_exec cp --preserve=mode,ownership "$STASH/$name/$(basename "$BANGER_STORE")" "$BANGER_STORE" &&
        box_exec python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA user_version = %d" % int(sys.argv[2]))
db.commit()
db.close()' "$BANGER_STORE" "$version"
}

# Harness-side stop (used by cleanup traps, not as a product check).
harness_stop_daemon() {
    box_exec systemctl stop bangerd.service || true
    box_exec systemctl reset-failed bangerd.service 2>/dev/null || true
}

# nspawn creates the container's /dev/net/tun with mode 0600; on a Debian host udev makes it 0666
# (opening it grants nothing by itself: a tap must be owned by the user who attaches to it). The
# VMs' QEMU runs as the owner and opens it, so make the container's node like a host's.
box_host_like() { box_exec chmod 0666 /dev/net/tun; }

# The two real users every scenario relies on: the owner (in group sudo, so polkit's
# auth_admin asks for the owner's password) and a second, unprivileged user.
create_users() {
    box_exec bash -euc '
        useradd --create-home --shell /bin/bash --groups sudo "$1"
        useradd --create-home --shell /bin/bash "$3"
        printf "%s:%s\n" "$1" "$2" "$3" "$4" | chpasswd
        id "$1"; id "$3"' users "$OWNER" "$OWNER_PASS" "$OTHER" "$OTHER_PASS"
}

# ---------------------------------------------------------------------------------------------
# Running things in the background (on the host), for updates that are followed, paused or
# interrupted while the scenario looks at them.

BG_DIR=$SMOKE_DIR/bg

# bg_start NAME CMD...: run CMD in the background; bg_wait collects its output and status.
bg_start() {
    local name=${1:?bg_start NAME CMD...}
    shift
    mkdir -p "$BG_DIR"
    rm -f "$BG_DIR/$name.out" "$BG_DIR/$name.rc"
    (
        rc=0
        "$@" >"$BG_DIR/$name.out" 2>&1 </dev/null || rc=$?
        printf '%s\n' "$rc" >"$BG_DIR/$name.rc"
    ) &
}
bg_done() { [ -s "$BG_DIR/$1.rc" ]; }
# bg_wait NAME SECONDS: wait for it; LAST_OUT / LAST_RC are its output and exit status.
bg_wait() {
    wait_for "${2:?bg_wait NAME SECONDS}" "background command '$1' to finish" bg_done "$1" || {
        _evidence "its output so far:" "$(cat "$BG_DIR/$1.out" 2>/dev/null)"
        return 1
    }
    LAST_OUT=$(cat "$BG_DIR/$1.out")
    LAST_RC=$(cat "$BG_DIR/$1.rc")
}
