#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for development and tests.
#
#   scripts/pg.sh start DIR PORT   initdb (first time) + start on 127.0.0.1:PORT,
#                                  create role and database "gateway"
#   scripts/pg.sh stop  DIR PORT   fast shutdown (disconnects clients)
#   scripts/pg.sh status DIR PORT  exit 0 if running
#
# Both are idempotent. Data lives in DIR/data, the log in DIR/postgres.log and
# the Unix socket in DIR. PostgreSQL refuses to run as root, so as root the
# server runs as the "postgres" OS user (DIR is chowned to it; its parents must
# be traversable by that user). Auth is "trust": loopback only, never exposed.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR PORT" >&2; exit 2; }
[ $# -eq 3 ] || usage
cmd=$1; dir=$2; port=$3
case "$port" in ''|*[!0-9]*) echo "pg.sh: PORT must be a number" >&2; exit 2;; esac

pgbin=${PGBIN:-}
if [ -z "$pgbin" ]; then
  for v in 15 16 17 14 13; do
    if [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ]; then pgbin=/usr/lib/postgresql/$v/bin; break; fi
  done
fi
if [ -z "$pgbin" ] || [ ! -x "$pgbin/pg_ctl" ]; then
  echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
fi

if [ ! -d "$dir" ]; then
  case "$cmd" in
    start) mkdir -p "$dir" ;;
    stop) exit 0 ;;            # nothing was ever started there
    *) exit 1 ;;
  esac
fi
dir=$(cd "$dir" && pwd)
data=$dir/data
log=$dir/postgres.log

# Run a server-side command as the user that owns the cluster.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { [ -f "$data/PG_VERSION" ] && as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

psql_su() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }

case "$cmd" in
start)
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$dir"
    chmod 0700 "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      echo "pg.sh: user postgres cannot reach $dir (make its parent directories traversable)" >&2
      exit 1
    fi
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg "$pgbin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || as_pg "$pgbin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
      || { echo "pg.sh: initdb failed, see $dir/initdb.log" >&2; exit 1; }
  fi
  if ! running; then
    # fsync off: a throwaway cluster trades durability for speed.
    as_pg "$pgbin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { echo "pg.sh: postgres did not start, see $log" >&2; tail -n 20 "$log" >&2 || true; exit 1; }
  fi
  # Wait (bounded) until it accepts TCP connections on the port we were given.
  for _ in $(seq 1 100); do
    if psql_su -tAc 'SELECT 1' >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  psql_su -tAc 'SELECT 1' >/dev/null || { echo "pg.sh: postgres is running but not on 127.0.0.1:$port" >&2; exit 1; }
  if [ "$(psql_su -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'gateway'")" != 1 ]; then
    psql_su -c 'CREATE ROLE gateway LOGIN'
  fi
  if [ "$(psql_su -tAc "SELECT 1 FROM pg_database WHERE datname = 'gateway'")" != 1 ]; then
    psql_su -c 'CREATE DATABASE gateway OWNER gateway'
  fi
  echo "postgresql://gateway@127.0.0.1:$port/gateway"
  ;;
stop)
  if running; then
    as_pg "$pgbin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
  fi
  ;;
status)
  running
  ;;
*) usage ;;
esac
