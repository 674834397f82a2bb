#!/usr/bin/env bash
# benches/http.sh - GET /healthz requests per second on one server core: Surge's built-in
# route (`surge echo --threads 1`) against hyper 1 (benches/peers' hyper-health, one
# current-thread tokio runtime), in one sitting, paired by round (the order alternates).
#
# Each server runs alone on --server-core under `taskset`, wrk (Debian's `wrk`, HTTP/1.1
# keep-alive) on --client-core; each round prints wrk's requests/s and the server's CPU per
# request (utime+stime from /proc over the run: the fairer figure on a shared machine) for
# both, with the ratios Surge/hyper of its round; then the median ratios. Servers bind
# 127.0.0.1 and are stopped after each run.
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

# cpu_ticks PID: utime + stime of PID, in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run NAME: "requests/s cpu-µs-per-request" of one wrk run against server NAME, started fresh
run() {
  local port rps i pid t0 t1
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
  # taskset execs timeout; the server is timeout's child.
  pid=$(pgrep -P "$SERVER" | head -n 1)
  t0=$(cpu_ticks "$pid")
  rps=$(taskset -c "$CLIENT_CORE" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port/healthz" |
    awk '/^Requests\/sec:/ { print $2 }')
  t1=$(cpu_ticks "$pid")
  stop
  python3 -c "import os, sys; rps = float(sys.argv[1] or 0); cpu = (int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf('SC_CLK_TCK'); print(rps, cpu / (rps * float(sys.argv[4])) * 1e6 if rps else 0)" "$rps" "$t0" "$t1" "$DURATION"
}

echo "GET /healthz, $CONNECTIONS keep-alive connections, ${DURATION} s per run, server on core $SERVER_CORE, wrk on core $CLIENT_CORE"
ROWS=()
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order=(surge hyper); else order=(hyper surge); fi
  declare -A GOT=()
  for name in "${order[@]}"; do GOT[$name]=$(run "$name"); done
  ROWS+=("$round ${GOT[surge]} ${GOT[hyper]}")
done
printf '%s\n' "${ROWS[@]}" | python3 -c '
import statistics, sys
rps, cpu = [], []
for line in sys.stdin:
    n, s_rps, s_cpu, h_rps, h_cpu = line.split()
    s_rps, s_cpu, h_rps, h_cpu = map(float, (s_rps, s_cpu, h_rps, h_cpu))
    rps.append(s_rps / h_rps)
    cpu.append(s_cpu / h_cpu)
    print(f"round {n}: surge {s_rps:9.0f} req/s {s_cpu:6.2f} us CPU/req   hyper {h_rps:9.0f} req/s {h_cpu:6.2f} us CPU/req   "
          f"surge/hyper {rps[-1]:.3f} req/s, {cpu[-1]:.3f} CPU/req")
m = statistics.median
print(f"median surge/hyper over {len(rps)} rounds: req/s {m(rps):.3f} [{min(rps):.3f}-{max(rps):.3f}], "
      f"server CPU per request {m(cpu):.3f} [{min(cpu):.3f}-{max(cpu):.3f}]")
'
