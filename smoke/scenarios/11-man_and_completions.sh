#!/usr/bin/env bash
# The install's man pages and shell completions are where the system's tools look.
# 1. `man -w` finds banger(1), a page per command (banger-vm-create(1)…), bangerd(8) and
#    bangerd-root(8); every unit's Documentation= resolves.
# 2. bash, through bash-completion's own loader (nothing sourced by hand but bash-completion),
#    completes `banger vm st` to start and stop, and a VM name where one is expected, from the
#    daemon. zsh's and fish's scripts are installed in their standard directories.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

cleanup() {
    local rc=$?
    as_owner "$BOX_BIN/banger" vm rm --force compl1 >/dev/null 2>&1 || true
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
P=${BANGER_PREFIX:-/usr/local}

# --- 1. man pages
for page in "1 banger" "1 banger-vm" "1 banger-vm-create" "1 banger-image-pull" "1 banger-update" \
    "8 bangerd" "8 bangerd-root" "5 banger.conf" "7 banger-dbus"; do
    # shellcheck disable=SC2086 # "SECTION NAME"
    expect_rc 0 box_exec man -w $page
    # (Debian's /usr/local/man is a link to /usr/local/share/man.)
    expect_eq "$(box_exec readlink -f "$LAST_OUT")" "$P/share/man/man${page%% *}/${page#* }.${page%% *}" "the page man -w $page finds"
done
for unit in bangerd-root.service bangerd.service bangerd-root-recover.service \
    bangerd-root-resume.service banger.slice; do
    doc=$(box_exec systemctl show -p Documentation --value "$unit")
    [ -n "$doc" ] || { fail "$unit has no Documentation="; exit 1; }
    for ref in $doc; do
        [[ $ref == man:* ]] || continue
        name=${ref#man:}
        section=${name##*(}
        section=${section%)}
        expect_rc 0 box_exec man -w "$section" "${name%(*}"
    done
done
expect_rc 0 box_exec env MANPAGER=cat man 1 banger-vm-start
expect_contains "$LAST_OUT" "banger vm start" "man banger-vm-start"
proved "man -w finds banger(1), the per-command pages, bangerd(8), bangerd-root(8), banger.conf(5), banger-dbus(7); every unit's Documentation= resolves"

# --- 2. completions
expect_rc 0 vm_image_ready
expect_rc 0 as_owner "$BOX_BIN/banger" vm create compl1 --image "$GUEST_IMAGE"
# complete WORDS...: what bash offers for the last word, loaded by bash-completion itself.
complete_words() {
    as_owner bash -c '
        source /usr/share/bash-completion/bash_completion
        _completion_loader banger
        complete -p banger >&2
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        fn=$(complete -p banger | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
        "$fn" banger "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf "%s\n" "${COMPREPLY[@]}"' complete "$@"
}
got=$(complete_words banger vm st)
expect_line "$got" '^start$' "bash completion of 'banger vm st'"
expect_line "$got" '^stop$' "bash completion of 'banger vm st'"
expect_no_line "$got" '^(create|ssh|list)$' "bash completion of 'banger vm st'"
got=$(complete_words banger vm start co)
expect_line "$got" '^compl1$' "bash completion of 'banger vm start co'"
proved "bash completes 'banger vm st' to start and stop, and 'banger vm start co' to compl1 (a name from the daemon)"
for f in "$P/share/zsh/site-functions/_banger" "$P/share/fish/vendor_completions.d/banger.fish"; do
    expect_rc 0 box_exec grep -q BANGER_COMPLETE "$f"
done
proved "zsh's and fish's completion scripts are in their standard directories"
