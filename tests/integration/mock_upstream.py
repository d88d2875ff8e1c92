#!/usr/bin/env python3
"""A fake OpenAI-compatible provider for the gateway's integration tests.

Python 3 standard library only. HTTP/1.1 with keep-alive; every response has a
Content-Length or is chunked.

    python3 mock_upstream.py --port 0 --name mock

prints "PORT <n>" as its first stdout line, then serves:

    POST /v1/chat/completions   (stream: true -> SSE, chunked)
    POST /v1/completions        (stream: true -> SSE, chunked)
    POST /v1/embeddings         (deterministic vectors, float or base64)
    GET  /v1/models
    GET  /_mock/requests        last 100 requests: method, path, headers, body,
                                status, completed, client_gone
    POST /_mock/reset           clears that list, the counter and forced directives
    GET  /_mock/count           {"total": API requests received since the last reset}
    POST /_mock/force           {"STATUS": "503", ...}: directives applied to every
                                request from now on (the router's failure modes);
                                {} clears them
    POST /_mock/replies         ["text", ...]: the next chat answers' content, in
                                order (then the usual reply again)

A chat request for an upstream model named "*-judge" is answered as a judge:
the answer ("Answer A" / "Answer B" / "tie") that contains "mock[good]" wins.

Behaviour is driven by directives (space-separated tokens) in the LAST user
message text (chat), the prompt (completions) or the input (embeddings):

    MOCK_STATUS=503      answer that status with an OpenAI error body
    MOCK_DELAY_MS=200    sleep before sending the headers
    MOCK_CHUNKS=20       content chunks when streaming (default 5)
    MOCK_GAP_MS=50       sleep between chunks
    MOCK_HANG            never answer; hold the socket until the client closes
    MOCK_RESET_AFTER=3   send 3 chunks, then reset the connection (RST)
    MOCK_RETRY_AFTER=2   with MOCK_STATUS: add "Retry-After: 2"
    MOCK_STALL           send the status line and headers, then nothing
    MOCK_SLOW_PCT=5      apply MOCK_DELAY_MS to only this percent of requests
    MOCK_CONTEXT         answer 400 context_length_exceeded

Every response carries "x-mock-name: <--name>". A request record gets
"client_gone": true when the mock notices that the client closed the
connection (a failed write, or EOF seen while waiting) before it finished.
"""
import argparse
import base64
import collections
import hashlib
import json
import random
import select
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mock_dialects

MAX_RECORDS = 100
HANG_MAX_S = 600  # a hung request gives up after this long even if nobody closes


class ClientGone(Exception):
    pass


def parse_directives(text):
    out = {}
    for tok in (text or "").split():
        if tok.startswith("MOCK_"):
            k, _, v = tok.partition("=")
            out[k[5:]] = v
    return out


def _content_text(c):
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        parts = []
        for p in c:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif isinstance(p, str):
                parts.append(p)
        return " ".join(parts)
    return ""


def last_user_text(body):
    """The text that carries the directives: last user message, prompt or input."""
    if not isinstance(body, dict):
        return ""
    msgs = body.get("messages")
    if isinstance(msgs, list):
        for m in reversed(msgs):
            if isinstance(m, dict) and m.get("role") == "user":
                return _content_text(m.get("content"))
        return ""
    for field in ("prompt", "input"):
        v = body.get(field)
        if isinstance(v, str):
            return v
        if isinstance(v, list):
            return " ".join(x for x in v if isinstance(x, str))
    return ""


def count_tokens(text):
    return max(1, len((text or "").split()))


def prompt_tokens(body):
    if not isinstance(body, dict):
        return 1
    msgs = body.get("messages")
    if isinstance(msgs, list):
        return max(1, sum(count_tokens(_content_text(m.get("content")))
                          for m in msgs if isinstance(m, dict)))
    return count_tokens(last_user_text(body))


def embedding_vector(text, dims=8):
    """Deterministic: the same text always gives the same vector (values in [-1, 1])."""
    vals = []
    counter = 0
    while len(vals) < dims:
        h = hashlib.sha256(("%d:%s" % (counter, text)).encode()).digest()
        for b in h:
            vals.append(round(b / 127.5 - 1.0, 6))
        counter += 1
    return vals[:dims]


def int_directive(d, name, default=None):
    v = d.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        return default


