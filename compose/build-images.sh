#!/usr/bin/env bash
# Builds taskmesh's container images with no container registry: every image starts from
# a Debian bookworm base made here with debootstrap from Debian's package mirror.
#
#   taskmesh/base:bookworm   debootstrap --variant=minbase, slimmed, `docker import`ed
#   taskmesh/node:latest     base + the host-built release `taskmesh` binary, non-root
#   taskmesh/redis:7         base + Debian's redis-server + compose/redis.conf, non-root
#   taskmesh/prometheus:latest  base + Debian's prometheus, non-root; only with
#                            --monitoring (or TASKMESH_MONITORING=1): the compose
#                            file's optional `monitoring` profile uses it. Not built by
#                            default, to keep the test command short (~40 s more the
#                            first time, the apt download of prometheus)
#
# Usage: compose/build-images.sh [--rebuild-base] [--only node|redis|prometheus]
#                                [--monitoring] [--help]
#
# Idempotent, and fast when nothing changed:
#   - the base is made once: skipped while the image exists with this script's recipe
#     version, re-imported from the cached rootfs tarball
#     (${TASKMESH_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskmesh}) when only the
#     image is missing (a new clone, `docker system prune -a`), debootstrapped only when
#     both are missing or with --rebuild-base;
#   - the binary is built by cargo on the host (its own incremental cache), against the
#     host's glibc: build on Debian bookworm (or older glibc), like the base;
#   - each image is built from a context directory under target/docker/ holding only its
#     Dockerfile and files (the binary, redis.conf), so the context is tiny, a change to
#     any other file of the repository invalidates nothing, and Docker's layer cache turns
#     an unchanged binary into a no-op.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
# DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security),
# TASKMESH_IMAGE_CACHE (the rootfs cache directory), CARGO (default cargo).
# Root is needed to install debootstrap and to run it (only when the base is made).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${TASKMESH_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskmesh}
# Bump when the base recipe (debootstrap options, slimming, config files) changes: an
# image or cached tarball of another version is rebuilt.
BASE_RECIPE=1
BASE_IMAGE=taskmesh/base:$SUITE
NODE_IMAGE=taskmesh/node:latest
REDIS_IMAGE=taskmesh/redis:7
PROMETHEUS_IMAGE=taskmesh/prometheus:latest
ROOTFS_TAR=$CACHE/rootfs-$SUITE-minbase-r$BASE_RECIPE.tar
CONTEXTS=$ROOT/target/docker

rebuild_base=0
only=""
monitoring=${TASKMESH_MONITORING:-0}
while [[ $# -gt 0 ]]; do
  case $1 in
    --rebuild-base) rebuild_base=1 ;;
    --monitoring) monitoring=1 ;;
    --only)
      only=${2:?--only needs node, redis or prometheus}
      shift
      ;;
    --only=*) only=${1#--only=} ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "unknown argument: $1 (see --help)" >&2
      exit 2
      ;;
  esac
  shift
done
case $only in "" | node | redis | prometheus) ;; *)
  echo "--only takes node, redis or prometheus, not '$only'" >&2
  exit 2
  ;;
esac

step() { printf '\n==> %s\n' "$*"; }
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_label() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null; }

command -v docker >/dev/null || {
  echo "docker is not installed" >&2
  exit 1
}

# --- base ------------------------------------------------------------------------------

