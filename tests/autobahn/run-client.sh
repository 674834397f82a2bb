#!/usr/bin/env bash
# run-client.sh [CASES] [EXCLUDE] - grade a WebSocket client with Autobahn|Testsuite
# (wstest -m fuzzingserver on a free 127.0.0.1 port); needs setup.sh first.
# The client runs the fuzzingserver protocol (/getCaseCount, /runCase?case=N&agent=A for
# every case, /updateReports?agent=A); by default it is Surge's own client side,
# `surge-loadgen autobahn-client` (build it first: cargo build --release -p surge-loadgen).
#   CASES    comma-separated case patterns    (default "*" = all 517)
#   EXCLUDE  comma-separated exclude patterns (default none), e.g. "12.*,13.*"
# Env: AUTOBAHN_CLIENT (client command; {URL} and {AGENT} are replaced; default
#   "<repo>/target/release/surge-loadgen autobahn-client {URL} --agent {AGENT}"),
#   AUTOBAHN_AGENT (default surge-loadgen), AUTOBAHN_VENV (default <this dir>/venv),
#   AUTOBAHN_OUT (report dir, default <this dir>/reports/client, wiped first),
#   AUTOBAHN_TIMEOUT (seconds, whole run, default 900), AUTOBAHN_VERBOSE=1 (stream the
#   client's log), AUTOBAHN_STRICT_CLOSE=1 (also fail on close-handshake FAILED/UNCLEAN).
# Exit: 0 all passed; 1 a case FAILED/missing; 2 usage/setup; 3 the client or wstest
#   failed (client exit status not 0, e.g. a case hit its time limit; no report).
# Not a copy of shared/autobahn (that folder grades servers only); same conventions as run.sh.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${AUTOBAHN_VENV:-$HERE/venv}"
CASES="${1:-*}"; EXCLUDE="${2:-}"
AGENT="${AUTOBAHN_AGENT:-surge-loadgen}"
DEFAULT_CLIENT="$ROOT/target/release/surge-loadgen autobahn-client {URL} --agent {AGENT}"
CLIENT="${AUTOBAHN_CLIENT:-$DEFAULT_CLIENT}"
LIMIT="${AUTOBAHN_TIMEOUT:-900}"
[ -x "$VENV/bin/wstest" ] || { echo "run-client.sh: no wstest in $VENV - run setup.sh" >&2; exit 2; }
[[ "$AGENT" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "run-client.sh: bad AUTOBAHN_AGENT '$AGENT'" >&2; exit 2; }
OUT="${AUTOBAHN_OUT:-$HERE/reports/client}"
rm -rf "$OUT" && mkdir -p "$OUT" || exit 2
SPEC="$OUT/fuzzingserver.json"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || exit 2
URL="ws://127.0.0.1:$PORT"

"$VENV/bin/python" - "$URL" "$CASES" "$EXCLUDE" "$OUT" "$SPEC" <<'EOF' || exit 2
import json, sys
url, cases, exclude, out, spec = sys.argv[1:]
split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
json.dump({"url": url, "outdir": out, "cases": split(cases) or ["*"],
           "exclude-cases": split(exclude), "exclude-agent-cases": {}}, open(spec, "w"), indent=2)
EOF

# the fuzzingserver, under the whole run's limit; -u 0: no embedded web server (port 8080)
(cd "$OUT" && exec timeout "$LIMIT" "$VENV/bin/python" -W ignore "$VENV/bin/wstest" \
  -m fuzzingserver -s "$SPEC" -u 0 >"$OUT/wstest.log" 2>&1 </dev/null) &
WSTEST=$!
stop_wstest() { kill -TERM "$WSTEST" 2>/dev/null && wait "$WSTEST" 2>/dev/null; }
trap stop_wstest EXIT
t0=$SECONDS
until python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$PORT" 2>/dev/null; do
  if ! kill -0 "$WSTEST" 2>/dev/null || [ $((SECONDS - t0)) -ge 30 ]; then
    echo "run-client.sh: wstest did not listen on $URL" >&2; tail -n 30 "$OUT/wstest.log" >&2; exit 3
  fi
  sleep 0.2
done

CMD="${CLIENT//\{URL\}/$URL}"; CMD="${CMD//\{AGENT\}/$AGENT}"
read -r -a CMD <<<"$CMD"
echo "client: ${CMD[*]}"
start=$(date +%s)
if [ "${AUTOBAHN_VERBOSE:-0}" = 1 ]; then
  timeout "$LIMIT" "${CMD[@]}" 2>&1 | tee "$OUT/client.log"
  rc=${PIPESTATUS[0]}
else
  timeout "$LIMIT" "${CMD[@]}" >"$OUT/client.log" 2>&1
  rc=$?
fi
echo "client exit $rc after $(( $(date +%s) - start ))s; log $OUT/client.log; wstest log $OUT/wstest.log; report $OUT/index.html"
if [ "$rc" != 0 ]; then
  grep -vE '^case [0-9]+: .*(closed|failed: )' "$OUT/client.log" | tail -n 20 >&2
fi
if [ ! -f "$OUT/index.json" ]; then
  echo "run-client.sh: no report produced" >&2; tail -n 30 "$OUT/wstest.log" >&2; exit 3
fi

"$VENV/bin/python" -W ignore "$HERE/summarize.py" "$OUT" "$SPEC" "$AGENT" \
  "Autobahn fuzzingserver (agent $AGENT)" "client stopped early?" "${AUTOBAHN_STRICT_CLOSE:-0}"
verdict=$?
[ "$rc" = 0 ] || exit 3
exit "$verdict"
