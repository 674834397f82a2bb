//! The backend the servers under test run on, shared by the test binaries that start
//! servers in process (`engine`, `tls`).

use surge::Backend;

/// `SURGE_TEST_BACKEND` (`epoll`, `io-uring`, or unset: auto). tests/run.sh runs the
/// engine, hostile and TLS suites once per backend.
pub fn backend() -> Backend {
    match std::env::var("SURGE_TEST_BACKEND").as_deref() {
        Ok("epoll") => Backend::Epoll,
        Ok("io-uring") => Backend::IoUring,
        Ok("auto") | Err(_) => Backend::Auto,
        Ok(other) => panic!("SURGE_TEST_BACKEND={other}: expected epoll, io-uring or auto"),
    }
}
