# shellcheck shell=bash
# Assertions for the smoke scenarios. Every check either prints nothing and returns 0, or
# prints "FAIL: ..." with the evidence (command, exit status, output) and returns 1, so
# under `set -e` the first failed check ends the scenario.
#
#   proved TEXT                      print "PROVED: TEXT"
#   fail TEXT                        print "FAIL: TEXT", return 1
#   run_capture CMD...               run CMD, keep its combined output in LAST_OUT, status in LAST_RC
#   expect_rc WANT CMD...            run_capture + check the status (WANT: a number, or !0 = non-zero)
#   expect_eq GOT WANT WHAT / expect_ne GOT UNWANTED WHAT
#   expect_contains HAYSTACK NEEDLE WHAT      fixed string
#   expect_not_contains HAYSTACK NEEDLE WHAT
#   expect_line HAYSTACK ERE WHAT             some line matches the extended regex
#   expect_no_line HAYSTACK ERE WHAT          no line matches
#   wait_for SECONDS WHAT CMD...     poll CMD (every 0.1 s) until it succeeds
#   snapshot_install NAME            record type/mode/owner/sha256 of every installed file
#   expect_same_snapshot A B WHAT [PATH...]   the two snapshots agree, except for PATHs
#   box_sha256 PATH                  sha256 of a file inside the container
#
# Needs lib/box.sh (box_exec) for the snapshot helpers.

LAST_OUT=""
LAST_RC=0

proved() { printf 'PROVED: %s\n' "$*"; }

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    return 1
}

# Indented evidence block on stderr.
_evidence() {
    local title=$1 text=$2
    printf '    %s\n' "$title" >&2
    if [ -z "$text" ]; then
        printf '    | (nothing)\n' >&2
    else
        # strip CRs from pty output so the block stays readable
        printf '%s\n' "$text" | tr -d '\r' | sed 's/^/    | /' >&2
    fi
}

_quote_cmd() {
    local out="" a
    for a in "$@"; do out+="$(printf '%q' "$a") "; done
    printf '%s' "${out% }"
}

run_capture() {
    LAST_RC=0
    LAST_OUT=$("$@" 2>&1) || LAST_RC=$?
    return 0
}

expect_rc() {
    local want=${1:?expect_rc WANT CMD...}
    shift
    run_capture "$@"
    local ok=0
    case $want in
        '!0') [ "$LAST_RC" != 0 ] && ok=1 ;;
        *) [ "$LAST_RC" = "$want" ] && ok=1 ;;
    esac
    if [ "$ok" = 1 ]; then return 0; fi
    [ "$want" = '!0' ] && want=non-zero
    fail "expected exit status $want, got $LAST_RC: $(_quote_cmd "$@")" || true
    _evidence "output:" "$LAST_OUT"
    return 1
}

expect_eq() {
    local got=$1 want=$2 what=${3:?expect_eq GOT WANT WHAT}
    [ "$got" = "$want" ] && return 0
    fail "$what: expected '$want', got '$got'"
}

expect_ne() {
    local got=$1 unwanted=$2 what=${3:?expect_ne GOT UNWANTED WHAT}
    [ "$got" != "$unwanted" ] && return 0
    fail "$what: expected something other than '$unwanted'"
}

expect_contains() {
    local hay=$1 needle=$2 what=${3:?expect_contains HAYSTACK NEEDLE WHAT}
    grep -qF -- "$needle" <<<"$hay" && return 0
    fail "$what: expected to find '$needle'" || true
    _evidence "in:" "$hay"
    return 1
}

expect_not_contains() {
    local hay=$1 needle=$2 what=${3:?expect_not_contains HAYSTACK NEEDLE WHAT}
    grep -qF -- "$needle" <<<"$hay" || return 0
    fail "$what: did not expect '$needle'" || true
    _evidence "in:" "$hay"
    return 1
}

expect_line() {
    local hay=$1 re=$2 what=${3:?expect_line HAYSTACK ERE WHAT}
    # grep reads all of its input (no -q): with pipefail, a grep that stops at the first match
    # would make a long input's writer die of SIGPIPE and the match count as a failure.
    tr -d '\r' <<<"$hay" | grep -E -- "$re" >/dev/null && return 0
    fail "$what: expected a line matching /$re/" || true
    _evidence "in:" "$hay"
    return 1
}

expect_no_line() {
    local hay=$1 re=$2 what=${3:?expect_no_line HAYSTACK ERE WHAT}
    tr -d '\r' <<<"$hay" | grep -E -- "$re" >/dev/null || return 0
    fail "$what: expected no line matching /$re/" || true
    _evidence "in:" "$hay"
    return 1
}

