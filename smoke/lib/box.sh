#!/usr/bin/env bash
# shellcheck shell=bash
# A throwaway machine with a real systemd (PID 1), system D-Bus, logind and polkitd,
# for hosts whose PID 1 is not systemd: a systemd-nspawn container booted on an
# overlay of the host's / (writes land in a tmpfs and are discarded on teardown).
#
# Source it:   source smoke/lib/box.sh; box_up; box_exec systemctl status; box_down
# Or run it:   smoke/lib/box.sh up|down|status|exec CMD...|unit CMD...|as USER CMD...
#
# Functions
#   box_deps                     install missing Debian packages (apt-get update only if needed)
#   box_up [NSPAWN_ARGS...]      boot the container (e.g. --bind-ro=/host/dir:/in/box), wait until
#                                systemd reports running|degraded; installs EXIT/INT/TERM teardown
#   box_down                     stop it: TERM, then KILL whatever is left in its cgroup (idempotent)
#   box_running                  exit 0 if the container is up
#   box_exec CMD...              run CMD inside as root (nsenter; clean environment)
#   box_unit [PROPS...] CMD...   run CMD inside as a transient unit (systemd-run --wait --pipe);
#                                PROPS are systemd-run options, e.g. -p User=other
#   box_as USER CMD...           run CMD as USER in a real login session (pam_systemd, seat0, active)
#   box_as_tty USER SHELLCMD TEXT  same session, SHELLCMD runs on a terminal (lib/pty-answer.py)
#                                and each line of TEXT answers one password prompt
# All of them return the exit status of CMD and pass its stdout/stderr through.
#
# Environment
#   SMOKE_DIR (/tmp/banger-smoke)  state: pid file, console log, overlay mount point
#   BOX_NAME (banger-smoke)        machine name, also the name of its host cgroup
#   BOX_KEEP (0)                   1: the EXIT/INT/TERM handler leaves the container running
#   BOX_BOOT_TIMEOUT (60)          seconds to wait for the boot to finish
#   BOX_CMD_TIMEOUT (180)          seconds any single box_exec/box_unit command may take
#   BOX_TTY_TIMEOUT (60)           seconds a box_as_tty command may take (an unanswered prompt)
#   BOX_OVERLAY_SIZE (4G)          size of the tmpfs holding the container's writes

SMOKE_DIR=${SMOKE_DIR:-/tmp/banger-smoke}
BOX_NAME=${BOX_NAME:-banger-smoke}
BOX_KEEP=${BOX_KEEP:-0}
BOX_BOOT_TIMEOUT=${BOX_BOOT_TIMEOUT:-60}
BOX_CMD_TIMEOUT=${BOX_CMD_TIMEOUT:-180}
BOX_OVERLAY_SIZE=${BOX_OVERLAY_SIZE:-4G}
BOX_TTY_TIMEOUT=${BOX_TTY_TIMEOUT:-60}
BOX_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BOX_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BOX_PACKAGES=(systemd systemd-container dbus dbus-bin libpam-systemd polkitd util-linux bsdutils procps
    openssl ca-certificates python3 python3-dbus python3-gi qemu-system-x86 openssh-client iproute2 nftables
    e2fsprogs libglib2.0-bin man-db bash-completion curl openssh-server dpkg-dev binutils lintian
    docker-registry skopeo mmdebstrap
    cockpit-ws cockpit-bridge cockpit-system chromium chromium-driver python3-selenium)

_box_log() { printf '[box %s] %s\n' "$(date +%T)" "$*" >&2; }
_box_err() { _box_log "ERROR: $*"; return 1; }

# The host cgroup directories that hold nspawn and everything in the container.
_box_cgroups() {
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then          # pure cgroup v2 host
        printf '%s\n' "/sys/fs/cgroup/$BOX_NAME"
    else                                                       # legacy / hybrid host
        printf '%s\n' "/sys/fs/cgroup/systemd/$BOX_NAME"
        if [ -d /sys/fs/cgroup/unified ]; then
            printf '%s\n' "/sys/fs/cgroup/unified/$BOX_NAME"
        fi
    fi
}

