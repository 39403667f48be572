#!/usr/bin/env bash
# Installs the Debian packages banger's tests, smoke suite and demo need (only what is missing).
# The list lives in box.sh (BOX_PACKAGES); this is the command-line entry for `make deps`.
set -euo pipefail
# shellcheck source=box.sh
source "$(dirname "${BASH_SOURCE[0]}")/box.sh"
box_deps
