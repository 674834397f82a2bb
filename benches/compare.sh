#!/usr/bin/env bash
# benches/compare.sh - Surge against peer servers, end to end, in one sitting.
#
# Builds, in release: surge and surge-loadgen (root workspace), the peer echo servers in
# benches/peers (their own workspace: fastwebsockets and tokio-tungstenite, each on a
# current-thread and a multi-thread tokio runtime), Node `ws` from tests/node's lockfile
# (tests/setup.sh, `npm ci`), and the allocation-count bench. Then runs benches/peers'
# surge-compare, which measures with surge-loadgen, against each server in turn and round
# after round (the servers interleaved; Surge twice: `surge` on epoll, `surge-uring` on
# io_uring):
#   100, 1 and 1000 conns x 20 B, 10 x 1 KiB, 200 x 16 KiB (one message in flight each), 100 x 20 B with
#   16 in flight, an open-loop run at a fixed rate (p50/p99/p99.9), 10,000 idle connections
#   (server RSS per connection), Surge's thread sweep, and the plain TCP echo floor
#   (`surge-loadgen floor`, in the load generator's raw mode) beside them;
# and `cargo bench -p surge-benches --bench alloc -- --strict` (allocations per million).
# Servers bind 127.0.0.1, run under `timeout` and are killed when this ends.
#
# Writes bench-results/<date>/{results.json,results.md} (raw/ and logs/ beside them) and
# prints the markdown.
#
#   benches/compare.sh                     # 3 rounds, 10 s runs, cores split in halves
#   benches/compare.sh --quick             # smoke: 1 round, 1 s runs
#   benches/compare.sh --rounds 3 --duration 5s --warmup 1s --server-cores 0 --client-cores 1
#   benches/compare.sh --baseline-surge /tmp/base/target/release/surge --servers surge,surge-baseline
#                                          # A/B: another build of surge beside this one
#   benches/compare.sh --help              # every option
#   benches/compare.sh --render bench-results/DATE/results.json   # re-render, no measuring
# Here only: --skip-build (use what is built), --out DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

COMMAND="benches/compare.sh${*:+ $*}"
OUT="bench-results/$(date -u +%Y-%m-%d_%H%M%S)"
BUILD=1
ALLOC=1
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) BUILD=0 ;;
    --render) BUILD=0; ARGS+=("$1") ;;
    --out) OUT="$2"; shift ;;
    --no-alloc) ALLOC=0; ARGS+=("$1") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; ARGS+=("$1") ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
PEERS_BIN="$ROOT/benches/peers/target/release"

step() { printf '== %s\n' "$*" >&2; }
if [ "$BUILD" = 1 ] && [[ " ${ARGS[*]-} " != *" --help "* && " ${ARGS[*]-} " != *" -h "* ]]; then
  step "cargo build --release -p surge -p surge-loadgen"
  cargo build --release -q -p surge -p surge-loadgen
  step "cargo build --release (benches/peers: fastwebsockets, tokio-tungstenite)"
  cargo build --release -q --locked --manifest-path benches/peers/Cargo.toml
  if [ "$ALLOC" = 1 ]; then
    step "cargo bench --no-run -p surge-benches --bench alloc"
    cargo bench -q --no-run -p surge-benches --bench alloc 2>/dev/null
  fi
  step "Node ws (tests/setup.sh node: npm ci in tests/node)"
  SURGE_SETUP_SKIP="apt python autobahn cargo-fuzz go-client" tests/setup.sh | grep -v skipped >&2
fi

# Each connection is a descriptor: 10,000 idle ones need the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$OUT"

RUNNER=
cleanup() {
  if [ -n "$RUNNER" ] && kill -0 "$RUNNER" 2>/dev/null; then
    kill -TERM "$RUNNER" 2>/dev/null || true
    wait "$RUNNER" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# The runner gets SIGTERM if this shell dies, and passes it to the servers it started.
PDEATH=()
command -v setpriv >/dev/null && PDEATH=(setpriv --pdeathsig TERM --)
"${PDEATH[@]}" "$PEERS_BIN/surge-compare" --root "$ROOT" --out "$OUT" --command "$COMMAND" \
  ${ARGS[@]+"${ARGS[@]}"} &
RUNNER=$!
set +e
wait "$RUNNER"
rc=$?
RUNNER=
exit "$rc"
