#!/usr/bin/env bash
# `make run` as a new user would try it: start the stack (scripts/run.sh, the
# binaries already built), run the curl line it prints exactly as printed,
# press Ctrl-C (SIGINT to the whole process group), and check that nothing it
# started is left behind. Ports are picked free so it can run beside others.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=${GW_BIN_DIR:-$root/bin}
passed=0; failed=0
ok()   { echo "ok - $1" >&2; passed=$((passed+1)); }
bad()  { echo "not ok - $1" >&2; failed=$((failed+1)); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# the data-plane link takes two consecutive ports
dp=$(python3 -c '
import socket
for p in range(20000, 60000, 7):
    try:
        a=socket.socket(); a.bind(("127.0.0.1",p)); b=socket.socket(); b.bind(("127.0.0.1",p+1))
        a.close(); b.close(); print(p); break
    except OSError: pass')

work=$(mktemp -d /tmp/gw-makerun-XXXXXX)
chmod 755 "$work"
# run.sh keeps its state in <repo>/var: give it a private copy of the tree layout
mkdir -p "$work/repo/scripts" "$work/repo/bin"
cp scripts/run.sh scripts/pg.sh scripts/redis.sh "$work/repo/scripts/"
cp -r migrations admin-ui "$work/repo/"
cp "$bin/gateway" "$bin/controlplane" "$work/repo/bin/"
out="$work/out.txt"
export GATEWAY_PORT=$(free_port) ADMIN_PORT=$(free_port) DATAPLANE_PORT=$dp PG_PORT=$(free_port) REDIS_PORT=$(free_port)

setsid bash "$work/repo/scripts/run.sh" >"$out" 2>&1 </dev/null &
leader=$!
cleanup() { kill -KILL -- -"$leader" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for _ in $(seq 1 300); do grep -q "Ctrl-C stops everything" "$out" && break; sleep 0.2; done
if grep -q "Ctrl-C stops everything" "$out"; then ok "make run prints its banner"; else bad "make run prints its banner"; tail -20 "$out" >&2; fi

line=$(grep -E '^\s+curl http' "$out" | head -1 | sed 's/^ *//')
if [ -n "$line" ] && body=$(eval "$line -s -f") && echo "$body" | grep -q '"choices"'; then
  ok "the printed curl line works as printed"
else
  bad "the printed curl line works as printed"; echo "line: $line" >&2; echo "body: ${body:-}" >&2
fi
grep -q "admin token" "$out" && grep -q "sk-gw-" "$out" && ok "admin token and demo key printed" || bad "admin token and demo key printed"
ui=$(curl -fsS -m 5 -D "$work/ui.h" "http://127.0.0.1:$ADMIN_PORT/" 2>/dev/null || true)
if echo "$ui" | grep -q "Gateway admin" && grep -qi '^content-type: text/html' "$work/ui.h"; then
  ok "the admin UI is served at / on the admin port"
else
  bad "the admin UI is served at / on the admin port"
fi

kill -INT -- -"$leader" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$leader" 2>/dev/null || break; sleep 0.1; done
sleep 0.5
left=$(ps -eo pid,args | grep -F "$work/repo" | grep -v grep || true)
for port in $GATEWAY_PORT $ADMIN_PORT $DATAPLANE_PORT $PG_PORT $REDIS_PORT; do
  ss -ltn "sport = :$port" | grep -q LISTEN && left="$left
still listening on $port"
done
if [ -z "$left" ] && ! kill -0 "$leader" 2>/dev/null; then ok "Ctrl-C leaves no process behind"; else bad "Ctrl-C leaves no process behind"; echo "$left" >&2; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
