#!/usr/bin/env bash
# One run of `boxoffice loadtest --scenario doors` on a fresh server and data directory, as
# docs/performance.md reports it: prints the loadtest's own report (scans/s, the ratio to the
# /healthz of the same run, the verdict) and the server's CPU time for the whole run.
#
#   scripts/bench-doors.sh LABEL path/to/boxoffice [USERS]   (USERS: tickets, default 60000)
#
# Alternate builds run after run (A B B A …): one run says little on a shared machine.
set -euo pipefail
label=$1
bin=$2
users=${3:-60000}
port=${BENCH_PORT:-18100}
data=$(mktemp -d /tmp/boxoffice-bench.XXXXXX)
trap 'rm -rf "$data"' EXIT
export BOXOFFICE_JWT_SECRET=bench-secret-bench-secret-bench-secret-bench-secret-0123456789
export BOXOFFICE_LOAD_TEST_ACCOUNTS=on BOXOFFICE_RATE_LIMIT=off RUST_LOG=warn
export BOXOFFICE_ADMIN_EMAIL=admin@perf.test BOXOFFICE_ADMIN_PASSWORD=admin-password-1
"$bin" serve --demo --data-dir "$data/data" --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
"$bin" loadtest --target "http://127.0.0.1:$port" --scenario doors --users "$users" \
  --concurrency 256 --seat-types GA:1000000 --baseline >"$data/doors.txt" 2>&1 || true
read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
kill "$pid"
wait "$pid" || true
echo "== $label"
grep -E -i "scans|ratio|healthz|verdict|PASS|FAIL" "$data/doors.txt" | head -20
echo "server CPU: $(( (utime + stime) / $(getconf CLK_TCK) )) s"