# PIDs currently in the box's cgroups (any depth).
_box_cgroup_pids() {
    local cg
    while IFS= read -r cg; do
        [ -d "$cg" ] || continue
        # Cgroups come and go while units restart: a vanished one is not an error.
        find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    done < <(_box_cgroups) | sort -un
}

# nspawn's PID, only if that process is alive and is one of ours (sits in our cgroup).
_box_nspawn_pid() {
    local pid
    pid=$(cat "$SMOKE_DIR/nspawn.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # grep -q would close the pipe early (SIGPIPE under pipefail): read it all.
    [ -n "$(_box_cgroup_pids | grep -x -- "$pid")" ] || return 1
    printf '%s\n' "$pid"
}

# Host PID of the container's PID 1 (systemd).
box_leader() {
    local ns child
    ns=$(_box_nspawn_pid) || return 1
    # shellcheck disable=SC2013 # the children files hold space-separated PIDs
    for child in $(cat "/proc/$ns/task/"*/children 2>/dev/null); do
        if [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then
            printf '%s\n' "$child"
            return 0
        fi
    done
    return 1
}

box_running() { box_leader >/dev/null 2>&1; }

# Resets the container at once, as a power loss would (no service is stopped, nothing is
# flushed or cleaned up: `systemctl reboot --force --force`), and waits until it has booted
# again from the same overlay; then makes it like a host again (box_host_like, lib/banger.sh).
box_reboot() {
    local old leader="" state="" deadline
    old=$(box_leader) || _box_err "container $BOX_NAME is not running" || return 1
    nsenter -t "$old" -a -- systemctl reboot --force --force >/dev/null 2>&1 || true
    deadline=$((SECONDS + BOX_BOOT_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if leader=$(box_leader 2>/dev/null) && [ "$leader" != "$old" ]; then
            state=$(timeout 5 nsenter -t "$leader" -a -- systemctl is-system-running --wait \
                2>/dev/null) || true
            case $state in running | degraded) break ;; esac
        fi
        sleep 0.1
    done
    case $state in
        running | degraded) ;;
        *)
            _box_console_tail
            _box_err "the container did not boot again within ${BOX_BOOT_TIMEOUT}s (state '${state:-unknown}')"
            return 1
            ;;
    esac
    _box_log "$BOX_NAME rebooted: leader pid $leader, state $state"
    if declare -F box_host_like >/dev/null; then box_host_like; fi
}

box_deps() {
    local p missing=()
    for p in "${BOX_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    _box_log "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -qq ||
        _box_err "apt-get update failed" || return 1
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null ||
        _box_err "apt-get install ${missing[*]} failed" || return 1
}

_box_console_tail() {
    _box_log "last lines of the container console ($SMOKE_DIR/console.log):"
    tail -n 30 "$SMOKE_DIR/console.log" >&2 2>/dev/null || true
}

box_up() {
    [ "$(id -u)" = 0 ] || _box_err "box_up must run as root" || return 1
    if box_running; then
        _box_err "container $BOX_NAME is already running (leader $(box_leader)); run box_down first"
        return 1
    fi
    box_deps || return 1
    # Leftovers of an earlier run that was killed hard.
    box_down >/dev/null 2>&1 || true
    mkdir -p "$SMOKE_DIR/root" "$SMOKE_DIR/ovl"
    rm -f "$SMOKE_DIR/nspawn.pid"
    local cg cgroups=()
    while IFS= read -r cg; do
        mkdir -p "$cg" || _box_err "cannot create cgroup $cg" || return 1
        cgroups+=("$cg")
    done < <(_box_cgroups)

    local t0=$EPOCHREALTIME
    BOX_NAME=$BOX_NAME BOX_STATE=$SMOKE_DIR BOX_CGROUPS="${cgroups[*]}" \
        BOX_OVERLAY_SIZE=$BOX_OVERLAY_SIZE \
        setsid unshare --mount --propagation private -- "$BOX_LIB_DIR/box-boot.sh" "$@" \
        </dev/null >"$SMOKE_DIR/console.log" 2>&1 &
    _box_install_traps

    local deadline=$((SECONDS + BOX_BOOT_TIMEOUT)) leader="" state=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        if leader=$(box_leader 2>/dev/null); then
            state=$(timeout 5 nsenter -t "$leader" -a -- systemctl is-system-running --wait \
                2>/dev/null) || true
            case $state in running | degraded) break ;; esac
        elif { [ -s "$SMOKE_DIR/nspawn.pid" ] && ! _box_nspawn_pid >/dev/null; } ||
            { [ ! -s "$SMOKE_DIR/nspawn.pid" ] && [ "$((SECONDS + BOX_BOOT_TIMEOUT - deadline))" -gt 10 ]; }; then
            _box_console_tail
            _box_err "systemd-nspawn exited during boot"
            box_down
            return 1
        fi
        sleep 0.1
    done
    case $state in
        running | degraded) ;;
        *)
            _box_console_tail
            _box_err "boot did not finish within ${BOX_BOOT_TIMEOUT}s (system state: '${state:-unknown}')"
            box_down
            return 1
            ;;
    esac
    if [ "$state" = degraded ]; then
        _box_log "system is degraded; failed units:"
        box_exec systemctl --failed --no-legend --no-pager >&2 || true
    fi
    _box_log "$BOX_NAME up: leader pid $leader, state $state, boot $(_box_elapsed "$t0")s"
}

