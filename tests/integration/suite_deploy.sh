#!/usr/bin/env bash
# The deploy files pass the checks available here (no docker engine, no
# cluster): systemd-analyze verify on the units (pointed at the built
# binaries); both programs' own config checks on the hybrid configs and on
# the configs embedded in the compose file and the Kubernetes ConfigMaps;
# YAML well-formedness and shape of the Kubernetes manifests and the compose
# file (tests/deploy/yamlcheck.c, libyaml); the Dockerfiles' conventions
# (multi-stage, slim runtime, non-root); and the certificates
# scripts/gen-certs.sh makes, and revokes, verify for their purpose. Prints "ok - name" / "FAIL - name" per check, then
# "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${GW_BIN_DIR:-$root/bin}
work=$(mktemp -d /tmp/suite_deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT
pass=0; fail=0
ok() { echo "ok - $1" >&2; pass=$((pass+1)); }
bad() { echo "FAIL - $1: $2" >&2; fail=$((fail+1)); }

units() { # dir: copies of the units with the binaries' real paths
  mkdir -p "$1"
  for u in "$root"/deploy/systemd/*.service; do sed "s#/usr/local/bin/#$bin/#g" "$u" >"$1/$(basename "$u")"; done
}
verify() { # prints what systemd-analyze says (nothing when clean); status
  systemd-analyze verify "$@" 2>&1
}
units "$work/units"
out=$(verify "$work"/units/*.service); rc=$?
if [ $rc -eq 0 ] && [ -z "$out" ]; then ok "systemd units verify clean"; else bad "systemd units" "$out"; fi
# the check itself can fail: a broken directive is reported
sed 's/^Restart=on-failure/Restart=sometimes/' "$work/units/gateway.service" >"$work/broken.service"
out=$(verify "$work/broken.service")
if [ -n "$out" ]; then ok "a broken unit is reported"; else bad "broken unit" "systemd-analyze said nothing"; fi

out=$("$bin/gateway" --check-config "$root/deploy/hybrid/gateway.yaml" 2>&1)
if [ $? -eq 0 ]; then ok "hybrid gateway.yaml: $out"; else bad "hybrid gateway.yaml" "$out"; fi
out=$("$bin/controlplane" check-config --config "$root/deploy/hybrid/controlplane.yaml" 2>&1)
if [ $? -eq 0 ]; then ok "hybrid controlplane.yaml: $out"; else bad "hybrid controlplane.yaml" "$out"; fi
# tls+tcp:// without certificates is refused by both
printf 'control_plane: tls+tcp://cp:7400\n' >"$work/notls.yaml"
out=$("$bin/gateway" --check-config "$work/notls.yaml" 2>&1)
if [ $? -ne 0 ] && grep -q control_plane_ca_file <<<"$out"; then ok "gateway refuses tls+tcp:// without certificates"
else bad "gateway tls+tcp:// without certificates" "$out"; fi
out=$("$bin/controlplane" check-config --dataplane-listen tls+tcp://0.0.0.0:7400 2>&1)
if [ $? -ne 0 ] && grep -q dataplane_ca_file <<<"$out"; then ok "controlplane refuses tls+tcp:// without certificates"
else bad "controlplane tls+tcp:// without certificates" "$out"; fi

# YAML: every manifest parses and has the fields Kubernetes needs; the compose file has its services
if cc -std=c11 -O1 -Wall -Wextra -Werror -o "$work/yamlcheck" "$root/tests/deploy/yamlcheck.c" -lyaml 2>"$work/cc.err"; then
  out=$("$work/yamlcheck" kube "$root"/deploy/kubernetes/*.yaml 2>&1)
  if [ $? -eq 0 ]; then ok "kubernetes manifests: $(echo "$out" | tr '\n' ' ')"; else bad "kubernetes manifests" "$out"; fi
  out=$("$work/yamlcheck" compose "$root/deploy/docker/docker-compose.yml" 2>&1)
  if [ $? -eq 0 ]; then ok "docker-compose.yml: $out"; else bad "docker-compose.yml" "$out"; fi
  printf 'apiVersion: v1\nkind: Service\nmetadata: {}\n' >"$work/nameless.yaml"
  if ! "$work/yamlcheck" kube "$work/nameless.yaml" >/dev/null 2>&1; then ok "a manifest without a name is reported"
  else bad "yamlcheck" "a manifest without metadata.name passed"; fi
else bad "yamlcheck" "$(cat "$work/cc.err")"; fi
# the configs embedded in the manifests and the compose file pass the programs' own checks
python3 - "$root" "$work" <<'PY' 2>"$work/extract.err"
import re, sys
root, work = sys.argv[1], sys.argv[2]
def block(path, key):
    # the literal block under "key: |" (indented text up to the next less-indented line)
    lines = open(path).read().split("\n")
    for i, l in enumerate(lines):
        m = re.match(r"^(\s*)%s: \|\s*$" % re.escape(key), l)
        if m:
            ind = len(m.group(1))
            out = []
            for l2 in lines[i + 1:]:
                if l2.strip() and len(l2) - len(l2.lstrip()) <= ind:
                    break
                out.append(l2)
            body = [x for x in out if x.strip()]
            cut = min(len(x) - len(x.lstrip()) for x in body)
            return "\n".join(x[cut:] for x in out) + "\n"
    raise SystemExit("no block %s in %s" % (key, path))
open(work + "/k8s-gateway.yaml", "w").write(block(root + "/deploy/kubernetes/gateway.yaml", "gateway.yaml"))
open(work + "/k8s-cp.yaml", "w").write(block(root + "/deploy/kubernetes/controlplane.yaml", "controlplane.yaml"))
open(work + "/compose-gw1.yaml", "w").write(block(root + "/deploy/docker/docker-compose.yml", "content"))
PY
if [ $? -ne 0 ]; then bad "embedded configs" "$(cat "$work/extract.err")"
else
  for f in k8s-gateway compose-gw1; do
    out=$("$bin/gateway" --check-config "$work/$f.yaml" 2>&1)
    if [ $? -eq 0 ]; then ok "embedded $f config: $out"; else bad "embedded $f config" "$out"; fi
  done
  out=$("$bin/controlplane" check-config --config "$work/k8s-cp.yaml" 2>&1)
  if [ $? -eq 0 ]; then ok "embedded controlplane config: $out"; else bad "embedded controlplane config" "$out"; fi
fi
# Dockerfiles: a build stage, a slim Debian runtime, a non-root user, no remote ADD
for d in "$root"/deploy/docker/Dockerfile.*; do
  n=$(basename "$d")
  if grep -qE '^FROM debian:12 AS build' "$d" && [ "$(grep -E '^FROM ' "$d" | tail -1)" = "FROM debian:12-slim" ] &&
     grep -qE '^USER [1-9][0-9]*' "$d" && grep -qE '^COPY --from=build ' "$d" && ! grep -qE '^ADD +https?:' "$d"; then
    ok "$n: multi-stage, debian:12-slim runtime, non-root"
  else bad "$n" "not multi-stage / slim / non-root"; fi
done
# each runtime image installs the Debian package of every library its binary
# links (NEEDED entries; libc6 is in the base image, sanitizer runtimes are not shipped): a library added to the
# build without its runtime package would start nowhere but here
for b in gateway controlplane; do
  d="$root/deploy/docker/Dockerfile.$b"; [ -f "$d" ] || d="$root/deploy/docker/Dockerfile.controlplane"
  runtime=$(awk '/^FROM /{buf=""} {buf=buf"\n"$0} END{print buf}' "$d")
  missing=""
  for so in $(objdump -p "$bin/$b" | awk '/NEEDED/{print $2}'); do
    path=$(ldconfig -p | awk -v s="$so" '$1==s{print $NF; exit}')
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1)
    [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
    case $pkg in libc6|libgcc-s1|libasan*|libubsan*) continue ;; esac   # base image; sanitizer builds
    grep -qE "(^|[[:space:]])$pkg([[:space:]]|\\|$)" <<<"$runtime" || missing="$missing $so($pkg)"
  done
  if [ -z "$missing" ]; then ok "Dockerfile.$b runtime installs every linked library's package"
  else bad "Dockerfile.$b runtime" "missing:$missing"; fi
done
# plain tcp:// beyond loopback needs forcing, on both sides
printf 'control_plane: tcp://10.1.2.3:7400\n' >"$work/remote-tcp.yaml"
out=$("$bin/gateway" --check-config "$work/remote-tcp.yaml" 2>&1)
if [ $? -ne 0 ] && grep -q control_plane_insecure <<<"$out"; then ok "gateway refuses plain tcp:// beyond loopback"
else bad "gateway plain tcp:// beyond loopback" "$out"; fi
out=$("$bin/controlplane" check-config --dataplane-listen tcp://0.0.0.0:7400 2>&1)
if [ $? -ne 0 ] && grep -q dataplane_insecure <<<"$out"; then ok "controlplane refuses plain tcp:// beyond loopback"
else bad "controlplane plain tcp:// beyond loopback" "$out"; fi

if bash "$root/scripts/gen-certs.sh" "$work/tls" cp.example.internal gw-site-a-1 >/dev/null 2>"$work/gen.err"; then
  t=$work/tls
  if openssl verify -CAfile "$t/ca.crt" -purpose sslserver "$t/controlplane.crt" >/dev/null 2>&1 &&
     openssl verify -CAfile "$t/ca.crt" -purpose sslclient "$t/gw-site-a-1.crt" >/dev/null 2>&1 &&
     ! openssl verify -CAfile "$t/ca.crt" -purpose sslserver "$t/gw-site-a-1.crt" >/dev/null 2>&1 &&
     openssl x509 -in "$t/controlplane.crt" -noout -ext subjectAltName | grep -q 'DNS:cp.example.internal' &&
     [ "$(stat -c %a "$t/gw-site-a-1.key")" = 600 ]; then
    ok "gen-certs: server and client certificates for their purposes, keys 0600"
  else bad "gen-certs" "a certificate does not verify for its purpose"; fi
  if bash "$root/scripts/gen-certs.sh" --revoke "$t" gw-site-a-1 >/dev/null 2>&1 &&
     ! openssl verify -crl_check -CAfile "$t/ca-crl.pem" "$t/gw-site-a-1.crt" >/dev/null 2>&1 &&
     openssl verify -crl_check -CAfile "$t/ca-crl.pem" "$t/controlplane.crt" >/dev/null 2>&1; then
    ok "gen-certs --revoke: the revoked certificate fails a CRL check, the others pass"
  else bad "gen-certs --revoke" "CRL does not do what it should"; fi
else bad "gen-certs" "$(cat "$work/gen.err")"; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
