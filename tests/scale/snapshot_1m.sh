#!/usr/bin/env bash
# Scale check for the config push (not part of make test): 1,000,000 keys
# inserted straight into Postgres, then the time to build, transfer and load
# the snapshot, the memory per key per worker, and the propagation of one
# revocation at that size.
#   GW_BIN_DIR=build-push/bin bash tests/scale/snapshot_1m.sh [NKEYS]
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${GW_BIN_DIR:-$root/bin}
case "$bin" in /*) ;; *) bin=$root/$bin ;; esac
nkeys=${1:-1000000}
work=$(mktemp -d /tmp/cp-scale.XXXXXX)
chmod 0755 "$work"
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() { "$root/scripts/pg.sh" stop "$work/pg" "$pg_port" >/dev/null 2>&1; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
db_url=$("$root/scripts/pg.sh" start "$work/pg" "$pg_port") || exit 1
"$bin/controlplane" migrate --database-url "$db_url" --migrations-dir "$root/migrations" 2>/dev/null || exit 1
GW_BIN_DIR=$bin CP_BIN=$bin/controlplane CP_DB_URL=$db_url CP_MIGRATIONS=$root/migrations CP_WORK=$work NKEYS=$nkeys \
  python3 - <<'PY'
import os, re, subprocess, sys, time, json
sys.path.insert(0, os.path.join(os.environ.get("PWD", "."), "tests", "integration"))
import harness as h
sys.argv = [sys.argv[0]]
import cp_push_test as t

N = int(os.environ["NKEYS"])

def psql(sql):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tAc", sql, t.DB_URL],
                          capture_output=True, text=True, check=True).stdout.strip()

def worker_rss_kb(gw):
    out = []
    agent = {int(p) for p in re.findall(r'"component":"cpagent","pid":(\d+)', gw.stderr_text())}
    for pid in gw.children():
        if pid in agent:
            continue
        with open("/proc/%d/status" % pid) as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        out.append((pid, rss))
    return out

t.cp_start()
t.api("POST", "/api/models", t.mock_model("push-a"))
base = t.gw_start("base")
time.sleep(1.5)
rss0 = sorted(r for _, r in worker_rss_kb(base))
base.stop()
del t.ENV.gws["base"]

t0 = time.monotonic()
psql("INSERT INTO virtual_keys (name, key_sha256, key_prefix) "
     "SELECT 'scale-' || i, sha256(convert_to('sk-scale-' || i, 'UTF8')), 'sk-scale' FROM generate_series(1, %d) i; "
     "UPDATE config_version SET version = version + 1" % N)
print("inserted %d keys in %.1f s" % (N, time.monotonic() - t0))

t0 = time.monotonic()
gw = t.gw_start("gw-a")          # ready = snapshot built, transferred, stored, loaded by both workers
ready = time.monotonic() - t0
time.sleep(1)
cplog = open(os.path.join(t.WORK, "controlplane.log")).read()
built = re.findall(r"snapshot version \d+ built: (\d+) bytes in (\d+) ms", cplog)[-1]
errlog = gw.stderr_text()
stored = re.findall(r"received \((\d+) bytes, checked and stored in (\d+) ms\)", errlog)[-1]
loads = re.findall(r"loaded from disk \((?:new snapshot|behind|start)\): \d+ models, (\d+) keys in (\d+) ms", errlog)
print("snapshot: %d keys, %.1f MB; built by the control plane in %s ms" % (N, int(built[0]) / 1e6, built[1]))
print("agent: checked + stored (fsync) in %s ms" % stored[1])
print("workers: loaded in %s ms" % ", ".join(l[1] + " (" + l[0] + " keys)" for l in loads if int(l[0]) == N))
print("gateway start -> ready (Hello, build, transfer, store, load): %.2f s" % ready)
rss1 = sorted(r for _, r in worker_rss_kb(gw))
per_key = [(b - a) * 1024.0 / N for a, b in zip(rss0, rss1)]
print("worker RSS without keys %s kB, with %d keys %s kB: %s bytes per key per worker"
      % (rss0, N, rss1, ", ".join("%.0f" % x for x in per_key)))

pick = N // 2 + 1
kid = psql("SELECT id FROM virtual_keys WHERE name = 'scale-%d'" % pick)
h.check(t.chat("gw-a", "sk-scale-%d" % pick).status == 200, "scale key not accepted")
t0 = time.monotonic()
t.api("POST", "/api/keys/%s/revoke" % kid)
v = t.config_version()
dt = t.workers_at(v, timeout=10) - t0
h.check(t.all_status("sk-scale-%d" % pick) == {401}, "revoked key still accepted")
print("one revocation at %d keys: every worker at version %d after %.0f ms (a delta, not a snapshot: %s)"
      % (N, v, dt * 1000, "no new snapshot built" if len(re.findall(r"snapshot version \d+ built", open(os.path.join(t.WORK, "controlplane.log")).read())) == 2 else "SNAPSHOT REBUILT"))
gw.stop()
h.kill_all()
PY
