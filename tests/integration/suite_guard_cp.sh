#!/usr/bin/env bash
# Guardrails through the control plane (guard_cp_test.py) against a throwaway Postgres.
exec bash "$(dirname "$0")/pg_suite.sh" suite_guard_cp guard_cp_test.py
