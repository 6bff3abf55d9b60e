#!/usr/bin/env bash
# Checks the running server against its own OpenAPI document (issue 15, item 2): the document must
# be valid OpenAPI 3.1, and schemathesis, with every check and every phase, must find nothing.
#
# Starts `boxoffice serve --demo` (debug build) on a free 127.0.0.1 port with a fresh data directory
# and rate limits off, signs in an admin (so the admin routes are exercised past their 403), runs
# schemathesis within a time budget, and stops the server. Exits non-zero on any failure.
#
# Environment: SCHEMATHESIS_MAX_TIME (seconds for the main run, default 150),
# SCHEMATHESIS_MAX_EXAMPLES (per operation and phase, default 20), SCHEMATHESIS_SEED (default 1, so
# a failure reproduces; set it empty for a random seed), CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

max_time=${SCHEMATHESIS_MAX_TIME:-150}
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-20}
seed=${SCHEMATHESIS_SEED-1}

echo "== python tools"
# pip installs for the user when the system's site is not writable: its scripts go there.
PATH="$(python3 -m site --user-base)/bin:$PATH"
export PATH
python3 -c 'import schemathesis' 2>/dev/null || python3 -m pip install --quiet 'schemathesis>=4.32,<5'
python3 -c 'import openapi_spec_validator' 2>/dev/null \
  || python3 -m pip install --quiet 'openapi-spec-validator>=0.9'
schemathesis --version

echo "== cargo build --workspace"
# The whole workspace, as `cargo test --workspace` built it just before: `-p boxoffice` alone
# unifies the dependencies' features differently and compiled most crates a second time.
cargo build --workspace --locked
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
binary="$target_dir/debug/boxoffice"

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A port nobody listens on now; the server binds it a moment later.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
admin_email=admin@schemathesis.test
admin_password=schemathesis-admin-password

echo "== boxoffice serve --demo on $base"
BOXOFFICE_RATE_LIMIT=off \
  BOXOFFICE_ADMIN_EMAIL=$admin_email \
  BOXOFFICE_ADMIN_PASSWORD=$admin_password \
  RUST_LOG=${RUST_LOG:-warn} \
  "$binary" serve --demo --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null

echo "== openapi-spec-validator (OpenAPI 3.1)"
curl -fsS "$base/api/v1/openapi.json" -o "$work/openapi.json"
openapi-spec-validator --schema 3.1 "$work/openapi.json"

# Prints the access token of a login.
token() {
  curl -fsS "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"login\": \"$1\", \"password\": \"$2\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
admin_token=$(token "$admin_email" "$admin_password")
curl -fsS "$base/api/v1/auth/register" -H 'Content-Type: application/json' \
  -d '{"email": "customer@schemathesis.test", "password": "schemathesis-customer", "full_name": "Customer"}' \
  >/dev/null
customer_token=$(token customer@schemathesis.test schemathesis-customer)

config="$PWD/.ci/schemathesis.toml"
run() {
  # From the scratch directory: schemathesis keeps its crash cache in the working directory.
  # Every check runs (schemathesis' default); `--checks all` is not given because it would
  # switch back on, for every operation, a check the config file turns off for one.
  (cd "$work" && schemathesis --config-file "$config" run "$work/openapi.json" \
    --url "$base" --max-examples "$max_examples" \
    ${seed:+--seed "$seed"} --no-color --output-truncate true \
    --report junit --report-dir "$work/report" "$@")
}

status=0
# Logging out ends the session of the token it is sent with; it runs last, on a token of its own.
echo "== schemathesis: every operation but logout, as an admin (${max_time}s at most)"
run --phases examples,coverage,fuzzing,stateful --max-time "$max_time" \
  --exclude-path /api/v1/auth/logout \
  -H "Authorization: Bearer $admin_token" || status=1
echo "== schemathesis: logout, as a customer"
run --phases examples,coverage,fuzzing --max-time 30 --include-path /api/v1/auth/logout \
  -H "Authorization: Bearer $customer_token" || status=1

if [[ $status -ne 0 ]]; then
  echo "schemathesis found failures; the server's log follows" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit $status
