//! The engine over loopback: real sockets, real loops, short timeouts; every test stops its
//! server and finishes on its own.

mod backpressure;
mod client;
mod cross_thread;
mod echo;
mod harness;
mod limits;
mod panics;
mod shutdown;
mod timeouts;
