#!/usr/bin/env bash
# The semantic cache configured through the control plane (admin API checks,
# ModelAlias.semantic_json to the gateway, cache_similarity in spend_log)
# against a throwaway Postgres.
exec bash "$(dirname "$0")/pg_suite.sh" suite_semcache_cp semcache_cp_test.py
