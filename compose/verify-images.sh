#!/usr/bin/env bash
# Proves the images that compose/build-images.sh made, by running them:
#   node    healthy, runs a `noop` task over its published port, non-root, JSON log lines,
#           `docker stop` exits 0 promptly
#   redis   healthy, answers PING on its published port, non-root, `docker stop` exits 0
#   both    on a user-defined network: the node on `--store redis://<container>:6379/0`
#           (Docker's DNS by container name) runs a task whose record is in Redis
#   single  compose/docker-compose.single.yml up: healthy, limits applied, runs a task;
#           then down -v
# Ports are published on 127.0.0.1 only, on ports Docker picks. Everything it creates is
# named tmv-<pid>-* and removed at the end (the images stay).
#
# Usage: compose/verify-images.sh   (after compose/build-images.sh; needs python3)
# Ends with the line `verify-images: N passed, N failed`; exits 1 if any check failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_IMAGE=taskmesh/node:latest
REDIS_IMAGE=taskmesh/redis:7
P=tmv-$$
passed=0
failed=0

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  COMPOSE=()
fi
compose_single() {
  TASKMESH_PORT=127.0.0.1:0 "${COMPOSE[@]}" -p "$P" -f "$ROOT/compose/docker-compose.single.yml" "$@"
}

