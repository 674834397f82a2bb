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
#
# SATURATE=1: capacity instead of a fixed rate. Each run is closed loop (`fanout --window W
# --lean`): a publisher sends again only when one of its messages has reached every
# subscriber, so each server is offered all it takes with at most W messages per publisher
# on their way (nothing piles up in its queues), and the subscribers cost the load
# generator little (large reads, frames scanned in place). Per case and server it runs each
# W of WINDOWS and keeps the one with the most deliveries/s among those that lost nothing
# (reach 1, no stalls: past its capacity a server drops): the saturation figure, shown
# with the server's CPU (a core's worth when the server is the limit), the load
# generator's (its client threads' CPU time over the window, from its JSON: below one
# core, or the figure is the load generator's) and p50/p99 at that
# W. The table adds, per case, Surge's ratio to each peer, paired by round (median of the
# rounds' ratios, in deliveries/s per server core). No cluster case in this mode.
#
#   benches/fanout.sh                      # 3 rounds, rooms of 100 and 1000, 20 B and 1 KiB
#   ROUNDS=1 DURATION=2s benches/fanout.sh # quicker
#   CASES="100:20" SERVERS="surge tokio" benches/fanout.sh
#   SATURATE=1 benches/fanout.sh           # capacity; OUT=DIR ROUNDS=1 appends a round to DIR
# Env: ROUNDS (3), DURATION (3s), CASES ("100:20 100:1024 1000:20 1000:1024", room:bytes),
#   SERVERS ("surge tokio node"), CLUSTER (1: also the two-node case), DELIVERIES (offered
#   deliveries/s, 100000), PUBLISHERS (4), SERVER_CORE (0), CLIENT_CORE (1), SATURATE (0),
#   WINDOWS (per room: "1 8 64 256" up to 100 subscribers, "1 4 16 64" above; 4 publishers x
#   256 x 1 KiB is Surge's 1 MiB backpressure limit, so that run skips and is left out), OUT (bench-results/fanout-DATE; runs.tsv there is appended to).
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
SATURATE="${SATURATE:-0}"
WINDOWS="${WINDOWS:-}"
OUT="${OUT:-bench-results/fanout-$(date -u +%Y-%m-%d_%H%M%S)}"
mkdir -p "$OUT"
[ "$SATURATE" = 1 ] && CLUSTER=0
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

# measure LABEL ROOM SIZE PIDS WINDOW URL...: one fan-out run (WINDOW "-": at the offered
# rate); appends a line to $OUT/runs.tsv
measure() {
  local label=$1 room=$2 size=$3 pids=$4 window=$5
  shift 5
  local json="$OUT/$label-$room-$size-$RANDOM.json" secs pace
  if [ "$window" = - ]; then
    pace=(--rate $((DELIVERIES / room)))
  else
    pace=(--window "$window" --lean)
  fi
  secs=${DURATION%s}
  # The window opens after the connections (0.5 s + 0.2 ms each) and the 1 s warm-up.
  local opens
  opens=$(python3 -c "print(0.5 + 0.0002 * ($room + $PUBLISHERS) + 1.0 + 0.2)")
  taskset -c "$CLIENT_CORE" "$LOADGEN" fanout "$@" --subscribers "$room" --publishers "$PUBLISHERS" \
    "${pace[@]}" --size "$size" --duration "$DURATION" --warmup 1s --json "$json" >"$json.txt" &
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
  python3 - "$json" "$label" "$room" "$size" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" "$window" "$ROUND" <<'EOF' | tee -a "$OUT/runs.tsv"
import json, sys
path, label, room, size, c0, c1, t0, t1, hz, window, round_ = sys.argv[1:]
r = json.load(open(path))
f = r["fanout"]
cpu = (int(c1) - int(c0)) / int(hz)
wall = float(t1) - float(t0)
# Closed loop: what arrived in the window (sends and arrivals overlap its edges).
rate = r["msgs_per_sec"] if window == "-" else f["arrived_per_sec"]
ns = cpu * 1e9 / (rate * wall) if rate and cpu else float("nan")
print(f"{label}\t{room}\t{size}\t{rate:.0f}\t{r['latency_us']['p50']:.0f}\t{r['latency_us']['p99']:.0f}"
      f"\t{ns:.0f}\t{1e9 / ns if ns == ns else float('nan'):.0f}\t{cpu / wall:.2f}\t{f['reach']:.4f}\t{f['duplicates']}\t{f['reordered']}"
      f"\t{r['cpu']['client_s'] / r['measured_s']:.2f}\t{window}\t{f.get('stalls', 0)}\t{round_}")
EOF
}

