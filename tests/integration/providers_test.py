#!/usr/bin/env python3
"""Providers on the wire (Python 3 stdlib only): what the gateway sends each
provider (looked at through the mock's request log) and what a client gets
back when a provider misbehaves. The SDK suite (suite_sdk.sh) covers the
happy paths through the official SDKs; this covers what SDKs cannot see.
"""
import json
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mock_dialects as md  # noqa: E402

KEY = "sk-gw-" + secrets.token_urlsafe(32)
UPSTREAM_SECRET = "sk-upstream-" + secrets.token_hex(12)


class Env:
    mock = None
    gw = None


ENV = Env()


def setup():
    ENV.mock = h.Mock("providers")
    root = ENV.mock.base_url[:-len("/v1")]
    aws = {"region": md.AWS_REGION, "aws_access_key_id": md.AWS_ACCESS_KEY_ID,
           "aws_secret_access_key": md.AWS_SECRET_ACCESS_KEY, "aws_session_token": "session-" + secrets.token_hex(6)}
    deps = {
        "an": {"provider": "anthropic", "model": "claude-3-5-haiku-20241022", "base_url": root, "api_key": UPSTREAM_SECRET},
        "gm": {"provider": "gemini", "model": "gemini-2.0-flash", "base_url": root, "api_key": UPSTREAM_SECRET},
        "ol": {"provider": "ollama", "model": "llama3.1", "base_url": root},
        "br": dict({"provider": "bedrock", "model": "meta.llama3-1-8b-instruct-v1:0", "base_url": root}, **aws),
        "br-titan": dict({"provider": "bedrock", "model": "amazon.titan-embed-text-v2:0", "base_url": root}, **aws),
        "br-cohere": dict({"provider": "bedrock", "model": "cohere.embed-english-v3", "base_url": root}, **aws),
        "br-badsig": dict({"provider": "bedrock", "model": "m", "base_url": root}, **dict(aws, aws_secret_access_key="wrong-" + UPSTREAM_SECRET)),
        "az": {"provider": "azure", "model": "gpt4o-deployment", "base_url": root, "api_key": UPSTREAM_SECRET, "api_version": "2024-06-01"},
    }
    cfg = {
        "listen": "127.0.0.1:%d" % h.free_port(),
        "workers": 1,
        "models": [{"alias": a, "deployments": [d]} for a, d in deps.items()],
        "keys": [{"name": "providers", "key": KEY}],
    }
    ENV.gw = h.Gateway(cfg)


def post(path, body, headers=None, sse=False):
    return h.http_request(ENV.gw.port, "POST", path, body, key=KEY, headers=headers, sse=sse)


def last_request(tag):
    return ENV.mock.wait_find(tag)[-1]


def chat(model, text, **kw):
    return dict({"model": model, "messages": [{"role": "user", "content": text}]}, **kw)


def sse_data(resp):
    return [e["data"] for e in (resp.events or [])]


@h.test
def anthropic_version_is_pinned_and_client_key_not_forwarded():
    tag = "pin-" + secrets.token_hex(4)
    r = post("/v1/messages", {"model": "an", "max_tokens": 20, "messages": [{"role": "user", "content": tag}]},
             headers={"anthropic-version": "2099-01-01", "x-api-key": KEY, "anthropic-beta": "prompt-caching-2024-07-31"})
    h.expect_status(r, 200)
    rec = last_request(tag)
    h.check(rec["headers"].get("anthropic-version") == "2023-06-01", "upstream version %r" % rec["headers"].get("anthropic-version"))
    h.check(rec["headers"].get("x-api-key") == UPSTREAM_SECRET, "upstream got the client's key or none")
    h.check(rec["headers"].get("anthropic-beta") == "prompt-caching-2024-07-31", "anthropic-beta not forwarded")
    h.check(rec["body"]["model"] == "claude-3-5-haiku-20241022", "model not rewritten: %r" % rec["body"])
    h.check(r.json()["type"] == "message", "answer %r" % r)


