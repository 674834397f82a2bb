#!/usr/bin/env bash
# The load generator's own cost, two builds side by side: client CPU per message at 20 B with
# 1 and 16 in flight (paired over alternating rounds against one server), and memory per
# client connection at 10,000 connections.
#
#   benches/loadgen/self-cost.sh BASE_LOADGEN NEW_LOADGEN SURGE [ROUNDS]
#
# The server (SURGE, `surge echo`, one thread) runs on core 0, each load generator on core 1.
# Every process binds 127.0.0.1, runs under `timeout`, and is killed when the script ends.
set -euo pipefail
base=$1 new=$2 surge=$3 rounds=${4:-5}
out=$(mktemp -d /tmp/lg-self-cost.XXXXXX)
port=$((20000 + RANDOM % 20000))
timeout 1800 taskset -c 0 "$surge" echo --listen "127.0.0.1:$port" --threads 1 --log warn \
  >"$out/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

ns_per_msg() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cpu"]["client_ns_per_msg"])' "$1"; }

# One measurement: BIN NAME IN_FLIGHT -> ns/msg
measure() {
  local json="$out/$2-if$3-$RANDOM.json"
  timeout 60 taskset -c 1 "$1" "ws://127.0.0.1:$port" -c 100 --size 20 --in-flight "$3" \
    -d 5s -w 1s -t 1 -q --json "$json" >/dev/null 2>&1
  ns_per_msg "$json"
}

echo "round in_flight base_ns_per_msg new_ns_per_msg new/base"
for r in $(seq "$rounds"); do
  for f in 1 16; do
    # Alternate which build goes first, so that drift within a round favours neither.
    if ((r % 2)); then b=$(measure "$base" base "$f"); n=$(measure "$new" new "$f")
    else n=$(measure "$new" new "$f"); b=$(measure "$base" base "$f"); fi
    python3 -c "import sys; b,n=map(float,sys.argv[3:5]); print(sys.argv[1], sys.argv[2], f'{b:.0f}', f'{n:.0f}', f'{n/b:.3f}')" "$r" "$f" "$b" "$n"
  done
done | tee "$out/cpu.txt"
python3 - "$out/cpu.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
for f in ("1", "16"):
    mine = [r for r in rows if r[1] == f]
    print(f"in flight {f}: base median {statistics.median(float(r[2]) for r in mine):.0f} ns/msg, "
          f"new median {statistics.median(float(r[3]) for r in mine):.0f} ns/msg, "
          f"paired new/base median {statistics.median(float(r[4]) for r in mine):.3f} "
          f"[{min(float(r[4]) for r in mine):.3f}-{max(float(r[4]) for r in mine):.3f}]")
PY

# Memory: peak RSS at 10 and at 10,000 connections, the difference per connection.
rss() {
  /usr/bin/time -f %M timeout 120 taskset -c 1 "$1" "ws://127.0.0.1:$port" -c "$2" --size 20 \
    -d 2s -w 500ms -t 1 -q --ramp 20k 2>&1 >/dev/null | tail -n 1
}
for b in base new; do
  bin=$base; [ $b = new ] && bin=$new
  small=$(rss "$bin" 10); big=$(rss "$bin" 10000)
  python3 -c "import sys; s,b=map(int,sys.argv[2:4]); print(f'{sys.argv[1]}: peak RSS {s/1024:.1f} MiB at 10 connections, {b/1024:.1f} MiB at 10,000: {(b-s)/9990:.2f} KiB per connection ({(b-s)/9990/1024:.4f} MB)')" "$b" "$small" "$big"
done
