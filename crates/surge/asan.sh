#!/usr/bin/env bash
# Runs the io_uring backend's tests under AddressSanitizer: its buffer ring, the sends lent
# from the output queue and the ring's end are the engine's only unsafe code, and an
# out-of-bounds or freed access there fails the run even when it lands on mapped memory.
# (The kernel's own accesses are outside ASan's view; the tests check what it hands back.)
#
# As crates/surge-proto/asan.sh: the stable toolchain with RUSTC_BOOTSTRAP=1, `--target` so
# that RUSTFLAGS stay off build scripts and proc macros, `target/asan` apart from the
# normal build. x86_64 Linux only; elsewhere it skips.
set -euo pipefail

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "asan.sh: skipped: needs x86_64 Linux, this is $(uname -s)-$(uname -m)"
    exit 0
fi

cd "$(dirname "$0")/../.."

export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"

exec cargo test -p surge --no-default-features --target x86_64-unknown-linux-gnu \
    --target-dir target/asan --lib --test engine uring "$@"