@h.test
def openai_client_to_anthropic_request_shape():
    tag = "shape-" + secrets.token_hex(4)
    body = {"model": "an", "temperature": 0.3, "stop": "STOP", "messages": [
        {"role": "system", "content": "sys prompt"}, {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"}, {"role": "user", "content": tag}]}
    h.expect_status(post("/v1/chat/completions", body), 200)
    up = last_request(tag)["body"]
    h.check(up["system"] == "sys prompt", "system %r" % up.get("system"))
    h.check([m["role"] for m in up["messages"]] == ["user", "assistant", "user"], "roles %r" % up["messages"])
    h.check(up["max_tokens"] == 4096 and up["temperature"] == 0.3 and up["stop_sequences"] == ["STOP"], "params %r" % up)


@h.test
def gemini_request_shape_and_key_header():
    tag = "gm-" + secrets.token_hex(4)
    h.expect_status(post("/v1/chat/completions", chat("gm", tag, max_tokens=50, top_p=0.5)), 200)
    rec = last_request(tag)
    h.check(rec["path"] == "/v1beta/models/gemini-2.0-flash:generateContent", "path %r" % rec["path"])
    h.check(rec["headers"].get("x-goog-api-key") == UPSTREAM_SECRET, "no x-goog-api-key")
    h.check(UPSTREAM_SECRET not in rec["path"], "the key went into the URL")
    h.check(rec["body"]["generationConfig"]["maxOutputTokens"] == 50, "generationConfig %r" % rec["body"])


@h.test
def gemini_safety_block_is_content_filter():
    r = post("/v1/chat/completions", chat("gm", "bad MOCK_SAFETY"))
    h.expect_status(r, 200)
    h.check(r.json()["choices"][0]["finish_reason"] == "content_filter", "finish %r" % r)
    r = post("/v1/messages", {"model": "gm", "max_tokens": 5, "messages": [{"role": "user", "content": "bad MOCK_SAFETY"}]})
    h.check(r.json()["stop_reason"] == "refusal", "stop %r" % r)


@h.test
def bedrock_signed_with_session_token():
    tag = "br-" + secrets.token_hex(4)
    r = post("/v1/chat/completions", chat("br", tag, stream=True), sse=True)
    h.expect_status(r, 200)
    rec = last_request(tag)
    h.check(rec["path"] == "/model/meta.llama3-1-8b-instruct-v1%3A0/converse-stream", "path %r" % rec["path"])
    h.check(rec["headers"].get("x-amz-security-token", "").startswith("session-"), "no session token")
    h.check("x-amz-security-token" in rec["headers"]["authorization"], "token not signed")
    h.check(sse_data(r)[-1] == "[DONE]", "stream end %r" % sse_data(r)[-3:])


@h.test
def bedrock_bad_signature_is_502_without_secrets():
    r = post("/v1/chat/completions", chat("br-badsig", "x"))
    h.expect_status(r, 502)
    err = h.expect_openai_error(r)
    h.check("signature" in err["message"], "message %r" % err)
    h.check(UPSTREAM_SECRET not in r.text and md.AWS_SECRET_ACCESS_KEY not in r.text, "a secret leaked into the error")
    out = ENV.gw.stdout_text() + ENV.gw.stderr_text()
    h.check(UPSTREAM_SECRET not in out and md.AWS_SECRET_ACCESS_KEY not in out, "a secret leaked into the logs")


@h.test
def bedrock_exception_mid_stream_ends_with_error_event():
    r = post("/v1/chat/completions", chat("br", "x MOCK_EXCEPTION", stream=True), sse=True)
    h.expect_status(r, 200)
    last = json.loads(sse_data(r)[-1])
    h.check("throttlingException" in last["error"]["message"], "last event %r" % last)
    h.check("[DONE]" not in sse_data(r), "a failed stream must not end with [DONE]")


@h.test
def malformed_streams_end_with_error_not_crash():
    for model in ("an", "gm", "ol", "br"):
        r = post("/v1/messages", {"model": model, "max_tokens": 50, "stream": True,
                                  "messages": [{"role": "user", "content": "x MOCK_GARBAGE MOCK_CHUNKS=3"}]}, sse=True)
        h.expect_status(r, 200)
        if model == "an":   # pass-through: the bytes are relayed as the provider sent them
            continue
        events = r.text
        h.check("event: error" in events and "message_stop" not in events, "%s: stream %r" % (model, events[-400:]))
    h.check(ENV.gw.alive(), "the gateway died")


@h.test
def provider_errors_in_the_client_dialect():
    r = post("/v1/messages", {"model": "ol", "max_tokens": 5, "messages": [{"role": "user", "content": "x MOCK_STATUS=400"}]})
    h.expect_status(r, 400)
    j = r.json()
    h.check(j["type"] == "error" and j["error"]["type"] == "invalid_request_error", "shape %r" % j)
    h.check("mock upstream answered 400" in j["error"]["message"], "provider message lost: %r" % j)
    r = post("/v1/chat/completions", chat("gm", "x MOCK_STATUS=429"))
    h.expect_status(r, 429)
    h.expect_openai_error(r)
    r = post("/v1/chat/completions", chat("an", "x MOCK_STATUS=401"))
    h.expect_status(r, 502)   # the gateway's provider credentials, not the client's
    r = post("/v1/embeddings", {"model": "an", "input": "x"})
    h.expect_status(r, 400)
    h.check("not available" in h.expect_openai_error(r)["message"], "embeddings message %r" % r)


@h.test
def azure_deployment_url_and_api_key():
    tag = "az-" + secrets.token_hex(4)
    h.expect_status(post("/v1/chat/completions", chat("az", tag)), 200)
    rec = last_request(tag)
    h.check(rec["path"] == "/openai/deployments/gpt4o-deployment/chat/completions?api-version=2024-06-01", "path %r" % rec["path"])
    h.check(rec["headers"].get("api-key") == UPSTREAM_SECRET and "authorization" not in rec["headers"], "auth headers %r" % rec["headers"])


@h.test
def usage_and_cost_are_accounted_for_translated_streams():
    tag = "acct-" + secrets.token_hex(4)
    r = post("/v1/chat/completions", chat("an", tag + " MOCK_CACHED=2", stream=True), sse=True)
    h.expect_status(r, 200)
    h.check(not any('"usage"' in d for d in sse_data(r)), "usage was sent to a client that did not ask for it")

    def logged():
        return [e for e in ENV.gw.access_log() if e.get("request_id") == r.header("x-gateway-request-id")]
    entry = h.wait_for(logged, 5, what="the access log line")[0]
    h.check(entry.get("prompt_tokens", 0) > 0 and entry.get("completion_tokens", 0) > 0 and entry.get("cached_tokens") == 2,
            "access log usage %r" % entry)
    h.check(float(entry.get("cost_usd", "0")) > 0, "no cost for a priced model: %r" % entry)


@h.test
def legacy_completions_and_embeddings_translated():
    r = post("/v1/completions", {"model": "an", "prompt": "complete me", "max_tokens": 20})
    h.expect_status(r, 200)
    j = r.json()
    h.check(j["object"] == "text_completion" and "reply to: complete me" in j["choices"][0]["text"], "answer %r" % j)
    h.check(j["usage"]["prompt_tokens"] > 0, "usage %r" % j)
    r = post("/v1/completions", {"model": "gm", "prompt": "stream me", "stream": True}, sse=True)
    h.expect_status(r, 200)
    chunks = [json.loads(d) for d in sse_data(r) if d != "[DONE]"]
    h.check(all(c["object"] == "text_completion" for c in chunks), "chunks %r" % chunks[:2])
    h.check("reply to: stream me" in "".join(c["choices"][0]["text"] for c in chunks if c["choices"]), "text %r" % chunks)
    r = post("/v1/embeddings", {"model": "ol", "input": ["one", "two three"], "encoding_format": "float"})
    h.expect_status(r, 200)
    j = r.json()
    h.check(len(j["data"]) == 2 and len(j["data"][1]["embedding"]) == 8 and j["usage"]["prompt_tokens"] == 3, "embeddings %r" % j)
    r = post("/v1/embeddings", {"model": "br-titan", "input": "one two", "encoding_format": "float"})
    h.expect_status(r, 200)
    j = r.json()
    h.check(len(j["data"][0]["embedding"]) == 8 and j["usage"]["prompt_tokens"] == 2, "titan %r" % j)
    r = post("/v1/embeddings", {"model": "br-cohere", "input": ["a", "b", "c"], "encoding_format": "float"})
    h.expect_status(r, 200)
    h.check(len(r.json()["data"]) == 3, "cohere %r" % r)
    r = post("/v1/embeddings", {"model": "br-titan", "input": ["a", "b"]})
    h.expect_status(r, 400)


@h.test
def zz_gateway_exits_cleanly():
    """Last: stops the gateway; leaks and sanitizer findings show up at exit (ASan builds)."""
    g = ENV.gw
    g.stop(timeout=10)
    san = g.sanitizer_reports()
    h.check(not san, "sanitizer report: %s" % san[:3])


def after_each(name):
    reports = ENV.gw.sanitizer_reports()
    if reports:
        raise AssertionError("sanitizer report: %s" % reports[:3])
    if name != "zz_gateway_exits_cleanly" and not ENV.gw.alive():
        raise AssertionError("the gateway died: %s" % ENV.gw.stderr_text()[-2000:])


if __name__ == "__main__":
    try:
        setup()
    except Exception as e:  # noqa: BLE001
        h.log("setup failed: %s" % e)
        h.kill_all()
        print("0 passed, 1 failed")
        sys.exit(1)
    rc = h.run(after_each=after_each, teardown=lambda: (ENV.gw.stop(), ENV.mock.stop()), suite_timeout=300)
    sys.exit(rc)
