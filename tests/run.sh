#!/usr/bin/env bash
# tests/run.sh - Surge's one test command (.ci/run calls exactly this).
#
# Installs what the tests need (tests/setup.sh, idempotent), then runs every
# suite as a list of named steps and prints a summary; the last line is
#     tests: N passed, M failed
# and the exit status is non-zero if any step failed.
#
# Env:
#   SURGE_TESTS=fast   skip Autobahn (server and client), fuzzing and the browser;
#                      default "full" (what CI runs).
#   SURGE_ONLY=REGEX   run only the steps whose name matches (grep -E), e.g.
#                      SURGE_ONLY='^client:' ; the others are not counted.
#   SURGE_ECHO_SERVER_CMD='CMD ... {PORT} ...'
#                      harness self-test: run the external server suite against
#                      this echo server instead of target/release/surge, e.g.
#                      'node tests/servers/node_ws_echo.js {PORT} 1800'.
#   FUZZ_SECONDS=30    per fuzz target.
#
# Adding tests (extension points):
#   * a new step in an existing suite:  run_step NAME CMD [ARGS...]
#       CMD runs in a subshell with `set -e`; exit 0 = passed, 77 = skipped
#       (print why), anything else = failed. Output goes to the terminal.
#     skip_step NAME REASON records a step as skipped without running it.
#   * a new external client against the Surge echo server: one line in
#     EXTERNAL_CLIENTS below ("name|command"; the URL is appended).
#   * a new suite: write a function suite_xxx and add it to SUITES (bottom).
#     Long-lived processes: start_bg NAME LOGFILE CMD... (in the main shell,
#     not inside run_step) records the pid; every one is stopped on exit.
#     wait_port PORT PID waits until something accepts on 127.0.0.1:PORT.
#   Every process a test starts binds to 127.0.0.1 and has a time limit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${SURGE_TESTS:-full}"
case "$MODE" in full | fast) ;; *) echo "run.sh: SURGE_TESTS must be full or fast, not '$MODE'" >&2; exit 2 ;; esac
ONLY="${SURGE_ONLY:-}"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"
PY="$ROOT/.venv/bin/python"

# ------------------------------------------------------------- step machinery
STEP_NAMES=() STEP_STATUS=() STEP_SECS=()
T_START=$SECONDS

selected() { [ -z "$ONLY" ] || grep -qE -- "$ONLY" <<<"$1"; }
any_selected() { local n; for n in "$@"; do selected "$n" && return 0; done; return 1; }
record() { STEP_NAMES+=("$1"); STEP_STATUS+=("$2"); STEP_SECS+=("$3"); }

# run_step NAME CMD [ARGS...]
run_step() {
  local name=$1 t0=$SECONDS rc
  shift
  selected "$name" || return 0
  echo
  echo "=== step: $name"
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  local secs=$((SECONDS - t0))
  case $rc in
    0) record "$name" passed "$secs"; echo "=== $name: passed (${secs}s)" ;;
    77) record "$name" skipped "$secs"; echo "=== $name: skipped (${secs}s)" ;;
    *) record "$name" failed "$secs"; echo "=== $name: FAILED (exit $rc, ${secs}s)" ;;
  esac
  return 0
}

# skip_step NAME REASON
skip_step() {
  selected "$1" || return 0
  echo
  echo "=== step: $1: skipped: $2"
  record "$1" skipped 0
}

# ------------------------------------------------------------ process helpers
BG_PIDS=() BG_NAMES=()
# start_bg NAME LOGFILE CMD... : start CMD in the background (own process
# group), output to LOGFILE; sets BG_PID. Stopped by stop_bg/cleanup.
start_bg() {
  local name=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  BG_PID=$!
  BG_PIDS+=("$BG_PID")
  BG_NAMES+=("$name")
}
# stop_bg PID : TERM the process group, KILL after 5 s
stop_bg() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do stop_bg "$pid"; done
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

