#!/usr/bin/env python3
"""The admin UI's server side: static files at / and the read-only endpoints
the UI added (GET /api/me, GET /api/overview, /api/spend team/key filters).

Run by suite_ui.sh (Postgres + control plane serving a copy of admin-ui/ in
CP_UI_DIR). Progress on stderr; last stdout line "N passed, N failed".
"""
import datetime
import http.client
import json
import os
import subprocess
import sys
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

URL = os.environ["CP_URL"]
ADMIN = os.environ["CP_ADMIN_TOKEN"]
PG_PORT = os.environ["CP_PG_PORT"]
UI_DIR = os.environ["CP_UI_DIR"]
WORK = os.environ["CP_WORK"]
HOST = urllib.parse.urlparse(URL)


class Failure(Exception):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise Failure(msg)


def eq(got, want, what=""):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def call(method, path, body=None, token=ADMIN):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def expect(status_want, method, path, body=None, **kw):
    status, doc = call(method, path, body, **kw)
    if status != status_want:
        raise Failure(f"{method} {path}: status {status}, want {status_want}: {doc}")
    return doc


def raw(method, path, headers=None):
    """A request with the path sent byte for byte (no client-side normalising)."""
    conn = http.client.HTTPConnection(HOST.hostname, HOST.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def psql(sql):
    out = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", PG_PORT,
                          "-U", "gateway", "-d", "gateway", "-c", sql],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise Failure(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def sql_lit(s):
    return "'" + s.replace("'", "''") + "'"


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------- static files

@test
def index_served_with_headers():
    status, h, body = raw("GET", "/")
    eq(status, 200, "GET /")
    eq(h.get("content-type"), "text/html; charset=utf-8", "content type")
    with open(os.path.join(UI_DIR, "index.html"), "rb") as f:
        eq(body, f.read(), "body is admin-ui/index.html")
    csp = h.get("content-security-policy", "")
    for part in ("default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"):
        check(part in csp, f"CSP {csp!r} lacks {part!r}")
    check("unsafe-inline" not in csp and "unsafe-eval" not in csp, f"CSP allows inline code: {csp}")
    eq(h.get("x-content-type-options"), "nosniff", "nosniff")
    eq(h.get("x-frame-options"), "DENY", "no framing")
    eq(h.get("cache-control"), "no-cache", "revalidated on every load")
    check(h.get("etag", "").startswith('"'), f"etag: {h.get('etag')!r}")
    status, h2, body = raw("GET", "/index.html")
    eq(status, 200, "GET /index.html")
    eq(h2.get("etag"), h.get("etag"), "same file, same etag")


@test
def content_types_by_extension():
    names = sorted(os.listdir(UI_DIR))
    want = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
            ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}
    seen = set()
    for n in names:
        ext = os.path.splitext(n)[1]
        if ext not in want or not os.path.isfile(os.path.join(UI_DIR, n)):
            continue
        status, h, _ = raw("GET", "/" + n)
        eq(status, 200, f"GET /{n}")
        eq(h.get("content-type"), want[ext], f"/{n} content type")
        seen.add(ext)
    check({".js", ".css"} <= seen, f"admin-ui/ has js and css files: {names}")


@test
def etag_revalidation_is_304():
    _, h, _ = raw("GET", "/")
    status, h2, body = raw("GET", "/", {"If-None-Match": h["etag"]})
    eq(status, 304, "If-None-Match with the current etag")
    eq(body, b"", "304 has no body")
    status, _, _ = raw("GET", "/", {"If-None-Match": '"stale"'})
    eq(status, 200, "a stale etag gets the file")


@test
def head_has_no_body():
    status, h, body = raw("HEAD", "/")
    eq(status, 200, "HEAD /")
    eq(body, b"", "HEAD body")
    eq(h.get("content-type"), "text/html; charset=utf-8", "HEAD content type")


