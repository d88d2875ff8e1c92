#!/usr/bin/env bash
# Usage reporting (spool, replay, ingestion): the control plane and a gateway
# (usage_test.py) against a throwaway Postgres.
exec bash "$(dirname "$0")/pg_suite.sh" suite_usage usage_test.py
