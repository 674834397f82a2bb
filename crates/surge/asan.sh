#!/usr/bin/env bash
# The io_uring backend's tests under AddressSanitizer (tests/asan.sh): its buffer ring, the
# sends lent from the output queue and the ring's end are the engine's only unsafe code.
# (The kernel's own accesses are outside ASan's view; the tests check what it hands back.)
# The TLS suite's io_uring test (records received through a tiny ring, a poll for writability)
# runs here too: the ring's buffers are what the TLS transport copies out of.
# So do the TLS provider's random buffer tests (tls/random.rs: its fork handler, and a fork).
exec "$(dirname "$0")/../../tests/asan.sh" -p surge --no-default-features --lib --test engine --test tls -- uring tls::random "$@"
