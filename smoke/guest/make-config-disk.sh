#!/usr/bin/env bash
# smoke/guest/make-config-disk.sh - write a "banger config disk v1" image (shell version, for
# raw-boot.sh and tests; banger itself writes these in Rust).
#
# usage: make-config-disk.sh OUT --vm-id ID --hostname H --ip CIDR [--gateway G] --key PUBKEYFILE...
#   --key takes one or more files (--key a.pub b.pub, or --key a.pub --key b.pub); every non-empty,
#   non-comment line of them becomes one ssh_authorized_key.
#
# Format (1 MiB = 1048576 bytes, raw, attached as virtio-blk; the guest finds it by its magic):
#   bytes 0..65535       text: "BANGER-CONFIG-V1\n", then key=value lines (vm_id, hostname, ip,
#                        [gateway], ssh_authorized_key...), then "END\n", then zero bytes
#   bytes 65536..131071  host-key region, zeros here; the guest writes "BANGER-HOSTKEY-V1 <N>\n"
#                        and its N-byte dropbear ed25519 host key there on first boot
#   the rest             zeros
# OUT is replaced atomically (written next to it, then renamed); an existing OUT loses its host key.
set -euo pipefail

die() { printf 'make-config-disk.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '4,7{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2; }

[ "$#" -ge 1 ] || usage
case $1 in -h | --help) usage ;; -*) die "the first argument must be the output file, not '$1'" ;; esac
OUT=$1; shift
VM_ID="" HOST="" IP="" GW="" KEYFILES=()
while [ "$#" -gt 0 ]; do
    case $1 in
        --vm-id) VM_ID=${2?--vm-id needs a value}; shift ;;
        --hostname) HOST=${2?--hostname needs a value}; shift ;;
        --ip) IP=${2?--ip needs a value}; shift ;;
        --gateway) GW=${2?--gateway needs a value}; shift ;;
        --key)
            [ "$#" -ge 2 ] || die "--key needs a public key file"
            KEYFILES+=("$2"); shift
            while [ "$#" -ge 2 ] && [ "${2#--}" = "$2" ]; do KEYFILES+=("$2"); shift; done
            ;;
        -h | --help) usage ;;
        *) die "unknown argument '$1'" ;;
    esac
    shift
done

[ -n "$VM_ID" ] || die "--vm-id is required"
[ -n "$HOST" ] || die "--hostname is required"
[ -n "$IP" ] || die "--ip is required"
[ "${#KEYFILES[@]}" -gt 0 ] || die "at least one --key is required"
[[ $IP =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] || die "--ip must be an IPv4 CIDR like 172.30.0.2/24, not '$IP'"
[ -z "$GW" ] || [[ $GW =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "--gateway must be an IPv4 address, not '$GW'"
[[ $HOST =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$ ]] || die "--hostname '$HOST' is not a valid host name"
[[ $VM_ID != *$'\n'* && $VM_ID != *$'\r'* ]] || die "--vm-id must be one line"

KEYS=()
for f in "${KEYFILES[@]}"; do
    [ -r "$f" ] || die "cannot read public key file '$f'"
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        case $line in '' | '#'*) continue ;; esac
        case $line in ssh-* | ecdsa-* | sk-*) ;; *) die "'$f' holds something that is not an OpenSSH public key: ${line:0:40}" ;; esac
        KEYS+=("$line"); n=$((n + 1))
    done <"$f"
    [ "$n" -gt 0 ] || die "'$f' holds no public key"
done

TMP=$(mktemp "$OUT.XXXXXX") || die "cannot create a file next to $OUT"
trap 'rm -f "$TMP"' EXIT
{
    printf 'BANGER-CONFIG-V1\n'
    printf 'vm_id=%s\n' "$VM_ID"
    printf 'hostname=%s\n' "$HOST"
    printf 'ip=%s\n' "$IP"
    [ -z "$GW" ] || printf 'gateway=%s\n' "$GW"
    printf 'ssh_authorized_key=%s\n' "${KEYS[@]}"
    printf 'END\n'
} >"$TMP"
size=$(stat -c %s "$TMP")
[ "$size" -le 65536 ] || die "the configuration is $size bytes; the text region holds 65536"
truncate -s 1048576 "$TMP"
chmod 644 "$TMP"
mv -f "$TMP" "$OUT"
trap - EXIT
