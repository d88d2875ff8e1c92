#!/usr/bin/env python3
"""The router on the wire (Python 3 stdlib only): failover across deployments
and aliases, breakers, Retry-After, the retry budget and least-latency, with
mock upstreams told to fail (/_mock/force) and counted (/_mock/count).

One gateway worker, so every request sees the same breaker state.
"""
import json
import os
import secrets
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

KEY = "sk-gw-" + secrets.token_urlsafe(32)
COOLDOWN_MS = 1000


class Env:
    a = b = gw = None
    dead_port = 0


ENV = Env()


def dep(mock, model="m", **kw):
    d = {"provider": "openai_compatible", "model": model, "base_url": mock.base_url if mock else
         "http://127.0.0.1:%d/v1" % ENV.dead_port, "api_key": "sk-up"}
    d.update(kw)
    return d


def setup():
    ENV.a = h.Mock("A")
    ENV.b = h.Mock("B")
    ENV.dead_port = h.free_port()
    fast = {"breaker_failures": 5, "breaker_cooldown_ms": COOLDOWN_MS, "backoff_ms": 5, "backoff_max_ms": 50}
    a, b = ENV.a, ENV.b

    def alias(name, deps, **kw):
        m = {"alias": name, "deployments": deps, "router": dict(fast)}
        m["router"].update(kw.pop("router", {}))
        m.update(kw)
        return m
    ENV.mport = h.free_port()
    cfg = {
        "listen": "127.0.0.1:%d" % h.free_port(),
        "metrics_listen": "127.0.0.1:%d" % ENV.mport,
        "workers": 1,
        "timeouts": {"connect_ms": 1000, "first_byte_ms": 2000, "idle_ms": 2000, "total_ms": 10000},
        "models": [
            alias("pair", [dep(a), dep(b)]),
            alias("ra", [dep(a), dep(b)]),
            alias("refused", [dep(None), dep(b)]),
            alias("held", [dep(a), dep(b)], router={"max_retry_after_ms": 100}),
            alias("slow", [dep(a, timeouts={"first_byte_ms": 300}), dep(b)]),
            alias("stall", [dep(a, timeouts={"idle_ms": 300}), dep(b)]),
            alias("cut", [dep(a), dep(b)]),
            alias("down", [dep(a), dep(b)]),
            alias("client4xx", [dep(a), dep(b)]),
            alias("backup", [dep(b)]),
            alias("primary", [dep(a)], fallbacks=["backup"]),
            alias("big", [dep(b, model="big")]),
            alias("ctx", [dep(a)], router={"context_fallback": "big"}),
            alias("latency", [dep(a), dep(b)], strategy="least_latency"),
            alias("tail", [dep(a), dep(b)]),
            alias("tail-hedged", [dep(a), dep(b)], router={"hedge_ms": 60}),
            alias("tail-p95", [dep(a), dep(b)], router={"hedge_ms": "p95"}),
            alias("hedge-xdialect", [dep(a), {"provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                                              "base_url": b.base_url[:-len("/v1")], "api_key": "sk-up"}],
                  router={"hedge_ms": 60}),
            alias("cheap-tier", [dep(a, model="small")]),
            alias("flag-tier", [dep(b, model="large")]),
            {"alias": "auto", "strategy": "classifier",
             "router": {"cheap": "cheap-tier", "flagship": "flag-tier", "threshold": 0.5}},
            alias("canary", [dep(b)]),
            alias("anth", [{"provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                            "base_url": a.base_url[:-len("/v1")], "api_key": "sk-up"}]),
            alias("canary-base", [dep(a)], router={"split_alias": "canary", "split_percent": 20}),
            alias("weighted", [dep(a, weight=3), dep(b, weight=1)]),
        ],
        "keys": [{"name": "router", "key": KEY}],
    }
    ENV.gw = h.Gateway(cfg)


def metric(name, **labels):
    """The value of one series on the gateway's /metrics, or None."""
    text = h.http_request(ENV.mport, "GET", "/metrics").text
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        n, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if n == name and got == want:
            return float(value)
    return None


def force(mock, **directives):
    r = h.http_request(mock.port, "POST", "/_mock/force", json.dumps(directives).encode())
    h.check(r.status == 200, "force failed: %r" % r)


def count(mock):
    return h.http_request(mock.port, "GET", "/_mock/count").json()["total"]


def reset():
    ENV.a.reset()
    ENV.b.reset()


def chat(model, text="hi", **kw):
    return dict({"model": model, "messages": [{"role": "user", "content": text}]}, **kw)


def post(conn, body, sse=False):
    return conn.request("POST", "/v1/chat/completions", json.dumps(body).encode(), key=KEY, sse=sse)


def served_by(resp):
    try:
        text = resp.json()["choices"][0]["message"]["content"]
    except Exception:  # noqa: BLE001
        return None
    return "A" if text.startswith("mock[A]") else "B" if text.startswith("mock[B]") else None


def hammer(model, n, threads=4):
    """n requests over `threads` keep-alive connections; returns the responses."""
    out = []
    lock = threading.Lock()

    def run(k):
        got = []
        with h.Conn(ENV.gw.port, timeout=10) as c:
            for _ in range(k):
                got.append(post(c, chat(model)))
        with lock:
            out.extend(got)
    ts = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


@h.test
def test_one_of_two_failing_1000_requests_all_succeed_breaker_opens_and_probe_closes():
    reset()
    force(ENV.a, STATUS="500")
    t0 = time.monotonic()
    rs = hammer("pair", 1000)
    took = time.monotonic() - t0
    h.check(len(rs) == 1000, "only %d responses" % len(rs))
    bad = [r for r in rs if r.status != 200]
    h.check(not bad, "%d of 1000 failed, e.g. %r" % (len(bad), bad[:1]))
    h.check(all(served_by(r) == "B" for r in rs), "a response did not come from B")
    retried = sum(1 for r in rs if r.header("x-gateway-attempts") == "2")
    to_a = count(ENV.a)
    # 5 failures open it, then one probe per cooldown (each fails and reopens it)
    bound = 5 + 4 + int(took * 1000 / COOLDOWN_MS) + 1
    h.log("  1000 requests in %.2fs: A (failing) got %d attempts (bound %d), %d responses needed a 2nd attempt"
          % (took, to_a, bound, retried))
    h.check(to_a <= bound, "the failing deployment got %d attempts (breaker should cap it at %d)" % (to_a, bound))
    labels_a = {"model": "pair", "provider": "openai_compatible", "upstream_model": "m", "deployment": "0"}
    h.check(metric("gatewayllm_deployment_breaker_open", **labels_a) == 1, "breaker state not in /metrics: %s" % [
        l for l in h.http_request(ENV.mport, "GET", "/metrics").text.splitlines() if "breaker" in l or "failures" in l])
    h.check(metric("gatewayllm_deployment_failures_total", **labels_a) == to_a, "failures_total %r, A got %d" % (
        metric("gatewayllm_deployment_failures_total", **labels_a), to_a))
    h.check(retried == to_a, "every attempt on A should have been retried on B (%d vs %d)" % (retried, to_a))
    # still failing after the cooldown: exactly one probe, which fails and reopens it
    time.sleep(COOLDOWN_MS / 1000 + 0.2)
    before = count(ENV.a)
    rs = hammer("pair", 40, threads=1)
    h.check(all(r.status == 200 for r in rs), "a request failed around the probe")
    h.check(count(ENV.a) - before == 1, "A got %d attempts after its cooldown (one probe expected)" % (count(ENV.a) - before))
    # A recovers: it gets nothing until the cooldown's probe passes, then its share again
    force(ENV.a)
    before = count(ENV.a)
    for _ in range(20):
        post_one = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("pair")).encode(), key=KEY)
        h.expect_status(post_one, 200)
    h.check(count(ENV.a) - before <= 1, "A got traffic while its breaker was open")
    time.sleep(COOLDOWN_MS / 1000 + 0.2)
    rs = hammer("pair", 40, threads=1)
    share = sum(1 for r in rs if served_by(r) == "A")
    h.check(all(r.status == 200 for r in rs), "a request failed after recovery")
    h.check(18 <= share <= 22, "after its probe passed A should serve half again, served %d of 40" % share)
    h.check(metric("gatewayllm_deployment_breaker_open", **labels_a) == 0, "breaker still open in /metrics")


@h.test
def test_429_retry_after_holds_the_deployment():
    reset()
    force(ENV.a, STATUS="429", RETRY_AFTER="3")
    with h.Conn(ENV.gw.port) as c:
        rs = [post(c, chat("ra")) for _ in range(30)]
    h.check(all(r.status == 200 and served_by(r) == "B" for r in rs), "a request failed: %r" % rs[:1])
    h.check(count(ENV.a) == 1, "A was asked %d times during its Retry-After" % count(ENV.a))
    h.check(rs[0].header("x-gateway-attempts") == "2", "the first request took %s attempts" % rs[0].header("x-gateway-attempts"))
    force(ENV.a)


@h.test
def test_every_deployment_rate_limited_answers_429_with_retry_after_without_asking():
    reset()
    force(ENV.a, STATUS="429", RETRY_AFTER="3")
    force(ENV.b, STATUS="429", RETRY_AFTER="3")
    r1 = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("held")).encode(), key=KEY)
    t0 = time.monotonic()
    r2 = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("held")).encode(), key=KEY)
    took = time.monotonic() - t0
    asked = count(ENV.a) + count(ENV.b)
    force(ENV.a)
    force(ENV.b)
    h.expect_status(r1, 429)
    h.check(r1.header("x-gateway-attempts") == "2", "first request: %r" % r1)
    h.expect_status(r2, 429)
    h.check(h.expect_openai_error(r2)["code"] == "upstream_rate_limited", "second request: %r" % r2)
    h.check(r2.header("retry-after") in ("2", "3"), "Retry-After %r" % r2.header("retry-after"))
    h.check(asked == 2, "the held deployments were asked %d times" % asked)
    h.log("  every deployment held by Retry-After: answered 429 in %.1f ms without an upstream call" % (took * 1000))


