#!/usr/bin/env python3
"""The semantic cache, against standalone gateways sharing one Redis.

Run by suite_semcache.sh (REDIS_DIR, REDIS_PORT). Chat answers come from the
mock upstream (its /_mock/count says whether a request reached it); prompts
are embedded by the built-in mock provider (hashed words and trigrams), or by
the mock upstream for the upstream-embedding case. Each test uses its own
key, so its entries live in their own partition. No timing assertions.
"""
import json
import os
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, test  # noqa: E402

REDIS_DIR = os.environ.get("REDIS_DIR", "")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "0"))
REDIS_SH = os.path.join(h.REPO, "scripts", "redis.sh")
THRESHOLD = 0.8

KEYS = {n: "sk-gw-" + secrets.token_urlsafe(24) for n in
        ("basic", "other", "guards", "stream", "msgs", "cross", "down", "upemb", "errors", "metrics")}

PROMPT = "What is the capital city of France?"
PARAPHRASE = "Tell me, what is the capital city of France"
UNRELATED = "Write a short poem about autumn leaves falling"


class Env:
    mock = None


def redis(cmd):
    subprocess.run([REDIS_SH, cmd, REDIS_DIR, str(REDIS_PORT)], check=True, stdout=subprocess.DEVNULL, timeout=30)


def mock():
    if not Env.mock:
        Env.mock = h.Mock("semcache-upstream")
    return Env.mock


def config(port, workers=2, redis_on=True, mport=None):
    up = {"provider": "openai_compatible", "model": "upstream-model-name", "base_url": mock().base_url,
          "api_key": "sk-upstream-not-real"}
    sem = {"embedding_model": "emb", "threshold": THRESHOLD, "ttl_s": 600, "max_temperature": 1.0}
    c = {
        "listen": "127.0.0.1:%d" % port,
        "metrics_listen": "127.0.0.1:%d" % (mport or h.free_port()),
        "workers": workers,
        "client_timeout_ms": 5000,
        "access_log": "stdout",
        "models": [
            {"alias": "sem", "deployments": [up], "router": {"max_attempts": 1}, "cache": {"semantic": sem}},
            {"alias": "sem-up", "deployments": [up], "router": {"max_attempts": 1},
             "cache": {"semantic": dict(sem, embedding_model="emb-up")}},
            {"alias": "emb", "deployments": [{"provider": "mock", "model": "mock-embed"}]},
            {"alias": "emb-up", "deployments": [dict(up, model="upstream-embed")]},
        ],
        "keys": [{"name": n, "key": k} for n, k in KEYS.items()],
    }
    if redis_on:
        c["redis_url"] = "redis://127.0.0.1:%d/0" % REDIS_PORT
    return c


def stop_clean(g):
    """Stops a gateway; under sanitizers, what they reported (leaks at exit too) fails the test."""
    g.stop()
    reports = g.sanitizer_reports()
    check(not reports, "sanitizer report: %s" % reports[:3])


def upstream_count():
    r = h.http_request(mock().port, "GET", "/_mock/count")
    h.expect_status(r, 200)
    return r.json()["total"]


def chat(port, key, text, stream=False, headers=None, path="/v1/chat/completions", **extra):
    b = {"model": extra.pop("model", "sem"), "messages": [{"role": "user", "content": text}]}
    if path == "/v1/messages":
        b["max_tokens"] = 100
    if stream:
        b["stream"] = True
    b.update(extra)
    return h.http_request(port, "POST", path, body=b, key=KEYS[key], headers=headers, sse=stream)


def sim_of(r):
    v = r.header("x-gateway-cache-similarity")
    return float(v) if v is not None else None


def content_of(r):
    j = r.json()
    if "choices" in j:
        return j["choices"][0]["message"]["content"]
    return "".join(b.get("text", "") for b in j.get("content", []))


