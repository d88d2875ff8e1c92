"""Integration-test harness for the gateway (Python 3 standard library only).

- processes: Mock (mock_upstream.py) and Gateway ($GW_BIN_DIR/gateway --config),
  each in its own process group, all killed at exit (atexit + signal handlers);
- a raw-socket HTTP/1.1 client (Conn) that reads responses incrementally
  (chunked or Content-Length), with an SSE collector;
- a minimal runner: @test registers a function, run() executes them, prints
  progress to stderr and, as the only stdout line, "N passed, N failed".

Every wait is bounded. No assertion is ever made about how long something took.
"""
import atexit
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
MOCK_PY = os.path.join(HERE, "mock_upstream.py")

# Sanitizer builds are slower: stretch the bounded waits.
SLOW = 3.0 if os.environ.get("GW_ASAN") else 1.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def bin_dir():
    return os.environ.get("GW_BIN_DIR") or os.path.join(REPO, "bin")


def gateway_bin():
    return os.path.join(bin_dir(), "gateway")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_port_pair():
    """A port P with P+1 free too (the control plane binds both for nng).

    Picked from a range below the kernel's ephemeral ports, so the many
    client connections a busy machine has open (or in TIME_WAIT) never sit
    on P+1; each candidate pair is probed with a real bind."""
    import random
    for _ in range(500):
        p = random.randrange(20000, 32000, 2)
        socks = []
        try:
            for port in (p, p + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port pair")


def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value; returns it, or raises after timeout."""
    deadline = time.monotonic() + timeout * SLOW
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout * SLOW, what, (" (last error: %r)" % last_exc) if last_exc else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------
# process bookkeeping
# --------------------------------------------------------------------------
_procs = []
_procs_lock = threading.Lock()
_tmpdirs = []


def make_tmpdir(prefix):
    """A temp dir removed at exit (kept if GW_KEEP_TMP=1, for debugging)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def _remove_tmpdirs():
    if os.environ.get("GW_KEEP_TMP") == "1":
        if _tmpdirs:
            log("kept temp dirs: %s" % " ".join(_tmpdirs))
        return
    while _tmpdirs:
        shutil.rmtree(_tmpdirs.pop(), ignore_errors=True)


def _register(p):
    with _procs_lock:
        _procs.append(p)


def _kill_group(p):
    # Each child is started with start_new_session=True, so its pid is its
    # process group id; killing the group also gets forked workers.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except Exception:  # noqa: BLE001
        pass


def kill_all():
    with _procs_lock:
        procs = list(_procs)
        _procs.clear()
    for p in procs:
        _kill_group(p)


atexit.register(_remove_tmpdirs)  # atexit runs in reverse order: processes die first
atexit.register(kill_all)


def _on_signal(signum, frame):
    kill_all()
    os._exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_s, _on_signal)
    except (ValueError, OSError):
        pass


def _read_line_bounded(fd, timeout):
    deadline = time.monotonic() + timeout
    out = b""
    while not out.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            break
        b = os.read(fd, 1)
        if not b:
            break
        out += b
    return out.decode(errors="replace").strip()


def proc_children(pid):
    """Live (non-zombie) children of pid, from /proc."""
    kids = []
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            cand = [int(x) for x in f.read().split()]
    except OSError:
        cand = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    for c in cand:
        st = proc_stat(c)
        if st and st[1] == pid and st[0] != "Z":
            kids.append(c)
    return sorted(kids)


