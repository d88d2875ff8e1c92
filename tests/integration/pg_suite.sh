#!/usr/bin/env bash
# Runs one Python integration test against a throwaway Postgres: starts it
# (scripts/pg.sh) on a free loopback port, migrates it, then runs
# tests/integration/TEST.py, which starts (and kills, and restarts) the
# control plane and gateways itself from CP_BIN / CP_DB_URL / CP_WORK.
# Everything is stopped on exit whatever happens. Last stdout line:
# "N passed, N failed".
#   usage: pg_suite.sh NAME TEST.py
set -u
name=$1; test_py=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${GW_BIN_DIR:-$root/bin}

fail_early() {
  echo "$name: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

[ -x "$bin/controlplane" ] || fail_early "$bin/controlplane not found (build it first)"
[ -x "$bin/gateway" ] || fail_early "$bin/gateway not found (build it first)"
command -v psql >/dev/null || fail_early "psql not found"

work=$(mktemp -d "/tmp/$name.XXXXXX") || fail_early "mktemp failed"
chmod 0755 "$work"                 # the postgres OS user must reach $work/pg
pg_port=""
test_pid=""
cleanup() {
  # the test kills its own processes at exit; this is the safety net
  if [ -n "$test_pid" ] && kill -0 "$test_pid" 2>/dev/null; then kill -TERM "$test_pid" 2>/dev/null; wait "$test_pid" 2>/dev/null; fi
  if [ -n "$pg_port" ]; then "$root/scripts/pg.sh" stop "$work/pg" "$pg_port" >/dev/null 2>&1 || true; fi
  if [ -n "${CP_SUITE_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pg_port=$(free_port) || fail_early "no free port"
db_url=$("$root/scripts/pg.sh" start "$work/pg" "$pg_port" 2>"$work/pg-start.err") \
  || { cat "$work/pg-start.err" >&2; fail_early "postgres did not start"; }
"$bin/controlplane" migrate --database-url "$db_url" --migrations-dir "$root/migrations" 2>"$work/migrate.log" \
  || { cat "$work/migrate.log" >&2; fail_early "migrate failed"; }

CP_BIN="$bin/controlplane" CP_DB_URL="$db_url" CP_MIGRATIONS="$root/migrations" CP_WORK="$work" \
  python3 "$root/tests/integration/$test_py" >"$work/result.txt" &
test_pid=$!
wait "$test_pid"
test_pid=""
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/result.txt" | tail -n 1)
grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$work/result.txt" >&2
echo "${line:-0 passed, 1 failed}"
case "$line" in *", 0 failed") exit 0 ;; *) exit 1 ;; esac