@h.test
def test_connect_refused_fails_over():
    reset()
    with h.Conn(ENV.gw.port) as c:
        rs = [post(c, chat("refused")) for _ in range(10)]
    h.check(all(r.status == 200 and served_by(r) == "B" for r in rs), "a request failed: %r" % rs[:1])
    h.check(rs[0].header("x-gateway-attempts") in ("1", "2"), "attempts header missing")
    h.check(any(r.header("x-gateway-attempts") == "2" for r in rs), "no request was retried after a refused connect")


@h.test
def test_delay_beyond_timeout_fails_over():
    reset()
    force(ENV.a, DELAY_MS="1500")
    t0 = time.monotonic()
    with h.Conn(ENV.gw.port) as c:
        rs = [post(c, chat("slow")) for _ in range(4)]
    took = time.monotonic() - t0
    force(ENV.a)
    h.check(all(r.status == 200 and served_by(r) == "B" for r in rs), "a request failed: %r" % rs[:1])
    h.check(any(r.header("x-gateway-attempts") == "2" for r in rs), "nothing timed out on A")
    h.check(took < 4 * 1.5, "requests waited for the slow deployment (%.2fs)" % took)


def stream_text(resp):
    out = ""
    for e in resp.events or []:
        if e["data"] == "[DONE]":
            continue
        try:
            j = json.loads(e["data"])
        except ValueError:
            continue
        for ch in j.get("choices") or []:
            out += (ch.get("delta") or {}).get("content") or ""
    return out


