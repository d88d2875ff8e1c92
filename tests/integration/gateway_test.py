#!/usr/bin/env python3
"""Black-box integration tests of bin/gateway against a fake OpenAI upstream.

    python3 tests/integration/gateway_test.py [name-substring ...]

stdout: only the final "N passed, N failed" line. Progress and failures: stderr.
GW_BIN_DIR selects the directory holding the gateway binary (default <repo>/bin).
"""
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, expect_status, expect_openai_error, test  # noqa: E402
from mock_upstream import embedding_vector  # noqa: E402

KEY_A = "sk-gw-" + secrets.token_urlsafe(32)          # all aliases
KEY_B = "sk-gw-" + secrets.token_urlsafe(32)          # models: [gpt-4o-mini]
UPSTREAM_KEY = "sk-upstream-test-" + secrets.token_hex(12)
SECRETS = {"KEY_A": KEY_A, "KEY_B": KEY_B, "UPSTREAM_KEY": UPSTREAM_KEY}
ALL_ALIASES = ["gpt-4o-mini", "other-model", "text-embedding", "mock-alias", "dead-alias",
               "reload-alias", "idle-alias", "priced", "mock-priced"]


def uniq():
    return "tag" + uuid.uuid4().hex[:12]


def make_config(port, mock, dead_port, workers=2, reload_base_url=None):
    def oc(model, base_url):
        return {"provider": "openai_compatible", "model": model, "base_url": base_url,
                "api_key": UPSTREAM_KEY}
    cfg = {
        "listen": "127.0.0.1:%d" % port,
        "workers": workers,
        "max_body_bytes": 65536,
        "client_timeout_ms": 1000,
        "timeouts": {"connect_ms": 2000, "first_byte_ms": 500, "idle_ms": 5000, "total_ms": 60000},
        "models": [
            {"alias": "gpt-4o-mini", "deployments": [oc("upstream-model-name", mock.base_url)]},
            {"alias": "other-model", "deployments": [oc("other-upstream", mock.base_url)]},
            {"alias": "text-embedding", "deployments": [oc("upstream-embed", mock.base_url)]},
            {"alias": "mock-alias", "deployments": [{"provider": "mock", "model": "mock-1"}]},
            {"alias": "dead-alias",
             "deployments": [oc("dead-upstream", "http://127.0.0.1:%d/v1" % dead_port)]},
            {"alias": "reload-alias",
             "deployments": [oc("reload-upstream", reload_base_url or mock.base_url)]},
            {"alias": "idle-alias",
             "deployments": [dict(oc("idle-upstream", mock.base_url), timeouts={"idle_ms": 300})]},
            # priced by the built-in table (dated id -> gpt-4o-mini: 0.15 / 0.60 per 1M)
            {"alias": "priced", "deployments": [oc("gpt-4o-mini-2024-07-18", mock.base_url)]},
            # the mock costs 0 unless overridden
            {"alias": "mock-priced", "deployments": [{"provider": "mock", "model": "mock-1",
                                                      "input_cost_per_mtok": 1000,
                                                      "output_cost_per_mtok": 2000}]},
        ],
        "keys": [
            {"name": "team-a", "key": KEY_A},
            {"name": "team-b", "key": KEY_B, "models": ["gpt-4o-mini"]},
        ],
    }
    # these tests look at one attempt's error mapping: no retries, no breaker
    # (router_test.py covers those)
    for m in cfg["models"]:
        m["router"] = {"max_attempts": 1, "breaker_failures": 1000000, "breaker_min_requests": 1000000}
    return cfg


def chat(model, text, stream=False, **extra):
    b = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        b["stream"] = True
    b.update(extra)
    return b


def content_of(resp):
    return resp.json()["choices"][0]["message"]["content"]


def served_by(resp):
    m = re.search(r"mock\[([^\]]+)\]", resp.text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------
# shared environment: one mock upstream + one gateway for most tests
# --------------------------------------------------------------------------
class Env:
    mock = None
    gw = None
    dead_port = None
    start_error = None
    children = None


ENV = Env()


def mock():
    if ENV.mock is None or not ENV.mock.alive():
        ENV.mock = h.Mock("mock")
    if ENV.dead_port is None:
        ENV.dead_port = h.free_port()
    return ENV.mock


def gw():
    """The shared gateway (started on first use; restarted if it died)."""
    if ENV.start_error is not None:
        raise h.GatewayError("shared gateway failed to start earlier: %s" % ENV.start_error)
    if ENV.gw is None:
        m = mock()
        port = h.free_port()
        try:
            ENV.gw = h.Gateway(make_config(port, m, ENV.dead_port))
        except Exception as e:
            ENV.start_error = str(e).splitlines()[0] if str(e) else repr(e)
            raise
        try:
            h.wait_for(lambda: len(ENV.gw.children()) >= 1, 10, what="gateway workers")
        except AssertionError:
            pass
        ENV.children = set(ENV.gw.children())
    return ENV.gw


def port():
    return gw().port


def after_each(name):
    """Fails the test that just ran if the shared gateway crashed during it."""
    if ENV.mock is not None and not ENV.mock.alive():
        rc = ENV.mock.proc.returncode
        ENV.mock = None
        raise AssertionError("the shared mock upstream exited (code %s) during this test; "
                             "a negative code is the signal that killed it" % rc)
    g = ENV.gw
    if g is None:
        return
    problems = []
    if not g.alive():
        problems.append("shared gateway master exited (code %s)" % g.proc.returncode)
    else:
        now = set(g.children())
        gone = (ENV.children or set()) - now
        if gone:
            problems.append("worker(s) %s of the shared gateway died (crash?); children now %s" % (
                sorted(gone), sorted(now)))
        ENV.children = now
    new_err = g.new_stderr()
    san = [l for l in new_err.splitlines() if h.SANITIZER_RE.search(l)]
    if san:
        problems.append("sanitizer report: %s" % san[:3])
    if problems:
        if new_err.strip():
            h.log("  gateway stderr during %s:\n    %s" % (
                name, "\n    ".join(new_err.strip().splitlines()[-25:])))
        if not g.alive():
            g.stop(timeout=2)
            ENV.gw = None
        raise AssertionError("; ".join(problems))


def teardown():
    if ENV.gw is not None:
        ENV.gw.stop()
    if ENV.mock is not None:
        ENV.mock.stop()


# --------------------------------------------------------------------------
# basics
# --------------------------------------------------------------------------
@test
def test_healthz():
    r = h.http_request(port(), "GET", "/healthz")
    expect_status(r, 200)


@test
def test_readyz():
    r = h.http_request(port(), "GET", "/readyz")
    expect_status(r, 200)


@test
def test_models_lists_only_allowed_aliases():
    r = h.http_request(port(), "GET", "/v1/models", key=KEY_B)
    expect_status(r, 200)
    j = r.json()
    check(j.get("object") == "list", "object != list: %r" % r)
    check(isinstance(j.get("data"), list), "data not a list: %r" % r)
    for d in j["data"]:
        check(d.get("object") == "model" and isinstance(d.get("id"), str), "bad entry %r" % d)
    ids = sorted(d["id"] for d in j["data"])
    check(ids == ["gpt-4o-mini"], "key limited to [gpt-4o-mini] sees %s" % ids)
    r = h.http_request(port(), "GET", "/v1/models", key=KEY_A)
    expect_status(r, 200)
    ids = sorted(d["id"] for d in r.json()["data"])
    check(ids == sorted(ALL_ALIASES), "unrestricted key sees %s, want %s" % (ids, sorted(ALL_ALIASES)))


# --------------------------------------------------------------------------
# proxying
# --------------------------------------------------------------------------
@test
def test_chat_nonstreaming_via_upstream():
    tag = uniq()
    body = chat("gpt-4o-mini", "hello " + tag, temperature=0.2)
    r = h.http_request(port(), "POST", "/v1/chat/completions", body, key=KEY_A)
    expect_status(r, 200)
    j = r.json()
    check(j.get("object") == "chat.completion", "object: %r" % r)
    msg = j["choices"][0]["message"]
    check(msg.get("role") == "assistant", "role: %r" % msg)
    check(msg.get("content") == "mock[mock] reply to: hello " + tag, "content not from the mock: %r" % msg)
    check(j["choices"][0].get("finish_reason") == "stop", "finish_reason: %r" % j["choices"][0])
    u = j.get("usage") or {}
    check(all(isinstance(u.get(k), int) for k in ("prompt_tokens", "completion_tokens", "total_tokens")),
          "usage: %r" % u)

    recs = mock().wait_find(tag)
    check(len(recs) == 1, "upstream saw %d requests for one call: %r" % (len(recs), recs))
    rec = recs[0]
    check(rec["method"] == "POST" and rec["path"] == "/v1/chat/completions",
          "upstream request line: %s %s" % (rec["method"], rec["path"]))
    check(rec["body"].get("model") == "upstream-model-name",
          "upstream model is %r, want the deployment's model" % rec["body"].get("model"))
    check(rec["body"].get("messages") == body["messages"], "messages altered: %r" % rec["body"])
    auth = rec["headers"].get("authorization")
    check(auth == "Bearer " + UPSTREAM_KEY, "upstream Authorization is %r" % auth)
    check(KEY_A not in json.dumps(rec["headers"]) and KEY_A not in json.dumps(rec["body"]),
          "virtual key forwarded upstream: %r" % rec["headers"])

    rid = r.header("x-gateway-request-id")
    check(rid, "no X-Gateway-Request-Id: %r" % r)
    check(r.header("x-gateway-provider"), "no X-Gateway-Provider: %r" % r)
    check(r.header("x-gateway-model") == "upstream-model-name", "X-Gateway-Model: %r" % r.header("x-gateway-model"))
    check(r.header("x-gateway-attempts") == "1", "X-Gateway-Attempts: %r" % r.header("x-gateway-attempts"))


@test
def test_request_ids_unique():
    ids = []
    for i in range(5):
        model = "gpt-4o-mini" if i % 2 else "mock-alias"
        r = h.http_request(port(), "POST", "/v1/chat/completions", chat(model, "id %d" % i), key=KEY_A)
        expect_status(r, 200)
        rid = r.header("x-gateway-request-id")
        check(rid, "no X-Gateway-Request-Id: %r" % r)
        ids.append(rid)
    check(len(set(ids)) == len(ids), "request ids repeat: %s" % ids)


@test
def test_builtin_mock_provider_nonstreaming():
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("mock-alias", "hi there"), key=KEY_A)
    expect_status(r, 200)
    j = r.json()
    check(j.get("object") == "chat.completion", "object: %r" % r)
    msg = j["choices"][0]["message"]
    check(msg.get("role") == "assistant" and isinstance(msg.get("content"), str), "message: %r" % msg)
    u = j.get("usage") or {}
    check(all(isinstance(u.get(k), int) for k in ("prompt_tokens", "completion_tokens", "total_tokens")),
          "usage missing: %r" % r)


