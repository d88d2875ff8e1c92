#!/usr/bin/env python3
"""What guardrails add to a request, measured on the wire (not a test: no
assertion, never run by `make test`). One gateway worker, the built-in mock
provider (no network, no latency), one keep-alive connection, N requests per
alias with a ~2 KB prompt; the gateway's own latency_ms from the access log
(first byte in to last byte out), median and p99, plain vs guarded (all 13
detectors masking, input and output), whole answers and streams.

    GW_BIN_DIR=$PWD/bin python3 tests/integration/guard_bench.py [N]
"""
import json
import os
import secrets
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
KEY = "sk-gw-" + secrets.token_urlsafe(32)
PROSE = ("The quarterly report shows revenue grew 12% to 4.2 million, driven by strong demand in Europe; "
         "the team expects version 2.3 to ship on 2024-03-15 at 10:30. ")
PII = "Contact jane.doe@example.com or +1 415 555 2671, card 4111 1111 1111 1111. "


def main():
    det = {d: "mask" for d in ("email", "phone", "card", "iban", "secrets")}
    mock = [{"provider": "mock", "model": "mock-1"}]
    cfg = {"listen": "127.0.0.1:%d" % h.free_port(), "workers": 1, "metrics_listen": "off",
           "guardrails": [{"name": "all", "detectors": det}],
           "models": [{"alias": "plain", "deployments": mock},
                      {"alias": "guarded", "guardrails": ["all"], "deployments": mock}],
           "keys": [{"name": "bench", "key": KEY}]}
    gw = h.Gateway(cfg)
    try:
        for label, text in (("prose", (PROSE * 14)[:2048]), ("pii", ((PROSE + PII) * 8)[:2048])):
            for stream in (False, True):
                res = {}
                for alias in ("plain", "guarded"):
                    tag = secrets.token_hex(4)
                    body = {"model": alias, "user": tag, "stream": stream,
                            "messages": [{"role": "user", "content": text}]}
                    with h.Conn(gw.port) as c:
                        for _ in range(N):
                            r = c.request("POST", "/v1/chat/completions", body, key=KEY, sse=stream)
                            if r.status != 200:
                                raise SystemExit("HTTP %d: %r" % (r.status, r))
                    lat = [l["latency_ms"] for l in gw.access_log() if l.get("model") == alias
                           and l.get("stream") == stream and l.get("status") == 200]
                    lat = lat[-N:]
                    lat.sort()
                    res[alias] = (statistics.median(lat), lat[int(len(lat) * 0.99) - 1])
                print("%-5s %-6s plain median %.3f ms p99 %.3f | guarded median %.3f ms p99 %.3f | +%.3f ms median"
                      % (label, "stream" if stream else "whole", res["plain"][0], res["plain"][1],
                         res["guarded"][0], res["guarded"][1], res["guarded"][0] - res["plain"][0]))
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
