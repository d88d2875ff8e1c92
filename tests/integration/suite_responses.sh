#!/usr/bin/env bash
# Integration suite for the Responses API (/v1/responses): a 2-worker gateway
# against mock upstreams (OpenAI and Anthropic formats); the official SDK's
# client.responses is driven by suite_sdk.sh. Last stdout line: "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
exec python3 tests/integration/responses_test.py "$@"
