"""Provider wire formats for mock_upstream.py: Anthropic Messages, Gemini,
Ollama, Bedrock Converse (with SigV4 verification and the binary
application/vnd.amazon.eventstream framing), Azure OpenAI, and OpenAI chat
with tools.

Each provider is strict about what the real one rejects (roles that do not
alternate, missing max_tokens, wrong anthropic-version, a bad signature), so a
translation bug in the gateway is a visible 400 rather than a silent pass.

One planner decides the answer for every dialect from the last user turn:
    - a tool result in the last turn   -> text "tool said: <result>"
    - tools offered and MOCK_TOOL      -> a call of the first tool with {"city":"Paris"}
    - otherwise                        -> "mock[<name>] reply to: <text>"
Directives (in the last user text): MOCK_STATUS=n, MOCK_TOOL, MOCK_CHUNKS=n,
MOCK_CACHED=n (cached prompt tokens reported), MOCK_TRUNCATE (the stream stops
before its end event), MOCK_GARBAGE (a malformed stream event), MOCK_STOP=length.
"""
import binascii
import hashlib
import hmac
import json
import re
import struct
import time
import urllib.parse
import uuid

TOOL_ARGS = {"city": "Paris", "unit": "celsius"}

# Test-only AWS credentials (the same values the suites put in the gateway config).
AWS_ACCESS_KEY_ID = "AKIA" + "MOCKGATEWAYTEST1"   # split: not a real key, and scanners should not think so
AWS_SECRET_ACCESS_KEY = "mock-secret/for+sigv4-tests-only"
AWS_REGION = "us-east-1"


def parse_directives(text):
    out = {}
    for tok in (text or "").split():
        if tok.startswith("MOCK_"):
            k, _, v = tok.partition("=")
            out[k[5:]] = v
    return out


def words(text):
    return max(1, len((text or "").split()))


class Plan:
    def __init__(self, user_text, tool_names, tool_result, name, all_text):
        self.d = parse_directives(user_text)
        self.tool = None
        if tool_result is not None:
            self.text = "tool said: " + tool_result
        elif tool_names and "TOOL" in self.d:
            self.text = ""
            self.tool = (tool_names[0], TOOL_ARGS)
        else:
            self.text = ("mock[%s] reply to: %s" % (name, user_text))[:600]
        self.ptoks = words(all_text)
        self.ctoks = words(self.text) if self.text else 5
        self.cached = int(self.d.get("CACHED") or 0)
        self.stop = "length" if self.d.get("STOP") == "length" else ("tool" if self.tool else "stop")
        n = int(self.d.get("CHUNKS") or 3)
        self.pieces = split_pieces(self.text, n) if self.text else []

    @property
    def tool_json(self):
        return json.dumps(self.tool[1]) if self.tool else ""


def embedding(text, dims):
    """Deterministic values in [-1, 1] from the text."""
    h = hashlib.sha256(text.encode()).digest()
    return [round(h[i % 32] / 127.5 - 1.0, 6) for i in range(dims)]


def split_pieces(text, n):
    n = max(1, min(n, len(text)))
    size = (len(text) + n - 1) // n
    return [text[i:i + size] for i in range(0, len(text), size)]


class ClientGoneError(Exception):
    pass


class Bad(Exception):
    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


def need(cond, message, status=400):
    if not cond:
        raise Bad(status, message)


