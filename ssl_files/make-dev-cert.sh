#!/usr/bin/env bash
# Make a development CA and a server certificate signed by it, for running rgunicorn's
# TLS front from a checkout or in the container without a real certificate.
#
# usage: ssl_files/make-dev-cert.sh [--install] [OUTDIR] [NAME...]
#   OUTDIR   where to write (default: ssl_files/dev beside this script; git- and docker-ignored)
#   NAME     extra DNS names or IP addresses for the certificate
#            (localhost, 127.0.0.1 and ::1 are always included)
#   --install  also copy server.pem and server.key into ssl_files/ itself, where
#            `docker build` bakes them into the image (development only: anyone with the
#            image then has the key)
#
# Writes OUTDIR/ca.pem, ca.key (the development CA: trust ca.pem in your client, e.g.
# `curl --cacert ssl_files/dev/ca.pem`), server.pem (leaf + CA chain) and server.key.
# An existing CA in OUTDIR is reused, so a client that trusts it keeps working.
# Keys are mode 0600. Never use these for anything reachable from the internet.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
install=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
out=${1:-$here/dev}
[ $# -gt 0 ] && shift
command -v openssl >/dev/null || { echo "make-dev-cert.sh: openssl is required" >&2; exit 1; }

mkdir -p "$out"
umask 077
days_ca=3650
days_leaf=365

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san="$san,IP:$name"; else san="$san,DNS:$name"; fi
done

if [ ! -s "$out/ca.pem" ] || [ ! -s "$out/ca.key" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$out/ca.key" -out "$out/ca.pem" -days "$days_ca" -sha256 \
    -subj "/O=rgunicorn development/CN=rgunicorn development CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "made development CA: $out/ca.pem"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=localhost" 2>/dev/null
printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$tmp/ext.cnf"
openssl x509 -req -in "$tmp/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
  -CAcreateserial -CAserial "$tmp/ca.srl" -days "$days_leaf" -sha256 \
  -extfile "$tmp/ext.cnf" -out "$tmp/leaf.pem" 2>/dev/null
cat "$tmp/leaf.pem" "$out/ca.pem" > "$out/server.pem"
mv "$tmp/server.key" "$out/server.key"
chmod 0644 "$out/ca.pem" "$out/server.pem"
chmod 0600 "$out/ca.key" "$out/server.key"
echo "made development certificate for $san: $out/server.pem, $out/server.key"

if [ "$install" = 1 ]; then
  cp "$out/server.pem" "$here/server.pem"
  cp "$out/server.key" "$here/server.key"
  chmod 0644 "$here/server.pem"; chmod 0600 "$here/server.key"
  echo "copied into $here: the next docker build bakes this development certificate into the image"
fi
