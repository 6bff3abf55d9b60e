#!/usr/bin/env bash
# Scale-out measured honestly on a small machine: the split deployment (deploy/local-cluster.sh)
# with 1, 2 and 3 booking instances, each held to a CPU quota of its own (a cgroup v1 `cpu`
# group per instance: QUOTA_US of every 100 000 µs), so that the instances — not the machine's
# shared cores — are what runs out. For each count: two on-sales at once, each its own concert
# (two load tools in parallel, USERS users each), and one hot concert (one load tool, 2×USERS
# users). Prints one JSON line per run: instances, shape, bookings/s (summed over the load
# tools), p99, the share of CPU periods each instance spent throttled (near 1: its quota is the
# limit), verdicts. BOXOFFICE_CLUSTER_OWNERS=off compares with every instance selling every
# concert.
#
#   scripts/bench-scaling.sh path/to/boxoffice [QUOTA_US] [USERS] [COUNTS]
#     QUOTA_US default 30000 (0.3 of a core per instance), USERS default 5000, COUNTS "1 2 3";
#     PERIOD_US (environment, default 100000) the period the quota is of: a shorter one (10000,
#     with a tenth of the quota) freezes an instance that used its quota for less long
#
# Needs root (to write /sys/fs/cgroup/cpu), PostgreSQL on 127.0.0.1:5432, psql and curl.
set -euo pipefail
bin=$(realpath "$1")
quota=${2:-30000}
users=${3:-5000}
counts=${4:-"1 2 3"}
root="$(cd "$(dirname "$0")/.." && pwd)"
cgroups=/sys/fs/cgroup/cpu
[[ -w $cgroups ]] || { echo "bench-scaling: $cgroups is not writable (root and cgroup v1 needed)" >&2; exit 2; }
state=$(mktemp -d /tmp/boxoffice-scaling.XXXXXX)
export BOXOFFICE_BIN=$bin BOXOFFICE_CLUSTER_DIR=$state/cluster BOXOFFICE_CLUSTER_PORT=${BENCH_PORT:-18300}
export BOXOFFICE_RATE_LIMIT=off BOXOFFICE_LOAD_TEST_ACCOUNTS=on RUST_LOG=warn
export BOXOFFICE_ADMIN_EMAIL=admin@perf.test BOXOFFICE_ADMIN_PASSWORD=admin-password-1
cleanup() {
  "$root/deploy/local-cluster.sh" down >/dev/null 2>&1 || true
  for group in "$cgroups"/boxoffice-bench-*; do
    [[ -d $group ]] && rmdir "$group" 2>/dev/null || true
  done
  rm -rf "$state"
}
trap cleanup EXIT

# Moves booking instance $1's process into a CPU group of its own with the quota.
cap() {
  local group="$cgroups/boxoffice-bench-$1"
  mkdir -p "$group"
  echo "${PERIOD_US:-100000}" >"$group/cpu.cfs_period_us"
  echo "$quota" >"$group/cpu.cfs_quota_us"
  cat "$state/cluster/booking-$1.pid" >"$group/cgroup.procs"
}

# One load tool against the gateway; its JSON report into $2.
# A failed verdict does not stop the script: the summary prints it with the failed checks.
onsale() {
  "$bin" loadtest --target "$1" --users "$3" --concurrency 128 --seat-types GA:1000000 \
    --json >"$2" || true
}

# "periods throttled" of every capped instance's group, one pair per line (cgroup v1 cpu.stat).
throttling() { # instances
  for ((i = 1; i <= $1; i++)); do
    awk '/^nr_periods/ {p = $2} /^nr_throttled/ {t = $2} END {print p, t}' \
      "$cgroups/boxoffice-bench-$i/cpu.stat"
  done
}

summary() { # instances shape throttling-before throttling-after report...
  local instances=$1 shape=$2 before=$3 after=$4
  shift 4
  python3 - "$instances" "$shape" "$quota" "$before" "$after" "$@" <<'PY'
import json, sys
instances, shape, quota, before, after, *paths = sys.argv[1:]
runs = [json.load(open(path)) for path in paths]
pairs = lambda text: [tuple(map(int, line.split())) for line in text.splitlines()]
# The share of CPU periods in which each instance used up its quota: near 1, the instance's CPU
# is the limit; well below, something else is.
throttled = [round((t1 - t0) / max(p1 - p0, 1), 2)
             for (p0, t0), (p1, t1) in zip(pairs(before), pairs(after))]
print(json.dumps({"instances": int(instances), "shape": shape, "quota_us": int(quota),
                  "bookings_per_s": round(sum(r["phase"]["requests_per_second"] for r in runs)),
                  "p99_ms": max(r["phase"]["latency"]["p99_ms"] for r in runs),
                  "throttled": throttled,
                  "verdicts": [r["verdict"] for r in runs],
                  "failed": [c for r in runs for c in r["checks"] if not c.get("passed", True)]}))
PY
}

for n in $counts; do
  if ! gateway=$(BOXOFFICE_CLUSTER_BOOKINGS=$n "$root/deploy/local-cluster.sh" up 2>"$state/up.log" | tail -1); then
    cat "$state/up.log" >&2
    exit 1
  fi
  for ((i = 1; i <= n; i++)); do cap "$i"; done
  before=$(throttling "$n")
  onsale "$gateway" "$state/a.json" "$users" &
  first=$!
  onsale "$gateway" "$state/b.json" "$users"
  wait "$first"
  summary "$n" two-concerts "$before" "$(throttling "$n")" "$state/a.json" "$state/b.json"
  before=$(throttling "$n")
  onsale "$gateway" "$state/hot.json" $((users * 2))
  summary "$n" one-hot-concert "$before" "$(throttling "$n")" "$state/hot.json"
  "$root/deploy/local-cluster.sh" down >/dev/null 2>&1
  for ((i = 1; i <= n; i++)); do rmdir "$cgroups/boxoffice-bench-$i" 2>/dev/null || true; done
done
