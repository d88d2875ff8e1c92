#!/usr/bin/env python3
"""Load and soak test for the gateway (issue 10). Python 3 stdlib only.

Loopback only, bounded in time (SOAK_SECONDS, default 300). Starts
$GW_BIN_DIR/gateway with 2 workers and three aliases:

  soak-mock   the built-in mock provider (streaming and not)
  soak-up     openai_compatible -> tests/integration/mock_upstream.py
  soak-fail   two deployments on the same mock, every request asks the
              upstream for MOCK_STATUS=500: the gateway must pass on a 5xx

SOAK_CLIENTS threads (default 24) loop over a weighted mix of scenarios:
non-streaming and streaming on both providers, failing upstream calls,
clients that disconnect mid-stream, and slow readers (a stream read a few
bytes at a time with pauses). The report gives throughput, p50/p99 latency of
completed requests, and per worker RSS and open file descriptors after a
warm-up and at the end.

Bounds (the run fails when one is broken):
  - no 5xx except on soak-fail (the upstream's own 500), and no transport
    error except where the client itself hung up;
  - every worker alive at the end, same pids (no crash-respawn);
  - per worker: RSS growth <= 32 MiB + 25% of the start value, open fds
    growth <= 16, measured after the traffic stopped and the gateway idled
    2 s (in-flight work drained);
  - at least 100 requests completed (the harness itself worked).
"""
import json
import os
import random
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "24"))
KEY = "sk-gw-soak-" + "k" * 32
RSS_SLACK_KB = 32 * 1024
RSS_FACTOR = 0.25
FD_SLACK = 16

SCENARIOS = [  # name, weight
    ("mock", 30), ("mock_stream", 20), ("up", 15), ("up_stream", 10),
    ("fail", 8), ("disconnect", 8), ("slow_reader", 4), ("bad_request", 5),
]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = []                  # seconds, completed 2xx requests
        self.by = {}                   # scenario -> {status/outcome: count}
        self.problems = []

    def add(self, scen, outcome, lat=None):
        with self.lock:
            d = self.by.setdefault(scen, {})
            d[outcome] = d.get(outcome, 0) + 1
            if lat is not None:
                self.lat.append(lat)

    def problem(self, msg):
        with self.lock:
            if len(self.problems) < 50:
                self.problems.append(msg)


def body(scen, tag):
    model = {"mock": "soak-mock", "mock_stream": "soak-mock", "up": "soak-up", "up_stream": "soak-up",
             "fail": "soak-fail", "disconnect": "soak-up", "slow_reader": "soak-mock", "bad_request": "soak-mock"}[scen]
    text = "soak %s %s" % (scen, tag)
    if scen == "fail":
        text += " MOCK_STATUS=500"
    if scen == "disconnect":
        text += " MOCK_CHUNKS=20 MOCK_GAP_MS=20"
    if scen == "up_stream":
        text += " MOCK_CHUNKS=8"
    b = {"model": model, "messages": [{"role": "user", "content": text}]}
    if scen in ("mock_stream", "up_stream", "disconnect", "slow_reader"):
        b["stream"] = True
    if scen == "bad_request":
        return b'{"model":"soak-mock","messages":[{"role":"user"'     # truncated JSON: a 400
    return json.dumps(b).encode()


def one(port, scen, st, rnd):
    tag = "%08x" % rnd.getrandbits(32)
    data = body(scen, tag)
    stream = scen in ("mock_stream", "up_stream", "disconnect", "slow_reader")
    t0 = time.monotonic()
    c = None
    try:
        c = h.Conn(port, timeout=30)
        c.send_request("POST", "/v1/chat/completions", data, key=KEY)
        if scen == "disconnect":
            got = []

            def stop(piece, idx, resp):
                got.append(piece)
                return len(got) >= 2          # hang up after two pieces of the stream
            r = c.read_response(on_body=stop)
            st.add(scen, "hung-up" if not r.complete else str(r.status))
            if r.status >= 500:
                st.problem("%s: %d" % (scen, r.status))
            return
        if scen == "slow_reader":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

            def slow(piece, idx, resp):
                time.sleep(0.01)
                return False
            r = c.read_response(on_body=slow)
        else:
            r = c.read_response(sse=stream)
        lat = time.monotonic() - t0
        if scen == "fail":
            st.add(scen, str(r.status))
            if not 500 <= r.status < 600:
                st.problem("fail: expected the upstream's 5xx, got %d" % r.status)
            return
        if scen == "bad_request":
            st.add(scen, str(r.status))
            if r.status != 400:
                st.problem("bad_request: %d" % r.status)
            return
        st.add(scen, str(r.status), lat if r.status == 200 else None)
        if r.status != 200:
            st.problem("%s: HTTP %d %r" % (scen, r.status, r.body[:200]))
        elif stream and b"[DONE]" not in r.body:
            st.problem("%s: stream without [DONE]" % scen)
    except Exception as e:  # noqa: BLE001
        st.add(scen, "error:" + type(e).__name__)
        st.problem("%s: %s: %s" % (scen, type(e).__name__, e))
    finally:
        if c:
            c.close()