# logged_port LOG PID [SECONDS]: the port a server started on port 0 names in its log
# ("listening 127.0.0.1:PORT" or "listening on ws://127.0.0.1:PORT"); the server picks it, so
# no other process can take it between a guess and the bind. Fails if PID dies first.
logged_port() {
  local log=$1 pid=$2 limit=${3:-30} t0=$SECONDS port
  while :; do
    port=$(sed -nE 's/.*listening (on ws:\/\/)?127\.0\.0\.1:([0-9]+).*/\2/p' "$log" 2>/dev/null | head -n 1)
    [ -z "$port" ] || { echo "$port"; return 0; }
    kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before it listened; log tail:" >&2; tail -n 20 "$log" >&2; return 1; }
    [ $((SECONDS - t0)) -lt "$limit" ] || { echo "no 'listening' line in $log within ${limit}s" >&2; return 1; }
    sleep 0.1
  done
}
# wait_port PORT PID [SECONDS]: until 127.0.0.1:PORT accepts; fails if PID dies
wait_port() {
  local port=$1 pid=$2 limit=${3:-30} t0=$SECONDS
  while ! python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before accepting on port $port" >&2; return 1; }
    [ $((SECONDS - t0)) -lt "$limit" ] || { echo "nothing accepted on 127.0.0.1:$port within ${limit}s" >&2; return 1; }
    sleep 0.2
  done
}

workspace_packages() {
  cargo metadata --no-deps --format-version 1 2>/dev/null |
    python3 -c 'import json, sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))'
}
has_package() { grep -qx -- "$1" <<<"$WORKSPACE_PACKAGES"; }

# ------------------------------------------------------------------- suites
suite_setup() {
  ONLY='' run_step setup tests/setup.sh # always, whatever SURGE_ONLY says
}

suite_cargo() {
  run_step cargo-fmt cargo fmt --all -- --check
  run_step cargo-clippy cargo clippy --workspace --all-targets -- -D warnings
  # --no-fail-fast: one failing package must not hide the others' results (doc tests too).
  run_step cargo-test cargo test --workspace --no-fail-fast
}

# External clients run against the Surge echo server; URL is appended.
# ("name|command"; browser: in fast mode skipped)
EXTERNAL_CLIENTS=(
  "python_websockets|$PY tests/clients/python_websockets.py"
  "python_websocket_client|$PY tests/clients/python_websocket_client.py"
  "node_ws|node tests/clients/node_ws.js"
  "wscat|tests/clients/wscat.sh"
  "go_gorilla|target/tests-bin/go-client"
  "chromium|node tests/clients/chromium.js"
)
AUTOBAHN_CASES="1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*"
# permessage-deflate (RFC 7692): a step of their own, with their own expected files
AUTOBAHN_DEFLATE_CASES="12.*,13.*"
# What Surge's echo server (`--deflate`, the shared policy) answers every deflate offer of
# the real clients above; the deflate-capable ones assert it.
SURGE_DEFLATE_ANSWER="permessage-deflate; server_no_context_takeover; client_no_context_takeover"
SERVER_TIME_LIMIT=1800 # seconds; the echo server is killed after this anyway

# build_release: the release binaries the external suites use
build_release() {
  local pkgs=(-p surge)
  has_package surge-loadgen && pkgs+=(-p surge-loadgen)
  cargo build --release "${pkgs[@]}"
}

# start_echo_server: sets ECHO_URL, ECHO_PID (main shell)
start_echo_server() {
  local port cmd
  if [ -n "${SURGE_ECHO_SERVER_CMD:-}" ]; then
    read -r -a cmd <<<"${SURGE_ECHO_SERVER_CMD//\{PORT\}/0}"
  else
    cmd=(target/release/surge echo --listen 127.0.0.1:0 --deflate)
    export SURGE_EXPECT_EXTENSIONS="$SURGE_DEFLATE_ANSWER"
  fi
  echo "starting: ${cmd[*]}"
  start_bg echo-server "$LOGS/echo-server.log" timeout "$SERVER_TIME_LIMIT" "${cmd[@]}"
  ECHO_PID=$BG_PID
  port=$(logged_port "$LOGS/echo-server.log" "$ECHO_PID" 30) || return 1
  ECHO_URL="ws://127.0.0.1:$port/"
  wait_port "$port" "$ECHO_PID" 30 || { tail -n 20 "$LOGS/echo-server.log" >&2; return 1; }
  echo "echo server pid $ECHO_PID at $ECHO_URL"
}

# autobahn_server [CASES REPORT EXPECTED]: the fuzzingclient grades the echo server
autobahn_server() {
  local cases=${1:-$AUTOBAHN_CASES} out="$ROOT/tests/autobahn/reports/${2:-server}" rc=0
  AUTOBAHN_OUT="$out" AUTOBAHN_TIMEOUT=900 tests/autobahn/run.sh "${ECHO_URL%/}" "$cases" || rc=$?
  # run.sh exits 1 when a case FAILED: the expected file decides; 2 = not set up
  [ "$rc" -le 1 ] || return 1
  [ -f "$out/index.json" ] || return 1
  python3 tests/autobahn/compare.py "$out" "tests/autobahn/${3:-expected-server.json}"
}

