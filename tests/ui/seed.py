#!/usr/bin/env python3
"""Seeds a control plane for the admin UI test (and for `UI_SUITE_SERVE=1`):
teams with budgets, keys (one revoked), models with deployments and
fallbacks, a credential, a data plane row, spend_log rows over the last 21
days (deterministic), and a viewer token, printed on stdout.
Reads CP_URL, CP_ADMIN_TOKEN and CP_PG_PORT."""
import datetime
import json
import os
import random
import subprocess
import sys
import urllib.error
import urllib.request

URL = os.environ["CP_URL"]
ADMIN = os.environ["CP_ADMIN_TOKEN"]
PG_PORT = os.environ["CP_PG_PORT"]


def api(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {ADMIN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as e:
        sys.exit(f"seed: {method} {path}: {e.code} {e.read().decode()}")


def psql(sql):
    out = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", PG_PORT,
                          "-U", "gateway", "-d", "gateway"], input=sql, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        sys.exit(f"seed: psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def main():
    rnd = random.Random(8)
    teams = [api("POST", "/api/teams", {"name": "Search", "budget_usd": 500, "budget_period": "monthly",
                                         "rpm_limit": 600}),
             api("POST", "/api/teams", {"name": "Support", "budget_usd": 40, "budget_period": "daily"}),
             api("POST", "/api/teams", {"name": "Research"})]
    keys = []
    for name, team, extra in (("search-prod", 0, {"rpm_limit": 300, "budget_usd": 200, "budget_period": "monthly"}),
                              ("search-staging", 0, {"models": ["gpt-4o-mini"]}),
                              ("support-bot", 1, {"tpm_limit": 100000}),
                              ("research-notebooks", 2, {}),
                              ("legacy-batch", None, {})):
        body = {"name": name}
        if team is not None:
            body["team_id"] = teams[team]["id"]
        body.update(extra)
        keys.append(api("POST", "/api/keys", body))
    api("POST", f"/api/keys/{keys[4]['id']}/revoke")
    cred = api("POST", "/api/credentials", {"name": "openai-prod", "provider": "openai",
                                             "secret": "seed-" + "x" * 24 + "9f3a"})
    api("POST", "/api/models", {"alias": "gpt-4o-mini", "strategy": "weighted", "deployments": [
        {"provider": "openai", "model": "gpt-4o-mini", "api_key": f"cred:{cred['id']}", "weight": 3},
        {"provider": "mock", "weight": 1}], "fallbacks": ["claude-haiku"]})
    api("POST", "/api/models", {"alias": "ui-mock", "deployments": [
        {"provider": "mock", "model": "mock-x", "input_cost_per_mtok": 100, "output_cost_per_mtok": 300}]})
    api("POST", "/api/models", {"alias": "claude-haiku", "strategy": "least_latency", "deployments": [
        {"provider": "mock", "model": "claude-3-5-haiku"}]})
    psql("INSERT INTO dataplanes (id, hostname, version, config_version, workers, first_seen, last_seen) "
         "VALUES ('gw-eu-1', 'gw-eu-1.internal', '0.9.0', (SELECT version FROM config_version), 2, "
         "now() - interval '3 days', now() - interval '4 seconds'), "
         "('gw-us-1', 'gw-us-1.internal', '0.9.0', 1, 2, now() - interval '9 days', now() - interval '2 hours')")

    now = datetime.datetime.now(datetime.timezone.utc)
    models = [("gpt-4o-mini", "openai", 0.0021), ("claude-haiku", "mock", 0.0009), ("gpt-4o-mini", "mock", 0.0)]
    rows = []
    for i in range(1500):
        age = rnd.random() ** 1.6 * 21 * 86400
        ts = now - datetime.timedelta(seconds=age)
        k = rnd.choice(keys[:4] + [keys[0], keys[0], keys[2]])
        m, prov, per = rnd.choice(models)
        pt, ct = rnd.randint(50, 1500), rnd.randint(10, 600)
        status = 200 if rnd.random() > 0.04 else rnd.choice([429, 500, 502])
        rows.append({"request_id": f"seed-{i}", "ts": ts.isoformat(), "key_id": k["id"], "team_id": k.get("team_id"),
                     "model_alias": m, "provider": prov, "upstream_model": m, "prompt_tokens": pt,
                     "completion_tokens": ct, "cost_usd": round(per * (pt + 3 * ct) / 1000 * 10, 6),
                     "latency_ms": int(rnd.lognormvariate(6.2, 0.6)), "ttft_ms": rnd.randint(80, 400),
                     "status": status, "attempts": 1 if status == 200 else 2, "dataplane_id": "gw-eu-1"})
    doc = json.dumps(rows).replace("'", "''")
    psql(f"SELECT spend_log_insert_batch('{doc}'::jsonb)")
    # evaluated A/B verdicts (gateway/abjudge.h): 30 for the alias, 7 for its canary, 3 ties
    api("POST", "/api/models", {"alias": "ui-mock-canary", "deployments": [{"provider": "mock", "model": "mock-y"}]})
    verdicts = [{"request_id": f"seed-ab-{i}", "ts": (now - datetime.timedelta(minutes=i)).isoformat(),
                 "alias": "ui-mock", "variant_a": "ui-mock", "variant_b": "ui-mock-canary",
                 "winner": "a" if i < 30 else "b" if i < 37 else "tie", "judge_alias": "claude-haiku",
                 "judge_model": "claude-3-5-haiku", "dataplane_id": "gw-eu-1"} for i in range(40)]
    psql(f"SELECT ab_verdicts_insert_batch('{json.dumps(verdicts)}'::jsonb)")
    viewer = api("POST", "/api/admin-tokens", {"name": "finance-viewer", "role": "viewer"})
    print(viewer["token"])


if __name__ == "__main__":
    main()
