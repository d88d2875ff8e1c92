#!/usr/bin/env python3
"""Prompt decoration and structured-output validation on the wire (Python 3
stdlib only): what the upstream receives (mocks record every body), what the
client gets when an answer breaks its JSON schema, and the retries.
"""
import json
import os
import secrets
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

KEY = "sk-gw-" + secrets.token_urlsafe(32)
PREFIX = "You are the ACME assistant."
SUFFIX = "Answer in English."


class Env:
    a = gw = good = bad = None


ENV = Env()


def setup():
    ENV.a = h.Mock("A")
    ENV.mport = h.free_port()
    ENV.good = h.Mock("good")
    ENV.bad = h.Mock("bad")
    a = ENV.a

    def on(mock, model="m"):
        return {"provider": "openai_compatible", "model": model, "base_url": mock.base_url, "api_key": "sk-up"}
    oa = {"provider": "openai_compatible", "model": "m", "base_url": a.base_url, "api_key": "sk-up"}
    an = {"provider": "anthropic", "model": "claude-3-5-haiku-20241022", "base_url": a.base_url[:-len("/v1")],
          "api_key": "sk-up"}
    prompt = {"system_prefix": PREFIX, "system_suffix": SUFFIX,
              "defaults": {"temperature": 0.2, "max_tokens": 300, "top_k": 40}}
    cfg = {
        "listen": "127.0.0.1:%d" % h.free_port(),
        "metrics_listen": "127.0.0.1:%d" % ENV.mport,
        "workers": 1,
        "models": [
            {"alias": "deco", "deployments": [oa], "prompt": prompt},
            {"alias": "deco-anth", "deployments": [an], "prompt": prompt},
            {"alias": "plain", "deployments": [oa]},
            {"alias": "schema", "deployments": [oa], "router": {"backoff_ms": 1}},
            {"alias": "schema3", "deployments": [oa], "router": {"schema_retries": 2, "backoff_ms": 1}},
            {"alias": "schema0", "deployments": [oa], "router": {"schema_retries": 0}},
            {"alias": "ab", "deployments": [on(ENV.good)],
             "router": {"split_alias": "ab-b", "split_percent": 50, "judge": "judge", "judge_sample_ratio": 1,
                        "judge_rubric": "Prefer the correct answer."}},
            {"alias": "ab-b", "deployments": [on(ENV.bad)]},
            {"alias": "judge", "deployments": [on(a, "m-judge")]},
        ],
        "keys": [{"name": "t", "key": KEY}],
    }
    ENV.gw = h.Gateway(cfg)


def post(path, body, **kw):
    return h.http_request(ENV.gw.port, "POST", path, json.dumps(body).encode(), key=KEY, **kw)


def last_body(tag):
    return ENV.a.wait_find(tag)[-1]["body"]


@h.test
def test_chat_gets_a_system_message_and_defaults():
    ENV.a.reset()
    r = post("/v1/chat/completions", {"model": "deco", "messages": [{"role": "user", "content": "hello t1"}],
                                      "max_tokens": 7})
    h.expect_status(r, 200)
    b = last_body("hello t1")
    h.check(b["messages"][0] == {"role": "system", "content": PREFIX + "\n\n" + SUFFIX}, "system: %r" % b["messages"])
    h.check(b["messages"][1] == {"role": "user", "content": "hello t1"}, "user message kept: %r" % b["messages"])
    h.check(b["temperature"] == 0.2 and b["top_k"] == 40, "defaults added: %r" % b)
    h.check(b["max_tokens"] == 7, "the client's max_tokens wins: %r" % b)
    h.check(b["model"] == "m", "model rewritten: %r" % b)


