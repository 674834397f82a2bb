#!/usr/bin/env bash
# benches/wss.sh - wss figures in one sitting: Surge over TLS against Surge in cleartext and
# against the tokio-tungstenite + tokio-rustls peer (benches/peers), paired by round; then
# full and resumed TLS handshakes (surge-loadgen's churn, with and without --no-resume: server
# CPU per handshake, the TCP connection and the WebSocket upgrade included) beside the same
# churn in cleartext (the TLS increment is their difference), Surge and the peer (and the
# baseline's ws and wss), paired by round; then server RSS per idle wss connection at 10,000
# (benches/wss-idle.py; WSS_IDLE=0 leaves it out).
#
#   benches/wss.sh [ROUNDS] [SECONDS]      # default 3 rounds of 3 s runs (1 s warm-up)
#   WSS_SCENARIOS='10x1KiB 100x20Bx16'    # only these scenarios (names as in the table)
#   WSS_BASELINE=/tmp/old/surge            # another build beside, as base-wss (A/B over TLS)
#   WSS_SURGE=/tmp/new/surge               # the build measured (default target/release/surge)
#   WSS_LOADGEN_BASELINE=/tmp/old/surge-loadgen # another load generator beside, driving
#                                          # surge-wss as lg-base-wss (A/B of the client end)
#   WSS_SERVERS='surge-wss surge-wss-uring' # only these servers (default: surge-ws surge-wss
#                                          # surge-wss-uring peer-wss); surge-wss-uring is
#                                          # surge-wss on io_uring
#   WSS_HANDSHAKES=0 WSS_IDLE=0            # leave the handshake or the idle part out
#   WSS_PEER=0                             # leave the tokio-rustls peer out
#   WSS_BACKEND=auto                       # the backend of surge-ws, surge-wss and the baseline
#                                          # (default epoll, so that ws and wss differ by TLS
#                                          # alone; surge-wss-uring is always io_uring)
#
# Needs the release builds (cargo build --release -p surge -p surge-loadgen; cargo build
# --release --manifest-path benches/peers/Cargo.toml --bin tungstenite-rustls-echo). The
# server runs on core 0 (one thread), the load generator on core 1; servers bind 127.0.0.1
# and are killed after each run (and at exit). Prints one line per run and a table of medians (msgs/s, server
# CPU per message in µs: utime+stime over the whole run / messages over warm-up + window,
# handshakes included; the load generator's own CPU per message while measuring beside it;
# ratios paired by round). Certificates: a throwaway test PKI made by
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
SURGE=${WSS_SURGE:-target/release/surge} LOADGEN=target/release/surge-loadgen
PEER=benches/peers/target/release/tungstenite-rustls-echo
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
BACKEND=${WSS_BACKEND:-epoll}
start() { # start NAME PORT: sets SPID
  local surge_args=(echo --listen "127.0.0.1:$2" --threads 1 --log warn --backend "$BACKEND")
  local tls_args=(--tls-cert "$CERT" --tls-key "$KEY")
  local uring_args=(echo --listen "127.0.0.1:$2" --threads 1 --log warn --backend io-uring)
  case $1 in
    surge-ws) taskset -c 0 "$SURGE" "${surge_args[@]}" & ;;
    surge-wss | lg-base-wss) taskset -c 0 "$SURGE" "${surge_args[@]}" "${tls_args[@]}" & ;;
    surge-wss-uring) taskset -c 0 "$SURGE" "${uring_args[@]}" "${tls_args[@]}" & ;;
    base-ws) taskset -c 0 "$WSS_BASELINE" "${surge_args[@]}" & ;;
    base-wss) taskset -c 0 "$WSS_BASELINE" "${surge_args[@]}" "${tls_args[@]}" & ;;
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
url() { case $1 in surge-ws | base-ws) echo "ws://127.0.0.1:$2/" ;; *) echo "wss://127.0.0.1:$2/" ;; esac; }

SCENARIOS=("100x20B|-c 100 --size 20" "10x1KiB|-c 10 --size 1024" "200x16KiB|-c 200 --size 16384"
  "100x20Bx16|-c 100 --size 20 --in-flight 16")