def check_sse_stream(r, want_usage):
    expect_status(r, 200)
    check(r.header("content-type", "").startswith("text/event-stream"), "content-type: %r" % r)
    check(r.complete, "stream did not finish: %r" % r)
    datas = [e["data"] for e in r.events]
    check(datas and datas[-1] == "[DONE]", "stream does not end with [DONE]: %r" % datas[-3:])
    chunks = [json.loads(d) for d in datas[:-1]]
    for c in chunks:
        check(c.get("object") == "chat.completion.chunk", "chunk object: %r" % c)
    text = "".join((c["choices"][0].get("delta") or {}).get("content") or ""
                   for c in chunks if c.get("choices"))
    if want_usage:
        us = [c["usage"] for c in chunks if c.get("usage")]
        check(us and isinstance(us[-1].get("total_tokens"), int), "no usage chunk: %r" % datas)
    return chunks, text


@test
def test_builtin_mock_provider_streaming():
    body = chat("mock-alias", "stream please", stream=True, stream_options={"include_usage": True})
    with h.Conn(port()) as c:
        r = c.request("POST", "/v1/chat/completions", body, key=KEY_A, sse=True)
    chunks, text = check_sse_stream(r, want_usage=True)
    check(text, "no content streamed: %r" % r.events)


@test
def test_streaming_is_relayed_incrementally():
    tag = uniq()
    body = chat("gpt-4o-mini", "%s MOCK_CHUNKS=5 MOCK_GAP_MS=300" % tag, stream=True)
    with h.Conn(port()) as c:
        r = c.request("POST", "/v1/chat/completions", body, key=KEY_A, sse=True)
    chunks, text = check_sse_stream(r, want_usage=False)
    check(text == "chunk-0 chunk-1 chunk-2 chunk-3 chunk-4 ", "content out of order or missing: %r" % text)
    content_events = [e for e in r.events if '"chunk-' in e["data"]]
    first_read = content_events[0]["recv"]
    at_first = sum(1 for e in content_events if e["recv"] == first_read)
    h.log("  content chunks per read: %s" % [e["recv"] for e in content_events])
    check(at_first < 5, "all 5 chunks arrived in the same read as the first one: the gateway "
                        "buffered the stream instead of relaying it")
    rec = mock().wait_find(tag)[0]
    check(rec["body"].get("stream") is True, "upstream request not streaming: %r" % rec["body"])


@test
def test_streaming_usage_chunk_relayed():
    tag = uniq()
    body = chat("gpt-4o-mini", "%s MOCK_CHUNKS=3" % tag, stream=True, stream_options={"include_usage": True})
    with h.Conn(port()) as c:
        r = c.request("POST", "/v1/chat/completions", body, key=KEY_A, sse=True)
    chunks, text = check_sse_stream(r, want_usage=True)
    check(text == "chunk-0 chunk-1 chunk-2 ", "content: %r" % text)


def expected_cost(usage, inp, out, cached_rate=None):
    """The gateway's cost string: integer 1e-10 USD, 10 decimals."""
    from decimal import Decimal
    p, c = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    cached = ((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    cr = Decimal(str(cached_rate if cached_rate is not None else inp))
    e10 = ((p - cached) * Decimal(str(inp)) + cached * cr + c * Decimal(str(out))) * 10000
    return "%.10f" % (Decimal(int(e10.to_integral_value())) / Decimal(10 ** 10))


@test
def test_cost_header_from_price_table():
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("priced", "what does this cost"), key=KEY_A)
    expect_status(r, 200)
    u = r.json()["usage"]
    want = expected_cost(u, 0.15, 0.60)
    check(r.header("x-gateway-cost-usd") == want, "X-Gateway-Cost-Usd %r, want %r for %r" % (
        r.header("x-gateway-cost-usd"), want, u))
    check(float(want) > 0, "expected a non-zero cost")


@test
def test_cost_header_deployment_override_and_unpriced_mock():
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("mock-priced", "one two three"), key=KEY_A)
    expect_status(r, 200)
    want = expected_cost(r.json()["usage"], 1000, 2000)
    check(r.header("x-gateway-cost-usd") == want, "override: %r want %r" % (r.header("x-gateway-cost-usd"), want))
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("mock-alias", "free"), key=KEY_A)
    expect_status(r, 200)
    check(r.header("x-gateway-cost-usd") == "0.0000000000", "mock without price: %r" % r.header("x-gateway-cost-usd"))
    bad = h.http_request(port(), "POST", "/v1/chat/completions", chat("nope-alias", "x"), key=KEY_A)
    check(bad.header("x-gateway-cost-usd") is None, "a refused request carries a cost header")


