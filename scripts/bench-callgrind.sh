#!/usr/bin/env bash
# The instructions a boxoffice build executes for one on-sale, counted by callgrind: the same
# count for the same work whatever else the machine is doing, so two builds compare on a busy
# machine. The whole server process, from start to shutdown; run it with two user counts and
# take the difference for the cost of one more user (account, booking, email, verification).
#
#   scripts/bench-callgrind.sh path/to/boxoffice USERS
set -euo pipefail
bin=$1
users=$2
port=${BENCH_PORT:-18101}
data=$(mktemp -d /tmp/boxoffice-callgrind.XXXXXX)
trap 'rm -rf "$data"' EXIT
export BOXOFFICE_JWT_SECRET=bench-secret-bench-secret-bench-secret-bench-secret-0123456789
export BOXOFFICE_LOAD_TEST_ACCOUNTS=on BOXOFFICE_RATE_LIMIT=off RUST_LOG=warn
export BOXOFFICE_ADMIN_EMAIL=admin@perf.test BOXOFFICE_ADMIN_PASSWORD=admin-password-1
valgrind --tool=callgrind --callgrind-out-file="$data/callgrind.out" \
  "$bin" serve --data-dir "$data/data" --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.5
done
"$bin" loadtest --target "http://127.0.0.1:$port" --users "$users" --concurrency 64 \
  --seat-types GA:1000000 --json >"$data/onsale.json"
kill -INT "$pid"
wait "$pid" || true
verdict=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['verdict'])" "$data/onsale.json")
instructions=$(awk '/^(summary|totals):/ {print $2; exit}' "$data/callgrind.out")
echo "users=$users instructions=$instructions verdict=$verdict"
