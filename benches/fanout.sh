#!/usr/bin/env bash
# benches/fanout.sh - fan-out figures in one sitting: Surge's room server (`surge broadcast`)
# against a Node `ws` room (tests/servers/node_ws_room.js) and a tokio-tungstenite room on
# tokio::sync::broadcast (benches/peers: tungstenite-room, one current-thread runtime), then
# two Surge nodes sharing the room through a redis-server of its own.
#
# Each server runs on one core (taskset -c SERVER_CORE; for the cluster: both nodes and
# Redis there), surge-loadgen fanout on the other (CLIENT_CORE), at a fixed offered rate. Per
# run it records deliveries/s, delivery p50/p99 (CO-corrected, from the scheduled send) and
# the server's CPU time per delivery while measuring (utime+stime from /proc, over the
# measured window), so "deliveries/s per server core" = 1e9 / (ns per delivery) even where
# the load generator, not the server, sets the rate. Rounds interleave the servers (A,B,C,
# A,B,C...). Prints one line per run and a markdown table of medians.
#
#   benches/fanout.sh                      # 3 rounds, rooms of 100 and 1000, 20 B and 1 KiB
#   ROUNDS=1 DURATION=2s benches/fanout.sh # quicker
#   CASES="100:20" SERVERS="surge tokio" benches/fanout.sh
# Env: ROUNDS (3), DURATION (3s), CASES ("100:20 100:1024 1000:20 1000:1024", room:bytes),
#   SERVERS ("surge tokio node"), CLUSTER (1: also the two-node case), DELIVERIES (offered
#   deliveries/s, 100000), PUBLISHERS (4), SERVER_CORE (0), CLIENT_CORE (1).
# Build first (not timed): cargo build --release -p surge -p surge-loadgen;
#   cargo build --release --manifest-path benches/peers/Cargo.toml; tests/setup.sh (node, redis).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-3s}"
CASES="${CASES:-100:20 100:1024 1000:20 1000:1024}"
SERVERS="${SERVERS:-surge tokio node}"
CLUSTER="${CLUSTER:-1}"
DELIVERIES="${DELIVERIES:-100000}"
PUBLISHERS="${PUBLISHERS:-4}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
OUT="bench-results/fanout-$(date -u +%Y-%m-%d_%H%M%S)"
mkdir -p "$OUT"
LOADGEN=target/release/surge-loadgen
PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME CMD...: runs CMD on the server core, waits for "listening ...:PORT"; sets PORT, PID
start() {
  local name=$1 log="$OUT/$1.log"
  shift
  # Emptied first: the last run's "listening" line must not be read as this one's.
  : >"$log"
  # taskset execs the server: $! is the server itself (its CPU time is read from /proc).
  taskset -c "$SERVER_CORE" "$@" >>"$log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 100); do
    PORT=$(grep -oE '(listening (on )?(ws://)?127\.0\.0\.1:)[0-9]+' "$log" | grep -oE '[0-9]+$' | head -1 || true)
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  echo "fanout.sh: $name did not start:" >&2
  cat "$log" >&2
  return 1
}

# cpu_ticks PID...: utime+stime of the processes, clock ticks
cpu_ticks() {
  local total=0 p
  for p in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}

