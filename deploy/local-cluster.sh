#!/usr/bin/env bash
# A split boxoffice deployment on this machine, as plain processes on loopback:
# gateway, auth, catalog, notifications and two booking instances, on a fresh PostgreSQL database.
#
#   deploy/local-cluster.sh up       build (release), start everything, print the gateway URL last
#   deploy/local-cluster.sh down     stop every process and drop the database
#   deploy/local-cluster.sh status   which processes run, and where
#
# Environment (besides everything `boxoffice serve` reads, e.g. BOXOFFICE_ADMIN_EMAIL/_PASSWORD,
# BOXOFFICE_RATE_LIMIT, BOXOFFICE_ARGON2_*, BOXOFFICE_LOAD_TEST_ACCOUNTS, which every process gets):
#   BOXOFFICE_CLUSTER_POSTGRES  server to create the database on, its query kept for every process
#                               (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable:
#                               on loopback, TLS only costs CPU, 5-12 % of a booking instance's)
#   BOXOFFICE_CLUSTER_PORT      first of the consecutive ports (default 18080: the gateway)
#   BOXOFFICE_CLUSTER_BOOKINGS  how many booking instances (default 2)
#   BOXOFFICE_CLUSTER_DIR       keys, data, logs and mail (default target/local-cluster)
#   BOXOFFICE_CLUSTER_OWNERS    on (default): each concert's bookings and holds are made by one
#                               booking instance at a time (each gets --advertise-url); off: by
#                               whichever instance a request reaches
#   BOXOFFICE_CLUSTER_ANSWERS   on (default): the gateway gets Auth's public key and repeats
#                               Booking's sold-out answers itself; off: it forwards everything
#   BOXOFFICE_BIN               a boxoffice binary to use instead of building one
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${BOXOFFICE_CLUSTER_DIR:-$ROOT/target/local-cluster}"
SERVER="${BOXOFFICE_CLUSTER_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
BASE_PORT="${BOXOFFICE_CLUSTER_PORT:-18080}"
BOOKINGS="${BOXOFFICE_CLUSTER_BOOKINGS:-2}"
[[ "$BOOKINGS" =~ ^[1-9][0-9]?$ ]] || { echo "BOXOFFICE_CLUSTER_BOOKINGS must be 1..99" >&2; exit 2; }
OWNERS="${BOXOFFICE_CLUSTER_OWNERS:-on}"
[[ "$OWNERS" == on || "$OWNERS" == off ]] || { echo "BOXOFFICE_CLUSTER_OWNERS must be on or off" >&2; exit 2; }
ANSWERS="${BOXOFFICE_CLUSTER_ANSWERS:-on}"
[[ "$ANSWERS" == on || "$ANSWERS" == off ]] || { echo "BOXOFFICE_CLUSTER_ANSWERS must be on or off" >&2; exit 2; }
# Name, port offset and `--service` of every process, in start order.
PROCESSES=("auth 1 auth")
for ((i = 1; i <= BOOKINGS; i++)); do PROCESSES+=("booking-$i $((3 + i)) booking"); done
PROCESSES+=("catalog 2 catalog" "notifications 3 notifications" "gateway 0 gateway")

say() { printf '%s\n' "$*" >&2; }
die() { say "local-cluster: $*"; exit 1; }

url_of() { echo "http://127.0.0.1:$((BASE_PORT + $1))"; }

running() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

# The PostgreSQL URL of database $1 on $SERVER (the server URL with its database name replaced,
# its query, e.g. `?sslmode=disable`, kept).
database_url() {
  local without_query="${SERVER%%\?*}" query=""
  [[ "$SERVER" == *\?* ]] && query="?${SERVER#*\?}"
  echo "${without_query%/*}/$1$query"
}

psql_admin() { psql "$SERVER" -v ON_ERROR_STOP=1 -qAt -c "$1"; }

wait_ready() { # name url
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$2/readyz" 2>/dev/null; do
    running "$1" || die "$1 exited; see $STATE/logs/$1.log"
    ((SECONDS < deadline)) || die "$1 not ready at $2 after 60 s; see $STATE/logs/$1.log"
    sleep 0.2
  done
}