if [ -n "${WSS_SCENARIOS:-}" ]; then
  chosen=()
  for entry in "${SCENARIOS[@]}"; do
    [[ " $WSS_SCENARIOS " == *" ${entry%%|*} "* ]] && chosen+=("$entry")
  done
  SCENARIOS=("${chosen[@]}")
fi
DEFAULT_SERVERS="surge-ws surge-wss surge-wss-uring"
[ "${WSS_PEER:-1}" = 0 ] || DEFAULT_SERVERS+=" peer-wss"
read -r -a SERVERS <<<"${WSS_SERVERS:-$DEFAULT_SERVERS}"
[ -z "${WSS_BASELINE:-}" ] || [[ " ${SERVERS[*]} " == *" base-wss "* ]] || SERVERS+=(base-wss)
[ -z "${WSS_LOADGEN_BASELINE:-}" ] || [[ " ${SERVERS[*]} " == *" lg-base-wss "* ]] ||
  SERVERS+=(lg-base-wss)
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
      loadgen=$LOADGEN; [ "$server" = lg-base-wss ] && loadgen=$WSS_LOADGEN_BASELINE
      taskset -c 1 timeout 120 "$loadgen" "$(url "$server" "$port")" --ca "$CA" --threads 1 $args --binary \
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
    client_us = r["cpu"]["client_ns_per_msg"] / 1000
    ok = not r["errors"] and not r["mismatches"]
except Exception:
    rate, client_us, ok = 0.0, 0.0, False
msgs = rate * (float(secs) + 1.0)
cpu_us = int(ticks) / int(hz) * 1e6 / msgs if msgs else 0.0
print(f"{rnd}\t{name}\t{server}\t{rate:.0f}\t{cpu_us:.2f}\t{'ok' if ok else 'ERR'}\t{client_us:.2f}")
PY
      tail -n 1 "$RESULTS"
    done
  done
done

