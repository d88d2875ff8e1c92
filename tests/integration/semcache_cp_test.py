#!/usr/bin/env python3
"""The semantic cache through the control plane (Python 3 stdlib only).

Run by suite_semcache_cp.sh (CP_BIN, CP_DB_URL, CP_MIGRATIONS, CP_WORK): the
admin API checks cache.semantic, the setting reaches a gateway in the
snapshot (ModelAlias.semantic_json), a paraphrase is answered from the cache,
and the score reaches spend_log.cache_similarity. No timing assertions.
"""
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CP_BIN = os.environ["CP_BIN"]
DB_URL = os.environ["CP_DB_URL"]
MIGRATIONS = os.environ["CP_MIGRATIONS"]
WORK = os.environ["CP_WORK"]
ADMIN = "cp-sem-" + secrets.token_urlsafe(32)


class Env:
    cp = None
    gw = None
    dp_port = h.free_port_pair()
    cp_port = h.free_port()
    while cp_port in (dp_port, dp_port + 1):
        cp_port = h.free_port()
    gw_port = h.free_port()
    key = None


def cp_start():
    cfg = os.path.join(WORK, "controlplane.yaml")
    with open(cfg, "w") as f:
        f.write("database_url: %s\nadmin_listen: 127.0.0.1:%d\ndataplane_listen: tcp://127.0.0.1:%d\n"
                "master_key_file: %s/keys/master.key\n" % (DB_URL, Env.cp_port, Env.dp_port, WORK))
    log = open(os.path.join(WORK, "controlplane.log"), "ab")
    env = dict(os.environ, CONTROLPLANE_ADMIN_TOKEN=ADMIN)
    p = subprocess.Popen([CP_BIN, "--config", cfg, "--migrations-dir", MIGRATIONS], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, env=env, start_new_session=True)
    h._register(p)
    Env.cp = p
    h.wait_for(lambda: call("GET", "/healthz")[0] == 200, 15, what="control plane /healthz")


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (Env.cp_port, path), data=data, method=method)
    req.add_header("Authorization", "Bearer " + ADMIN)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "null")


def api(method, path, body=None, want=(200, 201)):
    status, doc = call(method, path, body)
    h.check(status in want, "%s %s: %s %s" % (method, path, status, doc))
    return doc


def psql(sql):
    out = subprocess.run(["psql", "-X", "-tAc", sql, DB_URL], capture_output=True, text=True,
                         timeout=10 * h.SLOW, check=True)
    return out.stdout.strip()


def mock(alias, **extra):
    m = {"alias": alias, "deployments": [{"provider": "mock", "model": "mock-" + alias}]}
    m.update(extra)
    return m


def chat(text, model="sem"):
    body = {"model": model, "temperature": 0.2, "messages": [{"role": "user", "content": text}]}
    return h.http_request(Env.gw_port, "POST", "/v1/chat/completions", body=body, key=Env.key, timeout=5)


@h.test
def admin_api_checks_semantic_settings():
    api("POST", "/api/models", mock("emb"))
    bad = [
        ({"semantic": 5}, "cache.semantic must be an object"),
        ({"semantic": {"threshold": 0.9}}, "embedding_model"),
        ({"semantic": {"embedding_model": "sem-bad"}}, "embedding_model"),     # the model itself
        ({"semantic": {"embedding_model": "emb", "threshold": 0.2}}, "cache.semantic.threshold"),
        ({"semantic": {"embedding_model": "emb", "ttl_s": 1.5}}, "cache.semantic.ttl_s"),
        ({"semantic": {"embedding_model": "emb", "max_temperature": 9}}, "cache.semantic.max_temperature"),
        ({"semantic": {"embedding_model": "emb", "radius": 1}}, "cache.semantic.radius"),
    ]
    for cache, want in bad:
        code, body = call("POST", "/api/models", mock("sem-bad", cache=cache))
        h.check(code == 400 and want in json.dumps(body), "cache %r: %s %r" % (cache, code, body))
    sem = {"embedding_model": "emb", "threshold": 0.8, "ttl_s": 600, "max_temperature": 0.9}
    m = api("POST", "/api/models", mock("sem", cache={"semantic": sem}))
    h.check(m["cache"] == {"semantic": sem}, "stored cache %r" % m)
    # the table refuses a non-object whatever writes it (migration 010)
    out = subprocess.run(["psql", "-X", "-tAc", "UPDATE models SET cache = '{\"semantic\": 3}' WHERE alias = 'sem'",
                          DB_URL], capture_output=True, text=True, timeout=10 * h.SLOW)
    h.check(out.returncode != 0 and "models_cache_semantic_object" in out.stderr, "constraint: %r" % out.stderr)