def stream_text(r):
    """The text of a stream, after checking every event is JSON and it ended properly."""
    datas = [e["data"] for e in r.events]
    check(datas, "empty stream")
    out = []
    if datas[-1] == "[DONE]":   # OpenAI
        for d in datas[:-1]:
            j = json.loads(d)
            for c in j.get("choices", []):
                out.append(c.get("delta", {}).get("content") or "")
    else:                       # Anthropic: ends with message_stop
        evs = [json.loads(d) for d in datas]
        check(evs[-1].get("type") == "message_stop", "stream did not end with message_stop: %r" % datas[-3:])
        for e in evs:
            if e.get("type") == "content_block_delta":
                out.append(e["delta"].get("text", ""))
    return "".join(out)


@test
def paraphrase_hits_unrelated_misses():
    port = h.free_port()
    g = h.Gateway(config(port))
    try:
        n0 = upstream_count()
        a = chat(port, "basic", PROMPT)
        h.expect_status(a, 200)
        check(a.header("x-gateway-cache") == "MISS", "first: %r" % a)
        check(sim_of(a) is not None and sim_of(a) < THRESHOLD, "first similarity %r" % sim_of(a))
        check(upstream_count() == n0 + 1, "the first request reaches the upstream")
        b = chat(port, "basic", PARAPHRASE)
        h.expect_status(b, 200)
        check(b.header("x-gateway-cache") == "HIT", "paraphrase: %r" % b)
        check(THRESHOLD <= sim_of(b) < 1.0, "paraphrase similarity %r" % sim_of(b))
        check(content_of(b) == content_of(a), "a hit answers what the first one got")
        check(b.header("x-gateway-cost-usd") == "0.0000000000", "a hit costs nothing: %r" % b.header("x-gateway-cost-usd"))
        check(b.header("x-gateway-attempts") in (None, "0"), "no attempts on a hit")
        check(upstream_count() == n0 + 1, "the paraphrase never reaches the upstream")
        c = chat(port, "basic", UNRELATED)
        h.expect_status(c, 200)
        check(c.header("x-gateway-cache") == "MISS" and sim_of(c) < 0.5, "unrelated: %r %r" % (c, sim_of(c)))
        check(upstream_count() == n0 + 2, "an unrelated prompt reaches the upstream")
        check(PROMPT in content_of(a) and UNRELATED in content_of(c), "answers are the upstream's")
        # the access log line carries the score
        ids = [r.header("x-gateway-request-id") for r in (a, b, c)]

        def sims():   # by request id: two workers' lines interleave in any order
            s = {x.get("request_id"): x.get("cache_similarity") for x in g.access_log()}
            return [s[i] for i in ids] if all(i in s for i in ids) else None
        s = h.wait_for(sims, 5, what="three access log lines")
        check(abs(s[1] - sim_of(b)) < 0.001 and abs(s[2] - sim_of(c)) < 0.001 and s[1] >= THRESHOLD,
              "access log similarities %r" % s)
    finally:
        stop_clean(g)


@test
def other_key_does_not_see_the_entry():
    port = h.free_port()
    g = h.Gateway(config(port))
    try:
        h.expect_status(chat(port, "basic", PROMPT), 200)   # stored by an earlier test, or now
        n0 = upstream_count()
        r = chat(port, "other", PROMPT)
        h.expect_status(r, 200)
        check(r.header("x-gateway-cache") == "MISS", "another key's entry must not answer: %r" % r)
        check(upstream_count() == n0 + 1, "the other key's request reaches the upstream")
    finally:
        stop_clean(g)