@h.test
def test_stream_stall_after_headers_fails_over_before_first_byte():
    reset()
    force(ENV.a, STALL="1")
    with h.Conn(ENV.gw.port) as c:
        rs = [post(c, chat("stall", stream=True), sse=True) for _ in range(4)]
    force(ENV.a)
    for r in rs:
        h.expect_status(r, 200)
        h.check("chunk-4" in stream_text(r), "stream incomplete: %r" % r)
        h.check(not any("error" in e["data"] for e in r.events), "error event in a failed-over stream")
    h.check(any(r.header("x-gateway-attempts") == "2" for r in rs), "no stream failed over")


@h.test
def test_stream_cut_before_first_byte_fails_over_after_it_ends_with_error():
    reset()
    force(ENV.a, RESET_AFTER="0")
    with h.Conn(ENV.gw.port) as c:
        rs = [post(c, chat("cut", stream=True), sse=True) for _ in range(4)]
    for r in rs:
        h.expect_status(r, 200)
        h.check("chunk-4" in stream_text(r), "stream incomplete: %r" % r)
    h.check(any(r.header("x-gateway-attempts") == "2" for r in rs), "no stream failed over")
    # cut after 2 chunks reached the client: no failover, an error event ends it
    reset()
    force(ENV.a, RESET_AFTER="2")
    force(ENV.b, RESET_AFTER="2")
    r = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("cut", stream=True)).encode(),
                       key=KEY, sse=True)
    force(ENV.a)
    force(ENV.b)
    h.expect_status(r, 200)
    h.check(r.header("x-gateway-attempts") == "1", "a stream that had started was retried")
    h.check("chunk-1" in stream_text(r), "the first chunks did not arrive")
    errs = [e for e in r.events if '"error"' in e["data"]]
    h.check(len(errs) == 1, "expected one error event, got %r" % r.events)
    h.check(count(ENV.a) + count(ENV.b) == 1, "the cut stream was attempted again")


