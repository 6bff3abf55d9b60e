#!/usr/bin/env bash
# One on-sale of a boxoffice build on PostgreSQL, as docs/performance.md reports it: a fresh
# database, one `serve` process (auth, catalog, booking) connected over loopback TCP or the
# Unix socket, the on-sale with its /healthz baseline; prints one JSON line with the rate, the
# ratio to /healthz, the p99, the verdict and the server's CPU time.
#
#   scripts/bench-postgres.sh LABEL path/to/boxoffice tcp|socket [USERS]   (USERS default 20000)
#
# Needs PostgreSQL on 127.0.0.1:5432 and /var/run/postgresql with trust auth for `postgres`.
# Alternate builds and transports run after run: one run says little on a shared machine.
set -euo pipefail
label=$1
bin=$2
transport=$3
users=${4:-20000}
port=${BENCH_PORT:-18100}
db="bench_$$_$RANDOM"
data=$(mktemp -d /tmp/boxoffice-bench.XXXXXX)
cleanup() {
  rm -rf "$data"
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >/dev/null
case $transport in
  tcp) url="postgres://postgres@127.0.0.1:5432/$db" ;;
  socket) url="postgres://postgres@localhost/$db?host=/var/run/postgresql" ;;
  *) echo "transport must be tcp or socket" >&2; exit 2 ;;
esac
export BOXOFFICE_JWT_SECRET=bench-secret-bench-secret-bench-secret-bench-secret-0123456789
export BOXOFFICE_LOAD_TEST_ACCOUNTS=on BOXOFFICE_RATE_LIMIT=off RUST_LOG=warn
export BOXOFFICE_ADMIN_EMAIL=admin@perf.test BOXOFFICE_ADMIN_PASSWORD=admin-password-1
"$bin" serve --data-dir "$data/data" --database-url "$url" --listen "127.0.0.1:$port" \
  >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
"$bin" loadtest --target "http://127.0.0.1:$port" --users "$users" --concurrency 256 \
  --seat-types GA:1000000 --baseline --json >"$data/onsale.json"
read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
kill "$pid"
wait "$pid" || true
python3 - "$label" "$transport" "$utime" "$stime" "$(getconf CLK_TCK)" "$data/onsale.json" <<'PY'
import json, sys
label, transport, utime, stime, tick, path = sys.argv[1:]
run = json.load(open(path))
print(json.dumps({"label": label, "transport": transport,
                  "bookings_per_s": round(run["phase"]["requests_per_second"]),
                  "ratio": round(run["ratios"]["requests_per_second"], 3),
                  "p99_ms": run["phase"]["latency"]["p99_ms"], "verdict": run["verdict"],
                  "cpu_s": (int(utime) + int(stime)) / int(tick)}))
PY
