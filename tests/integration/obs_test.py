#!/usr/bin/env python3
"""Observability and the response cache, against standalone gateways with 2 workers.

Run by suite_obs.sh (REDIS_DIR, REDIS_PORT). Metrics are compared with what
the client saw, request by request, so the counts are exact whichever worker
served each request. No assertion is made about timing.
"""
import json
import os
import re
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, test  # noqa: E402

REDIS_DIR = os.environ.get("REDIS_DIR", "")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "0"))
REDIS_SH = os.path.join(h.REPO, "scripts", "redis.sh")

KEY = "sk-gw-" + secrets.token_urlsafe(32)
KEY_B = "sk-gw-" + secrets.token_urlsafe(32)
KEY_LIM = "sk-gw-" + secrets.token_urlsafe(32)

PRICE_IN, PRICE_OUT = 1000.0, 2000.0   # USD per 1M tokens: every request costs something


def mock_dep(**extra):
    d = {"provider": "mock", "model": "mock-1", "input_cost_per_mtok": PRICE_IN, "output_cost_per_mtok": PRICE_OUT}
    d.update(extra)
    return d


def base_config(port, mport, **extra):
    c = {
        "listen": "127.0.0.1:%d" % port,
        "metrics_listen": "127.0.0.1:%d" % mport,
        "workers": 2,
        "client_timeout_ms": 5000,
        "models": [
            {"alias": "m", "deployments": [mock_dep()]},
            {"alias": "s", "deployments": [mock_dep()]},
            {"alias": "dead", "deployments": [{"provider": "openai_compatible", "model": "gone",
                                               "base_url": "http://127.0.0.1:%d/v1" % h.free_port(),
                                               "api_key": "sk-upstream-not-real"}]},
        ],
        "keys": [
            {"name": "obs-a", "key": KEY},
            {"name": "obs-b", "key": KEY_B},
            {"name": "obs-lim", "key": KEY_LIM, "rpm_limit": 2},
        ],
    }
    c.update(extra)
    return c


def redis(cmd):
    subprocess.run([REDIS_SH, cmd, REDIS_DIR, str(REDIS_PORT)], check=True, stdout=subprocess.DEVNULL, timeout=30)


def scrape(mport):
    r = h.http_request(mport, "GET", "/metrics")
    h.expect_status(r, 200)
    check(r.header("content-type", "").startswith("text/plain"), "content-type %r" % r.header("content-type"))
    return r.text