server_still_running() {
  kill -0 "$ECHO_PID" 2>/dev/null || { echo "echo server died; log tail:"; tail -n 20 "$LOGS/echo-server.log"; return 1; }
  echo "echo server pid $ECHO_PID still running"
}

suite_external_server() {
  local entry name cmd names=(build-release echo-server-start autobahn-server autobahn-server-deflate echo-server-survived)
  for entry in "${EXTERNAL_CLIENTS[@]}"; do names+=("client:${entry%%|*}"); done
  any_selected "${names[@]}" || return 0
  if [ -z "${SURGE_ECHO_SERVER_CMD:-}" ]; then
    if ! has_package surge; then
      skip_step external-server "no 'surge' package in the workspace yet: external client and Autobahn suites not run"
      return 0
    fi
    run_step build-release build_release
    [ "${STEP_STATUS[${#STEP_STATUS[@]}-1]}" != failed ] || return 0
    if [ ! -x target/release/surge ]; then
      skip_step external-server "the surge package builds no target/release/surge binary yet"
      return 0
    fi
  fi
  # started here, in the main shell, so that the pid outlives the step
  local t0=$SECONDS rc=0
  if selected echo-server-start; then
    echo
    echo "=== step: echo-server-start"
    start_echo_server || rc=$?
    record echo-server-start "$([ $rc = 0 ] && echo passed || echo failed)" $((SECONDS - t0))
    [ $rc = 0 ] || return 0
  else
    start_echo_server >/dev/null || return 0
  fi

  for entry in "${EXTERNAL_CLIENTS[@]}"; do
    name=${entry%%|*}
    cmd=${entry#*|}
    if [ "$name" = chromium ] && [ "$MODE" = fast ]; then skip_step "client:$name" "SURGE_TESTS=fast"; continue; fi
    # shellcheck disable=SC2086
    run_step "client:$name" timeout 120 $cmd "$ECHO_URL"
  done
  if [ "$MODE" = fast ]; then
    skip_step autobahn-server "SURGE_TESTS=fast"
    skip_step autobahn-server-deflate "SURGE_TESTS=fast"
  else
    run_step autobahn-server autobahn_server
    run_step autobahn-server-deflate autobahn_server "$AUTOBAHN_DEFLATE_CASES" server-deflate expected-server-deflate.json
  fi
  run_step echo-server-survived server_still_running
  stop_bg "$ECHO_PID"
}

# Surge's client side (surge-loadgen) against known-good servers:
#   tests/servers/python_websockets_echo.py PORT [TIMEOUT_S]
#   tests/servers/node_ws_echo.js PORT [TIMEOUT_S]
# loadgen_against SERVER_LOG PID NAME: a closed-loop run (text, 0..70000 B, 2 in flight)
# and an open-loop run (binary, 2000 msg/s, with .hgrm/.hlog); each must echo
# every message unchanged, with no error and no connection lost. Bounded: the
# runs last 2.5 s plus at most 5 s to connect, the servers exit after 120 s.
loadgen_against() {
  local port out="$LOGS/loadgen-$3"
  port=$(logged_port "$1" "$2" 30)
  local url="ws://127.0.0.1:$port/"
  wait_port "$port" "$2" 30
  target/release/surge-loadgen "$url" -c 16 --in-flight 2 --size 0..70000 --text \
    -d 2s -w 500ms -q --json "$out-closed.json"
  target/release/surge-loadgen "$url" -c 16 --rate 2k --size 64 --binary \
    -d 2s -w 500ms -q --json "$out-open.json" --hgrm "$out-open.hgrm" --hlog "$out-open.hlog"
  python3 - "$out-closed.json" "$out-open.json" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    r = json.load(open(path))
    c = r["connections"]
    print(f"{path}: {r['messages']} messages, {r['msgs_per_sec']:.0f} msg/s, "
          f"p99 {r['latency_us']['p99']:.0f} us, close codes {r['close_codes']}")
    if r["errors"] or r["mismatches"] or c["lost"] or not r["messages"] \
            or c["established"] != c["requested"] or r["close_codes"] != {"1000": c["requested"]}:
        sys.exit(f"{path}: errors {r['errors']}, mismatches {r['mismatches']}, connections {c}")
EOF
}

# loadgen_deflate: `surge-loadgen --deflate --json-text` against `surge echo --deflate`
# (the shared policy, the default offer) and `--deflate=stream:12:4` (an offer naming
# 12-bit windows, context takeover): every connection agrees, every echo checks out after
# inflating, and the ratio the JSON reports each way is over 1 (JSON records).
# Bounded: 1.5 s runs, each server under `timeout 60`.
loadgen_deflate() {
  local policy offer port pid log out rc=0
  for policy in shared stream:12:4; do
    offer="--deflate"
    [ "$policy" = shared ] || offer="--deflate=client_max_window_bits=12; server_max_window_bits=12"
    log="$LOGS/loadgen-deflate-${policy//:/-}-server.log"
    out="$LOGS/loadgen-deflate-${policy//:/-}.json"
    start_bg surge-deflate "$log" timeout 60 target/release/surge echo --listen 127.0.0.1:0 \
      --threads 1 --deflate="$policy"
    pid=$BG_PID
    port=$(logged_port "$log" "$pid" 30) && wait_port "$port" "$pid" 30 &&
      target/release/surge-loadgen "ws://127.0.0.1:$port/" -c 8 --size 137,16k --json-text \
        "$offer" -d 1s -w 500ms -q --json "$out" || rc=1
    stop_bg "$pid"
    [ "$rc" = 0 ] || return 1
    python3 - "$out" <<'EOF' || return 1
import json, sys
r = json.load(open(sys.argv[1]))
d, c = r.get("deflate") or {}, r["connections"]
print(f"{sys.argv[1]}: {r['config'].get('deflate')}: {r['messages']} messages, sent "
      f"{d.get('sent_ratio', 0):.2f}x, received {d.get('received_ratio', 0):.2f}x")
if r["errors"] or r["mismatches"] or c["lost"] or not r["messages"] \
        or d.get("agreed") != c["requested"] or d.get("declined") \
        or not d.get("sent_ratio", 0) > 1 or not d.get("received_ratio", 0) > 1:
    sys.exit(f"errors {r['errors']}, mismatches {r['mismatches']}, connections {c}, deflate {d}")
EOF
  done
}

# loadgen_report_render: compare --html on two runs of its own (against the embedded
# server: no other step's files), then the page in headless Chromium
# (tests/clients/report_render.js).
loadgen_report_render() {
  local run
  for run in a b; do
    target/release/surge-loadgen -c 8 -d 2s -w 200ms -q --json "$LOGS/loadgen-report-$run.json"
  done
  target/release/surge-loadgen compare "$LOGS/loadgen-report-a.json" \
    "$LOGS/loadgen-report-b.json" --html "$LOGS/loadgen-report.html"
  node tests/clients/report_render.js "$LOGS/loadgen-report.html" 4 "$LOGS/loadgen-report.png"
}

# autobahn_client [CASES REPORT EXPECTED]: Autobahn's fuzzingserver grades Surge's client
# side (surge-loadgen autobahn-client), cases 1-10 by default, then compare.py against
# the expected file (expected-client.json by default).
autobahn_client() {
  local cases=${1:-$AUTOBAHN_CASES} out="$ROOT/tests/autobahn/reports/${2:-client}" rc=0
  # The compression cases (1000 messages of up to 128 KiB each, deflated by wstest in
  # Python) take about 11 minutes on 2 cores: a longer bound per case and for the run.
  local case_timeout=60s run_timeout=900
  if [ "$cases" = "$AUTOBAHN_DEFLATE_CASES" ]; then case_timeout=180s run_timeout=1500; fi
  AUTOBAHN_OUT="$out" AUTOBAHN_TIMEOUT=$run_timeout AUTOBAHN_AGENT=surge-loadgen \
    AUTOBAHN_CLIENT="$ROOT/target/release/surge-loadgen autobahn-client {URL} --agent {AGENT} --case-timeout $case_timeout" \
    tests/autobahn/run-client.sh "$cases" || rc=$?
  # run-client.sh exits 1 when a case FAILED: the expected file decides; 2 = not set up,
  # 3 = the client failed (a case hit its time limit) or no report
  [ "$rc" -le 1 ] || return 1
  python3 tests/autobahn/compare.py "$out" "tests/autobahn/${3:-expected-client.json}"
}

suite_loadgen() {
  local port
  any_selected loadgen-build loadgen:python_websockets loadgen:node_ws loadgen:surge_deflate \
    loadgen-report-render \
    autobahn-client autobahn-client-deflate || return 0
  if ! has_package surge-loadgen; then
    skip_step loadgen "no surge-loadgen package in the workspace"
    return 0
  fi
  run_step loadgen-build cargo build --release -p surge-loadgen -p surge
  [ "${STEP_STATUS[${#STEP_STATUS[@]}-1]}" != failed ] || return 0
  start_bg python-echo "$LOGS/loadgen-python-server.log" "$PY" -u tests/servers/python_websockets_echo.py 0 120
  run_step loadgen:python_websockets loadgen_against "$LOGS/loadgen-python-server.log" "$BG_PID" python_websockets
  stop_bg "$BG_PID"
  start_bg node-echo "$LOGS/loadgen-node-server.log" node tests/servers/node_ws_echo.js 0 120
  run_step loadgen:node_ws loadgen_against "$LOGS/loadgen-node-server.log" "$BG_PID" node_ws
  stop_bg "$BG_PID"
  run_step loadgen:surge_deflate loadgen_deflate
  if [ "$MODE" = fast ]; then
    skip_step loadgen-report-render "SURGE_TESTS=fast"
    skip_step autobahn-client "SURGE_TESTS=fast"
    skip_step autobahn-client-deflate "SURGE_TESTS=fast"
  else
    run_step loadgen-report-render loadgen_report_render
    run_step autobahn-client autobahn_client
    run_step autobahn-client-deflate autobahn_client "$AUTOBAHN_DEFLATE_CASES" client-deflate expected-client-deflate.json
  fi
}

# fuzz_target NAME: FUZZ_SECONDS of libFuzzer; full log in target/test-logs
fuzz_target() {
  local rc=0 log="$LOGS/fuzz-$1.log"
  (cd crates/surge-proto &&
    RUSTC_BOOTSTRAP=1 timeout $((FUZZ_SECONDS + 300)) cargo fuzz run "$1" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096) >"$log" 2>&1 || rc=$?
  grep -vE '^#[0-9]+' "$log" | tail -n 25
  echo "(full log: $log; a crash input is kept under crates/surge-proto/fuzz/artifacts/$1/)"
  return $rc
}

suite_fuzz() {
  if [ "$MODE" = fast ]; then skip_step fuzz "SURGE_TESTS=fast"; return 0; fi
  if [ ! -f crates/surge-proto/fuzz/Cargo.toml ]; then skip_step fuzz "no fuzz crate at crates/surge-proto/fuzz"; return 0; fi
  run_step fuzz-build bash -c 'cd crates/surge-proto && RUSTC_BOOTSTRAP=1 cargo fuzz build'
  local targets t
  targets=$(cd crates/surge-proto && cargo fuzz list 2>/dev/null) || true
  if [ -z "$targets" ]; then skip_step fuzz "cargo fuzz list: no targets"; return 0; fi
  for t in $targets; do
    run_step "fuzz:$t" fuzz_target "$t"
  done
}

# The SIMD masking kernels and the UTF-8 fast path are the crate's only unsafe code: their
# exhaustive length/alignment tests run again under AddressSanitizer (no Miri here).
suite_asan() {
  if [ "$MODE" = fast ]; then skip_step asan "SURGE_TESTS=fast"; return 0; fi
  run_step asan:surge-proto bash crates/surge-proto/asan.sh
}

summary() {
  local i passed=0 failed=0 skipped=0
  echo
  echo "=== summary (SURGE_TESTS=$MODE, $((SECONDS - T_START))s)"
  for i in "${!STEP_NAMES[@]}"; do
    printf '  %-8s %5ss  %s\n' "${STEP_STATUS[$i]}" "${STEP_SECS[$i]}" "${STEP_NAMES[$i]}"
    case ${STEP_STATUS[$i]} in passed) passed=$((passed + 1)) ;; failed) failed=$((failed + 1)) ;; *) skipped=$((skipped + 1)) ;; esac
  done
  [ "$skipped" = 0 ] || echo "  ($skipped skipped)"
  echo "tests: $passed passed, $failed failed"
  [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
}

# ------------------------------------------------------------------- main
SUITES=(suite_setup suite_cargo suite_asan suite_external_server suite_loadgen suite_fuzz)
suite_setup
WORKSPACE_PACKAGES=$(workspace_packages || true)
for s in "${SUITES[@]:1}"; do "$s"; done
summary
