#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ from the tests'
own inputs (C string literals of the unit tests, the request bodies and
streams the integration tests use) plus a few hand-made edge cases. Run it
again after adding tests; existing files (and crash-* regressions) are kept.
Seed files are named seed-<sha1 prefix> so reruns are idempotent."""
import hashlib, json, os, re, struct, sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > 16384:
        return
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def c_literals(path):
    """Adjacent C string literals joined, C escapes decoded, as bytes."""
    src = open(os.path.join(REPO, path), encoding="utf-8", errors="replace").read()
    out = []
    for m in re.finditer(r'((?:"(?:[^"\\\n]|\\.)*"\s*)+)', src):
        parts = re.findall(r'"((?:[^"\\\n]|\\.)*)"', m.group(1))
        raw = "".join(parts)
        try:
            out.append(bytes(raw, "utf-8").decode("unicode_escape").encode("latin-1", "replace"))
        except Exception:  # noqa: BLE001
            pass
    return out


# ---- json_parse / usage_from_bytes / validate_request -------------------
bodies = [
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]},
    {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "stream": True, "stream_options": {"include_usage": False}, "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": [{"type": "text", "text": "hé ☃ 😀"}]}]},
    {"model": "m", "prompt": "Once upon", "max_tokens": 5, "stream": False},
    {"model": "m", "prompt": ["a", "b"], "stream": True},
    {"model": "e", "input": ["one", "two"]},
    {"model": "e", "input": "text", "encoding_format": "float"},
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
]
for b in bodies:
    s = json.dumps(b, ensure_ascii=False)
    for t in ("json_parse", "validate_request"):
        write(t, s)
write("validate_request", '{"model":"a","messages":[{"role":"user","content":"x"}],"model":"b"}')
write("validate_request", '{"model":"a","stream":true,"stream_options":{"include_usage":true,"include_usage":false},"messages":[{"role":"user"}]}')
for s in ['{"a":"\\u00e9\\ud83d\\ude00\\n\\"\\\\"}', '[1, -0, 0.5e-3, 1E+2, -9223372036854775808, 18446744073709551616]',
          '{"deep":' * 30 + '1' + '}' * 30, '[' * 70 + ']' * 70, '"\\ud800"', '"\xc3\xa9\xe2\x98\x83\xf0\x9f\x98\x80"',
          ' \t\r\n null \n', '{"a":1,"a":2}', '1e400', '"\\u0000"']:
    write("json_parse", s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s)
for lit in c_literals("tests/unit/json_test.c"):
    if lit.strip()[:1] in (b"{", b"[", b'"') or lit.strip()[:1].isdigit():
        write("json_parse", lit)

usage = [
    '{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}',
    '{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}',
    '{"choices":[{"delta":{"content":"\\"usage\\": {"}}],"usage" : { "prompt_tokens" : 1 , "x":"}{" } }',
    '{"usage":null}', '"usage":{', '{"object":"list","data":[],"usage":{"prompt_tokens":9,"total_tokens":9}}',
]
for u in usage:
    write("usage_from_bytes", u)
    write("json_parse", u)

# ---- sse_feed: first byte = number of split points, then split sizes ----
streams = [
    'data: {"a":1}\n\n: keep-alive comment\n\nevent: message_start\r\ndata: {"b":2}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n',
    'data: {"id":"c1","choices":[{"delta":{"content":"Hel"}}]}\n\ndata: {"id":"c1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\ndata: [DONE]\n\n',
    'event: ping\ndata\n\nid: 7\nretry: 100\ndata:no-space\r\r\ndata: x\r\n',
    'data: ' + 'x' * 300 + '\n\ndata: after\n\n',
]
for lit in c_literals("tests/unit/sse_test.c"):
    if b"data" in lit:
        streams.append(lit.decode("latin-1"))
for s in streams:
    raw = s.encode("latin-1", "replace")
    write("sse_feed", bytes([0]) + raw)
    write("sse_feed", bytes([5, 1, 0, 3, 16, 2]) + raw)

# ---- guard_mask: first byte = number of split points, then split sizes, then text ----
texts = [
    "Mail ann@ex.io, card 4111 1111 1111 1111, call +1 415 555 2671, IBAN DE89 3704 0044 0532 0130 00",
    "key sk-ant-" + "api03-abcdefghijklmnopqrstuvwxyz and AKIA" + "IOSFODNN7EXAMPLE, TCK-1234, forbidden phrase, ok@example.com",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow==\n-----END RSA PRIVATE KEY----- Bearer abcdefghijklmnop1234",
    'data: {"choices":[{"index":0,"delta":{"content":"mail bob@"}}]}\n\ndata: {"choices":[{"index":0,"delta":{"content":"x.io now"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"card 4111 1111"}}\n\nevent: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" 1111 1111 ok"}}\n\nevent: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    "2024-01-15 10:30 order 4155552671 v1.2.3 192.168.1.1 \u00fcn\u00efc\u00f8d\u00e9",
]
texts += [
    json.dumps({"model": "m", "messages": [{"role": "user", "content": "mail a@b.io"},
               {"role": "assistant", "tool_calls": [{"function": {"arguments": "{\"to\":\"c@d.io\"}"}}], "content": "x"},
               {"role": "user", "content": [{"type": "text", "text": "card 4111 1111 1111 1111"},
                                            {"type": "tool_result", "content": [{"type": "text", "text": "e@f.io"}]}]}]}),
    json.dumps({"system": [{"type": "text", "text": "AKIA" + "IOSFODNN7EXAMPLE"}], "prompt": ["a@b.io", 1], "input": ["x@y.io"],
                "choices": [{"message": {"content": "g@h.io"}, "text": "i@j.io"}],
                "content": [{"type": "tool_use", "input": {"to": ["k@l.io"]}}]}),
]
for lit in c_literals("tests/unit/guard_test.c"):
    if len(lit) > 8:
        texts.append(lit.decode("utf-8", "replace"))
for t in texts:
    raw = t.encode("utf-8")
    write("guard_mask", bytes([0]) + raw)
    write("guard_mask", bytes([6, 1, 7, 3, 13, 2, 40]) + raw)

# ---- config_parse ---------------------------------------------------------
yamls = [
    "listen: 127.0.0.1:8080\nworkers: 2\nmax_body_bytes: 4194304\nmax_header_bytes: 32768\nclient_timeout_ms: 60000\naccess_log: stdout\n"
    "timeouts:\n  connect_ms: 10000\n  first_byte_ms: 600000\n  idle_ms: 300000\n  total_ms: 900000\n"
    "models:\n  - alias: gpt-4o-mini\n    deployments:\n      - provider: openai\n        model: gpt-4o-mini\n        base_url: https://api.openai.com/v1\n"
    "        api_key: env:FUZZ_SECRET\n        weight: 3\n      - provider: openai_compatible\n        model: llama\n        base_url: http://127.0.0.1:9/v1\n"
    "        api_key: sk-literal\n        timeouts: { first_byte_ms: 30000 }\n        input_cost_per_mtok: 0.15\n        output_cost_per_mtok: 0.6\n"
    "  - alias: demo\n    deployments:\n      - provider: mock\n        model: mock-1\n        latency_ms: 50\n"
    "keys:\n  - name: team-a\n    key: env:FUZZ_SECRET\n    models: [gpt-4o-mini]\n  - name: b\n    key_sha256: " + "ab" * 32 + "\n",
    "listen: 127.0.0.1:1\ncontrol_plane: tcp://127.0.0.1:2\nstate_dir: /tmp\ndataplane_id: edge-1\n",
    "models: &m [ {alias: a, deployments: [{provider: mock}]} ]\nkeys: *m\n",
]
for lit in c_literals("tests/unit/config_test.c"):
    if b":" in lit and b"\n" in lit:
        yamls.append(lit.decode("latin-1"))
for y in yamls:
    write("config_parse", y.encode("latin-1", "replace"))

# ---- snapshot_decode / delta_decode: protobuf by hand ---------------------
def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def fv(n, v):
    return varint(n << 3) + varint(v)


def fl(n, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(n << 3 | 2) + varint(len(data)) + data


def zz(v):
    return (v << 1) ^ (v >> 63)


def key(kid, sha, name="k", models=None, team="", expires=0, period=""):
    m = fl(1, kid) + fl(2, name) + fl(3, sha)
    if team:
        m += fl(4, team)
    if models is None:
        m += fv(5, 1)
    else:
        for a in models:
            m += fl(6, a)
    m += fv(7, zz(-1)) + fv(8, zz(60000)) + varint(9 << 3 | 1) + struct.pack("<d", 12.5)
    if period:
        m += fl(10, period)
    if expires:
        m += fv(11, expires)
    return m


def deployment(provider="mock", model="mock-1", base_url="", api_key="", ref=""):
    d = fl(1, provider) + fl(2, model)
    if base_url:
        d += fl(3, base_url)
    if api_key:
        d += fl(4, api_key)
    if ref:
        d += fl(5, ref)
    d += fv(6, 1) + fl(8, fv(1, 1000) + fv(2, 2000))
    d += fl(9, fl(1, "region") + fl(2, "us-east-1"))
    return d


def model(alias, *deps):
    return fl(1, alias) + fl(2, "weighted") + b"".join(fl(3, d) for d in deps) + fl(4, "fallback")


ID1 = "11111111-1111-4111-8111-111111111111"
ID2 = "22222222-2222-4222-8222-222222222222"
TEAM = "33333333-3333-4333-8333-333333333333"
H1, H2 = hashlib.sha256(b"sk-one").digest(), hashlib.sha256(b"sk-three").digest()
team = fl(1, TEAM) + fl(2, "team") + fv(3, zz(10)) + fl(6, "monthly")
snap = (fv(1, 7) + fv(2, 1700000000) + fl(3, model("a", deployment())) +
        fl(3, model("b", deployment("openai_compatible", "llama", "http://127.0.0.1:9/v1", "sk-x"),
                    deployment("openai", "gpt", "", "", "env:FUZZ_SECRET"))) +
        fl(5, team) + fv(6, 2) + fl(4, key(ID1, H1)) + fl(4, key(ID2, H2, models=["a"], team=TEAM, period="daily")))
write("snapshot_decode", snap)
write("snapshot_decode", fv(1, 0))
write("snapshot_decode", fv(1, 3) + fl(4, key(ID1, H1)) + fl(4, key(ID2, H1)))   # hash clash
delta = (fv(1, 8) + fv(2, 7) + fl(3, key(ID2, hashlib.sha256(b"sk-rot").digest())) + fl(4, ID1) +
         fl(5, model("c", deployment())) + fl(6, "b") + fl(7, team) + fl(8, TEAM) + fv(9, 1700000001))
write("delta_decode", delta)
write("delta_decode", fv(1, 9) + fv(2, 9))                                         # heartbeat
write("delta_decode", fv(1, 9) + fv(2, 8) + fv(10, 1))                             # resync
write("delta_decode", fv(1, 10) + fv(2, 9) + fl(3, key(ID1, H1, expires=1)))

# journal_replay: flags byte, then [u16 length][Delta] records (base 7 -> 8 -> 9)
def rec(b):
    return struct.pack("<H", len(b)) + b
d8 = fv(1, 8) + fv(2, 7) + fl(3, key(ID2, hashlib.sha256(b"sk-j").digest())) + fl(5, model("c", deployment()))
d9 = fv(1, 9) + fv(2, 8) + fl(4, ID1) + fl(6, "a")
write("journal_replay", bytes([0]) + rec(d8) + rec(d9))
write("journal_replay", bytes([1]) + rec(d8) + rec(d9))
write("journal_replay", bytes([2]) + rec(d8) + b"GWJ1\xff\xff")
write("journal_replay", bytes([0]) + rec(fv(1, 3) + fv(2, 2)) + rec(d8))

# ---- admin_api: handler index, "param\nquery\nbody" -------------------------
names = ["keys_create", "keys_list", "keys_get", "keys_update", "keys_revoke", "keys_rotate",
         "teams_create", "teams_list", "teams_get", "teams_update", "teams_delete",
         "models_create", "models_list", "models_get", "models_update", "models_delete",
         "credentials_create", "credentials_list", "credentials_get", "credentials_delete",
         "admin_tokens_create", "admin_tokens_list", "admin_tokens_revoke",
         "dataplanes_list", "dataplanes_get", "audit_list",
         "spend_summary", "spend_logs", "me", "overview"]
H = {n: i for i, n in enumerate(names)}
admin = [
    ("keys_create", "", "", {"name": "alice", "team_id": TEAM, "models": ["gpt-4o-mini"], "rpm_limit": 600, "tpm_limit": 1000,
                              "budget_usd": 12.5, "budget_period": "monthly", "expires_at": "2030-01-31T00:00:00Z", "metadata": {"a": [1]}}),
    ("keys_list", "", "limit=10&offset=0&team_id=" + TEAM + "&status=active&q=al%25i_ce", None),
    ("keys_update", ID1, "", {"rpm_limit": None, "expires_at": "2030-01-31T00:00:00.123+02:00"}),
    ("keys_get", "' OR 1=1 --", "", None),
    ("teams_create", "", "", {"name": "t", "rpm_limit": 5, "budget_usd": 1e3, "budget_period": "total"}),
    ("teams_list", "", "q=x'; DROP TABLE teams;--&limit=500", None),
    ("models_create", "", "", {"alias": "gpt", "strategy": "weighted", "deployments": [
        {"provider": "openai", "model": "gpt-4o", "base_url": "https://api.openai.com/v1", "api_key": "cred:" + ID1, "weight": 2,
         "timeouts": {"connect_ms": 100}, "input_cost_per_mtok": 0.1},
        {"provider": "mock", "model": "m", "latency_ms": 5, "api_key": "env:X"}], "fallbacks": ["b"], "cache": {"ttl_s": 30}}),
    ("models_update", "a/b", "", {"deployments": [{"provider": "openai_compatible", "base_url": "http://h/v1"}]}),
    ("models_list", "", "limit=1", None),
    ("credentials_create", "", "", {"name": "openai-prod", "provider": "openai", "secret": "sk-live-123"}),
    ("credentials_list", "", "offset=99999999999", None),
    ("admin_tokens_create", "", "", {"name": "ops", "role": "viewer"}),
    ("admin_tokens_revoke", ID2, "", None),
    ("dataplanes_get", "edge-1", "", None),
    ("audit_list", "", "resource=keys&action=create&since=2020-01-01T00:00:00Z&limit=2", None),
    ("spend_summary", "", "group_by=team&from=2026-01-01&to=2026-02-01&team_id=" + TEAM + "&key_id=" + ID1, None),
    ("spend_logs", "", "key_id=" + ID1 + "&status=429&model=gpt&limit=500&offset=50", None),
    ("me", "", "", None),
    ("overview", "", "days=366&key_id=" + ID1 + "&team_id=" + TEAM, None),
    ("overview", "", "days=1e3&team_id=%00", None),
]
for h, param, q, body in admin:
    data = bytes([H[h]]) + param.encode() + b"\n" + q.encode() + b"\n"
    if body is not None:
        data += json.dumps(body).encode()
    write("admin_api", data)
# ---- provider outputs (provider_fuzz.h): byte 0 = client | stream << 2, no cuts ----
def provider_seeds(target, unit_test):
    for lit in c_literals(unit_test):
        t = lit.lstrip()
        if not t or len(t) < 8:
            continue
        stream = t.startswith(b"event:") or t.startswith(b"data:") or (t.startswith(b"{") and b"}\n{" in t)
        if t.startswith(b"{") or stream:
            for cl in range(3):
                write(target, bytes([cl | (4 if stream else 0)]) + lit)
                if t.startswith(b"{") and not stream:   # an NDJSON line is a stream too
                    write(target, bytes([cl | 4]) + lit + b"\n")


provider_seeds("anthropic_output", "tests/unit/anthropic_test.c")
provider_seeds("gemini_output", "tests/unit/gemini_test.c")
provider_seeds("ollama_output", "tests/unit/ollama_test.c")
provider_seeds("bedrock_output", "tests/unit/bedrock_test.c")
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import mock_dialects as md  # noqa: E402
frames = (md.es_event("messageStart", {"role": "assistant"}) +
          md.es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}) +
          md.es_event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}) +
          md.es_event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":1}"}}}) +
          md.es_event("messageStop", {"stopReason": "tool_use"}) +
          md.es_event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "cacheReadInputTokens": 1}}))
for cl in range(3):
    write("bedrock_output", bytes([cl | 4]) + frames)
write("bedrock_output", bytes([4]) + md.es_exception("throttlingException", "slow down"))
write("bedrock_output", b"\xee" + frames)
for lit in c_literals("tests/unit/chat_test.c") + c_literals("tests/unit/provider_fixture.h"):
    if lit.lstrip().startswith(b"{"):
        for kind in (0, 1, 2, 0x80, 0x82):
            write("chat_inbound", bytes([kind]) + lit)
# the Responses parser: the unit test's requests, alone and after a stored response
stored = (b'{"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"weather?"}]}],'
          b'"response":{"id":"resp_1","output":[{"id":"fc_1_0","type":"function_call","status":"completed",'
          b'"arguments":"{}","call_id":"call_7","name":"get_weather"}]}}')
for lit in c_literals("tests/unit/responses_test.c"):
    if lit.lstrip().startswith(b"{"):
        for kind in (0, 0x80):
            write("responses_inbound", bytes([kind]) + lit)
        write("responses_inbound", b"\x01" + lit + b"\0" + stored)
print("seeds written under", os.path.join(HERE, "corpus"))
