#!/usr/bin/env bash
# One measurement of a boxoffice build over HTTP, as docs/performance.md reports them: a fresh
# server and data directory, an on-sale (every user books once), then the sold-out scenario on
# the same server, both with their /healthz baseline; prints one JSON line with the rates, the
# ratios to /healthz, the p99s, the verdicts and the server's CPU time for the whole run.
#
#   scripts/bench-http.sh LABEL path/to/boxoffice [USERS]   (USERS: on-sale users, default 30000)
#
# Alternate builds run after run (A B B A …) and compare medians: one run says little on a
# shared machine.
set -euo pipefail
label=$1
bin=$2
users=${3:-30000}
port=${BENCH_PORT:-18100}
data=$(mktemp -d /tmp/boxoffice-bench.XXXXXX)
trap 'rm -rf "$data"' EXIT
export BOXOFFICE_JWT_SECRET=bench-secret-bench-secret-bench-secret-bench-secret-0123456789
export BOXOFFICE_LOAD_TEST_ACCOUNTS=on BOXOFFICE_RATE_LIMIT=off RUST_LOG=warn
export BOXOFFICE_ADMIN_EMAIL=admin@perf.test BOXOFFICE_ADMIN_PASSWORD=admin-password-1
"$bin" serve --data-dir "$data/data" --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
target="http://127.0.0.1:$port"
"$bin" loadtest --target "$target" --users "$users" --concurrency 256 \
  --seat-types GA:1000000 --baseline --json >"$data/onsale.json"
"$bin" loadtest --target "$target" --scenario soldout --users 2000 --concurrency 256 \
  --requests 200000 --baseline --json >"$data/soldout.json"
read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
kill "$pid"
wait "$pid" || true
python3 - "$label" "$utime" "$stime" "$(getconf CLK_TCK)" "$data" <<'PY'
import json, sys
label, utime, stime, tick, data = sys.argv[1:]
def figures(name):
    run = json.load(open(f"{data}/{name}.json"))
    return {"rps": round(run["phase"]["requests_per_second"]),
            "ratio": round(run["ratios"]["requests_per_second"], 3),
            "p99_ms": run["phase"]["latency"]["p99_ms"], "verdict": run["verdict"]}
print(json.dumps({"label": label, "onsale": figures("onsale"), "soldout": figures("soldout"),
                  "cpu_s": (int(utime) + int(stime)) / int(tick)}))
PY
