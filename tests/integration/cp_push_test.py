#!/usr/bin/env python3
"""Config push from the control plane to two gateways (Python 3 stdlib only).

Run by suite_cp_push.sh, which starts a migrated Postgres and passes CP_BIN,
CP_DB_URL, CP_MIGRATIONS and CP_WORK. This file starts the control plane
(and kills and restarts it) and two gateways with two workers each, all on
loopback ports. Progress goes to stderr; the last stdout line is
"N passed, N failed".

The only timing figures are the measured propagation times, printed; the
1 s bound is asserted because the issue demands it ("every worker refuses a
revoked key within 1 s").
"""
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CP_BIN = os.environ["CP_BIN"]
DB_URL = os.environ["CP_DB_URL"]
MIGRATIONS = os.environ["CP_MIGRATIONS"]
WORK = os.environ["CP_WORK"]
ADMIN = "cp-push-" + secrets.token_urlsafe(32)
BOUND_S = 1.0 * h.SLOW          # "within 1 s" (stretched only for sanitizer builds)
REVOCATIONS = 100


class Env:
    cp = None
    dp_port = h.free_port_pair()
    cp_port = h.free_port()
    while cp_port in (dp_port, dp_port + 1):
        cp_port = h.free_port()
    gws = {}                    # name -> Gateway
    state = {}                  # name -> state_dir
    gw_ports = {}
    models_made = False


ENV = Env()


# ---------------------------------------------------------------- control plane
def cp_start(extra=""):
    cfg = os.path.join(WORK, "controlplane.yaml")
    with open(cfg, "w") as f:
        f.write("database_url: %s\nadmin_listen: 127.0.0.1:%d\ndataplane_listen: tcp://127.0.0.1:%d\n"
                "master_key_file: %s/keys/master.key\n%s" % (DB_URL, ENV.cp_port, ENV.dp_port, WORK, extra))
    log = open(os.path.join(WORK, "controlplane.log"), "ab")
    env = dict(os.environ, CONTROLPLANE_ADMIN_TOKEN=ADMIN)
    p = subprocess.Popen([CP_BIN, "--config", cfg, "--migrations-dir", MIGRATIONS], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, env=env, start_new_session=True)
    h._register(p)
    ENV.cp = p
    try:
        h.wait_for(lambda: call("GET", "/healthz")[0] == 200, 15, what="control plane /healthz")
    except AssertionError:
        with open(os.path.join(WORK, "controlplane.log"), errors="replace") as f:
            h.log("control plane log:\n" + f.read()[-3000:])
        raise


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


def config_version():
    out = subprocess.run(["psql", "-X", "-tAc", "SELECT version FROM config_version", DB_URL],
                         capture_output=True, text=True, timeout=10 * h.SLOW, check=True)
    return int(out.stdout.strip())


def new_key(name, **kw):
    return api("POST", "/api/keys", dict(name=name, **kw))


def mock_model(alias):
    return {"alias": alias, "deployments": [{"provider": "mock", "model": "mock-" + alias}]}


# ---------------------------------------------------------------- gateways
def gw_start(name):
    if name not in ENV.state:
        ENV.state[name] = h.make_tmpdir("gwtest-state-")
        ENV.gw_ports[name] = h.free_port()
    cfg = {"listen": "127.0.0.1:%d" % ENV.gw_ports[name], "workers": 2, "access_log": "off",
           "control_plane": "tcp://127.0.0.1:%d" % ENV.dp_port, "state_dir": ENV.state[name],
           "dataplane_id": name}
    ENV.gws[name] = h.Gateway(cfg, ready_timeout=15)
    return ENV.gws[name]


def chat(name, key, model="push-a"):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return h.http_request(ENV.gw_ports[name], "POST", "/v1/chat/completions", body=body, key=key, timeout=5)


def all_status(key, model="push-a", tries=6):
    """Statuses of several requests on fresh connections to every gateway."""
    return {chat(n, key, model).status for n in ENV.gws for _ in range(tries)}


def wait_status(key, want, model="push-a", timeout=5):
    h.wait_for(lambda: all_status(key, model) == {want}, timeout,
               what="every gateway to answer %d for %s" % (want, model))


def workers_at(version, timeout=5):
    """Polls /readyz on fresh connections until every worker of every gateway reports
    config_version >= version; returns when the last one was seen."""
    need = {(n, i) for n in ENV.gws for i in range(2)}
    deadline = time.monotonic() + timeout * h.SLOW
    while need:
        if time.monotonic() > deadline:
            raise AssertionError("workers still behind version %d: %s" % (version, sorted(need)))
        for n in list(ENV.gws):
            try:
                r = h.http_request(ENV.gw_ports[n], "GET", "/readyz", timeout=2)
                j = r.json()
            except Exception:  # noqa: BLE001 - retried
                continue
            if j.get("config_version", -1) >= version:
                need.discard((n, j.get("worker")))
    return time.monotonic()


