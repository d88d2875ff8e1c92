#!/usr/bin/env python3
"""Gateway-side cost of the semantic cache, end to end (not run by make test).

    python3 tests/bench/semcache_e2e.py [requests]      (default 400; needs bin/gateway, redis-server)

One gateway worker, a chat alias served by the built-in mock provider (no
network), prompts embedded by the mock (256-d, in-process). Sequential
requests on one keep-alive connection; the figures are the gateway's own
latency_ms from its access log (first byte in to last byte out), so the
client's time is not in them. Cases: no cache; exact-cache hits; semantic
hits (paraphrases) without and with Redis (the Redis catch-up read is one
round trip per lookup); semantic misses (embedding + lookup + mock answer +
store). Loopback only; every loop bounded.
"""
import os
import secrets
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402

KEY = "sk-gw-" + secrets.token_urlsafe(24)
REDIS_SH = os.path.join(h.REPO, "scripts", "redis.sh")


def config(port, redis_port=None):
    sem = {"embedding_model": "emb", "threshold": 0.8, "ttl_s": 3600}
    c = {"listen": "127.0.0.1:%d" % port, "metrics_listen": "127.0.0.1:%d" % h.free_port(), "workers": 1,
         "access_log": "stdout",
         "cache": {"semantic_max_entries": 100000, "semantic_memory_mb": 512},
         "models": [{"alias": "plain", "deployments": [{"provider": "mock", "model": "m"}]},
                    {"alias": "exact", "deployments": [{"provider": "mock", "model": "m"}], "cache": {"ttl_s": 3600}},
                    {"alias": "sem", "deployments": [{"provider": "mock", "model": "m"}], "cache": {"semantic": sem}},
                    {"alias": "emb", "deployments": [{"provider": "mock", "model": "e"}]}],
         "keys": [{"name": "bench", "key": KEY}]}
    if redis_port:
        c["redis_url"] = "redis://127.0.0.1:%d/0" % redis_port
    return c


def run(port, model, texts, tag):
    with h.Conn(port) as c:
        for t in texts:
            r = c.request("POST", "/v1/chat/completions", {"model": model, "temperature": 0.2,
                                                          "messages": [{"role": "user", "content": t}]},
                          headers={"X-Gateway-Bench": tag}, key=KEY)
            if r.status != 200:
                raise SystemExit("HTTP %d: %s" % (r.status, r.text[:200]))


def latencies(g, n_before, n):
    log = [x for x in g.access_log() if "latency_ms" in x]
    return [x["latency_ms"] for x in log[n_before:n_before + n]], log[n_before:n_before + n]


def report(name, lat, lines=None, want_cache=None):
    lat = sorted(lat)
    p50 = statistics.median(lat)
    p95 = lat[int(len(lat) * 0.95) - 1]
    extra = ""
    if lines is not None and want_cache is not None:
        hits = sum(1 for x in lines if x.get("cache_hit"))
        extra = "  (%d/%d answered from a cache)" % (hits, len(lines))
    print("%-34s p50 %7.3f ms  p95 %7.3f ms  n=%d%s" % (name, p50, p95, len(lat), extra))


def scenario(n, redis_port):
    port = h.free_port()
    g = h.Gateway(config(port, redis_port))
    try:
        # distinct prompts: 10 words each from a large vocabulary (prompts that differ in one
        # number would be paraphrases to a bag-of-words embedding); a paraphrase drops one
        # word and reorders the rest
        rnd = __import__("random").Random(7)
        vocab = ["w%05d" % i for i in range(20000)]
        words = [rnd.sample(vocab, 10) for _ in range(n)]
        topics = [" ".join(w) for w in words]
        paraphrases = [" ".join(reversed(w[1:])) for w in words]
        seen = 0

        def step(name, model, texts, want=None):
            nonlocal seen
            run(port, model, texts, name)
            lat, lines = h.wait_for(lambda: (lambda l: l if len(l[0]) == len(texts) else None)(
                latencies(g, seen, len(texts))), 20, what="access log lines")
            seen += len(texts)
            report(name, lat, lines, want)

        suffix = " + Redis" if redis_port else ""
        step("no cache (mock answer)", "plain", topics)
        step("exact cache: fill", "exact", topics)
        step("exact cache: hits", "exact", topics, True)
        step("semantic: misses (store)" + suffix, "sem", topics, True)
        step("semantic: paraphrase hits" + suffix, "sem", paraphrases, True)
    finally:
        g.stop()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    n = max(20, min(n, 5000))
    scenario(n, None)
    rdir = tempfile.mkdtemp(prefix="semcache-bench-redis-")
    rport = h.free_port()
    subprocess.run([REDIS_SH, "start", rdir, str(rport)], check=True, stdout=subprocess.DEVNULL, timeout=30)
    try:
        scenario(n, rport)
    finally:
        subprocess.run([REDIS_SH, "stop", rdir, str(rport)], stdout=subprocess.DEVNULL, timeout=30)
        h.kill_all()


if __name__ == "__main__":
    main()