@h.test
def test_every_deployment_down_fast_clear_error_no_retry_storm():
    reset()
    force(ENV.a, STATUS="503")
    force(ENV.b, STATUS="503")
    rs = hammer("down", 200)
    attempts = count(ENV.a) + count(ENV.b)
    force(ENV.a)
    force(ENV.b)
    h.check(all(r.status in (502, 503) for r in rs), "a request did not fail cleanly")
    fast = [r for r in rs if r.status == 503 and h.expect_openai_error(r)["code"] == "no_healthy_deployment"]
    h.log("  200 requests, every deployment down: %d upstream attempts, %d answered at once (circuit open)"
          % (attempts, len(fast)))
    h.check(attempts <= 30, "the upstreams saw %d attempts for 200 requests (retry storm)" % attempts)
    h.check(len(fast) >= 150, "only %d requests failed fast" % len(fast))
    t0 = time.monotonic()
    r = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("down")).encode(), key=KEY)
    h.check(r.status == 503 and time.monotonic() - t0 < 0.5, "open circuit answer was not fast: %r" % r)


@h.test
def test_fallback_alias_header_and_access_log():
    reset()
    force(ENV.a, STATUS="502")
    r = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("primary", "fb-tag")).encode(), key=KEY)
    force(ENV.a)
    h.expect_status(r, 200)
    h.check(served_by(r) == "B", "the fallback did not serve it")
    fallbacks = metric("gatewayllm_fallbacks_total", **{"from": "primary", "to": "backup"})
    h.check(fallbacks is not None and fallbacks >= 1, "gatewayllm_fallbacks_total{from,to} %r" % fallbacks)
    h.check(r.header("x-gateway-fallback") == "backup", "X-Gateway-Fallback: %r" % r.header("x-gateway-fallback"))
    rid = r.header("x-gateway-request-id")

    def line():
        return [x for x in ENV.gw.access_log() if x.get("request_id") == rid]
    got = h.wait_for(line, 5, what="access log line")[0]
    h.check(got.get("fallback") == "backup" and got.get("model") == "primary", "access log: %r" % got)
    h.check(got.get("attempts", 0) >= 2, "access log attempts: %r" % got)


@h.test
def test_client_4xx_is_not_retried():
    reset()
    force(ENV.a, STATUS="400")
    force(ENV.b, STATUS="400")
    r = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("client4xx")).encode(), key=KEY)
    force(ENV.a)
    force(ENV.b)
    h.expect_status(r, 400)
    h.check(count(ENV.a) + count(ENV.b) == 1, "a client error was retried")
    h.check(r.header("x-gateway-attempts") == "1", "attempts %r" % r.header("x-gateway-attempts"))


@h.test
def test_context_length_error_goes_to_larger_context_alias():
    reset()
    force(ENV.a, CONTEXT="1")
    r = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("ctx")).encode(), key=KEY)
    force(ENV.a)
    h.expect_status(r, 200)
    h.check(served_by(r) == "B" and r.header("x-gateway-fallback") == "big", "not served by the larger alias: %r" % r)
    rec = ENV.b.requests()[-1]
    h.check(rec["body"]["model"] == "big", "B was asked for %r" % rec["body"]["model"])


@h.test
def test_least_latency_moves_to_the_faster_deployment():
    reset()
    with h.Conn(ENV.gw.port) as c:
        force(ENV.b, DELAY_MS="40")          # A is the fast one to begin with
        before = [served_by(post(c, chat("latency"))) for _ in range(30)]
        force(ENV.b)
        force(ENV.a, DELAY_MS="150")         # then A slows down
        t0 = time.monotonic()
        after, moved_at = [], None
        for i in range(60):
            after.append(served_by(post(c, chat("latency"))))
            if moved_at is None and after[-5:] == ["B"] * 5:
                moved_at = time.monotonic() - t0
    force(ENV.a)
    h.check(before[10:].count("A") >= 16, "A (fast) served only %d of 20 before: %r" % (before[10:].count("A"), before))
    late = after[20:]
    h.log("  least_latency: A served %d of 20 while fast; after it slowed by 150 ms, traffic moved to B after "
          "%.2fs, A served %d of the last 40" % (before[10:].count("A"), moved_at or -1, late.count("A")))
    h.check(moved_at is not None, "traffic never moved to B")
    h.check(late.count("A") <= 6, "A (slow) still served %d of 40" % late.count("A"))


