#!/usr/bin/env bash
# Makes a throwaway CA and a server certificate for 127.0.0.1/localhost in
# DIR (ca.pem, server.pem, server.key), for the TLS tests of the sinks
# (rsyslog over TLS, HTTPS). Keeps existing files. Needs openssl.
#
#   scripts/test-certs.sh DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
command -v openssl >/dev/null || { echo "test-certs: openssl not found: run scripts/setup.sh" >&2; exit 3; }
mkdir -p "$1"
cd "$1"
[ -s server.pem ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj /CN=vigil-test-ca \
  -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
  -subj /CN=localhost 2>/dev/null
printf '%s\n' \
  'subjectAltName=IP:127.0.0.1,DNS:localhost' \
  'basicConstraints=critical,CA:FALSE' \
  'keyUsage=critical,digitalSignature,keyEncipherment' \
  'extendedKeyUsage=serverAuth' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out server.pem -days 2 -extfile server.ext 2>/dev/null
