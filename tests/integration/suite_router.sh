#!/usr/bin/env bash
# Integration suite: the router (failover, breakers, retries, fallbacks) against failing mocks.
# stdout ends with "N passed, N failed"; GW_BIN_DIR picks the binary (default bin/).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
exec python3 tests/integration/router_test.py "$@"
