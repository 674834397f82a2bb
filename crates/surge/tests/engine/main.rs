//! The engine over loopback: real sockets, real loops; every test stops its server and
//! finishes on its own. Timeouts are tested on the simulator's virtual clock, at exact
//! instants (`src/tests`).

mod backpressure;
mod client;
mod cross_thread;
mod deflate;
mod echo;
mod harness;
mod limits;
mod panics;
mod shutdown;
#[cfg(target_os = "linux")]
mod uring;
