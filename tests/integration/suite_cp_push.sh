#!/usr/bin/env bash
# The config push: the control plane and two gateways with two workers each
# (cp_push_test.py) against a throwaway Postgres.
exec bash "$(dirname "$0")/pg_suite.sh" suite_cp_push cp_push_test.py
