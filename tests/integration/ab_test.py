#!/usr/bin/env python3
"""Evaluated A/B end to end (Python 3 stdlib only): a control plane, a
gateway and three mock upstreams: a good variant, a bad one, and a judge
that prefers the good answer. Verdicts travel with the usage events (and
survive a control-plane outage), land in ab_verdicts, and GET /api/ab shows
the good variant's win rate as the higher one.

Run by suite_ab.sh through pg_suite.sh (CP_BIN, CP_DB_URL, CP_MIGRATIONS, CP_WORK).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import usage_test as u  # noqa: E402  (control plane start/stop, admin API and SQL helpers)

del h._TESTS[:]   # only its helpers: usage_test's own tests run in suite_usage

ENV = u.ENV
N_UP, N_DOWN = 30, 30


class Mocks:
    good = bad = judge = None


M = Mocks()


def dep(mock, model="m"):
    return {"provider": "openai_compatible", "model": model, "base_url": mock.base_url}


def ask(i):
    body = {"model": "ab", "messages": [{"role": "user", "content": "secret question number %d" % i}]}
    r = h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", body=body, key=ENV.key, timeout=10)
    h.expect_status(r, 200)
    return r


def verdicts():
    return int(u.sql("SELECT count(*) FROM ab_verdicts WHERE alias = 'ab'"))


@h.test
def test_setup():
    M.good, M.bad, M.judge = h.Mock("good"), h.Mock("bad"), h.Mock("judge")
    u.api("POST", "/api/models", {"alias": "ab-b", "deployments": [dep(M.bad)]})
    u.api("POST", "/api/models", {"alias": "judge", "deployments": [dep(M.judge, "m-judge")]})
    m = u.api("POST", "/api/models", {"alias": "ab", "deployments": [dep(M.good)], "router": {
        "split_alias": "ab-b", "split_percent": 50, "judge": "judge", "judge_sample_ratio": 1,
        "judge_rubric": "Prefer the answer that is correct."}})
    h.check(m["router"]["judge"] == "judge", "router: %r" % m["router"])
    code, body = u.call("POST", "/api/models", {"alias": "ab-bad", "deployments": [dep(M.good)],
                                                "router": {"judge_sample_ratio": 2}})
    h.check(code == 400 and "judge_sample_ratio" in body["error"]["message"], "bad ratio: %s %r" % (code, body))
    k = u.api("POST", "/api/keys", {"name": "ab-key"})
    ENV.key = k["key"]
    u.gw_start()
    h.wait_for(lambda: h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", key=ENV.key, timeout=10, body={
        "model": "ab", "messages": [{"role": "user", "content": "warm up"}]}).status == 200, 15,
        what="the gateway to serve ab")
    h.wait_for(lambda: verdicts() >= 1, 15, what="the first verdict")


@h.test
def test_verdicts_survive_an_outage_and_the_good_variant_wins():
    before = verdicts()
    for i in range(N_UP):
        ask(i)
    u.cp_kill()
    split = sum(1 for i in range(N_DOWN) if ask(N_UP + i).header("x-gateway-split") == "ab-b")
    h.log("  %d of %d requests during the outage were served by variant b" % (split, N_DOWN))
    u.cp_start()
    want = before + N_UP + N_DOWN
    h.wait_for(lambda: verdicts() >= want, 30, what="%d verdicts in ab_verdicts" % want)
    h.check(verdicts() == want, "each verdict stored once: %d, want %d" % (verdicts(), want))
    judged = len([x for x in M.judge.requests() if x["body"].get("model") == "m-judge"])
    h.check(judged >= want, "judge calls: %d" % judged)
    doc = u.api("GET", "/api/ab?alias=ab")
    h.check(len(doc["data"]) == 1, "one alias: %r" % doc)
    ab = doc["data"][0]
    a, b = ab["variants"]
    h.log("  /api/ab: a %s (%s-%s), b %s, %d verdicts" % (a["win_rate"], a["ci95_low"], a["ci95_high"],
                                                          b["win_rate"], ab["verdicts"]))
    h.check(ab["variant_a"] == "ab" and ab["variant_b"] == "ab-b" and ab["judge_alias"] == "judge", "row: %r" % ab)
    h.check(ab["verdicts"] == want and a["wins"] == want and b["wins"] == 0, "counts: %r" % ab)
    h.check(a["win_rate"] > b["win_rate"] and a["ci95_low"] > 0.5 > b["ci95_high"], "win rates: %r" % ab)
    h.check(0 <= a["ci95_low"] <= a["win_rate"] <= a["ci95_high"] <= 1, "interval: %r" % a)
    rows = u.sql("SELECT string_agg(DISTINCT winner || '/' || judge_model || '/' || coalesce(dataplane_id, ''), ',') "
                 "FROM ab_verdicts")
    h.check(rows == "a/m-judge/usage-node", "rows: %r" % rows)
    dump = u.sql("SELECT json_agg(v)::text FROM ab_verdicts v")
    h.check("secret question" not in dump, "prompt text stored")


@h.test
def test_ab_api_filters_and_refuses_bad_input():
    h.check(u.api("GET", "/api/ab?alias=nothing")["data"] == [], "unknown alias")
    h.check(u.api("GET", "/api/ab?since=2999-01-01T00:00:00Z")["data"] == [], "future since")
    code, _ = u.call("GET", "/api/ab?since=yesterday-ish")
    h.check(code == 400, "bad since: %s" % code)


@h.test
def test_prompt_decoration_through_the_control_plane():
    code, body = u.call("POST", "/api/models", {"alias": "deco-bad", "deployments": [dep(M.good)],
                                                "prompt": {"defaults": {"temperature": 5}}})
    h.check(code == 400 and "temperature" in body["error"]["message"], "bad prompt: %s %r" % (code, body))
    code, body = u.call("POST", "/api/models", {"alias": "deco-bad", "deployments": [dep(M.good)],
                                                "prompt": {"system_prefx": "x"}})
    h.check(code == 400, "unknown prompt field: %s %r" % (code, body))
    m = u.api("POST", "/api/models", {"alias": "deco-cp", "deployments": [dep(M.good)],
                                      "prompt": {"system_prefix": "CP prefix.", "defaults": {"top_p": 0.5}}})
    h.check(m["prompt"] == {"system_prefix": "CP prefix.", "defaults": {"top_p": 0.5}}, "prompt: %r" % m)

    def sent(tag):
        r = h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", key=ENV.key, timeout=10, body={
            "model": "deco-cp", "messages": [{"role": "user", "content": tag}]})
        if r.status != 200:
            return None
        got = M.good.find(tag)
        return got[-1]["body"] if got else None
    b = h.wait_for(lambda: sent("deco one"), 15, what="the gateway to serve deco-cp")
    h.check(b["messages"][0] == {"role": "system", "content": "CP prefix."} and b["top_p"] == 0.5, "body: %r" % b)
    u.api("PATCH", "/api/models/deco-cp", {"prompt": {"system_suffix": "CP suffix."}})
    b = h.wait_for(lambda: [x for x in [sent("deco two")] if x and "CP suffix." in str(x["messages"][0])], 15,
                   what="the new prompt on the gateway")[0]
    h.check(b["messages"][0]["content"] == "CP suffix." and "top_p" not in b, "patched: %r" % b)
    u.api("PATCH", "/api/models/deco-cp", {"prompt": None})
    b = h.wait_for(lambda: [x for x in [sent("deco three")] if x and x["messages"][0]["role"] == "user"], 15,
                   what="the prompt removed on the gateway")[0]
    h.check(len(b["messages"]) == 1, "removed: %r" % b)


def teardown():
    u.teardown()
    for m in (M.good, M.bad, M.judge):
        if m:
            m.stop()


if __name__ == "__main__":
    u.cp_start()
    sys.exit(h.run(after_each=u.after_each, teardown=teardown, suite_timeout=300))
