#!/usr/bin/env bash
# Validates the monitoring profile's configuration (run by tests/run.sh):
#   1. promtool: `check config` of prometheus.yml, `check rules` of alerts.yml, and the
#      unit tests of the rules (`test rules alerts.test.yml`);
#   2. the Grafana files: the dashboard JSON parses, its panels (row headers aside) all
#      have PromQL targets, and every expression is valid PromQL (promtool checks them as recording rules);
#      the provisioning YAML files parse;
#   3. every `taskmesh_*` metric and every label it is selected by, in alerts.yml and
#      the dashboard, is one a real node exports: the built binary is started on a free
#      loopback port with its embedded store, given work that makes the event-driven
#      series appear (a failing task with a retry, submissions refused as saturated,
#      and, for its external kind, an HTTP worker registered with curl that leases a
#      task and then stays silent until the lease expires), and its /metrics is compared. The few metrics only a cluster or a failure
#      produces are on an explicit allow-list below and checked against the metric
#      definitions in actors/src/metrics.rs instead;
#   4. only when the image taskmesh/prometheus exists (compose/build-images.sh
#      --monitoring) and TASKMESH_MONITORING_COMPOSE is not 0: the compose project with
#      the monitoring profile, two node replicas, and Prometheus' /api/v1/targets shows
#      both up (about 30 s).
# When promtool is missing, installs it (as root) from Debian's `prometheus` package.
# Environment: TASKMESH_BIN (default: target/debug/taskmesh, built if missing),
#              TASKMESH_MONITORING_COMPOSE (0 skips step 4), COMPOSE (as in smoke.sh),
#              TASKMESH_PORTS (step 4's node host ports, default 18291-18299),
#              PROMETHEUS_PORT (step 4's Prometheus host port, default 18290).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MON=$ROOT/compose/monitoring
cd "$ROOT"