# measure LABEL ROOM SIZE PIDS URL...: one fan-out run; appends a line to $OUT/runs.tsv
measure() {
  local label=$1 room=$2 size=$3 pids=$4
  shift 4
  local rate json="$OUT/$label-$room-$size-$RANDOM.json" secs
  rate=$((DELIVERIES / room))
  secs=${DURATION%s}
  # The window opens after the connections (0.5 s + 0.2 ms each) and the 1 s warm-up.
  local opens
  opens=$(python3 -c "print(0.5 + 0.0002 * ($room + $PUBLISHERS) + 1.0 + 0.2)")
  taskset -c "$CLIENT_CORE" "$LOADGEN" fanout "$@" --subscribers "$room" --publishers "$PUBLISHERS" \
    --rate "$rate" --size "$size" --duration "$DURATION" --warmup 1s --json "$json" >"$json.txt" &
  local lg=$!
  sleep "$opens"
  # shellcheck disable=SC2086
  local t0 c0 t1 c1
  t0=$(date +%s.%N)
  c0=$(cpu_ticks $pids)
  sleep "$(python3 -c "print($secs - 0.4)")"
  # shellcheck disable=SC2086
  c1=$(cpu_ticks $pids)
  t1=$(date +%s.%N)
  wait "$lg"
  python3 - "$json" "$label" "$room" "$size" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" <<'EOF' | tee -a "$OUT/runs.tsv"
import json, sys
path, label, room, size, c0, c1, t0, t1, hz = sys.argv[1:]
r = json.load(open(path))
f = r["fanout"]
cpu = (int(c1) - int(c0)) / int(hz)
wall = float(t1) - float(t0)
rate = r["msgs_per_sec"]
ns = cpu * 1e9 / (rate * wall) if rate and cpu else float("nan")
print(f"{label}\t{room}\t{size}\t{rate:.0f}\t{r['latency_us']['p50']:.0f}\t{r['latency_us']['p99']:.0f}"
      f"\t{ns:.0f}\t{1e9 / ns if ns == ns else float('nan'):.0f}\t{cpu / wall:.2f}\t{f['reach']:.4f}\t{f['duplicates']}\t{f['reordered']}")
EOF
}

printf 'server\troom\tbytes\tdeliveries/s\tp50_us\tp99_us\tserver_ns/delivery\tdeliveries/s/core\tserver_cores\treach\tdup\treorder\n' | tee "$OUT/runs.tsv"
for round in $(seq "$ROUNDS"); do
  echo "# round $round" >&2
  for case in $CASES; do
    room=${case%%:*} size=${case##*:}
    for server in $SERVERS; do
      case "$server" in
        surge) start surge target/release/surge broadcast --listen 127.0.0.1:0 --threads 1 --log info ;;
        tokio) start tokio benches/peers/target/release/tungstenite-room --listen 127.0.0.1:0 --threads 1 --runtime current ;;
        node) start node node tests/servers/node_ws_room.js 0 600 ;;
        *) echo "fanout.sh: unknown server $server" >&2; exit 2 ;;
      esac
      measure "$server" "$room" "$size" "$PID" "ws://127.0.0.1:$PORT/room"
      kill "$PID"; wait "$PID" 2>/dev/null || true
    done
    if [ "$CLUSTER" = 1 ] && [ "$room" = 100 ] && [ "$size" = 20 ]; then
      rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      taskset -c "$SERVER_CORE" redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
      REDIS=$!
      PIDS+=("$REDIS")
      sleep 0.3
      start node-a target/release/surge broadcast --listen 127.0.0.1:0 --threads 1 --cluster "redis://127.0.0.1:$rport" --log info
      a_pid=$PID a_port=$PORT
      start node-b target/release/surge broadcast --listen 127.0.0.1:0 --threads 1 --cluster "redis://127.0.0.1:$rport" --log info
      measure surge-cluster "$room" "$size" "$a_pid $PID $REDIS" "ws://127.0.0.1:$a_port/room" "ws://127.0.0.1:$PORT/room"
      kill "$a_pid" "$PID" "$REDIS"; wait "$a_pid" "$PID" "$REDIS" 2>/dev/null || true
    fi
  done
done

python3 - "$OUT/runs.tsv" <<'EOF' | tee "$OUT/results.md"
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
runs = collections.defaultdict(list)
for r in rows:
    runs[(r[1], r[2], r[0])].append(r)
print("| room | bytes | server | deliveries/s | p50 µs | p99 µs | server ns/delivery | deliveries/s per core | reach | runs |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (room, size, server), rs in sorted(runs.items(), key=lambda kv: (int(kv[0][0]), int(kv[0][1]), kv[0][2])):
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    print(f"| {room} | {size} | {server} | {med(3):.0f} | {med(4):.0f} | {med(5):.0f} | {med(6):.0f} | {med(7):.0f} | {min(float(r[9]) for r in rs):.4f} | {len(rs)} |")
EOF
echo "fanout.sh: results in $OUT" >&2
