#!/usr/bin/env python3
"""Guardrails on the wire (Python 3 stdlib only): what the mock upstream
receives is masked, blocks come back in the client's dialect (OpenAI and
Anthropic routes), answers and streams are masked on the way out (PII split
over many chunks), the guard webhook allows / blocks / masks / times out
(fail-open and fail-closed), verdicts are counted in /metrics and summarized
in the access log without the matched text.
"""
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import sdk_env  # noqa: E402  (one alias per provider, served by the mock in its wire format)

KEY = "sk-gw-" + secrets.token_urlsafe(32)
KEY2 = "sk-gw-" + secrets.token_urlsafe(32)
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
BADCARD = "4111 1111 1111 1112"   # fails Luhn: never masked
IBAN = "DE89 3704 0044 0532 0130 00"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"


class Env:
    mock = gw = hook = None
    mport = 0


ENV = Env()


class Hook(BaseHTTPRequestHandler):
    """A guard webhook: the verdict depends on words in the text."""
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        text = body.get("text", "")
        self.server.seen.append(text)
        if "WH_SLOW" in text:
            time.sleep(1.5)
            v = {"action": "allow"}
        elif "WH_BLOCK" in text:
            v = {"action": "block", "reason": "policy 7"}
        elif "WH_MASK" in text:
            v = {"action": "mask", "mask": ["project-zebra"]}
        elif "WH_500" in text:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        else:
            v = {"action": "allow"}
        out = json.dumps(v).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        except OSError:
            pass


def setup():
    ENV.mock = h.Mock("G")
    ENV.hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    ENV.hook.seen = []
    ENV.hook.daemon_threads = True
    threading.Thread(target=ENV.hook.serve_forever, daemon=True).start()
    hook_url = "http://127.0.0.1:%d/check" % ENV.hook.server_address[1]
    m = ENV.mock
    oa = {"provider": "openai_compatible", "model": "m", "base_url": m.base_url, "api_key": "sk-up"}
    an = {"provider": "anthropic", "model": "claude-3-5-haiku-20241022", "base_url": m.base_url[:-len("/v1")],
          "api_key": "sk-up"}
    ENV.mport = h.free_port()
    cfg = {
        "listen": "127.0.0.1:%d" % h.free_port(),
        "metrics_listen": "127.0.0.1:%d" % ENV.mport,
        "workers": 1,
        "guardrails": [
            {"name": "pii", "stages": ["input"],
             "detectors": {"email": "mask", "card": "mask", "iban": "mask", "phone": "mask", "secrets": "block"},
             "custom": [{"name": "ticket", "pattern": "TCK-[0-9]{6}", "action": "log"}],
             "allow": {"words": ["support@acme.com"]},
             "deny": {"words": ["project falcon"]},
             "max_chars": 4000},
            {"name": "out", "stages": ["output"],
             "detectors": {"email": "mask", "card": "mask", "secrets": "block"}},
            {"name": "hook-open", "stages": ["input"],
             "webhook": {"url": hook_url, "timeout_ms": 300, "fail_open": True}},
            {"name": "hook-closed", "stages": ["input"],
             "webhook": {"url": hook_url, "timeout_ms": 300, "fail_open": False}},
            {"name": "keyonly", "stages": ["input"], "detectors": {"phone": "block"}},
        ],
        "models": [
            {"alias": "in-oa", "guardrails": ["pii"], "deployments": [oa]},
            {"alias": "in-an", "guardrails": ["pii"], "deployments": [an]},
            {"alias": "out-oa", "guardrails": ["out"], "deployments": [dict(oa, model="m-dialect")]},   # echoes in pieces
            {"alias": "out-an", "guardrails": ["out"], "deployments": [an]},
            {"alias": "wh-open", "guardrails": ["pii", "hook-open"], "deployments": [oa]},
            {"alias": "wh-closed", "guardrails": ["hook-closed"], "deployments": [oa]},
            {"alias": "plain", "deployments": [oa]},
        ] + [{"alias": "in-" + alias, "guardrails": ["pii"], "deployments": [d]}
             for alias, d in sdk_env.provider_deployments(m)],
        "keys": [{"name": "t", "key": KEY}, {"name": "k2", "key": KEY2, "guardrails": ["keyonly"]}],
    }
    ENV.gw = h.Gateway(cfg)