# Seconds (one decimal) since a saved $EPOCHREALTIME.
_box_elapsed() {
    local now=${EPOCHREALTIME/./} then=${1/./}
    local ds=$(((now - then) / 100000))
    printf '%d.%d' "$((ds / 10))" "$((ds % 10))"
}

box_down() {
    # Safe to call any number of times, with or without a running container.
    local ns pids cg i
    if ns=$(_box_nspawn_pid); then
        kill -TERM "$ns" 2>/dev/null || true    # nspawn -> SIGRTMIN+4 to PID 1: clean poweroff
        for ((i = 0; i < 200; i++)); do
            kill -0 "$ns" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$ns" 2>/dev/null; then
            _box_log "systemd-nspawn ($ns) did not stop in 20s, killing it"
            kill -KILL "$ns" 2>/dev/null || true
        fi
    fi
    # box-boot.sh ends by itself once nspawn has: give it a moment.
    for ((i = 0; i < 20; i++)); do
        [ -z "$(_box_cgroup_pids)" ] && break
        sleep 0.1
    done
    # Whatever is still in our cgroups was started by us (box_up put nspawn there).
    for ((i = 0; i < 50; i++)); do
        pids=$(_box_cgroup_pids)
        [ -z "$pids" ] && break
        [ "$i" = 0 ] && _box_log "killing leftover processes: $(tr '\n' ' ' <<<"$pids")"
        # shellcheck disable=SC2086 # one PID per word
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    if [ -n "$(_box_cgroup_pids)" ]; then
        _box_err "processes are still left in the $BOX_NAME cgroups: $(_box_cgroup_pids | tr '\n' ' ')"
        return 1
    fi
    while IFS= read -r cg; do
        [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
        if [ -d "$cg" ]; then
            _box_err "cannot remove cgroup $cg"
            return 1
        fi
    done < <(_box_cgroups)
    rm -f "$SMOKE_DIR/nspawn.pid"
    rmdir "$SMOKE_DIR/root" "$SMOKE_DIR/ovl" 2>/dev/null || true
    return 0
}

_box_install_traps() {
    [ "${BOX_NO_TRAP:-0}" = 1 ] && return 0
    trap '_box_on_exit' EXIT
    trap '_box_on_signal INT 130' INT
    trap '_box_on_signal TERM 143' TERM
}

_box_on_exit() {
    local rc=$?
    if [ "$BOX_KEEP" = 1 ] && box_running; then
        _box_log "container kept running (leader pid $(box_leader))"
        _box_log "  inside:   $BOX_LIB_DIR/box.sh exec bash"
        _box_log "  journal:  $BOX_LIB_DIR/box.sh exec journalctl -b --no-pager"
        _box_log "  stop:     $BOX_LIB_DIR/box.sh down"
    else
        box_down || true
    fi
    return "$rc"
}

_box_on_signal() {
    trap - EXIT INT TERM
    _box_log "got SIG$1, tearing down"
    _box_on_exit
    exit "$2"
}

# Run inside the container as root, with a clean environment. Bounded by BOX_CMD_TIMEOUT,
# except on a terminal (an interactive shell for debugging: `box.sh exec bash`).
box_exec() {
    local leader
    leader=$(box_leader) || _box_err "container $BOX_NAME is not running" || return 1
    local env=(env -i PATH="$BOX_PATH" HOME=/root USER=root LOGNAME=root LANG=C.UTF-8)
    if [ -t 0 ]; then
        nsenter -t "$leader" -a -- "${env[@]}" TERM="${TERM:-dumb}" "$@"
    else
        timeout -k 5 "$BOX_CMD_TIMEOUT" nsenter -t "$leader" -a -- "${env[@]}" TERM=dumb "$@"
    fi
}

# Run inside as a transient service; systemd-run options first, then the command.
# Options must be single words (--opt=value) or "-p X=Y" / "-E X=Y" pairs. The command's
# words reach it verbatim: "$" is escaped from systemd's own $VAR expansion in ExecStart.
# The unit's stdin is ours unless ours is a terminal (then /dev/null: no accidental tty).
box_unit() {
    local run=(systemd-run --wait --pipe --quiet --collect -p "RuntimeMaxSec=$BOX_CMD_TIMEOUT")
    while [ "$#" -gt 0 ]; do
        case $1 in
            -p | --property | -E | --setenv | --uid | --gid | --slice | --unit | --description)
                run+=("$1" "${2:?box_unit: $1 needs a value}")
                shift 2
                ;;
            -*) run+=("$1"); shift ;;
            *) break ;;
        esac
    done
    [ "$#" -gt 0 ] || _box_err "box_unit: no command given" || return 1
    local arg
    for arg in "$@"; do
        run+=("${arg//\$/\$\$}")
    done
    if [ -t 0 ]; then
        box_exec "${run[@]}" </dev/null
    else
        box_exec "${run[@]}"
    fi
}

