#!/usr/bin/env bash
# The deploy files pass the checks available here: systemd-analyze verify on
# the units (pointed at the built binaries), both programs' own config checks
# on the hybrid configs, and the certificates scripts/gen-certs.sh makes
# verify for their purpose. Prints "ok - name" / "FAIL - name" per check, then
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

if bash "$root/scripts/gen-certs.sh" "$work/tls" cp.example.internal gw-site-a-1 >/dev/null 2>"$work/gen.err"; then
  t=$work/tls
  if openssl verify -CAfile "$t/ca.crt" -purpose sslserver "$t/controlplane.crt" >/dev/null 2>&1 &&
     openssl verify -CAfile "$t/ca.crt" -purpose sslclient "$t/gw-site-a-1.crt" >/dev/null 2>&1 &&
     ! openssl verify -CAfile "$t/ca.crt" -purpose sslserver "$t/gw-site-a-1.crt" >/dev/null 2>&1 &&
     openssl x509 -in "$t/controlplane.crt" -noout -ext subjectAltName | grep -q 'DNS:cp.example.internal' &&
     [ "$(stat -c %a "$t/gw-site-a-1.key")" = 600 ]; then
    ok "gen-certs: server and client certificates for their purposes, keys 0600"
  else bad "gen-certs" "a certificate does not verify for its purpose"; fi
else bad "gen-certs" "$(cat "$work/gen.err")"; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