def chat(alias, text, key=KEY, stream=False, extra=""):
    body = {"model": alias, "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": text + extra}]}
    if stream:
        body["stream"] = True
    return h.http_request(ENV.gw.port, "POST", "/v1/chat/completions", body, key=key, sse=stream)


def messages(alias, text, stream=False):
    body = {"model": alias, "max_tokens": 64, "system": "be brief", "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return h.http_request(ENV.gw.port, "POST", "/v1/messages", body, key=KEY, sse=stream)


def upstream_saw(tag):
    rs = ENV.mock.wait_find(tag)
    return json.dumps(rs[-1]["body"])


def metric(**labels):
    text = h.http_request(ENV.mport, "GET", "/metrics").text
    want = ",".join('%s="%s"' % (k, labels[k]) for k in ("stage", "detector", "action"))
    for line in text.splitlines():
        if line.startswith("gatewayllm_guardrail_verdicts_total{" + want + "}"):
            return float(line.split()[-1])
    return 0.0


def stream_text(resp):
    """The text of an OpenAI or Anthropic stream; every data line must be JSON or [DONE]."""
    out = []
    for e in resp.events or []:
        d = e["data"]
        if d == "[DONE]":
            continue
        j = json.loads(d)
        if "choices" in j:
            for c in j["choices"]:
                out.append((c.get("delta") or {}).get("content") or "")
        elif j.get("type") == "content_block_delta":
            out.append(j["delta"].get("text", ""))
    return "".join(out)


@h.test
def test_input_masked_before_upstream_openai():
    tag = "T1-" + secrets.token_hex(4)
    r = chat("in-oa", "%s mail %s, card %s, iban %s, bad %s, call +1 415 555 2671, TCK-123456, support@acme.com"
             % (tag, EMAIL, CARD, IBAN, BADCARD))
    h.expect_status(r, 200)
    seen = upstream_saw(tag)
    for s in (EMAIL, CARD, IBAN, "415 555 2671"):
        h.check(s not in seen, "upstream saw %r: %s" % (s, seen))
    for p in ("[EMAIL]", "[CARD]", "[IBAN]", "[PHONE]"):
        h.check(p in seen, "no %s in %s" % (p, seen))
    h.check(BADCARD in seen and "TCK-123456" in seen and "support@acme.com" in seen, "over-masked: %s" % seen)
    h.check(EMAIL not in r.text, "the echo still has the email")


@h.test
def test_input_masked_through_translation():
    tag = "T2-" + secrets.token_hex(4)
    r = chat("in-an", "%s write to %s" % (tag, EMAIL))
    h.expect_status(r, 200)
    seen = upstream_saw(tag)
    h.check(EMAIL not in seen and "[EMAIL]" in seen, "anthropic upstream saw %s" % seen)
    r = messages("in-an", "%s-m card %s" % (tag, CARD))
    h.expect_status(r, 200)
    seen = upstream_saw(tag + "-m")
    h.check(CARD not in seen and "[CARD]" in seen, "/v1/messages upstream saw %s" % seen)


@h.test
def test_masked_request_reaches_every_provider():
    for alias, _ in sdk_env.provider_deployments(ENV.mock):
        tag = "T3%s-%s" % (alias[4:8], secrets.token_hex(3))
        r = chat("in-" + alias, "%s write to %s" % (tag, EMAIL))
        h.expect_status(r, 200)
        seen = upstream_saw(tag)
        h.check(EMAIL not in seen and "[EMAIL]" in seen, "%s upstream saw %s" % (alias, seen))
        h.check(EMAIL not in r.text, "%s answer: %r" % (alias, r))


@h.test
def test_block_openai_dialect():
    before = len(ENV.mock.requests())
    r = chat("in-oa", "my key is " + AWS)
    h.expect_status(r, 400)
    err = h.expect_openai_error(r)
    h.check(err["code"] == "guardrail_blocked" and "aws_key" in err["message"], "error: %r" % err)
    h.check(AWS not in r.text, "the error repeats the secret")
    h.check(len(ENV.mock.requests()) == before, "a blocked request reached the upstream")


@h.test
def test_block_anthropic_dialect():
    r = messages("in-an", "token " + AWS)
    h.expect_status(r, 400)
    j = r.json()
    h.check(j.get("type") == "error" and j["error"]["type"] == "invalid_request_error", "not Anthropic's shape: %r" % r)
    h.check("guardrail" in j["error"]["message"], "message: %r" % j)


@h.test
def test_deny_list_403_and_caps_400():
    r = chat("in-oa", "Tell me about Project Falcon please")
    h.expect_status(r, 403)
    h.check(h.expect_openai_error(r)["code"] == "guardrail_blocked", "deny: %r" % r)
    r = chat("in-oa", "x" * 5000)
    h.expect_status(r, 400)
    h.check(h.expect_openai_error(r)["code"] == "prompt_too_large", "caps: %r" % r)


@h.test
def test_key_policy_applies():
    r = chat("plain", "call me at +44 20 7946 0958", key=KEY2)
    h.expect_status(r, 400)
    r = chat("plain", "call me at +44 20 7946 0958", key=KEY)
    h.expect_status(r, 200)


@h.test
def test_output_masked_whole_answer():
    r = chat("out-oa", "echo %s and %s" % (EMAIL, CARD))
    h.expect_status(r, 200)
    content = r.json()["choices"][0]["message"]["content"]
    h.check(EMAIL not in content and CARD not in content, "answer: %s" % content)
    h.check("[EMAIL]" in content and "[CARD]" in content, "answer: %s" % content)
    r = messages("out-an", "echo %s" % EMAIL)
    h.expect_status(r, 200)
    t = r.json()["content"][0]["text"]
    h.check(EMAIL not in t and "[EMAIL]" in t, "anthropic answer: %s" % t)


@h.test
def test_output_masked_stream_openai_many_chunks():
    for chunks in (3, 17, 40):
        r = chat("out-oa", "echo %s then %s MOCK_CHUNKS=%d" % (EMAIL, CARD, chunks), stream=True)
        h.expect_status(r, 200)
        t = stream_text(r)
        h.check(EMAIL not in t and CARD not in t and "[EMAIL]" in t and "[CARD]" in t, "chunks=%d: %r" % (chunks, t))
        h.check(r.events[-1]["data"] == "[DONE]", "no [DONE]: %r" % r.events[-3:])
        h.check(len(r.events) >= min(chunks, 20), "not relayed chunk by chunk: %d events" % len(r.events))


@h.test
def test_output_masked_stream_anthropic():
    r = messages("out-an", "echo %s MOCK_CHUNKS=25" % EMAIL, stream=True)
    h.expect_status(r, 200)
    t = stream_text(r)
    h.check(EMAIL not in t and "[EMAIL]" in t, "anthropic stream: %r" % t)
    h.check(any('"message_stop"' in e["data"] for e in r.events), "no message_stop")
    r = chat("out-an", "echo %s MOCK_CHUNKS=25" % EMAIL, stream=True)   # translated into OpenAI chunks
    t = stream_text(r)
    h.check(EMAIL not in t and "[EMAIL]" in t, "translated stream: %r" % t)


@h.test
def test_output_block():
    r = chat("out-oa", "echo " + AWS)
    h.expect_status(r, 400)
    h.check(h.expect_openai_error(r)["code"] == "output_blocked", "whole: %r" % r)
    h.check(AWS not in r.text, "leaked")
    r = chat("out-oa", "echo " + AWS + " MOCK_CHUNKS=9", stream=True)
    h.check(AWS not in r.text, "stream leaked: %r" % r.text)
    h.check(any('"output_blocked"' in e["data"] for e in r.events), "no error event: %r" % r.events[-3:])


@h.test
def test_webhook_verdicts():
    seen0 = len(ENV.hook.seen)
    r = chat("wh-open", "hello %s" % EMAIL)
    h.expect_status(r, 200)
    h.check(len(ENV.hook.seen) == seen0 + 1 and EMAIL not in ENV.hook.seen[-1] and "[EMAIL]" in ENV.hook.seen[-1],
            "the webhook must get the masked text: %r" % ENV.hook.seen[-1:])
    r = chat("wh-open", "please WH_BLOCK this")
    h.expect_status(r, 400)
    h.check(h.expect_openai_error(r)["code"] == "guardrail_blocked", "%r" % r)
    tag = "T9-" + secrets.token_hex(4)
    r = chat("wh-open", "%s WH_MASK about project-zebra" % tag)
    h.expect_status(r, 200)
    seen = upstream_saw(tag)
    h.check("project-zebra" not in seen and "[REDACTED]" in seen, "webhook mask: %s" % seen)


@h.test
def test_webhook_timeout_fail_open_and_closed():
    t0 = time.time()
    r = chat("wh-open", "WH_SLOW hello")
    h.expect_status(r, 200)   # fail-open: the request goes on
    h.check(time.time() - t0 < 1.4, "waited for the slow webhook")
    r = chat("wh-closed", "WH_SLOW hello")
    h.expect_status(r, 503)
    h.check(h.expect_openai_error(r)["code"] == "guardrail_unavailable", "%r" % r)
    r = chat("wh-closed", "WH_500 hello")
    h.expect_status(r, 503)
    r = chat("wh-closed", "fine")
    h.expect_status(r, 200)


@h.test
def test_metrics_and_logs_without_text():
    before = metric(stage="input", detector="email", action="mask")
    chat("in-oa", "mail %s, a@b.io and c@d.io" % EMAIL)   # three matches, one verdict
    after = metric(stage="input", detector="email", action="mask")
    h.check(after == before + 1, "input email verdicts %s -> %s" % (before, after))
    h.check(metric(stage="output", detector="email", action="mask") >= 1, "no output email metric")
    h.check(metric(stage="input", detector="aws_key", action="block") >= 1, "no block metric")
    h.check(metric(stage="input", detector="custom.ticket", action="log") >= 1, "no log metric")
    lines = [l for l in ENV.gw.access_log() if l.get("guard")]
    h.check(any(l["guard"].startswith("in:mask:") and "email" in l["guard"] for l in lines), "no guard field: %r" % lines[-3:])
    out = ENV.gw.stdout_text() + ENV.gw.stderr_text()
    for s in (EMAIL, CARD, AWS, IBAN):
        h.check(s not in out, "matched text in the logs: %s" % s)


@h.test
def test_check_config_names_bad_regex():
    d = h.make_tmpdir("gwguard-")
    p = os.path.join(d, "bad.yaml")
    with open(p, "w") as f:
        f.write(h.to_yaml({"guardrails": [{"name": "x", "custom": [{"name": "ok", "pattern": "a+"},
                                                                   {"name": "bad", "pattern": "ab(c"}]}],
                           "models": [{"alias": "a", "guardrails": ["x"],
                                       "deployments": [{"provider": "mock", "model": "m"}]}]}))
    rc, out, err = h.check_config(p)
    h.check(rc != 0 and "guardrails[0].custom[1].pattern: missing closing parenthesis at offset 4" in out + err,
            "check-config: %r %r" % (out, err))


def after_each(name):
    g = ENV.gw
    if g is not None:
        reports = g.sanitizer_reports()
        if reports:
            raise AssertionError("sanitizer report: %s" % reports[:3])
        if not g.alive():
            raise AssertionError("gateway died: %s" % g.stderr_text()[-2000:])


def teardown():
    if ENV.gw is not None:
        ENV.gw.stop()
    if ENV.mock is not None:
        ENV.mock.stop()
    if ENV.hook is not None:
        ENV.hook.shutdown()


if __name__ == "__main__":
    setup()
    sys.exit(h.run(after_each=after_each, teardown=teardown, suite_timeout=300))