@test
def test_stream_usage_requested_upstream_and_hidden_from_client():
    tag = uniq()
    body = chat("priced", "%s MOCK_CHUNKS=3" % tag, stream=True)
    with h.Conn(port()) as c:
        r = c.request("POST", "/v1/chat/completions", body, key=KEY_A, sse=True)
    chunks, text = check_sse_stream(r, want_usage=False)
    check(text == "chunk-0 chunk-1 chunk-2 ", "content: %r" % text)
    check(all(c.get("choices") for c in chunks), "the client saw a chunk it did not ask for: %r" % chunks)
    check(not any(c.get("usage") for c in chunks), "usage chunk leaked to the client: %r" % chunks)
    rec = mock().wait_find(tag)[0]
    check((rec["body"].get("stream_options") or {}).get("include_usage") is True,
          "the gateway did not ask upstream for usage: %r" % rec["body"])
    check(rec["body"].get("messages") == body["messages"], "messages altered: %r" % rec["body"])
    # the builtin mock honours the same request
    with h.Conn(port()) as c:
        r = c.request("POST", "/v1/chat/completions", chat("mock-priced", "a b c", stream=True), key=KEY_A, sse=True)
    chunks, text = check_sse_stream(r, want_usage=False)
    check(text and not any(c.get("usage") for c in chunks), "mock stream: %r" % chunks)
    # a client that asks keeps its own usage chunk and options
    tag = uniq()
    body = chat("priced", "%s MOCK_CHUNKS=2" % tag, stream=True, stream_options={"include_usage": True})
    with h.Conn(port()) as c:
        r = c.request("POST", "/v1/chat/completions", body, key=KEY_A, sse=True)
    check_sse_stream(r, want_usage=True)
    rec = mock().wait_find(tag)[0]
    check(rec["body"].get("stream_options") == {"include_usage": True}, "options changed: %r" % rec["body"])


@test
def test_completions_proxied():
    tag = uniq()
    r = h.http_request(port(), "POST", "/v1/completions",
                       {"model": "gpt-4o-mini", "prompt": "say hi " + tag, "max_tokens": 5}, key=KEY_A)
    expect_status(r, 200)
    j = r.json()
    check(j["choices"][0].get("text") == "mock[mock] reply to: say hi " + tag, "text: %r" % r)
    rec = mock().wait_find(tag)[0]
    check(rec["path"] == "/v1/completions", "upstream path %r" % rec["path"])
    check(rec["body"].get("model") == "upstream-model-name", "upstream model %r" % rec["body"].get("model"))
    check(rec["headers"].get("authorization") == "Bearer " + UPSTREAM_KEY, "upstream auth %r" % rec["headers"])


@test
def test_embeddings_proxied():
    tag = uniq()
    inputs = ["first " + tag, "second " + tag]
    r = h.http_request(port(), "POST", "/v1/embeddings",
                       {"model": "text-embedding", "input": inputs}, key=KEY_A)
    expect_status(r, 200)
    j = r.json()
    check(j.get("object") == "list" and len(j.get("data") or []) == 2, "shape: %r" % r)
    for i, d in enumerate(j["data"]):
        want = embedding_vector(inputs[d.get("index", i)])
        got = d.get("embedding")
        check(isinstance(got, list) and len(got) == len(want) and
              all(abs(a - b) < 1e-6 for a, b in zip(got, want)), "embedding %d: %r != %r" % (i, got, want))
    rec = mock().wait_find(tag)[0]
    check(rec["path"] == "/v1/embeddings", "upstream path %r" % rec["path"])
    check(rec["body"].get("model") == "upstream-embed", "upstream model %r" % rec["body"].get("model"))
    check(rec["body"].get("input") == inputs, "input altered: %r" % rec["body"])


# --------------------------------------------------------------------------
# auth
# --------------------------------------------------------------------------
@test
def test_auth_missing_key_401():
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("gpt-4o-mini", "x"))
    expect_status(r, 401)
    expect_openai_error(r)


@test
def test_auth_unknown_key_401():
    bogus = "sk-gw-" + secrets.token_urlsafe(32)
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("gpt-4o-mini", "x"), key=bogus)
    expect_status(r, 401)
    expect_openai_error(r)
    r = h.http_request(port(), "GET", "/v1/models", key=bogus)
    expect_status(r, 401)
    expect_openai_error(r)


@test
def test_auth_x_api_key_header():
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("gpt-4o-mini", "xak"),
                       headers={"x-api-key": KEY_A})
    expect_status(r, 200)
    check("reply to: xak" in content_of(r), "content: %r" % r)


@test
def test_auth_api_key_header():
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("gpt-4o-mini", "azure"),
                       headers={"api-key": KEY_A})
    expect_status(r, 200)
    check("reply to: azure" in content_of(r), "content: %r" % r)


@test
def test_auth_model_outside_key_scope_403():
    tag = uniq()
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("other-model", tag), key=KEY_B)
    expect_status(r, 403)
    expect_openai_error(r)
    check(not mock().find(tag), "a refused request reached the upstream")
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("gpt-4o-mini", "ok"), key=KEY_B)
    expect_status(r, 200)


@test
def test_unknown_alias_404():
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("no-such-model", "x"), key=KEY_A)
    expect_status(r, 404)
    expect_openai_error(r)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
POSITION_RE = re.compile(r"(line|column|col|position|pos|offset|byte|char(acter)?)\D{0,4}\d+", re.I)


@test
def test_malformed_json_400_names_position():
    raw = '{"model": "gpt-4o-mini", "messages": [}'
    r = h.http_request(port(), "POST", "/v1/chat/completions", raw, key=KEY_A)
    expect_status(r, 400)
    err = expect_openai_error(r)
    check(POSITION_RE.search(err["message"]), "message does not say where: %r" % err["message"])


@test
def test_missing_model_400():
    r = h.http_request(port(), "POST", "/v1/chat/completions",
                       {"messages": [{"role": "user", "content": "x"}]}, key=KEY_A)
    expect_status(r, 400)
    expect_openai_error(r)


@test
def test_missing_messages_400():
    r = h.http_request(port(), "POST", "/v1/chat/completions", {"model": "gpt-4o-mini"}, key=KEY_A)
    expect_status(r, 400)
    expect_openai_error(r)


@test
def test_wrong_types_are_4xx():
    cases = [
        ("model not a string", {"model": 123, "messages": [{"role": "user", "content": "x"}]}),
        ("messages not a list", {"model": "gpt-4o-mini", "messages": "hello"}),
        ("body is an array", [1, 2, 3]),
        ("empty body", ""),
        ("stream not a bool", {"model": "mock-alias", "stream": "yes",
                               "messages": [{"role": "user", "content": "x"}]}),
    ]
    bad = []
    for what, body in cases:
        r = h.http_request(port(), "POST", "/v1/chat/completions", body, key=KEY_A)
        if not (400 <= r.status < 500):
            bad.append("%s -> %r" % (what, r))
    check(not bad, "bad input not answered with a 4xx: %s" % bad)


