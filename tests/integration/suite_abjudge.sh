#!/usr/bin/env bash
# Integration suite: prompt decoration and structured-output validation (schema retries).
# stdout ends with "N passed, N failed"; GW_BIN_DIR picks the binary (default bin/).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
exec python3 tests/integration/abjudge_test.py "$@"
