#!/usr/bin/env bash
# The hot-path figures of docs/benchmarks.md ("What a task costs over a request"), each
# pair measured back to back in one run on the same machine, so they are ratios:
#
#   single   one node, embedded store: GET /health req/s (wrk, 64 connections), then
#            end-to-end no-op tasks/s from single POSTs (loadgen, 64 connections, every
#            202 after the fsync). Prints tasks/s ÷ health req/s and the node's CPU per
#            task.
#   cluster  one node on Redis, then three nodes on the same Redis with the 64
#            connections spread evenly over them (loadgen --target a,b,c): tasks/s,
#            node CPU per task (summed over the nodes) and the share of tasks each node
#            kept (taskmesh_dispatches_total{target="local"} ÷ all dispatches). Then a
#            burst posted to one node only, to show it still spreads.
#
# Usage: bash benches/scripts/hotpath.sh [single] [cluster]      (default: both)
# Environment:
#   OUT        where reports go     [target/bench-results/hotpath-<UTC time>]
#   DURATION   seconds of each load [10]
#   DATA_ROOT  parent of data dirs  [target/tmp] (a real disk: every 202 is fsynced)
#   WAIT_LOAD  start each run once the 1-minute load average is below this [1.5]
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-target/bench-results/hotpath-$(date -u +%Y%m%dT%H%M%SZ)}
DURATION=${DURATION:-10}
DATA_ROOT=${DATA_ROOT:-target/tmp}
WAIT_LOAD=${WAIT_LOAD:-1.5}
NODE=target/release/taskmesh
LOADGEN=target/release/loadgen
BASE_PORT=18280

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "redis-server is needed" >&2; exit 2; }
mkdir -p "$OUT" "$DATA_ROOT"
cargo build --release --locked -p taskmesh-node -p taskmesh-benches --bins
# API keys are on: every node started here is given this admin key, and loadgen and
# curl send it.
export TASKMESH_ADMIN_KEY TASKMESH_API_KEY
TASKMESH_ADMIN_KEY=$("$NODE" keys generate)
TASKMESH_API_KEY=$TASKMESH_ADMIN_KEY
{
  echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:  $(git rev-parse HEAD) $(git status --porcelain | grep -q . && echo '(dirty)')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
} | tee "$OUT/env.txt"

PIDS=()
DIRS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
  for d in "${DIRS[@]}"; do rm -rf "$d"; done
  DIRS=()
}
trap cleanup EXIT

ready() { # URL
  for _ in $(seq 1 500); do
    curl -sf -o /dev/null "$1/health/ready" && return 0
    sleep 0.02
  done
  echo "node at $1 not ready" >&2
  return 1
}

# node PORT FLAGS...: starts a node on 127.0.0.1:PORT; its pid is the last of PIDS.
node() {
  local port=$1
  shift
  local data
  data=$(mktemp -d -p "$DATA_ROOT" node-XXXXXX)
  DIRS+=("$data")
  TASKMESH_LOG=warn "$NODE" node --listen "127.0.0.1:$port" --data-dir "$data" "$@" \
    >>"$OUT/node-$port.log" 2>&1 &
  PIDS+=($!)
  ready "http://127.0.0.1:$port"
}