@test
def test_body_over_max_body_bytes_413():
    body = chat("gpt-4o-mini", "x" * 200000)
    data = h.build_request("POST", "/v1/chat/completions", body, key=KEY_A)
    with h.Conn(port()) as c:
        try:
            c.send_raw(data)
        except OSError as e:
            h.log("  (send stopped early: %r)" % e)
        r = c.read_response()
    expect_status(r, 413)
    expect_openai_error(r)
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("mock-alias", "after"), key=KEY_A)
    expect_status(r, 200)


@test
def test_huge_header_rejected_and_gateway_survives():
    data = h.build_request("POST", "/v1/chat/completions", chat("mock-alias", "big"), key=KEY_A,
                           headers={"X-Big": "a" * 65536})
    outcome = None
    with h.Conn(port()) as c:
        try:
            c.send_raw(data)
            r = c.read_response()
            outcome = r.status
            check(400 <= r.status < 500, "64 KB header answered %r" % r)
        except (h.ConnectionClosed, ConnectionResetError, BrokenPipeError) as e:
            outcome = repr(e)
    h.log("  huge header -> %s" % outcome)
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("mock-alias", "after"), key=KEY_A)
    expect_status(r, 200)


@test
def test_wrong_method_405_or_404():
    r = h.http_request(port(), "GET", "/v1/chat/completions", key=KEY_A)
    expect_status(r, 405, 404)
    r = h.http_request(port(), "DELETE", "/v1/models", key=KEY_A)
    expect_status(r, 405, 404)


@test
def test_unknown_path_404():
    r = h.http_request(port(), "GET", "/v1/nope", key=KEY_A)
    expect_status(r, 404)
    r = h.http_request(port(), "POST", "/nope/at/all", {"a": 1}, key=KEY_A)
    expect_status(r, 404)


# --------------------------------------------------------------------------
# connection handling
# --------------------------------------------------------------------------
@test
def test_keepalive_50_sequential_requests():
    with h.Conn(port()) as c:
        for i in range(50):
            model = "gpt-4o-mini" if i % 2 == 0 else "mock-alias"
            try:
                r = c.request("POST", "/v1/chat/completions", chat(model, "ka %d" % i), key=KEY_A)
            except (h.ConnectionClosed, OSError) as e:
                raise AssertionError("request %d on the kept-alive connection failed: %r" % (i, e))
            expect_status(r, 200)
            check(not c.server_wants_close, "gateway closed the connection after request %d: %r" % (i, r))


@test
def test_pipelined_requests_answered_in_order():
    tag = uniq()
    a = h.build_request("POST", "/v1/chat/completions",
                        chat("gpt-4o-mini", "req-A %s MOCK_DELAY_MS=300" % tag), key=KEY_A)
    b = h.build_request("POST", "/v1/chat/completions", chat("gpt-4o-mini", "req-B %s" % tag), key=KEY_A)
    with h.Conn(port()) as c:
        c.send_raw(a + b)
        r1 = c.read_response()
        expect_status(r1, 200)
        try:
            r2 = c.read_response()
        except h.ConnectionClosed:
            raise AssertionError("second pipelined request never answered (connection closed)")
    expect_status(r2, 200)
    check("req-A" in content_of(r1), "first response is not for the first request: %r" % r1)
    check("req-B" in content_of(r2), "second response is not for the second request: %r" % r2)


# --------------------------------------------------------------------------
# upstream failures
# --------------------------------------------------------------------------
@test
def test_upstream_500_gives_5xx():
    r = h.http_request(port(), "POST", "/v1/chat/completions",
                       chat("gpt-4o-mini", "%s MOCK_STATUS=500" % uniq()), key=KEY_A)
    check(500 <= r.status < 600, "upstream 500 answered %r" % r)
    expect_openai_error(r)


@test
def test_upstream_400_gives_400():
    r = h.http_request(port(), "POST", "/v1/chat/completions",
                       chat("gpt-4o-mini", "%s MOCK_STATUS=400" % uniq()), key=KEY_A)
    expect_status(r, 400)
    expect_openai_error(r)


@test
def test_upstream_port_closed_502():
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("dead-alias", "x"), key=KEY_A)
    expect_status(r, 502)
    expect_openai_error(r)


@test
def test_upstream_hang_504():
    tag = uniq()
    r = h.http_request(port(), "POST", "/v1/chat/completions",
                       chat("gpt-4o-mini", "%s MOCK_HANG" % tag), key=KEY_A, timeout=15)
    expect_status(r, 504)
    expect_openai_error(r)


@test
def test_upstream_reset_nonstreaming_5xx():
    r = h.http_request(port(), "POST", "/v1/chat/completions",
                       chat("gpt-4o-mini", "%s MOCK_RESET_AFTER=0" % uniq()), key=KEY_A)
    check(500 <= r.status < 600, "upstream reset mid-body answered %r" % r)
    expect_openai_error(r)


@test
def test_upstream_reset_mid_stream():
    tag = uniq()
    body = chat("gpt-4o-mini", "%s MOCK_CHUNKS=6 MOCK_RESET_AFTER=3" % tag, stream=True)
    with h.Conn(port()) as c:
        c.send_request("POST", "/v1/chat/completions", body, key=KEY_A)
        try:
            r = c.read_response(sse=True)
        except (h.ConnectionClosed, ConnectionResetError) as e:
            r = None
            h.log("  stream cut: %r" % e)
    if r is not None:
        expect_status(r, 200)
        text = "".join((json.loads(e["data"]).get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                       for e in r.events if e["data"].startswith("{"))
        check(text.startswith("chunk-0 chunk-1 chunk-2 "), "chunks before the reset were lost: %r" % r.events)
        finish = [e for e in r.events if '"finish_reason": "stop"' in e["data"]
                  or '"finish_reason":"stop"' in e["data"]]
        check(not finish, "gateway invented a normal finish for a truncated stream: %r" % finish)
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("gpt-4o-mini", "after"), key=KEY_A)
    expect_status(r, 200)


@test
def test_client_vanishes_mid_stream():
    tag = uniq()
    body = chat("gpt-4o-mini", "%s MOCK_CHUNKS=50 MOCK_GAP_MS=100" % tag, stream=True)
    c = h.Conn(port())
    try:
        c.send_request("POST", "/v1/chat/completions", body, key=KEY_A)
        r = c.read_response(sse=True, on_body=lambda piece, i, resp:
                            sum(1 for e in resp.events if '"chunk-' in e["data"]) >= 2)
        expect_status(r, 200)
        check(sum(1 for e in r.events if '"chunk-' in e["data"]) >= 2, "did not get 2 chunks: %r" % r)
    finally:
        c.close()
    r = h.http_request(port(), "POST", "/v1/chat/completions", chat("mock-alias", "still there?"), key=KEY_A)
    expect_status(r, 200)
    # The upstream stream lasts ~5 s if nobody aborts it; wait for either outcome.
    rec = mock().wait_find(tag, timeout=10, pred=lambda x: x["client_gone"] or x["completed"])[0]
    check(rec["client_gone"] and not rec["completed"],
          "the gateway kept streaming from the upstream after its client left: %r" %
          {k: rec[k] for k in ("completed", "client_gone", "status")})


def wait_closed(sock, timeout):
    """Reads until the peer closes (EOF or reset). Returns (closed, bytes received)."""
    got = b""
    deadline = time.monotonic() + timeout * h.SLOW
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, min(0.5, deadline - time.monotonic())))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return True, got
        if not d:
            return True, got
        got += d
    return False, got


