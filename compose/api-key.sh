# Sourced by the compose scripts: `new_api_key` prints a fresh API key in the format of
# `taskmesh keys generate` (tm_<12 characters [a-z0-9]>_<32 hex digits>), without
# needing the binary; `ensure_env_file FILE` adds TASKMESH_CLUSTER_COOKIE and
# TASKMESH_ADMIN_KEY to FILE (compose/.env, git-ignored) when they are missing.
new_api_key() {
  local id secret
  id=$(head -c 1024 /dev/urandom | LC_ALL=C tr -dc 'a-z0-9' | cut -c1-12)
  secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  printf 'tm_%s_%s\n' "$id" "$secret"
}

ensure_env_file() {
  local file=$1
  touch "$file"
  chmod 600 "$file"
  if ! grep -q '^TASKMESH_CLUSTER_COOKIE=' "$file"; then
    echo "TASKMESH_CLUSTER_COOKIE=$(head -c 24 /dev/urandom | base64)" >>"$file"
    echo "wrote a new TASKMESH_CLUSTER_COOKIE to $file"
  fi
  if ! grep -q '^TASKMESH_ADMIN_KEY=' "$file"; then
    echo "TASKMESH_ADMIN_KEY=$(new_api_key)" >>"$file"
    echo "wrote a new TASKMESH_ADMIN_KEY (the cluster's bootstrap admin key) to $file"
  fi
}
