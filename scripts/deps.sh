#!/usr/bin/env bash
# Installs the Debian packages the build, `make run` and `make test` need,
# only those that are missing (so a prepared machine pays nothing).
set -euo pipefail
pkgs=(build-essential pkg-config clang libclang-rt-14-dev
      libevhtp-dev libevent-dev libcurl4-openssl-dev libyaml-dev libssl-dev
      libnng-dev libprotobuf-c-dev protobuf-c-compiler libhiredis-dev
      libmicrohttpd-dev libpq-dev postgresql redis-server
      libpcre2-dev   # guardrails: the multi-pattern matcher (JIT)
      libjemalloc-dev   # the gateway's allocator (not in sanitizer builds)
      python3 curl jq wrk nginx-light
      iproute2 nftables openssl systemd   # hybrid network test, deploy checks
      chromium)   # headless browser for the admin UI test (tests/ui)
# Node may come from elsewhere than Debian (then Debian's npm would conflict with it)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