def proc_stat(pid):
    """(state, ppid) of pid, or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def pid_alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


# --------------------------------------------------------------------------
# mock upstream
# --------------------------------------------------------------------------
class Mock:
    def __init__(self, name="mock", port=0):
        self.name = name
        self.dir = make_tmpdir("gwtest-mock-")
        self.err_path = os.path.join(self.dir, "stderr")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, MOCK_PY, "--port", str(port), "--name", name],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
            start_new_session=True)
        _register(self.proc)
        line = _read_line_bounded(self.proc.stdout.fileno(), 10 * SLOW)
        m = re.match(r"PORT (\d+)$", line)
        if not m:
            self.stop()
            raise RuntimeError("mock %s did not print its port (got %r): %s" % (
                name, line, self.stderr()[-2000:]))
        self.port = int(m.group(1))
        self.base_url = "http://127.0.0.1:%d/v1" % self.port

    def stderr(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def requests(self):
        r = http_request(self.port, "GET", "/_mock/requests")
        if r.status != 200:
            raise RuntimeError("mock introspection failed: %s" % r.status)
        return r.json()

    def reset(self):
        http_request(self.port, "POST", "/_mock/reset", body=b"")

    def find(self, tag):
        """Recorded requests whose body mentions tag."""
        return [r for r in self.requests() if tag in json.dumps(r.get("body"))]

    def wait_find(self, tag, timeout=5, pred=None):
        def f():
            rs = self.find(tag)
            if pred:
                rs = [r for r in rs if pred(r)]
            return rs
        return wait_for(f, timeout, what="mock %s to record a request tagged %s" % (self.name, tag))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        _kill_group(self.proc)
        with _procs_lock:
            if self.proc in _procs:
                _procs.remove(self.proc)
        try:
            self._err.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# YAML (a small block-style emitter, enough for the gateway config)
# --------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z0-9_./@$][A-Za-z0-9_./:@$+-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _yscalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _RESERVED and not re.match(r"^[-+.0-9][0-9._eE+-]*$", s):
        return s
    return json.dumps(s)


def _is_scalar(v):
    return not isinstance(v, (dict, list, tuple))


def _ydump(obj, ind):
    pad = " " * ind
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if _is_scalar(v):
                lines.append("%s%s: %s" % (pad, k, _yscalar(v)))
            elif isinstance(v, (list, tuple)) and all(_is_scalar(x) for x in v):
                lines.append("%s%s: [%s]" % (pad, k, ", ".join(_yscalar(x) for x in v)))
            elif isinstance(v, dict) and not v:
                lines.append("%s%s: {}" % (pad, k))
            else:
                lines.append("%s%s:" % (pad, k))
                lines.extend(_ydump(v, ind + 2))
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            if _is_scalar(item):
                lines.append("%s- %s" % (pad, _yscalar(item)))
            else:
                sub = _ydump(item, ind + 2)
                if not sub:
                    lines.append("%s- {}" % pad)
                    continue
                sub[0] = pad + "- " + sub[0][ind + 2:]
                lines.extend(sub)
    else:
        lines.append(pad + _yscalar(obj))
    return lines


def to_yaml(obj):
    return "\n".join(_ydump(obj, 0)) + "\n"


def write_file_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# gateway process
# --------------------------------------------------------------------------
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|"
                          r"AddressSanitizer:DEADLYSIGNAL")


class GatewayError(Exception):
    pass


class Gateway:
    """Starts $GW_BIN_DIR/gateway --config <tmp>/gateway.yaml and waits for /readyz.
    netns: run it inside that network namespace (then host is the address it
    listens on, for the readiness check)."""

    def __init__(self, config, port=None, ready_timeout=10, env=None, netns=None, host="127.0.0.1"):
        self.host = host
        self.dir = make_tmpdir("gwtest-gw-")
        self.config_path = os.path.join(self.dir, "gateway.yaml")
        if isinstance(config, dict):
            m = re.match(r".*:(\d+)$", str(config.get("listen", "")))
            self.port = int(m.group(1)) if m else port
        else:
            self.port = port
        self.write_config(config)
        self.out_path = os.path.join(self.dir, "stdout.log")
        self.err_path = os.path.join(self.dir, "stderr.log")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        exe = gateway_bin()
        if not os.access(exe, os.X_OK):
            raise GatewayError("gateway binary not found at %s (build it with make)" % exe)
        penv = dict(os.environ)
        if env:
            penv.update(env)
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(prefix + [exe, "--config", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     cwd=self.dir, env=penv, start_new_session=True)
        _register(self.proc)
        self.pid = self.proc.pid
        self._err_seen = 0
        try:
            self.wait_ready(ready_timeout)
        except Exception:
            self.stop(timeout=3)
            raise

    # -- config / files
    def write_config(self, config):
        text = config if isinstance(config, str) else to_yaml(config)
        write_file_atomic(self.config_path, text)

    def stdout_text(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def stderr_text(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def new_stderr(self):
        """stderr written since the last call."""
        t = self.stderr_text()
        new = t[self._err_seen:]
        self._err_seen = len(t)
        return new

    def sanitizer_reports(self):
        return [l for l in self.stderr_text().splitlines() if SANITIZER_RE.search(l)]

    def access_log(self):
        """The JSON lines of stdout (non-JSON lines are returned as {'_raw': line})."""
        out = []
        for line in self.stdout_text().splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"_raw": line})
        return out

    # -- process
    def alive(self):
        return self.proc.poll() is None

    def children(self):
        return proc_children(self.pid)

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError("gateway exited with code %s during start-up; stderr:\n%s" % (
                    self.proc.returncode, self.stderr_text()[-3000:]))
            try:
                r = http_request(self.port, "GET", "/readyz", timeout=1, host=self.host)
                if r.status == 200:
                    return
                last = "status %d" % r.status
            except Exception as e:  # noqa: BLE001
                last = repr(e)
            time.sleep(0.05)
        raise GatewayError("gateway not ready after %.0fs (last: %s); stderr:\n%s" % (
            timeout * SLOW, last, self.stderr_text()[-3000:]))

    def stop(self, timeout=10):
        """SIGTERM, bounded wait, then SIGKILL the whole group. Returns the exit code."""
        rc = self.proc.poll()
        if rc is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                rc = None
        _kill_group(self.proc)  # leftovers (workers) and the master if it did not exit
        with _procs_lock:
            if self.proc in _procs:
                _procs.remove(self.proc)
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass
        return rc

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port


def check_config(path, env=None, timeout=10):
    """Runs gateway --check-config path; returns (rc, stdout, stderr)."""
    penv = dict(os.environ) if env is None else env
    p = subprocess.run([gateway_bin(), "--check-config", path], env=penv,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout * SLOW)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


# --------------------------------------------------------------------------
# HTTP client over raw sockets
# --------------------------------------------------------------------------
class ConnectionClosed(Exception):
    """The peer closed the connection (EOF) where data was expected."""


class Response:
    def __init__(self):
        self.status = None
        self.reason = ""
        self.version = ""
        self.header_list = []
        self.headers = {}
        self.body = b""
        self.complete = False
        self.events = None  # SSE events when collected: [{"data": str, "recv": int}]

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        b = self.body[:600]
        return "<HTTP %s %s headers=%s body=%r>" % (self.status, self.reason,
                                                    dict(self.headers), b)


def build_request(method, path, body=None, headers=None, key=None, host="127.0.0.1"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    hl = [("Host", host)]
    if key:
        hl.append(("Authorization", "Bearer " + key))
    if body is not None:
        hl.append(("Content-Type", "application/json"))
        hl.append(("Content-Length", str(len(body))))
    if isinstance(headers, dict):
        headers = list(headers.items())
    for k, v in headers or []:
        hl.append((k, v))
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in hl) + "\r\n"
    return head.encode("latin-1") + (body or b"")


class SSECollector:
    """Splits a text/event-stream into events; remembers at which recv() each completed."""

    def __init__(self):
        self.buf = ""
        self.events = []

    def feed(self, piece, recv_index):
        self.buf += piece.decode("utf-8", "replace")
        self.buf = self.buf.replace("\r\n", "\n")
        while "\n\n" in self.buf:
            block, self.buf = self.buf.split("\n\n", 1)
            datas = [l[5:].lstrip(" ") if l.startswith("data:") else None for l in block.split("\n")]
            datas = [d for d in datas if d is not None]
            if datas:
                self.events.append({"data": "\n".join(datas), "recv": recv_index})

    def data(self):
        return [e["data"] for e in self.events]

    def json_events(self):
        out = []
        for e in self.events:
            if e["data"] == "[DONE]":
                continue
            try:
                out.append(json.loads(e["data"]))
            except ValueError:
                out.append({"_raw": e["data"]})
        return out


class Conn:
    """One HTTP/1.1 connection. Supports keep-alive, pipelining and incremental bodies."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.port = port
        self.timeout = timeout * SLOW
        self.sock = socket.create_connection((host, port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.recv_count = 0
        self.server_wants_close = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_request(self, method, path, body=None, headers=None, key=None):
        self.sock.sendall(build_request(method, path, body, headers, key))

    def request(self, method, path, body=None, headers=None, key=None, **kw):
        self.send_request(method, path, body, headers, key)
        return self.read_response(method=method, **kw)

    def dropped(self):
        """True if the server has already closed this (idle) connection."""
        if self.buf:
            return False
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return False
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _recv(self):
        d = self.sock.recv(65536)
        self.recv_count += 1
        if not d:
            raise ConnectionClosed("connection closed by peer")
        self.buf += d

    def _line(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line.rstrip(b"\r\n")
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._recv()

    def _exact(self, n):
        while len(self.buf) < n:
            self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="POST", on_body=None, sse=False):
        """Reads one response. on_body(piece, recv_index, resp) is called for every body
        piece as it arrives; if it returns True, reading stops (resp.complete stays False).
        With sse=True the events are collected into resp.events."""
        resp = Response()
        collector = SSECollector() if sse else None
        while True:
            line = self._line()
            if not line:
                continue  # tolerate stray CRLF between responses
            parts = line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError("bad status line %r" % line)
            resp.version, resp.status = parts[0], int(parts[1])
            resp.reason = parts[2] if len(parts) > 2 else ""
            hl = []
            while True:
                h = self._line()
                if not h:
                    break
                k, _, v = h.decode("latin-1").partition(":")
                hl.append((k.strip(), v.strip()))
            if 100 <= resp.status < 200 and resp.status != 101:
                continue
            resp.header_list = hl
            resp.headers = {k.lower(): v for k, v in hl}
            break
        conn_hdr = resp.headers.get("connection", "").lower()
        if "close" in conn_hdr or resp.version == "HTTP/1.0" and "keep-alive" not in conn_hdr:
            self.server_wants_close = True

        def deliver(piece):
            resp.body += piece
            if collector is not None:
                collector.feed(piece, self.recv_count)
                resp.events = collector.events
            if on_body is not None:
                return bool(on_body(piece, self.recv_count, resp))
            return False

        if collector is not None:
            resp.events = collector.events
        te = resp.headers.get("transfer-encoding", "").lower()
        if method == "HEAD" or resp.status in (204, 304):
            pass
        elif "chunked" in te:
            while True:
                size_line = self._line()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._line():  # trailers
                        pass
                    break
                piece = self._exact(size)
                self._exact(2)
                if deliver(piece):
                    return resp
        elif "content-length" in resp.headers:
            n = int(resp.headers["content-length"])
            while n > 0:
                if not self.buf:
                    self._recv()
                piece, self.buf = self.buf[:n], self.buf[n:]
                n -= len(piece)
                if deliver(piece):
                    return resp
        else:  # delimited by close
            self.server_wants_close = True
            while True:
                if self.buf:
                    piece, self.buf = self.buf, b""
                    if deliver(piece):
                        return resp
                try:
                    self._recv()
                except ConnectionClosed:
                    break
        resp.complete = True
        return resp


def http_request(port, method, path, body=None, key=None, headers=None, timeout=10, sse=False, host="127.0.0.1"):
    """One request on a fresh connection (closed afterwards)."""
    c = Conn(port, host=host, timeout=timeout)
    try:
        return c.request(method, path, body, headers, key, sse=sse)
    finally:
        c.close()


# --------------------------------------------------------------------------
# assertions
# --------------------------------------------------------------------------
def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_status(resp, *statuses):
    if resp.status not in statuses:
        raise AssertionError("expected HTTP %s, got %r" % ("/".join(map(str, statuses)), resp))


def expect_openai_error(resp):
    """The OpenAI error shape: {"error": {"message", "type", "code", "param"}}."""
    try:
        j = resp.json()
    except Exception:
        raise AssertionError("error body is not JSON: %r" % resp)
    err = j.get("error") if isinstance(j, dict) else None
    check(isinstance(err, dict), "no error object in %r" % resp)
    for f in ("message", "type", "code", "param"):
        check(f in err, "error object lacks %r: %r" % (f, resp))
    check(isinstance(err["message"], str) and err["message"], "empty error message: %r" % resp)
    check(isinstance(err["type"], str) and err["type"], "empty error type: %r" % resp)
    return err


# --------------------------------------------------------------------------
# runner
# --------------------------------------------------------------------------
_TESTS = []


def test(fn):
    _TESTS.append(fn)
    return fn


_state = {"passed": 0, "failed": 0, "done": False, "failures": []}
_state_lock = threading.Lock()


def _finish(extra_failed=0):
    with _state_lock:
        if _state["done"]:
            return
        _state["done"] = True
        p, f = _state["passed"], _state["failed"] + extra_failed
    if _state["failures"]:
        log("\nfailed tests:")
        for name, why in _state["failures"]:
            log("  %s: %s" % (name, why))
    sys.stdout.write("%d passed, %d failed\n" % (p, f))
    sys.stdout.flush()


def run(after_each=None, teardown=None, suite_timeout=None, argv=None):
    """Runs the registered tests (or those whose name contains one of argv's words).
    after_each(name) may raise to fail the test it follows. Returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    tests = [t for t in _TESTS if not argv or any(a in t.__name__ for a in argv)]
    remaining = [len(tests)]

    def on_timeout():
        log("SUITE TIMEOUT after %ss: killing everything" % suite_timeout)
        kill_all()
        _finish(extra_failed=remaining[0])
        os._exit(1)

    timer = None
    if suite_timeout:
        timer = threading.Timer(suite_timeout * SLOW, on_timeout)
        timer.daemon = True
        timer.start()
    try:
        for fn in tests:
            name = fn.__name__
            t0 = time.monotonic()
            err = None
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                err = "%s: %s" % (type(e).__name__, e)
                log("FAIL - %s" % name)
                traceback.print_exc(file=sys.stderr)
            if after_each is not None:
                try:
                    after_each(name)
                except Exception as e:  # noqa: BLE001
                    if err is None:
                        log("FAIL - %s" % name)
                    err = (err + "; " if err else "") + "%s: %s" % (type(e).__name__, e)
                    log("  after-test check: %s" % e)
            with _state_lock:
                remaining[0] -= 1
                if err is None:
                    _state["passed"] += 1
                else:
                    _state["failed"] += 1
                    _state["failures"].append((name, err.splitlines()[0][:300] if err else ""))
            if err is None:
                log("ok - %s (%.1fs)" % (name, time.monotonic() - t0))
    finally:
        if teardown is not None:
            try:
                teardown()
            except Exception:  # noqa: BLE001
                traceback.print_exc(file=sys.stderr)
        kill_all()
        if timer:
            timer.cancel()
    _finish()
    return 0 if _state["failed"] == 0 else 1
