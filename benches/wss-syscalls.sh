#!/usr/bin/env bash
# benches/wss-syscalls.sh - system calls per connection under wss churn, counted by strace.
#
# For each server binary, backend and mode: `surge echo --tls-*` (one loop) under
# `strace -f -c`, surge-loadgen's churn against it (10 connections, --churn 5000 for
# SECONDS; `--no-resume` for full handshakes, cleartext ws for `plain`); then the server is
# stopped (SIGTERM) and its calls are divided by the connections opened. The 10 connections' own opening
# and the shutdown count too (a few calls, spread over hundreds of connections). strace slows
# the server: the counts are what it does per connection, not how fast.
#
#   benches/wss-syscalls.sh [SECONDS]                  # default 2 s, target/release/surge
#   SURGES='/tmp/before/surge target/release/surge'  # several builds, one after the other
#   BACKENDS='epoll io-uring' MODES='plain full resumed'
#   CALLS='recvfrom sendto write getrandom'          # the columns (plus the total)
#
# Needs strace and the release builds (cargo build --release -p surge -p surge-loadgen).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS=${1:-2}
OUT=target/bench-wss
mkdir -p "$OUT"
tests/wss/make-certs.sh "$OUT/pki" >/dev/null
CA=$OUT/pki/ca.pem CERT=$OUT/pki/leaf.pem KEY=$OUT/pki/leaf.key
LOADGEN=target/release/surge-loadgen
read -r -a SURGES <<<"${SURGES:-target/release/surge}"
read -r -a BACKENDS <<<"${BACKENDS:-epoll io-uring}"
read -r -a MODES <<<"${MODES:-plain full resumed}"
read -r -a CALLS <<<"${CALLS:-recvfrom sendto write getrandom}"
SPID=
trap '[ -z "$SPID" ] || kill "$SPID" 2>/dev/null || true' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

printf '| server | backend | mode | connections | calls per connection |'
printf ' %s |' "${CALLS[@]}"
echo
printf '|---|---|---|--:|--:|%s\n' "$(printf -- '--:|%.0s' "${CALLS[@]}")"
for surge in "${SURGES[@]}"; do
  for backend in "${BACKENDS[@]}"; do
    for mode in "${MODES[@]}"; do
      port=$(free_port)
      tls=(--tls-cert "$CERT" --tls-key "$KEY") scheme=wss resume=()
      case $mode in
        plain) tls=() scheme=ws ;;
        full) resume=(--no-resume) ;;
      esac
      strace -f -c -o "$OUT/strace.txt" taskset -c 0 "$surge" echo --listen "127.0.0.1:$port" \
        --threads 1 --log warn --backend "$backend" "${tls[@]}" &
      SPID=$!
      python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close(); break
    except OSError:
        time.sleep(0.05)
PY
      taskset -c 1 timeout 120 "$LOADGEN" "$scheme://127.0.0.1:$port/" --ca "$CA" --threads 1 -c 10 \
        --rate 10 --churn 5000 "${resume[@]}" -d "${SECS}s" -w 0s -q --json "$OUT/run.json" \
        >/dev/null 2>&1 || true
      # The server (strace's child; a background job ignores SIGINT): strace then writes
      # its counts and exits.
      kill -TERM $(ps -o pid= --ppid "$SPID") 2>/dev/null || true
      wait "$SPID" 2>/dev/null || true
      SPID=
      python3 - "$OUT/strace.txt" "$OUT/run.json" "$surge" "$backend" "$mode" "${CALLS[@]}" <<'PY'
import json, sys
trace, run, surge, backend, mode, *calls = sys.argv[1:]
counts = {}
for line in open(trace):
    f = line.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        counts[f[-1]] = int(f[3])
total = sum(counts.values())
r = json.load(open(run))
# The churn's reopens and the 10 opened first.
opened = r["connections"]["established"]
per = lambda n: f"{n / opened:.2f}" if opened else "-"
print(f"| {surge} | {backend} | {mode} | {opened} | {per(total)} | "
      + " | ".join(per(counts.get(c, 0)) for c in calls) + " |")
PY
    done
  done
done
