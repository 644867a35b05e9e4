#!/usr/bin/env bash
# Smoke test of the compose file's TLS variant (docker-compose.tls.yml on top of
# docker-compose.yml): three replicas on a TLS-only Redis with an ACL user form a cluster
# over mutual TLS, serve HTTPS, and run every task submitted to them. Also checks that
# plain HTTP is refused and that the Redis password shows in no log.
# Needs the images from compose/build-images.sh and openssl. Usage: bash compose/tls-smoke.sh
# Environment: COMPOSE (see compose-command.sh), TASKMESH_TLS_PORTS (host port range,
# default 18191-18200).
set -euo pipefail
cd "$(dirname "$0")"

source ./compose-command.sh
project=taskmesh-tls-smoke
export TASKMESH_PORTS=${TASKMESH_TLS_PORTS:-18191-18200}
bash ./tls-certs.sh
export TASKMESH_CLUSTER_COOKIE TASKMESH_REDIS_PASSWORD TASKMESH_ADMIN_KEY
TASKMESH_CLUSTER_COOKIE=$(head -c 18 /dev/urandom | base64)
source ./api-key.sh
TASKMESH_ADMIN_KEY=$(new_api_key)
TASKMESH_REDIS_PASSWORD=$(cat tls/redis-password)
dc() {
  "${compose[@]}" -p "$project" --project-directory . \
    -f docker-compose.yml -f docker-compose.tls.yml "$@"
}
cleanup() { dc down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; dc logs --tail 30 node redis >&2 || true; exit 1; }
# Every API call but the open probes sends the run's admin key.
https() { curl -sf --cacert tls/ca.pem -H "Authorization: Bearer $TASKMESH_ADMIN_KEY" "$@"; }

cleanup
dc up -d --scale node=3 >/dev/null
mapfile -t ports < <(docker ps --filter "label=com.docker.compose.project=$project" \
  --filter "label=com.docker.compose.service=node" --format '{{.Ports}}' |
  grep -o '0\.0\.0\.0:[0-9]*->8080' | cut -d: -f2 | cut -d- -f1 | sort)
[[ ${#ports[@]} -eq 3 ]] || fail "expected 3 node ports, got: ${ports[*]}"
echo "replicas on host ports ${ports[*]} (HTTPS)"

# Every replica sees the two others up: the cluster formed over mutual TLS.
for port in "${ports[@]}"; do
  ups=0
  for _ in $(seq 120); do
    ups=$(https "https://localhost:$port/v1/cluster" | grep -o '"state":"up"' | wc -l || true)
    [[ $ups -ge 3 ]] && break # its own entry and two peers
    sleep 0.5
  done
  [[ $ups -ge 3 ]] || fail "node on $port does not see two peers up"
done
echo "cluster formed over TLS"

# Plain HTTP to an HTTPS port gets no answer.
if curl -sf -m 5 "http://localhost:${ports[0]}/health" >/dev/null 2>&1; then
  fail "plain HTTP answered on ${ports[0]}"
fi

# 10 tasks posted to each replica, all succeed (stored in Redis over TLS).
ids=()
for port in "${ports[@]}"; do
  for _ in $(seq 10); do
    id=$(https -X POST "https://localhost:$port/v1/tasks" -H 'content-type: application/json' \
      -d '{"kind":"sleep","params":{"ms":100}}' | grep -o '"id":"[^"]*"' | cut -d'"' -f4) ||
      fail "submission to $port refused"
    ids+=("$id")
  done
done
for id in "${ids[@]}"; do
  status=
  for _ in $(seq 60); do
    status=$(https "https://localhost:${ports[0]}/v1/tasks/$id?wait_ms=1000" |
      grep -o '"status":"[a-z]*"' | cut -d'"' -f4 || true)
    [[ $status == succeeded || $status == failed || $status == cancelled ]] && break
  done
  [[ $status == succeeded ]] || fail "task $id ended ${status:-unfinished}"
done
echo "all ${#ids[@]} tasks succeeded"

if dc logs node 2>&1 | grep -qF "$TASKMESH_REDIS_PASSWORD"; then
  fail "the Redis password shows in the nodes' logs"
fi
echo "compose tls smoke: passed"