@h.test
def test_chat_system_message_is_wrapped():
    ENV.a.reset()
    r = post("/v1/chat/completions", {"model": "deco", "temperature": 1.5, "max_completion_tokens": 9,
                                      "messages": [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": "hello t2"}]})
    h.expect_status(r, 200)
    b = last_body("hello t2")
    h.check(b["messages"][0]["content"] == PREFIX + "\n\nBe brief.\n\n" + SUFFIX, "system: %r" % b["messages"])
    h.check(len(b["messages"]) == 2, "no extra message: %r" % b["messages"])
    h.check(b["temperature"] == 1.5, "client temperature wins: %r" % b)
    h.check("max_tokens" not in b, "max_tokens default skipped when max_completion_tokens is set: %r" % b)


@h.test
def test_messages_pass_through_system_decorated():
    ENV.a.reset()
    r = post("/v1/messages", {"model": "deco-anth", "max_tokens": 50, "system": "Be kind.",
                              "messages": [{"role": "user", "content": "hello t3"}]})
    h.expect_status(r, 200)
    b = last_body("hello t3")
    h.check(b["system"] == PREFIX + "\n\nBe kind.\n\n" + SUFFIX, "system: %r" % b.get("system"))
    h.check(b["temperature"] == 0.2 and b["max_tokens"] == 50 and b["top_k"] == 40, "defaults: %r" % b)
    ENV.a.reset()
    r = post("/v1/messages", {"model": "deco-anth", "max_tokens": 50,
                              "system": [{"type": "text", "text": "Block."}],
                              "messages": [{"role": "user", "content": "hello t3b"}]})
    h.expect_status(r, 200)
    b = last_body("hello t3b")
    texts = [x.get("text") for x in b["system"]] if isinstance(b["system"], list) else [b["system"]]
    h.check(texts == [PREFIX, "Block.", SUFFIX], "system blocks: %r" % b["system"])


@h.test
def test_chat_translated_to_anthropic_is_decorated():
    ENV.a.reset()
    r = post("/v1/chat/completions", {"model": "deco-anth", "messages": [{"role": "user", "content": "hello t4"}]})
    h.expect_status(r, 200)
    b = last_body("hello t4")
    sysv = b.get("system")
    text = sysv if isinstance(sysv, str) else " ".join(x.get("text", "") for x in sysv or [])
    h.check(PREFIX in text and SUFFIX in text, "system: %r" % sysv)
    h.check(b.get("temperature") == 0.2 and b.get("max_tokens") == 300, "defaults: %r" % b)


@h.test
def test_messages_without_system_and_plain_alias_untouched():
    ENV.a.reset()
    r = post("/v1/messages", {"model": "deco-anth", "max_tokens": 50,
                              "messages": [{"role": "user", "content": "hello t5"}]})
    h.expect_status(r, 200)
    h.check(last_body("hello t5")["system"] == PREFIX + "\n\n" + SUFFIX, "system added")
    body = {"model": "plain", "messages": [{"role": "user", "content": "hello t6"}]}
    r = post("/v1/chat/completions", body)
    h.expect_status(r, 200)
    b = last_body("hello t6")
    h.check(b == dict(body, model="m"), "undecorated alias changed the body: %r" % b)


@h.test
def test_bad_prompt_config_is_refused():
    d = h.make_tmpdir("gwtest-deco-")
    path = os.path.join(d, "gw.yaml")
    cfg = {"models": [{"alias": "x", "deployments": [{"provider": "mock", "model": "m"}],
                       "prompt": {"defaults": {"temprature": 1}}}], "keys": [{"name": "k", "key": "sk-test-12345678"}]}
    h.write_file_atomic(path, h.to_yaml(cfg))
    rc, o1, o2 = h.check_config(path)
    out = o1 + o2
    h.check(rc != 0 and "models[0].prompt.defaults.temprature" in out, "check-config: %r %r" % (rc, out))
    cfg["models"][0]["prompt"] = {"defaults": {"temperature": 9}}
    h.write_file_atomic(path, h.to_yaml(cfg))
    rc, o1, o2 = h.check_config(path)
    out = o1 + o2
    h.check(rc != 0 and "from 0 to 2" in out, "check-config: %r %r" % (rc, out))
    cfg["models"][0]["prompt"] = {"system_prefix": "p"}
    cfg["models"][0]["router"] = {"judge": "x"}
    h.write_file_atomic(path, h.to_yaml(cfg))
    rc, o1, o2 = h.check_config(path)
    out = o1 + o2
    h.check(rc != 0 and "models[0].router.judge" in out, "check-config: %r %r" % (rc, out))


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": ["string", "null"]}},
          "required": ["a", "b"], "additionalProperties": False}


def queue(*texts):
    r = h.http_request(ENV.a.port, "POST", "/_mock/replies", json.dumps(list(texts)).encode())
    h.check(r.status == 200, "queue: %r" % r)


def schema_req(alias, strict=True, tag="s"):
    return {"model": alias, "messages": [{"role": "user", "content": "give json " + tag}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "x", "schema": SCHEMA, "strict": strict}}}


def content(r):
    return r.json()["choices"][0]["message"]["content"]


@h.test
def test_schema_invalid_then_valid_is_retried():
    ENV.a.reset()
    queue('{"a":"one","b":null}', '{"a":1,"b":null}')
    r = post("/v1/chat/completions", schema_req("schema"))
    h.expect_status(r, 200)
    h.check(content(r) == '{"a":1,"b":null}', "answer: %r" % r)
    h.check(r.header("x-gateway-attempts") == "2", "attempts: %r" % r.header("x-gateway-attempts"))
    h.check(len(ENV.a.requests()) == 2, "upstream calls: %d" % len(ENV.a.requests()))


@h.test
def test_schema_still_invalid_fails_with_the_path():
    ENV.a.reset()
    queue('{"a":1,"b":2}', '{"a":1,"b":null,"c":true}')
    r = post("/v1/chat/completions", schema_req("schema"))
    h.expect_status(r, 502)
    err = h.expect_openai_error(r)
    h.check(err["code"] == "schema_validation_failed" and err["param"] == "response_format", "error: %r" % err)
    h.check("$.c" in err["message"] and "2 attempts" in err["message"], "message: %r" % err["message"])
    h.check(r.header("x-gateway-attempts") == "2", "attempts: %r" % r.header("x-gateway-attempts"))
    line = h.wait_for(lambda: [x for x in ENV.gw.access_log()
                               if x.get("request_id") == r.header("x-gateway-request-id")], 5, what="log line")[0]
    h.check(line.get("error") == "schema_validation_failed" and line.get("status") == 502, "log: %r" % line)


@h.test
def test_schema_retries_are_configurable():
    ENV.a.reset()
    queue("not json at all", '{"a":1}', '{"a":2,"b":"x"}')
    r = post("/v1/chat/completions", schema_req("schema3"))
    h.expect_status(r, 200)
    h.check(content(r) == '{"a":2,"b":"x"}' and r.header("x-gateway-attempts") == "3", "answer: %r" % r)
    ENV.a.reset()
    queue("not json at all")
    r = post("/v1/chat/completions", schema_req("schema0"))
    h.expect_status(r, 502)
    err = h.expect_openai_error(r)
    h.check("not valid JSON" in err["message"] and r.header("x-gateway-attempts") == "1", "error: %r" % err)


@h.test
def test_schema_not_strict_is_not_checked():
    ENV.a.reset()
    queue('{"a":"x"}')
    r = post("/v1/chat/completions", schema_req("schema", strict=False))
    h.expect_status(r, 200)
    h.check(content(r) == '{"a":"x"}' and r.header("x-gateway-attempts") == "1", "answer: %r" % r)


@h.test
def test_schema_checked_at_the_end_of_a_stream():
    ENV.a.reset()
    queue('{"a":1,"b":"streamed"}')
    r = post("/v1/chat/completions", dict(schema_req("schema"), stream=True), sse=True)
    h.expect_status(r, 200)
    data = r.events and [e["data"] for e in r.events]
    h.check(data[-1] == "[DONE]", "a valid stream ends with [DONE]: %r" % data[-3:])
    text = "".join((json.loads(d)["choices"][0]["delta"].get("content") or "") for d in data[:-1]
                   if json.loads(d).get("choices"))
    h.check(text == '{"a":1,"b":"streamed"}', "content: %r" % text)
    ENV.a.reset()
    queue('{"a":"x","b":null}')
    r = post("/v1/chat/completions", dict(schema_req("schema"), stream=True), sse=True)
    h.expect_status(r, 200)
    data = [e["data"] for e in r.events]
    h.check("[DONE]" not in data, "a violating stream must not end with [DONE]: %r" % data[-3:])
    err = json.loads(data[-1]).get("error") or {}
    h.check(err.get("code") == "schema_validation_failed" and "$.a" in err.get("message", ""), "error: %r" % err)
    h.check(len(ENV.a.requests()) == 1, "a stream is never retried")
    ENV.a.reset()   # the translated path: an Anthropic stream checked the same way
    r = post("/v1/chat/completions", dict(schema_req("deco-anth"), stream=True), sse=True)
    h.expect_status(r, 200)
    data = [e["data"] for e in r.events]
    h.check("[DONE]" not in data and "schema_validation_failed" in data[-1], "translated: %r" % data[-2:])


@h.test
def test_ab_judge_verdicts_in_the_log():
    """YAML mode: verdicts go to the gateway's log (no control plane); the good variant wins."""
    ENV.a.reset()
    n = 20
    judged_ms, plain_ms = [], []
    t0 = time.monotonic()
    for i in range(n):
        for alias, out in (("ab", judged_ms), ("ab-b", plain_ms)):
            t = time.monotonic()
            r = post("/v1/chat/completions", {"model": alias, "messages": [{"role": "user", "content": "question %d" % i}]})
            out.append((time.monotonic() - t) * 1000)
            h.expect_status(r, 200)

    def verdicts():
        return [ln for ln in ENV.gw.stderr_text().splitlines() if "ab verdict:" in ln]
    lines = h.wait_for(lambda: len(verdicts()) >= n and verdicts(), 15, what="%d verdicts" % n)
    h.log("  client latency, median of %d: judged alias %.2f ms, same mock without a judge %.2f ms; "
          "%d verdicts logged %.2f s after the first request" % (n, statistics.median(judged_ms),
                                                                 statistics.median(plain_ms), n, time.monotonic() - t0))
    h.check(all("winner=a" in ln for ln in lines), "the good variant (a) should win every time: %r" % lines[:5])
    h.check(not any("question" in ln for ln in lines), "prompt text in a verdict line")
    judged = [x for x in ENV.a.requests() if x["body"].get("model") == "m-judge"]
    h.check(len(judged) == n, "judge calls: %d" % len(judged))
    msgs = judged[0]["body"]["messages"]
    h.check(msgs[0]["role"] == "system" and "Prefer the correct answer." in msgs[0]["content"], "rubric: %r" % msgs[0])
    first = [("mock[good]" in x["body"]["messages"][1]["content"].split("Answer B:")[0]) for x in judged]
    h.check(0 < sum(first) < n, "answers shown in one order only: %r" % first)
    text = h.http_request(ENV.mport, "GET", "/metrics").text
    for result in ("started", "verdict"):
        line = 'gatewayllm_ab_judgements_total{result="%s"} %d' % (result, n)
        h.check(line in text.splitlines(), "metrics lack %r" % line)


@h.test
def test_ab_judge_streams_and_messages():
    def verdicts():
        return [ln for ln in ENV.gw.stderr_text().splitlines() if "ab verdict:" in ln]
    before = len(verdicts())

    def answers():   # mock streams say "chunk-N": each variant is given its answer (client or shadow call)
        for m in (ENV.good, ENV.bad):
            for _ in range(2):
                q = h.http_request(m.port, "POST", "/_mock/replies",
                                   json.dumps(["mock[%s] answer" % m.name]).encode())
                h.check(q.status == 200, "queue: %r" % q)
    for i in range(4):
        answers()
        r = post("/v1/chat/completions", {"model": "ab", "stream": True,
                                          "messages": [{"role": "user", "content": "streamed %d" % i}]}, sse=True)
        h.expect_status(r, 200)
        r = post("/v1/messages", {"model": "ab", "max_tokens": 50, "stream": i % 2 == 0,
                                  "messages": [{"role": "user", "content": "anthropic client %d" % i}]}, sse=i % 2 == 0)
        h.expect_status(r, 200)
    lines = h.wait_for(lambda: len(verdicts()) >= before + 8 and verdicts()[before:], 15, what="8 more verdicts")
    h.check(len(lines) == 8 and all("winner=a" in ln for ln in lines), "verdicts: %r" % lines)


def teardown():
    if ENV.gw:
        ENV.gw.stop()
        rep = ENV.gw.sanitizer_reports()
        if rep:
            h.log("sanitizer reports:\n" + "\n".join(rep[:20]))
            h._state["failed"] += 1
    for m in (ENV.a, ENV.good, ENV.bad):
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
