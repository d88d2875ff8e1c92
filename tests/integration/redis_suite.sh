#!/usr/bin/env bash
# Runs one Python integration test against a throwaway Redis: starts it
# (scripts/redis.sh) on a free loopback port and runs tests/integration/TEST.py
# with REDIS_DIR and REDIS_PORT (it starts its gateways, and may stop and
# start Redis itself). Everything is stopped on exit whatever happens. Last
# stdout line: "N passed, N failed".
#   usage: redis_suite.sh NAME TEST.py
set -u
name=$1; test_py=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${GW_BIN_DIR:-$root/bin}

fail_early() {
  echo "$name: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

[ -x "$bin/gateway" ] || fail_early "$bin/gateway not found (build it first)"
command -v redis-server >/dev/null || fail_early "redis-server not found"

work=$(mktemp -d "/tmp/$name.XXXXXX") || fail_early "mktemp failed"
redis_port=""
test_pid=""
cleanup() {
  if [ -n "$test_pid" ] && kill -0 "$test_pid" 2>/dev/null; then kill -TERM "$test_pid" 2>/dev/null; wait "$test_pid" 2>/dev/null; fi
  if [ -n "$redis_port" ]; then "$root/scripts/redis.sh" stop "$work/redis" "$redis_port" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()') \
  || fail_early "no free port"
"$root/scripts/redis.sh" start "$work/redis" "$redis_port" >/dev/null 2>"$work/redis-start.err" \
  || { cat "$work/redis-start.err" >&2; fail_early "redis did not start"; }

REDIS_DIR="$work/redis" REDIS_PORT="$redis_port" GW_BIN_DIR="$bin" \
  python3 "$root/tests/integration/$test_py" >"$work/result.txt" &
test_pid=$!
wait "$test_pid"
test_pid=""
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/result.txt" | tail -n 1)
grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$work/result.txt" >&2
echo "${line:-0 passed, 1 failed}"
case "$line" in *", 0 failed") exit 0 ;; *) exit 1 ;; esac