# Trims a debootstrapped rootfs to what a container needs, and configures dpkg and apt so
# that images built on it (redis) stay small too. Same spirit as Debian's official images.
slim_rootfs() {
  local dir=$1
  # dpkg: never install docs, man pages, info or translations in images built on the base.
  cat >"$dir/etc/dpkg/dpkg.cfg.d/01-taskmesh-slim" <<'EOF'
# taskmesh/base: keep images small (see compose/build-images.sh).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  # apt: no recommends, no package cache left behind, no translated package lists.
  cat >"$dir/etc/apt/apt.conf.d/01-taskmesh-slim" <<'EOF'
// taskmesh/base: keep images small (see compose/build-images.sh).
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo "deb $MIRROR $SUITE main" >"$dir/etc/apt/sources.list"
  echo "deb $MIRROR $SUITE-updates main" >>"$dir/etc/apt/sources.list"
  echo "deb $SECURITY_MIRROR $SUITE-security main" >>"$dir/etc/apt/sources.list"
  # debootstrap installs the point release; add the updates and security fixes since.
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 0755 "$dir/usr/sbin/policy-rc.d"
  chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean'
  rm -f "$dir/usr/sbin/policy-rc.d"
  # Docker provides these per container.
  : >"$dir/etc/hostname"
  rm -f "$dir/etc/resolv.conf"
  # What a running container never reads.
  rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* \
    "$dir"/var/cache/debconf/*-old "$dir"/var/lib/dpkg/*-old \
    "$dir"/var/log/* "$dir"/var/tmp/* "$dir"/tmp/* \
    "$dir"/usr/share/info/* "$dir"/usr/share/man/* "$dir"/usr/share/lintian/* \
    "$dir"/usr/share/linda/*
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  mkdir -p "$dir/var/cache/apt/archives/partial" "$dir/var/lib/apt/lists/partial"
  chroot "$dir" chown _apt:root /var/cache/apt/archives/partial /var/lib/apt/lists/partial
  chmod 0700 "$dir/var/cache/apt/archives/partial" "$dir/var/lib/apt/lists/partial"
}

make_rootfs_tar() {
  if ! command -v debootstrap >/dev/null; then
    step "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap
  fi
  mkdir -p "$CACHE"
  local dir
  dir=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  # On any failure: show the end of the log, remove the half-made rootfs.
  # shellcheck disable=SC2064,SC2154  # expand $dir now (the trap names this directory)
  trap "rc=\$?; [[ \$rc == 0 ]] || tail -n 30 '$dir.log' >&2; rm -rf '$dir'; exit \$rc" EXIT
  step "debootstrap --variant=minbase $SUITE (once per machine; about a minute)"
  debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1
  slim_rootfs "$dir" >>"$dir.log" 2>&1
  tar --numeric-owner -C "$dir" -cf "$ROOTFS_TAR.part" .
  mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
  rm -rf "$dir" "$dir.log"
  trap - EXIT
  echo "cached $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

build_base() {
  if [[ $rebuild_base == 0 ]] && image_exists "$BASE_IMAGE" &&
    [[ $(image_label "$BASE_IMAGE" org.taskmesh.base-recipe) == "$BASE_RECIPE" ]]; then
    step "$BASE_IMAGE: up to date"
    return
  fi
  if [[ $rebuild_base == 1 || ! -s $ROOTFS_TAR ]]; then
    make_rootfs_tar
  fi
  step "importing $BASE_IMAGE from $ROOTFS_TAR"
  docker import \
    --change "LABEL org.taskmesh.base-recipe=$BASE_RECIPE" \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase, made locally by compose/build-images.sh\"" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    "$ROOTFS_TAR" "$BASE_IMAGE"
}

# --- node and redis --------------------------------------------------------------------

# Copies $1 to $2 only when the content differs, so an unchanged file keeps its mtime.
sync_file() {
  if ! cmp -s "$1" "$2"; then
    cp "$1" "$2"
  fi
}

build_node() {
  step "cargo build --release --locked -p taskmesh-node"
  (cd "$ROOT" && "${CARGO:-cargo}" build --release --locked -p taskmesh-node)
  local target_dir
  target_dir=$(cd "$ROOT" && "${CARGO:-cargo}" metadata --format-version 1 --no-deps |
    sed -E 's/.*"target_directory":"([^"]+)".*/\1/')
  local bin=$target_dir/release/taskmesh
  local ctx=$CONTEXTS/node
  mkdir -p "$ctx"
  # The image gets the binary without its debug info (the release profile keeps line
  # tables for backtraces; symbols stay, so a panic's backtrace still names functions).
  # target/release/taskmesh keeps everything, for symbolizing.
  strip --strip-debug -o "$ctx/taskmesh.new" "$bin"
  chmod 0755 "$ctx/taskmesh.new"
  sync_file "$ctx/taskmesh.new" "$ctx/taskmesh"
  rm -f "$ctx/taskmesh.new"
  sync_file "$ROOT/compose/node.Dockerfile" "$ctx/Dockerfile"
  step "docker build $NODE_IMAGE (context: $(du -sh "$ctx" | cut -f1))"
  docker build -q -t "$NODE_IMAGE" "$ctx"
  # The binary links the host's glibc dynamically: a host newer than bookworm (glibc 2.36)
  # makes a binary the base cannot load. Catch that here, not at `docker run`.
  if ! docker run --rm "$NODE_IMAGE" --version; then
    echo "the taskmesh binary does not run in $BASE_IMAGE: build on Debian bookworm (or a" \
      "host with glibc <= 2.36), or use the registry path, compose/Dockerfile" >&2
    exit 1
  fi
}

build_redis() {
  local ctx=$CONTEXTS/redis
  mkdir -p "$ctx"
  sync_file "$ROOT/compose/redis.Dockerfile" "$ctx/Dockerfile"
  sync_file "$ROOT/compose/redis.conf" "$ctx/redis.conf"
  step "docker build $REDIS_IMAGE"
  # The build runs apt-get inside a container: it needs Debian's mirror from there.
  docker build -q -t "$REDIS_IMAGE" "$ctx"
}

build_prometheus() {
  local ctx=$CONTEXTS/prometheus
  mkdir -p "$ctx"
  sync_file "$ROOT/compose/prometheus.Dockerfile" "$ctx/Dockerfile"
  step "docker build $PROMETHEUS_IMAGE"
  # Like redis: apt-get inside the build, from Debian's mirror.
  docker build -q -t "$PROMETHEUS_IMAGE" "$ctx"
}

build_base
[[ -n $only && $only != node ]] || build_node
# The cluster's secrets for compose/docker-compose.yml, made once (compose/.env is
# git-ignored): the cookie and the bootstrap admin key.
source "$ROOT/compose/api-key.sh"
ensure_env_file "$ROOT/compose/.env"
[[ -n $only && $only != redis ]] || build_redis
if [[ $only == prometheus || ($monitoring == 1 && -z $only) ]]; then
  build_prometheus
fi

step "images"
for image in "$BASE_IMAGE" "$NODE_IMAGE" "$REDIS_IMAGE" "$PROMETHEUS_IMAGE"; do
  if image_exists "$image"; then
    docker image inspect --format '{{.Size}} {{.Id}}' "$image" |
      awk -v name="$image" '{ printf "%-27s %6.1f MB  %s\n", name, $1 / 1e6, substr($2, 8, 12) }'
  fi
done
