# shellcheck shell=bash
# Sourced first by every scenario:  source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# A scenario also runs on its own against a box left up by `smoke/run --keep`.
set -euo pipefail
SMOKE_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=box.sh
source "$SMOKE_LIB/box.sh"
# shellcheck source=assert.sh
source "$SMOKE_LIB/assert.sh"
# shellcheck source=banger.sh
source "$SMOKE_LIB/banger.sh"
box_running || {
    echo "FAIL: the smoke container ($BOX_NAME) is not running; start it with smoke/run --keep" >&2
    exit 1
}
