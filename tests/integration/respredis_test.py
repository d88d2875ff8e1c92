#!/usr/bin/env python3
"""Stored Responses shared across gateway nodes through Redis (respredis.h).

Two standalone gateways (2 workers each) share one throwaway Redis started by
suite_respredis.sh (REDIS_DIR, REDIS_PORT). A response made through node 1 is
read, listed, continued and deleted through node 2; another key never sees
it; a corrupt Redis value is a 404; with Redis stopped node 2 answers 404 and
node 1 still serves its own from memory; with Redis back sharing resumes.
No timing assertion; every wait is bounded."""
import json
import os
import secrets
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, test  # noqa: E402

REDIS_DIR = os.environ.get("REDIS_DIR", "")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "0"))
REDIS_SH = os.path.join(h.REPO, "scripts", "redis.sh")
WORKERS = 2
KEY_A = "sk-gw-" + secrets.token_urlsafe(24)
KEY_B = "sk-gw-" + secrets.token_urlsafe(24)


class Env:
    gws = []


ENV = Env()


def config():
    return {
        "listen": "127.0.0.1:%d" % h.free_port(),
        "workers": WORKERS,
        "redis_url": "redis://127.0.0.1:%d/0" % REDIS_PORT,
        "responses": {"max_entry_kb": 8},
        "models": [{"alias": "mock", "deployments": [{"provider": "mock", "model": "mock-1"}]}],
        "keys": [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}],
    }


def subject_of(name):
    """auth_subject() for a key without an id: y:<FNV-1a 64 of its name>."""
    x = 1469598103934665603
    for c in name.encode():
        x = ((x ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "y:%016x" % x


def redis_cli(*args):
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT)] + list(args),
                         check=True, capture_output=True, timeout=10)
    return out.stdout.decode()


def redis(cmd):
    subprocess.run([REDIS_SH, cmd, REDIS_DIR, str(REDIS_PORT)], check=True, stdout=subprocess.DEVNULL, timeout=30)


def post(node, body, key=KEY_A):
    return h.http_request(ENV.gws[node].port, "POST", "/v1/responses", json.dumps(body).encode(), key=key)


def get(node, path, key=KEY_A, method="GET"):
    return h.http_request(ENV.gws[node].port, method, path, key=key)


def create(node, text, key=KEY_A, **kw):
    body = {"model": "mock", "input": text}
    body.update(kw)
    r = post(node, body, key=key)
    h.expect_status(r, 200)
    return r.json()


def count_in_stderr(text, nodes=(0, 1)):
    return sum(ENV.gws[i].stderr_text().count(text) for i in nodes)


@test
def a_made_on_node1_read_listed_continued_on_node2():
    tag = "TAG" + secrets.token_hex(4)
    r1 = create(0, "first %s" % tag)
    rid = r1["id"]
    keys = redis_cli("--scan", "--pattern", "gwresp:*")
    check("gwresp:%s:%s" % (subject_of("a"), rid) in keys.split(), "redis keys %r" % keys)
    ttl = int(redis_cli("PTTL", "gwresp:%s:%s" % (subject_of("a"), rid)))
    check(ttl > 0, "no expiry on the stored entry: %r" % ttl)
    for _ in range(4):   # both workers of node 2
        g = get(1, "/v1/responses/" + rid)
        h.expect_status(g, 200)
        check(g.json() == r1, "node 2 %r != node 1 %r" % (g.text[:200], json.dumps(r1)[:200]))
    items = get(1, "/v1/responses/%s/input_items?order=asc" % rid)
    h.expect_status(items, 200)
    check(items.json()["data"][0]["content"][0]["text"] == "first %s" % tag, "items %r" % items.text[:300])
    r2 = create(1, "second %s" % tag, previous_response_id=rid)
    check(r2["previous_response_id"] == rid, "echo %r" % r2.get("previous_response_id"))
    # node 2 stored the continuation (the whole conversation): node 1 reads it through Redis
    it = get(0, "/v1/responses/%s/input_items?order=asc" % r2["id"])
    h.expect_status(it, 200)
    texts = json.dumps(it.json()["data"])
    check("first %s" % tag in texts and "second %s" % tag in texts, "continued items %r" % texts[:400])


@test
def b_another_key_gets_404_on_node2():
    rid = create(0, "mine")["id"]
    for path, method in (("/v1/responses/" + rid, "GET"), ("/v1/responses/%s/input_items" % rid, "GET"),
                         ("/v1/responses/" + rid, "DELETE")):
        r = get(1, path, key=KEY_B, method=method)
        h.expect_status(r, 404)
        h.expect_openai_error(r)
    c = post(1, {"model": "mock", "input": "x", "previous_response_id": rid}, key=KEY_B)
    h.expect_status(c, 404)
    check(h.expect_openai_error(c)["param"] == "previous_response_id", "param %r" % c.text)
    h.expect_status(get(1, "/v1/responses/" + rid), 200)   # still there for its own key


