#!/usr/bin/env bash
# Integration suite for rate limits: limits_test.py starts two standalone
# gateways (2 workers each) that share a throwaway Redis, and stops/starts
# Redis itself.
exec bash "$(dirname "$0")/redis_suite.sh" suite_limits limits_test.py