# Run as USER in a login session (logind: class user, type tty, seat0 => "active" for polkit).
box_as() {
    local user=${1:?box_as USER CMD...} home
    shift
    home=$(box_exec getent passwd "$user" | cut -d: -f6) && [ -n "$home" ] ||
        _box_err "box_as: no user '$user' in the container" || return 1
    box_unit -p PAMName=login -p "User=$user" -p "WorkingDirectory=$home" \
        -p "Environment=XDG_SEAT=seat0 XDG_SESSION_CLASS=user XDG_SESSION_TYPE=tty" \
        "$@"
}

# Run SHELLCMD as USER in a login session on a pseudo-terminal; each line of TEXT answers one
# password prompt. (Typed only once the prompt is up and echo is off: pkttyagent flushes
# the terminal's input when it asks, so text piped in ahead, as with `script`, is lost.)
box_as_tty() {
    local user=${1:?box_as_tty USER SHELLCMD TEXT} cmd=${2:?box_as_tty USER SHELLCMD TEXT}
    local text=${3-} driver
    driver=$(<"$BOX_LIB_DIR/pty-answer.py")
    if [ -n "$text" ]; then printf '%s\n' "$text"; fi |
        box_as "$user" -E "PTY_ANSWER_TIMEOUT=$BOX_TTY_TIMEOUT" python3 -c "$driver" "$cmd"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case ${1:-} in
        up) shift; BOX_NO_TRAP=1 box_up "$@" ;;
        down) box_down ;;
        status)
            if box_running; then
                echo "$BOX_NAME running, leader pid $(box_leader)"
            else
                echo "$BOX_NAME not running"
                exit 1
            fi
            ;;
        exec) shift; box_exec "$@" ;;
        unit) shift; box_unit "$@" ;;
        as) shift; box_as "$@" ;;
        *)
            echo "usage: $0 up [NSPAWN_ARGS...] | down | status | exec CMD... | unit [PROPS...] CMD... | as USER CMD..." >&2
            exit 2
            ;;
    esac
fi