@test
def c_deleted_through_node2():
    rid = create(0, "delete me")["id"]
    d = get(1, "/v1/responses/" + rid, method="DELETE")
    h.expect_status(d, 200)
    check(d.json() == {"id": rid, "object": "response", "deleted": True}, "delete %r" % d.text)
    check(redis_cli("EXISTS", "gwresp:%s:%s" % (subject_of("a"), rid)).strip() == "0", "still in redis")
    for _ in range(4):
        h.expect_status(get(1, "/v1/responses/" + rid), 404)
    h.expect_status(get(1, "/v1/responses/" + rid, method="DELETE"), 404)
    c = post(1, {"model": "mock", "input": "x", "previous_response_id": rid})
    h.expect_status(c, 404)


@test
def d_corrupt_or_foreign_values_are_a_miss():
    sub = subject_of("a")
    bad = {
        "resp_notjson": "{{{{",
        "resp_noinput": json.dumps({"response": {"id": "x"}}),
        "resp_array": "[1,2,3]",
        "resp_deep": "[" * 5000 + "]" * 5000,
        "resp_huge": json.dumps({"input": [], "response": {"t": "x" * 20000}}),   # > max_entry_kb
    }
    for rid, val in bad.items():
        redis_cli("SET", "gwresp:%s:%s" % (sub, rid), val)
        redis_cli("HSET", "gwresp:%s:resp_hash" % sub, "a", "b")   # a wrong type
    for rid in list(bad) + ["resp_hash"]:
        for path in ("/v1/responses/" + rid, "/v1/responses/%s/input_items" % rid):
            r = get(1, path)
            h.expect_status(r, 404)
            h.expect_openai_error(r)
        c = post(1, {"model": "mock", "input": "x", "previous_response_id": rid})
        h.expect_status(c, 404)


@test
def e_redis_down_node2_404_node1_serves_its_own():
    rid = create(0, "before the outage")["id"]
    redis("stop")
    # node 1 serves its own from memory
    for _ in range(4):
        h.expect_status(get(0, "/v1/responses/" + rid), 200)
    # node 2: a local miss, a 404, never a 5xx or a hang (the request timeout bounds it)
    for _ in range(4):
        h.expect_status(get(1, "/v1/responses/" + rid), 404)
        h.expect_status(get(1, "/v1/responses/%s/input_items" % rid), 404)
        h.expect_status(post(1, {"model": "mock", "input": "x", "previous_response_id": rid}), 404)
    # storing still works on the node (write-through skips Redis)
    r = create(1, "during the outage")
    h.expect_status(get(1, "/v1/responses/" + r["id"]), 200)
    h.expect_status(post(1, {"model": "mock", "input": "y", "previous_response_id": r["id"]}), 200)


@test
def f_redis_back_sharing_resumes():
    before = count_in_stderr("responses: redis connected")
    redis("start")
    h.wait_for(lambda: count_in_stderr("responses: redis connected") >= before + 2 * WORKERS, 20,
               what="every worker to reconnect")
    rid = create(0, "after the outage")["id"]
    g = get(1, "/v1/responses/" + rid)
    h.expect_status(g, 200)
    h.expect_status(post(1, {"model": "mock", "input": "z", "previous_response_id": rid}), 200)


@test
def g_redis_frozen_is_a_miss_then_shared_again():
    """A Redis that accepts but never answers (SIGSTOP): node 2's lookups give up after the link's timeout."""
    rid = create(0, "before the freeze")["id"]
    with open(os.path.join(REDIS_DIR, "redis.pid")) as f:
        pid = int(f.read().strip())
    before = count_in_stderr("responses: redis did not answer in time", nodes=(1,))
    os.kill(pid, signal.SIGSTOP)
    try:
        h.expect_status(get(1, "/v1/responses/" + rid), 404)
        h.expect_status(post(1, {"model": "mock", "input": "x", "previous_response_id": rid}), 404)
        check(count_in_stderr("responses: redis did not answer in time", nodes=(1,)) > before,
              "node 2 did not give up on the frozen Redis")
        h.expect_status(get(0, "/v1/responses/" + rid), 200)   # node 1: from memory
    finally:
        os.kill(pid, signal.SIGCONT)
    # shared again once it answers (the link reconnects with backoff)
    h.wait_for(lambda: get(1, "/v1/responses/" + rid).status == 200, 20, interval=0.2,
               what="node 2 to find it through Redis again")


@test
def zz_clean_shutdown():
    """Last: SIGTERM drains and exits 0; under ASan, no leak reports at exit."""
    gws, ENV.gws = ENV.gws, []
    for g in gws:
        rc = g.stop()
        check(rc == 0, "gateway exited with %r" % rc)
        bad = g.sanitizer_reports()
        check(not bad, "sanitizer at exit: %s" % bad[:3])


def setup():
    for _ in range(2):
        ENV.gws.append(h.Gateway(config()))
    h.wait_for(lambda: count_in_stderr("responses: redis connected") >= 2 * WORKERS, 10,
               what="workers to connect to redis")


def after_each(name):
    for g in ENV.gws:
        check(g.alive(), "a gateway died")
        bad = g.sanitizer_reports()
        check(not bad, "sanitizer: %s" % bad[:3])


def teardown():
    for g in ENV.gws:
        g.stop()


if __name__ == "__main__":
    setup()
    sys.exit(h.run(after_each=after_each, teardown=teardown, suite_timeout=300))
