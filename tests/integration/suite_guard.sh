#!/usr/bin/env bash
# Integration suite: guardrails (masking what the upstream receives, blocks in
# the client's dialect, output masking of answers and streams, the guard
# webhook, metrics and logs). stdout ends with "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
exec python3 tests/integration/guard_test.py "$@"
