#!/usr/bin/env bash
# tests/setup.sh - install everything the test suites need, idempotently.
#
# Called by tests/run.sh; also usable alone. Checks before installing, prints
# one line per component ("ok" or "installing"), and installs nothing on a
# second run. Components:
#   apt       chromium, golang-go, golang-github-gorilla-websocket-dev, redis-server, redis-tools,
#             prometheus (promtool and a Prometheus server for the metrics steps), testssl.sh,
#             libnss3-tools (certutil: the wss suite's CA for Chromium) (Debian)
#   python    .venv/ with tests/python/requirements.txt (== pins)
#   autobahn  tests/autobahn/venv via tests/autobahn/setup.sh
#   node      tests/node/node_modules via `npm ci` (ws, wscat, playwright-core)
#   cargo-fuzz
#   go-client target/tests-bin/go-client (gorilla/websocket, GOPATH, offline)
# Stamps (hash of the inputs) live in tests/.stamps/ (gitignored).
# Env: SURGE_SETUP_SKIP="apt node ..." skips components (local use only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMPS="$ROOT/tests/.stamps"
mkdir -p "$STAMPS"
PY="${PYTHON:-python3}"
SKIP=" ${SURGE_SETUP_SKIP:-} "

say() { printf 'setup: %-12s %s\n' "$1" "$2"; }
skipped() { [[ "$SKIP" == *" $1 "* ]] && { say "$1" "skipped (SURGE_SETUP_SKIP)"; return 0; }; return 1; }
# hash of files and extra strings: stamp content
fingerprint() { { for f in "$@"; do if [ -f "$f" ]; then sha256sum "$f"; else echo "$f"; fi; done; } | sha256sum | cut -d' ' -f1; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { echo "$2" >"$STAMPS/$1"; }
timed() { # timed NAME CMD... : run, print elapsed
  local name=$1 t0=$SECONDS; shift
  "$@"
  say "$name" "installed in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- apt
APT_PKGS=(chromium golang-go golang-github-gorilla-websocket-dev testssl.sh libnss3-tools)
APT_PKGS+=(redis-server) # the cluster test (crates/surge/tests/cluster.rs) runs its own
APT_PKGS+=(redis-tools)  # redis-cli: the same test builds a Redis Cluster with it
APT_PKGS+=(prometheus)   # promtool and a Prometheus server: the metrics steps
apt_missing() {
  local p
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}
setup_apt() {
  skipped apt && return 0
  local missing
  missing=$(apt_missing | tr '\n' ' ')
  if [ -z "${missing// /}" ]; then say apt "ok (${APT_PKGS[*]})"; return 0; fi
  say apt "installing: $missing"
  local SUDO=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup: apt: not root and no sudo; install: $missing" >&2; return 1; }
    SUDO=(sudo -n)
  fi
  # shellcheck disable=SC2086
  timed apt bash -c "set -e
    ${SUDO[*]} env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    ${SUDO[*]} env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null"
  [ -z "$(apt_missing)" ] || { echo "setup: apt: still missing: $(apt_missing)" >&2; return 1; }
}

# ---------------------------------------------------------------- python venv
setup_python() {
  skipped python && return 0
  local req="tests/python/requirements.txt" fp
  fp=$(fingerprint "$req" "$("$PY" -c 'import sys; print(sys.version)')")
  if [ -x .venv/bin/python ] && stamp_ok python "$fp"; then say python "ok (.venv)"; return 0; fi
  say python "installing .venv from $req"
  timed python bash -c "set -e
    rm -rf .venv # a fresh venv: no stale packages, the current interpreter
    '$PY' -m venv .venv
    .venv/bin/python -m pip install --disable-pip-version-check -q -r '$req'"
  stamp_set python "$fp"
}

# ---------------------------------------------------------------- autobahn
setup_autobahn() {
  skipped autobahn && return 0
  local fp
  fp=$(fingerprint tests/autobahn/setup.sh "$("$PY" -c 'import sys; print(sys.version)')")
  if [ -x tests/autobahn/venv/bin/wstest ] && stamp_ok autobahn "$fp"; then
    say autobahn "ok (tests/autobahn/venv)"; return 0
  fi
  say autobahn "installing tests/autobahn/venv"
  timed autobahn bash -c "tests/autobahn/setup.sh >'$STAMPS/autobahn-setup.log' 2>&1 ||
    { tail -n 30 '$STAMPS/autobahn-setup.log' >&2; exit 1; }"
  stamp_set autobahn "$fp"
}

# ---------------------------------------------------------------- node
setup_node() {
  skipped node && return 0
  command -v npm >/dev/null || { echo "setup: node: npm not found" >&2; return 1; }
  local fp
  fp=$(fingerprint tests/node/package-lock.json "$(node --version)")
  # npm writes node_modules/.package-lock.json last: a tree emptied or cut short lacks it
  if [ -f tests/node/node_modules/.package-lock.json ] && stamp_ok node "$fp"; then say node "ok (tests/node/node_modules)"; return 0; fi
  say node "installing tests/node/node_modules (npm ci)"
  timed node bash -c "cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null"
  stamp_set node "$fp"
}

# ---------------------------------------------------------------- cargo-fuzz
CARGO_FUZZ_VERSION=0.13.2
setup_cargo_fuzz() {
  skipped cargo-fuzz && return 0
  if cargo fuzz --version >/dev/null 2>&1; then say cargo-fuzz "ok ($(cargo fuzz --version 2>/dev/null))"; return 0; fi
  say cargo-fuzz "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  timed cargo-fuzz cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --quiet
}

# ---------------------------------------------------------------- go client
GO_BIN="$ROOT/target/tests-bin/go-client"
setup_go_client() {
  skipped go-client && return 0
  local src=tests/clients/go/client.go fp
  fp=$(fingerprint "$src" "$(go version 2>/dev/null || echo nogo)")
  if [ -x "$GO_BIN" ] && stamp_ok go-client "$fp"; then say go-client "ok (target/tests-bin/go-client)"; return 0; fi
  say go-client "building target/tests-bin/go-client"
  mkdir -p "$(dirname "$GO_BIN")"
  timed go-client env GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= \
    GOCACHE="${GOCACHE:-$ROOT/target/tests-bin/go-cache}" \
    go build -o "$GO_BIN" "./$src"
  stamp_set go-client "$fp"
}

# ---------------------------------------------------------------- prerequisites
# What this script cannot install itself. All that is missing is named on one line, before
# anything is installed, instead of a failure half-way through.
check_prerequisites() {
  local missing=() need_apt
  command -v cargo >/dev/null || missing+=("cargo (the Rust toolchain, https://rustup.rs)")
  command -v "$PY" >/dev/null || missing+=("$PY (Python 3.9+)")
  command -v "$PY" >/dev/null && ! "$PY" -c 'import venv, ensurepip' 2>/dev/null &&
    missing+=("Python's venv module (Debian: apt-get install python3-venv)")
  if ! skipped_quietly node; then
    command -v node >/dev/null || missing+=("node (Node.js 18+)")
    command -v npm >/dev/null || missing+=("npm")
  fi
  need_apt=$(skipped_quietly apt || apt_missing | tr '\n' ' ')
  if [ -n "${need_apt// /}" ]; then
    command -v apt-get >/dev/null || missing+=("apt-get (Debian or Ubuntu) to install: $need_apt")
    [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null ||
      missing+=("root or password-less sudo to apt-get install: $need_apt")
  fi
  [ ${#missing[@]} = 0 ] && return 0
  local line
  line=$(printf '%s; ' "${missing[@]}")
  echo "setup: missing: ${line%; } (and the package registries must be reachable)" >&2
  exit 1
}
skipped_quietly() { [[ "$SKIP" == *" $1 "* ]]; }

T0=$SECONDS
check_prerequisites
setup_apt
setup_python
setup_autobahn
setup_node
setup_cargo_fuzz
setup_go_client
echo "setup: done in $((SECONDS - T0))s"