@test
def test_stalled_half_request_line_is_closed():
    s = socket.create_connection(("127.0.0.1", port()), timeout=5)
    try:
        s.sendall(b"POST /v1/chat/compl")
        r = h.http_request(port(), "POST", "/v1/chat/completions", chat("mock-alias", "others"), key=KEY_A)
        expect_status(r, 200)
        closed, got = wait_closed(s, 10)
        check(closed, "a client stalled in the request line was not disconnected within 10 s "
                      "(client_timeout_ms: 1000)")
        h.log("  stalled client got %r before close" % got[:80])
    finally:
        s.close()
    r = h.http_request(port(), "GET", "/healthz")
    expect_status(r, 200)


@test
def test_stalled_request_body_is_closed():
    s = socket.create_connection(("127.0.0.1", port()), timeout=5)
    try:
        s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":" % KEY_A).encode())
        r = h.http_request(port(), "POST", "/v1/chat/completions", chat("mock-alias", "others"), key=KEY_A)
        expect_status(r, 200)
        closed, got = wait_closed(s, 10)
        check(closed, "a client stalled in the body was not disconnected within 10 s")
        check(not got.startswith(b"HTTP/1.1 5"), "stalled body answered with a 5xx: %r" % got[:200])
    finally:
        s.close()


@test
def test_request_fields_forwarded_unchanged():
    tag = uniq()
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21.5}"},
            {"role": "user", "content": [
                {"type": "text", "text": "h\u00e9llo \U0001F30D \"quoted\" back\\slash\nnew line \u0001 " + tag}]},
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "seed": 42, "temperature": 0.7, "top_p": 0.9, "max_tokens": 50, "n": 1,
        "user": "user-123", "stop": ["\n\n", "END"], "logit_bias": {"50256": -100},
        "presence_penalty": 0.1, "frequency_penalty": -0.25,
    }
    r = h.http_request(port(), "POST", "/v1/chat/completions", body, key=KEY_A)
    expect_status(r, 200)
    rec = mock().wait_find(tag)[0]
    sent = dict(body, model="upstream-model-name")
    got = rec["body"]
    diff = sorted(k for k in set(sent) | set(got) if sent.get(k) != got.get(k))
    check(not diff, "upstream body differs from the client's in %s: sent %r got %r" % (
        diff, {k: sent.get(k) for k in diff}, {k: got.get(k) for k in diff}))


@test
def test_chunked_request_body():
    tag = uniq()
    raw = json.dumps(chat("gpt-4o-mini", "chunked " + tag)).encode()
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % KEY_A).encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(raw[i:i + 16]), raw[i:i + 16]) for i in range(0, len(raw), 16))
    with h.Conn(port()) as c:
        c.send_raw(head + body + b"0\r\n\r\n")
        r = c.read_response()
    expect_status(r, 200, 411)
    if r.status == 200:
        check(("reply to: chunked " + tag) in content_of(r), "content: %r" % r)
    # an oversized chunked body must not slip past max_body_bytes
    raw = json.dumps(chat("gpt-4o-mini", "y" * 200000)).encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(raw[i:i + 8192]), raw[i:i + 8192]) for i in range(0, len(raw), 8192))
    with h.Conn(port()) as c:
        try:
            c.send_raw(head + body + b"0\r\n\r\n")
        except OSError:
            pass
        try:
            r = c.read_response()
        except (h.ConnectionClosed, ConnectionResetError) as e:
            raise AssertionError("a %d-byte chunked body (max_body_bytes 65536) got no HTTP response, "
                                 "the connection was just closed (%r); a Content-Length body that size "
                                 "gets a 413" % (len(raw), e)) from None
    expect_status(r, 413, 411)


@test
def test_expect_100_continue():
    body = json.dumps(chat("mock-alias", "expect")).encode()

    def send(size_body, declared):
        head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                % (KEY_A, declared)).encode()
        with h.Conn(port()) as c:
            c.send_raw(head)
            # like curl: wait (bounded) for "100 Continue" or a final answer, then send anyway
            r, _, _ = __import__("select").select([c.sock], [], [], 1.0)
            early = None
            if r:
                c._recv()
                if not c.buf.startswith(b"HTTP/1.1 100") and not c.buf.startswith(b"HTTP/1.0 100"):
                    early = c.read_response()
            if early is not None:
                return early
            try:
                c.send_raw(size_body)
            except OSError:
                pass
            return c.read_response()
    r = send(body, len(body))
    expect_status(r, 200)
    big = json.dumps(chat("mock-alias", "z" * 200000)).encode()
    r = send(big, len(big))
    expect_status(r, 413)