# ---------------------------------------------------------------- tests
@h.test
def test_setup_models_and_gateways():
    api("POST", "/api/models", mock_model("push-a"))
    api("POST", "/api/models", mock_model("push-b"))
    gw_start("gw-a")
    gw_start("gw-b")
    workers_at(config_version())


@h.test
def test_issued_key_works_on_both_gateways():
    k = new_key("issued")
    wait_status(k["key"], 200)
    r = chat("gw-a", k["key"])
    h.check("mock" in r.header("x-gateway-provider", ""), "served by the mock provider: %r" % r)


@h.test
def test_revocation_reaches_every_worker_within_1s():
    keys = [new_key("rev-%d" % i) for i in range(REVOCATIONS)]
    workers_at(config_version())
    wait_status(keys[-1]["key"], 200)
    worst, total = 0.0, 0.0
    for k in keys:
        t0 = time.monotonic()
        api("POST", "/api/keys/%s/revoke" % k["id"])
        v = config_version()
        dt = workers_at(v) - t0
        worst, total = max(worst, dt), total + dt
    h.log("revocation propagation to all 4 workers over %d revocations: worst %.0f ms, mean %.0f ms"
          % (REVOCATIONS, worst * 1000, total / REVOCATIONS * 1000))
    print("propagation: worst %.3f s, mean %.3f s over %d revocations" % (worst, total / REVOCATIONS, REVOCATIONS))
    for k in keys[:3] + keys[-3:]:
        h.check(all_status(k["key"]) == {401}, "revoked key still accepted")
    h.check(worst < BOUND_S, "worst propagation %.3f s exceeds %.1f s" % (worst, BOUND_S))


@h.test
def test_rotate():
    k = new_key("rotating")
    wait_status(k["key"], 200)
    r = api("POST", "/api/keys/%s/rotate" % k["id"])
    wait_status(r["key"], 200)
    h.check(all_status(k["key"]) == {401}, "old secret still accepted after rotation")


@h.test
def test_scope_change():
    k = new_key("scoped", models=["push-a"])
    wait_status(k["key"], 200, model="push-a")
    h.check(all_status(k["key"], "push-b") == {403}, "out-of-scope alias not refused")
    api("PATCH", "/api/keys/%s" % k["id"], {"models": ["push-a", "push-b"]})
    wait_status(k["key"], 200, model="push-b")
    api("PATCH", "/api/keys/%s" % k["id"], {"models": ["push-b"]})
    wait_status(k["key"], 403, model="push-a")


@h.test
def test_model_added_is_routable():
    k = new_key("model-user")
    wait_status(k["key"], 404, model="push-new")
    api("POST", "/api/models", mock_model("push-new"))
    wait_status(k["key"], 200, model="push-new")
    r = chat("gw-b", k["key"], "push-new")
    h.check(r.header("x-gateway-model") == "mock-push-new", "upstream model: %r" % r)


@h.test
def test_router_settings_and_fallbacks_reach_the_gateways():
    k = new_key("router-user")
    dead = {"provider": "openai_compatible", "model": "gone", "base_url": "http://127.0.0.1:%d/v1" % h.free_port(),
            "rpm_limit": 100}
    m = api("POST", "/api/models", {"alias": "push-routed", "deployments": [dead], "fallbacks": ["push-a"],
                                    "router": {"max_attempts": 1, "breaker_failures": 2, "hedge_ms": "p95"}})
    h.check(m["router"] == {"max_attempts": 1, "breaker_failures": 2, "hedge_ms": "p95"}, "router: %r" % m)
    api("POST", "/api/models", dict(mock_model("push-split"), router={"split_alias": "push-a", "split_percent": 100}))
    wait_status(k["key"], 200, model="push-routed")
    r = chat("gw-a", k["key"], "push-routed")
    # attempts: 2 (dead one, then push-a), or 1 once the dead one's breaker is open
    h.check(r.header("x-gateway-fallback") == "push-a" and r.header("x-gateway-attempts") in ("1", "2"),
            "fallback over the control plane: %r" % r)
    wait_status(k["key"], 200, model="push-split")
    r = chat("gw-b", k["key"], "push-split")
    h.check(r.header("x-gateway-split") == "push-a" and r.header("x-gateway-model") == "mock-push-a",
            "split over the control plane: %r" % r)
    code, body = call("POST", "/api/models", {"alias": "push-bad", "deployments": [dead], "router": {"retries": 3}})
    h.check(code == 400 and "router.retries" in json.dumps(body), "unknown router setting accepted: %r" % (body,))
    code, body = call("PATCH", "/api/models/push-split", {"router": {"split_percent": 101}})
    h.check(code == 400, "split_percent 101 accepted: %r" % (body,))


