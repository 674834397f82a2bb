#!/usr/bin/env bash
# The masking, UTF-8 and deflate tests under AddressSanitizer (tests/asan.sh): the SIMD
# kernels and the C zlib backend's FFI are this crate's unsafe code.
exec "$(dirname "$0")/../../tests/asan.sh" -p surge-proto --test mask --test utf8 --test deflate "$@"
