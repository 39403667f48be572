#!/usr/bin/env bash
# Builds banger's Cockpit page into DIR (default target/release/cockpit, beside the binaries,
# where `banger system install` looks for it).
#
# The page is plain JavaScript; the only thing taken from the npm registry is PatternFly 4's
# CSS and fonts (the version Cockpit 287 itself is made with), pinned with its integrity hash
# in package-lock.json and installed with `npm ci` at build time. Nothing is fetched when the
# page runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dist=${1:-$here/../target/release/cockpit}
command -v npm >/dev/null ||
    { echo "cockpit/build.sh: npm is needed to fetch PatternFly's CSS (install Node.js and npm)" >&2; exit 1; }
npm ci --prefix "$here" --no-audit --no-fund --ignore-scripts --loglevel=error
pf=$here/node_modules/@patternfly/patternfly
tmp=$dist.tmp
rm -rf "$tmp"
mkdir -p "$tmp"
install -m 0644 "$here"/{manifest.json,index.html,banger.js,banger.css} "$pf/patternfly.min.css" "$tmp/"
# The fonts and icons the CSS names (woff2 is what every browser Cockpit supports reads).
(cd "$pf" && grep -oE 'assets/[A-Za-z0-9_./-]+\.woff2' patternfly.min.css | sort -u) |
    while read -r f; do
        install -D -m 0644 "$pf/$f" "$tmp/$f"
    done
rm -rf "$dist"
mv "$tmp" "$dist"
echo "cockpit page built in $dist ($(du -sh "$dist" | cut -f1))"
