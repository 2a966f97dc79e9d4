#!/usr/bin/env bash
# Throw-away PKI for the tests and the demo: EC P-256 CA, a server certificate with the
# serverAuth EKU and nsCertType server (so a client's `remote-cert-tls server` passes), a
# tls-crypt key and a tls-auth key. No DH parameters: servers use `dh none` (ECDHE).
#
#   scripts/lib/pki.sh DIR               CA + server + static keys into DIR
#   scripts/lib/pki.sh DIR client NAME   DIR/client-NAME.{crt,key} (clientAuth EKU)
#
# Or `source` it and call pki_generate DIR / pki_issue_client DIR NAME.
# Files: ca.crt ca.key server.crt server.key tls-crypt.key tls-auth.key (keys 0600).
# The e2e harness (tests/src/pki.rs) runs this file, so both use the same PKI.

_pki_days=3

_pki_run() { # CMD...: runs quietly, prints the output only when it fails
  local out
  if ! out=$("$@" 2>&1); then
    printf 'pki: `%s` failed:\n%s\n' "$*" "$out" >&2
    return 1
  fi
}

_pki_cnf() { # DIR: the openssl config with the extension sections
  cat >"$1/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = e2e
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = serverAuth
nsCertType = server
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
}

_pki_key() { # FILE
  _pki_run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
  chmod 600 "$1"
}

_pki_issue() { # DIR CN EXTENSIONS KEY CERT
  local dir=$1 cn=$2 ext=$3 key=$4 cert=$5
  _pki_key "$key"
  _pki_run openssl req -new -config "$dir/openssl.cnf" -key "$key" -subj "/CN=$cn" \
    -out "$cert.csr"
  _pki_run openssl x509 -req -sha256 -in "$cert.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days "$_pki_days" \
    -extfile "$dir/openssl.cnf" -extensions "$ext" -out "$cert"
  rm -f "$cert.csr"
}

pki_generate() ( # DIR
  set -euo pipefail
  local dir=${1:?usage: pki_generate DIR}
  mkdir -p "$dir"
  _pki_cnf "$dir"
  _pki_key "$dir/ca.key"
  _pki_run openssl req -x509 -new -config "$dir/openssl.cnf" -extensions v3_ca \
    -key "$dir/ca.key" -sha256 -days "$_pki_days" -subj /CN=e2e-test-ca -out "$dir/ca.crt"
  _pki_issue "$dir" server v3_server "$dir/server.key" "$dir/server.crt"
  _pki_run openvpn --genkey tls-crypt "$dir/tls-crypt.key"
  _pki_run openvpn --genkey secret "$dir/tls-auth.key"
  chmod 600 "$dir/tls-crypt.key" "$dir/tls-auth.key"
)

pki_issue_client() ( # DIR NAME (after pki_generate DIR)
  set -euo pipefail
  local dir=${1:?usage: pki_issue_client DIR NAME} name=${2:?usage: pki_issue_client DIR NAME}
  case $name in */* | "" | .*) echo "pki: bad client name '$name'" >&2; exit 1 ;; esac
  _pki_issue "$dir" "$name" v3_client "$dir/client-$name.key" "$dir/client-$name.crt"
)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  case ${2:-} in
    "") pki_generate "${1:?usage: pki.sh DIR [client NAME]}" ;;
    client) pki_issue_client "$1" "${3:?usage: pki.sh DIR client NAME}" ;;
    *) echo "usage: pki.sh DIR [client NAME]" >&2; exit 2 ;;
  esac
fi
