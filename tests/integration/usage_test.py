#!/usr/bin/env python3
"""Usage events from gateways into spend_log (Python 3 stdlib only).

Run by suite_usage.sh (a migrated Postgres; CP_BIN, CP_DB_URL, CP_MIGRATIONS,
CP_WORK). Starts the control plane and a gateway with two workers, stops the
control plane while 2,000 requests pass (restarting the gateway once in the
middle), starts it again, and checks that spend_log holds exactly those
2,000 request ids, once each, with the costs the clients were shown. Then it
measures how fast the control plane ingests a backlog (printed, not asserted).
"""
import json
import os
import secrets
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CP_BIN = os.environ["CP_BIN"]
DB_URL = os.environ["CP_DB_URL"]
MIGRATIONS = os.environ["CP_MIGRATIONS"]
WORK = os.environ["CP_WORK"]
ADMIN = "usage-" + secrets.token_urlsafe(32)
OUTAGE_REQUESTS = 2000
BENCH_EVENTS = int(os.environ.get("USAGE_BENCH_EVENTS", "100000"))


class Env:
    cp = None
    dp_port = h.free_port_pair()
    cp_port = h.free_port()
    while cp_port in (dp_port, dp_port + 1):
        cp_port = h.free_port()
    gw = None
    state = None
    gw_port = None
    key = None
    key_id = None
    team_id = None


ENV = Env()


def cp_start():
    cfg = os.path.join(WORK, "controlplane.yaml")
    with open(cfg, "w") as f:
        f.write("database_url: %s\nadmin_listen: 127.0.0.1:%d\ndataplane_listen: tcp://127.0.0.1:%d\n"
                "master_key_file: %s/keys/master.key\n" % (DB_URL, ENV.cp_port, ENV.dp_port, WORK))
    log = open(os.path.join(WORK, "controlplane.log"), "ab")
    env = dict(os.environ, CONTROLPLANE_ADMIN_TOKEN=ADMIN)
    p = subprocess.Popen([CP_BIN, "--config", cfg, "--migrations-dir", MIGRATIONS], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, env=env, start_new_session=True)
    h._register(p)
    ENV.cp = p
    h.wait_for(lambda: call("GET", "/healthz")[0] == 200, 15, what="control plane /healthz")


def cp_kill():
    h._kill_group(ENV.cp)
    ENV.cp = None


def call(method, path, body=None, token=ADMIN):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (ENV.cp_port, path), data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
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


def sql(q):
    out = subprocess.run(["psql", "-X", "-tAc", q, DB_URL], capture_output=True, text=True,
                         timeout=60 * h.SLOW, check=True)
    return out.stdout.strip()


def gw_start():
    if ENV.state is None:
        ENV.state = h.make_tmpdir("gwtest-usage-")
        ENV.gw_port = h.free_port()
    if not getattr(ENV, "metrics_port", 0):
        ENV.metrics_port = h.free_port()
    cfg = {"listen": "127.0.0.1:%d" % ENV.gw_port, "workers": 2, "access_log": "off",
           "metrics_listen": "127.0.0.1:%d" % ENV.metrics_port,
           "control_plane": "tcp://127.0.0.1:%d" % ENV.dp_port, "state_dir": ENV.state,
           "dataplane_id": "usage-node"}
    ENV.gw = h.Gateway(cfg, ready_timeout=15)
    return ENV.gw


def chat(conn=None, stream=False):
    body = {"model": "priced-mock", "messages": [{"role": "user", "content": "count my tokens please"}]}
    if stream:
        body["stream"] = True
    if conn is not None:
        return conn.request("POST", "/v1/chat/completions", body, key=ENV.key, sse=stream)
    return h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", body=body, key=ENV.key, timeout=10,
                          sse=stream)


