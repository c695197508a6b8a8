#!/usr/bin/env bash
# gen-pki.sh DIR: a throwaway test PKI in DIR: a CA and, for each Loggregator role, an RSA key and a certificate
# whose DNS SANs carry the role's name (metron, doppler, reverselogproxy) plus localhost and 127.0.0.1, usable for
# both server and client authentication, and a client certificate for consumers. Existing files are kept.
# For tests and demos on loopback only.
set -euo pipefail
dir=${1:?usage: gen-pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 365 -subj "/CN=loggregator-test-ca" \
    2>/dev/null
fi
for name in metron doppler reverselogproxy client; do
  [ -f "$name.crt" ] && continue
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" \
    >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 365 \
    -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
done
chmod 600 ./*.key