@test
def no_directory_traversal():
    secret = "ui-traversal-canary-" + uuid.uuid4().hex
    outside = os.path.join(WORK, "outside.txt")
    with open(outside, "w") as f:
        f.write(secret)
    os.symlink(outside, os.path.join(UI_DIR, "link.txt"))        # a symlink out of the UI dir
    os.symlink(WORK, os.path.join(UI_DIR, "linkdir"))
    with open(os.path.join(UI_DIR, ".hidden.txt"), "w") as f:
        f.write(secret)
    paths = ["/../outside.txt", "/%2e%2e/outside.txt", "/..%2foutside.txt", "/%2e%2e%2foutside.txt",
             "/x/../../outside.txt", "/link.txt", "/linkdir/outside.txt", "/.hidden.txt", "//etc/passwd",
             "/....//outside.txt", "/index.html%00.txt", "/%252e%252e/outside.txt", "/\\..\\outside.txt",
             "/../../../../../../etc/passwd", "/admin-ui/../../outside.txt", "/" + "a/" * 300 + "x.js",
             "/controlplane.yaml", "/README", "/index.html/", "/./index.html"]
    for p in paths:
        status, h, body = raw("GET", p)
        check(secret.encode() not in body and b"root:" not in body, f"GET {p} leaked a file outside admin-ui")
        if p in ("/index.html/", "/index.html%00.txt") and status == 200:
            # trailing slashes are trimmed like for API paths, and libmicrohttpd's decoding ends the
            # path at %00: both name index.html itself, which is what must come back
            with open(os.path.join(UI_DIR, "index.html"), "rb") as f:
                eq(body, f.read(), f"GET {p} is index.html")
            continue
        check(status in (400, 404), f"GET {p}: status {status}, want 404")
        if status == 404:
            check("content-security-policy" in h or h.get("content-type", "").startswith("application/json"),
                  f"GET {p}: 404 without security headers: {h}")


@test
def other_methods_and_api_paths_stay_json():
    status, h, body = raw("POST", "/")
    eq(status, 404, "POST /")
    check(h.get("content-type", "").startswith("application/json"), "POST / answers the API's JSON 404")
    status, h, body = raw("GET", "/api/nope")
    eq(status, 404, "GET /api/nope")
    check(json.loads(body)["error"]["type"] == "not_found", "/api/nope is an API 404, not a file lookup")
    status, h, body = raw("GET", "/api")
    eq(status, 404, "GET /api")
    check(h.get("content-type", "").startswith("application/json"), "/api is the API's")


# ---------------------------------------------------------------- /api/me

@test
def me_names_the_role():
    doc = expect(200, "GET", "/api/me")
    eq(doc["role"], "admin", "admin token role")
    v = expect(201, "POST", "/api/admin-tokens", {"name": "ui-api-viewer", "role": "viewer"})
    doc = expect(200, "GET", "/api/me", token=v["token"])
    eq((doc["role"], doc["name"], doc["id"]), ("viewer", "ui-api-viewer", v["id"]), "viewer identity")
    check(v["token"] not in json.dumps(doc), "the token is not echoed")
    expect(401, "GET", "/api/me", token=None)
    expect(401, "GET", "/api/me", token="nope")


# ---------------------------------------------------------------- /api/overview

def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def insert_spend(rows):
    doc = json.dumps(rows)
    eq(psql(f"SELECT spend_log_insert_batch({sql_lit(doc)}::jsonb)"), str(len(rows)), "rows inserted")