def raw_head_and_body(sock, timeout=5):
    """Reads one Content-Length framed answer from a raw socket: (head lines, body)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        check(d, "connection closed before the header block ended: %r" % buf)
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    cl = [ln for ln in lines if ln.lower().startswith("content-length:")]
    check(len(cl) == 1, "want exactly one Content-Length, got %r" % lines)
    n = int(cl[0].split(":", 1)[1])
    while len(rest) < n:
        d = sock.recv(65536)
        check(d, "connection closed inside the body")
        rest += d
    check(len(rest) == n, "%d bytes after a body of %d (more than one answer?)" % (len(rest), n))
    return lines, rest


@test
def test_reply_framing_per_http_version():
    """The reply head the gateway writes itself: status line by version, one
    Content-Length matching the body, Connection as each version wants it,
    and the connection kept or closed accordingly."""
    body = json.dumps(chat("mock-alias", "framing")).encode()

    def ask(version, extra=b""):
        req = (b"POST /v1/chat/completions HTTP/" + version + b"\r\nHost: x\r\nAuthorization: Bearer " +
               KEY_A.encode() + b"\r\nContent-Type: application/json\r\n" + extra +
               b"Content-Length: %d\r\n\r\n" % len(body) + body)
        with h.Conn(port()) as c:
            c.send_raw(req)
            lines, got = raw_head_and_body(c.sock)
            try:   # kept open: a second request on it is answered; closed: the peer hangs up
                c.send_raw(req)
                raw_head_and_body(c.sock)
                closed = False
            except (AssertionError, OSError):
                closed = True
        hdrs = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            check(k.lower() not in hdrs, "header %s twice: %r" % (k, lines))
            hdrs[k.lower()] = v.strip()
        check(json.loads(got)["object"] == "chat.completion", "body: %r" % got[:200])
        check(hdrs.get("content-type") == "application/json", "content-type: %r" % lines)
        check(hdrs.get("x-gateway-request-id", "").startswith("req_"), "request id: %r" % lines)
        return lines[0], hdrs.get("connection"), closed

    status, conn, closed = ask(b"1.1")
    check(status == "HTTP/1.1 200 OK" and conn is None and not closed, "1.1 keep-alive: %r %r closed=%s" % (status, conn, closed))
    status, conn, closed = ask(b"1.1", b"Connection: close\r\n")
    check(status == "HTTP/1.1 200 OK" and conn == "close" and closed, "1.1 close: %r %r closed=%s" % (status, conn, closed))
    status, conn, closed = ask(b"1.0")
    check(status == "HTTP/1.0 200 OK" and conn is None and closed, "1.0: %r %r closed=%s" % (status, conn, closed))
    status, conn, closed = ask(b"1.0", b"Connection: keep-alive\r\n")
    check(status == "HTTP/1.0 200 OK" and conn == "keep-alive" and not closed,
          "1.0 keep-alive: %r %r closed=%s" % (status, conn, closed))


@test
def test_http10_request():
    with h.Conn(port()) as c:
        c.send_raw(b"GET /healthz HTTP/1.0\r\n\r\n")
        r = c.read_response(method="GET")
        expect_status(r, 200)
        closed, _ = wait_closed(c.sock, 5)
    check(closed, "HTTP/1.0 request without keep-alive: connection left open")


@test
def test_concurrent_streams_do_not_mix():
    n = 20
    out = [None] * n

    def one(i):
        try:
            body = chat("gpt-4o-mini", "conc-%d MOCK_CHUNKS=5 MOCK_GAP_MS=50" % i, stream=True)
            with h.Conn(port(), timeout=20) as c:
                out[i] = c.request("POST", "/v1/chat/completions", body, key=KEY_A, sse=True)
        except Exception as e:  # noqa: BLE001
            out[i] = e
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30 * h.SLOW)
    ids = []
    for i, r in enumerate(out):
        check(isinstance(r, h.Response), "stream %d failed: %r" % (i, r))
        chunks, text = check_sse_stream(r, want_usage=False)
        check(text == "chunk-0 chunk-1 chunk-2 chunk-3 chunk-4 ", "stream %d content %r" % (i, text))
        sids = set(c.get("id") for c in chunks)
        check(len(sids) == 1, "stream %d mixes chunks of several completions: %s" % (i, sids))
        ids.append(sids.pop())
    check(len(set(ids)) == n, "streams share completion ids: %s" % ids)


@test
def test_upstream_stream_idle_timeout():
    tag = uniq()
    body = chat("idle-alias", "%s MOCK_CHUNKS=4 MOCK_GAP_MS=1500" % tag, stream=True)
    r = None
    with h.Conn(port(), timeout=15) as c:
        c.send_request("POST", "/v1/chat/completions", body, key=KEY_A)
        try:
            r = c.read_response(sse=True)
        except (h.ConnectionClosed, ConnectionResetError) as e:
            h.log("  stream cut: %r" % e)
    if r is not None:
        expect_status(r, 200, 504)
        datas = [e["data"] for e in (r.events or [])]
        check(not any('"chunk-3' in d for d in datas), "stream ran to the end despite idle_ms: 300: %r" % datas)
    rec = mock().wait_find(tag, timeout=10, pred=lambda x: x["client_gone"] or x["completed"])[0]
    check(rec["client_gone"] and not rec["completed"],
          "upstream stream not aborted after idle_ms: %r" % {k: rec[k] for k in ("completed", "client_gone")})


@test
def test_access_log_and_no_secrets():
    g = gw()
    ids = {}
    tag = uniq()
    r = h.http_request(g.port, "POST", "/v1/chat/completions", chat("gpt-4o-mini", tag), key=KEY_A)
    expect_status(r, 200)
    ids[r.header("x-gateway-request-id")] = r.status
    r = h.http_request(g.port, "POST", "/v1/chat/completions", chat("mock-alias", tag), key=KEY_A)
    expect_status(r, 200)
    ids[r.header("x-gateway-request-id")] = r.status
    with h.Conn(g.port) as c:
        r = c.request("POST", "/v1/chat/completions", chat("mock-alias", tag, stream=True), key=KEY_A, sse=True)
    expect_status(r, 200)
    ids[r.header("x-gateway-request-id")] = r.status
    check(all(ids), "missing request ids: %r" % ids)
    r401 = h.http_request(g.port, "POST", "/v1/chat/completions", chat("gpt-4o-mini", tag))
    expect_status(r401, 401)
    rid401 = r401.header("x-gateway-request-id")

    # each worker flushes its own log buffer (every 100 ms): wait for all of them
    def lines_for_all():
        log = g.access_log()
        want = list(ids) + ([rid401] if rid401 else [])
        return log if all(any(e.get("request_id") == rid for e in log) for rid in want) else None
    try:
        log = h.wait_for(lines_for_all, 5, what="access log lines for %s" % list(ids))
    except AssertionError:
        out = g.stdout_text()
        raise AssertionError("access log lines missing for %s; stdout has %d bytes, tail: %r" % (
            [i for i in ids if i not in out], len(out), out[-500:]))
    raw = [e["_raw"] for e in log if "_raw" in e]
    check(not raw, "stdout has non-JSON lines: %r" % raw[:3])
    for rid, status in ids.items():
        lines = [e for e in log if e.get("request_id") == rid]
        check(len(lines) == 1, "request %s has %d access-log lines: %r" % (rid, len(lines), lines))
        e = lines[0]
        for f in ("request_id", "status", "model", "provider", "latency_ms"):
            check(f in e, "access-log line lacks %r: %r" % (f, e))
        check(e["status"] == status or str(e["status"]) == str(status), "logged status %r != %r" % (e["status"], status))
        check(isinstance(e["latency_ms"], (int, float)), "latency_ms not a number: %r" % e)
    check(any(str(e.get("status")) == "401" for e in log), "401 responses are not access-logged")
    if rid401:
        check(any(e.get("request_id") == rid401 for e in log), "the 401 request %s is not logged" % rid401)
    check_no_secrets(g)



@test
def test_stalled_access_log_sink_blocks_no_request():
    """The access log goes to a FIFO whose reader does not read: the pipe
    (64 KiB) fills after ~150 lines, yet every request is answered; once the
    reader drains, every line arrives exactly once; and a worker whose sink
    stalls again still exits on SIGTERM (it waits a bounded time for it)."""
    d = h.make_tmpdir("gwtest-fifo-")
    fifo = os.path.join(d, "access.fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # a reader exists, and never reads (yet)
    m = mock()
    cfg = make_config(h.free_port(), m, ENV.dead_port, workers=2)
    cfg["access_log"] = fifo
    g = h.Gateway(cfg)
    try:
        tag = uniq()
        total, nthreads = 1200, 4
        ok, failed, rids = [0], [], []
        lock = threading.Lock()

        def load(k):
            with h.Conn(g.port, timeout=10) as c:
                for i in range(total // nthreads):
                    try:
                        r = c.request("POST", "/v1/chat/completions", chat("mock-alias", "%s %d %d" % (tag, k, i)),
                                      key=KEY_A)
                        with lock:
                            if r.status == 200:
                                ok[0] += 1
                                rids.append(r.header("x-gateway-request-id"))
                            else:
                                failed.append(r.status)
                    except Exception as e:  # noqa: BLE001
                        with lock:
                            failed.append(repr(e))
                        return
        threads = [threading.Thread(target=load, args=(k,)) for k in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120 * h.SLOW)
        check(not any(t.is_alive() for t in threads), "requests hung behind the stalled access-log sink")
        check(ok[0] == total and not failed, "%d of %d answered with the sink stalled; failures: %r" % (
            ok[0], total, failed[:5]))
        # now read: every request's line arrives, once
        got, buf = {}, b""
        deadline = time.monotonic() + 20 * h.SLOW
        want = set(rids)
        while time.monotonic() < deadline and not want.issubset(got):
            try:
                chunk = os.read(rfd, 1 << 16)
            except BlockingIOError:
                time.sleep(0.02)
                continue
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for ln in lines:
                e = json.loads(ln)
                rid = e.get("request_id")
                got[rid] = got.get(rid, 0) + 1
        missing = want - set(got)
        twice = [k for k, v in got.items() if v > 1]
        h.log("  %d requests answered with the sink stalled; %d lines read back after" % (ok[0], len(got)))
        check(not missing, "%d request ids never reached the access log, e.g. %r" % (len(missing), list(missing)[:3]))
        check(not twice, "lines written twice: %r" % twice[:3])
        # stall again, then stop: the workers must not hang on the sink
        for i in range(400):
            h.http_request(g.port, "POST", "/v1/chat/completions", chat("mock-alias", "%s again %d" % (tag, i)),
                           key=KEY_A)
        g.signal(signal.SIGTERM)
        try:
            rc = g.proc.wait(timeout=20 * h.SLOW)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc is not None, "the gateway did not exit within 20 s of SIGTERM with its access-log sink stalled")
    finally:
        stop_and_check(g)
        os.close(rfd)


@test
def test_shared_gateway_clean_shutdown():
    """After all the traffic above, SIGTERM on the idle gateway: exit 0, no sanitizer report."""
    g = gw()
    g.signal(signal.SIGTERM)
    try:
        rc = g.proc.wait(timeout=15 * h.SLOW)
    except Exception:  # noqa: BLE001
        rc = None
    ENV.gw = None
    g.stop(timeout=2)
    san = g.sanitizer_reports()
    if san:
        h.log("  gateway stderr tail:\n    " + "\n    ".join(g.stderr_text().splitlines()[-40:]))
    check(rc is not None, "idle gateway did not exit within 15 s of SIGTERM")
    check(rc == 0, "exit code %s after SIGTERM" % rc)
    check(not san, "sanitizer report: %s" % san[:3])

# --------------------------------------------------------------------------
# process management (each with its own gateway)
# --------------------------------------------------------------------------
def check_no_secrets(g):
    both = g.stdout_text() + g.stderr_text()
    leaked = [name for name, v in SECRETS.items() if v in both]
    check(not leaked, "secrets appear in the gateway's stdout/stderr: %s" % leaked)


def stop_and_check(g, timeout=10):
    """Stops a gateway a test started; fails on sanitizer reports (ASAN builds)."""
    g.stop(timeout=timeout)
    san = g.sanitizer_reports()
    check(not san, "sanitizer report from the gateway: %s" % san[:3])


def own_gateway(workers=2, **kw):
    m = mock()
    return h.Gateway(make_config(h.free_port(), m, ENV.dead_port, workers=workers, **kw))


@test
def test_killed_worker_is_respawned():
    g = own_gateway(workers=2)
    try:
        kids = h.wait_for(lambda: g.children() if len(g.children()) == 2 else None, 10,
                          what="2 worker processes")
        victim = kids[0]
        results = []
        lock = threading.Lock()
        stop = threading.Event()

        def load():
            n = 0
            while not stop.is_set() and n < 3000:
                n += 1
                t = time.monotonic()
                try:
                    r = h.http_request(g.port, "POST", "/v1/chat/completions",
                                       chat("mock-alias", "load"), key=KEY_A,
                                       headers={"Connection": "close"}, timeout=10)
                    ok, why = r.status == 200, "HTTP %s" % r.status
                except Exception as e:  # noqa: BLE001
                    ok, why = False, repr(e)
                with lock:
                    results.append((t, ok, why))

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        h.wait_for(lambda: len(results) >= 20, 10, what="load to start")
        os.kill(victim, signal.SIGKILL)
        h.wait_for(lambda: not h.pid_alive(victim), 5, interval=0.005, what="worker to die")
        t_dead = time.monotonic()
        try:
            h.wait_for(lambda: len(g.children()) == 2 and victim not in g.children(), 10,
                       what="the master to respawn the worker (children now %s)" % g.children())
        finally:
            n_at = len(results)
            try:
                h.wait_for(lambda: len(results) >= n_at + 40, 10, what="more load after respawn")
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=15)
        check(g.alive(), "master died")
        with lock:
            before = [r for r in results if r[0] < t_dead]
            after = [r for r in results if r[0] >= t_dead]
        bad = [r[2] for r in after if not r[1]]
        h.log("  load: %d before the kill (%d failed), %d after (%d failed)" % (
            len(before), sum(1 for r in before if not r[1]), len(after), len(bad)))
        check(not bad, "%d requests started after the worker died failed: %s" % (len(bad), bad[:5]))
        for i in range(20):
            r = h.http_request(g.port, "POST", "/v1/chat/completions", chat("mock-alias", "after %d" % i),
                               key=KEY_A, headers={"Connection": "close"})
            expect_status(r, 200)
        check_no_secrets(g)
    finally:
        stop_and_check(g)


@test
def test_sighup_reload_without_dropping_requests():
    m1 = mock()
    m2 = h.Mock("second")
    gport = h.free_port()
    g = h.Gateway(make_config(gport, m1, ENV.dead_port))
    try:
        total, conc = 300, 4
        results = []
        lock = threading.Lock()
        reconnects = [0]

        def load(n):
            c = None
            try:
                for i in range(n):
                    try:
                        if c is None or c.server_wants_close or c.dropped():
                            if c is not None:
                                c.close()
                                with lock:
                                    reconnects[0] += 1
                            c = h.Conn(gport)
                        r = c.request("POST", "/v1/chat/completions",
                                      chat("reload-alias", "reload MOCK_DELAY_MS=10"), key=KEY_A)
                        ok, why = r.status == 200, "HTTP %s %s" % (r.status, r.text[:200])
                        by = served_by(r) if ok else None
                    except Exception as e:  # noqa: BLE001
                        ok, why, by = False, repr(e), None
                        if c is not None:
                            c.close()
                        c = None
                    with lock:
                        results.append((ok, why, by))
            finally:
                if c is not None:
                    c.close()

        threads = [threading.Thread(target=load, args=(total // conc,), daemon=True) for _ in range(conc)]
        for t in threads:
            t.start()
        h.wait_for(lambda: len(results) >= 60, 20, what="60 requests before the reload")
        g.write_config(make_config(gport, m1, ENV.dead_port, reload_base_url=m2.base_url))
        g.signal(signal.SIGHUP)
        n_at_hup = len(results)
        for t in threads:
            t.join(timeout=60 * h.SLOW)
        check(not any(t.is_alive() for t in threads), "load threads did not finish")
        bad = [r[1] for r in results if not r[0]]
        h.log("  %d requests (%d before SIGHUP), %d failed, %d reconnects after a server close; "
              "served by: %s" % (len(results), n_at_hup, len(bad), reconnects[0],
                                 {k: sum(1 for r in results if r[2] == k) for k in set(r[2] for r in results)}))
        if bad:
            for mm in (m1, m2):
                h.log("  mock %s (port %d): %s" % (mm.name, mm.port, "alive" if mm.alive() else
                                                   "EXITED with code %s" % mm.proc.returncode))
        check(len(results) == total, "only %d of %d requests ran" % (len(results), total))
        check(not bad, "%d requests failed across the reload: %s" % (len(bad), bad[:5]))
        check(g.alive(), "master died on SIGHUP")

        streak = [0]

        def second_answers():
            r = h.http_request(gport, "POST", "/v1/chat/completions", chat("reload-alias", "who"),
                               key=KEY_A, headers={"Connection": "close"})
            expect_status(r, 200)
            streak[0] = streak[0] + 1 if served_by(r) == "second" else 0
            return streak[0] >= 10
        h.wait_for(second_answers, 10, what="10 consecutive answers from the reloaded upstream 'second'")
        recs = [x for x in m2.requests() if x["path"] == "/v1/chat/completions"]
        check(recs and all(x["body"].get("model") == "reload-upstream" for x in recs),
              "upstream 'second' saw %r" % [x["body"] for x in recs[:3]])
        check_no_secrets(g)
    finally:
        stop_and_check(g)
        m2.stop()


def probe_new_connection(port):
    """'refused', 'reset', 'closed', 'timeout' or 'served:<status>'."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return "refused:%s" % e
    c = h.Conn.__new__(h.Conn)
    c.sock, c.buf, c.recv_count, c.server_wants_close, c.timeout = s, b"", 0, False, 0.5
    try:
        s.settimeout(0.5)
        c.send_request("GET", "/healthz", headers={"Connection": "close"})
        r = c.read_response(method="GET")
        return "served:%d" % r.status
    except h.ConnectionClosed:
        return "closed"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except socket.timeout:
        return "timeout"
    finally:
        s.close()


