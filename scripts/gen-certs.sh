#!/usr/bin/env bash
# Makes the certificates for a control-plane link with mutual TLS: a CA, the
# control plane's server certificate and one client certificate per data
# plane (its common name = its dataplane_id). EC P-256, valid 825 days.
#   usage: scripts/gen-certs.sh DIR CP_NAME_OR_IP DATAPLANE_ID...
#   DIR/ca.crt, DIR/ca.key (keep the CA key offline), DIR/controlplane.{crt,key},
#   DIR/<dataplane_id>.{crt,key}. Existing files are kept (the CA above all).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR CP_NAME_OR_IP [DATAPLANE_ID...]" >&2; exit 2; }
dir=$1; cp_name=$2; shift 2
mkdir -p "$dir"; chmod 0700 "$dir"
cd "$dir"
days=825
key() { [ -f "$1" ] || { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 0600 "$1"; }; }
if [ ! -f ca.crt ]; then
  key ca.key
  openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=gateway fleet CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
fi
sign() { # name, extensions
  local name=$1 ext=$2
  [ -f "$name.crt" ] && return 0
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
  printf '%b' "$ext" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -sha256 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
# the name data planes check (control_plane_server_name, or the host they dial):
# as a DNS name always (mbedTLS 2 matches only those), and as an IP when it is one
san="DNS:$cp_name"; [[ $cp_name =~ ^[0-9.]+$ ]] && san="$san,IP:$cp_name"
sign controlplane "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=$san\n"
for id in "$@"; do
  [[ $id =~ ^[A-Za-z0-9._-]{1,64}$ ]] || { echo "bad dataplane id: $id" >&2; exit 2; }
  sign "$id" "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
done
echo "certificates in $dir"
