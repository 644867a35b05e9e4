#!/usr/bin/env bash
# The cost of a Redis that fsyncs every acknowledged write: end-to-end no-op tasks/s of one
# release node on a local redis-server with `appendfsync everysec` (shipped) and with
# `appendfsync always`, alternated in one run on the same machine, and their ratio.
#
# Usage: bash benches/scripts/redis-fsync.sh
# Environment:
#   OUT         where reports go        [target/bench-results/redis-fsync-<UTC time>]
#   DATA_ROOT   parent of Redis's dirs  [target/tmp] (the real disk, not tmpfs: the point
#                                        is the fsync)
#   PORT        node port               [18080]
#   REDIS_PORT  redis-server port       [16379]
#   CONNS       loadgen connections     [64]
#   DURATION    seconds of each run     [15]
#   REPEAT      runs of each mode       [3]
#   WAIT_LOAD   start each run once the 1-minute load average is below this [1.5]
#   PROFILE     release or debug        [release] (debug only to try the script: its
#                                        figures are CPU-bound and hide the fsync)
#   BUILD       1 builds the binaries first, 0 uses the ones in target/ [1]
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-target/bench-results/redis-fsync-$(date -u +%Y%m%dT%H%M%SZ)}
DATA_ROOT=${DATA_ROOT:-target/tmp}
PORT=${PORT:-18080}
REDIS_PORT=${REDIS_PORT:-16379}
CONNS=${CONNS:-64}
DURATION=${DURATION:-15}
REPEAT=${REPEAT:-3}
WAIT_LOAD=${WAIT_LOAD:-1.5}
PROFILE=${PROFILE:-release}
NODE=target/$PROFILE/taskmesh
LOADGEN=target/$PROFILE/loadgen
URL=http://127.0.0.1:$PORT

mkdir -p "$OUT" "$DATA_ROOT"
if [ "$PROFILE" = release ]; then release=--release; else release=; fi
[ "${BUILD:-1}" = 0 ] || cargo build $release --locked -p taskmesh-node -p taskmesh-benches --bins
# API keys are on: every node started here is given this admin key, and loadgen and
# curl send it.
export TASKMESH_ADMIN_KEY TASKMESH_API_KEY
TASKMESH_ADMIN_KEY=$("$NODE" keys generate)
TASKMESH_API_KEY=$TASKMESH_ADMIN_KEY
{
  echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:  $(git rev-parse HEAD) $(git status --porcelain | grep -q . && echo '(dirty)')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "disk:    $(df -h "$DATA_ROOT" | awk 'NR==2 {print $1, $6}')"
  echo "redis:   $(redis-server --version)"
  echo "build:   $PROFILE"
} | tee "$OUT/env.txt"

REDIS_PID= NODE_PID= DIR= NODE_DATA=
stop_all() {
  [ -z "$NODE_PID" ] || { kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; }
  [ -z "$REDIS_PID" ] || { kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; }
  [ -z "$DIR" ] || rm -rf "$DIR"
  [ -z "$NODE_DATA" ] || rm -rf "$NODE_DATA"
  NODE_PID= REDIS_PID= DIR= NODE_DATA=
}
trap stop_all EXIT

# run MODE I: a fresh redis-server (AOF on, appendfsync MODE) and a fresh node on it,
# one closed-loop run of single no-op POSTs; prints the end-to-end tasks/s.
run() {
  local mode=$1 i=$2
  DIR=$(mktemp -d -p "$DATA_ROOT" redis-XXXXXX)
  NODE_DATA=$(mktemp -d -p "$DATA_ROOT" node-XXXXXX)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR" --save '' \
    --appendonly yes --appendfsync "$mode" --maxmemory-policy noeviction \
    --logfile redis.log --daemonize no >/dev/null 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 250); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.02; done
  TASKMESH_LOG=warn "$NODE" node --listen "127.0.0.1:$PORT" --data-dir "$NODE_DATA" \
    --store "redis://127.0.0.1:$REDIS_PORT/0" >>"$OUT/node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 1 500); do curl -sf -o /dev/null "$URL/health/ready" && break; sleep 0.02; done
  local name="$mode-$i"
  "$LOADGEN" --target "$URL" --node-pid "$NODE_PID" --wait-load-below "$WAIT_LOAD" \
    -c "$CONNS" --duration "$DURATION" --json-out "$OUT/$name.json" \
    --label "noop, single POSTs, $CONNS conns, redis appendfsync $mode (run $i)" \
    >"$OUT/$name.txt"
  redis-cli -p "$REDIS_PORT" info persistence | grep -E 'aof_enabled|aof_delayed_fsync' \
    >>"$OUT/$name.txt" || true
  stop_all
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["completion"]["e2e_tasks_per_s"])' \
    "$OUT/$name.json"
}

declare -A runs=([everysec]="" [always]="")
for i in $(seq 1 "$REPEAT"); do
  for mode in everysec always; do
    tps=$(run "$mode" "$i")
    echo "run $i appendfsync $mode: $tps tasks/s" | tee -a "$OUT/summary.txt"
    runs[$mode]+="$tps "
  done
done

python3 - "${runs[everysec]}" "${runs[always]}" <<'PY' | tee -a "$OUT/summary.txt"
import statistics, sys
everysec = [float(x) for x in sys.argv[1].split()]
always = [float(x) for x in sys.argv[2].split()]
m_e, m_a = statistics.median(everysec), statistics.median(always)
print(f"everysec: median {m_e:,.0f} tasks/s  (runs: {', '.join(f'{x:,.0f}' for x in everysec)})")
print(f"always:   median {m_a:,.0f} tasks/s  (runs: {', '.join(f'{x:,.0f}' for x in always)})")
print(f"always / everysec = {m_a / m_e:.2f}")
PY
echo "reports in $OUT"