@test
def test_sigterm_drains_streams_and_exits():
    drain_and_exit(own_gateway(workers=2))


def drain_and_exit(g):
    """SIGTERM while a stream is open: the stream finishes whole, new
    connections are refused meanwhile, and the master exits 0."""
    try:
        tag = uniq()
        body = chat("gpt-4o-mini", "%s MOCK_CHUNKS=10 MOCK_GAP_MS=200" % tag, stream=True)
        c = h.Conn(g.port, timeout=15)
        first = threading.Event()
        out = {}

        def on_body(piece, i, resp):
            if resp.events:
                first.set()
            return False  # keep reading to the end

        def reader():
            try:
                out["resp"] = c.read_response(sse=True, on_body=on_body)
            except Exception as e:  # noqa: BLE001
                out["error"] = repr(e)
            finally:
                first.set()
        c.send_request("POST", "/v1/chat/completions", body, key=KEY_A)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        check(first.wait(10 * h.SLOW), "no first chunk")
        check("error" not in out, "stream failed before SIGTERM: %s" % out.get("error"))
        g.signal(signal.SIGTERM)
        probes = []
        refused = False
        deadline = time.monotonic() + 10 * h.SLOW
        while time.monotonic() < deadline and t.is_alive():  # probe while the drain is under way
            p = probe_new_connection(g.port)
            probes.append(p)
            if p.startswith(("refused", "reset", "closed")):
                refused = True
                break
            time.sleep(0.05)
        t.join(timeout=15 * h.SLOW)
        c.close()
        check(not t.is_alive(), "stream still open 15 s after SIGTERM")
        check("error" not in out, "in-flight stream broken by SIGTERM: %s" % out.get("error"))
        r = out["resp"]
        _, text = check_sse_stream(r, want_usage=False)
        check(text == "".join("chunk-%d " % i for i in range(10)), "stream content after SIGTERM: %r" % text)
        try:
            rc = g.proc.wait(timeout=15 * h.SLOW)
        except Exception:  # noqa: BLE001
            raise AssertionError("master still running 15 s after the drained stream ended")
        h.log("  probes after SIGTERM: %s; exit code %s" % (probes, rc))
        check(refused, "new connections were still accepted while the drain was under way: %s" % probes)
        check(rc == 0, "master exit code after SIGTERM drain: %s" % rc)
        check(not h.proc_children(g.pid), "workers left behind")
        check_no_secrets(g)
    finally:
        stop_and_check(g, timeout=2)


