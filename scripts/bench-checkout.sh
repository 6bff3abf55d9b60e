#!/usr/bin/env bash
# One checkout measurement of a boxoffice build, as docs/performance.md reports it: a fresh
# server and data directory (holds of 30 s), the checkout scenario with its /healthz baseline;
# prints one JSON line with completed checkouts per second, all requests per second, their
# ratios to /healthz, the p99, the verdict and the server's CPU time for the whole run.
#
#   scripts/bench-checkout.sh LABEL path/to/boxoffice [USERS] [LOADTEST FLAGS...]
#     (USERS default 20000; e.g. --decline-share 0 --abandon-share 0 for hold + pay only)
#
# With PERF_OUT=FILE the server is recorded by `perf record --call-graph dwarf` for PERF_SECONDS
# (default 3) from PERF_DELAY seconds (default 12) after the load test starts: with 60 000 users
# the baseline and the set-up take about 4 s and the checkouts about 12 s.
set -euo pipefail
label=$1
bin=$2
users=${3:-20000}
shift $(( $# < 3 ? $# : 3 ))
port=${BENCH_PORT:-18100}
data=$(mktemp -d /tmp/boxoffice-bench.XXXXXX)
trap 'rm -rf "$data"' EXIT
export BOXOFFICE_JWT_SECRET=bench-secret-bench-secret-bench-secret-bench-secret-0123456789
export BOXOFFICE_LOAD_TEST_ACCOUNTS=on BOXOFFICE_RATE_LIMIT=off RUST_LOG=warn
export BOXOFFICE_ADMIN_EMAIL=admin@perf.test BOXOFFICE_ADMIN_PASSWORD=admin-password-1
"$bin" serve --data-dir "$data/data" --listen "127.0.0.1:$port" --hold-ttl 30 >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
"$bin" loadtest --target "http://127.0.0.1:$port" --scenario checkout --users "$users" \
  --concurrency 256 --seat-types GA:1000000 --baseline --json "$@" >"$data/checkout.json" &
loadtest=$!
if [[ -n "${PERF_OUT:-}" ]]; then
  # The baseline and the set-up come first; record while the checkouts run.
  sleep "${PERF_DELAY:-12}"
  perf record -F 499 --call-graph "${PERF_CALLGRAPH:-dwarf,16384}" -p "$pid" -o "$PERF_OUT" -- sleep "${PERF_SECONDS:-3}" 2>/dev/null
fi
wait "$loadtest"
read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
kill "$pid"
wait "$pid" || true
python3 - "$label" "$utime" "$stime" "$(getconf CLK_TCK)" "$data/checkout.json" <<'PY'
import json, sys
label, utime, stime, tick, path = sys.argv[1:]
run = json.load(open(path))
figures = {f["name"]: f["value"] for f in run["figures"]}
print(json.dumps({"label": label, "figures": figures,
                  "requests_ratio": round(run["ratios"]["requests_per_second"], 3),
                  "rps": round(run["phase"]["requests_per_second"]),
                  "p99_ms": run["phase"]["latency"]["p99_ms"], "verdict": run["verdict"],
                  "cpu_s": (int(utime) + int(stime)) / int(tick)}))
PY
