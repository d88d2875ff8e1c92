#!/usr/bin/env bash
# Integration suite for observability and the response cache: obs_test.py
# starts standalone gateways (2 workers), a mock upstream and a small OTLP
# receiver against a throwaway Redis, and stops/starts Redis itself.
exec bash "$(dirname "$0")/redis_suite.sh" suite_obs obs_test.py