@h.test
def test_anthropic_stream_cut_after_first_byte_ends_with_an_anthropic_error_event():
    reset()
    body = {"model": "anth", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "MOCK_RESET_AFTER=1 tell me a story"}]}
    r = h.http_request(ENV.gw.port, "POST", "/v1/messages", json.dumps(body).encode(), key=KEY, sse=True)
    h.expect_status(r, 200)
    h.check(r.header("x-gateway-attempts") == "1", "a started stream was retried")
    evs = []
    for e in r.events or []:
        try:
            evs.append(json.loads(e["data"]))
        except ValueError:
            pass
    types = [e.get("type") for e in evs]
    h.check(types[:1] == ["message_start"] and "content_block_delta" in types, "stream before the cut: %r" % types)
    h.check(types[-1] == "error" and evs[-1]["error"].get("type") == "api_error", "last event: %r" % evs[-1:])
    h.check(b"event: error" in r.body, "no 'event: error' line in the Anthropic stream")


@h.test
def test_hedge_to_another_dialect_is_translated():
    reset()
    force(ENV.a, DELAY_MS="1500")
    with h.Conn(ENV.gw.port) as c:
        rs = [post(c, chat("hedge-xdialect", "xdialect")) for _ in range(4)]
        ss = [post(c, chat("hedge-xdialect", "xdialect", stream=True), sse=True) for _ in range(4)]
    force(ENV.a)
    for r in rs:
        h.expect_status(r, 200)
        h.check(r.json()["object"] == "chat.completion", "not an OpenAI answer: %r" % r)
    h.check(any(r.header("x-gateway-provider") == "anthropic" and r.header("x-gateway-attempts") == "2" for r in rs),
            "no request was hedged to the anthropic deployment")
    for r in ss:
        h.expect_status(r, 200)
        h.check(stream_text(r), "empty stream: %r" % r)
    h.check(any(r.header("x-gateway-provider") == "anthropic" for r in ss), "no stream was hedged to anthropic")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))]


@h.test
def test_hedging_cuts_the_slow_tail():
    reset()
    force(ENV.a, DELAY_MS="400", SLOW_PCT="10")
    res = {}
    for alias in ("tail", "tail-hedged"):
        lat, rs = [], []
        with h.Conn(ENV.gw.port) as c:
            for _ in range(150):
                t0 = time.monotonic()
                rs.append(post(c, chat(alias)))
                lat.append((time.monotonic() - t0) * 1000)
        h.check(all(r.status == 200 for r in rs), "a %s request failed" % alias)
        res[alias] = (pct(lat, 50), pct(lat, 99), sum(1 for r in rs if r.header("x-gateway-attempts") == "2"))
    force(ENV.a)
    h.log("  slow tail on A (10%% of its requests +400 ms), 150 requests each: "
          "no hedge p50 %.1f ms p99 %.1f ms; hedge_ms 60: p50 %.1f ms p99 %.1f ms (%d hedged)"
          % (res["tail"][0], res["tail"][1], res["tail-hedged"][0], res["tail-hedged"][1], res["tail-hedged"][2]))
    h.check(res["tail"][2] == 0, "unhedged alias made second attempts")
    h.check(res["tail-hedged"][2] > 0, "no request was hedged")
    # the losing attempts were closed, not left running
    h.wait_for(lambda: any(x.get("client_gone") for x in ENV.a.requests()), 5, what="a cancelled hedge loser")


@h.test
def test_hedging_at_the_recent_p95():
    reset()
    with h.Conn(ENV.gw.port) as c:
        for _ in range(40):                      # latency samples for both deployments
            h.expect_status(post(c, chat("tail-p95")), 200)
        force(ENV.a, DELAY_MS="400", SLOW_PCT="10")
        lat, rs = [], []
        for _ in range(150):
            t0 = time.monotonic()
            rs.append(post(c, chat("tail-p95")))
            lat.append((time.monotonic() - t0) * 1000)
    force(ENV.a)
    h.check(all(r.status == 200 for r in rs), "a request failed")
    hedged = sum(1 for r in rs if r.header("x-gateway-attempts") == "2")
    h.log("  hedge_ms p95, same slow tail: p50 %.1f ms p99 %.1f ms (%d of 150 hedged)" % (pct(lat, 50), pct(lat, 99), hedged))
    h.check(hedged > 0, "nothing was hedged at the p95")


