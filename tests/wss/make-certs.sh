#!/usr/bin/env bash
# tests/wss/make-certs.sh DIR - a throwaway test PKI for the wss suite, made fresh at each
# run (no private key is ever committed): a CA, and leaves it signed, each as NAME.pem +
# NAME.key (ECDSA P-256, 90 days):
#   leaf  localhost, 127.0.0.1   (the default certificate)
#   next  localhost, 127.0.0.1   (served after a reload)
#   sni   sni.test               (chosen by SNI)
# Also ca.spki: the base64 SHA-256 of the CA's public key (Chromium's trust flag).
set -euo pipefail
DIR=$1
mkdir -p "$DIR"
cd "$DIR"
rm -f ./*.pem ./*.key ./*.csr ./*.srl ./*.ext
quiet() { "$@" >/dev/null 2>&1 || { echo "make-certs: failed: $*" >&2; "$@"; exit 1; }; }
quiet openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
  -out ca.pem -days 90 -subj "/CN=surge wss test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
leaf() { # leaf NAME SAN
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$2" >"$1.ext"
  quiet openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$1"
  quiet openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
    -days 90 -extfile "$1.ext"
}
leaf leaf "DNS:localhost,IP:127.0.0.1"
leaf next "DNS:localhost,IP:127.0.0.1"
leaf sni "DNS:sni.test"
openssl x509 -in ca.pem -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64 >ca.spki
rm -f ./*.csr ./*.srl ./*.ext
