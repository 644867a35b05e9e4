#!/usr/bin/env bash
# Runs the load-generator scenarios behind docs/benchmarks.md, each against a fresh
# release node on a fresh data directory, and keeps every report (table + JSON).
#
# Usage: bash benches/scripts/measure.sh [scenario ...]
#   scenarios: single batch rtt open mc rss startup profile   (default: all but profile)
# Environment:
#   OUT        where reports go       [target/bench-results/<UTC time>]
#   DATA_ROOT  parent of data dirs    [target/tmp] (keep it on the real disk, not tmpfs:
#                                      every accepted task is fsynced)
#   PORT       node port              [18080]
#   WAIT_LOAD  start each run once the 1-minute load average is below this [1.5]
#   DURATION   seconds of each closed/open run [15]
#   RATES      open-loop request rates [2500 5000 10000 15000 18000]
#   REPEAT     runs of the single-POST scenario [3]
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
DATA_ROOT=${DATA_ROOT:-target/tmp}
PORT=${PORT:-18080}
WAIT_LOAD=${WAIT_LOAD:-1.5}
DURATION=${DURATION:-15}
RATES=${RATES:-2500 5000 10000 15000 18000}
REPEAT=${REPEAT:-3}
NODE=target/release/taskmesh
LOADGEN=target/release/loadgen
URL=http://127.0.0.1:$PORT
MC_PARAMS='{"s0": 100, "k": 100, "r": 0.05, "sigma": 0.2, "t": 1, "paths": 1000000, "seed": 7}'

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
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "kernel:  $(uname -sr)"
  echo "rustc:   $(rustc --version)"
} | tee "$OUT/env.txt"

NODE_PID=
DATA=
start_node() {
  DATA=$(mktemp -d -p "$DATA_ROOT" node-XXXXXX)
  TASKMESH_LOG=warn "$NODE" node --listen "127.0.0.1:$PORT" --data-dir "$DATA" "$@" \
    >>"$OUT/node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 1 500); do
    curl -sf -o /dev/null "$URL/health/ready" && return 0
    sleep 0.02
  done
  echo "node not ready" >&2
  return 1
}
stop_node() { # [SIGNAL]
  [ -n "$NODE_PID" ] || return 0
  kill "-${1:-TERM}" "$NODE_PID" 2>/dev/null || true
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=
  rm -rf "$DATA"
}
trap stop_node EXIT

# lg NAME FLAGS...: one loadgen run against the current node, report kept as NAME.{txt,json}.
lg() {
  local name=$1
  shift
  echo "== $name: loadgen $*" | tee "$OUT/$name.txt"
  "$LOADGEN" --target "$URL" --node-pid "$NODE_PID" --wait-load-below "$WAIT_LOAD" \
    --json-out "$OUT/$name.json" "$@" | tee -a "$OUT/$name.txt"
}

single() {
  for i in $(seq 1 "$REPEAT"); do
    start_node
    lg "e2e-single-$i" -c 64 --duration "$DURATION" \
      --label "noop, single POSTs, 64 conns, embedded store (run $i)"
    stop_node
  done
}

batch() {
  for c in 2 4; do
    start_node
    lg "e2e-batch1000-c$c" -c "$c" --batch 1000 --duration "$DURATION" \
      --label "noop, batches of 1000, $c conns, embedded store"
    stop_node
  done
}

rtt() {
  start_node
  lg rtt --mode rtt --tasks 1000 --warmup 50 --label "idle submit -> result (wait_ms)"
  stop_node
}

open() {
  for rate in $RATES; do
    start_node
    lg "open-$rate" --mode open --rate "$rate" -c 64 --duration "$DURATION" \
      --label "noop, open loop at $rate req/s"
    stop_node
  done
}

mc() {
  start_node
  lg mc-kernel-loop --mode kernel-loop --kind monte_carlo_option --params "$MC_PARAMS" \
    --tasks 1000 --warmup 10 -c 1 --label "kernel alone, sequential, in-process"
  lg mc-node -c 4 --kind monte_carlo_option --params "$MC_PARAMS" --tasks 1000 \
    --label "monte_carlo_option 1e6 paths through the node, 4 conns"
  stop_node
}

rss() {
  # One worker, held by a long sleep, so every noop stays queued.
  start_node --workers 1 --min-workers 1 --max-workers 1 --queue-capacity 200000
  sleep 2
  grep -E 'VmRSS|VmHWM' "/proc/$NODE_PID/status" | tee "$OUT/rss-idle.txt"
  lg rss-blocker --tasks 1 -c 1 --kind sleep --params '{"ms": 600000}' --verify none
  lg rss-100k-queued --tasks 100000 -c 2 --batch 1000 --verify none \
    --label "100k noops queued behind one busy worker"
  sleep 2
  grep -E 'VmRSS|VmHWM' "/proc/$NODE_PID/status" | tee "$OUT/rss-queued.txt"
  curl -s "$URL/metrics" | grep '^taskmesh_queue_depth' | tee -a "$OUT/rss-queued.txt"
  stop_node KILL # a graceful stop would wait out the sleeping task's grace period
}

startup() {
  "$LOADGEN" --mode startup --node-bin "$NODE" --runs 20 --wait-load-below "$WAIT_LOAD" \
    --json-out "$OUT/startup.json" | tee "$OUT/startup.txt"
}

profile() {
  # perf samples of the node (DWARF stacks: release builds keep no frame pointers) under
  # the single-POST and the batch load, grouped per thread by benches/scripts/fold.py.
  # Needs perf and perf_event_paranoid <= 2.
  local name flags
  for name in single batch; do
    if [ "$name" = single ]; then flags=(-c 64); else flags=(-c 2 --batch 1000); fi
    start_node
    perf record -F 299 --call-graph dwarf,16384 -p "$NODE_PID" -o "$OUT/perf-$name.data" \
      -- sleep 6 2>"$OUT/perf-$name.log" &
    local perf_pid=$!
    sleep 0.5
    lg "profile-$name" "${flags[@]}" --duration 5 --verify none
    wait "$perf_pid" || true
    for thread in taskmesh-store- tokio-rt-worker; do
      for mode in "" --callers; do
        echo "== $thread $mode"
        perf script -i "$OUT/perf-$name.data" --comm "$thread" 2>/dev/null |
          python3 benches/scripts/fold.py $mode
      done
    done | tee "$OUT/profile-$name-folded.txt"
    stop_node
  done
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(single batch rtt open mc rss startup)
for s in "${scenarios[@]}"; do
  "$s"
done
echo "reports in $OUT"