# ---------------------------------------------------------------------------
# the dialects: extract (user text, tool names, tool result, all text)
# ---------------------------------------------------------------------------
def _text_of(c):
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return " ".join(p.get("text", "") for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def extract_openai(body):
    msgs = body.get("messages") or []
    need(isinstance(msgs, list) and msgs, "messages required")
    tools = [t["function"]["name"] for t in body.get("tools") or []]
    last = msgs[-1]
    result = _text_of(last.get("content")) if last.get("role") == "tool" else None
    user = ""
    for m in reversed(msgs):
        if m.get("role") == "user":
            user = _text_of(m.get("content"))
            break
    for m in msgs:
        for tc in m.get("tool_calls") or []:
            json.loads(tc["function"]["arguments"])  # must be JSON text
    return user, tools, result, " ".join(_text_of(m.get("content")) for m in msgs)


def extract_anthropic(body, headers):
    need(headers.get("anthropic-version") == "2023-06-01", "anthropic-version must be 2023-06-01, got %r" % headers.get("anthropic-version"))
    need(headers.get("x-api-key"), "x-api-key header is required", 401)
    need(isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0, "max_tokens: Field required")
    msgs = body.get("messages")
    need(isinstance(msgs, list) and msgs, "messages: Field required")
    need(msgs[0].get("role") == "user", "messages: first message must use the user role")
    tool_ids = set()
    for i, m in enumerate(msgs):
        need(m.get("role") in ("user", "assistant"), "messages.%d.role: Input should be 'user' or 'assistant'" % i)
        if i:
            need(m["role"] != msgs[i - 1]["role"], "messages: roles must alternate between user and assistant")
        c = m.get("content")
        if isinstance(c, list):
            need(c, "messages.%d.content: at least one block" % i)
            for b in c:
                t = b.get("type")
                if t == "text":
                    need(isinstance(b.get("text"), str) and b["text"], "messages: text content blocks must be non-empty")
                elif t == "tool_use":
                    need(m["role"] == "assistant" and isinstance(b.get("input"), dict), "messages: bad tool_use block")
                    tool_ids.add(b.get("id"))
                elif t == "tool_result":
                    need(m["role"] == "user" and b.get("tool_use_id") in tool_ids, "messages: tool_result without a matching tool_use")
                elif t == "image":
                    src = b.get("source") or {}
                    need(src.get("type") in ("base64", "url"), "messages: bad image source")
                else:
                    need(False, "messages: unknown block type %r" % t)
    sys_ = body.get("system")
    need(sys_ is None or isinstance(sys_, (str, list)), "system: must be a string or blocks")
    tools = []
    for t in body.get("tools") or []:
        need(isinstance(t.get("input_schema"), dict), "tools: input_schema required")
        tools.append(t["name"])
    last = msgs[-1]
    result = None
    user = ""
    if isinstance(last.get("content"), list):
        for b in last["content"]:
            if b.get("type") == "tool_result":
                result = _text_of(b.get("content"))
    for m in reversed(msgs):
        if m["role"] == "user":
            user = _text_of(m.get("content"))
            if user:
                break
    all_text = " ".join(_text_of(m.get("content")) for m in msgs) + " " + _text_of(sys_)
    return user, tools, result, all_text


def extract_gemini(body, headers):
    need(headers.get("x-goog-api-key"), "API key not valid. Please pass a valid API key.", 400)
    contents = body.get("contents")
    need(isinstance(contents, list) and contents, "contents is required")
    for c in contents:
        need(c.get("role") in ("user", "model"), "Please use a valid role: user, model.")
        need(isinstance(c.get("parts"), list) and c["parts"], "contents.parts must not be empty")
    si = body.get("systemInstruction")
    need(si is None or isinstance(si.get("parts"), list), "systemInstruction.parts required")
    tools = []
    for t in body.get("tools") or []:
        for f in t.get("functionDeclarations") or []:
            tools.append(f["name"])
    last = contents[-1]
    result = None
    for p in last["parts"]:
        if "functionResponse" in p:
            fr = p["functionResponse"]
            need(isinstance(fr.get("response"), dict) and fr.get("name"), "functionResponse needs name and response")
            result = fr["response"].get("content") if isinstance(fr["response"].get("content"), str) else json.dumps(fr["response"])
    user = ""
    for c in reversed(contents):
        if c["role"] == "user":
            user = " ".join(p["text"] for p in c["parts"] if isinstance(p.get("text"), str))
            if user:
                break
    all_text = " ".join(p.get("text", "") for c in contents for p in c["parts"])
    return user, tools, result, all_text


def extract_ollama(body):
    msgs = body.get("messages")
    need(isinstance(msgs, list) and msgs, "messages required")
    for m in msgs:
        need(m.get("role") in ("system", "user", "assistant", "tool"), "invalid role")
        need(isinstance(m.get("content", ""), str), "content must be a string")
        for tc in m.get("tool_calls") or []:
            need(isinstance(tc["function"]["arguments"], dict), "tool_calls arguments must be an object")
    tools = [t["function"]["name"] for t in body.get("tools") or []]
    last = msgs[-1]
    result = last.get("content") if last.get("role") == "tool" else None
    user = ""
    for m in reversed(msgs):
        if m["role"] == "user":
            user = m.get("content", "")
            break
    return user, tools, result, " ".join(m.get("content", "") for m in msgs)


def extract_bedrock(body):
    msgs = body.get("messages")
    need(isinstance(msgs, list) and msgs, "messages required")
    need(msgs[0].get("role") == "user", "A conversation must start with a user message.")
    for i, m in enumerate(msgs):
        need(m.get("role") in ("user", "assistant"), "invalid role")
        if i:
            need(m["role"] != msgs[i - 1]["role"], "A conversation must alternate between user and assistant roles.")
        need(isinstance(m.get("content"), list) and m["content"], "content must be a non-empty list")
        for b in m["content"]:
            need(len(b) == 1 and list(b)[0] in ("text", "image", "toolUse", "toolResult"), "unknown content block %r" % b)
    tools = [t["toolSpec"]["name"] for t in (body.get("toolConfig") or {}).get("tools") or []]
    last = msgs[-1]
    result = None
    for b in last["content"]:
        if "toolResult" in b:
            result = " ".join(x.get("text", "") for x in b["toolResult"]["content"])
    user = ""
    for m in reversed(msgs):
        if m["role"] == "user":
            user = " ".join(b["text"] for b in m["content"] if "text" in b)
            if user:
                break
    return user, tools, result, " ".join(b.get("text", "") for m in msgs for b in m["content"])


# ---------------------------------------------------------------------------
# SigV4 (verification) and the AWS event stream (encoding)
# ---------------------------------------------------------------------------
def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_check(method, raw_path, query, headers, body):
    """None if the request is signed right with the mock's credentials, else why not."""
    auth = headers.get("authorization", "")
    m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                 r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$", auth)
    if not m:
        return "malformed Authorization header"
    akid, date, region, service, signed, sig = m.groups()
    if akid != AWS_ACCESS_KEY_ID:
        return "unknown access key"
    if region != AWS_REGION or service != "bedrock":
        return "wrong scope %s/%s" % (region, service)
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        return "x-amz-date does not match the credential date"
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names:
        return "host and x-amz-date must be signed"
    # AWS services other than S3 encode the (already encoded) path once more
    canon_uri = urllib.parse.quote(raw_path, safe="/~")
    q = urllib.parse.parse_qsl(query, keep_blank_values=True)
    canon_q = "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in sorted(q))
    canon_h = "".join("%s:%s\n" % (n, " ".join(headers.get(n, "").split())) for n in names)
    creq = "\n".join([method, canon_uri, canon_q, canon_h, signed, hashlib.sha256(body).hexdigest()])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = _hmac(("AWS4" + AWS_SECRET_ACCESS_KEY).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    k = _hmac(k, "aws4_request")
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return "The request signature we calculated does not match the signature you provided."
    return None


def es_frame(headers, payload):
    hb = b""
    for name, value in headers:
        n = name.encode()
        v = value.encode()
        hb += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(hb) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hb))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xffffffff)
    msg = prelude + hb + payload
    return msg + struct.pack(">I", binascii.crc32(msg) & 0xffffffff)