if [ "${WSS_HANDSHAKES:-1}" != 0 ]; then
echo
echo "handshakes (surge-loadgen --churn, ${SECS}s after 1 s; server CPU per connection opened)"
HANDSHAKES=$OUT/handshakes.tsv
: >"$HANDSHAKES"
# Cleartext churn (mode plain) beside the TLS ones, against the same binary: the TLS increment
# per connection is wss's CPU less ws's, paired by round.
HS_RUNS=("plain|surge-ws" "full|surge-wss" "resumed|surge-wss")
[ "${WSS_PEER:-1}" != 0 ] && HS_RUNS+=("full|peer-wss" "resumed|peer-wss")
[ -n "${WSS_BASELINE:-}" ] && HS_RUNS+=("plain|base-ws" "full|base-wss" "resumed|base-wss")
for round in $(seq "$ROUNDS"); do
  for run in "${HS_RUNS[@]}"; do
    mode=${run%%|*} server=${run#*|}
    port=$(free_port)
    start "$server" "$port" >/dev/null
    before=$(cpu_ticks "$SPID")
    resume=(); [ "$mode" = full ] && resume=(--no-resume)
    taskset -c 1 timeout 120 "$LOADGEN" "$(url "$server" "$port")" --ca "$CA" --threads 1 -c 10 \
      --rate 10 --churn 5000 "${resume[@]}" -d "${SECS}s" -w 1s -q --json "$OUT/run.json" >/dev/null 2>&1 || true
    after=$(cpu_ticks "$SPID")
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    python3 - "$OUT/run.json" "$round" "$mode" "$server" "$((after - before))" "$HZ" >>"$HANDSHAKES" <<'PY'
import json, sys
path, rnd, mode, server, ticks, hz = sys.argv[1:]
try:
    r = json.load(open(path))
    opened, ok = r["connections"]["established"], not r["errors"]
except Exception:
    opened, ok = 0, False
cpu_us = int(ticks) / int(hz) * 1e6 / opened if opened else 0.0
print(f"{rnd}\t{mode}\t{server}\t{opened}\t{cpu_us:.1f}\t{'ok' if ok else 'ERR'}")
PY
    tail -n 1 "$HANDSHAKES"
  done
done
python3 - "$HANDSHAKES" <<'PY'
import collections, statistics, sys
by = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    rnd, mode, server, opened, cpu, ok = line.rstrip("\n").split("\t")
    by[(mode, server)][rnd] = float(cpu)
for (mode, server), cpus in sorted(by.items()):
    med = statistics.median(cpus.values())
    print(f"{server}\t{mode}\tserver CPU {med:.0f} us per connection (median of {len(cpus)}; "
          f"{1e6 / med if med else 0:,.0f} per second per core)")
def paired(a, b, f):
    rounds = [r for r in by.get(a, {}) if r in by.get(b, {}) and by[a][r] and by[b][r]]
    return [f(by[a][r], by[b][r]) for r in rounds]
for ws, wss in (("surge-ws", "surge-wss"), ("base-ws", "base-wss")):
    for mode in ("full", "resumed"):
        d = paired((mode, wss), ("plain", ws), lambda x, y: x - y)
        if d:
            print(f"{wss}\t{mode}\tTLS increment over {ws}: {statistics.median(d):.0f} us "
                  f"per connection (median of {len(d)} paired rounds, {min(d):.0f}-{max(d):.0f})")
for mode, ours, base in (("plain", "surge-ws", "base-ws"), ("full", "surge-wss", "base-wss"),
                         ("resumed", "surge-wss", "base-wss")):
    q = paired((mode, ours), (mode, base), lambda x, y: x / y)
    if q:
        print(f"{ours}/{base}\t{mode}\tCPU per connection {statistics.median(q):.3f}x "
              f"(paired rounds {min(q):.2f}-{max(q):.2f})")
PY
fi

if [ "${WSS_IDLE:-1}" != 0 ]; then
  echo
  for backend in epoll io-uring; do
    echo "idle wss on $backend:"
    python3 benches/wss-idle.py "$SURGE" "$CERT" "$KEY" "$CA" 10000 "$backend"
  done
fi

echo
python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = collections.defaultdict(dict)
for rnd, name, server, rate, cpu, ok, client in rows:
    by[(name, rnd)][server] = (float(rate), float(cpu), ok, float(client))
names = list(dict.fromkeys(r[1] for r in rows))
servers = list(dict.fromkeys(r[2] for r in rows))
# Ratios paired by round, where both sides ran: (numerator, denominator).
pairs = [(a, b) for a, b in [("surge-wss", "surge-ws"), ("surge-wss", "peer-wss"),
                             ("surge-wss-uring", "surge-wss"), ("surge-wss", "base-wss"),
                             ("surge-wss", "lg-base-wss")]
         if a in servers and b in servers]
print("| scenario | " + " | ".join(f"{s} msgs/s (CPU us/msg; client's)" for s in servers) + " | "
      + " | ".join(f"{a}/{b} msgs/s, CPU/msg" for a, b in pairs) + " |")
print("|---" * (1 + len(servers) + len(pairs)) + "|")
for name in names:
    rounds = [v for (n, _), v in by.items() if n == name and len(v) == len(servers)]
    if not rounds:
        continue
    med = lambda s, i: statistics.median(r[s][i] for r in rounds)
    ratio = lambda a, b, i: statistics.median(r[a][i] / r[b][i] for r in rounds if r[b][i])
    spread = lambda a, b, i: [r[a][i] / r[b][i] for r in rounds if r[b][i]]
    cell = lambda s: f"{med(s, 0):,.0f} ({med(s, 1):.2f}; {med(s, 3):.2f})"
    errs = sum(1 for r in rounds for s in r.values() if s[2] != "ok")
    ratios = [f"{ratio(a, b, 0):.2f}, {ratio(a, b, 1):.2f} (rounds {min(spread(a, b, 0)):.2f}-"
              f"{max(spread(a, b, 0)):.2f}, {min(spread(a, b, 1)):.2f}-{max(spread(a, b, 1)):.2f})"
              for a, b in pairs]
    print(f"| {name} | " + " | ".join(cell(s) for s in servers) + " | " + " | ".join(ratios)
          + " |" + (f" ({errs} runs with errors)" if errs else ""))
PY
