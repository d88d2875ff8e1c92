#!/usr/bin/env bash
# The admin UI against a real control plane and Postgres.
#
# Starts a throwaway Postgres (scripts/pg.sh) and the control plane serving a
# copy of admin-ui/ (so the test may plant a symlink in it), then runs
#   1. tests/integration/ui_api_test.py: static serving (content types, cache
#      headers, CSP, no directory traversal) and the UI's read-only endpoints
#      (/api/me, /api/overview, /api/spend filters);
#   2. tests/ui/seed.py: teams, keys, models, a credential, a viewer token and
#      spend_log rows over the last weeks; a gateway (built-in mock provider)
#      takes its configuration from the control plane and ships usage to it;
#   3. tests/ui/ui_test.mjs: headless Debian Chromium driven by playwright-core
#      (pinned in tests/ui/package-lock.json), screenshots into
#      $UI_SCREENSHOT_DIR (default build/ui-screenshots).
# UI_SUITE_SERVE=1 stops after the seed and keeps the stack up (for a human).
# Last stdout line: "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${GW_BIN_DIR:-$root/bin}
cp_bin=$bin/controlplane
chromium=${CHROMIUM:-/usr/bin/chromium}
shots=${UI_SCREENSHOT_DIR:-$root/build/ui-screenshots}

fail_early() {
  echo "suite_ui: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

[ -x "$cp_bin" ] || fail_early "$cp_bin not found (build it first)"
command -v psql >/dev/null || fail_early "psql not found"
command -v node >/dev/null || fail_early "node not found"
[ -x "$chromium" ] || fail_early "$chromium not found (scripts/deps.sh installs Debian's chromium)"
if [ ! -f "$root/tests/ui/node_modules/playwright-core/package.json" ]; then
  (cd "$root/tests/ui" && npm ci --no-audit --no-fund >&2) || fail_early "npm ci in tests/ui failed"
fi

work=$(mktemp -d /tmp/ui-suite.XXXXXX) || fail_early "mktemp failed"
chmod 0755 "$work"
cp_pid=""
gw_pid=""
pg_port=""
cleanup() {
  if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
    kill -TERM "$gw_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
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
free_port_pair() {
  (cd "$root/tests/integration" && python3 -c 'import harness; print(harness.free_port_pair())')
}

pg_port=$(free_port) || fail_early "no free port"
db_url=$("$root/scripts/pg.sh" start "$work/pg" "$pg_port" 2>"$work/pg-start.err") \
  || { cat "$work/pg-start.err" >&2; fail_early "postgres did not start"; }
"$cp_bin" migrate --database-url "$db_url" --migrations-dir "$root/migrations" 2>"$work/migrate.log" \
  || { cat "$work/migrate.log" >&2; fail_early "migrate failed"; }

ui_dir=$work/admin-ui
if [ -n "${UI_SUITE_SERVE:-}" ]; then ui_dir=$root/admin-ui; else cp -R "$root/admin-ui" "$ui_dir" || fail_early "copy admin-ui"; fi
cp_port=${UI_SUITE_PORT:-$(free_port)}
dp_port=$(free_port_pair) || fail_early "no free port pair"
admin_token="ui-suite-$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
cat >"$work/controlplane.yaml" <<YAML
database_url: $db_url
admin_listen: 127.0.0.1:$cp_port
dataplane_listen: tcp://127.0.0.1:$dp_port
master_key_file: $work/var/keys/master.key
admin_ui_dir: $ui_dir
YAML
CONTROLPLANE_ADMIN_TOKEN=$admin_token "$cp_bin" --config "$work/controlplane.yaml" \
  --migrations-dir "$root/migrations" 2>"$work/controlplane.log" &
cp_pid=$!
up=0
for _ in $(seq 1 100); do
  kill -0 "$cp_pid" 2>/dev/null || break
  if curl -fsS -m 2 "http://127.0.0.1:$cp_port/healthz" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ "$up" = 1 ] || { tail -n 30 "$work/controlplane.log" >&2; fail_early "controlplane did not become healthy"; }

# A real gateway fed by this control plane (built-in mock provider): the
# browser test sends traffic with the key it issues and sees it in the UI.
[ -x "$bin/gateway" ] || fail_early "$bin/gateway not found (build it first)"
gw_port=$(free_port) || fail_early "no free port"
mkdir -p "$work/gw-state"
cat >"$work/gateway.yaml" <<YAML
listen: 127.0.0.1:$gw_port
workers: 1
access_log: "off"
control_plane: tcp://127.0.0.1:$dp_port
state_dir: $work/gw-state
dataplane_id: ui-node
YAML
"$bin/gateway" --config "$work/gateway.yaml" >"$work/gateway.out.log" 2>"$work/gateway.log" &
gw_pid=$!
up=0
for _ in $(seq 1 150); do
  kill -0 "$gw_pid" 2>/dev/null || break
  if curl -fsS -m 2 "http://127.0.0.1:$gw_port/readyz" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ "$up" = 1 ] || { tail -n 30 "$work/gateway.log" >&2; fail_early "gateway did not become ready"; }

export GW_URL="http://127.0.0.1:$gw_port"
export CP_URL="http://127.0.0.1:$cp_port" CP_ADMIN_TOKEN="$admin_token" CP_PG_PORT="$pg_port" \
       CP_UI_DIR="$ui_dir" CP_WORK="$work"
passed=0; failed=0
add_result() { # file: adds its last "N passed, N failed" (none: one failure)
  local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
  [ -n "$line" ] || line="0 passed, 1 failed"
  passed=$((passed + ${line%% passed*}))
  local f=${line#*, }; failed=$((failed + ${f%% failed}))
}

if [ -z "${UI_SUITE_SERVE:-}" ]; then
  python3 "$root/tests/integration/ui_api_test.py" >"$work/api.txt"
  add_result "$work/api.txt"
fi

viewer_token=$(python3 "$root/tests/ui/seed.py" 2>"$work/seed.err") \
  || { cat "$work/seed.err" >&2; fail_early "seeding failed"; }

if [ -n "${UI_SUITE_SERVE:-}" ]; then
  echo "serving $CP_URL admin=$admin_token viewer=$viewer_token postgres port=$pg_port (Ctrl-C stops)" >&2
  echo "$CP_URL $admin_token $viewer_token $pg_port" >"${UI_SUITE_SERVE_FILE:-/dev/null}"
  wait "$cp_pid"
  exit 0
fi

mkdir -p "$shots"
CP_VIEWER_TOKEN="$viewer_token" CHROMIUM="$chromium" UI_SCREENSHOT_DIR="$shots" \
  timeout 300 node "$root/tests/ui/ui_test.mjs" >"$work/browser.txt"
grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$work/browser.txt" >&2
add_result "$work/browser.txt"

kill -TERM "$gw_pid" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
wait "$gw_pid" 2>/dev/null
gw_pid=""
kill -TERM "$cp_pid" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$cp_pid" 2>/dev/null || break; sleep 0.1; done
wait "$cp_pid" 2>/dev/null
cp_status=$?
cp_pid=""
if grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$work"/*.log >/dev/null 2>&1; then
  echo "not ok - sanitizer report in the control plane's log:" >&2
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
