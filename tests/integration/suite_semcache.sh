#!/usr/bin/env bash
# Integration suite for the semantic cache: semcache_test.py starts
# standalone gateways sharing a throwaway Redis in front of a mock upstream,
# and stops/starts Redis itself.
exec bash "$(dirname "$0")/redis_suite.sh" suite_semcache semcache_test.py
