#!/usr/bin/env bash
# Stored Responses shared across nodes: respredis_test.py starts two
# standalone gateways (2 workers each) that share a throwaway Redis, and
# stops/starts Redis itself.
exec bash "$(dirname "$0")/redis_suite.sh" suite_respredis respredis_test.py