@test
def guards_tools_temperature_optout():
    port = h.free_port()
    g = h.Gateway(config(port))
    try:
        h.expect_status(chat(port, "guards", PROMPT), 200)
        n0 = upstream_count()
        tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
        cases = [
            ("tools", {"tools": tools}, None),
            ("temperature", {"temperature": 1.5}, None),
            ("semantic header", {}, {"X-Gateway-Semantic-Cache": "off"}),
            ("no-cache", {}, {"Cache-Control": "no-cache"}),
            ("no-store", {}, {"Cache-Control": "no-store"}),
            ("bypass", {}, {"X-Gateway-Cache": "bypass"}),
        ]
        for i, (what, extra, hdrs) in enumerate(cases):
            r = chat(port, "guards", PROMPT, headers=hdrs, **extra)
            h.expect_status(r, 200)
            check(r.header("x-gateway-cache") != "HIT", "%s: answered from the cache: %r" % (what, r))
            check(upstream_count() == n0 + i + 1, "%s: did not reach the upstream" % what)
        # a tool message in the conversation is a guard too
        msgs = [{"role": "user", "content": PROMPT},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "Paris"}]
        r = h.http_request(port, "POST", "/v1/chat/completions", body={"model": "sem", "messages": msgs},
                           key=KEYS["guards"])
        h.expect_status(r, 200)
        check(r.header("x-gateway-cache") != "HIT", "tool messages: %r" % r)
        # a low temperature is fine, and the guarded requests stored nothing new: still the first answer
        r = chat(port, "guards", PARAPHRASE, temperature=0.2)
        check(r.header("x-gateway-cache") == "HIT", "temperature 0.2: %r" % r)
    finally:
        stop_clean(g)


@test
def errors_are_never_stored():
    port = h.free_port()
    g = h.Gateway(config(port))
    try:
        bad = "MOCK_STATUS=400 how many moons does jupiter have"
        n0 = upstream_count()
        for i in range(2):
            r = chat(port, "errors", bad)
            h.expect_status(r, 400)
            check(r.header("x-gateway-cache") != "HIT", "an error was answered from the cache: %r" % r)
        check(upstream_count() == n0 + 2, "both error requests reached the upstream")
    finally:
        stop_clean(g)


@test
def streaming_hit_is_a_valid_stream():
    port = h.free_port()
    g = h.Gateway(config(port))
    try:
        n0 = upstream_count()
        a = chat(port, "stream", PROMPT, stream=True)
        h.expect_status(a, 200)
        ta = stream_text(a)
        check(len(ta) > 0, "first stream text %r" % ta)
        b = chat(port, "stream", PARAPHRASE, stream=True)
        h.expect_status(b, 200)
        check(b.header("x-gateway-cache") == "HIT", "streamed paraphrase: %r" % b)
        check(b.header("content-type", "").startswith("text/event-stream"), "content type %r" % b.header("content-type"))
        check(stream_text(b) == ta, "the replayed stream says what the first said")
        check(upstream_count() == n0 + 1, "the streamed paraphrase never reaches the upstream")
        # a stream and a non-stream request never share answers
        c = chat(port, "stream", PARAPHRASE)
        check(c.header("x-gateway-cache") == "MISS", "non-stream after stream: %r" % c)
    finally:
        stop_clean(g)


@test
def anthropic_messages_hit_plain_and_streamed():
    port = h.free_port()
    g = h.Gateway(config(port))
    try:
        n0 = upstream_count()
        a = chat(port, "msgs", PROMPT, path="/v1/messages")
        h.expect_status(a, 200)
        b = chat(port, "msgs", PARAPHRASE, path="/v1/messages")
        h.expect_status(b, 200)
        check(b.header("x-gateway-cache") == "HIT", "messages paraphrase: %r" % b)
        check(b.json().get("type") == "message" and content_of(b) == content_of(a), "messages hit %r" % b.json())
        s1 = chat(port, "msgs", PROMPT, stream=True, path="/v1/messages")
        h.expect_status(s1, 200)
        t1 = stream_text(s1)
        s2 = chat(port, "msgs", PARAPHRASE, stream=True, path="/v1/messages")
        check(s2.header("x-gateway-cache") == "HIT", "messages stream paraphrase: %r" % s2)
        check(stream_text(s2) == t1 and t1, "messages stream replay %r vs %r" % (stream_text(s2), t1))
        check(upstream_count() == n0 + 2, "two upstream calls: one plain, one streamed")
    finally:
        stop_clean(g)