@h.test
def paraphrase_hit_through_the_control_plane_and_spend_log():
    Env.key = api("POST", "/api/keys", {"name": "sem-user"})["key"]
    cfg = {"listen": "127.0.0.1:%d" % Env.gw_port, "workers": 1, "access_log": "off",
           "control_plane": "tcp://127.0.0.1:%d" % Env.dp_port, "state_dir": h.make_tmpdir("gwtest-state-"),
           "dataplane_id": "sem-gw"}
    Env.gw = h.Gateway(cfg, ready_timeout=15)
    h.wait_for(lambda: chat("warm up").status == 200, 10, what="the gateway to serve sem")
    a = chat("What is the capital city of France?")
    h.check(a.status == 200 and a.header("x-gateway-cache") == "MISS", "first %r" % a)
    b = chat("Tell me, what is the capital city of France")
    h.check(b.status == 200 and b.header("x-gateway-cache") == "HIT", "paraphrase %r" % b)
    sim = float(b.header("x-gateway-cache-similarity"))
    h.check(0.8 <= sim < 1, "similarity %r" % sim)
    rid = b.header("x-gateway-request-id")
    row = h.wait_for(lambda: psql("SELECT cache_hit, cache_similarity, cost_usd FROM spend_log "
                                  "WHERE request_id = '%s'" % rid) or None, 15, what="the hit's spend_log row")
    hit, s, cost = row.split("|")
    h.check(hit == "t" and abs(float(s) - sim) < 1e-3 and float(cost) == 0, "spend_log row %r (header %r)" % (row, sim))
    # temperature above the alias's bound (0.9; absent counts as 1.0): not answered from the cache
    r = h.http_request(Env.gw_port, "POST", "/v1/chat/completions", key=Env.key, timeout=5,
                       body={"model": "sem", "temperature": 1.0,
                             "messages": [{"role": "user", "content": "What is the capital city of France?"}]})
    h.check(r.status == 200 and r.header("x-gateway-cache") != "HIT", "hot request %r" % r)


@h.test
def teams_share_their_entries_and_only_theirs():
    ta = api("POST", "/api/teams", {"name": "sem-team-a"})["id"]
    tb = api("POST", "/api/teams", {"name": "sem-team-b"})["id"]
    a1 = api("POST", "/api/keys", {"name": "sem-a1", "team_id": ta})["key"]
    a2 = api("POST", "/api/keys", {"name": "sem-a2", "team_id": ta})["key"]
    b1 = api("POST", "/api/keys", {"name": "sem-b1", "team_id": tb})["key"]

    def ask(key, text):
        body = {"model": "sem", "temperature": 0.2, "messages": [{"role": "user", "content": text}]}
        return h.http_request(Env.gw_port, "POST", "/v1/chat/completions", body=body, key=key, timeout=5)
    h.wait_for(lambda: ask(b1, "warm up b").status == 200, 10, what="the gateway to know the new keys")
    h.wait_for(lambda: ask(a1, "warm up a").status == 200, 10, what="the gateway to know the new keys")
    r = ask(a1, "Which planet in the solar system has the most moons?")
    h.check(r.header("x-gateway-cache") == "MISS", "team a first %r" % r)
    r = ask(a2, "which planet of the solar system has the most moons")
    h.check(r.header("x-gateway-cache") == "HIT", "another key of the same team: %r" % r)
    r = ask(b1, "which planet of the solar system has the most moons")
    h.check(r.header("x-gateway-cache") == "MISS", "another team's key must miss: %r" % r)


@h.test
def semantic_setting_removed_by_patch():
    v = int(psql("SELECT version FROM config_version"))
    api("PATCH", "/api/models/sem", {"cache": None})

    def off():
        r = chat("Tell me, what is the capital city of France")
        return r.status == 200 and r.header("x-gateway-cache") is None
    h.wait_for(off, 10, what="the gateway to drop the semantic cache (config after version %d)" % v)


def after_each(name):
    if Env.gw:
        reports = Env.gw.sanitizer_reports()
        if reports:
            raise AssertionError("sanitizer report: %s" % reports[:3])


def teardown():
    if Env.gw:
        Env.gw.stop()
    if Env.cp is not None and Env.cp.poll() is None:
        Env.cp.terminate()
        try:
            Env.cp.wait(timeout=10 * h.SLOW)
        except subprocess.TimeoutExpired:
            pass


if __name__ == "__main__":
    cp_start()
    sys.exit(h.run(after_each=after_each, teardown=teardown, suite_timeout=300))
