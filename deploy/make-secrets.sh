#!/usr/bin/env bash
# Makes the secrets a paypage deployment needs, in a directory of their own
# (default ./secrets, mode 0700, every file 0600 but the public certificates):
#   master.key            the key-encrypting key (64 hex characters)
#   redis-password        the password of Redis's ACL user "paypage"
#   users.acl             Redis's ACL file: the default user off, "paypage" on
#                         with that password, its keys (pp:*) and no admin or
#                         dangerous commands (from redis-users.acl.in)
#   ca.crt, ca.key        a private CA for Redis's TLS (keep ca.key offline)
#   redis.crt, redis.key  Redis's server certificate, for the names in
#                         REDIS_NAMES (default: redis, localhost, 127.0.0.1)
#   page.crt, page.key    a self-signed certificate for the payment page that
#                         docker compose serves over TLS itself, for the names
#                         in PAGE_NAMES (default: localhost, 127.0.0.1); on
#                         Kubernetes the ingress holds the page's certificate
# Then, on Kubernetes (kubectl apply -k deploy/ reads the rest):
#   kubectl create secret generic paypage-master-key --from-file=master.key=secrets/master.key
#   kubectl create secret generic paypage-redis --from-file=password=secrets/redis-password --from-file=users.acl=secrets/users.acl
#   kubectl create secret generic paypage-redis-tls --from-file=ca.crt=secrets/ca.crt --from-file=tls.crt=secrets/redis.crt --from-file=tls.key=secrets/redis.key
# With docker compose: deploy/docker-compose.yml says how (compose.env holds
# the Redis password and the master key for its --env-file).
set -euo pipefail
out=${1:-secrets}
names=${REDIS_NAMES:-redis,localhost,127.0.0.1}
page_names=${PAGE_NAMES:-localhost,127.0.0.1}
here=$(cd "$(dirname "$0")" && pwd)
umask 077
mkdir -p "$out"
openssl rand -hex 32 >"$out/master.key"
pw=$(openssl rand -hex 32)
printf '%s' "$pw" >"$out/redis-password"
grep -v "^#" "$here/redis-users.acl.in" | sed "s/@PASSWORD@/$pw/" >"$out/users.acl" # an ACL file takes no comments
printf 'REDIS_PASSWORD=%s\nPAYPAGE_MASTER_KEY=%s\n' "$pw" "$(cat "$out/master.key")" >"$out/compose.env" # docker compose --env-file

# sans turns a comma-separated list of names and addresses into a subjectAltName.
sans() {
  local out="" n list
  IFS=, read -ra list <<<"$1"
  for n in "${list[@]}"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then out+="IP:$n,"; else out+="DNS:$n,"; fi
  done
  printf '%s' "${out%,}"
}
san=$(sans "$names")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=paypage Redis CA" \
  -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=redis" \
  -keyout "$out/redis.key" -out "$out/redis.csr" 2>/dev/null
openssl x509 -req -in "$out/redis.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -days 825 \
  -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") -out "$out/redis.crt" 2>/dev/null
rm -f "$out/redis.csr" "$out/ca.srl"
# The page's certificate is not signed by Redis's CA: nothing that trusts one
# trusts the other.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -subj "/CN=paypage" \
  -addext "subjectAltName=$(sans "$page_names")" -addext extendedKeyUsage=serverAuth \
  -keyout "$out/page.key" -out "$out/page.crt" 2>/dev/null
chmod 600 "$out"/*
chmod 644 "$out"/*.crt # certificates are public; the keys stay 0600
echo "secrets written to $out"