def fire(n, threads=8):
    """n non-streaming requests over keep-alive connections; returns {request_id: cost header}."""
    out = {}
    errors = []
    lock = threading.Lock()

    def run(count):
        try:
            with h.Conn(ENV.gw_port) as c:
                for _ in range(count):
                    r = chat(c)
                    if r.status != 200:
                        raise AssertionError("status %d: %r" % (r.status, r.body[:200]))
                    with lock:
                        out[r.header("x-gateway-request-id")] = r.header("x-gateway-cost-usd")
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(n // threads + (1 if i < n % threads else 0),)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    h.check(not errors, "requests failed: %s" % errors[:3])
    h.check(len(out) == n, "%d distinct request ids for %d requests" % (len(out), n))
    return out


def rows_for(ids):
    lst = ",".join("'%s'" % i for i in ids)
    return sql("SELECT count(*), count(DISTINCT request_id), coalesce(sum(cost_usd), 0) FROM spend_log "
               "WHERE request_id IN (%s)" % lst).split("|")


# ---------------------------------------------------------------- tests
@h.test
def test_setup():
    team = api("POST", "/api/teams", {"name": "usage-team"})
    ENV.team_id = team["id"]
    api("POST", "/api/models", {"alias": "priced-mock", "deployments": [
        {"provider": "mock", "model": "mock-x", "input_cost_per_mtok": 100, "output_cost_per_mtok": 300}]})
    api("POST", "/api/models", {"alias": "cached-mock", "cache": {"ttl_s": 600}, "deployments": [
        {"provider": "mock", "model": "mock-x", "input_cost_per_mtok": 100, "output_cost_per_mtok": 300}]})
    k = api("POST", "/api/keys", {"name": "usage-key", "team_id": ENV.team_id})
    ENV.key, ENV.key_id = k["key"], k["id"]
    gw_start()
    h.wait_for(lambda: chat().status == 200, 15, what="the gateway to serve the new key")


@h.test
def test_events_reach_spend_log_with_cost():
    r = chat()
    h.expect_status(r, 200)
    rid, cost = r.header("x-gateway-request-id"), r.header("x-gateway-cost-usd")
    u = r.json()["usage"]
    want = (Decimal(u["prompt_tokens"]) * 100 + Decimal(u["completion_tokens"]) * 300) / Decimal(10 ** 6)
    h.check(Decimal(cost) == want, "cost header %s, want %s (deployment override through the control plane)" % (
        cost, want))
    with h.Conn(ENV.gw_port) as c:
        s = chat(c, stream=True)
    h.expect_status(s, 200)
    sid = s.header("x-gateway-request-id")
    h.wait_for(lambda: sql("SELECT count(*) FROM spend_log WHERE request_id IN ('%s','%s')" % (rid, sid)) == "2",
               10, what="both events in spend_log")
    row = sql("SELECT key_id, team_id, model_alias, provider, upstream_model, prompt_tokens, completion_tokens, "
              "cost_usd, status, attempts, cache_hit, dataplane_id, latency_ms >= 0 FROM spend_log "
              "WHERE request_id = '%s'" % rid).split("|")
    h.check(row[0] == ENV.key_id and row[1] == ENV.team_id, "key/team: %r" % row)
    h.check(row[2:5] == ["priced-mock", "mock", "mock-x"], "alias/provider/model: %r" % row)
    h.check(int(row[5]) == u["prompt_tokens"] and int(row[6]) == u["completion_tokens"], "tokens: %r vs %r" % (row, u))
    h.check(Decimal(row[7]) == Decimal(cost), "spend_log cost %s, header %s" % (row[7], cost))
    h.check(row[8:12] == ["200", "1", "f", "usage-node"], "status/attempts/cache_hit/dataplane: %r" % row)
    srow = sql("SELECT completion_tokens, cost_usd FROM spend_log WHERE request_id = '%s'" % sid).split("|")
    h.check(int(srow[0]) > 0 and Decimal(srow[1]) > 0, "a stream without include_usage was not priced: %r" % srow)


@h.test
def test_routed_alias_and_attempts_in_spend_log():
    api("POST", "/api/models", {"alias": "split-src", "deployments": [{"provider": "mock", "model": "mock-src"}],
                                "router": {"split_alias": "priced-mock", "split_percent": 100}})
    key = api("POST", "/api/keys", {"name": "split-key"})["key"]   # its own key: the spend checks below count ENV.key's
    body = {"model": "split-src", "messages": [{"role": "user", "content": "which arm am I in"}]}
    r = h.wait_for(lambda: [x for x in [h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", body=body,
                                                     key=key, timeout=10)] if x.status == 200], 15,
                   what="the gateway to serve split-src")[0]
    h.check(r.header("x-gateway-split") == "priced-mock", "not split: %r" % r)
    rid = r.header("x-gateway-request-id")
    h.wait_for(lambda: sql("SELECT count(*) FROM spend_log WHERE request_id = '%s'" % rid) == "1", 10,
               what="the split request in spend_log")
    row = sql("SELECT model_alias, routed_alias, upstream_model, attempts FROM spend_log WHERE request_id = '%s'"
              % rid).split("|")
    h.check(row == ["split-src", "priced-mock", "mock-x", "1"], "spend_log row: %r" % row)


