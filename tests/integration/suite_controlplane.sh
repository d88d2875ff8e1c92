#!/usr/bin/env bash
# Integration suite for the control plane against a real Postgres.
#
# Starts a throwaway Postgres (scripts/pg.sh) on a free loopback port under a
# temporary directory, runs `controlplane migrate` twice (the second must
# apply nothing), starts $GW_BIN_DIR/controlplane with a fresh master key
# path and CONTROLPLANE_ADMIN_TOKEN, runs controlplane_test.py, and stops
# everything on exit whatever happens. Last stdout line: "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${GW_BIN_DIR:-$root/bin}
cp_bin=$bin/controlplane

fail_early() { # a set-up step failed: report it as one failed test
  echo "suite_controlplane: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

[ -x "$cp_bin" ] || fail_early "$cp_bin not found (build it first)"
command -v psql >/dev/null || fail_early "psql not found"

work=$(mktemp -d /tmp/cp-suite.XXXXXX) || fail_early "mktemp failed"
chmod 0755 "$work"                 # the postgres OS user must reach $work/pg
cp_pid=""
pg_port=""
cleanup() {
  if [ -n "$cp_pid" ] && kill -0 "$cp_pid" 2>/dev/null; then
    kill -TERM "$cp_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$cp_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$cp_pid" 2>/dev/null || true
    wait "$cp_pid" 2>/dev/null || true
  fi
  if [ -n "$pg_port" ]; then "$root/scripts/pg.sh" stop "$work/pg" "$pg_port" >/dev/null 2>&1 || true; fi
  if [ -n "${CP_SUITE_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# the control plane binds dataplane_listen's port P and P+1 (deltas)
free_port_pair() {  # the one in harness.py: a pair below the ephemeral range, probed
  (cd "$root/tests/integration" && python3 -c 'import harness; print(harness.free_port_pair())')
}

pg_port=$(free_port) || fail_early "no free port"
db_url=$("$root/scripts/pg.sh" start "$work/pg" "$pg_port" 2>"$work/pg-start.err") \
  || { cat "$work/pg-start.err" >&2; fail_early "postgres did not start"; }

"$cp_bin" migrate --database-url "$db_url" --migrations-dir "$root/migrations" 2>"$work/migrate1.log" \
  || { cat "$work/migrate1.log" >&2; fail_early "first migrate failed"; }
"$cp_bin" migrate --database-url "$db_url" --migrations-dir "$root/migrations" 2>"$work/migrate2.log" \
  || { cat "$work/migrate2.log" >&2; fail_early "second migrate failed"; }

cp_port=$(free_port) || fail_early "no free port"
admin_token="cp-suite-$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
cat >"$work/controlplane.yaml" <<EOF
# written by suite_controlplane.sh
database_url: $db_url
admin_listen: 127.0.0.1:$cp_port
dataplane_listen: tcp://127.0.0.1:$(free_port_pair)
master_key_file: $work/var/keys/master.key
EOF

CONTROLPLANE_ADMIN_TOKEN=$admin_token "$cp_bin" --config "$work/controlplane.yaml" \
  --migrations-dir "$root/migrations" 2>"$work/controlplane.log" &
cp_pid=$!

up=0
for _ in $(seq 1 100); do
  if ! kill -0 "$cp_pid" 2>/dev/null; then break; fi
  if curl -fsS -m 2 "http://127.0.0.1:$cp_port/healthz" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ "$up" = 1 ] || { tail -n 30 "$work/controlplane.log" >&2; fail_early "controlplane did not become healthy"; }

CP_URL="http://127.0.0.1:$cp_port" \
CP_ADMIN_TOKEN="$admin_token" \
CP_BIN="$cp_bin" \
CP_PG_SH="$root/scripts/pg.sh" \
CP_PG_DIR="$work/pg" \
CP_PG_PORT="$pg_port" \
CP_DB_URL="$db_url" \
CP_MIGRATIONS="$root/migrations" \
CP_WORK="$work" \
CP_LOG="$work/controlplane.log" \
  python3 "$root/tests/integration/controlplane_test.py" >"$work/result.txt"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/result.txt" | tail -n 1)
[ -n "$line" ] || line="0 passed, 1 failed"
passed=${line%% passed*}
failed=${line#*, }; failed=${failed%% failed}

# A graceful stop lets sanitizer builds report leaks; any sanitizer report fails the suite.
kill -TERM "$cp_pid" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$cp_pid" 2>/dev/null || break; sleep 0.1; done
wait "$cp_pid" 2>/dev/null
cp_status=$?
cp_pid=""
if grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$work"/*.log >/dev/null 2>&1; then
  echo "not ok - sanitizer report in the control plane's logs:" >&2
  grep -hE -A 20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$work"/*.log | head -n 60 >&2
  failed=$((failed + 1))
elif [ "$cp_status" -ne 0 ]; then
  echo "not ok - controlplane exited with status $cp_status on SIGTERM" >&2
  failed=$((failed + 1))
else
  echo "ok - clean shutdown" >&2
  passed=$((passed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
