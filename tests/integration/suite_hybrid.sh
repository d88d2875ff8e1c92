#!/usr/bin/env bash
# Hybrid deployment (hybrid_test.py) on a small network built with network
# namespaces: a bridge, the control plane with its Postgres in one namespace,
# two gateway nodes in two others, Redis and the test driver in the root
# namespace (10.213.N.254), all on 10.213.N.0/24. Data planes reach the
# control plane over tls+tcp:// with mutual TLS. Everything (namespaces,
# links, processes) is removed on exit. Needs root, iproute2 and nftables.
# Last stdout line: "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${GW_BIN_DIR:-$root/bin}
fail_early() { echo "suite_hybrid: $*" >&2; echo "0 passed, 1 failed"; exit 1; }
[ "$(id -u)" = 0 ] || fail_early "needs root to build network namespaces"
for t in ip nft openssl redis-server psql curl; do command -v "$t" >/dev/null || fail_early "$t not found"; done
[ -x "$bin/gateway" ] && [ -x "$bin/controlplane" ] || fail_early "build first (bin/gateway, bin/controlplane)"

s=$(printf '%04x' $((RANDOM % 65536)))
net=10.213.$((RANDOM % 200 + 20))
p=gwh$s
ns_br=$p-br ns_cp=$p-cp ns_g1=$p-g1 ns_g2=$p-g2
work=$(mktemp -d /tmp/suite_hybrid.XXXXXX) || fail_early "mktemp failed"
chmod 0755 "$work"
test_pid=""
cleanup() {
  if [ -n "$test_pid" ] && kill -0 "$test_pid" 2>/dev/null; then kill -TERM "$test_pid"; wait "$test_pid" 2>/dev/null; fi
  ip netns exec "$ns_cp" "$root/scripts/pg.sh" stop "$work/pg" 5432 >/dev/null 2>&1 || true
  for ns in "$ns_cp" "$ns_g1" "$ns_g2" "$ns_br"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  ip link del "${p}r" 2>/dev/null
  if [ -n "${HY_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

set -e
ip netns add "$ns_br"
ip -n "$ns_br" link set lo up
ip -n "$ns_br" link add br0 type bridge
ip -n "$ns_br" link set br0 up
attach() { # namespace (or "root"), address, short name
  local ns=$1 addr=$2 a=$p$3 b=$p${3}b
  ip link add "$a" type veth peer name "$b"
  ip link set "$b" netns "$ns_br"
  ip -n "$ns_br" link set "$b" master br0 up
  if [ "$ns" = root ]; then
    ip addr add "$addr/24" dev "$a"; ip link set "$a" up
  else
    ip netns add "$ns"; ip -n "$ns" link set lo up
    ip link set "$a" netns "$ns"; ip -n "$ns" addr add "$addr/24" dev "$a"; ip -n "$ns" link set "$a" up
  fi
}
attach "$ns_cp" "$net.2" c
attach "$ns_g1" "$net.11" g
attach "$ns_g2" "$net.12" h
attach root "$net.254" r
set +e

HY_NS_CP=$ns_cp HY_NS_G1=$ns_g1 HY_NS_G2=$ns_g2 HY_NET=$net HY_WORK=$work GW_BIN_DIR=$bin \
  CP_MIGRATIONS="$root/migrations" python3 "$root/tests/integration/hybrid_test.py" >"$work/result.txt" &
test_pid=$!
wait "$test_pid"
test_pid=""
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/result.txt" | tail -n 1)
grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$work/result.txt" >&2
echo "${line:-0 passed, 1 failed}"
case "$line" in *", 0 failed") exit 0 ;; *) exit 1 ;; esac