class Handler(BaseHTTPRequestHandler, mock_dialects.Dialects):
    protocol_version = "HTTP/1.1"
    server_version = "mock-upstream/1.0"
    # headers and body go out in separate writes: without this, Nagle waits for
    # the client's delayed ACK (40 ms) and latency numbers measure the mock
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("[%s] %s\n" % (self.server.mock_name, fmt % args))

    # ---- plumbing -------------------------------------------------------
    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def start(self, status, ctype=None, length=None, extra=None):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("x-mock-name", self.server.mock_name)
        self.send_header("x-request-id", "mockreq-" + uuid.uuid4().hex[:16])
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def send_json(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.start(status, "application/json", len(data), extra)
        self.wfile.write(data)
        self.wfile.flush()

    def error(self, status, message, etype=None, code=None):
        if etype is None:
            etype = "invalid_request_error" if status < 500 else "server_error"
        self.send_json(status, {"error": {"message": message, "type": etype,
                                          "param": None, "code": code}})

    def peer_closed(self):
        """True if the client has closed its side (EOF or error pending)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            d = self.connection.recv(1, socket.MSG_PEEK)
            return d == b""
        except (OSError, ValueError):
            return True

    def sleep_watching(self, seconds):
        """Sleeps; returns True early if the client went away meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                r, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            except (OSError, ValueError):
                return True
            if r:
                if self.peer_closed():
                    return True
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def abort_connection(self):
        """Closes the socket abruptly (RST)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.connection.close()
        except OSError:
            pass

    def write_chunk(self, data):
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError:
            raise ClientGone()

    # ---- request handling ------------------------------------------------
    def dispatch(self, method):
        path, _, query = self.path.partition("?")
        raw = self.read_body()
        self.raw_body = raw
        body = None
        body_error = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as e:
                body_error = str(e)
        rec = None
        if not path.startswith("/_mock/"):
            rec = {
                "method": method,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body if body_error is None else raw.decode("utf-8", "replace"),
                "ts": time.time(),
                "status": None,
                "completed": False,
                "client_gone": False,
            }
            with self.server.lock:
                self.server.records.append(rec)
                self.server.count += 1
        try:
            if not self.dialect_route(method, path, query, body, body_error, rec):
                self.route(method, path, body, body_error, rec)
        except (ClientGone, mock_dialects.ClientGoneError):
            self.close_connection = True
            if rec is not None:
                with self.server.lock:
                    rec["client_gone"] = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            if rec is not None:
                with self.server.lock:
                    rec["client_gone"] = True

    def finish_rec(self, rec, status):
        if rec is not None:
            with self.server.lock:
                rec["status"] = status
                rec["completed"] = True

    def route(self, method, path, body, body_error, rec):
        if path == "/_mock/requests":
            if method != "GET":
                return self.error(405, "use GET")
            with self.server.lock:
                snap = json.loads(json.dumps(list(self.server.records)))
            return self.send_json(200, snap)
        if path == "/_mock/reset":
            if method != "POST":
                return self.error(405, "use POST")
            with self.server.lock:
                self.server.records.clear()
                self.server.count = 0
                self.server.force = {}
                self.server.replies.clear()
            return self.send_json(200, {"ok": True})
        if path == "/_mock/count":
            with self.server.lock:
                return self.send_json(200, {"total": self.server.count})
        if path == "/_mock/force":
            if method != "POST" or not isinstance(body, dict):
                return self.error(400, "POST a JSON object of directives")
            with self.server.lock:
                self.server.force = {str(k).upper(): str(v) for k, v in body.items()}
            return self.send_json(200, {"ok": True})
        if path == "/_mock/replies":
            if method != "POST" or not isinstance(body, list):
                return self.error(400, "POST a JSON list of answer texts")
            with self.server.lock:
                self.server.replies.extend(str(x) for x in body)
            return self.send_json(200, {"ok": True})
        if path == "/_mock/health":
            return self.send_json(200, {"ok": True, "name": self.server.mock_name})

        routes = {
            "/v1/chat/completions": ("POST", self.chat),
            "/v1/completions": ("POST", self.completions),
            "/v1/embeddings": ("POST", self.embeddings),
            "/v1/models": ("GET", self.models),
        }
        if path not in routes:
            self.error(404, "mock: no route %s %s" % (method, path), code="not_found")
            return self.finish_rec(rec, 404)
        want, fn = routes[path]
        if method != want:
            self.error(405, "mock: method %s not allowed on %s" % (method, path))
            return self.finish_rec(rec, 405)
        if method == "POST":
            if body_error is not None:
                self.error(400, "mock: invalid JSON body: %s" % body_error)
                return self.finish_rec(rec, 400)
            if not isinstance(body, dict):
                self.error(400, "mock: body must be a JSON object")
                return self.finish_rec(rec, 400)
        d = parse_directives(last_user_text(body)) if isinstance(body, dict) else {}
        with self.server.lock:
            d.update(self.server.force)

        if "HANG" in d:
            gone = self.sleep_watching(HANG_MAX_S)
            self.close_connection = True
            with self.server.lock:
                rec["client_gone"] = gone
            return
        delay = int_directive(d, "DELAY_MS", 0)
        slow_pct = int_directive(d, "SLOW_PCT")
        if slow_pct is not None and random.random() * 100 >= slow_pct:
            delay = 0
        if delay > 0:
            if self.sleep_watching(delay / 1000.0):
                raise ClientGone()
        if "CONTEXT" in d:
            self.error(400, "This model's maximum context length is 8192 tokens. However, your messages "
                       "resulted in 9000 tokens.", code="context_length_exceeded")
            return self.finish_rec(rec, 400)
        status = int_directive(d, "STATUS", 200)
        if status != 200:
            code = {400: "invalid_request", 401: "invalid_api_key", 404: "model_not_found",
                    429: "rate_limit_exceeded"}.get(status, "mock_status_%d" % status)
            etype = {401: "authentication_error", 429: "rate_limit_error"}.get(status)
            ra = d.get("RETRY_AFTER")
            self.send_json(status, {"error": {"message": "mock upstream answered %d as asked" % status,
                                              "type": etype or ("invalid_request_error" if status < 500 else "server_error"),
                                              "param": None, "code": code}},
                           {"Retry-After": ra} if ra else None)
            return self.finish_rec(rec, status)
        if "STALL" in d:
            stream = body.get("stream") is True
            self.start(200, "text/event-stream" if stream else "application/json", None if stream else 100,
                       {"Transfer-Encoding": "chunked"} if stream else None)
            with self.server.lock:
                rec["status"] = 200
            gone = self.sleep_watching(HANG_MAX_S)
            self.close_connection = True
            with self.server.lock:
                rec["client_gone"] = gone
            return
        fn(body or {}, d, rec)

    # ---- OpenAI routes ---------------------------------------------------
    def models(self, body, d, rec):
        now = int(time.time())
        data = [{"id": m, "object": "model", "created": now, "owned_by": "mock"}
                for m in ("upstream-model-name", "other-upstream", "upstream-embed")]
        self.send_json(200, {"object": "list", "data": data})
        self.finish_rec(rec, 200)

    def reply_text(self, body):
        text = last_user_text(body)
        return ("mock[%s] reply to: %s" % (self.server.mock_name, text))[:600]

    def judge_text(self, body):
        # the answer holding "mock[good]" wins; worded loosely, as real judges are
        text = last_user_text(body)
        a_at, b_at = text.find("Answer A"), text.find("Answer B")
        if a_at < 0 or b_at < 0:
            return "I cannot tell."
        a, b = (text[a_at:b_at], text[b_at:]) if a_at < b_at else (text[a_at:], text[b_at:a_at])
        ga, gb = "mock[good]" in a, "mock[good]" in b
        if ga == gb:
            return "Both are equally good: tie."
        return "After comparing both, the better one is **Answer %s**." % ("A" if ga else "B")

    def chat(self, body, d, rec):
        msgs = body.get("messages") if isinstance(body.get("messages"), list) else []
        # upstream models named "*-dialect" get the full planner (tools, cached tokens, truncation)
        if body.get("tools") or any(isinstance(m, dict) and m.get("role") == "tool" for m in msgs) \
                or str(body.get("model", "")).endswith("-dialect"):
            try:
                return self.d_openai_tools(body, rec)
            except mock_dialects.Bad as e:
                return self.d_error("openai", e.status, e.message, rec)
        self.generate(body, d, rec, kind="chat")

    def completions(self, body, d, rec):
        self.generate(body, d, rec, kind="text")

    def generate(self, body, d, rec, kind):
        model = body.get("model") if isinstance(body.get("model"), str) else "unknown"
        created = int(time.time())
        if kind == "chat":
            rid, obj = "chatcmpl-" + uuid.uuid4().hex[:24], "chat.completion"
        else:
            rid, obj = "cmpl-" + uuid.uuid4().hex[:24], "text_completion"
        ptoks = prompt_tokens(body)
        reset_after = int_directive(d, "RESET_AFTER")

        if body.get("stream") is True:
            return self.stream(body, d, rec, kind, rid, model, created, ptoks, reset_after)

        with self.server.lock:
            queued = self.server.replies.popleft() if self.server.replies else None
        if queued is not None:
            content = queued
        elif model.endswith("-judge"):
            content = self.judge_text(body)
        else:
            content = self.reply_text(body)
        ctoks = count_tokens(content)
        if kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": content,
                                              "refusal": None},
                      "logprobs": None, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": "stop"}
        resp = {"id": rid, "object": obj, "created": created, "model": model,
                "choices": [choice],
                "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks,
                          "total_tokens": ptoks + ctoks},
                "system_fingerprint": "fp_mock"}
        data = json.dumps(resp).encode()
        if reset_after is not None:
            # headers and part of the body, then RST
            self.start(200, "application/json", len(data))
            try:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
            except OSError:
                pass
            self.abort_connection()
            with self.server.lock:
                rec["status"] = 200
                rec["reset"] = True
            return
        self.start(200, "application/json", len(data))
        self.wfile.write(data)
        self.wfile.flush()
        self.finish_rec(rec, 200)

    def stream(self, body, d, rec, kind, rid, model, created, ptoks, reset_after):
        n = int_directive(d, "CHUNKS", 5)
        gap = int_directive(d, "GAP_MS", 0) / 1000.0
        with self.server.lock:   # a queued answer is streamed in n pieces
            queued = self.server.replies.popleft() if self.server.replies else None
        so = body.get("stream_options")
        include_usage = isinstance(so, dict) and so.get("include_usage") is True
        self.start(200, "text/event-stream", None,
                   {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})
        with self.server.lock:
            rec["status"] = 200

        def event(obj):
            self.write_chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

        def chunk(delta_or_text, finish=None):
            if kind == "chat":
                ch = {"index": 0, "delta": delta_or_text, "logprobs": None, "finish_reason": finish}
                return {"id": rid, "object": "chat.completion.chunk", "created": created,
                        "model": model, "system_fingerprint": "fp_mock", "choices": [ch]}
            ch = {"index": 0, "text": delta_or_text, "logprobs": None, "finish_reason": finish}
            return {"id": rid, "object": "text_completion", "created": created,
                    "model": model, "choices": [ch]}

        for i in range(n):
            if i > 0 and gap > 0 and self.sleep_watching(gap):
                raise ClientGone()
            if reset_after is not None and i >= reset_after:
                self.abort_connection()
                with self.server.lock:
                    rec["status"] = 200
                    rec["reset"] = True
                return
            if self.peer_closed():
                raise ClientGone()
            piece = "chunk-%d " % i if queued is None else queued[len(queued) * i // n:len(queued) * (i + 1) // n]
            if kind == "chat":
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                event(chunk(delta))
            else:
                event(chunk(piece))
        if reset_after is not None and n <= reset_after:
            self.abort_connection()
            with self.server.lock:
                rec["status"] = 200
                rec["reset"] = True
            return
        event(chunk({} if kind == "chat" else "", "stop"))
        if include_usage:
            u = {"id": rid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                 "created": created, "model": model, "choices": [],
                 "usage": {"prompt_tokens": ptoks, "completion_tokens": n,
                           "total_tokens": ptoks + n}}
            event(u)
        self.write_chunk(b"data: [DONE]\n\n")
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            raise ClientGone()
        self.finish_rec(rec, 200)

    def embeddings(self, body, d, rec):
        inp = body.get("input")
        if isinstance(inp, str):
            texts = [inp]
        elif isinstance(inp, list) and all(isinstance(x, str) for x in inp):
            texts = inp
        elif isinstance(inp, list):  # token arrays
            texts = [json.dumps(x) for x in inp]
        else:
            self.error(400, "mock: input must be a string or a list")
            return self.finish_rec(rec, 400)
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 8
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, t in enumerate(texts):
            v = embedding_vector(t, dims)
            if b64:
                v = base64.b64encode(struct.pack("<%df" % len(v), *v)).decode()
            data.append({"object": "embedding", "index": i, "embedding": v})
        toks = sum(count_tokens(t) for t in texts)
        self.send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": toks, "total_tokens": toks}})
        self.finish_rec(rec, 200)


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="mock")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    srv = MockServer((a.host, a.port), Handler)
    srv.mock_name = a.name
    srv.verbose = a.verbose
    srv.lock = threading.Lock()
    srv.records = collections.deque(maxlen=MAX_RECORDS)
    srv.count = 0
    srv.force = {}
    srv.replies = collections.deque()
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