def parse_prom(text):
    """{(name, frozenset(labels)): value}; checks every line is well formed and every
    sample sits in the group of its family's # TYPE line (the text format's rule)."""
    out = {}
    family, seen = None, set()
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+]+|\+Inf|NaN)$')
    lab_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            family = line.split()[2]
            check(family not in seen, "family %s declared twice" % family)
            seen.add(family)
            continue
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        check(m, "malformed metrics line %r" % line)
        check(family and m.group(1) in (family, family + "_bucket", family + "_sum", family + "_count"),
              "sample %s outside its family's group (current family %s)" % (m.group(1), family))
        labels = frozenset(lab_re.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def val(prom, name, **labels):
    return prom.get((name, frozenset(labels.items())), 0.0)


def chat(model, text, stream=False, **extra):
    b = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    b.update(extra)
    return b


def post(port, body, key=KEY, headers=None, sse=False):
    return h.http_request(port, "POST", "/v1/chat/completions", body=body, key=key, headers=headers, sse=sse)


def usage_of(r):
    if r.events is not None:
        for e in r.events:
            if e["data"].startswith("{") and '"usage"' in e["data"]:
                u = json.loads(e["data"]).get("usage")
                if u:
                    return u
        return None
    try:
        return r.json().get("usage")
    except ValueError:
        return None


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------
@test
def metrics_exact_counts_across_two_workers():
    port, mport = h.free_port(), h.free_port()
    g = h.Gateway(base_config(port, mport))
    try:
        seen = {}            # (model, provider, status) -> count, as the client saw them
        tokens = {}          # model -> [in, out]
        cost_m = 0.0
        ok_upstream = 0

        def note(model, provider, r):
            k = (model, provider, str(r.status))
            seen[k] = seen.get(k, 0) + 1
            u = usage_of(r)
            if r.status == 200 and u:
                t = tokens.setdefault(model, [0, 0])
                t[0] += u["prompt_tokens"]
                t[1] += u["completion_tokens"]

        # every request on a fresh connection: the two workers share the accepts
        for i in range(12):
            r = post(port, chat("m", "hello %d" % i))
            h.expect_status(r, 200)
            note("m", "mock", r)
            cost_m += float(r.header("x-gateway-cost-usd"))
            ok_upstream += 1
        for i in range(5):
            r = post(port, chat("s", "stream %d" % i, stream=True), sse=True)
            h.expect_status(r, 200)
            check(r.complete, "stream incomplete: %r" % r)
            note("s", "mock", r)
            ok_upstream += 1
        for i in range(3):
            r = post(port, chat("m", "x"), key="sk-gw-" + secrets.token_urlsafe(32))
            h.expect_status(r, 401)
            note("", "", r)
        for i in range(2):
            r = post(port, chat("nope", "x"))
            h.expect_status(r, 404)
            note("", "", r)
        r = h.http_request(port, "POST", "/v1/chat/completions", body=b"{not json", key=KEY)
        h.expect_status(r, 400)
        note("", "", r)
        limited = 0
        for i in range(6):   # rpm 2 split over 2 workers: some of these are refused
            r = post(port, chat("m", "limited %d" % i), key=KEY_LIM)
            h.expect_status(r, 200, 429)
            if r.status == 429:
                limited += 1
                note("m", "", r)
            else:
                note("m", "mock", r)
                cost_m += float(r.header("x-gateway-cost-usd"))
                ok_upstream += 1
        check(limited >= 1, "rpm_limit 2 refused nothing out of 6")
        r = post(port, chat("dead", "x"))
        h.expect_status(r, 502)
        note("dead", "openai_compatible", r)
        total = sum(seen.values())

        # a worker counts a request just after its last byte is written (off
        # the client's critical path): let the last one land, then every
        # worker that answers a scrape must hold the same sums
        def counted():
            prom = parse_prom(scrape(mport))
            return sum(v for k, v in prom.items() if k[0] == "gatewayllm_requests_total") == total
        h.wait_for(counted, 5, what="the last request counted")
        first = None
        for _ in range(6):
            text = scrape(mport)
            prom = parse_prom(text)
            reqs = {(dict(k[1]).get("model"), dict(k[1]).get("provider"), dict(k[1]).get("status")): v
                    for k, v in prom.items() if k[0] == "gatewayllm_requests_total"}
            check(reqs == {k: float(v) for k, v in seen.items()},
                  "requests_total %r, the client saw %r" % (reqs, seen))
            for model, (tin, tout) in tokens.items():
                check(val(prom, "gatewayllm_tokens_total", model=model, provider="mock", direction="input") == tin,
                      "input tokens of %s: %r, want %d" % (model, val(prom, "gatewayllm_tokens_total", model=model,
                                                                      provider="mock", direction="input"), tin))
                check(val(prom, "gatewayllm_tokens_total", model=model, provider="mock", direction="output") == tout,
                      "output tokens of %s" % model)
            c = val(prom, "gatewayllm_cost_usd_total", model="m", provider="mock")
            check(abs(c - cost_m) < 1e-6, "cost_usd_total %r, headers summed %r" % (c, cost_m))
            check(val(prom, "gatewayllm_cost_usd_total", model="s", provider="mock") > 0, "streams cost nothing")
            check(val(prom, "gatewayllm_request_duration_seconds_count") == total,
                  "duration count %r, want %d" % (val(prom, "gatewayllm_request_duration_seconds_count"), total))
            check(val(prom, "gatewayllm_request_duration_seconds_bucket", le="+Inf") == total, "+Inf bucket")
            check(val(prom, "gatewayllm_overhead_seconds_count") == total, "overhead count")
            check(val(prom, "gatewayllm_time_to_first_token_seconds_count") == ok_upstream,
                  "ttft count %r, want %d" % (val(prom, "gatewayllm_time_to_first_token_seconds_count"), ok_upstream))
            check(val(prom, "gatewayllm_rate_limited_total", kind="rpm") == limited, "rate_limited rpm")
            check(val(prom, "gatewayllm_rate_limited_total", kind="tpm") == 0, "rate_limited tpm")
            check(val(prom, "gatewayllm_deployment_healthy", model="m", provider="mock", upstream_model="mock-1",
                      deployment="0") == 1,
                  "mock deployment unhealthy")
            check(val(prom, "gatewayllm_deployment_healthy", model="dead", provider="openai_compatible",
                      upstream_model="gone", deployment="0") == 0, "dead deployment healthy")
            check(("gatewayllm_deployment_healthy", frozenset({"model": "dead", "provider": "openai_compatible",
                   "upstream_model": "gone", "deployment": "0"}.items())) in prom, "dead deployment not listed")
            check(val(prom, "gatewayllm_config_version") >= 1, "config_version")
            check(("gatewayllm_controlplane_connected", frozenset()) in prom, "controlplane_connected missing")
            for name in ("gatewayllm_fallbacks_total", "gatewayllm_cache_requests_total"):
                check("# TYPE %s counter" % name in text, "%s not declared" % name)
            if first is None:
                first = prom
            # secrets never reach metrics
            for s in (KEY, KEY_B, KEY_LIM, "sk-upstream-not-real"):
                check(s not in text, "a secret is in /metrics")
        r = h.http_request(mport, "GET", "/nope")
        h.expect_status(r, 404)
    finally:
        g.stop()


@test
def metrics_default_listener_taken_still_starts():
    """Without metrics_listen the default port is tried; a second gateway on the host still starts."""
    port = h.free_port()
    c = base_config(port, 0)
    del c["metrics_listen"]
    g = h.Gateway(c)
    try:
        r = post(port, chat("m", "hi"))
        h.expect_status(r, 200)
    finally:
        g.stop()


# --------------------------------------------------------------------------
# response cache
# --------------------------------------------------------------------------
class CacheEnv:
    gw = None
    mock = None
    port = 0
    mport = 0


CE = CacheEnv()


def cache_config(port, mport, mock):
    def up(model, **extra):
        d = {"provider": "openai_compatible", "model": model, "base_url": mock.base_url, "api_key": "sk-upstream-x"}
        d.update(extra)
        return d
    c = base_config(port, mport, redis_url="redis://127.0.0.1:%d/0" % REDIS_PORT)
    c["models"] = [
        # one attempt and no breaker: these tests count upstream calls and
        # send errors on purpose (the router's retries are tested in suite_router)
        {"alias": "c", "deployments": [up("cached-up")], "cache": {"ttl_s": 600},
         "router": {"max_attempts": 1, "breaker_failures": 1000000, "breaker_min_requests": 1000000}},
        {"alias": "short", "deployments": [up("short-up")], "cache": {"ttl_s": 1}},
        {"alias": "shared", "deployments": [up("shared-up")], "cache": {"ttl_s": 600, "shared": True}},
        {"alias": "plain", "deployments": [up("plain-up")]},
        {"alias": "mockc", "deployments": [mock_dep()], "cache": {"ttl_s": 600}},
    ]
    return c


def cenv():
    if CE.gw is None:
        CE.mock = h.Mock("cache-up")
        CE.port, CE.mport = h.free_port(), h.free_port()
        CE.gw = h.Gateway(cache_config(CE.port, CE.mport, CE.mock))
        h.wait_for(lambda: CE.gw.stderr_text().count("cache: redis connected") >= 2, 10,
                   what="both workers' cache to reach Redis")
    return CE


def upstream_count(tag):
    return len(CE.mock.find(tag))


def tagged(text="q"):
    return "%s %s" % (text, secrets.token_hex(6))


def cache_metric(result):
    return val(parse_prom(scrape(CE.mport)), "gatewayllm_cache_requests_total", result=result)


@test
def cache_hit_and_miss_nonstreaming():
    e = cenv()
    tag = tagged()
    hits0 = cache_metric("hit")
    r1 = post(e.port, chat("c", tag))
    h.expect_status(r1, 200)
    check(r1.header("x-gateway-cache") == "MISS", "first answer: %r" % r1.headers)
    # fresh connections: the repeats land on either worker (memory or Redis tier)
    for i in range(4):
        r = post(e.port, chat("c", tag))
        h.expect_status(r, 200)
        check(r.header("x-gateway-cache") == "HIT", "repeat %d: %r" % (i, r.headers))
        check(r.body == r1.body, "a hit's body differs from the stored answer")
        check(float(r.header("x-gateway-cost-usd")) == 0.0, "a hit costs %r" % r.header("x-gateway-cost-usd"))
        check(r.header("x-gateway-attempts") == "0", "attempts %r" % r.header("x-gateway-attempts"))
        check(r.header("x-gateway-provider") == "openai_compatible", "provider %r" % r.header("x-gateway-provider"))
    check(upstream_count(tag) == 1, "upstream called %d times for 1 miss + 4 hits" % upstream_count(tag))
    check(cache_metric("hit") - hits0 == 4, "cache hit metric moved by %r" % (cache_metric("hit") - hits0))
    # whitespace and member order do not change the key; sampling parameters do
    body = json.dumps({"messages": [{"content": tag, "role": "user"}], "model": "c"}, indent=2)
    r = h.http_request(e.port, "POST", "/v1/chat/completions", body=body, key=KEY)
    check(r.header("x-gateway-cache") == "HIT", "reordered body missed: %r" % r.headers)
    r = post(e.port, chat("c", tag, temperature=0.5))
    check(r.header("x-gateway-cache") == "MISS", "a different temperature hit: %r" % r.headers)
    # the access log says so
    h.wait_for(lambda: any(l.get("cache_hit") is True for l in e.gw.access_log()), 5, what="a cache_hit log line")


@test
def cache_hit_and_miss_streaming():
    e = cenv()
    tag = tagged("stream")
    r1 = post(e.port, chat("c", tag, stream=True), sse=True)
    h.expect_status(r1, 200)
    check(r1.complete and r1.header("x-gateway-cache") == "MISS", "first stream: %r" % r1)
    d1 = [x["data"] for x in r1.events]
    check(d1 and d1[-1] == "[DONE]", "first stream did not end: %r" % d1[-2:])
    for i in range(3):
        r = post(e.port, chat("c", tag, stream=True), sse=True)
        h.expect_status(r, 200)
        check(r.header("x-gateway-cache") == "HIT", "stream repeat %d: %r" % (i, r.headers))
        check(r.header("content-type", "").startswith("text/event-stream"), "content-type %r" % r.header("content-type"))
        check(r.complete and [x["data"] for x in r.events] == d1, "a cached stream differs")
    check(upstream_count(tag) == 1, "upstream called %d times" % upstream_count(tag))
    # the non-streaming form of the same request is another entry
    r = post(e.port, chat("c", tag))
    check(r.header("x-gateway-cache") == "MISS" and r.body.startswith(b"{"), "stream entry served as JSON: %r" % r)
    # built-in mock provider, streamed
    tag = tagged("mock stream")
    r1 = post(e.port, chat("mockc", tag, stream=True), sse=True)
    r2 = post(e.port, chat("mockc", tag, stream=True), sse=True)
    check(r2.header("x-gateway-cache") == "HIT" and r2.events and r2.events[-1]["data"] == "[DONE]", "mock stream: %r" % r2)


@test
def cache_ttl_expiry():
    e = cenv()
    tag = tagged("ttl")
    check(post(e.port, chat("short", tag)).header("x-gateway-cache") == "MISS", "first")
    check(post(e.port, chat("short", tag)).header("x-gateway-cache") == "HIT", "second")
    import time
    time.sleep(2.2)   # the entry lives 1 s
    r = post(e.port, chat("short", tag))
    check(r.header("x-gateway-cache") == "MISS", "expired entry served: %r" % r.headers)
    check(upstream_count(tag) == 2, "upstream called %d times" % upstream_count(tag))


@test
def cache_per_team_isolation_and_shared():
    e = cenv()
    tag = tagged("team")
    check(post(e.port, chat("c", tag), key=KEY).header("x-gateway-cache") == "MISS", "a first")
    check(post(e.port, chat("c", tag), key=KEY).header("x-gateway-cache") == "HIT", "a second")
    r = post(e.port, chat("c", tag), key=KEY_B)
    check(r.header("x-gateway-cache") == "MISS", "another key saw a's entry: %r" % r.headers)
    check(upstream_count(tag) == 2, "upstream called %d times" % upstream_count(tag))
    tag = tagged("shared")
    check(post(e.port, chat("shared", tag), key=KEY).header("x-gateway-cache") == "MISS", "shared first")
    r = post(e.port, chat("shared", tag), key=KEY_B)
    check(r.header("x-gateway-cache") == "HIT", "shared alias not shared: %r" % r.headers)


@test
def cache_request_headers():
    e = cenv()
    tag = tagged("hdr")
    # an alias without cache: only when the request asks
    r = post(e.port, chat("plain", tag))
    check(r.header("x-gateway-cache") is None, "uncached alias answered with %r" % r.header("x-gateway-cache"))
    check(post(e.port, chat("plain", tag), headers={"X-Gateway-Cache": "on"}).header("x-gateway-cache") == "MISS", "opt-in")
    check(post(e.port, chat("plain", tag), headers={"X-Gateway-Cache": "on"}).header("x-gateway-cache") == "HIT", "opt-in hit")
    check(post(e.port, chat("plain", tag), headers={"Cache-Control": "max-age=60"}).header("x-gateway-cache") == "HIT",
          "max-age opt-in")
    # no-cache bypasses the lookup and goes upstream
    n = upstream_count(tag)
    r = post(e.port, chat("plain", tag), headers={"Cache-Control": "no-cache", "X-Gateway-Cache": "on"})
    check(r.header("x-gateway-cache") == "MISS", "no-cache: %r" % r.headers)
    r = post(e.port, chat("c", tag), headers={"X-Gateway-Cache": "no-cache"})
    check(r.header("x-gateway-cache") == "MISS", "x-gateway-cache no-cache: %r" % r.headers)
    r = post(e.port, chat("c", tag), headers={"X-Gateway-Cache": "off"})
    check(r.header("x-gateway-cache") is None, "off: %r" % r.headers)
    check(upstream_count(tag) == n + 3, "bypasses did not reach upstream")
    # hostile values are ignored, never an error
    for v in ("max-age=99999999999999999999", "max-age=-1", ",,,", "no-cache" * 200, "\x01"):
        r = post(e.port, chat("plain", tag), headers={"Cache-Control": v})
        h.expect_status(r, 200)


@test
def cache_never_stores_errors_or_partial_streams():
    e = cenv()
    tag = tagged("err") + " MOCK_STATUS=500"
    for _ in range(2):
        r = post(e.port, chat("c", tag))
        check(r.status >= 500 and r.header("x-gateway-cache") == "MISS", "error answer: %r" % r)
    check(upstream_count(tag) == 2, "an error was cached")
    tag = tagged("partial") + " MOCK_RESET_AFTER=2 MOCK_CHUNKS=5"
    for _ in range(2):
        r = post(e.port, chat("c", tag, stream=True), sse=True)
        check(r.header("x-gateway-cache") == "MISS", "partial stream: %r" % r.headers)
    check(upstream_count(tag) == 2, "a partial stream was cached")


@test
def cache_redis_down_is_a_miss():
    e = cenv()
    redis("stop")
    try:
        h.wait_for(lambda: e.gw.stderr_text().count("cache: redis connection lost") >= 2, 10,
                   what="both workers to notice")
        prom = parse_prom(scrape(e.mport))
        check(val(prom, "gatewayllm_redis_connected") == 0, "redis_connected still 1")
        for i in range(4):
            r = post(e.port, chat("c", tagged("down")))
            h.expect_status(r, 200)
            check(r.header("x-gateway-cache") == "MISS", "redis down: %r" % r.headers)
        r = post(e.port, chat("c", tagged("down"), stream=True), sse=True)
        check(r.status == 200 and r.complete, "stream with redis down: %r" % r)
    finally:
        redis("start")
    h.wait_for(lambda: e.gw.stderr_text().count("cache: redis connected") >= 4, 15, what="reconnect")
    tag = tagged("back")
    post(e.port, chat("c", tag))
    for _ in range(3):
        check(post(e.port, chat("c", tag)).header("x-gateway-cache") == "HIT", "no hit after Redis came back")


# --------------------------------------------------------------------------
# tracing
# --------------------------------------------------------------------------
# A protobuf wire decoder for the OTLP messages (no protobuf module here):
# decodes into the dict shape of the OTLP/JSON mapping, so the tests read
# either encoding alike (ids as lowercase hex, 64-bit integers as strings).
def pb_fields(buf):
    """(field, wire type, value) of one message; refuses malformed input and
    varints that are not the shortest form (the exporter writes canonical ones)."""
    i, n = 0, len(buf)

    def varint():
        nonlocal i
        v = shift = 0
        start = i
        while True:
            if i >= n or shift > 63:
                raise ValueError("bad varint")
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if i - start > 1 and b == 0:
                    raise ValueError("varint not in its shortest form")
                return v

    while i < n:
        key = varint()
        field, wt = key >> 3, key & 7
        if field == 0:
            raise ValueError("field 0")
        if wt == 0:
            yield field, wt, varint()
            continue
        size = {1: 8, 5: 4}.get(wt)
        if wt == 2:
            size = varint()
        if size is None or i + size > n:
            raise ValueError("bad wire type %d or length" % wt)
        yield field, wt, bytes(buf[i:i + size])
        i += size


# message: {field: (JSON name, type, repeated)}; a type is another message or a scalar kind
OTLP_SCHEMA = {
    "ExportTraceServiceRequest": {1: ("resourceSpans", "ResourceSpans", True)},
    "ResourceSpans": {1: ("resource", "Resource", False), 2: ("scopeSpans", "ScopeSpans", True),
                      3: ("schemaUrl", "string", False)},
    "Resource": {1: ("attributes", "KeyValue", True)},
    "ScopeSpans": {1: ("scope", "InstrumentationScope", False), 2: ("spans", "Span", True),
                   3: ("schemaUrl", "string", False)},
    "InstrumentationScope": {1: ("name", "string", False), 2: ("version", "string", False)},
    "Span": {1: ("traceId", "hex", False), 2: ("spanId", "hex", False), 3: ("traceState", "string", False),
             4: ("parentSpanId", "hex", False), 5: ("name", "string", False), 6: ("kind", "int", False),
             7: ("startTimeUnixNano", "fixed64", False), 8: ("endTimeUnixNano", "fixed64", False),
             9: ("attributes", "KeyValue", True), 15: ("status", "Status", False)},
    "Status": {2: ("message", "string", False), 3: ("code", "int", False)},
    "KeyValue": {1: ("key", "string", False), 2: ("value", "AnyValue", False)},
    "AnyValue": {1: ("stringValue", "string", False), 2: ("boolValue", "bool", False),
                 3: ("intValue", "int64", False), 4: ("doubleValue", "double", False)},
}
PB_WIRE = {"string": 2, "hex": 2, "int": 0, "int64": 0, "bool": 0, "fixed64": 1, "double": 1}
PB_DEFAULTS = {"Span": {"kind": 0}, "Status": {"code": 0}}


def pb_decode(buf, msg="ExportTraceServiceRequest"):
    import struct
    out = dict(PB_DEFAULTS.get(msg, {}))
    for field, wt, v in pb_fields(buf):
        spec = OTLP_SCHEMA[msg].get(field)
        if not spec:
            continue   # a field these tests do not read
        name, typ, repeated = spec
        if wt != PB_WIRE.get(typ, 2):
            raise ValueError("%s.%s: wire type %d" % (msg, name, wt))
        if typ in OTLP_SCHEMA:
            val = pb_decode(v, typ)
        elif typ == "string":
            val = v.decode("utf-8")   # strict: invalid UTF-8 is an error, as in real collectors
        elif typ == "hex":
            val = v.hex()
        elif typ == "int":
            val = v
        elif typ == "int64":
            val = str(v - (1 << 64) if v >= 1 << 63 else v)
        elif typ == "bool":
            val = bool(v)
        elif typ == "fixed64":
            val = str(int.from_bytes(v, "little"))
        else:
            val = struct.unpack("<d", v)[0]
        if repeated:
            out.setdefault(name, []).append(val)
        else:
            out[name] = val
    return out


class OTLPReceiver:
    """A small OTLP/HTTP collector: POST /v1/traces in protobuf (application/x-protobuf)
    or JSON (application/json), spans kept in memory in the JSON mapping's shape."""

    def __init__(self):
        import http.server
        import threading
        spans, lock, ctypes = [], threading.Lock(), []
        self.spans, self.lock, self.content_types = spans, lock, ctypes

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                data = self.rfile.read(n)
                ctype = self.headers.get("content-type", "")
                ok = self.path == "/v1/traces"
                try:
                    if ctype.startswith("application/x-protobuf"):
                        doc = pb_decode(data)
                    elif ctype.startswith("application/json"):
                        doc = json.loads(data)
                    else:
                        raise ValueError("content-type %r" % ctype)
                    with lock:
                        ctypes.append(ctype)
                        for rs in doc["resourceSpans"]:
                            svc = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                            for ss in rs["scopeSpans"]:
                                for sp in ss["spans"]:
                                    sp["_service"] = svc.get("service.name", {}).get("stringValue")
                                    spans.append(sp)
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    ok = False
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def trace(self, trace_id):
        with self.lock:
            return [s for s in self.spans if s["traceId"] == trace_id]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def attrs(span):
    out = {}
    for a in span.get("attributes", []):
        v = a["value"]
        out[a["key"]] = v.get("stringValue", v.get("intValue", v.get("boolValue")))
    return out


@test
def trace_reaches_collector_with_client_parent():
    otlp = OTLPReceiver()
    mock = h.Mock("trace-up")
    port, mport = h.free_port(), h.free_port()
    c = base_config(port, mport, tracing={"otlp_endpoint": "http://127.0.0.1:%d/v1/traces" % otlp.port,
                                          "service_name": "gw-under-test", "flush_ms": 100})
    c["models"].append({"alias": "t", "deployments": [{"provider": "openai_compatible", "model": "traced-up",
                                                       "base_url": mock.base_url, "api_key": "sk-upstream-secret-t"}]})
    g = h.Gateway(c)
    try:
        tid, pid = secrets.token_hex(16), secrets.token_hex(8)
        tag = tagged("trace")
        r = post(port, chat("t", tag), headers={"traceparent": "00-%s-%s-01" % (tid, pid)})
        h.expect_status(r, 200)
        u = r.json()["usage"]
        spans = h.wait_for(lambda: len(otlp.trace(tid)) >= 5 and otlp.trace(tid), 10, what="5 spans of the trace")
        roots = [s for s in spans if s.get("parentSpanId") == pid]
        check(len(roots) == 1, "spans whose parent is the client's span: %r" % roots)
        root = roots[0]
        check(root["kind"] == 2 and root["name"] == "POST /v1/chat/completions", "root: %r" % root)
        check(root["_service"] == "gw-under-test", "service.name %r" % root["_service"])
        ra = attrs(root)
        check(ra.get("gen_ai.request.model") == "t", "gen_ai.request.model %r" % ra.get("gen_ai.request.model"))
        check(ra.get("gen_ai.system") == "openai_compatible", "gen_ai.system %r" % ra.get("gen_ai.system"))
        check(ra.get("gen_ai.response.model") == "traced-up", "gen_ai.response.model %r" % ra)
        check(int(ra.get("gen_ai.usage.input_tokens")) == u["prompt_tokens"], "input tokens %r" % ra)
        check(int(ra.get("gen_ai.usage.output_tokens")) == u["completion_tokens"], "output tokens %r" % ra)
        check(int(ra.get("http.response.status_code")) == 200, "status %r" % ra)
        check(ra.get("gateway.request_id") == r.header("x-gateway-request-id"), "request id %r" % ra)
        kids = [s for s in spans if s.get("parentSpanId") == root["spanId"]]
        names = sorted(s["name"] for s in kids)
        check(names == sorted(["gateway.auth", "gateway.limits", "gateway.route", "chat traced-up"]),
              "children of the request span: %r" % names)
        for s in spans:
            check(int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"]), "span ends before it starts: %r" % s)
            if s is not root:
                check(int(root["startTimeUnixNano"]) <= int(s["startTimeUnixNano"]), "child starts before its parent")
        up = [s for s in kids if s["name"] == "chat traced-up"][0]
        check(up["kind"] == 3, "upstream span kind %r" % up["kind"])
        # the upstream got our context: same trace, the attempt's span as its parent
        rec = mock.wait_find(tag)[0]
        tp = rec["headers"].get("traceparent")
        check(tp == "00-%s-%s-01" % (tid, up["spanId"]), "upstream traceparent %r, span %s" % (tp, up["spanId"]))
        with otlp.lock:
            ctypes = set(otlp.content_types)
        check(ctypes == {"application/x-protobuf"}, "default OTLP encoding: content types %r" % ctypes)
        text = json.dumps(otlp.spans)
        for sec in (KEY, "sk-upstream-secret-t"):
            check(sec not in text, "a secret is in the spans")

        # no traceparent: a new trace, the request span is a root
        n0 = len(otlp.spans)
        r = post(port, chat("m", "no parent"))
        h.expect_status(r, 200)
        h.wait_for(lambda: len(otlp.spans) >= n0 + 4, 10, what="spans of the second request")
        rid = r.header("x-gateway-request-id")
        root2 = [s for s in otlp.spans if attrs(s).get("gateway.request_id") == rid]
        check(len(root2) == 1 and "parentSpanId" not in root2[0] and root2[0]["traceId"] != tid, "new root: %r" % root2)
        # malformed traceparent: ignored, a new trace
        r = post(port, chat("m", "bad parent"), headers={"traceparent": "00-%s-%s-01" % ("0" * 32, pid)})
        h.expect_status(r, 200)
        # not sampled by the client: nothing exported, context still forwarded
        tid2 = secrets.token_hex(16)
        tag2 = tagged("unsampled")
        r = post(port, chat("t", tag2), headers={"traceparent": "00-%s-%s-00" % (tid2, pid)})
        h.expect_status(r, 200)
        tp2 = mock.wait_find(tag2)[0]["headers"].get("traceparent", "")
        check(tp2.startswith("00-%s-" % tid2) and tp2.endswith("-00"), "unsampled context upstream: %r" % tp2)
        r = post(port, chat("m", "flush marker"))
        rid = r.header("x-gateway-request-id")
        h.wait_for(lambda: any(attrs(s).get("gateway.request_id") == rid for s in otlp.spans), 10, what="marker")
        check(not otlp.trace(tid2), "an unsampled trace was exported")
        prom = parse_prom(scrape(mport))
        check(val(prom, "gatewayllm_trace_spans_exported_total") >= 10, "spans_exported %r" % val(prom, "gatewayllm_trace_spans_exported_total"))
    finally:
        g.stop()
        mock.stop()
        otlp.stop()


@test
def trace_json_protocol_on_request():
    """tracing.protocol: http/json sends the same spans as OTLP/JSON."""
    otlp = OTLPReceiver()
    port, mport = h.free_port(), h.free_port()
    c = base_config(port, mport, tracing={"otlp_endpoint": "http://127.0.0.1:%d/v1/traces" % otlp.port,
                                          "protocol": "http/json", "flush_ms": 100})
    g = h.Gateway(c)
    try:
        tid, pid = secrets.token_hex(16), secrets.token_hex(8)
        r = post(port, chat("m", "json trace"), headers={"traceparent": "00-%s-%s-01" % (tid, pid)})
        h.expect_status(r, 200)
        spans = h.wait_for(lambda: len(otlp.trace(tid)) >= 5 and otlp.trace(tid), 10, what="5 spans as JSON")
        with otlp.lock:
            ctypes = set(otlp.content_types)
        check(ctypes == {"application/json"}, "content types %r" % ctypes)
        root = [s for s in spans if s.get("parentSpanId") == pid]
        check(len(root) == 1 and root[0]["name"] == "POST /v1/chat/completions" and root[0]["kind"] == 2,
              "root: %r" % root)
        ra = attrs(root[0])
        check(ra.get("gateway.request_id") == r.header("x-gateway-request-id") and ra.get("gen_ai.request.model") == "m",
              "root attributes %r" % ra)
        kids = sorted(s["name"] for s in spans if s.get("parentSpanId") == root[0]["spanId"])
        check(kids == sorted(["gateway.auth", "gateway.limits", "gateway.route", "chat mock-1"]), "children %r" % kids)
    finally:
        g.stop()
        otlp.stop()


@test
def trace_protocol_checked():
    d = h.make_tmpdir("gwtest-otlp-")
    path = os.path.join(d, "gw.yaml")
    c = base_config(h.free_port(), h.free_port(), tracing={"otlp_endpoint": "http://127.0.0.1:4318/v1/traces",
                                                           "protocol": "grpc"})
    h.write_file_atomic(path, h.to_yaml(c))
    rc, out, err = h.check_config(path)
    check(rc != 0 and "tracing.protocol" in out + err and "grpc" in out + err, "check-config: %r %r %r" % (rc, out, err))


@test
def trace_collector_down_costs_no_request():
    port, mport = h.free_port(), h.free_port()
    dead = h.free_port()
    c = base_config(port, mport, tracing={"otlp_endpoint": "http://127.0.0.1:%d/v1/traces" % dead,
                                          "flush_ms": 50, "queue_spans": 64, "batch_spans": 16})
    g = h.Gateway(c)
    try:
        for i in range(60):
            r = post(port, chat("m", "collector away %d" % i),
                     headers={"traceparent": "00-%s-%s-01" % (secrets.token_hex(16), secrets.token_hex(8))})
            h.expect_status(r, 200)
        for i in range(5):
            r = post(port, chat("s", "stream away %d" % i, stream=True), sse=True)
            check(r.status == 200 and r.complete, "stream: %r" % r)
        h.wait_for(lambda: val(parse_prom(scrape(mport)), "gatewayllm_trace_spans_dropped_total") > 0, 10,
                   what="dropped spans to be counted")
        check(val(parse_prom(scrape(mport)), "gatewayllm_trace_spans_exported_total") == 0, "spans exported to nowhere")
        check(g.alive(), "gateway died")
    finally:
        g.stop()


# --------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------
@test
def logs_structured_with_levels_and_prompt_log_sampled():
    port, mport = h.free_port(), h.free_port()
    g = h.Gateway(base_config(port, mport, log_prompts={"sample_ratio": 1.0}))
    g2 = None
    try:
        tp_tid = secrets.token_hex(16)
        r = post(port, chat("m", "remember PROMPT-MARK-1"),
                 headers={"traceparent": "00-%s-%s-01" % (tp_tid, secrets.token_hex(8))})
        h.expect_status(r, 200)
        rid = r.header("x-gateway-request-id")
        r = post(port, chat("s", "stream PROMPT-MARK-2", stream=True), sse=True)
        h.expect_status(r, 200)
        rid2 = r.header("x-gateway-request-id")
        h.expect_status(post(port, chat("m", "x"), key="sk-gw-" + secrets.token_urlsafe(32)), 401)
        lines = h.wait_for(lambda: [l for l in g.access_log() if l.get("type") == "prompt"] and
                           len([l for l in g.access_log() if "status" in l]) >= 3 and g.access_log(), 5,
                           what="access and prompt log lines")
        for l in lines:
            check("_raw" not in l, "a log line is not JSON: %r" % l)
            check(l.get("level") in ("info", "warn", "error"), "no level: %r" % l)
            check(l.get("request_id", "").startswith("req_"), "no request id: %r" % l)
        acc = [l for l in lines if l.get("request_id") == rid and "status" in l]
        check(acc and acc[0].get("trace_id") == tp_tid, "access line lacks the client's trace id: %r" % acc)
        check(any(l.get("status") == 401 and l.get("level") == "warn" for l in lines), "401 not at warn level")
        prompts = {l["request_id"]: l for l in lines if l.get("type") == "prompt"}
        check(rid in prompts and "PROMPT-MARK-1" in prompts[rid]["prompt"], "prompt line: %r" % prompts.get(rid))
        check('"choices"' in prompts[rid]["completion"], "completion missing: %r" % prompts[rid])
        check(rid2 in prompts and "data:" in prompts[rid2]["completion"] and prompts[rid2]["stream"] is True,
              "stream prompt line: %r" % prompts.get(rid2))
        text = g.stdout_text() + g.stderr_text()
        check(KEY not in text, "a virtual key is in the logs")
        # off by default
        port2, mport2 = h.free_port(), h.free_port()
        g2 = h.Gateway(base_config(port2, mport2))
        r = post(port2, chat("m", "PROMPT-MARK-3"))
        h.expect_status(r, 200)
        h.wait_for(lambda: any(l.get("request_id") == r.header("x-gateway-request-id") for l in g2.access_log()), 5,
                   what="the access line")
        check("PROMPT-MARK-3" not in g2.stdout_text(), "prompts logged while off")
    finally:
        g.stop()
        if g2:
            g2.stop()


def teardown():
    if CE.gw:
        CE.gw.stop()


def main():
    return h.run(teardown=teardown, suite_timeout=600)


if __name__ == "__main__":
    sys.exit(main())
