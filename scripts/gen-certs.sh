#!/usr/bin/env bash
# Makes the certificates for a control-plane link with mutual TLS: a CA, the
# control plane's server certificate and one client certificate per data
# plane (its common name = its dataplane_id). EC P-256, valid 825 days.
#   usage: scripts/gen-certs.sh DIR CP_NAME_OR_IP DATAPLANE_ID...
#   DIR/ca.crt, DIR/ca.key (keep the CA key offline), DIR/controlplane.{crt,key},
#   DIR/<dataplane_id>.{crt,key}. Existing files are kept (the CA above all).
#
#   scripts/gen-certs.sh --revoke DIR DATAPLANE_ID...
#   revokes those nodes' certificates: DIR/crl.pem, and DIR/ca-crl.pem (the CA
#   followed by its CRL) to give the control plane as dataplane_ca_file; it
#   then refuses those nodes from its next start.
set -euo pipefail
revoke=0
if [ "${1:-}" = --revoke ]; then revoke=1; shift; fi
[ $# -ge 2 ] || { echo "usage: $0 DIR CP_NAME_OR_IP [DATAPLANE_ID...] | $0 --revoke DIR DATAPLANE_ID..." >&2; exit 2; }
dir=$1
mkdir -p "$dir"; chmod 0700 "$dir"
cd "$dir"
ca_db() { # the minimal "openssl ca" state a CRL needs
  [ -f index.txt ] || : >index.txt
  [ -f crlnumber ] || echo 1000 >crlnumber
  printf '[ca]\ndefault_ca=fleet\n[fleet]\ndatabase=index.txt\ncrlnumber=crlnumber\ndefault_md=sha256\n''default_crl_days=3650\ncertificate=ca.crt\nprivate_key=ca.key\n' >ca.cnf
}
if [ $revoke = 1 ]; then
  shift
  [ -f ca.crt ] && [ -f ca.key ] || { echo "$dir has no CA" >&2; exit 1; }
  ca_db
  for id in "$@"; do
    [ -f "$id.crt" ] || { echo "no certificate $dir/$id.crt" >&2; exit 1; }
    openssl ca -config ca.cnf -revoke "$id.crt" -batch 2>/dev/null || grep -q "CN=$id\$" index.txt
  done
  openssl ca -config ca.cnf -gencrl -out crl.pem -batch 2>/dev/null
  cat ca.crt crl.pem >ca-crl.pem
  echo "revoked $*: give the control plane $dir/ca-crl.pem as dataplane_ca_file and restart it"
  exit 0
fi
cp_name=$2; shift 2
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
