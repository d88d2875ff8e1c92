#!/usr/bin/env bash
# The official openai npm SDK against the gateway (mock upstream behind it).
# stdout ends with "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
fail() { echo "sdk suite: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

command -v node >/dev/null 2>&1 || fail "node is not installed"
if [ ! -d tests/sdk/node_modules/openai ] || [ ! -d tests/sdk/node_modules/@anthropic-ai/sdk ]; then
  (cd tests/sdk && npm install --no-audit --no-fund >&2) || fail "npm install failed"
fi

tmp=$(mktemp -d)
python3 tests/integration/sdk_env.py >"$tmp/env.out" 2>"$tmp/env.err" </dev/null &
helper=$!
cleanup() {
  kill -TERM "$helper" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$helper" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$helper" 2>/dev/null
  wait "$helper" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

ready=""
for _ in $(seq 1 300); do   # up to 30 s
  ready=$(grep -m1 '^READY ' "$tmp/env.out" 2>/dev/null)
  [ -n "$ready" ] && break
  kill -0 "$helper" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ready" ]; then
  sed 's/^/  /' "$tmp/env.err" >&2
  fail "gateway did not start"
fi
url=$(echo "$ready" | cut -d' ' -f2)
key=$(echo "$ready" | cut -d' ' -f3)
aliases=$(echo "$ready" | cut -d' ' -f4 | tr ',' ' ')

# both scripts' counts are summed into one result line
passed=0; failed=0; rc=0
for script in openai_sdk_test.mjs providers_sdk_test.mjs responses_sdk_test.mjs; do
  extra=""
  [ "$script" = responses_sdk_test.mjs ] && extra="mock-alias:mock"   # the Responses API through the built-in mock too
  # shellcheck disable=SC2086 # one argument per alias
  timeout 180 node "tests/sdk/$script" "$url" "$key" $aliases $extra >"$tmp/node.out"
  src=$?
  grep -vE '^[0-9]+ passed, [0-9]+ failed' "$tmp/node.out" >&2
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$tmp/node.out" | tail -1)
  if [ -z "$line" ]; then
    echo "sdk suite: $script exited with code $src and printed no result" >&2
    failed=$((failed + 1)); rc=1; continue
  fi
  passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
  failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
  [ "$src" -eq 0 ] || rc=1
done
echo "$passed passed, $failed failed"
exit $rc