wait_for() {
    local secs=${1:?wait_for SECONDS WHAT CMD...} what=${2:?wait_for SECONDS WHAT CMD...}
    shift 2
    local deadline=$((SECONDS + secs))
    while :; do
        run_capture "$@"
        [ "$LAST_RC" = 0 ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && break
        sleep 0.1
    done
    fail "$what: still not true after ${secs}s ($(_quote_cmd "$@") exits $LAST_RC)" || true
    _evidence "last output:" "$LAST_OUT"
    return 1
}

# ---------------------------------------------------------------------------------------------
# The installed layout (what `banger system install` documents it writes) and snapshots of it.

BANGER_PREFIX=${BANGER_PREFIX:-/usr/local}
BANGER_STORE=/var/lib/banger/banger.db
BANGER_INSTALL_TOML=/etc/banger/install.toml
BANGER_POLICY=/usr/share/polkit-1/actions/org.banger.policy

# Everything `banger system install` puts on the machine (the store is created by bangerd).
banger_installed_paths() {
    local p=$BANGER_PREFIX
    printf '%s\n' \
        "$p/lib/banger/bin" \
        "$p/lib/banger/bin/banger" \
        "$p/lib/banger/bin/bangerd" \
        "$p/lib/banger/bin/bangerd-root" \
        "$p/bin/banger" \
        /etc/systemd/system/bangerd-root.service \
        /etc/systemd/system/bangerd-root-recover.service \
        /etc/systemd/system/bangerd-root-resume.service \
        /etc/systemd/system/multi-user.target.wants/bangerd-root-resume.service \
        /etc/systemd/system/bangerd.service \
        /etc/systemd/system/bangerd.service.d/owner.conf \
        /etc/systemd/system/banger.slice \
        /etc/dbus-1/system.d/org.banger.Root1.conf \
        /etc/dbus-1/system.d/org.banger.Daemon1.conf \
        /etc/dbus-1/system.d/org.banger.Daemon1.owner.conf \
        /usr/share/dbus-1/system-services/org.banger.Root1.service \
        /usr/share/dbus-1/system-services/org.banger.Daemon1.service \
        "$BANGER_POLICY" \
        "$p/share/banger/49-banger-owner.rules.example" \
        /etc/banger \
        "$BANGER_INSTALL_TOML" \
        /var/lib/banger \
        "$BANGER_STORE"
    # Man pages (the CLI's, one per command, as checked in) and shell completions.
    local m
    for m in "$SMOKE_REPO"/docs/man/*.1; do
        printf '%s\n' "$p/share/man/man1/${m##*/}"
    done
    printf '%s\n' \
        "$p/share/man/man8/bangerd.8" \
        "$p/share/man/man8/bangerd-root.8" \
        "$p/share/man/man5/banger.conf.5" \
        "$p/share/man/man7/banger-dbus.7" \
        "$p/share/bash-completion/completions/banger" \
        "$p/share/zsh/site-functions/_banger" \
        "$p/share/fish/vendor_completions.d/banger.fish"
    # The Cockpit page (make cockpit builds it beside the binaries; Cockpit is in the box).
    printf '%s\n' "$p/share/cockpit/banger" "$p/share/cockpit/banger/manifest.json" \
        "$p/share/cockpit/banger/banger.js"
}

# One line per path: "PATH file MODE USER:GROUP SHA256" | "PATH dir MODE USER:GROUP" |
# "PATH symlink TARGET" | "PATH missing".
# shellcheck disable=SC2016 # expanded inside the container
_SNAPSHOT_SCRIPT='
for p in "$@"; do
    if [ -L "$p" ]; then
        printf "%s symlink %s\n" "$p" "$(readlink "$p")"
    elif [ -f "$p" ]; then
        printf "%s file %s %s\n" "$p" "$(stat -c "%a %U:%G" "$p")" "$(sha256sum <"$p" | cut -d" " -f1)"
    elif [ -d "$p" ]; then
        printf "%s dir %s\n" "$p" "$(stat -c "%a %U:%G" "$p")"
    elif [ -e "$p" ]; then
        printf "%s other %s\n" "$p" "$(stat -c "%F %a %U:%G" "$p")"
    else
        printf "%s missing\n" "$p"
    fi
done'

snapshot_file() { printf '%s/snapshots/%s.txt' "$SMOKE_DIR" "${1:?snapshot name}"; }

snapshot_install() {
    local name=${1:?snapshot_install NAME} paths
    mkdir -p "$SMOKE_DIR/snapshots"
    mapfile -t paths < <(banger_installed_paths)
    box_exec bash -c "$_SNAPSHOT_SCRIPT" snapshot "${paths[@]}" >"$(snapshot_file "$name")" ||
        fail "could not take snapshot '$name' of the installed files"
}

# Snapshot NAME without the lines of the given PATHs.
_snapshot_without() {
    local f
    f=$(snapshot_file "${1:?}")
    shift
    [ -f "$f" ] || { echo "(no snapshot $f)"; return 0; }
    awk 'BEGIN { for (i = 1; i < ARGC; i++) skip[ARGV[i]] = 1; ARGC = 1 } !($1 in skip)' "$@" <"$f"
}

# expect_same_snapshot A B WHAT [PATH...]: PATHs are left out of the comparison.
expect_same_snapshot() {
    local a=${1:?} b=${2:?} what=${3:?expect_same_snapshot A B WHAT [PATH...]} d
    shift 3
    d=$(diff -u --label "$a" --label "$b" <(_snapshot_without "$a" "$@") \
        <(_snapshot_without "$b" "$@")) && return 0
    fail "$what: installed files differ between snapshots '$a' and '$b'" || true
    _evidence "diff:" "$d"
    return 1
}

box_sha256() {
    local out
    out=$(box_exec sha256sum "${1:?box_sha256 PATH}") || {
        fail "cannot hash $1 in the container: $out"
        return 1
    }
    printf '%s\n' "${out%% *}"
}