@h.test
def test_dataplanes_listed():
    def listed():
        doc = api("GET", "/api/dataplanes")
        rows = {d["id"]: d for d in doc["data"]}
        return rows if {"gw-a", "gw-b"} <= set(rows) else None
    rows = h.wait_for(listed, 10, what="both gateways in /api/dataplanes")
    v = config_version()
    for n in ("gw-a", "gw-b"):
        h.check(rows[n]["last_seen"] and rows[n]["config_version"] is not None, "row %r" % rows[n])
        h.check(rows[n]["workers"] == 2, "workers reported: %r" % rows[n])
    h.wait_for(lambda: all(d["config_version"] == v for d in api("GET", "/api/dataplanes")["data"]
                           if d["id"] in ("gw-a", "gw-b")), 10, what="reported config versions to catch up")


@h.test
def test_control_plane_gone_gateways_serve_and_reboot_from_disk():
    k = new_key("survivor")
    wait_status(k["key"], 200)
    workers_at(config_version())
    cp_kill()
    time.sleep(1.5)   # let heartbeats go missing
    h.check(all_status(k["key"]) == {200}, "gateways stopped serving without the control plane")
    ENV.gws["gw-b"].stop()
    gw_start("gw-b")  # ready only once it loaded its state_dir: the control plane is down
    h.check(all_status(k["key"]) == {200}, "restarted gateway does not serve from its disk snapshot")
    ENV.survivor = k


@h.test
def test_control_plane_back_resync():
    cp_start()
    k = new_key("issued-after-outage")
    wait_status(k["key"], 200, timeout=10)
    h.check(all_status(ENV.survivor["key"]) == {200}, "old key lost in the resync")
    api("POST", "/api/keys/%s/revoke" % ENV.survivor["id"])
    wait_status(ENV.survivor["key"], 401)


@h.test
def test_old_dataplane_version_refused_and_listed():
    """A control plane that serves only newer data planes refuses these ones,
    says why in GET /api/dataplanes, and they keep serving what they have."""
    k = new_key("before-version-gate")
    wait_status(k["key"], 200)
    cp_kill()
    cp_start("dataplane_min_version: 9.0.0\n")

    def refused():
        st, doc = call("GET", "/api/dataplanes")
        rows = {d["id"]: d for d in doc["data"]} if st == 200 else {}
        return all(rows.get(n, {}).get("status") == "refused" and "older than" in (rows[n]["status_reason"] or "")
                   for n in ENV.gws) and rows
    h.wait_for(refused, 15, what="both gateways listed as refused")
    h.check(all_status(k["key"]) == {200}, "refused gateways stopped serving their snapshot")
    k2 = new_key("while-refused")
    time.sleep(1.5)
    h.check(all_status(k2["key"]) == {401}, "a refused gateway received new config")
    cp_kill()
    cp_start()
    wait_status(k2["key"], 200, timeout=15)
    st, doc = call("GET", "/api/dataplanes")
    h.check(all(d["status"] == "ok" and d["status_reason"] is None for d in doc["data"] if d["id"] in ENV.gws),
            "status after the gate lifted: %r" % doc["data"])


def after_each(name):
    for n, g in ENV.gws.items():
        reports = g.sanitizer_reports()
        if reports:
            raise AssertionError("sanitizer report from %s: %s" % (n, reports[:3]))
        if not g.alive():
            raise AssertionError("gateway %s died: %s" % (n, g.stderr_text()[-2000:]))


def teardown():
    for g in ENV.gws.values():
        g.stop()
    if ENV.cp is not None and ENV.cp.poll() is None:
        ENV.cp.terminate()
        try:
            ENV.cp.wait(timeout=10 * h.SLOW)
        except subprocess.TimeoutExpired:
            pass
    log = os.path.join(WORK, "controlplane.log")
    with open(log, errors="replace") as f:
        bad = [l for l in f if h.SANITIZER_RE.search(l)]
    if bad:
        h.log("sanitizer report in the control plane log:\n" + "".join(bad[:20]))
        h._state["failed"] += 1


if __name__ == "__main__":
    cp_start()
    sys.exit(h.run(after_each=after_each, teardown=teardown, suite_timeout=600))
