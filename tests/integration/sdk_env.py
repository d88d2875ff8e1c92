#!/usr/bin/env python3
"""Starts a mock upstream + a gateway for the SDK suite and keeps them up.

Prints "READY <gateway-url> <virtual-key>" on stdout once /readyz is 200, then
waits until it gets SIGTERM/SIGINT or its stdin closes (bounded: 300 s), and
stops everything it started.
"""
import os
import secrets
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mock_dialects as md  # noqa: E402

MAX_LIFETIME_S = 300


def provider_deployments(mock):
    """One alias per provider, each served by the mock speaking its wire format."""
    root = mock.base_url[:-len("/v1")]
    return [
        ("via-openai-compatible", {"provider": "openai_compatible", "model": "gpt-4o-mini-dialect",
                                   "base_url": mock.base_url, "api_key": "sk-upstream-" + secrets.token_hex(8)}),
        ("via-openai", {"provider": "openai", "model": "gpt-4o-dialect",
                        "base_url": mock.base_url, "api_key": "sk-upstream-" + secrets.token_hex(8)}),
        ("via-anthropic", {"provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                           "base_url": root, "api_key": "sk-ant-" + secrets.token_hex(8)}),
        ("via-gemini", {"provider": "gemini", "model": "gemini-2.0-flash",
                        "base_url": root, "api_key": "AIza-" + secrets.token_hex(8)}),
        ("via-ollama", {"provider": "ollama", "model": "llama3.1:8b", "base_url": root,
                        "input_cost_per_mtok": 0, "output_cost_per_mtok": 0}),
        ("via-azure", {"provider": "azure", "model": "gpt-4o-mini", "base_url": root,
                       "api_key": "azure-" + secrets.token_hex(8), "api_version": "2024-10-21"}),
        ("via-bedrock", {"provider": "bedrock", "model": "anthropic.claude-3-5-haiku-20241022-v1:0", "base_url": root,
                         "region": md.AWS_REGION, "aws_access_key_id": md.AWS_ACCESS_KEY_ID,
                         "aws_secret_access_key": md.AWS_SECRET_ACCESS_KEY}),
    ]


def main():
    key = "sk-gw-" + secrets.token_urlsafe(32)
    mock = gw = None
    stop = {"now": False}

    def on_term(signum, frame):
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        mock = h.Mock("mock")
        port = h.free_port()
        cfg = {
            "listen": "127.0.0.1:%d" % port,
            "workers": 2,
            "models": [
                {"alias": "gpt-4o-mini", "deployments": [{
                    "provider": "openai_compatible", "model": "upstream-model-name",
                    "base_url": mock.base_url, "api_key": "sk-upstream-" + secrets.token_hex(8)}]},
                {"alias": "text-embedding", "deployments": [{
                    "provider": "openai_compatible", "model": "upstream-embed",
                    "base_url": mock.base_url, "api_key": "sk-upstream-" + secrets.token_hex(8)}]},
                {"alias": "mock-alias", "deployments": [{"provider": "mock", "model": "mock-1"}]},
            ] + [{"alias": alias, "deployments": [dep]} for alias, dep in provider_deployments(mock)],
            "keys": [{"name": "sdk", "key": key}],
        }
        # the SDK tests provoke errors on purpose and the SDKs retry them: one
        # attempt per request and no breaker, so each error reaches the SDK as
        # the provider gave it (router_test.py covers retries and breakers)
        for m in cfg["models"]:
            m["router"] = {"max_attempts": 1, "breaker_failures": 1000000, "breaker_min_requests": 1000000}
        gw = h.Gateway(cfg)
        aliases = ",".join("%s:%s" % (a, d["provider"]) for a, d in provider_deployments(mock))
        print("READY %s %s %s" % (gw.url, key, aliases), flush=True)
        deadline = time.monotonic() + MAX_LIFETIME_S
        while not stop["now"] and time.monotonic() < deadline:
            if not gw.alive():
                h.log("sdk_env: gateway exited (code %s); stderr:\n%s" % (
                    gw.proc.returncode, gw.stderr_text()[-2000:]))
                return 1
            time.sleep(0.1)
        return 0
    except Exception as e:  # noqa: BLE001
        h.log("sdk_env: %s" % e)
        return 1
    finally:
        if gw is not None:
            gw.stop(timeout=5)
        if mock is not None:
            mock.stop()
        h.kill_all()


if __name__ == "__main__":
    sys.exit(main())
