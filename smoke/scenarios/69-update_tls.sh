#!/usr/bin/env bash
# shellcheck disable=SC2016 # code run inside the box is single-quoted on purpose
# TLS trusts the host's own certificate store, and redirects stay where they were asked.
# A CA made here with openssl is installed the Debian way (/usr/local/share/ca-certificates,
# update-ca-certificates); the release server serves HTTPS with a certificate it signed: `banger
# update --check` and `banger update` work. The same releases behind a certificate from a CA the
# box does not trust: a clear TLS error, nothing fetched beyond the handshake, nothing changed.
# A redirect to the same host is followed; to another host or from https to http it is refused,
# naming where it pointed, unless [update] redirect_hosts lists the host.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

PKI=/srv/banger-smoke/pki                        # inside the box
SYSTEM_CA=/usr/local/share/ca-certificates/banger-smoke-ca.crt
cleanup() {
    local rc=$?
    box_exec systemctl stop smoke-https-trusted.service smoke-https-untrusted.service 2>/dev/null || true
    box_exec sh -c 'rm -f "$1"; update-ca-certificates --fresh >/dev/null 2>&1' ca "$SYSTEM_CA" || true
    box_exec rm -rf "$RELEASE_BOX/releases/moved" "$RELEASE_BOX/releases/elsewhere" || true
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

update_scenario_start good
base=$(release_base_version)

# A CA the box will trust, one it will not, and a server certificate from each.
expect_rc 0 box_exec sh -euc '
    rm -rf "$1"; mkdir -p "$1"; cd "$1"
    for ca in trusted untrusted; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj "/CN=banger smoke $ca CA" -keyout "$ca-ca.key" -out "$ca-ca.crt" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=localhost" -keyout "$ca.key" -out "$ca.csr" 2>/dev/null
        printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" >san.ext
        openssl x509 -req -in "$ca.csr" -CA "$ca-ca.crt" -CAkey "$ca-ca.key" -CAcreateserial \
            -days 2 -extfile san.ext -out "$ca.crt" 2>/dev/null
    done
    cp trusted-ca.crt "$2"
    update-ca-certificates >/dev/null' pki "$PKI" "$SYSTEM_CA"
expect_contains "$(box_exec openssl verify "$PKI/trusted.crt")" ": OK" "the trusted server certificate, by openssl"
for which in trusted:8743 untrusted:8744; do
    expect_rc 0 box_exec systemd-run --quiet --collect --unit "smoke-https-${which%:*}.service" \
        python3 "$RELEASE_BOX/release-server.py" --dir "$RELEASE_BOX/releases" --port "${which#*:}" \
        --log "$RELEASE_BOX/server.log" --tls-cert "$PKI/${which%:*}.crt" --tls-key "$PKI/${which%:*}.key"
done
https_up() {
    box_exec python3 -c 'import socket
for port in (8743, 8744):
    socket.create_connection(("127.0.0.1", port), 1).close()'
}
wait_for 15 "the HTTPS release servers" https_up
proved "a CA installed in /usr/local/share/ca-certificates (update-ca-certificates) signed the certificate of an HTTPS release server on localhost:8743"

# --- a CA the host trusts ------------------------------------------------------------------------
release_config good "manifest_url=\"https://localhost:8743/good/manifest.json\""
release_resign good
expect_rc 0 box_exec "$BANGER" update --check
expect_eq "$(last_line "$LAST_OUT")" "update available: v$base → v0.2.0" "update --check over HTTPS (trusted CA)"
run_capture box_exec "$BANGER" update
expect_update_end 0 "^updated v$base → v0\.2\.0$" "banger update over HTTPS (trusted CA)"
expect_install_is 0.2.0 "after the update over HTTPS"
proved "over HTTPS with a certificate from a CA the host trusts: update --check and banger update work"
release_reinstall_base

# --- a CA the host does not trust ------------------------------------------------------------------
release_config good "manifest_url=\"https://localhost:8744/good/manifest.json\""
release_resign good
snapshot_install before-untrusted
mark=$(release_server_log_lines)
run_capture box_exec "$BANGER" update
expect_update_end 1 "^update failed: downloading https://localhost:8744/good/manifest\.json: .*(certificate|Certificate|UnknownIssuer|issuer).*; nothing was changed$" \
    "banger update against an untrusted certificate"
untrusted=$(last_line "$LAST_OUT")
expect_eq "$(release_requests_since "$mark" '.')" "" "requests that reached the untrusted server"
snapshot_install after-untrusted
expect_same_snapshot before-untrusted after-untrusted "after the refused update" "$BANGER_STORE"
proved "a certificate from a CA the host does not trust: '$untrusted'; nothing fetched, nothing changed"

# --- redirects -------------------------------------------------------------------------------------
# moved/ redirects its manifest to good/ on the same server; elsewhere/ to 127.0.0.1 (another
# host name for the same server, which its certificate also names); downgrade/ to http.
expect_rc 0 box_exec sh -euc '
    r=$1/releases
    for d in moved elsewhere downgrade; do
        rm -rf "$r/$d"; mkdir -p "$r/$d"; cp "$r/good/manifest.json" "$r/good/manifest.json.sig" "$r/$d/"
    done
    printf "{\"manifest.json\": \"redirect:/good/manifest.json\", \"manifest.json.sig\": \"redirect:/good/manifest.json.sig\"}\n" >"$r/moved/behaviour.json"
    printf "{\"manifest.json\": \"redirect:https://127.0.0.1:8743/good/manifest.json\"}\n" >"$r/elsewhere/behaviour.json"
    printf "{\"manifest.json\": \"redirect:http://localhost:8787/good/manifest.json\"}\n" >"$r/downgrade/behaviour.json"
    ' redirects "$RELEASE_BOX"
release_config good "manifest_url=\"https://localhost:8743/moved/manifest.json\""
expect_rc 0 box_exec "$BANGER" update --check
expect_eq "$(last_line "$LAST_OUT")" "update available: v$base → v0.2.0" "update --check through a same-host redirect"
proved "a redirect to the same host is followed"
release_config good "manifest_url=\"https://localhost:8743/elsewhere/manifest.json\""
expect_rc 1 box_exec "$BANGER" update --check
expect_contains "$LAST_OUT" "the server redirected to https://127.0.0.1:8743/good/manifest.json, another host (127.0.0.1:8743)" \
    "update --check through a redirect to another host"
proved "a redirect to another host is refused: $(last_line "$LAST_OUT")"
release_config good "manifest_url=\"https://localhost:8743/downgrade/manifest.json\""
expect_rc 1 box_exec "$BANGER" update --check
expect_contains "$LAST_OUT" "from https to http" "update --check through a redirect to http"
proved "a redirect from https to http is refused: $(last_line "$LAST_OUT")"
