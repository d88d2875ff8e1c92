#!/usr/bin/env python3
"""Measures (prints, asserts nothing) what the Redis tier of stored Responses
costs: POST /v1/responses stored with and without redis_url, and GET
/v1/responses/{id} answered from the node's memory vs fetched from Redis
(another node made it). One keep-alive client, sequential, loopback, mock
provider; medians and p90 in microseconds. Needs a Redis: REDIS_PORT (e.g.
scripts/redis.sh start /tmp/rb 16390). N requests per row (default 300)."""
import http.client
import json
import os
import secrets
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

KEY = "sk-gw-" + secrets.token_urlsafe(24)
N = int(os.environ.get("N", "300"))
PORT = int(os.environ["REDIS_PORT"])


def config(redis):
    c = {"listen": "127.0.0.1:%d" % h.free_port(), "workers": 1,
         "models": [{"alias": "mock", "deployments": [{"provider": "mock", "model": "mock-1"}]}],
         "keys": [{"name": "bench", "key": KEY}]}
    if redis:
        c["redis_url"] = "redis://127.0.0.1:%d/0" % PORT
    return c


def timed(conn, method, path, body=None):
    hdrs = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    t0 = time.perf_counter()
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    dt = (time.perf_counter() - t0) * 1e6
    if r.status != 200:
        raise SystemExit("%s %s: %d %s" % (method, path, r.status, data[:200]))
    return dt, data


def row(name, xs):
    xs = sorted(xs)
    print("%-48s p50 %6.0f us  p90 %6.0f us  (n=%d)" % (name, statistics.median(xs), xs[int(len(xs) * 0.9)], len(xs)))


def posts(conn, n, tag):
    lat, ids = [], []
    for i in range(n):
        dt, data = timed(conn, "POST", "/v1/responses", json.dumps({"model": "mock", "input": "%s %d" % (tag, i)}))
        lat.append(dt)
        ids.append(json.loads(data)["id"])
    return lat, ids


def main():
    a, b, c = h.Gateway(config(True)), h.Gateway(config(True)), h.Gateway(config(False))
    try:
        h.wait_for(lambda: "responses: redis connected" in b.stderr_text() and
                   "responses: redis connected" in a.stderr_text(), 10, what="redis")
        ca, cb, cc = (http.client.HTTPConnection("127.0.0.1", g.port) for g in (a, b, c))
        posts(ca, 50, "warm")
        posts(cc, 50, "warm")
        lat_local_only, _ = posts(cc, N, "c")
        lat_redis, ids = posts(ca, N, "a")
        row("POST stored, no redis_url", lat_local_only)
        row("POST stored, write-through to Redis", lat_redis)
        row("GET on the node that made it (memory)", [timed(ca, "GET", "/v1/responses/" + i)[0] for i in ids])
        row("GET on another node, first (Redis, then copied)", [timed(cb, "GET", "/v1/responses/" + i)[0] for i in ids])
        row("GET on another node, again (memory)", [timed(cb, "GET", "/v1/responses/" + i)[0] for i in ids])
        _, ids2 = posts(ca, N, "p")
        row("POST previous_response_id, same node (memory)",
            [timed(ca, "POST", "/v1/responses", json.dumps({"model": "mock", "input": "x", "previous_response_id": i}))[0]
             for i in ids2])
        _, ids3 = posts(ca, N, "q")
        row("POST previous_response_id, other node (Redis)",
            [timed(cb, "POST", "/v1/responses", json.dumps({"model": "mock", "input": "x", "previous_response_id": i}))[0]
             for i in ids3])
    finally:
        for g in (a, b, c):
            g.stop()


if __name__ == "__main__":
    main()
