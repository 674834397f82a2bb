#!/usr/bin/env bash
# benches/wss-profile.sh - where both ends of a wss echo spend their CPU, against ws: the
# server (`surge echo`, one loop on core 0) and surge-loadgen (one thread on core 1), each
# under `perf record -e cpu-clock -g` (the software clock: this VM has no hardware events),
# for ws and then wss, split by benches/profile-split.py (kernel / syscall entry / epoll /
# rustls + ring / our code / libc), with the load generator's msgs/s and its CPU per message.
#
#   benches/wss-profile.sh [SECONDS] [LOADGEN ARGS...]   # default 4 s of -c 10 --size 1024
#   WSS_PROFILE_SYSCALLS=1 benches/wss-profile.sh 2       # strace -c counts instead of perf
#
# Needs perf (or strace) and the release builds (cargo build --release -p surge -p
# surge-loadgen). The profiles stay in target/bench-wss/profile (`perf report -i FILE`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS=${1:-4}
shift || true
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(-c 10 --size 1024)
OUT=target/bench-wss/profile
mkdir -p "$OUT"
tests/wss/make-certs.sh target/bench-wss/pki >/dev/null
PKI=target/bench-wss/pki
SPID=
trap '[ -z "$SPID" ] || kill "$SPID" 2>/dev/null || true' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# under OUTPUT: perf record, or strace -c (the counts of system calls)
under() {
  if [ "${WSS_PROFILE_SYSCALLS:-0}" = 1 ]; then
    echo strace -f -c -o "$1.txt"
  else
    echo perf record -q -e cpu-clock -g -o "$1.data"
  fi
}
for mode in ws wss; do
  port=$(free_port) tls=() scheme=ws
  [ "$mode" = wss ] && tls=(--tls-cert "$PKI/leaf.pem" --tls-key "$PKI/leaf.key") scheme=wss
  # shellcheck disable=SC2046
  taskset -c 0 $(under "$OUT/server-$mode") -- target/release/surge echo --listen "127.0.0.1:$port" \
    --threads 1 --log warn --backend epoll "${tls[@]}" >/dev/null 2>&1 &
  SPID=$!
  python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close(); break
    except OSError:
        time.sleep(0.05)
PY
  # shellcheck disable=SC2046
  taskset -c 1 $(under "$OUT/client-$mode") -- target/release/surge-loadgen "$scheme://127.0.0.1:$port/" \
    --ca "$PKI/ca.pem" --threads 1 "${ARGS[@]}" --binary -d "${SECS}s" -w 1s -q \
    --json "$OUT/client-$mode.json" >/dev/null 2>&1 || true
  # The server itself (perf or strace started it): they write their output once it exits.
  kill -INT "$(pgrep -P "$SPID")" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=
  python3 -c "import json, sys; r = json.load(open(sys.argv[1])); \
print(f\"{sys.argv[2]}: {r['msgs_per_sec']:,.0f} msgs/s, client CPU {r['cpu']['client_ns_per_msg']:.0f} ns/msg\")" \
    "$OUT/client-$mode.json" "$mode"
done
if [ "${WSS_PROFILE_SYSCALLS:-0}" = 1 ]; then
  for f in "$OUT"/{server,client}-{ws,wss}.txt; do echo "== $f"; sed -n '3,8p' "$f"; done
else
  python3 benches/profile-split.py "$OUT"/{server,client}-{ws,wss}.data
fi
