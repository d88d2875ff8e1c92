#!/usr/bin/env bash
# User-space instructions per proxied request in one gateway worker
# (valgrind callgrind): 300 warm-up requests on one keep-alive connection,
# a dump, 2,300 more, a dump; the second dump's total / 2,300.
#   tests/bench/instructions_per_request.sh CONFIG [MODEL] [KEY]
# CONFIG must say `workers: 1`; its upstream (e.g. the bench's mock,
# ../shared/bench/run.sh --upstream-only) must be up. Not part of make test.
set -euo pipefail
cfg=$(realpath "$1"); model=${2:-gpt-4o-mini}; key=${3:-sk-gw-bench}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
listen=$(awk '/^listen:/{print $2}' "$cfg"); port=${listen##*:}
work=$(mktemp -d); trap 'kill $vg 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
valgrind --tool=callgrind --trace-children=yes "$root/bin/gateway" --config "$cfg" >gw.log 2>&1 &
vg=$!
client() {
  python3 - "$port" "$1" "$model" "$key" <<'PY'
import http.client, json, sys, time
port, n, model, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
for _ in range(300):   # the gateway under valgrind starts slowly
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30); c.request("GET", "/readyz")
        if c.getresponse().status == 200: break
    except OSError: pass
    time.sleep(0.1)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16})
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit("status %d" % r.status)
PY
}
client 300 && callgrind_control -d >/dev/null 2>&1
client 2300 && callgrind_control -d >/dev/null 2>&1
sleep 1
# the worker is the process whose second dump is the biggest
best=0
for f in callgrind.out.*.2; do
  t=$(awk '/^totals:/{print $2}' "$f"); [ "${t:-0}" -gt "$best" ] && best=$t
done
echo "instructions per request: $((best / 2300))"