@test
def shared_between_processes_through_redis():
    p1, p2 = h.free_port(), h.free_port()
    g1 = h.Gateway(config(p1))
    g2 = h.Gateway(config(p2))
    try:
        n0 = upstream_count()
        h.expect_status(chat(p1, "cross", PROMPT), 200)
        r = chat(p2, "cross", PARAPHRASE)
        h.expect_status(r, 200)
        check(r.header("x-gateway-cache") == "HIT", "the other process did not find the entry: %r" % r)
        check(upstream_count() == n0 + 1, "the other process answered without the upstream")
        # and every worker of the second process finds it (fresh connections spread over both workers)
        for _ in range(6):
            check(chat(p2, "cross", PARAPHRASE).header("x-gateway-cache") == "HIT", "a worker missed it")
        check(upstream_count() == n0 + 1, "no upstream call for the repeats")
    finally:
        stop_clean(g1)
        stop_clean(g2)


@test
def embeddings_from_an_upstream_alias():
    port = h.free_port()
    g = h.Gateway(config(port))
    try:
        mock().reset()
        a = chat(port, "upemb", PROMPT, model="sem-up")
        h.expect_status(a, 200)
        b = chat(port, "upemb", PROMPT, model="sem-up", temperature=0.5)   # not an exact-cache repeat
        h.expect_status(b, 200)
        check(b.header("x-gateway-cache") == "HIT" and sim_of(b) >= 0.9999, "upstream embedding: %r" % b)
        reqs = mock().requests()
        check(sum(1 for x in reqs if x["path"].endswith("/embeddings")) == 2, "two embedding calls upstream")
        check(sum(1 for x in reqs if x["path"].endswith("/chat/completions")) == 1, "one chat call upstream")
    finally:
        stop_clean(g)


@test
def metrics_count_hits_misses_skips():
    port, mport = h.free_port(), h.free_port()
    g = h.Gateway(config(port, mport=mport))
    try:
        chat(port, "metrics", "Which river flows through Vienna?")
        chat(port, "metrics", "Which river flows through Vienna")
        chat(port, "metrics", "Which river flows through Vienna?", temperature=1.9)
        chat(port, "metrics", "Which river flows through Vienna?", headers={"X-Gateway-Semantic-Cache": "off"})
        text = h.http_request(mport, "GET", "/metrics").text
        want = {'result="hit",reason=""': 1, 'result="miss",reason=""': 1,
                'result="skip",reason="temperature"': 1, 'result="skip",reason="optout"': 1}
        for labels, n in want.items():
            line = "gatewayllm_semantic_cache_total{%s} %d" % (labels, n)
            check(line in text, "missing %r in metrics" % line)
    finally:
        stop_clean(g)


@test
def redis_down_is_a_miss_not_a_failure():
    port = h.free_port()
    redis("stop")
    try:
        g = h.Gateway(config(port, workers=1))
        try:
            n0 = upstream_count()
            a = chat(port, "down", PROMPT)
            h.expect_status(a, 200)
            check(a.header("x-gateway-cache") == "MISS", "first with Redis down %r" % a)
            b = chat(port, "down", PARAPHRASE)   # the worker's own memory still answers
            h.expect_status(b, 200)
            check(b.header("x-gateway-cache") == "HIT", "worker memory with Redis down %r" % b)
            check(upstream_count() == n0 + 1, "one upstream call")
        finally:
            stop_clean(g)
    finally:
        redis("start")


def teardown():
    if Env.mock:
        Env.mock.stop()


def main():
    return h.run(teardown=teardown, suite_timeout=600)


if __name__ == "__main__":
    sys.exit(main())
