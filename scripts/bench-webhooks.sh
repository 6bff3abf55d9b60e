#!/usr/bin/env bash
# One on-sale run (the on-sale of scripts/bench-http.sh) with ENDPOINTS webhook endpoints (0 or 2)
# subscribed to booking.confirmed, answered 200 by a local receiver.
#   scripts/bench-webhooks.sh LABEL path/to/boxoffice ENDPOINTS [USERS]; EVENT=... changes the event type
set -euo pipefail
label=$1; bin=$2; endpoints=$3; users=${4:-30000}
port=18100; rport=18199
data=$(mktemp -d /tmp/boxoffice-bench.XXXXXX)
trap 'rm -rf "$data"' EXIT
export BOXOFFICE_JWT_SECRET=bench-secret-bench-secret-bench-secret-bench-secret-0123456789
export BOXOFFICE_LOAD_TEST_ACCOUNTS=on BOXOFFICE_RATE_LIMIT=off RUST_LOG=warn
export BOXOFFICE_ADMIN_EMAIL=admin@perf.test BOXOFFICE_ADMIN_PASSWORD=admin-password-1
python3 "$(dirname "$0")/webhook-receiver.py" $rport >"$data/receiver.out" &
rpid=$!
"$bin" serve --data-dir "$data/data" --listen "127.0.0.1:$port" --webhooks-allow-private >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
target="http://127.0.0.1:$port"
token=$(curl -fsS "$target/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"login":"admin@perf.test","password":"admin-password-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for i in $(seq 1 "$endpoints"); do
  curl -fsS "$target/api/v1/webhooks" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"url\":\"http://127.0.0.1:$rport/hook$i\",\"events\":[\"${EVENT:-booking.confirmed}\"]}" >/dev/null
done
"$bin" loadtest --target "$target" --users "$users" --concurrency 256 \
  --seat-types GA:1000000 --baseline --json >"$data/onsale.json"
read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
sleep 3
kill "$pid"; wait "$pid" || true
kill "$rpid"; wait "$rpid" || true
python3 - "$label" "$utime" "$stime" "$(getconf CLK_TCK)" "$data" "$endpoints" <<'PY'
import json, sys
label, utime, stime, tick, data, endpoints = sys.argv[1:]
run = json.load(open(f"{data}/onsale.json"))
received = open(f"{data}/receiver.out").read().strip()
print(json.dumps({"label": label, "endpoints": int(endpoints),
                  "onsale_rps": round(run["phase"]["requests_per_second"]),
                  "ratio": round(run["ratios"]["requests_per_second"], 3),
                  "p99_ms": run["phase"]["latency"]["p99_ms"], "verdict": run["verdict"],
                  "server_cpu_s": (int(utime) + int(stime)) / int(tick),
                  "deliveries_received_3s_after": int(received or 0)}))
PY
