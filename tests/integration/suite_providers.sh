#!/usr/bin/env bash
# Providers on the wire: request shapes, signatures, misbehaving providers
# (providers_test.py against mock_upstream.py's provider dialects).
# stdout ends with "N passed, N failed"; GW_BIN_DIR picks the binary (default bin/).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
exec python3 tests/integration/providers_test.py "$@"
