#!/usr/bin/env bash
# benches/wss.sh - wss figures in one sitting: Surge over TLS against Surge in cleartext and
# against the tokio-tungstenite + tokio-rustls peer (benches/peers), paired by round; then
# full and resumed TLS handshakes per second (`openssl s_time`), Surge and the peer.
#
#   benches/wss.sh [ROUNDS] [SECONDS]      # default 3 rounds of 3 s runs (1 s warm-up)
#
# Needs the release builds (cargo build --release -p surge -p surge-loadgen; cargo build
# --release --manifest-path benches/peers/Cargo.toml --bin tungstenite-rustls-echo). The
# server runs on core 0 (one thread), the load generator on core 1; servers bind 127.0.0.1
# and are killed after each run (and at exit). Prints one line per run and a table of medians (msgs/s, server
# CPU per message in µs: utime+stime over the whole run / messages over warm-up + window,
# handshakes included; ratios paired by round). Certificates: a throwaway test PKI made by
# tests/wss/make-certs.sh under target/bench-wss.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS=${1:-3}
SECS=${2:-3}
OUT=target/bench-wss
mkdir -p "$OUT"
tests/wss/make-certs.sh "$OUT/pki" >/dev/null
CA=$OUT/pki/ca.pem CERT=$OUT/pki/leaf.pem KEY=$OUT/pki/leaf.key
SURGE=target/release/surge LOADGEN=target/release/surge-loadgen
PEER=benches/peers/target/release/tungstenite-rustls-echo
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
start() { # start NAME PORT: sets SPID
  case $1 in
    surge-ws) taskset -c 0 "$SURGE" echo --listen "127.0.0.1:$2" --threads 1 --log warn & ;;
    surge-wss) taskset -c 0 "$SURGE" echo --listen "127.0.0.1:$2" --threads 1 --log warn \
      --tls-cert "$CERT" --tls-key "$KEY" & ;;
    peer-wss) PEER_TLS_CERT=$CERT PEER_TLS_KEY=$KEY taskset -c 0 "$PEER" \
      --listen "127.0.0.1:$2" --threads 1 --runtime current & ;;
  esac
  SPID=$! # taskset execs the server: this is its pid, for /proc/PID/stat
  PIDS+=("$SPID")
  python3 - "$2" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close(); break
    except OSError:
        time.sleep(0.05)
PY
}
url() { case $1 in surge-ws) echo "ws://127.0.0.1:$2/" ;; *) echo "wss://127.0.0.1:$2/" ;; esac; }

SCENARIOS=("100x20B|-c 100 --size 20" "10x1KiB|-c 10 --size 1024" "200x16KiB|-c 200 --size 16384"
  "100x20Bx16|-c 100 --size 20 --in-flight 16")
SERVERS=(surge-ws surge-wss peer-wss)
RESULTS=$OUT/results.tsv
: >"$RESULTS"
HZ=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
  for entry in "${SCENARIOS[@]}"; do
    name=${entry%%|*} args=${entry#*|}
    for server in "${SERVERS[@]}"; do
      port=$(free_port)
      start "$server" "$port" >/dev/null
      before=$(cpu_ticks "$SPID")
      # shellcheck disable=SC2086
      taskset -c 1 timeout 120 "$LOADGEN" "$(url "$server" "$port")" --ca "$CA" --threads 1 $args --binary \
        -d "${SECS}s" -w 1s -q --json "$OUT/run.json" >/dev/null 2>&1 || true
      after=$(cpu_ticks "$SPID")
      kill "$SPID" 2>/dev/null || true
      wait "$SPID" 2>/dev/null || true
      python3 - "$OUT/run.json" "$round" "$name" "$server" "$((after - before))" "$HZ" "$SECS" >>"$RESULTS" <<'PY'
import json, sys
path, rnd, name, server, ticks, hz, secs = sys.argv[1:]
try:
    r = json.load(open(path))
    rate = r["msgs_per_sec"]
    ok = not r["errors"] and not r["mismatches"]
except Exception:
    rate, ok = 0.0, False
msgs = rate * (float(secs) + 1.0)
cpu_us = int(ticks) / int(hz) * 1e6 / msgs if msgs else 0.0
print(f"{rnd}\t{name}\t{server}\t{rate:.0f}\t{cpu_us:.2f}\t{'ok' if ok else 'ERR'}")
PY
      tail -n 1 "$RESULTS"
    done
  done
done

echo
echo "handshakes (openssl s_time, ${SECS}s each; server CPU per handshake)"
for server in surge-wss peer-wss; do
  for mode in new reuse; do
    port=$(free_port)
    start "$server" "$port" >/dev/null
    before=$(cpu_ticks "$SPID")
    count=$(taskset -c 1 timeout 60 openssl s_time -connect "127.0.0.1:$port" -"$mode" -time "$SECS" 2>/dev/null |
      sed -nE 's/^([0-9]+) connections in .*/\1/p' | head -n 1)
    after=$(cpu_ticks "$SPID")
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    python3 -c "import sys; n=int(sys.argv[1] or 0); t=int(sys.argv[2])/int(sys.argv[3]); print(f'{sys.argv[4]}\t{sys.argv[5]}\t{n/float(sys.argv[6]):.0f}/s\tserver CPU {t*1e6/max(n,1):.0f} us per handshake\t({1/(t/max(n,1)) if t else 0:.0f}/s per core)')" \
      "${count:-0}" "$((after - before))" "$HZ" "$server" "$mode" "$SECS"
  done
done

echo
python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = collections.defaultdict(dict)
for rnd, name, server, rate, cpu, ok in rows:
    by[(name, rnd)][server] = (float(rate), float(cpu), ok)
names = list(dict.fromkeys(r[1] for r in rows))
print("| scenario | surge ws msgs/s (CPU us/msg) | surge wss | peer wss | wss/ws msgs/s | wss/peer msgs/s | wss/peer CPU/msg |")
print("|---|---|---|---|---|---|---|")
for name in names:
    rounds = [v for (n, _), v in by.items() if n == name and len(v) == 3]
    med = lambda s, i: statistics.median(r[s][i] for r in rounds)
    ratio = lambda a, b, i: statistics.median(r[a][i] / r[b][i] for r in rounds if r[b][i])
    cell = lambda s: f"{med(s, 0):,.0f} ({med(s, 1):.2f})"
    errs = sum(1 for r in rounds for s in r.values() if s[2] != "ok")
    print(f"| {name} | {cell('surge-ws')} | {cell('surge-wss')} | {cell('peer-wss')} | "
          f"{ratio('surge-wss', 'surge-ws', 0):.2f} | {ratio('surge-wss', 'peer-wss', 0):.2f} | "
          f"{ratio('surge-wss', 'peer-wss', 1):.2f} |" + (f" ({errs} runs with errors)" if errs else ""))
PY