@test
def overview_aggregates_in_sql():
    team = expect(201, "POST", "/api/teams", {"name": "ov-team", "budget_usd": 10, "budget_period": "monthly"})
    key = expect(201, "POST", "/api/keys", {"name": "ov-key", "team_id": team["id"]})
    other = expect(201, "POST", "/api/keys", {"name": "ov-other"})
    now = datetime.datetime.now(datetime.timezone.utc)
    today0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month0 = today0.replace(day=1)
    t_today = max(today0, now - datetime.timedelta(minutes=1))
    t_3d = today0 - datetime.timedelta(days=3) + datetime.timedelta(hours=12)
    t_40d = today0 - datetime.timedelta(days=40)
    rows = []
    # today: 10 requests of the key, latencies 100..1000, one 500; 1 request of the other key
    for i in range(10):
        rows.append({"request_id": f"ov-t-{i}", "ts": iso(t_today), "key_id": key["id"], "team_id": team["id"],
                     "model_alias": "gpt-a", "provider": "openai", "cost_usd": 0.5, "latency_ms": 100 * (i + 1),
                     "status": 500 if i == 9 else 200, "prompt_tokens": 10, "completion_tokens": 5})
    rows.append({"request_id": "ov-t-o", "ts": iso(t_today), "key_id": other["id"], "model_alias": "gpt-b",
                 "provider": "mock", "cost_usd": 2, "latency_ms": 5000, "status": 200})
    # 3 days ago: 4 requests of the key, one 429
    for i in range(4):
        rows.append({"request_id": f"ov-3-{i}", "ts": iso(t_3d), "key_id": key["id"], "team_id": team["id"],
                     "model_alias": "gpt-b", "provider": "mock", "cost_usd": 0.25, "latency_ms": 50,
                     "status": 429 if i == 0 else 200})
    # 40 days ago: outside a 14-day window
    rows.append({"request_id": "ov-40", "ts": iso(t_40d), "key_id": key["id"], "team_id": team["id"],
                 "model_alias": "gpt-c", "cost_usd": 100, "latency_ms": 1, "status": 200})
    insert_spend(rows)

    doc = expect(200, "GET", "/api/overview?days=14")
    eq(doc["days"], 14, "days")
    eq(len(doc["series"]), 14, "one series point per day, zero-filled")
    eq(doc["series"][-1]["day"], today0.strftime("%Y-%m-%d"), "last point is today")
    eq(doc["series"][-1]["requests"], 11, "today's requests in the series")
    eq(doc["series"][-4]["requests"], 4, "3 days ago in the series")
    eq(doc["series"][-2]["requests"], 0, "yesterday zero-filled")
    eq(doc["today"]["requests"], 11, "today requests")
    eq(float(doc["today"]["cost_usd"]), 7.0, "today cost")
    eq(doc["today"]["errors"], 1, "today errors")
    want_month = 7.0 + (1.0 if t_3d >= month0 else 0) + (100 if t_40d >= month0 else 0)
    eq(float(doc["month"]["cost_usd"]), want_month, "month cost")
    r = doc["range"]
    eq((r["requests"], r["errors"], float(r["cost_usd"])), (15, 2, 8.0), "14-day range")
    # latencies in range: 50 x4, 100..1000, 5000 -> 15 values; exact p50 = 8th = 400, p95 = 15th = 5000.
    # Reported from 5.1%-wide log buckets as the bucket's upper bound: never below, at most 5.1% above.
    check(400 <= r["p50_ms"] <= 400 * 1.052, f"p50 {r['p50_ms']} for an exact 400")
    check(5000 <= r["p95_ms"] <= 5000 * 1.052, f"p95 {r['p95_ms']} for an exact 5000")
    today_pt = doc["series"][-1]
    # today: 100..1000 and 5000 -> exact p50 = 6th of 11 = 600, p95 = 11th = 5000
    check(600 <= today_pt["p50_ms"] <= 600 * 1.052 and 5000 <= today_pt["p95_ms"] <= 5000 * 1.052,
          f"today's p50/p95 {today_pt['p50_ms']}/{today_pt['p95_ms']}")
    eq(doc["series"][-2]["p50_ms"], None, "no latency on a day without requests")
    eq([t["id"] for t in doc["top_teams"]], [team["id"], None], "top teams (no team last)")
    eq(doc["top_teams"][0]["name"], "ov-team", "team name joined")
    eq([k["id"] for k in doc["top_keys"]], [key["id"], other["id"]], "top keys by cost")
    eq(doc["top_keys"][0]["name"], "ov-key", "key name joined")
    eq([m["model"] for m in doc["top_models"]], ["gpt-a", "gpt-b"], "top models by cost")
    eq(float(doc["top_models"][1]["cost_usd"]), 3.0, "gpt-b cost")
    b = [x for x in doc["budgets"] if x["id"] == team["id"]]
    eq(len(b), 1, "the team's budget is listed")
    eq((b[0]["kind"], float(b[0]["budget_usd"]), b[0]["budget_period"]), ("team", 10.0, "monthly"), "budget")
    eq(float(b[0]["spent_usd"]), 5.0 + (1.0 if t_3d >= month0 else 0) + (100 if t_40d >= month0 else 0),
       "spent this month")

    one = expect(200, "GET", f"/api/overview?days=2&key_id={other['id']}")
    eq((one["range"]["requests"], one["today"]["requests"], len(one["series"])), (1, 1, 2), "key filter")
    eq(one["budgets"], [], "no budgets list when filtered")
    wide = expect(200, "GET", "/api/overview?days=60")
    eq(wide["range"]["requests"], 16, "60 days include the old row")
    expect(200, "GET", f"/api/overview?team_id={team['id']}", token=ADMIN)


