#!/usr/bin/env python3
"""Guardrails through the control plane (Python 3 stdlib only): the admin API
checks a model's `guardrails` (naming a bad pattern's field and offset), the
policies reach the gateway in the snapshot (ModelAlias.guardrails_json) and
apply there (masking what the upstream receives, blocking), and a PATCH
removing them reaches it too. Run by suite_guard_cp.sh (pg_suite.sh); the
control plane and gateway helpers are cp_push_test.py's.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import cp_push_test as cp  # noqa: E402

h._TESTS.clear()   # only this file's tests: cp_push_test's register themselves on import

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
POLICY = [{"name": "pii", "detectors": {"email": "mask", "secrets": "block"},
           "custom": [{"name": "ticket", "pattern": "TCK-[0-9]{6}", "action": "mask"}]}]


class Env:
    mock = None
    key = None


ENV = Env()


def guarded_chat(text):
    body = {"model": "guarded", "messages": [{"role": "user", "content": text}]}
    return h.http_request(cp.ENV.gw_ports["gw-g"], "POST", "/v1/chat/completions", body=body, key=ENV.key, timeout=5)


@h.test
def test_admin_api_checks_guardrails():
    code, body = cp.call("POST", "/api/models", dict(cp.mock_model("bad-guard"), guardrails=[
        {"name": "x", "custom": [{"name": "t", "pattern": "ab(c"}]}]))
    h.check(code == 400 and "guardrails[0].custom[0].pattern: missing closing parenthesis at offset 4" in json.dumps(body),
            "bad pattern: %s %r" % (code, body))
    code, body = cp.call("POST", "/api/models", dict(cp.mock_model("bad-guard"), guardrails=[
        {"name": "x", "detectors": {"emails": "mask"}}]))
    h.check(code == 400 and "guardrails[0].detectors.emails" in json.dumps(body), "bad detector: %r" % (body,))
    code, body = cp.call("POST", "/api/models", dict(cp.mock_model("bad-guard"), guardrails={"name": "x"}))
    h.check(code == 400, "not a list: %r" % (body,))


@h.test
def test_policies_reach_the_gateway_and_apply():
    ENV.mock = h.Mock("CPG")
    dep = {"provider": "openai_compatible", "model": "m", "base_url": ENV.mock.base_url, "api_key": "env:PATH"}
    m = cp.api("POST", "/api/models", {"alias": "guarded", "deployments": [dep], "guardrails": POLICY})
    h.check(m["guardrails"] == POLICY, "stored: %r" % m)
    ENV.key = cp.new_key("guard-user")["key"]
    cp.gw_start("gw-g")
    cp.wait_status(ENV.key, 200, model="guarded", timeout=10)   # every worker has the snapshot
    r = guarded_chat("CPG1 write to jane@example.com about TCK-123456")
    h.expect_status(r, 200)
    seen = json.dumps(ENV.mock.wait_find("CPG1")[-1]["body"])
    h.check("jane@example.com" not in seen and "[EMAIL]" in seen and "[TICKET]" in seen, "upstream saw %s" % seen)
    r = guarded_chat("key " + AWS)
    h.expect_status(r, 400)
    h.check(h.expect_openai_error(r)["code"] == "guardrail_blocked", "%r" % r)


@h.test
def test_verdicts_reach_spend_log_without_text():
    def rows():
        st, d = cp.call("GET", "/api/spend/logs?model=guarded&limit=50")
        return [x for x in (d or {}).get("data", []) if x.get("guard")] if st == 200 else []
    got = h.wait_for(rows, 10, what="usage events with a guard summary in spend_log")
    guards = {x["guard"] for x in got}
    h.check("in:mask:email,custom.ticket" in guards, "guard summaries: %r" % guards)
    h.check("in:block:aws_key" in guards, "guard summaries: %r" % guards)
    h.check(not any("jane@" in g or AWS in g for g in guards), "matched text in spend_log: %r" % guards)


@h.test
def test_removing_them_reaches_the_gateway():
    cp.api("PATCH", "/api/models/guarded", {"guardrails": None})
    h.wait_for(lambda: all(guarded_chat("key " + AWS).status == 200 for _ in range(6)), 10,
               what="the policies gone on every worker")


def teardown():
    cp.teardown()
    if ENV.mock is not None:
        ENV.mock.stop()


if __name__ == "__main__":
    cp.cp_start()
    sys.exit(h.run(after_each=cp.after_each, teardown=teardown, suite_timeout=300))