cleanup() {
  local c
  for c in "$P-node" "$P-redis" "$P-net-redis" "$P-net-node"; do
    docker rm -f -v "$c" >/dev/null 2>&1 || true
  done
  docker network rm "$P-net" >/dev/null 2>&1 || true
  if [[ ${#COMPOSE[@]} -gt 0 ]]; then
    compose_single down -v --remove-orphans >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

ok() {
  passed=$((passed + 1))
  echo "ok    $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL  $*"
}
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

# Waits up to 90 s for a container's health check to report healthy.
wait_healthy() {
  local s="" i
  for i in $(seq 1 90); do
    s=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null || true)
    [[ $s == healthy ]] && return 0
    [[ $(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]] || break
    sleep 1
  done
  echo "      $1: health '$s' after ${i}s; last log lines:" >&2
  docker logs --tail 5 "$1" 2>&1 | sed 's/^/      /' >&2
  return 1
}

# Submits a noop task to 127.0.0.1:PORT and waits for it to succeed, with the admin
# key node container CONTAINER wrote to /data/admin.key (API keys are on); sets TASK_ID.
TASK_ID=""
noop_succeeds() {
  local port=$1 key reply
  key=$(docker exec "$2" cat /data/admin.key) || return 1
  reply=$(curl -fsS -X POST "127.0.0.1:$port/v1/tasks" -H 'content-type: application/json' \
    -H "Authorization: Bearer $key" -d '{"kind":"noop","params":{}}') || return 1
  TASK_ID=$(sed -nE 's/.*"id":"([^"]+)".*/\1/p' <<<"$reply")
  [[ -n $TASK_ID ]] || return 1
  reply=$(curl -fsS -H "Authorization: Bearer $key" "127.0.0.1:$port/v1/tasks/$TASK_ID?wait_ms=10000") || return 1
  echo "      task $TASK_ID: $(sed -nE 's/.*"status":"([a-z]+)".*/\1/p' <<<"$reply")"
  grep -q '"status":"succeeded"' <<<"$reply"
}

host_port() { docker port "$1" "$2" | head -n1 | sed 's/.*://'; }

# Stops a container; true if it exited 0 within $2 seconds.
stops_cleanly() {
  local start end code
  start=$(date +%s)
  docker stop -t 40 "$1" >/dev/null
  end=$(date +%s)
  code=$(docker inspect -f '{{.State.ExitCode}}' "$1")
  echo "      $1: exit code $code after $((end - start))s"
  [[ $code == 0 && $((end - start)) -le $2 ]]
}

not_root() {
  local uid
  uid=$(docker exec "$1" id -u)
  echo "      $1: uid $uid ($(docker exec "$1" id -un))"
  [[ $uid != 0 ]]
}

# The node logs to stdout, every line one JSON object.
json_logs() {
  docker logs "$1" 2>/dev/null | python3 -c '
import json, sys
lines = [l for l in sys.stdin if l.strip()]
for l in lines:
    assert isinstance(json.loads(l), dict), l
assert lines, "no log lines on stdout"
print(f"      {len(lines)} log lines, all JSON objects")'
}

redis_ping() { # over bash /dev/tcp: no redis-cli needed on the host
  local reply
  exec 7<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'PING\r\n' >&7
  read -r -t 5 reply <&7 || true
  exec 7<&-
  [[ $reply == +PONG* ]]
}

for image in "$NODE_IMAGE" "$REDIS_IMAGE"; do
  docker image inspect "$image" >/dev/null 2>&1 || {
    echo "$image is missing: run compose/build-images.sh first" >&2
    exit 1
  }
done

echo "== node ($NODE_IMAGE, embedded store)"
docker run -d --name "$P-node" -p 127.0.0.1:0:8080 "$NODE_IMAGE" >/dev/null
if wait_healthy "$P-node"; then
  ok "node: healthy"
  port=$(host_port "$P-node" 8080)
  check "node: noop task succeeded via 127.0.0.1:$port" noop_succeeds "$port" "$P-node"
  check "node: runs as a non-root user" not_root "$P-node"
else
  fail "node: healthy"
fi
check "node: docker stop exits 0 within 10 s" stops_cleanly "$P-node" 10
check "node: log lines are JSON" json_logs "$P-node"

echo "== redis ($REDIS_IMAGE)"
docker run -d --name "$P-redis" -p 127.0.0.1:0:6379 "$REDIS_IMAGE" >/dev/null
if wait_healthy "$P-redis"; then
  ok "redis: healthy"
  port=$(host_port "$P-redis" 6379)
  check "redis: PING -> PONG via 127.0.0.1:$port" redis_ping "$port"
  check "redis: runs as a non-root user" not_root "$P-redis"
else
  fail "redis: healthy"
fi
check "redis: docker stop exits 0 within 10 s" stops_cleanly "$P-redis" 10

echo "== node on redis, on a user-defined network"
docker network create "$P-net" >/dev/null
docker run -d --name "$P-net-redis" --network "$P-net" "$REDIS_IMAGE" >/dev/null
if wait_healthy "$P-net-redis"; then
  docker run -d --name "$P-net-node" --network "$P-net" -p 127.0.0.1:0:8080 "$NODE_IMAGE" \
    node --store "redis://$P-net-redis:6379/0" >/dev/null
  if wait_healthy "$P-net-node"; then
    ok "network: node on redis://$P-net-redis:6379/0 healthy"
    port=$(host_port "$P-net-node" 8080)
    if noop_succeeds "$port" "$P-net-node"; then
      ok "network: noop task succeeded"
      check "network: the task's record is in Redis" \
        test "$(docker exec "$P-net-redis" redis-cli exists "taskmesh:task:$TASK_ID")" = 1
    else
      fail "network: noop task succeeded"
    fi
  else
    fail "network: node on redis healthy"
  fi
  check "network: node stops with exit 0" stops_cleanly "$P-net-node" 10
else
  fail "network: redis healthy"
fi
docker rm -f -v "$P-net-node" "$P-net-redis" >/dev/null 2>&1 || true
docker network rm "$P-net" >/dev/null

echo "== compose/docker-compose.single.yml (${COMPOSE[*]:-no compose tool})"
if [[ ${#COMPOSE[@]} -eq 0 ]]; then
  fail "compose: neither 'docker compose' nor docker-compose is installed"
else
  node="" redis=""
  if compose_single up -d >/dev/null 2>"/tmp/$P-compose.log"; then
    node=$(compose_single ps -q node)
    redis=$(compose_single ps -q redis)
  else
    sed 's/^/      /' "/tmp/$P-compose.log" >&2
  fi
  rm -f "/tmp/$P-compose.log"
  if [[ -n $node ]] && wait_healthy "$node"; then
    ok "compose: node healthy (redis healthy before it: depends_on service_healthy)"
    port=$(host_port "$node" 8080)
    check "compose: noop task succeeded via 127.0.0.1:$port" noop_succeeds "$port" "$node"
    check "compose: node store is redis://redis:6379/0" \
      bash -c "docker logs '$node' 2>&1 | grep -q '\"store\":\"redis://redis:6379/0\"'"
    check "compose: resource limits applied (memory, cpus, pids)" test \
      "$(docker inspect -f '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}' "$node" "$redis" | tr '\n' ' ')" \
      = "1073741824 2000000000 1024 536870912 1000000000 256 "
  else
    fail "compose: node healthy"
  fi
  if [[ -n $node ]]; then
    compose_single stop >/dev/null 2>&1
    check "compose: both services stopped with exit 0" test \
      "$(docker inspect -f '{{.State.ExitCode}}' "$node" "$redis" | tr '\n' ' ')" = "0 0 "
  fi
  compose_single down -v >/dev/null 2>&1
fi

echo
echo "verify-images: $passed passed, $failed failed"
[[ $failed == 0 ]]
