#!/usr/bin/env bash
# Makes the throw-away TLS material of the compose file's TLS variant
# (compose/docker-compose.tls.yml) with openssl, into compose/tls/ (git-ignored, never
# committed):
#
#   ca.pem, ca.key        a private CA, valid 30 days
#   node.pem, node.key    every node's certificate: the cluster's mutual TLS and the
#                         HTTPS API (SANs taskmesh-node, localhost, 127.0.0.1)
#   redis.pem, redis.key  Redis's certificate (SAN redis, the service name)
#   redis-password        the password of the Redis ACL user `taskmesh`
#   users.acl             Redis's ACL file: `default` off, `taskmesh` with the password's
#                         SHA-256 (Redis never holds the password itself)
#
# Usage: compose/tls-certs.sh [--force]   (keeps existing material unless --force)
# The keys are mode 0644 so that the containers' non-root users (taskmesh, redis) can
# read the read-only bind mount: they are for this dev/test variant only. In production,
# mount keys owned by the container's user (uid 10001 for the node) with mode 0600.
set -euo pipefail
cd "$(dirname "$0")"
dir=tls
if [[ ${1:-} != --force && -s $dir/ca.pem && -s $dir/node.pem && -s $dir/redis.pem &&
  -s $dir/users.acl && -s $dir/redis-password ]]; then
  echo "compose/$dir: already made (use --force to make anew)"
  exit 0
fi
command -v openssl >/dev/null || {
  echo "openssl is not installed (apt-get install -y openssl)" >&2
  exit 1
}
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ec_key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 30 -subj "/CN=taskmesh compose CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# leaf NAME SANS: NAME.key and NAME.pem, issued by the CA, for server and client use.
leaf() {
  ec_key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
    -days 30 -extfile <(printf '%s\n' "subjectAltName=$2" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth") 2>/dev/null
  rm -f "$1.csr"
}
leaf node "DNS:taskmesh-node,DNS:localhost,IP:127.0.0.1"
leaf redis "DNS:redis,DNS:localhost,IP:127.0.0.1"
rm -f ca.srl

password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 32)
printf '%s' "$password" >redis-password
hash=$(printf '%s' "$password" | sha256sum | cut -d' ' -f1)
printf 'user default off\nuser taskmesh on #%s ~* &* +@all\n' "$hash" >users.acl
chmod 0644 ./*.pem ./*.key users.acl
chmod 0600 ca.key redis-password
echo "compose/$dir: CA, node and redis certificates, Redis ACL user taskmesh"
