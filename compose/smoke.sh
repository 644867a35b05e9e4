#!/usr/bin/env bash
# Smoke test of the scaled compose file: three replicas on Redis form a cluster, tasks
# posted to every replica all succeed even though one replica is SIGKILLed mid-run.
# Needs the images from compose/build-images.sh. Usage: bash compose/smoke.sh
# Environment: COMPOSE (default: `docker compose` if present, else `docker-compose`),
#              TASKMESH_PORTS (host port range, default 18181-18190).
set -euo pipefail
cd "$(dirname "$0")"

source ./compose-command.sh
project=taskmesh-smoke
export TASKMESH_PORTS=${TASKMESH_PORTS:-18181-18190}
export TASKMESH_CLUSTER_COOKIE TASKMESH_ADMIN_KEY
TASKMESH_CLUSTER_COOKIE=$(head -c 18 /dev/urandom | base64)
source ./api-key.sh
TASKMESH_ADMIN_KEY=$(new_api_key)
# Every API call but the open probes and /metrics sends the run's admin key.
api() { curl -H "Authorization: Bearer $TASKMESH_ADMIN_KEY" "$@"; }
dc() { "${compose[@]}" -p "$project" --project-directory . -f docker-compose.yml "$@"; }
cleanup() { dc down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; dc logs --tail 30 node >&2 || true; exit 1; }

cleanup
dc up -d --scale node=3 >/dev/null
mapfile -t ports < <(docker ps --filter "label=com.docker.compose.project=$project" \
  --filter "label=com.docker.compose.service=node" --format '{{.Ports}}' |
  grep -o '0\.0\.0\.0:[0-9]*->8080' | cut -d: -f2 | cut -d- -f1 | sort)
[[ ${#ports[@]} -eq 3 ]] || fail "expected 3 node ports, got: ${ports[*]}"
echo "replicas on host ports ${ports[*]}"

# Every replica sees the two others up.
for port in "${ports[@]}"; do
  for _ in $(seq 120); do
    ups=$(api -sf "localhost:$port/v1/cluster" | grep -o '"state":"up"' | wc -l || true)
    [[ $ups -ge 3 ]] && break # its own entry and two peers
    sleep 0.5
  done
  [[ $ups -ge 3 ]] || fail "node on $port does not see two peers up"
done
echo "cluster formed"

# 30 tasks posted to each replica.
ids=()
for port in "${ports[@]}"; do
  for _ in $(seq 30); do
    id=$(api -sf -X POST "localhost:$port/v1/tasks" -H 'content-type: application/json' \
      -d '{"kind":"sleep","params":{"ms":200}}' | grep -o '"id":"[^"]*"' | cut -d'"' -f4) ||
      fail "submission to $port refused"
    ids+=("$id")
  done
done
echo "${#ids[@]} tasks accepted"

# Kill one replica (not the first, which we read through).
victim=$(docker ps --format "{{.Names}} {{.Ports}}" | grep ":${ports[2]}->" | cut -d" " -f1)
docker kill -s KILL "$victim" >/dev/null
echo "killed $victim"

for id in "${ids[@]}"; do
  status=
  for _ in $(seq 240); do
    status=$(api -sf "localhost:${ports[0]}/v1/tasks/$id?wait_ms=1000" |
      grep -o '"status":"[a-z]*"' | cut -d'"' -f4 || true)
    [[ $status == succeeded || $status == failed || $status == cancelled ]] && break
  done
  [[ $status == succeeded ]] || fail "task $id ended $status"
done
echo "all ${#ids[@]} tasks succeeded after one replica was killed"
# The tasks may all have finished before the kill was noticed: wait for the verdict.
down=
for _ in $(seq 150); do
  if curl -sf "localhost:${ports[0]}/metrics" | grep -q '^taskmesh_peers{state="down"} 1'; then
    down=yes
    break
  fi
  sleep 0.2
done
[[ -n $down ]] || fail "the killed replica is not down within 30 s"
echo "compose smoke: passed"
