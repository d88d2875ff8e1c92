#!/usr/bin/env bash
# Load and soak test (issue 10): `make soak`, loopback only, bounded in time.
#   SOAK_SECONDS   how long the traffic runs (default 300)
#   SOAK_CLIENTS   concurrent client threads (default 24)
#   GW_BIN_DIR     where the gateway binary is (default bin/)
# Starts a gateway with 2 workers, the built-in mock provider and two
# OpenAI-compatible mock upstreams (one of them always answering 500), drives
# mixed traffic, and prints a report; exits non-zero when a bound is broken.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
exec python3 tests/soak/soak.py "$@"
