#!/usr/bin/env bash
# Evaluated A/B (judge verdicts through the usage pipeline into ab_verdicts,
# GET /api/ab): the control plane and a gateway (ab_test.py) against a
# throwaway Postgres.
exec bash "$(dirname "$0")/pg_suite.sh" suite_ab ab_test.py
