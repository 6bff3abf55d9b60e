#!/usr/bin/env bash
# One waiting-room on-sale of a boxoffice build, as docs/performance.md reports it: a fresh
# server (embedded SQLite, or a fresh PostgreSQL database), `loadtest --scenario waitingroom`
# with its /healthz baseline; prints one JSON line with the join rate, its ratio to /healthz,
# the join p99, the admission rate measured, the verdict, and the server's resident memory
# before and after the joins.
#
#   scripts/bench-waitingroom.sh LABEL path/to/boxoffice [USERS] [sqlite|postgres] [ADMIT_PER_MINUTE]
#
# USERS default 20000; ADMIT_PER_MINUTE default: the load tool's (everyone within --duration).
set -euo pipefail
label=$1
bin=$2
users=${3:-20000}
engine=${4:-sqlite}
per_minute=${5:-}
port=${BENCH_PORT:-18100}
data=$(mktemp -d /tmp/boxoffice-bench.XXXXXX)
db="bench_$$_$RANDOM"
cleanup() {
  rm -rf "$data"
  if [[ $engine == postgres ]]; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
database=()
if [[ $engine == postgres ]]; then
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >/dev/null
  database=(--database-url "postgres://postgres@127.0.0.1:5432/$db")
fi
export BOXOFFICE_JWT_SECRET=bench-secret-bench-secret-bench-secret-bench-secret-0123456789
export BOXOFFICE_LOAD_TEST_ACCOUNTS=on BOXOFFICE_RATE_LIMIT=off RUST_LOG=warn
export BOXOFFICE_ADMIN_EMAIL=admin@perf.test BOXOFFICE_ADMIN_PASSWORD=admin-password-1
"$bin" serve --data-dir "$data/data" "${database[@]}" --listen "127.0.0.1:$port" \
  >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
extra=()
[[ -n $per_minute ]] && extra=(--admit-per-minute "$per_minute")
"$bin" loadtest --target "http://127.0.0.1:$port" --scenario waitingroom --users "$users" \
  --concurrency 256 --seat-types GA:1000000 --baseline --json "${extra[@]}" >"$data/run.json"
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
kill "$pid"
wait "$pid" || true
python3 - "$label" "$engine" "$rss_before" "$rss_after" "$data/run.json" <<'PY'
import json, sys
label, engine, before, after, path = sys.argv[1:]
run = json.load(open(path))
figures = {f.get("name"): f.get("value") for f in run.get("figures", []) if isinstance(f, dict)}
print(json.dumps({"label": label, "engine": engine,
                  "joins_per_s": round(run["phase"]["requests_per_second"]),
                  "ratio": round(run["ratios"]["requests_per_second"], 3),
                  "p99_ms": run["phase"]["latency"]["p99_ms"], "verdict": run["verdict"],
                  "rss_mib_before": int(before) // 1024, "rss_mib_after": int(after) // 1024,
                  "figures": figures}))
PY