@test
def overview_rejects_bad_input():
    for q in ("days=0", "days=367", "days=abc", "days=1e3", "days=-1", "days=99999999999999999999",
              "key_id=nope", "team_id='", "key_id=" + "a" * 5000):
        st, doc = call("GET", "/api/overview?" + q)
        eq(st, 400, f"/api/overview?{q[:40]}")
        eq(doc["error"]["type"], "invalid_request_error", f"{q[:40]} error type")
    expect(401, "GET", "/api/overview", token=None)


@test
def spend_filters_by_team_and_key():
    team = expect(201, "POST", "/api/teams", {"name": "sp-team"})
    k1 = expect(201, "POST", "/api/keys", {"name": "sp-k1", "team_id": team["id"]})
    k2 = expect(201, "POST", "/api/keys", {"name": "sp-k2"})
    ts = iso(datetime.datetime(2025, 3, 5, 12, tzinfo=datetime.timezone.utc))
    insert_spend([
        {"request_id": "sp-1", "ts": ts, "key_id": k1["id"], "team_id": team["id"], "model_alias": "m1", "cost_usd": 1},
        {"request_id": "sp-2", "ts": ts, "key_id": k1["id"], "team_id": team["id"], "model_alias": "m2", "cost_usd": 2},
        {"request_id": "sp-3", "ts": ts, "key_id": k2["id"], "model_alias": "m1", "cost_usd": 4},
    ])
    base = "/api/spend?group_by=model&from=2025-03-01&to=2025-03-10"
    doc = expect(200, "GET", base)
    eq(float(doc["totals"]["cost_usd"]), 7.0, "unfiltered")
    doc = expect(200, "GET", base + f"&team_id={team['id']}")
    eq((doc["totals"]["requests"], float(doc["totals"]["cost_usd"])), (2, 3.0), "team filter")
    eq(sorted(g["group"] for g in doc["data"]), ["m1", "m2"], "team's models")
    doc = expect(200, "GET", base + f"&key_id={k2['id']}")
    eq((doc["totals"]["requests"], float(doc["totals"]["cost_usd"])), (1, 4.0), "key filter")
    for q in ("&team_id=x", "&key_id=1"):
        st, doc = call("GET", base + q)
        eq(st, 400, q)


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
        except Exception as e:      # noqa: BLE001
            failed += 1
            detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
            print(f"not ok - {fn.__name__}: {detail}", file=sys.stderr)
        else:
            passed += 1
            print(f"ok - {fn.__name__}", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
