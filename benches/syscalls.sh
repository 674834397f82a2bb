#!/usr/bin/env bash
# benches/syscalls.sh - system calls per echo, for each backend.
#
# For each backend and connection count: `surge echo` with one loop, pinned to the server
# core, under `perf stat` counting its system calls (raw_syscalls:sys_enter, and the calls
# that matter one by one); surge-loadgen, pinned to the client core, closed loop, 20 B
# binary, one message in flight per connection, no warm-up; then the server is stopped
# (SIGINT) and its calls are divided by the messages echoed. Connecting, the handshakes
# and the shutdown count too (a few calls per connection), so the figure errs high.
#
#   benches/syscalls.sh                      # 1, 100 and 1000 connections, 5 s each
#   CONNS="100" DURATION=10s BACKENDS="io-uring" benches/syscalls.sh
#   SERVER_CORE=0 CLIENT_CORE=1              # (the defaults)
#   TLS=1 benches/syscalls.sh                # over wss (a throwaway PKI, tests/wss/make-certs.sh)
#   SURGE=/tmp/base/surge LABEL=base benches/syscalls.sh   # another build of the server
#   RATE=20000 CONNS=100 benches/syscalls.sh # open loop at that many msgs/s in all
#
# Beside the calls: the server's CPU per message (perf's task-clock), how often it slept
# (context switches) and its socket receives (sock_recvmsg, the sock:sock_recv_length
# tracepoint, whether the call came from a system call or from io_uring).
#
# Needs perf with tracepoints (`perf list 'raw_syscalls:*'`), and release builds of surge and
# surge-loadgen (cargo build --release -p surge -p surge-loadgen). Prints a markdown table.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CONNS="${CONNS:-1 100 1000}"
DURATION="${DURATION:-5s}"
BACKENDS="${BACKENDS:-epoll io-uring}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
SURGE="${SURGE:-target/release/surge}"
OUT="${OUT:-target/syscalls}"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SCHEME=ws SERVER_TLS=() CLIENT_TLS=()
if [ "${TLS:-0}" = 1 ]; then
  tests/wss/make-certs.sh "$OUT/pki" >/dev/null
  SCHEME=wss
  SERVER_TLS=(--tls-cert "$OUT/pki/leaf.pem" --tls-key "$OUT/pki/leaf.key")
  CLIENT_TLS=(--ca "$OUT/pki/ca.pem")
fi
EVENTS="raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait"
EVENTS+=",syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write"
EVENTS+=",syscalls:sys_enter_writev,syscalls:sys_enter_sendto"
EVENTS+=",task-clock,context-switches,sock:sock_recv_length"
PACE=(--in-flight 1)
[ -z "${RATE:-}" ] || PACE=(--rate "$RATE")

PERF_PID=
cleanup() { [ -z "$PERF_PID" ] || kill -INT "$PERF_PID" 2>/dev/null || true; }
trap cleanup EXIT

echo "| backend | conns | msgs | msg/s | syscalls/echo | io_uring_enter | epoll_wait | read+recv | write(v)+send | server µs CPU/msg | sleeps/msg | socket receives/msg |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for backend in $BACKENDS; do
  for conns in $CONNS; do
    tag="$SCHEME-$backend-$conns${LABEL:+-$LABEL}" label="${LABEL:+$LABEL }$backend"
    [ "$SCHEME" = ws ] || label="$label ($SCHEME)"
    log="$OUT/server-$tag.log"
    stat="$OUT/perf-$tag.csv"
    perf stat -x, -e "$EVENTS" -o "$stat" -- taskset -c "$SERVER_CORE" \
      "$SURGE" echo --listen 127.0.0.1:0 --threads 1 --backend "$backend" \
      --log info "${SERVER_TLS[@]}" 2>"$log" &
    PERF_PID=$!
    port=
    for _ in $(seq 100); do
      port=$(sed -n 's/.*listening on wss*:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
      [ -n "$port" ] && break
      sleep 0.1
    done
    [ -n "$port" ] || { echo "the server did not start: $(tail -3 "$log")" >&2; exit 1; }
    taskset -c "$CLIENT_CORE" target/release/surge-loadgen "$SCHEME://127.0.0.1:$port/" "${CLIENT_TLS[@]}" -c "$conns" \
      --size 20 --binary "${PACE[@]}" -d "$DURATION" -w 0s -q --json "$OUT/loadgen-$tag.json" \
      >"$OUT/loadgen-$tag.log"
    # SIGINT to the server (perf's child): a graceful stop, then perf writes its counts.
    pkill -INT -P "$PERF_PID" || true
    wait "$PERF_PID" || true
    PERF_PID=
    python3 - "$stat" "$OUT/loadgen-$tag.json" "$label" "$conns" <<'EOF'
import csv, json, sys
stat, run, backend, conns = sys.argv[1:]
counts = {}
for row in csv.reader(line for line in open(stat) if line.strip() and not line.startswith("#")):
    try:
        counts[row[2].split(":")[-1]] = float(row[0])
    except (IndexError, ValueError):
        pass  # "<not counted>" and the like
r = json.load(open(run))
msgs = r["messages"]
per = lambda *names: sum(counts.get(n, 0) for n in names) / msgs
print(f"| {backend} | {conns} | {msgs} | {r['msgs_per_sec']:.0f} | {per('sys_enter'):.3f} "
      f"| {per('sys_enter_io_uring_enter'):.3f} | {per('sys_enter_epoll_wait'):.3f} "
      f"| {per('sys_enter_read', 'sys_enter_recvfrom'):.3f} "
      f"| {per('sys_enter_write', 'sys_enter_writev', 'sys_enter_sendto'):.3f} "
      f"| {per('task-clock') * 1e3:.2f} | {per('context-switches'):.3f} "
      f"| {per('sock_recv_length'):.3f} |")
EOF
  done
done
