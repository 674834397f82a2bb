#!/usr/bin/env bash
# benches/http.sh - GET /healthz requests per second on one server core: Surge's built-in
# route (`surge echo --threads 1`) against hyper 1 (benches/peers' hyper-health, one
# current-thread tokio runtime), in one sitting, paired by round (the order alternates).
#
# Each server runs alone on --server-core under `taskset`, wrk (Debian's `wrk`, HTTP/1.1
# keep-alive) on --client-core; each run prints wrk's requests/s and the ratio Surge/hyper of
# its round, then the median ratio. Servers bind 127.0.0.1 and are stopped after each run.
#
#   benches/http.sh                              # 5 rounds, 5 s runs, 50 connections
#   benches/http.sh --rounds 3 --duration 3 --connections 100 --server-core 0 --client-core 1
# Builds first (cargo build --release -p surge; benches/peers), unless --skip-build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS=5 DURATION=5 CONNECTIONS=50 SERVER_CORE=0 CLIENT_CORE=1 BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --connections) CONNECTIONS=$2; shift ;;
    --server-core) SERVER_CORE=$2; shift ;;
    --client-core) CLIENT_CORE=$2; shift ;;
    --skip-build) BUILD=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "benches/http.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v wrk >/dev/null || { echo "benches/http.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
if [ "$BUILD" = 1 ]; then
  cargo build --release -q -p surge
  cargo build --release -q --locked --manifest-path benches/peers/Cargo.toml
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SERVER=
stop() { [ -z "$SERVER" ] || { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=; }; }
trap stop EXIT

# run NAME: requests/s of one wrk run against server NAME, started fresh
run() {
  local port rps i
  port=$(free_port)
  case "$1" in
    surge) taskset -c "$SERVER_CORE" timeout 120 target/release/surge echo --listen "127.0.0.1:$port" --threads 1 --log warn & ;;
    hyper) taskset -c "$SERVER_CORE" timeout 120 benches/peers/target/release/hyper-health --listen "127.0.0.1:$port" --threads 1 --runtime current >/dev/null & ;;
  esac
  SERVER=$!
  for i in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  rps=$(taskset -c "$CLIENT_CORE" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port/healthz" |
    awk '/^Requests\/sec:/ { print $2 }')
  stop
  echo "${rps:-0}"
}

echo "GET /healthz, $CONNECTIONS keep-alive connections, ${DURATION} s per run, server on core $SERVER_CORE, wrk on core $CLIENT_CORE"
RATIOS=()
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order=(surge hyper); else order=(hyper surge); fi
  declare -A RPS=()
  for name in "${order[@]}"; do RPS[$name]=$(run "$name"); done
  ratio=$(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}')" "${RPS[surge]}" "${RPS[hyper]}")
  RATIOS+=("$ratio")
  printf 'round %d: surge %10.0f req/s   hyper %10.0f req/s   surge/hyper %s\n' "$round" "${RPS[surge]}" "${RPS[hyper]}" "$ratio"
done
python3 -c "import statistics, sys; r = [float(x) for x in sys.argv[1:]]; print(f'median surge/hyper {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f}) over {len(r)} rounds')" "${RATIOS[@]}"
