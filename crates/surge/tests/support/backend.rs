//! The backend the servers under test run on, shared by the test binaries that start
//! servers in process (`engine`, `tls`).

use surge::{Backend, Config, Handler, LoopIndex, Server, ServerError};

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

/// Starts a server, or `None` (saying so) where its config asks for io_uring and the system
/// refuses it: a test of the io_uring backend is then skipped.
pub fn start_unless_io_uring_refused<H: Handler + 'static>(
    config: Config,
    factory: impl Fn(LoopIndex) -> H + Send + Sync + 'static,
) -> Option<Server> {
    match Server::start(config, factory) {
        Ok(server) => Some(server),
        Err(ServerError::IoUring { source }) => {
            eprintln!("skipped: io_uring refused here ({source})");
            None
        }
        Err(error) => panic!("{error}"),
    }
}

/// What a fault test with a receive ring far too small for the demand must have met: the ring
/// ran dry (`ENOBUFS`) and the receives were armed again.
pub fn assert_the_ring_ran_dry(server: &Server) {
    let stats = server.io_uring_stats();
    assert!(stats.no_buffers > 0, "the ring ran dry, as the test means it to: {stats:?}");
    assert!(stats.rearmed > 0, "and the receives were armed again: {stats:?}");
}