@h.test
def test_outage_with_gateway_restart_loses_and_duplicates_nothing():
    cp_kill()
    first = fire(OUTAGE_REQUESTS // 2)
    spooled = [f for f in os.listdir(os.path.join(ENV.state, "usage")) if f.endswith(".ub")]
    h.log("  %d batch files spooled during the outage before the restart" % len(spooled))
    ENV.gw.stop()
    gw_start()                                   # boots from state_dir: the control plane is still away
    second = fire(OUTAGE_REQUESTS - OUTAGE_REQUESTS // 2)
    ids = dict(first)
    ids.update(second)
    h.check(len(ids) == OUTAGE_REQUESTS, "request ids repeat across the restart: %d" % len(ids))
    h.check(rows_for(ids)[0] == "0", "rows arrived while the control plane was down?")
    t0 = time.monotonic()
    cp_start()
    h.wait_for(lambda: rows_for(ids)[0] == str(OUTAGE_REQUESTS), 60,
               what="%d rows in spend_log" % OUTAGE_REQUESTS)
    h.log("  backlog of %d events stored %.1f s after the control plane came back" % (
        OUTAGE_REQUESTS, time.monotonic() - t0))
    time.sleep(0.5)  # a late duplicate would show up now
    n, distinct, total = rows_for(ids)
    h.check(n == str(OUTAGE_REQUESTS) and distinct == str(OUTAGE_REQUESTS), "rows %s, distinct %s" % (n, distinct))
    want = sum(Decimal(c) for c in ids.values())
    h.check(Decimal(total) == want, "spend_log sums %s, the clients were shown %s" % (total, want))
    h.check(want > 0, "costs were all zero")
    h.wait_for(lambda: not [f for f in os.listdir(os.path.join(ENV.state, "usage")) if f.endswith(".ub")], 10,
               what="the spool to empty")


@h.test
def test_spend_api():
    t = api("POST", "/api/admin-tokens", {"name": "usage-viewer", "role": "viewer"})
    viewer = t.get("token")
    want_n, want_cost = sql("SELECT count(*), sum(cost_usd) FROM spend_log WHERE key_id = '%s'" % ENV.key_id).split("|")
    st, doc = call("GET", "/api/spend?group_by=key", token=viewer)
    h.check(st == 200, "viewer GET /api/spend: %s %s" % (st, doc))
    rows = {d["group"]: d for d in doc["data"]}
    mine = rows.get(ENV.key_id)
    h.check(mine and mine["requests"] == int(want_n) and Decimal(str(mine["cost_usd"])) == Decimal(want_cost),
            "key row %r, want %s requests / %s USD" % (mine, want_n, want_cost))
    h.check(doc["totals"]["requests"] >= int(want_n), "totals: %r" % doc["totals"])
    for by in ("team", "model", "provider", "day"):
        st, d = call("GET", "/api/spend?group_by=%s" % by, token=viewer)
        h.check(st == 200 and d["data"], "group_by=%s: %s %s" % (by, st, d))
    st, d = call("GET", "/api/spend?group_by=team")
    h.check(any(x["group"] == ENV.team_id and x["requests"] == int(want_n) for x in d["data"]), "team: %r" % d)
    st, d = call("GET", "/api/spend?group_by=model&from=2000-01-01&to=2000-01-02")
    h.check(st == 200 and d["data"] == [] and d["totals"]["requests"] == 0, "empty range: %s %r" % (st, d))
    st, d = call("GET", "/api/spend?group_by=key;DROP")
    h.check(st == 400, "bad group_by: %s" % st)
    st, d = call("GET", "/api/spend?from=yesterday-ish")
    h.check(st == 400, "bad from: %s %r" % (st, d))
    st, d = call("GET", "/api/spend/logs?key_id=%s&limit=5&status=200&model=priced-mock" % ENV.key_id, token=viewer)
    h.check(st == 200 and len(d["data"]) == 5 and d["total"] == int(want_n), "logs: %s %r" % (st, d and d.get("total")))
    r0 = d["data"][0]
    h.check(r0["key_id"] == ENV.key_id and r0["team_id"] == ENV.team_id and "request_id" in r0, "row: %r" % r0)
    h.check([x["ts"] for x in d["data"]] == sorted((x["ts"] for x in d["data"]), reverse=True), "not newest first")
    st, d2 = call("GET", "/api/spend/logs?key_id=%s&limit=5&offset=5" % ENV.key_id)
    h.check(st == 200 and not {x["request_id"] for x in d2["data"]} & {x["request_id"] for x in d["data"]},
            "pages overlap")
    st, d = call("GET", "/api/spend/logs?key_id=not-a-uuid")
    h.check(st == 400, "bad key_id: %s" % st)
    st, d = call("GET", "/api/spend/logs?team_id=%s&status=599" % ENV.team_id)
    h.check(st == 200 and d["total"] == 0 and d["data"] == [], "status filter: %r" % d)


# ---- ingestion benchmark: a backlog of protobuf batches dropped into the spool
def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    return _varint(num << 3 | wire) + payload


def _s(num, s):
    b = s.encode()
    return _field(num, 2, _varint(len(b)) + b)


def _i(num, v):
    return _field(num, 0, _varint(v))


def encode_event(rid, ts_ms, key_id, team_id):
    return b"".join([_s(1, rid), _i(2, ts_ms), _s(3, key_id), _s(4, team_id), _s(5, "bench"), _s(6, "mock"),
                     _s(7, "mock-x"), _i(8, 120), _i(9, 40), _field(11, 1, struct.pack("<d", 0.0000240000)),
                     _i(12, 12), _i(13, 3), _i(14, 200), _i(16, 1), _i(17, 240000)])


@h.test
def test_ingestion_throughput():
    d = os.path.join(ENV.state, "usage")
    now = int(time.time() * 1000)
    run = secrets.token_hex(4)
    per_file = 500
    for f in range(BENCH_EVENTS // per_file):
        evs = [encode_event("bench-%s-%07d" % (run, f * per_file + i), now, ENV.key_id, ENV.team_id)
               for i in range(per_file)]
        body = _s(1, "bench-node") + b"".join(_field(3, 2, _varint(len(e)) + e) for e in evs)
        tmp = os.path.join(d, "%013d-bench-%06d.ub.tmp" % (now, f))
        with open(tmp, "wb") as fh:
            fh.write(body)
    before = int(sql("SELECT count(*) FROM spend_log"))
    t0 = time.monotonic()
    for f in sorted(os.listdir(d)):
        if f.endswith(".ub.tmp") and "-bench-" in f:
            os.rename(os.path.join(d, f), os.path.join(d, f[:-4]))
    total = before + BENCH_EVENTS
    h.wait_for(lambda: int(sql("SELECT count(*) FROM spend_log")) >= total, 300, interval=0.2,
               what="%d benchmark rows" % BENCH_EVENTS)
    dt = time.monotonic() - t0
    h.log("  INGESTION: %d events spool -> agent -> control plane -> Postgres in %.2f s = %.0f events/s" % (
        BENCH_EVENTS, dt, BENCH_EVENTS / dt))
    h.check(sql("SELECT count(*) FROM spend_log WHERE request_id LIKE 'bench-%s-%%'" % run) == str(BENCH_EVENTS),
            "benchmark rows missing or doubled")


@h.test
def test_team_rate_limit():
    """A team's RPM applies to its keys (no Redis here: each of the 2 workers admits limit / 2)."""
    team = api("POST", "/api/teams", {"name": "limited-team", "rpm_limit": 4})
    k = api("POST", "/api/keys", {"name": "limited-key", "team_id": team["id"]})
    # /v1/models checks the key without spending the team's requests
    h.wait_for(lambda: h.http_request(ENV.gw_port, "GET", "/v1/models", key=k["key"]).status == 200, 15,
               what="the gateway to know the new key")
    if 60 - time.time() % 60 < 10:   # keep the burst inside one minute window
        time.sleep(60 - time.time() % 60 + 0.3)
    body = {"model": "priced-mock", "messages": [{"role": "user", "content": "hi"}]}
    rs = [h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", body=body, key=k["key"]) for _ in range(10)]
    ok = [r for r in rs if r.status == 200]
    refused = [r for r in rs if r.status == 429]
    h.check(len(ok) + len(refused) == 10, "statuses %r" % [r.status for r in rs])
    h.check(2 <= len(ok) <= 4, "admitted %d of 10 with a team limit of 4 over 2 workers" % len(ok))
    for r in refused:
        h.check(r.header("x-gateway-limit-kind") == "rpm" and r.header("retry-after"), "headers %r" % r.headers)
        h.check("team" in h.expect_openai_error(r)["message"], "message %r" % r.body[:200])
    for r in rs:
        h.check(r.header("x-ratelimit-limit-requests") == "4", "limit header %r" % r.headers)


def _burst_until_refused(key, model, threads=4, cap=400):
    """Requests from `threads` connections until the first budget refusal;
    returns (costs of the admitted requests, the refusals)."""
    body = {"model": model, "messages": [{"role": "user", "content": "spend my budget please"}]}
    costs, refusals, errors = [], [], []
    lock = threading.Lock()
    stop = threading.Event()

    def run():
        try:
            with h.Conn(ENV.gw_port) as c:
                while not stop.is_set():
                    with lock:
                        if len(costs) + len(refusals) >= cap:
                            return
                    r = c.request("POST", "/v1/chat/completions", body, key=key)
                    with lock:
                        if r.status == 200:
                            costs.append(Decimal(r.header("x-gateway-cost-usd")))
                        elif r.status == 429:
                            refusals.append(r)
                            stop.set()
                        else:
                            errors.append("%d %r" % (r.status, r.body[:200]))
                            stop.set()
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(repr(e))

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    h.check(not errors, "budget burst: %s" % errors[:3])
    return costs, refusals


def _refused_everywhere(key, model, n=8):
    """n fresh connections (spread over both workers) all get 429 budget."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    rs = [h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", body=body, key=key) for _ in range(n)]
    return all(r.status == 429 and r.header("x-gateway-limit-kind") == "budget" for r in rs)


def _budget_state(kind, rid):
    d = api("GET", "/api/%s/%s" % (kind, rid))
    return Decimal(str(d["budget_spent_usd"])), d["budget_blocked"]


def _served(key, model):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", body=body, key=key).status == 200


@h.test
def test_key_budget_blocks_with_small_overshoot_and_lifts():
    """A key with a 0.01 USD budget: refused with kind budget once its spend
    crosses it, on every worker; the overshoot is reported. Raising the
    budget lifts the block; a period that ended resets the spend."""
    api("POST", "/api/models", {"alias": "budget-mock", "deployments": [
        {"provider": "mock", "model": "mock-b", "input_cost_per_mtok": 20, "output_cost_per_mtok": 60}]})
    k = api("POST", "/api/keys", {"name": "budget-key", "budget_usd": 0.01, "budget_period": "daily"})
    h.check(k["budget_spent_usd"] == 0 and k["budget_blocked"] is False and k["budget_resets_at"], "new key %r" % k)
    h.wait_for(lambda: _served(k["key"], "budget-mock"), 15, what="the gateway to serve the budget key")
    costs, refusals = _burst_until_refused(k["key"], "budget-mock")
    h.check(refusals, "never refused after %d requests costing %s USD" % (len(costs), sum(costs)))
    r = refusals[0]
    h.check(r.header("x-gateway-limit-kind") == "budget", "kind %r" % r.headers)
    h.check(1 <= int(r.header("retry-after")) <= 86400, "Retry-After %r (daily budget)" % r.header("retry-after"))
    err = h.expect_openai_error(r)
    h.check(err["code"] == "budget_exceeded" and "0.0100" in err["message"], "error %r" % err)
    # every worker refuses it once the control plane's verdict arrives
    h.wait_for(lambda: _refused_everywhere(k["key"], "budget-mock"), 10, what="429 budget on every worker")
    per_req = costs[0] if costs else Decimal(0)
    # the key's spend is exactly what spend_log holds for it (the warm-up request included)
    h.wait_for(lambda: _budget_state("keys", k["id"]) == (Decimal(sql(
        "SELECT coalesce(sum(cost_usd), 0) FROM spend_log WHERE key_id = '%s'" % k["id"])), True), 10,
        what="the key shown blocked with its spend_log total")
    spent = _budget_state("keys", k["id"])[0]
    h.check(spent >= sum(costs), "spent %s < admitted %s" % (spent, sum(costs)))
    h.log("  BUDGET: 0.01 USD key, %d requests admitted (%.6f USD each) spent %s USD: overshoot %s USD "
          "(%.1f requests)" % (len(costs), per_req, spent, spent - Decimal("0.01"),
                               (spent - Decimal("0.01")) / per_req if per_req else 0))
    h.check(spent >= Decimal("0.01"), "refused before the budget was spent: %s" % spent)
    h.check(spent - Decimal("0.01") <= 8 * per_req, "overshoot %s USD is more than 8 in-flight requests" % (
        spent - Decimal("0.01")))
    h.check(sql("SELECT count(*) FROM audit_log WHERE resource = 'keys' AND resource_id = '%s' "
                "AND action = 'budget_exceeded' AND actor = 'system'" % k["id"]) == "1", "no audit row for the block")
    # raising the budget lifts the block everywhere
    raised = api("PATCH", "/api/keys/%s" % k["id"], {"budget_usd": 1})
    h.check(raised["budget_blocked"] is False and Decimal(str(raised["budget_spent_usd"])) == spent,
            "after raising: %r" % raised)
    h.wait_for(lambda: all(_served(k["key"], "budget-mock") for _ in range(6)), 10, what="the raised budget to apply")
    # lowering it below the spend blocks again at once
    lowered = api("PATCH", "/api/keys/%s" % k["id"], {"budget_usd": 0.005})
    h.check(lowered["budget_blocked"] is True, "after lowering: %r" % lowered)
    h.wait_for(lambda: _refused_everywhere(k["key"], "budget-mock"), 10, what="the lowered budget to block")
    # the period ends (moved into the past here): spend resets, block lifts.
    # First every request so far must be ingested: one arriving after the
    # roll would count in the new period (it is today's) and block again.
    h.wait_for(lambda: _budget_state("keys", k["id"]) == (Decimal(sql(
        "SELECT coalesce(sum(cost_usd), 0) FROM spend_log WHERE key_id = '%s'" % k["id"])), True), 10,
        what="every request of the key ingested")
    time.sleep(0.5)   # the last usage flush (100 ms) and its shipping
    h.wait_for(lambda: _budget_state("keys", k["id"])[0] == Decimal(sql(
        "SELECT coalesce(sum(cost_usd), 0) FROM spend_log WHERE key_id = '%s'" % k["id"])), 10,
        what="the key's spend to settle")
    sql("UPDATE virtual_keys SET budget_resets_at = now() - interval '1 second' WHERE id = '%s'" % k["id"])
    h.wait_for(lambda: _served(k["key"], "budget-mock"), 10, what="the period roll to unblock")
    after = api("GET", "/api/keys/%s" % k["id"])
    h.check(after["budget_blocked"] is False and Decimal(str(after["budget_spent_usd"])) < Decimal("0.005"),
            "after the roll: %r" % after)


@h.test
def test_team_budget_blocks_its_keys():
    team = api("POST", "/api/teams", {"name": "budget-team", "budget_usd": 0.004, "budget_period": "monthly"})
    k1 = api("POST", "/api/keys", {"name": "team-budget-1", "team_id": team["id"]})
    k2 = api("POST", "/api/keys", {"name": "team-budget-2", "team_id": team["id"]})
    h.wait_for(lambda: _served(k1["key"], "budget-mock"), 15, what="the gateway to serve the team key")
    costs, refusals = _burst_until_refused(k1["key"], "budget-mock", threads=2)
    h.check(refusals and refusals[0].header("x-gateway-limit-kind") == "budget", "team budget never refused")
    h.check("team" in h.expect_openai_error(refusals[0])["message"], "message %r" % refusals[0].body[:200])
    h.wait_for(lambda: _refused_everywhere(k2["key"], "budget-mock"), 10,
               what="the team's other key refused on every worker")
    h.wait_for(lambda: _budget_state("teams", team["id"])[1], 10, what="the team shown blocked")
    spent = _budget_state("teams", team["id"])[0]
    h.check(spent >= Decimal("0.004") and spent == Decimal(sql(
        "SELECT sum(cost_usd) FROM spend_log WHERE team_id = '%s'" % team["id"])), "team spend %s" % spent)

@h.test
def test_cache_hit_costs_nothing_and_metrics():
    """cache: {ttl_s} through the admin API reaches the gateway in the snapshot; a hit is a
    usage event with cost 0 and cache_hit true; both programs' metrics show it."""
    body = {"model": "cached-mock", "messages": [{"role": "user", "content": "cache me %s" % time.time()}]}
    r1 = h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", body=body, key=ENV.key)
    h.expect_status(r1, 200)
    h.check(r1.header("x-gateway-cache") == "MISS", "first: %r" % r1.headers)
    r2 = h.wait_for(lambda: (lambda r: r.header("x-gateway-cache") == "HIT" and r)(
        h.http_request(ENV.gw_port, "POST", "/v1/chat/completions", body=body, key=ENV.key)), 5, what="a hit")
    ids = [r1.header("x-gateway-request-id"), r2.header("x-gateway-request-id")]
    h.wait_for(lambda: rows_for(ids)[0] == "2", 10, what="both events in spend_log")
    miss = sql("SELECT cost_usd > 0, cache_hit, attempts FROM spend_log WHERE request_id = '%s'" % ids[0]).split("|")
    hit = sql("SELECT cost_usd, cache_hit, attempts, prompt_tokens + completion_tokens FROM spend_log "
              "WHERE request_id = '%s'" % ids[1]).split("|")
    h.check(miss == ["t", "f", "1"], "miss row: %r" % miss)
    h.check(Decimal(hit[0]) == 0 and hit[1:] == ["t", "0", "0"], "hit row: %r" % hit)
    mt = h.http_request(ENV.metrics_port, "GET", "/metrics").text
    h.check("gatewayllm_controlplane_connected 1" in mt, "gateway does not report the control plane link")
    h.check('gatewayllm_cache_requests_total{result="hit"}' in mt, "cache metric missing")
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ENV.cp_port, timeout=10) as f:
        cp = f.read().decode()
    vals = {}
    for line in cp.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            vals[k] = float(v)
    h.check(vals.get("controlplane_dataplanes_connected", 0) >= 1, "connected data planes: %r" % vals.get(
        "controlplane_dataplanes_connected"))
    h.check(vals.get("controlplane_usage_events_total", 0) >= 2, "usage events: %r" % vals.get(
        "controlplane_usage_events_total"))
    h.check(vals.get('controlplane_usage_batches_total{result="stored"}', 0) >= 1, "stored batches")
    h.check("controlplane_usage_lag_seconds" in vals, "lag gauge missing")


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
    if ENV.cp is not None and ENV.cp.poll() is None:
        ENV.cp.terminate()
        try:
            ENV.cp.wait(timeout=10 * h.SLOW)
        except subprocess.TimeoutExpired:
            pass
    with open(os.path.join(WORK, "controlplane.log"), errors="replace") as f:
        bad = [l for l in f if h.SANITIZER_RE.search(l)]
    if bad:
        h.log("sanitizer report in the control plane log:\n" + "".join(bad[:20]))
        h._state["failed"] += 1


if __name__ == "__main__":
    cp_start()
    sys.exit(h.run(after_each=after_each, teardown=teardown, suite_timeout=600))
