# Sourced by the scripts that drive compose: sets the array `compose` to the Compose tool
# to use: $COMPOSE if set (e.g. COMPOSE="docker-compose"), else the `docker compose`
# plugin if present, else the standalone `docker-compose`.
if [[ -n "${COMPOSE:-}" ]]; then
  read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
