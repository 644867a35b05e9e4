#!/usr/bin/env bash
# Runs every test of taskmesh, installing what the tests need first.
# Usage: bash tests/run.sh        (this is what CI runs, via .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

if ! command -v redis-server >/dev/null 2>&1; then
  step "installing redis-server (the Redis store tests start their own on loopback)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends redis-server
  # Tests start their own servers on free ports; the packaged service is not needed.
  (service redis-server stop || true) >/dev/null 2>&1
fi
redis-server --version

if ! command -v openssl >/dev/null 2>&1; then
  step "installing openssl (compose/tls-certs.sh makes the TLS variant's test certificates)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssl
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (the black-box tests run the real binary)"
cargo build --workspace --all-targets --locked

step "container images (built locally, no registry needed), their checks, and a 3-replica compose smoke"
bash compose/build-images.sh
bash compose/verify-images.sh
bash compose/smoke.sh
bash compose/tls-smoke.sh # the TLS variant: TLS Redis with an ACL user, mutual TLS between nodes, HTTPS
bash compose/monitoring/check.sh # promtool, dashboard PromQL, metric names vs. a running node

step "chaos: kill-random against a 3-node compose cluster (the loopback scenarios run with the tests)"
source compose/compose-command.sh
./target/debug/chaos run kill-random --backend compose --compose "${compose[*]}" --out target/chaos-reports

step "tests"
cargo nextest run --workspace --locked --no-fail-fast

step "python worker client (kernels/python): installed with pip into a venv; unit tests against an in-memory fake node, and end to end through the real node"
# The venv is kept under target/ and reused; the install replaces the previous one. The
# build leaves build/ and *.egg-info in kernels/python (git-ignored): build/ goes first, so
# a module deleted from the source never lingers in the installed package.
[ -x target/pyvenv/bin/python ] || python3 -m venv target/pyvenv
rm -rf kernels/python/build
target/pyvenv/bin/python -m pip install --quiet --disable-pip-version-check ./kernels/python
TASKMESH_BIN=target/debug/taskmesh target/pyvenv/bin/python -m unittest discover -s kernels/python/tests -v

step "schemathesis (pinned, into the same venv): generated requests for every operation of /v1/openapi.json against a live node with a key; no 5xx, no answer the document does not describe"
bash tests/schemathesis.sh