redis() { # PORT
  local dir
  dir=$(mktemp -d -p "$DATA_ROOT" redis-XXXXXX)
  DIRS+=("$dir")
  redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly yes \
    --appendfsync everysec --dir "$dir" >"$OUT/redis-$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

json() { # FILE EXPR: a figure from a loadgen JSON report
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

dispatches() { # PORT TARGET: the node's taskmesh_dispatches_total{target=TARGET}
  curl -s "http://127.0.0.1:$1/metrics" |
    awk -v t="target=\"$2\"" '$1 ~ /^taskmesh_dispatches_total/ && index($1, t) {s += $2} END {print s + 0}'
}

single() {
  local port=$BASE_PORT url=http://127.0.0.1:$BASE_PORT
  node "$port"
  local pid=${PIDS[-1]}
  echo "== single: GET /health, wrk -t2 -c64 -d${DURATION}s" | tee "$OUT/health.txt"
  wrk -t2 -c64 -d"${DURATION}s" "$url/health" | tee -a "$OUT/health.txt"
  local health
  health=$(awk '/^Requests\/sec/ {print $2}' "$OUT/health.txt")
  echo "== single: no-op single POSTs, 64 conns" | tee "$OUT/e2e.txt"
  "$LOADGEN" --target "$url" --node-pid "$pid" -c 64 --duration "$DURATION" \
    --wait-load-below "$WAIT_LOAD" --label "noop, single POSTs, 64 conns, embedded store" \
    --json-out "$OUT/e2e.json" | tee -a "$OUT/e2e.txt"
  cleanup
  local tps cpu_us
  tps=$(json "$OUT/e2e.json" "r['completion']['e2e_tasks_per_s']")
  cpu_us=$(json "$OUT/e2e.json" \
    "round(sum(n['cpu_s'] for n in r['nodes']) / r['submit']['tasks_accepted'] * 1e6, 1)")
  python3 - "$health" "$tps" "$cpu_us" <<'EOF' | tee "$OUT/single-summary.txt"
import sys
health, tps, cpu = map(float, sys.argv[1:])
print(f"GET /health: {health:,.0f} req/s; no-op tasks end to end: {tps:,.0f} tasks/s; "
      f"ratio {tps / health:.2f}; node CPU per task {cpu:.1f} us")
EOF
}

cluster() {
  local rport=$((BASE_PORT + 100))
  redis "$rport"
  local store="redis://127.0.0.1:$rport/0"
  local p1=$((BASE_PORT + 1)) p2=$((BASE_PORT + 2)) p3=$((BASE_PORT + 3))
  local c1=$((BASE_PORT + 11)) c2=$((BASE_PORT + 12)) c3=$((BASE_PORT + 13))

  # One node on Redis, for the CPU per task of a single node on the same store.
  node "$p1" --store "$store" --node-id solo
  local pid=${PIDS[-1]}
  "$LOADGEN" --target "http://127.0.0.1:$p1" --node-pid "$pid" -c 64 --duration "$DURATION" \
    --wait-load-below "$WAIT_LOAD" --label "noop, single POSTs, 64 conns, one node on Redis" \
    --json-out "$OUT/redis-single.json" | tee "$OUT/redis-single.txt"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  redis-cli -p "$rport" flushall >/dev/null

  local peers="127.0.0.1:$c1,127.0.0.1:$c2,127.0.0.1:$c3" nodes=()
  for i in 1 2 3; do
    local port=$((BASE_PORT + i)) cport=$((BASE_PORT + 10 + i))
    node "$port" --store "$store" --node-id "n$i" --cluster-listen "127.0.0.1:$cport" \
      --advertise "127.0.0.1:$cport" --cluster-cookie bench --peers "$peers"
    nodes+=("${PIDS[-1]}")
  done
  for _ in $(seq 1 100); do # every node sees both peers up
    local up=0
    for port in $p1 $p2 $p3; do
      up=$((up + $(curl -s -H "Authorization: Bearer $TASKMESH_API_KEY" "http://127.0.0.1:$port/v1/cluster" | grep -o '"state":"up"' | wc -l)))
    done
    [ "$up" -ge 9 ] && break
    sleep 0.2
  done
  local targets="http://127.0.0.1:$p1,http://127.0.0.1:$p2,http://127.0.0.1:$p3"
  "$LOADGEN" --target "$targets" --node-pid "${nodes[0]}" --node-pid "${nodes[1]}" \
    --node-pid "${nodes[2]}" -c 64 --duration "$DURATION" --wait-load-below "$WAIT_LOAD" \
    --label "noop, single POSTs, 64 conns spread over 3 nodes on one Redis" \
    --json-out "$OUT/redis-three.json" | tee "$OUT/redis-three.txt"
  local local_n=0 remote_n=0
  for port in $p1 $p2 $p3; do
    local_n=$((local_n + $(dispatches "$port" local)))
    remote_n=$((remote_n + $(dispatches "$port" remote)))
  done

  # A burst posted to one node: 300 sleeps of 200 ms, 16 at a time, all to node 1.
  local before=()
  for port in $p1 $p2 $p3; do before+=("$(dispatches "$port" local)"); done
  "$LOADGEN" --target "http://127.0.0.1:$p1" -c 16 --tasks 300 --kind sleep \
    --params '{"ms": 200}' --label "burst of 300 sleeps (200 ms) to node 1" \
    --json-out "$OUT/burst.json" > "$OUT/burst.txt"
  local ran
  ran=$(curl -s -H "Authorization: Bearer $TASKMESH_API_KEY" "http://127.0.0.1:$p2/v1/tasks?kind=sleep&status=succeeded&limit=1000" |
    grep -o '"node":"[^"]*"' | sort | uniq -c | tr '\n' ' ')
  cleanup

  python3 - "$OUT/redis-single.json" "$OUT/redis-three.json" "$local_n" "$remote_n" "$ran" \
    <<'EOF' | tee "$OUT/cluster-summary.txt"
import json, sys
one, three = (json.load(open(p)) for p in sys.argv[1:3])
local, remote, ran = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def per_task(r):
    return sum(n["cpu_s"] for n in r["nodes"]) / r["submit"]["tasks_accepted"] * 1e6
a, b = per_task(one), per_task(three)
print(f"one node on Redis:    {one['completion']['e2e_tasks_per_s']:,.0f} tasks/s, "
      f"node CPU per task {a:.1f} us")
print(f"three nodes on Redis: {three['completion']['e2e_tasks_per_s']:,.0f} tasks/s, "
      f"node CPU per task {b:.1f} us ({b / a:.2f}x one node)")
print(f"kept where they arrived: {local:,} of {local + remote:,} "
      f"({100 * local / max(1, local + remote):.1f} %)")
print(f"burst to node 1 ran on: {ran}")
EOF
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(single cluster)
for s in "${scenarios[@]}"; do
  "$s"
done
echo "reports in $OUT"
