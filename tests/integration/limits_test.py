#!/usr/bin/env python3
"""Rate limits across 2 gateway processes x 2 workers sharing one Redis.

Run by suite_limits.sh (REDIS_DIR, REDIS_PORT). Counts are checked against
the bound ratelimit.h states; no assertion is made about timing. Each burst
runs inside one minute window (it waits for a fresh window when the current
one is nearly over) and uses its own key, so bursts never share a counter.
"""
import concurrent.futures
import json
import os
import secrets
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, test  # noqa: E402

REDIS_DIR = os.environ.get("REDIS_DIR", "")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "0"))
REDIS_SH = os.path.join(h.REPO, "scripts", "redis.sh")

WORKERS_PER_NODE, NODES = 2, 2
W = WORKERS_PER_NODE * NODES
RPM = 100
TPM = 10000
N = 400


def slice_of(limit):  # ratelimit_slice(): limit / (8 x node workers), at least 1
    return max(1, limit // (8 * WORKERS_PER_NODE))


KEYS = {name: "sk-gw-" + secrets.token_urlsafe(24) for name in
        ("rpm", "tpm", "mid", "down", "back", "frozen", "free", "solo")}


def config(port, redis=True):
    c = {
        "listen": "127.0.0.1:%d" % port,
        "workers": WORKERS_PER_NODE,
        "client_timeout_ms": 5000,
        "models": [{"alias": "m", "deployments": [{"provider": "mock", "model": "mock-1"}]}],
        "keys": [
            {"name": "rl-rpm", "key": KEYS["rpm"], "rpm_limit": RPM},
            {"name": "rl-tpm", "key": KEYS["tpm"], "tpm_limit": TPM},
            {"name": "rl-mid", "key": KEYS["mid"], "rpm_limit": RPM},
            {"name": "rl-down", "key": KEYS["down"], "rpm_limit": RPM},
            {"name": "rl-back", "key": KEYS["back"], "rpm_limit": RPM},
            {"name": "rl-frozen", "key": KEYS["frozen"], "rpm_limit": RPM},
            {"name": "rl-free", "key": KEYS["free"]},
            {"name": "rl-solo", "key": KEYS["solo"], "rpm_limit": 3},
        ],
    }
    if redis:
        c["redis_url"] = "redis://127.0.0.1:%d/0" % REDIS_PORT
    return c


class Env:
    gws = []


ENV = Env()


def body(max_tokens=None):
    b = {"model": "m", "messages": [{"role": "user", "content": "hello there, count my tokens please"}]}
    if max_tokens is not None:
        b["max_tokens"] = max_tokens
    return json.dumps(b).encode()


def fresh_window():
    """Waits for a new minute when fewer than 20 s are left in this one."""
    left = 60 - time.time() % 60
    if left < 20:
        time.sleep(left + 0.3)
    return int(time.time() // 60)


def burst(key, n=N, max_tokens=None, threads=100, during=None):
    """n requests spread over both gateways, `threads` at a time. Returns the
    responses and whether they all fell in one minute window."""
    w0 = fresh_window()
    ports = [g.port for g in ENV.gws]
    payload = body(max_tokens)

    def one(i):
        try:
            return h.http_request(ports[i % len(ports)], "POST", "/v1/chat/completions", body=payload,
                                  key=key, timeout=30)
        except Exception as e:  # noqa: BLE001 - counted as a failure below
            return e

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        futs = [ex.submit(one, i) for i in range(n)]
        if during:
            during(futs)
        out = [f.result() for f in futs]
    same = int(time.time() // 60) == w0
    return out, same


def classify(out):
    errs = [r for r in out if isinstance(r, Exception)]
    check(not errs, "transport errors: %r" % errs[:3])
    ok = [r for r in out if r.status == 200]
    refused = [r for r in out if r.status == 429]
    other = [r for r in out if r.status not in (200, 429)]
    check(not other, "unexpected statuses: %r" % sorted({r.status for r in other}))
    return ok, refused


def check_refusals(refused, kind):
    for r in refused:
        check(r.header("retry-after", "").isdigit() and int(r.header("retry-after")) >= 1,
              "no Retry-After: %r" % r)
        check(r.header("x-gateway-limit-kind") == kind, "kind %r, expected %s" % (r.header("x-gateway-limit-kind"), kind))
        err = h.expect_openai_error(r)
        check(err["code"] == "rate_limit_exceeded", "code %r" % err["code"])
        check(err["type"] == ("requests" if kind == "rpm" else "tokens"), "type %r" % err["type"])


DEGRADED = ("limits: redis did not answer in time", "limits: redis connection lost")


def degraded_count():
    return sum(count_in_stderr(t) for t in DEGRADED)


def shared_rpm_burst(keyname):
    """Returns (admitted, refused, degraded): degraded when a worker lost Redis
    during the burst (a loaded machine can stall it past the lease timeout);
    the shared bound then no longer holds, the local one does."""
    d0 = degraded_count()
    for _ in range(2):   # a burst cut by a minute boundary is redone with the next window
        out, same = burst(KEYS[keyname])
        if same:
            break
        KEYS[keyname] = None
    check(same, "could not keep a burst inside one minute")
    ok, refused = classify(out)
    return ok, refused, degraded_count() > d0


def rpm_bounds(degraded=False):
    s = slice_of(RPM)
    if degraded:
        return RPM - W * (s + s // 2 + 1), W * (RPM // WORKERS_PER_NODE + s)
    # upper: the store grants <= limit, each worker admits <= one slice on credit;
    # lower: a worker that stops getting requests strands <= 1.5 slices + 1 of its lease
    return RPM - W * (s + s // 2 + 1), RPM + W * s


@test
def rpm_shared_across_nodes():
    ok, refused, degraded = shared_rpm_burst("rpm")
    lo, hi = rpm_bounds(degraded)
    h.log("  rpm: %d admitted of %d (limit %d, allowed %d..%d%s)" % (len(ok), N, RPM, lo, hi,
          ", redis stalled: local bound" if degraded else ""))
    check(lo <= len(ok) <= hi, "admitted %d, outside %d..%d" % (len(ok), lo, hi))
    check_refusals(refused, "rpm")
    for r in ok + refused:
        check(r.header("x-ratelimit-limit-requests") == str(RPM), "limit header: %r" % r.headers)
        check(r.header("x-ratelimit-remaining-requests", "").isdigit(), "remaining header: %r" % r.headers)
        check(r.header("x-ratelimit-limit-tokens") is None, "no TPM on this key")


@test
def tpm_shared_across_nodes():
    d0 = degraded_count()
    out, same = burst(KEYS["tpm"], max_tokens=50)
    check(same, "burst crossed a minute boundary")  # rare; the next run will pass
    ok, refused = classify(out)
    check_refusals(refused, "tpm")
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    est = len(body(50)) // 4 + 50
    s = slice_of(TPM)
    hi = TPM + W * (s + est)
    if degraded_count() > d0:   # see shared_rpm_burst
        hi = W * (TPM // WORKERS_PER_NODE + s + est)
    # every request charges at most its estimate at admission, and the store grants
    # all but what workers strand (<= 1.5 slices + one estimate each): so at least
    lo_n = (TPM - W * (s + s // 2 + est)) // est
    h.log("  tpm: %d admitted (at least %d), %d tokens used (limit %d, at most %d; estimate %d/request)"
          % (len(ok), lo_n, used, TPM, hi, est))
    check(refused, "400 requests of ~%d tokens never hit a %d TPM limit" % (est, TPM))
    check(used <= hi, "tokens used %d, above %d" % (used, hi))
    check(len(ok) >= lo_n, "admitted %d requests, fewer than %d" % (len(ok), lo_n))
    for r in ok + refused:
        check(r.header("x-ratelimit-limit-tokens") == str(TPM), "limit header: %r" % r.headers)
        check(r.header("x-ratelimit-remaining-tokens", "").isdigit(), "remaining header: %r" % r.headers)


@test
def no_limits_no_headers():
    r = h.http_request(ENV.gws[0].port, "POST", "/v1/chat/completions", body=body(), key=KEYS["free"])
    h.expect_status(r, 200)
    check(not any(k.startswith("x-ratelimit") for k in r.headers), "headers: %r" % r.headers)


def redis(cmd):
    subprocess.run([REDIS_SH, cmd, REDIS_DIR, str(REDIS_PORT)], check=True, stdout=subprocess.DEVNULL,
                   timeout=30)


def count_in_stderr(text):
    return sum(g.stderr_text().count(text) for g in ENV.gws)


@test
def redis_stopped_mid_burst_no_5xx():
    def stop_midway(futs):
        h.wait_for(lambda: sum(f.done() for f in futs) >= N // 4, 30, what="a quarter of the burst")
        redis("stop")
    out, _ = burst(KEYS["mid"], during=stop_midway)
    ok, refused = classify(out)          # 200 or 429 only
    check_refusals(refused, "rpm")
    h.log("  redis stopped mid-burst: %d admitted, %d refused, no 5xx" % (len(ok), len(refused)))
    h.wait_for(lambda: count_in_stderr("local rate limits") >= W, 10, what="every worker to notice")


@test
def redis_down_local_limits():
    out, same = burst(KEYS["down"])
    check(same, "burst crossed a minute boundary")
    ok, refused = classify(out)
    check_refusals(refused, "rpm")
    local = RPM // WORKERS_PER_NODE
    h.log("  redis down: %d admitted (local share %d per worker, %d at most)" % (len(ok), local, W * local))
    check(local <= len(ok) <= W * local, "admitted %d, outside %d..%d" % (len(ok), local, W * local))


@test
def redis_back_shared_again():
    before = count_in_stderr("limits: redis connected")
    redis("start")
    h.wait_for(lambda: count_in_stderr("limits: redis connected") >= before + W, 15, what="every worker to reconnect")
    ok, refused, degraded = shared_rpm_burst("back")
    lo, hi = rpm_bounds(degraded)
    h.log("  redis back: %d admitted (allowed %d..%d%s)" % (len(ok), lo, hi,
          ", redis stalled: local bound" if degraded else ""))
    check(lo <= len(ok) <= hi, "admitted %d, outside %d..%d" % (len(ok), lo, hi))
    check_refusals(refused, "rpm")


@test
def redis_frozen_times_out_to_local():
    """A Redis that accepts but never answers (SIGSTOP) is treated as down after the lease timeout."""
    with open(os.path.join(REDIS_DIR, "redis.pid")) as f:
        pid = int(f.read().strip())
    before = count_in_stderr("limits: redis did not answer in time")
    os.kill(pid, signal.SIGSTOP)
    try:
        out, _ = burst(KEYS["frozen"])
        # the leases of that burst are still unanswered: the workers give up on Redis
        h.wait_for(lambda: count_in_stderr("limits: redis did not answer in time") > before, 10,
                   what="a lease timeout to be logged")
    finally:
        os.kill(pid, signal.SIGCONT)
    ok, refused = classify(out)
    check_refusals(refused, "rpm")
    hi = W * (RPM // WORKERS_PER_NODE + slice_of(RPM))
    h.log("  redis frozen: %d admitted, %d refused, no 5xx (at most %d)" % (len(ok), len(refused), hi))
    check(0 < len(ok) <= hi, "admitted %d, outside 1..%d" % (len(ok), hi))
    # shared again once it answers
    h.wait_for(lambda: ok_status(KEYS["free"]), 10, what="the gateways to answer")


def ok_status(key):
    r = h.http_request(ENV.gws[0].port, "POST", "/v1/chat/completions", body=body(), key=key)
    return r.status == 200


@test
def without_redis_local_per_worker():
    g = h.Gateway(dict(config(h.free_port(), redis=False), workers=1))
    try:
        st = []
        with h.Conn(g.port) as c:
            for _ in range(5):
                st.append(c.request("POST", "/v1/chat/completions", body=body(), key=KEYS["solo"]))
        check([r.status for r in st].count(200) == 3, "statuses %r" % [r.status for r in st])
        check_refusals([r for r in st if r.status == 429], "rpm")
        check(st[0].header("x-ratelimit-remaining-requests") == "2", "remaining %r" % st[0].headers)
    finally:
        g.stop()
    check(not g.sanitizer_reports(), "sanitizer: %s" % g.sanitizer_reports()[:3])


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
    for _ in range(NODES):
        ENV.gws.append(h.Gateway(config(h.free_port())))
    h.wait_for(lambda: count_in_stderr("limits: redis connected") >= W, 10, what="workers to connect to redis")


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
    sys.exit(h.run(after_each=after_each, teardown=teardown, suite_timeout=600))
