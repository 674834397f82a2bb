#!/usr/bin/env bash
# tests/asan.sh CARGO-TEST-ARGS...: runs `cargo test` under AddressSanitizer, for the crates
# whose unsafe code it checks (crates/*/asan.sh say which tests), so that an out-of-bounds or
# freed access fails the run even when it happens to land on mapped memory.
#
# Uses the stable toolchain with RUSTC_BOOTSTRAP=1 to unlock -Zsanitizer. `--target` keeps
# RUSTFLAGS off build scripts and proc macros, and `target/asan` keeps this build from
# invalidating the normal one. Only x86_64 Linux is supported; elsewhere it skips.
set -euo pipefail

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "asan.sh: skipped: needs x86_64 Linux, this is $(uname -s)-$(uname -m)"
    exit 0
fi

cd "$(dirname "$0")/.."

export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
# Leak checking is off: the test harness and proptest keep allocations alive on purpose.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"

exec cargo test --target x86_64-unknown-linux-gnu --target-dir target/asan "$@"