[ -s "$OUT/runs.tsv" ] ||
  printf 'server\troom\tbytes\tdeliveries/s\tp50_us\tp99_us\tserver_ns/delivery\tdeliveries/s/core\tserver_cores\treach\tdup\treorder\tloadgen_cores\twindow\tstalls\tround\n' >"$OUT/runs.tsv"
cat "$OUT/runs.tsv"
# Rounds already in $OUT (an appended sitting numbers its rounds on).
FIRST=$(($(tail -n +2 "$OUT/runs.tsv" | cut -f16 | sort -n | tail -1 | grep -E '^[0-9]+$' || echo 0) + 1))
for ROUND in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
  round=$ROUND
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
      if [ "$SATURATE" = 1 ]; then
        windows=$WINDOWS
        [ -n "$windows" ] || if [ "$room" -le 100 ]; then windows="1 8 64 256"; else windows="1 4 16 64"; fi
        for window in $windows; do
          measure "$server" "$room" "$size" "$PID" "$window" "ws://127.0.0.1:$PORT/room"
        done
      else
        measure "$server" "$room" "$size" "$PID" - "ws://127.0.0.1:$PORT/room"
      fi
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
      measure surge-cluster "$room" "$size" "$a_pid $PID $REDIS" - "ws://127.0.0.1:$a_port/room" "ws://127.0.0.1:$PORT/room"
      kill "$a_pid" "$PID" "$REDIS"; wait "$a_pid" "$PID" "$REDIS" 2>/dev/null || true
    fi
  done
done

python3 - "$OUT/runs.tsv" <<'EOF' | tee "$OUT/results.md"
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
order = lambda key: (int(key[0]), int(key[1]), key[2])
fixed = [r for r in rows if len(r) < 14 or r[13] == "-"]
if fixed:
    runs = collections.defaultdict(list)
    for r in fixed:
        runs[(r[1], r[2], r[0])].append(r)
    print("| room | bytes | server | deliveries/s | p50 µs | p99 µs | server ns/delivery | deliveries/s per core | reach | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (room, size, server), rs in sorted(runs.items(), key=lambda kv: order(kv[0])):
        med = lambda i: statistics.median(float(r[i]) for r in rs)
        print(f"| {room} | {size} | {server} | {med(3):.0f} | {med(4):.0f} | {med(5):.0f} | {med(6):.0f} | {med(7):.0f} | {min(float(r[9]) for r in rs):.4f} | {len(rs)} |")
# Saturation: per server, case and round, the window with the most deliveries/s.
best = {}
for r in rows:
    if len(r) < 16 or r[13] == "-" or float(r[9]) < 1 or r[14] != "0":
        continue
    key = (r[1], r[2], r[0], r[15])
    if key not in best or float(r[3]) > float(best[key][3]):
        best[key] = r
if best:
    cases = collections.defaultdict(list)
    for (room, size, server, _), r in best.items():
        cases[(room, size, server)].append(r)
    print()
    print("| room | bytes | server | deliveries/s at saturation | server cores | load generator cores | deliveries/s per server core | p50 µs | p99 µs | window | reach | rounds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (room, size, server), rs in sorted(cases.items(), key=lambda kv: order(kv[0])):
        med = lambda i: statistics.median(float(r[i]) for r in rs)
        windows = "/".join(r[13] for r in sorted(rs, key=lambda r: int(r[15])))
        print(f"| {room} | {size} | {server} | {med(3):.0f} | {med(8):.2f} | {med(12):.2f} | {med(7):.0f} | {med(4):.0f} | {med(5):.0f} | {windows} | {min(float(r[9]) for r in rs):.4f} | {len(rs)} |")
    # Surge against each peer, per server core, paired by round.
    print()
    print("| room | bytes | Surge / peer | per server core, per round | median | deliveries/s, per round | median |")
    print("|---|---|---|---|---|---|---|")
    for (room, size, server) in sorted({k[:3] for k in best}, key=order):
        if server == "surge":
            continue
        rounds = [rnd for (rm, sz, sv, rnd) in sorted(best)
                  if (rm, sz, sv) == (room, size, server) and (room, size, "surge", rnd) in best]
        ratio = lambda i: [float(best[(room, size, "surge", rnd)][i]) / float(best[(room, size, server, rnd)][i]) for rnd in rounds]
        if rounds:
            core, raw = ratio(7), ratio(3)
            print(f"| {room} | {size} | surge / {server} | {', '.join(f'{x:.1f}' for x in core)} | {statistics.median(core):.1f}x"
                  f" | {', '.join(f'{x:.1f}' for x in raw)} | {statistics.median(raw):.1f}x |")
EOF
echo "fanout.sh: results in $OUT" >&2
