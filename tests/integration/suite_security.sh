#!/usr/bin/env bash
# Security checks (issue 10): security_test.py starts the control plane, a
# mock upstream and a gateway with two workers fed by the control plane, and
# checks the admin API authorization matrix, SQL injection, hostile JSON,
# header injection, request smuggling, key secrecy and key revocation,
# against a throwaway Postgres.
exec bash "$(dirname "$0")/pg_suite.sh" suite_security security_test.py
