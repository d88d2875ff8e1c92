#!/usr/bin/env python3
"""The Responses API (/v1/responses) through the gateway, beyond the SDK suite:
stored answers per key and across workers, the store's bounds, what the
providers receive, the route's limits, cost, cache, fallbacks, access log and
metrics, streams cut by the upstream, and hostile bodies.

A 2-worker gateway in front of mock_upstream.py (OpenAI format, and the
Anthropic format of mock_dialects.py). No timing assertion; every loop is
bounded."""
import json
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, test  # noqa: E402

KEY_A = "sk-gw-" + secrets.token_urlsafe(24)
KEY_B = "sk-gw-" + secrets.token_urlsafe(24)
KEY_RL = "sk-gw-" + secrets.token_urlsafe(24)


class Env:
    mock = None
    gw = None
    mport = 0


ENV = Env()


def config(mock, mport, **extra):
    root = mock.base_url[:-len("/v1")]
    dead = "http://127.0.0.1:%d/v1" % h.free_port()   # nothing listens: connection refused
    c = {
        "listen": "127.0.0.1:%d" % h.free_port(),
        "workers": 2,
        "metrics_listen": "127.0.0.1:%d" % mport,
        "responses": {"max_per_key": 3, "max_entry_kb": 8},
        "models": [
            {"alias": "oai", "deployments": [{"provider": "openai_compatible", "model": "gpt-x-dialect",
                                              "base_url": mock.base_url, "api_key": "sk-up-" + secrets.token_hex(8),
                                              "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}]},
            {"alias": "claude", "deployments": [{"provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                                                 "base_url": root, "api_key": "sk-ant-" + secrets.token_hex(8)}]},
            {"alias": "mock", "deployments": [{"provider": "mock", "model": "mock-1"}]},
            {"alias": "decorated", "prompt": {"system_prefix": "You are Acme's assistant.",
                                              "defaults": {"temperature": 0.2, "max_tokens": 77}},
             "deployments": [{"provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                              "base_url": root, "api_key": "sk-ant-" + secrets.token_hex(8)}]},
            {"alias": "cached", "cache": {"ttl_s": 60},
             "deployments": [{"provider": "openai_compatible", "model": "gpt-x-dialect",
                              "base_url": mock.base_url, "api_key": "sk-up-" + secrets.token_hex(8)}]},
            {"alias": "falls", "fallbacks": ["oai"], "router": {"max_attempts": 1},
             "deployments": [{"provider": "openai_compatible", "model": "gpt-x-dialect", "base_url": dead,
                              "api_key": "sk-up-" + secrets.token_hex(8)}]},
        ],
        "keys": [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B},
                 {"name": "limited", "key": KEY_RL, "rpm_limit": 2}],
    }
    c.update(extra)
    return c


def setup():
    ENV.mock = h.Mock("resp")
    ENV.mport = h.free_port()
    ENV.gw = h.Gateway(config(ENV.mock, ENV.mport))


def post(body, key=KEY_A, sse=False, gw=None):
    g = gw or ENV.gw
    return h.http_request(g.port, "POST", "/v1/responses", json.dumps(body).encode(), key=key, sse=sse)


def get(path, key=KEY_A, method="GET", gw=None):
    g = gw or ENV.gw
    return h.http_request(g.port, method, path, key=key)


def events(resp):
    return [json.loads(e["data"]) for e in resp.events]


def create(text, model="oai", key=KEY_A, **kw):
    body = {"model": model, "input": text}
    body.update(kw)
    r = post(body, key=key)
    h.expect_status(r, 200)
    return r.json()


@test
def test_stored_per_key_whichever_worker_answers():
    r = create("remember me")
    rid = r["id"]
    check(rid.startswith("resp_") and r["store"] is True, "id/store %r" % r)
    for _ in range(20):   # 2 workers: both must find it
        g = get("/v1/responses/" + rid)
        h.expect_status(g, 200)
        check(g.json() == r, "retrieved %r != created %r" % (g.text[:200], json.dumps(r)[:200]))
    # another key sees nothing, cannot delete it, cannot continue from it
    g = get("/v1/responses/" + rid, key=KEY_B)
    h.expect_status(g, 404)
    h.expect_openai_error(g)
    h.expect_status(get("/v1/responses/" + rid, key=KEY_B, method="DELETE"), 404)
    h.expect_status(get("/v1/responses/%s/input_items" % rid, key=KEY_B), 404)
    c = post({"model": "oai", "input": "more", "previous_response_id": rid}, key=KEY_B)
    h.expect_status(c, 404)
    check(h.expect_openai_error(c)["param"] == "previous_response_id", "param %r" % c.text)
    items = get("/v1/responses/%s/input_items?order=asc" % rid).json()
    check(items["object"] == "list" and items["data"][0]["content"][0]["text"] == "remember me", "items %r" % items)
    d = get("/v1/responses/" + rid, method="DELETE")
    h.expect_status(d, 200)
    check(d.json() == {"id": rid, "object": "response", "deleted": True}, "delete %r" % d.text)
    for _ in range(4):
        h.expect_status(get("/v1/responses/" + rid), 404)


@test
def test_previous_response_carries_the_conversation_to_the_provider():
    ENV.mock.reset()
    tag = "TAG" + secrets.token_hex(4)
    r1 = create("first %s" % tag, instructions="be brief")
    r2 = create("second %s" % tag, previous_response_id=r1["id"], instructions="be kind")
    recs = ENV.mock.wait_find("second %s" % tag)
    msgs = recs[-1]["body"]["messages"]
    roles = [m["role"] for m in msgs]
    # instructions are not carried over (as the API): only this request's
    check(roles == ["system", "user", "assistant", "user"], "roles %r" % roles)
    check(msgs[0]["content"] == "be kind", "system %r" % msgs[0])
    check(r1["output"][0]["content"][0]["text"] in json.dumps(msgs[2]), "assistant turn %r" % msgs[2])
    check(r2["previous_response_id"] == r1["id"], "echo %r" % r2["previous_response_id"])
    # a chain of three: all five turns in order, and input_items has the whole conversation
    r3 = create("third %s" % tag, previous_response_id=r2["id"])
    msgs = ENV.mock.wait_find("third %s" % tag)[-1]["body"]["messages"]
    check([m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"], "chain %r" % msgs)
    items = get("/v1/responses/%s/input_items" % r3["id"]).json()["data"]
    check(len(items) == 5 and items[0]["content"][0]["text"] == "third %s" % tag, "items (newest first) %r" % items)


@test
def test_anthropic_provider_receives_translated_items():
    ENV.mock.reset()
    tag = "TAG" + secrets.token_hex(4)
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    r = post({"model": "claude", "instructions": "be brief", "tools": tools, "max_output_tokens": 50, "input": [
        {"role": "user", "content": "weather %s" % tag},
        {"type": "function_call", "call_id": "toolu_9", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
        {"type": "function_call_output", "call_id": "toolu_9", "output": "snow"}]})
    h.expect_status(r, 200)
    check(r.header("x-gateway-provider") == "anthropic", "provider %r" % r.header("x-gateway-provider"))
    check("tool said: snow" in r.json()["output"][0]["content"][0]["text"], "answer %r" % r.text[:300])
    body = ENV.mock.wait_find(tag)[-1]["body"]
    check(body["system"] == "be brief" and body["max_tokens"] == 50, "system/max_tokens %r" % body)
    check(body["messages"][1]["content"][0] == {"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                                                 "input": {"city": "Oslo"}}, "tool_use %r" % body["messages"][1])
    check(body["messages"][2]["content"][0]["type"] == "tool_result", "tool_result %r" % body["messages"][2])


@test
def test_prompt_decoration_applies_to_responses():
    ENV.mock.reset()
    tag = "TAG" + secrets.token_hex(4)
    create("hello %s" % tag, model="decorated", instructions="be brief")
    body = ENV.mock.wait_find(tag)[-1]["body"]
    check(body["system"] == "You are Acme's assistant.\n\nbe brief", "system %r" % body.get("system"))
    check(body["temperature"] == 0.2 and body["max_tokens"] == 77, "defaults %r" % body)
    # the client's own settings win over the defaults
    create("again %s" % tag, model="decorated", temperature=0.9, max_output_tokens=12)
    body = ENV.mock.wait_find("again %s" % tag)[-1]["body"]
    check(body["system"] == "You are Acme's assistant." and body["temperature"] == 0.9 and body["max_tokens"] == 12,
          "client settings %r" % body)


@test
def test_store_bounds_and_store_false():
    # max_per_key 3: the oldest two of five are gone
    ids = [create("bounded %d" % i, key=KEY_B)["id"] for i in range(5)]
    for i, rid in enumerate(ids):
        h.expect_status(get("/v1/responses/" + rid, key=KEY_B), 404 if i < 2 else 200)
    # max_entry_kb 8: a larger conversation is answered but not kept
    big = create("x" * 9000)
    h.expect_status(get("/v1/responses/" + big["id"]), 404)
    nostore = create("forget me", store=False)
    check(nostore["store"] is False, "store echo %r" % nostore["store"])
    h.expect_status(get("/v1/responses/" + nostore["id"]), 404)


@test
def test_usage_cost_access_log_and_metrics():
    r = post({"model": "oai", "input": "count me MOCK_CACHED=2"})
    h.expect_status(r, 200)
    u = r.json()["usage"]
    check(u["input_tokens"] > 0 and u["input_tokens_details"]["cached_tokens"] == 2, "usage %r" % u)
    check(float(r.header("x-gateway-cost-usd", "-1")) > 0, "cost %r" % r.header("x-gateway-cost-usd"))
    rid = r.header("x-gateway-request-id")
    lines = h.wait_for(lambda: [ln for ln in ENV.gw.access_log() if ln.get("request_id") == rid], 5, what="access log")
    ln = lines[0]
    check(ln["path"] == "/v1/responses" and ln["status"] == 200 and ln["prompt_tokens"] == u["input_tokens"], "log %r" % ln)
    check(ln["cached_tokens"] == 2 and float(ln["cost_usd"]) > 0, "log usage %r" % ln)
    # a stream's usage too
    s = post({"model": "oai", "input": "stream me MOCK_CHUNKS=3", "stream": True}, sse=True)
    h.expect_status(s, 200)
    rid = s.header("x-gateway-request-id")
    ln = h.wait_for(lambda: [x for x in ENV.gw.access_log() if x.get("request_id") == rid], 5, what="stream log")[0]
    check(ln["stream"] is True and ln["completion_tokens"] > 0, "stream log %r" % ln)
    m = h.http_request(ENV.mport, "GET", "/metrics").text
    check('gatewayllm_requests_total{model="oai"' in m, "no requests_total for the alias")


@test
def test_rate_limit_applies():
    # rpm_limit 2 without Redis: the workers share it out, so at most 2 of 6 pass
    rs = [post({"model": "mock", "input": "hi"}, key=KEY_RL) for _ in range(6)]
    codes = [r.status for r in rs]
    check(codes.count(200) <= 2 and codes.count(200) + codes.count(429) == 6 and codes[0] == 200, "codes %r" % codes)
    r = next(r for r in rs if r.status == 429)
    check(r.header("retry-after") is not None, "no Retry-After")
    h.expect_openai_error(r)


@test
def test_cache_hit():
    body = json.dumps({"model": "cached", "input": "cache me " + secrets.token_hex(4)}).encode()
    with h.Conn(ENV.gw.port) as c:   # one connection, one worker: its memory tier (no Redis here)
        r1 = c.request("POST", "/v1/responses", body, key=KEY_A)
        r2 = c.request("POST", "/v1/responses", body, key=KEY_A)
    h.expect_status(r1, 200)
    h.expect_status(r2, 200)
    check(r1.header("x-gateway-cache") == "MISS" and r2.header("x-gateway-cache") == "HIT",
          "cache %r %r" % (r1.header("x-gateway-cache"), r2.header("x-gateway-cache")))
    check(r1.json() == r2.json(), "a hit differs from the answer")


@test
def test_fallback_serves_stream_and_answer():
    r = post({"model": "falls", "input": "fall back"})
    h.expect_status(r, 200)
    check(r.header("x-gateway-fallback") == "oai", "fallback %r" % r.header("x-gateway-fallback"))
    s = post({"model": "falls", "input": "fall back MOCK_CHUNKS=2", "stream": True}, sse=True)
    h.expect_status(s, 200)
    types = [e.get("type") for e in events(s)]
    check(types[0] == "response.created" and types[-1] == "response.completed", "types %r" % types)


@test
def test_upstream_cut_ends_with_failed_event():
    for model in ("oai", "claude"):
        s = post({"model": model, "input": "cut MOCK_TRUNCATE MOCK_CHUNKS=3", "stream": True}, sse=True)
        h.expect_status(s, 200)
        evs = events(s)
        types = [e.get("type") for e in evs]
        check("response.completed" not in types, "%s: completed after a cut: %r" % (model, types))
        check(types[-2:] == ["response.failed", "error"], "%s: ending %r" % (model, types[-3:]))
        check(evs[-2]["response"]["status"] == "failed" and evs[-2]["response"]["error"]["message"], "failed %r" % evs[-2])
        check([e["sequence_number"] for e in evs] == list(range(len(evs))), "sequence numbers")
        check(any(t == "response.output_text.delta" for t in types), "no delta before the cut: %r" % types)


@test
def test_hostile_requests():
    port = ENV.gw.port
    cases = [
        (b"{not json", 400, None),
        (b"[]", 400, None),
        (json.dumps({"input": "x"}).encode(), 400, "model"),
        (json.dumps({"model": "oai", "input": "x", "stream": "yes"}).encode(), 400, "stream"),
        (json.dumps({"model": "oai", "input": [{"type": "computer_call"}]}).encode(), 400, "input"),
        (json.dumps({"model": "oai", "input": "x", "tools": [{"type": "code_interpreter"}]}).encode(), 400, "tools"),
        (("[" * 200 + "]" * 200).encode(), 400, None),
        (json.dumps({"model": "oai", "input": [{"role": "user", "content": "x"}] * 5000}).encode(), 400, "input"),
        (json.dumps({"model": "nope", "input": "x"}).encode(), 404, "model"),
    ]
    for body, status, param in cases:
        r = h.http_request(port, "POST", "/v1/responses", body, key=KEY_A)
        h.expect_status(r, status)
        err = h.expect_openai_error(r)
        check(param is None or err["param"] == param, "%r: param %r, want %r" % (body[:60], err["param"], param))
    big = b'{"model":"oai","input":"' + b"x" * (5 << 20) + b'"}'
    h.expect_status(h.http_request(port, "POST", "/v1/responses", big, key=KEY_A), 413)
    h.expect_status(h.http_request(port, "POST", "/v1/responses", b'{"model":"oai","input":"x"}'), 401)
    h.expect_status(get("/v1/responses/resp_x", key=None), 401)
    h.expect_status(get("/v1/responses/" + "a" * 200), 404)
    h.expect_status(get("/v1/responses/resp_%00x"), 404)
    h.expect_status(get("/v1/responses/resp_x/other"), 404)
    h.expect_status(get("/v1/responses/resp_x", method="PUT"), 405)
    h.expect_status(get("/v1/responses/resp_x/input_items", method="DELETE"), 405)
    check(ENV.gw.alive(), "the gateway died")


def teardown():
    if ENV.gw:
        ENV.gw.stop()
    if ENV.mock:
        ENV.mock.stop()


def after_each(name):
    reports = ENV.gw.sanitizer_reports() if ENV.gw else ""
    check(not reports, "sanitizer report: %s" % reports[:2000])


if __name__ == "__main__":
    setup()
    sys.exit(h.run(after_each=after_each, teardown=teardown, suite_timeout=170))