up() {
  command -v psql >/dev/null || die "psql (the PostgreSQL client) is needed to create the database"
  command -v curl >/dev/null || die "curl is needed to wait for the services"
  for entry in "${PROCESSES[@]}"; do
    read -r name _ <<<"$entry"
    running "$name" && die "$name is already running; run '$0 down' first"
  done
  local bin="${BOXOFFICE_BIN:-}"
  if [[ -z "$bin" ]]; then
    say "building boxoffice (release)…"
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p boxoffice --bin boxoffice >&2
    bin="$ROOT/target/release/boxoffice"
  fi
  rm -rf "$STATE"
  mkdir -p "$STATE/logs"
  "$bin" keygen --private-key "$STATE/jwt.pem" --public-key "$STATE/jwt.pub.pem" >/dev/null
  # Every Booking instance signs tickets with the same key, so any instance's door takes them.
  "$bin" keygen --private-key "$STATE/ticket.pem" --public-key "$STATE/ticket.pub.pem" >/dev/null
  local token
  token="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
  local database="boxoffice_cluster_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  psql_admin "CREATE DATABASE $database" || die "cannot create a database on $SERVER"
  echo "$database" >"$STATE/database"

  local auth booking catalog
  auth="$(url_of 1)"
  catalog="$(url_of 2)"
  booking="$(url_of 4)"
  for ((i = 2; i <= BOOKINGS; i++)); do booking+=",$(url_of $((3 + i)))"; done
  for entry in "${PROCESSES[@]}"; do
    read -r name offset service <<<"$entry"
    local args=(serve "--service=$service" "--listen=127.0.0.1:$((BASE_PORT + offset))"
      "--data-dir=$STATE/$name" "--database-url=$(database_url "$database")")
    case "$service" in
      auth) args+=("--jwt-key-file=$STATE/jwt.pem" "--trusted-proxies=127.0.0.1") ;;
      booking) args+=("--jwt-public-key-file=$STATE/jwt.pub.pem" "--auth-url=$auth" "--ticket-key-file=$STATE/ticket.pem")
        [[ "$OWNERS" == off ]] || args+=("--advertise-url=$(url_of "$offset")") ;;
      catalog) args+=("--jwt-public-key-file=$STATE/jwt.pub.pem" "--auth-url=$auth" "--booking-url=$booking") ;;
      notifications) args+=("--auth-url=$auth" "--booking-url=$booking" "--mail-dir=$STATE/mail") ;;
      gateway) args+=("--auth-url=$auth" "--catalog-url=$catalog" "--booking-url=$booking")
        [[ "$ANSWERS" == off ]] || args+=("--jwt-public-key-file=$STATE/jwt.pub.pem") ;;
    esac
    BOXOFFICE_SERVICE_TOKEN="$token" BOXOFFICE_LOG_FORMAT=json \
      nohup "$bin" "${args[@]}" </dev/null >"$STATE/logs/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
    wait_ready "$name" "$(url_of "$offset")"
    say "$name ready at $(url_of "$offset")"
  done
  say "emails go to $STATE/mail; logs are in $STATE/logs; stop with: $0 down"
  url_of 0
}

down() {
  # Whatever `up` started, whatever BOXOFFICE_CLUSTER_BOOKINGS says now: every pid file.
  local pidfile name names=()
  for pidfile in "$STATE"/*.pid; do
    [[ -e "$pidfile" ]] || continue
    name="$(basename "$pidfile" .pid)"
    names+=("$name")
    if running "$name"; then
      kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + 15))
  for name in "${names[@]}"; do
    while running "$name" && ((SECONDS < deadline)); do sleep 0.1; done
    if running "$name"; then
      say "$name did not stop within 15 s; killing it"
      kill -KILL "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    fi
    rm -f "$STATE/$name.pid"
  done
  if [[ -f "$STATE/database" ]]; then
    local database
    database="$(cat "$STATE/database")"
    psql_admin "DROP DATABASE IF EXISTS $database WITH (FORCE)" || say "could not drop $database"
    rm -f "$STATE/database"
  fi
  say "local cluster stopped (logs kept in $STATE/logs)"
}

status() {
  for entry in "${PROCESSES[@]}"; do
    read -r name offset _ <<<"$entry"
    if running "$name"; then
      echo "$name running (pid $(cat "$STATE/$name.pid")) at $(url_of "$offset")"
    else
      echo "$name stopped"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) say "usage: $0 up|down|status"; exit 2 ;;
esac
