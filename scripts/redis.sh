#!/usr/bin/env bash
# A throwaway Redis for development and tests.
#
#   scripts/redis.sh start DIR PORT   daemonized redis-server on 127.0.0.1:PORT
#   scripts/redis.sh stop  DIR PORT
#   scripts/redis.sh status DIR PORT  exit 0 if running
#
# Idempotent. No persistence (no RDB, no AOF); pidfile and log live in DIR.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR PORT" >&2; exit 2; }
[ $# -eq 3 ] || usage
cmd=$1; dir=$2; port=$3
case "$port" in ''|*[!0-9]*) echo "redis.sh: PORT must be a number" >&2; exit 2;; esac
command -v redis-server >/dev/null || { echo "redis.sh: redis-server not found (apt-get install redis-server)" >&2; exit 1; }

if [ ! -d "$dir" ]; then
  case "$cmd" in
    start) mkdir -p "$dir" ;;
    stop) exit 0 ;;            # nothing was ever started there
    *) exit 1 ;;
  esac
fi
dir=$(cd "$dir" && pwd)
pidfile=$dir/redis.pid

alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

case "$cmd" in
start)
  if ! alive; then
    rm -f "$pidfile"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --protected-mode yes \
      --pidfile "$pidfile" --dir "$dir" --logfile "$dir/redis.log" \
      --save '' --appendonly no >/dev/null
  fi
  for _ in $(seq 1 100); do ping && break; sleep 0.1; done
  ping || { echo "redis.sh: redis did not answer on 127.0.0.1:$port, see $dir/redis.log" >&2; exit 1; }
  echo "redis://127.0.0.1:$port/0"
  ;;
stop)
  if alive; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
  ;;
status)
  alive
  ;;
*) usage ;;
esac