@test
def test_busy_poll_serves_reloads_and_drains():
    """busy_poll_us on (evloop.h): keep-alive requests through a real upstream
    and a stream are answered as without it, a SIGHUP that turns it off and
    on again under load fails nothing, and SIGTERM still drains and exits."""
    m = mock()
    cfg = make_config(h.free_port(), m, ENV.dead_port, workers=2)
    cfg["busy_poll_us"] = 2000
    g = h.Gateway(cfg)
    try:
        tag = uniq()
        with h.Conn(g.port) as c:
            for i in range(100):
                r = c.request("POST", "/v1/chat/completions", chat("gpt-4o-mini", "%s bp %d" % (tag, i)), key=KEY_A)
                expect_status(r, 200)
                check(content_of(r), "empty answer: %r" % r)
        with h.Conn(g.port) as c:
            r = c.request("POST", "/v1/chat/completions",
                          chat("gpt-4o-mini", "%s MOCK_CHUNKS=5 MOCK_GAP_MS=20" % tag, stream=True), key=KEY_A, sse=True)
        _, text = check_sse_stream(r, want_usage=False)
        check(text == "".join("chunk-%d " % i for i in range(5)), "stream content with busy polling: %r" % text)
        failed = []
        for value in (0, 500):
            cfg["busy_poll_us"] = value
            g.write_config(cfg)
            g.signal(signal.SIGHUP)
            with h.Conn(g.port) as c:
                for i in range(50):
                    r = c.request("POST", "/v1/chat/completions", chat("gpt-4o-mini", "%s after %d" % (tag, i)),
                                  key=KEY_A)
                    if r.status != 200:
                        failed.append((value, r.status))
        check(not failed, "requests failed around the reloads: %r" % failed[:5])
        check(g.alive(), "gateway died with busy polling on")
    except BaseException:
        stop_and_check(g)
        raise
    drain_and_exit(g)


# --------------------------------------------------------------------------
# --check-config
# --------------------------------------------------------------------------
def write_tmp_config(cfg):
    d = h.make_tmpdir("gwtest-cc-")
    p = os.path.join(d, "gateway.yaml")
    with open(p, "w") as f:
        f.write(h.to_yaml(cfg))
    return p


def base_cfg():
    return make_config(h.free_port(), mock(), ENV.dead_port or h.free_port())


@test
def test_check_config_valid_exits_0():
    rc, out, err = h.check_config(write_tmp_config(base_cfg()))
    check(rc == 0, "valid config: exit %s, stderr %r" % (rc, err[-500:]))


@test
def test_check_config_unknown_provider_names_field():
    cfg = base_cfg()
    cfg["models"][0]["deployments"][0]["provider"] = "nonesuch"
    rc, out, err = h.check_config(write_tmp_config(cfg))
    check(rc != 0, "unknown provider accepted (exit 0)")
    check("models[0].deployments[0].provider" in err, "stderr does not name the field: %r" % err[-500:])


@test
def test_check_config_unset_env_secret_names_field():
    var = "GWTEST_UNSET_" + secrets.token_hex(4).upper()
    env = {k: v for k, v in os.environ.items() if k != var}
    cfg = base_cfg()
    cfg["keys"][0]["key"] = "env:" + var
    rc, out, err = h.check_config(write_tmp_config(cfg), env=env)
    check(rc != 0, "key: env:%s with the variable unset accepted" % var)
    check("keys[0].key" in err, "stderr does not name keys[0].key: %r" % err[-500:])
    cfg = base_cfg()
    cfg["models"][0]["deployments"][0]["api_key"] = "env:" + var
    rc, out, err = h.check_config(write_tmp_config(cfg), env=env)
    check(rc != 0, "api_key: env:%s with the variable unset accepted" % var)
    check("models[0].deployments[0].api_key" in err, "stderr does not name the field: %r" % err[-500:])
    env[var] = "sk-gw-" + secrets.token_urlsafe(32)
    cfg = base_cfg()
    cfg["keys"][0]["key"] = "env:" + var
    rc, out, err = h.check_config(write_tmp_config(cfg), env=env)
    check(rc == 0, "key: env:%s with the variable set refused: %r" % (var, err[-500:]))


if __name__ == "__main__":
    sys.exit(h.run(after_each=after_each, teardown=teardown, suite_timeout=170))