def es_event(event_type, obj):
    return es_frame([(":event-type", event_type), (":content-type", "application/json"),
                     (":message-type", "event")], json.dumps(obj).encode())


def es_exception(exc_type, message):
    return es_frame([(":exception-type", exc_type), (":content-type", "application/json"),
                     (":message-type", "exception")], json.dumps({"message": message}).encode())


# ---------------------------------------------------------------------------
# the handler side: one function per provider route
# ---------------------------------------------------------------------------
def _err_anthropic(status, message):
    etype = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": message}}


def _err_gemini(status, message):
    st = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message, "status": st}}


class Dialects:
    """Mixed into the mock's request handler (self is a BaseHTTPRequestHandler)."""

    def dialect_route(self, method, path, query, body, body_error, rec):
        """True if path belongs to a provider dialect (and was answered)."""
        kind = None
        if path == "/v1/messages":
            kind = "anthropic"
        elif path.startswith("/v1beta/models/") and (path.endswith(":generateContent") or path.endswith(":streamGenerateContent")):
            kind = "gemini"
        elif path.startswith("/v1beta/models/") and path.endswith(":batchEmbedContents"):
            kind = "gemini_embed"
        elif path == "/api/chat":
            kind = "ollama"
        elif path == "/api/embed":
            kind = "ollama_embed"
        elif path.startswith("/model/") and (path.endswith("/converse") or path.endswith("/converse-stream")):
            kind = "bedrock"
        elif path.startswith("/model/") and path.endswith("/invoke"):
            kind = "bedrock_embed"
        elif path.startswith("/openai/deployments/") and path.endswith("/chat/completions"):
            kind = "azure"
        if kind is None:
            return False
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            need(method == "POST", "use POST", 405)
            need(body_error is None and isinstance(body, dict), "invalid JSON body: %s" % body_error)
            getattr(self, "d_" + kind)(path, query, body, headers, rec)
        except Bad as e:
            self.d_error(kind.split("_")[0], e.status, e.message, rec)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            self.d_error(kind.split("_")[0], 400, "mock %s: malformed request: %r" % (kind, e), rec)
        return True

    def d_error(self, kind, status, message, rec):
        if kind == "anthropic":
            self.send_json(status, _err_anthropic(status, message))
        elif kind == "gemini":
            self.send_json(status, _err_gemini(status, message))
        elif kind == "ollama":
            self.send_json(status, {"error": message})
        elif kind == "bedrock":
            etype = {400: "ValidationException", 403: "AccessDeniedException", 429: "ThrottlingException"}.get(status, "InternalServerException")
            self.send_json(status, {"message": message}, {"x-amzn-ErrorType": etype + ":http://internal.amazon.com/coral/com.amazon.bedrock/"})
        else:
            self.send_json(status, {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                                              "param": None, "code": None}})
        self.finish_rec(rec, status)

    def d_status(self, plan):
        st = int(plan.d.get("STATUS") or 200)
        if st != 200:
            raise Bad(st, "mock upstream answered %d as asked" % st)

    def d_stream_start(self, ctype, rec):
        self.start(200, ctype, None, {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})
        with self.server.lock:
            rec["status"] = 200

    def d_stream_end(self, rec):
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            raise ClientGoneError()
        self.finish_rec(rec, 200)

    # ---- OpenAI chat with tools (the pass-through providers' upstream) ----
    def d_openai_tools(self, body, rec):
        user, tools, result, all_text = extract_openai(body)
        plan = Plan(user, tools, result, self.server.mock_name, all_text)
        self.d_status(plan)
        model = body.get("model")
        rid = "chatcmpl-" + uuid.uuid4().hex[:20]
        usage = {"prompt_tokens": plan.ptoks, "completion_tokens": plan.ctoks,
                 "total_tokens": plan.ptoks + plan.ctoks, "prompt_tokens_details": {"cached_tokens": plan.cached}}
        finish = {"tool": "tool_calls"}.get(plan.stop, plan.stop)
        call = {"id": "call_mock1", "type": "function",
                "function": {"name": plan.tool[0], "arguments": plan.tool_json}} if plan.tool else None
        if not body.get("stream"):
            msg = {"role": "assistant", "content": plan.text or None}
            if call:
                msg["tool_calls"] = [call]
            self.send_json(200, {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
                                 "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage})
            return self.finish_rec(rec, 200)
        self.d_stream_start("text/event-stream", rec)

        def ev(delta, fr=None, u=None):
            o = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                 "choices": [] if u else [{"index": 0, "delta": delta, "finish_reason": fr}]}
            if u:
                o["usage"] = u
            self.write_chunk(b"data: " + json.dumps(o).encode() + b"\n\n")
        ev({"role": "assistant", "content": ""})
        for i, p in enumerate(plan.pieces):
            ev({"content": p})
            if i == 0 and "GARBAGE" in plan.d:
                self.write_chunk(b"data: {\"choices\": [\n\n")
            if i == 0 and "TRUNCATE" in plan.d:
                return self.d_stream_end(rec)
        if call:
            a = plan.tool_json
            ev({"tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}]})
            ev({"tool_calls": [{"index": 0, "function": {"arguments": a[:5]}}]})
            ev({"tool_calls": [{"index": 0, "function": {"arguments": a[5:]}}]})
        ev({}, finish)
        so = body.get("stream_options") or {}
        if so.get("include_usage"):
            ev(None, None, usage)
        self.write_chunk(b"data: [DONE]\n\n")
        self.d_stream_end(rec)

    def d_azure(self, path, query, body, headers, rec):
        need(headers.get("api-key"), "Access denied due to invalid subscription key.", 401)
        need("api-version=" in query, "Missing required query parameter: api-version")
        self.d_openai_tools(body, rec)

    # ---- Anthropic Messages ----
    def d_anthropic(self, path, query, body, headers, rec):
        user, tools, result, all_text = extract_anthropic(body, headers)
        plan = Plan(user, tools, result, self.server.mock_name, all_text)
        self.d_status(plan)
        model = body["model"]
        mid = "msg_" + uuid.uuid4().hex[:20]
        stop = {"tool": "tool_use", "length": "max_tokens"}.get(plan.stop, "end_turn")
        usage = {"input_tokens": plan.ptoks, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": plan.cached, "output_tokens": plan.ctoks}
        tool_block = {"type": "tool_use", "id": "toolu_mock1", "name": plan.tool[0], "input": plan.tool[1]} if plan.tool else None
        if not body.get("stream"):
            content = [{"type": "text", "text": plan.text}] if plan.text else []
            if tool_block:
                content.append(tool_block)
            self.send_json(200, {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
                                 "stop_reason": stop, "stop_sequence": None, "usage": usage})
            return self.finish_rec(rec, 200)
        self.d_stream_start("text/event-stream", rec)

        def ev(name, obj):
            obj = dict(obj, type=name)
            self.write_chunk(("event: %s\ndata: %s\n\n" % (name, json.dumps(obj))).encode())
        ev("message_start", {"message": {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                                          "stop_reason": None, "stop_sequence": None,
                                          "usage": dict(usage, output_tokens=1)}})
        idx = 0
        if plan.pieces:
            ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            ev("ping", {})
            for i, p in enumerate(plan.pieces):
                ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}})
                if i == 0 and "GARBAGE" in plan.d:
                    self.write_chunk(b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": \n\n")
                if i == 0 and "TRUNCATE" in plan.d:
                    return self.d_stream_end(rec)
                if i == 0 and "RESET_AFTER" in plan.d:   # the connection dies mid-stream (RST)
                    self.abort_connection()
                    return
            ev("content_block_stop", {"index": 0})
            idx = 1
        if tool_block:
            a = plan.tool_json
            ev("content_block_start", {"index": idx, "content_block": {"type": "tool_use", "id": "toolu_mock1", "name": plan.tool[0], "input": {}}})
            ev("content_block_delta", {"index": idx, "delta": {"type": "input_json_delta", "partial_json": a[:7]}})
            ev("content_block_delta", {"index": idx, "delta": {"type": "input_json_delta", "partial_json": a[7:]}})
            ev("content_block_stop", {"index": idx})
        ev("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": plan.ctoks}})
        ev("message_stop", {})
        self.d_stream_end(rec)

    # ---- Gemini ----
    def d_gemini(self, path, query, body, headers, rec):
        user, tools, result, all_text = extract_gemini(body, headers)
        plan = Plan(user, tools, result, self.server.mock_name, all_text)
        self.d_status(plan)
        stream = path.endswith(":streamGenerateContent")
        if stream:
            need("alt=sse" in query, "mock gemini: stream without alt=sse")
        finish = {"length": "MAX_TOKENS"}.get(plan.stop, "STOP")
        if "SAFETY" in plan.d:
            finish = "SAFETY"
        usage = {"promptTokenCount": plan.ptoks, "candidatesTokenCount": plan.ctoks,
                 "totalTokenCount": plan.ptoks + plan.ctoks}
        if plan.cached:
            usage["cachedContentTokenCount"] = plan.cached
        fc = {"functionCall": {"name": plan.tool[0], "args": plan.tool[1]}} if plan.tool else None

        def resp(parts, fr=None, u=None):
            cand = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if fr:
                cand["finishReason"] = fr
            o = {"candidates": [cand], "modelVersion": "gemini-mock-001", "responseId": "resp-mock"}
            if u:
                o["usageMetadata"] = u
            return o
        if not stream:
            parts = ([{"text": plan.text}] if plan.text else []) + ([fc] if fc else [])
            self.send_json(200, resp(parts, finish, usage))
            return self.finish_rec(rec, 200)
        self.d_stream_start("text/event-stream", rec)
        pieces = plan.pieces
        for i, p in enumerate(pieces):
            last = i == len(pieces) - 1 and not fc
            self.write_chunk(b"data: " + json.dumps(resp([{"text": p}], finish if last else None,
                                                         usage if last else None)).encode() + b"\r\n\r\n")
            if i == 0 and "GARBAGE" in plan.d:
                self.write_chunk(b"data: {\"candidates\": [\r\n\r\n")
            if i == 0 and "TRUNCATE" in plan.d:
                return self.d_stream_end(rec)
        if fc:
            self.write_chunk(b"data: " + json.dumps(resp([fc], finish, usage)).encode() + b"\r\n\r\n")
        self.d_stream_end(rec)

    # ---- embeddings: Gemini batchEmbedContents, Ollama /api/embed ----
    def d_gemini_embed(self, path, query, body, headers, rec):
        need(headers.get("x-goog-api-key"), "API key not valid. Please pass a valid API key.")
        model = "models/" + path[len("/v1beta/models/"):-len(":batchEmbedContents")]
        out = []
        for r in body["requests"]:
            need(r["model"] == model, "requests[].model must be %s" % model)
            text = " ".join(p["text"] for p in r["content"]["parts"])
            self.d_status(Plan(text, [], None, "", text))
            out.append({"values": embedding(text, r.get("outputDimensionality", 8))})
        self.send_json(200, {"embeddings": out})
        self.finish_rec(rec, 200)

    def d_ollama_embed(self, path, query, body, headers, rec):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        for t in inputs:
            self.d_status(Plan(t, [], None, "", t))
        self.send_json(200, {"model": body["model"], "embeddings": [embedding(t, 8) for t in inputs],
                             "prompt_eval_count": sum(words(t) for t in inputs)})
        self.finish_rec(rec, 200)

    def d_bedrock_embed(self, path, query, body, headers, rec):
        why = sigv4_check("POST", self.path.split("?", 1)[0], query, headers, self.raw_body)
        need(why is None, why or "", 403)
        if "titan-embed" in path:
            need(isinstance(body.get("inputText"), str), "inputText is required")
            self.d_status(Plan(body["inputText"], [], None, "", body["inputText"]))
            out = {"embedding": embedding(body["inputText"], body.get("dimensions", 8)),
                   "inputTextTokenCount": words(body["inputText"])}
        else:
            need(isinstance(body.get("texts"), list) and body.get("input_type"), "texts and input_type are required")
            out = {"id": "emb-mock", "embeddings": [embedding(t, 8) for t in body["texts"]], "texts": body["texts"],
                   "response_type": "embeddings_floats"}
        self.send_json(200, out)
        self.finish_rec(rec, 200)

    # ---- Ollama ----
    def d_ollama(self, path, query, body, headers, rec):
        user, tools, result, all_text = extract_ollama(body)
        plan = Plan(user, tools, result, self.server.mock_name, all_text)
        self.d_status(plan)
        model = body.get("model")
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        tcs = [{"function": {"name": plan.tool[0], "arguments": plan.tool[1]}}] if plan.tool else None
        final = {"model": model, "created_at": now, "done": True, "done_reason": "length" if plan.stop == "length" else "stop",
                 "total_duration": 1000, "load_duration": 10, "prompt_eval_count": plan.ptoks,
                 "prompt_eval_duration": 100, "eval_count": plan.ctoks, "eval_duration": 500}
        if body.get("stream") is False:
            msg = {"role": "assistant", "content": plan.text}
            if tcs:
                msg["tool_calls"] = tcs
            self.send_json(200, dict(final, message=msg))
            return self.finish_rec(rec, 200)
        self.d_stream_start("application/x-ndjson", rec)
        for i, p in enumerate(plan.pieces):
            self.write_chunk(json.dumps({"model": model, "created_at": now, "message": {"role": "assistant", "content": p},
                                         "done": False}).encode() + b"\n")
            if i == 0 and "GARBAGE" in plan.d:
                self.write_chunk(b"{\"model\": \n")
            if i == 0 and "TRUNCATE" in plan.d:
                return self.d_stream_end(rec)
        if tcs:
            self.write_chunk(json.dumps({"model": model, "created_at": now,
                                         "message": {"role": "assistant", "content": "", "tool_calls": tcs},
                                         "done": False}).encode() + b"\n")
        self.write_chunk(json.dumps(dict(final, message={"role": "assistant", "content": ""})).encode() + b"\n")
        self.d_stream_end(rec)

    # ---- Bedrock Converse ----
    def d_bedrock(self, path, query, body, headers, rec):
        why = sigv4_check("POST", self.path.split("?", 1)[0], query, headers, self.raw_body)
        need(why is None, why or "", 403)
        user, tools, result, all_text = extract_bedrock(body)
        plan = Plan(user, tools, result, self.server.mock_name, all_text)
        self.d_status(plan)
        stop = {"tool": "tool_use", "length": "max_tokens"}.get(plan.stop, "end_turn")
        if "SAFETY" in plan.d:
            stop = "guardrail_intervened"
        usage = {"inputTokens": plan.ptoks, "outputTokens": plan.ctoks, "totalTokens": plan.ptoks + plan.ctoks}
        if plan.cached:
            usage["cacheReadInputTokens"] = plan.cached
        tu = {"toolUseId": "tooluse_mock1", "name": plan.tool[0], "input": plan.tool[1]} if plan.tool else None
        if path.endswith("/converse"):
            content = ([{"text": plan.text}] if plan.text else []) + ([{"toolUse": tu}] if tu else [])
            self.send_json(200, {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                                 "usage": usage, "metrics": {"latencyMs": 12}})
            return self.finish_rec(rec, 200)
        self.d_stream_start("application/vnd.amazon.eventstream", rec)
        w = self.write_chunk
        w(es_event("messageStart", {"role": "assistant"}))
        idx = 0
        if plan.pieces:
            for i, p in enumerate(plan.pieces):
                w(es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}))
                if i == 0 and "GARBAGE" in plan.d:
                    f = bytearray(es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
                    f[-1] ^= 0xff  # a broken message CRC
                    w(bytes(f))
                if i == 0 and "TRUNCATE" in plan.d:
                    return self.d_stream_end(rec)
                if i == 0 and "EXCEPTION" in plan.d:
                    w(es_exception("throttlingException", "Too many requests, please wait before trying again."))
                    return self.d_stream_end(rec)
            w(es_event("contentBlockStop", {"contentBlockIndex": 0}))
            idx = 1
        if tu:
            a = json.dumps(tu["input"])
            w(es_event("contentBlockStart", {"contentBlockIndex": idx, "start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}}}))
            w(es_event("contentBlockDelta", {"contentBlockIndex": idx, "delta": {"toolUse": {"input": a[:6]}}}))
            w(es_event("contentBlockDelta", {"contentBlockIndex": idx, "delta": {"toolUse": {"input": a[6:]}}}))
            w(es_event("contentBlockStop", {"contentBlockIndex": idx}))
        w(es_event("messageStop", {"stopReason": stop}))
        w(es_event("metadata", {"usage": usage, "metrics": {"latencyMs": 12}}))
        self.d_stream_end(rec)