step() { printf -- '-- %s\n' "$*"; }
die() {
  echo "monitoring check FAILED: $*" >&2
  exit 1
}
WORK=$(mktemp -d)
NODE_PID=""
cleanup() {
  if [[ -n $NODE_PID ]]; then
    kill "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. promtool ----------------------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1; then
  # Only promtool is wanted: take it from Debian's `prometheus` package without
  # installing the package (whose web UI dependencies are 230 MB) or its service.
  step "installing promtool from Debian's prometheus package into /usr/local/bin"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  (cd "$WORK" && apt-get download -qq prometheus 2>/dev/null)
  dpkg-deb -x "$WORK"/prometheus_*.deb "$WORK/deb"
  install -m 0755 "$WORK/deb/usr/bin/promtool" /usr/local/bin/promtool
fi
step "$(promtool --version 2>&1 | head -n1)"
promtool check config "$MON/prometheus.yml"
promtool check rules "$MON/alerts.yml"
(cd "$MON" && promtool test rules alerts.test.yml)

# --- 2. Grafana files -----------------------------------------------------------------
DASH=$MON/grafana/dashboards/taskmesh.json
step "dashboard $DASH"
python3 - "$DASH" "$WORK/dashboard-rules.yml" "$MON"/grafana/provisioning/*/*.yml <<'EOF'
import json, sys
dash_path, rules_path, *yamls = sys.argv[1:]
dash = json.load(open(dash_path))  # raises on invalid JSON
assert dash.get("uid") and dash.get("title"), "dashboard needs uid and title"
exprs = []
panels = dash.get("panels", [])
assert panels, "no panels"
for p in panels:
    if p.get("type") == "row":
        continue  # a row header groups the panels below it; it has no query
    targets = p.get("targets") or []
    assert targets, f"panel {p.get('title')!r} has no targets"
    for t in targets:
        assert t.get("expr"), f"panel {p.get('title')!r} has a target without expr"
        exprs.append((p["title"], t["expr"]))
for v in dash.get("templating", {}).get("list", []):
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    assert q and v.get("name"), "template variable without name or query"
# Every panel expression as a recording rule, for `promtool check rules` (PromQL syntax).
# $instance is the dashboard's multi-value variable: Grafana substitutes a regex.
with open(rules_path, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (_, e) in enumerate(exprs):
        e = e.replace("$instance", ".*")
        f.write(f"      - record: dashboard_expr_{i}\n        expr: {json.dumps(e)}\n")
# The provisioning files: YAML, which promtool does not read; check they parse when a
# YAML module is at hand, else at least that they are non-empty text with apiVersion 1.
try:
    import yaml
except ImportError:
    yaml = None
for y in yamls:
    text = open(y).read()
    if yaml:
        doc = yaml.safe_load(text)
        assert doc.get("apiVersion") == 1, f"{y}: apiVersion is not 1"
    else:
        assert "apiVersion: 1" in text, f"{y}: no apiVersion: 1"
print(f"   {len(panels)} panels, {len(exprs)} expressions, {len(yamls)} provisioning files"
      + ("" if yaml else " (no PyYAML: provisioning files only grepped)"))
EOF
promtool check rules "$WORK/dashboard-rules.yml" | sed 's/^/   /'

# --- 3. metric names against a running node -------------------------------------------
BIN=${TASKMESH_BIN:-$ROOT/target/debug/taskmesh}
if [[ ! -x $BIN ]]; then
  step "building $BIN"
  cargo build --locked -p taskmesh-node
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
EXT=monitoring_ext
step "starting $BIN on 127.0.0.1:$port (embedded store, one worker, queue capacity 1, external kind $EXT)"
# One worker and a queue of one: the third concurrent submission is refused `saturated`.
# The external kind's HTTP workers lose a lease after 500 ms of silence (the minimum).
"$BIN" node --listen "127.0.0.1:$port" --data-dir "$WORK/data" --log-format text \
  --test-kernels --workers 1 --min-workers 1 --max-workers 1 --queue-capacity 1 \
  --external-kinds "$EXT" --worker-lease-ms 500 \
  >"$WORK/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 100); do
  curl -sf "127.0.0.1:$port/health/ready" >/dev/null && break
  kill -0 "$NODE_PID" 2>/dev/null || die "the node exited: $(tail -n 5 "$WORK/node.log")"
  sleep 0.2
done
curl -sf "127.0.0.1:$port/health/ready" >/dev/null || die "the node is not ready after 20 s"
# API keys are on: the node wrote its admin key to its data directory.
KEY=$(cat "$WORK/data/admin.key") || die "the node wrote no $WORK/data/admin.key"
api() { curl -H "Authorization: Bearer $KEY" "$@"; }
post() {
  api -s -o /dev/null -w '%{http_code}' -X POST "127.0.0.1:$port/v1/tasks" \
    -H 'content-type: application/json' -d "$1"
}
# Whether the node's /metrics has a line matching $1 (via a file: `curl | grep -q`
# would fail under pipefail when grep stops reading early).
scraped() {
  curl -sf "127.0.0.1:$port/metrics" >"$WORK/scrape.txt" && grep -q -- "$1" "$WORK/scrape.txt"
}
# An HTTP worker of the external kind parks a poll that finds nothing (a poll wait),
# then leases a task and goes silent: the per-kind external series, a lease, and (after
# 500 ms) a lease expiry. The task has no retries, so the expiry fails it and it leaves
# the queue before the work below.
wid=$(api -sf -X POST "127.0.0.1:$port/v1/workers" -H 'content-type: application/json' \
  -d '{"name":"monitoring-check","kinds":["'"$EXT"'"],"slots":1}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["worker_id"])') ||
  die "registering an HTTP worker of $EXT failed"
api -sf -o /dev/null -X POST "127.0.0.1:$port/v1/workers/$wid/poll" \
  -H 'content-type: application/json' -d '{"max":1,"wait_ms":200}' ||
  die "the first poll of worker $wid failed"
code=$(post '{"kind":"'"$EXT"'","params":{"x":3},"max_retries":0}')
[[ $code == 202 ]] || die "a task of the external kind $EXT was answered $code"
leased=0
for _ in $(seq 10); do
  leased=$(api -sf -X POST "127.0.0.1:$port/v1/workers/$wid/poll" \
    -H 'content-type: application/json' -d '{"max":1,"wait_ms":1000}' |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["tasks"]))') ||
    die "the poll of worker $wid failed"
  [[ $leased == 1 ]] && break
done
[[ $leased == 1 ]] || die "the HTTP worker leased no $EXT task in 10 polls"
expiry="^taskmesh_external_lease_expiries_total{kind=\"$EXT\"} 1"
for _ in $(seq 100); do
  scraped "$expiry" && break
  sleep 0.1
done
scraped "$expiry" || die "the silent worker's lease did not expire within 10 s"
# A task that fails, is retried once, and ends failed: retries and outcome="failed".
post '{"kind":"fail","params":{"message":"monitoring check"},"max_retries":1}' >/dev/null
codes=""
for _ in 1 2 3 4; do
  codes+=" $(post '{"kind":"sleep","params":{"ms":300}}')"
done
[[ $codes == *503* ]] || die "no submission was refused with 503 (got$codes)"
# Wait until the failing task has finished (its retry waits ~200 ms of backoff).
for _ in $(seq 100); do
  scraped 'kind="fail",outcome="failed"' && break
  sleep 0.1
done
curl -sf "127.0.0.1:$port/metrics" >"$WORK/metrics.txt"
kill "$NODE_PID" && wait "$NODE_PID" 2>/dev/null || true
NODE_PID=""

step "metric names and labels in alerts.yml and the dashboard vs. the node's /metrics"
python3 - "$WORK/metrics.txt" "$ROOT/actors/src/metrics.rs" "$MON/alerts.yml" "$DASH" <<'EOF'
import json, re, sys
metrics_path, source_path, alerts_path, dash_path = sys.argv[1:]

# Metrics that a single node given the work above cannot show: a series appears with its
# first event, and these need peers (a cluster) or a failure of an actor or the store.
# They are checked against their definitions in actors/src/metrics.rs instead.
ALLOW_SOURCE_ONLY = {
    "taskmesh_peers": "cluster: set once the node knows a peer",
    "taskmesh_circuit_state": "cluster: set on a peer's first circuit transition",
    "taskmesh_circuit_transitions_total": "cluster: on a circuit transition",
    "taskmesh_remote_dispatch_seconds": "cluster: a dispatch acknowledged by a peer",
    "taskmesh_remote_dispatch_failures_total": "cluster: a dispatch a peer did not take",
    "taskmesh_actor_restarts_total": "an actor crashed and was restarted",
    "taskmesh_store_errors_total": "a task store operation failed",
}

# What the node exported: family name -> (type, set of label names).
families, types = {}, {}
for line in open(metrics_path):
    m = re.match(r"# TYPE (\S+) (\S+)", line)
    if m:
        types[m[1]] = m[2]
        continue
    if line.startswith("#") or not line.strip():
        continue
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
    name, labels = m[1], m[2] or ""
    fam = name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) == "histogram":
            fam = base
    names = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', labels)) - {"le"}
    families.setdefault(fam, set()).update(names)
assert families, "the node exported no metrics"

# The definitions in the source: "name", "help", &["label", ...].
source = open(source_path).read()
defined = {}
for m in re.finditer(r'"(taskmesh_[a-z0-9_]+)",\s*"[^"]*"(?:,\s*&\[([^\]]*)\])?', source):
    defined[m[1]] = set(re.findall(r'"([^"]+)"', m[2] or ""))
for name in ALLOW_SOURCE_ONLY:
    assert name in defined, f"allow-listed {name} is not defined in actors/src/metrics.rs"

def histogram(name):
    return families.get(name) is not None and types.get(name) == "histogram"

def resolve(ref):
    """Family name and its label names for a referenced series name, or None."""
    if ref in families:
        return ref, families[ref], "exported"
    for suffix in ("_bucket", "_sum", "_count"):
        base = ref[: -len(suffix)]
        if ref.endswith(suffix) and histogram(base):
            return base, families[base], "exported"
    for suffix in ("", "_bucket", "_sum", "_count"):
        base = ref[: len(ref) - len(suffix)] if suffix else ref
        if ref.endswith(suffix) and base in ALLOW_SOURCE_ONLY:
            if suffix and "seconds" not in base:
                return None  # only histograms have suffixes
            return base, defined[base], "source (" + ALLOW_SOURCE_ONLY[base] + ")"
    return None

texts = {alerts_path: open(alerts_path).read()}
dash = json.load(open(dash_path))
texts[dash_path] = "\n".join(
    t["expr"] for p in dash["panels"] for t in p.get("targets", []))
errors, seen = [], {}
for path, text in texts.items():
    for m in re.finditer(r"\b(taskmesh_[a-z0-9_]+)(\{[^}]*\})?", text):
        ref, selector = m[1], m[2] or ""
        hit = resolve(ref)
        if hit is None:
            errors.append(f"{path}: {ref} is not exported by the node")
            continue
        fam, labels, how = hit
        seen[fam] = how
        for label in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)', selector):
            if label not in labels and label not in ("instance", "job"):
                errors.append(f"{path}: {ref} has no label {label!r} (it has {sorted(labels)})")
for fam in sorted(seen):
    print(f"   {fam:45} {seen[fam]}")
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"   {len(seen)} metrics referenced, all known "
      f"({sum(1 for v in seen.values() if v == 'exported')} seen on the running node)")
EOF

# --- 4. the compose profile, when the Prometheus image was built ------------------------
if [[ ${TASKMESH_MONITORING_COMPOSE:-1} == 0 ]]; then
  step "compose profile: skipped (TASKMESH_MONITORING_COMPOSE=0)"
elif ! docker image inspect taskmesh/prometheus:latest >/dev/null 2>&1; then
  step "compose profile: skipped (no taskmesh/prometheus image; compose/build-images.sh --monitoring makes it)"
elif ! docker image inspect taskmesh/node:latest >/dev/null 2>&1 ||
  ! docker image inspect taskmesh/redis:7 >/dev/null 2>&1; then
  step "compose profile: skipped (no taskmesh/node or taskmesh/redis image; compose/build-images.sh makes them)"
else
  source "$ROOT/compose/compose-command.sh"
  project=taskmesh-moncheck
  export TASKMESH_PORTS=${TASKMESH_PORTS:-18291-18299}
  export PROMETHEUS_PORT=${PROMETHEUS_PORT:-18290}
  export TASKMESH_CLUSTER_COOKIE TASKMESH_ADMIN_KEY
  TASKMESH_CLUSTER_COOKIE=$(head -c 18 /dev/urandom | base64)
  source "$ROOT/compose/api-key.sh"
  TASKMESH_ADMIN_KEY=$(new_api_key)
  dc() { "${compose[@]}" -p "$project" --project-directory "$ROOT/compose" -f "$ROOT/compose/docker-compose.yml" --profile monitoring "$@"; }
  trap 'dc down -v --remove-orphans >/dev/null 2>&1 || true; cleanup' EXIT
  step "compose profile: ${compose[*]} --profile monitoring up -d --scale node=2 redis node prometheus"
  dc up -d --scale node=2 redis node prometheus >/dev/null 2>"$WORK/up.log" ||
    die "compose up: $(cat "$WORK/up.log")"
  up=0
  for _ in $(seq 60); do
    up=$(curl -sf "127.0.0.1:$PROMETHEUS_PORT/api/v1/targets?state=active" | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
print(sum(1 for t in targets if t["labels"]["job"] == "taskmesh-node" and t["health"] == "up"))' 2>/dev/null || echo 0)
    [[ $up -ge 2 ]] && break
    sleep 1
  done
  [[ $up -ge 2 ]] || die "Prometheus shows $up node targets up, expected 2"
  curl -sf "127.0.0.1:$PROMETHEUS_PORT/api/v1/rules" | grep -q '"TaskmeshNodeDown"' ||
    die "Prometheus did not load the alert rules"
  step "compose profile: Prometheus scrapes both replicas (DNS discovery), rules loaded"
  dc down -v --remove-orphans >/dev/null 2>&1
fi
echo "monitoring check: passed"