def client(port, deadline, st, seed):
    rnd = random.Random(seed)
    names = [n for n, _ in SCENARIOS]
    weights = [w for _, w in SCENARIOS]
    while time.monotonic() < deadline:
        one(port, rnd.choices(names, weights)[0], st, rnd)


def worker_stats(gw):
    out = {}
    for pid in gw.children():
        try:
            with open("/proc/%d/status" % pid) as f:
                rss = int(next(l for l in f if l.startswith("VmRSS:")).split()[1])
            fds = len(os.listdir("/proc/%d/fd" % pid))
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, StopIteration):
            continue
        out[pid] = {"rss_kb": rss, "fds": fds, "cmd": cmd}
    return out


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def main():
    mock = h.Mock("soak-upstream")
    port = h.free_port()
    cfg = {
        "listen": "127.0.0.1:%d" % port, "workers": 2, "access_log": "off", "client_timeout_ms": 30000,
        "models": [
            {"alias": "soak-mock", "deployments": [{"provider": "mock", "model": "mock-1"}]},
            {"alias": "soak-up", "deployments": [{"provider": "openai_compatible", "model": "up-1",
                                                  "base_url": mock.base_url, "api_key": "sk-up"}]},
            {"alias": "soak-fail", "deployments": [
                {"provider": "openai_compatible", "model": "fail-1", "base_url": mock.base_url, "api_key": "sk-up"},
                {"provider": "openai_compatible", "model": "fail-2", "base_url": mock.base_url, "api_key": "sk-up"}]},
        ],
        "keys": [{"name": "soak", "key": KEY}],
    }
    gw = h.Gateway(cfg, ready_timeout=15)
    h.log("soak: gateway pid %d on :%d, %d clients, %.0f s" % (gw.pid, port, CLIENTS, SECONDS))

    # warm-up, then the start sample
    warm = Stats()
    wt = [threading.Thread(target=client, args=(port, time.monotonic() + 5, warm, 1000 + i), daemon=True)
          for i in range(CLIENTS)]
    for t in wt:
        t.start()
    for t in wt:
        t.join(60)
    time.sleep(2)
    start = worker_stats(gw)

    st = Stats()
    t0 = time.monotonic()
    deadline = t0 + SECONDS
    ts = [threading.Thread(target=client, args=(port, deadline, st, i), daemon=True) for i in range(CLIENTS)]
    for t in ts:
        t.start()
    samples = []
    while time.monotonic() < deadline:
        time.sleep(min(30, max(0.1, deadline - time.monotonic())))
        samples.append((time.monotonic() - t0, worker_stats(gw)))
        h.log("  t=%4.0fs  %s" % (samples[-1][0], "  ".join(
            "pid %d rss %d KiB fds %d" % (p, v["rss_kb"], v["fds"]) for p, v in sorted(samples[-1][1].items()))))
    for t in ts:
        t.join(60)
    elapsed = time.monotonic() - t0
    time.sleep(2)                     # let in-flight work drain
    end = worker_stats(gw)

    total = sum(sum(d.values()) for d in st.by.values())
    ok = len(st.lat)
    report = []
    report.append("soak report: %.0f s, %d clients, gateway 2 workers (GW_BIN_DIR=%s)" % (elapsed, CLIENTS, h.bin_dir()))
    report.append("  requests: %d total, %.1f req/s; completed 200s: %d" % (total, total / elapsed, ok))
    report.append("  latency of completed 200s: p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
        pct(st.lat, 50) * 1000, pct(st.lat, 99) * 1000, (max(st.lat) if st.lat else float("nan")) * 1000))
    for scen, _ in SCENARIOS:
        report.append("  %-12s %s" % (scen, json.dumps(st.by.get(scen, {}), sort_keys=True)))
    failures = list(st.problems)
    report.append("  workers (start -> end), bound: rss +%d KiB +%d%%, fds +%d" % (RSS_SLACK_KB, RSS_FACTOR * 100, FD_SLACK))
    if set(start) != set(end):
        failures.append("worker pids changed: %s -> %s (a worker died)" % (sorted(start), sorted(end)))
    for pid in sorted(start):
        s, e = start[pid], end.get(pid)
        if not e:
            continue
        report.append("    pid %d %s: rss %d -> %d KiB, fds %d -> %d" % (pid, s["cmd"][-30:], s["rss_kb"], e["rss_kb"],
                                                                         s["fds"], e["fds"]))
        if e["rss_kb"] > s["rss_kb"] * (1 + RSS_FACTOR) + RSS_SLACK_KB:
            failures.append("pid %d RSS grew %d -> %d KiB" % (pid, s["rss_kb"], e["rss_kb"]))
        if e["fds"] > s["fds"] + FD_SLACK:
            failures.append("pid %d fds grew %d -> %d" % (pid, s["fds"], e["fds"]))
    if ok < 100:
        failures.append("only %d requests completed" % ok)
    if not gw.alive():
        failures.append("the gateway master died")
    reps = gw.sanitizer_reports()
    if reps:
        failures.append("sanitizer reports: %s" % reps[:3])
    rc = gw.stop()
    report.append("  gateway exit on SIGTERM: %s" % rc)
    mock.stop()
    print("\n".join(report))
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures[:30]))
        return 1
    print("SOAK PASSED")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        h.kill_all()