@h.test
def test_hedged_stream_first_byte_wins():
    reset()
    force(ENV.a, DELAY_MS="1500")
    t0 = time.monotonic()
    with h.Conn(ENV.gw.port) as c:
        rs = [post(c, chat("tail-hedged", stream=True), sse=True) for _ in range(4)]
    took = time.monotonic() - t0
    force(ENV.a)
    for r in rs:
        h.expect_status(r, 200)
        h.check("chunk-4" in stream_text(r), "stream incomplete: %r" % r)
    h.check(any(r.header("x-gateway-attempts") == "2" for r in rs), "no stream was hedged")
    h.log("  4 streams, A 1.5 s slow: %.2fs in all" % took)


@h.test
def test_classifier_sends_easy_prompts_cheap_and_hard_ones_to_the_flagship():
    reset()
    easy = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions",
                          json.dumps(chat("auto", "What is the capital of France?")).encode(), key=KEY)
    hard_text = ("Why does this segfault?\n```c\n#include <stdio.h>\nint main(void) {\n  char *p = 0;\n"
                 "  return *p;\n}\n```\nFix it step by step and explain why.")
    hard = h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", json.dumps(chat("auto", hard_text)).encode(), key=KEY)
    h.expect_status(easy, 200)
    h.expect_status(hard, 200)
    h.check(served_by(easy) == "A" and (easy.header("x-gateway-classifier") or "").startswith("cheap; score="),
            "easy prompt: %r" % easy)
    h.check(served_by(hard) == "B" and (hard.header("x-gateway-classifier") or "").startswith("flagship; score="),
            "hard prompt: %r" % hard)
    models = [x["body"]["model"] for x in ENV.a.requests() + ENV.b.requests()]
    h.check(sorted(models) == ["large", "small"], "tiers asked for %r" % models)
    rid = hard.header("x-gateway-request-id")
    line = h.wait_for(lambda: [x for x in ENV.gw.access_log() if x.get("request_id") == rid], 5, what="log line")[0]
    h.check(line.get("classifier") == "flagship" and line.get("complexity", 0) >= 0.5 and line.get("model") == "auto",
            "access log: %r" % line)


@h.test
def test_traffic_split_sends_its_share_to_the_other_alias():
    reset()
    with h.Conn(ENV.gw.port) as c:
        rs = [post(c, chat("canary-base")) for _ in range(500)]
    h.check(all(r.status == 200 for r in rs), "a request failed")
    to_b = [r for r in rs if served_by(r) == "B"]
    h.check(all(r.header("x-gateway-split") == "canary" for r in to_b), "split requests lack X-Gateway-Split")
    h.check(not any(r.header("x-gateway-split") for r in rs if served_by(r) == "A"), "unsplit request marked")
    h.log("  split 20%%: %d of 500 went to the canary alias" % len(to_b))
    h.check(70 <= len(to_b) <= 130, "split sent %d of 500 (20%% expected)" % len(to_b))


@h.test
def test_weighted_split_within_2_percent_over_10000_requests():
    reset()
    rs = hammer("weighted", 10000, threads=4)
    h.check(len(rs) == 10000 and all(r.status == 200 for r in rs), "%d answers, some failed" % len(rs))
    a = sum(1 for r in rs if served_by(r) == "A")
    b = sum(1 for r in rs if served_by(r) == "B")
    h.log("  weighted 3:1 over 10,000 requests: A %d (%.2f%%), B %d; the mocks counted %d and %d"
          % (a, a / 100.0, b, count(ENV.a), count(ENV.b)))
    h.check(a + b == 10000, "answers not attributed: %d + %d" % (a, b))
    h.check(abs(a / 10000.0 - 0.75) <= 0.02, "A got %.2f%% of the traffic, weight says 75%%" % (a / 100.0))
    h.check(count(ENV.a) == a and count(ENV.b) == b, "the upstreams saw other counts than the answers say")


def teardown():
    for x in (ENV.gw,):
        if x:
            x.stop()
            rep = x.sanitizer_reports()
            if rep:
                h.log("sanitizer reports:\n" + "\n".join(rep[:20]))
                h._state["failed"] += 1
    for m in (ENV.a, ENV.b):
        if m:
            m.stop()


if __name__ == "__main__":
    try:
        setup()
    except Exception as e:  # noqa: BLE001
        h.log("setup failed: %s" % e)
        h.kill_all()
        print("0 passed, 1 failed")
        sys.exit(1)
    sys.exit(h.run(teardown=teardown, suite_timeout=240))
