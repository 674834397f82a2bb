//! The backend seam: what waits for I/O, owns the listeners, registers streams and carries
//! out a connection's flush. The event loop above it sees connections only as "bytes arrived
//! for connection X" and "flush connection X's queued output", whatever the backend.
//!
//! # What a backend must provide
//!
//! As mio's `sys/mod.rs` does for its platforms, here is the contract; `MioBackend` (epoll,
//! kqueue through mio) is the first implementation, and the test simulator in `sim` (a
//! virtual clock, in-memory streams) the second.
//!
//! - [`Backend::wait`]: block for at most the timeout the loop gives (`None`: until
//!   something happens; zero: only look); then [`Backend::drain`]: hand what happened to the
//!   loop, one [`Ready`] at a time: a connection readable (or its peer gone), writable again
//!   after a partial flush, a listener with connections waiting, the waker. Readiness is edge-like: an event is
//!   reported once per change, and the loop reads until the stream says `WouldBlock` (or a
//!   short read) before it expects another.
//! - [`Backend::now`]: the clock, read once per turn after `wait`. Every deadline the loop
//!   keeps is measured on it, so a backend with a virtual clock makes every timeout exact.
//! - [`Backend::accept`]: one waiting connection of a listener, as a [`Stream`], or `None`
//!   when none waits. Socket options (`TCP_NODELAY`) are the backend's business.
//! - [`Backend::register`]: start reporting a new stream's input under its key.
//! - [`Backend::flush`]: write what a connection's [`Outbox`] holds, returning whether all of
//!   it went. A readiness backend writes now (one `writev`); a completion backend (io_uring)
//!   submits the send, keeps the segments it sent until the completion arrives, and reports
//!   `Partial` meanwhile. In both, the pool gets a segment's buffer back only once the kernel
//!   is done with it.
//! - [`Backend::watch_writable`]: report writability for this stream while `on` (after a
//!   partial flush); a completion backend, which learns of the send's end anyway, ignores it.
//! - [`Backend::stop_listening`]: close the listeners (shutdown).
//!
//! - [`Backend::retire`]: a connection is gone; its stream and output queue are handed
//!   over. A readiness backend drops the stream and hands the queue back at once; a
//!   completion backend cancels what it has in flight for it and keeps the queue until
//!   the kernel is done with its buffers.
//!
//! # Completion backends (io_uring, in `uring`)
//!
//! A completion backend reports a connection's input as the bytes themselves,
//! [`Ready::Received`]: each completed receive buffer goes to the loop's receive path
//! (`turn::Turn::receive`, the same one a readiness backend's reads reach) and back to the
//! ring as soon as that returns, as uSockets does; a partial message moves into the pooled
//! assembly buffer exactly as with a read. Its flush lends the output queue's front
//! segments to a send ([`Outbox::lend`]) and reports [`Ready::Sent`] when it completes.
//! It says so with [`Backend::COMPLETES_READS`]: the loop then asks it to
//! [`pause_reading`](Backend::pause_reading) at the backpressure limit (instead of not
//! reading) and to [`resume_reading`](Backend::resume_reading) after (instead of reading
//! the stream). The end of a stream, or an error, it reports as [`Ready::Input`] with
//! `peer_done`, which the loop confirms by reading the stream (the kernel has no receive
//! of its own armed for it then).
//!
//! A transport that does its own framing (TLS) receives through the ring all the same: the
//! loop hands its received records to the transport's record processing (the one its
//! `read` uses, with the received bytes as the source instead of the socket), which
//! decrypts them into the loop's read buffer, and the plaintext goes the way received bytes
//! go (`turn::Turn::take_received`). Such a stream is flushed through the transport, as a
//! readiness backend flushes ([`flush_through`]: encrypt, then `write` on the non-blocking
//! socket); what the socket does not take waits for a one-shot poll for writability,
//! reported as [`Ready::Output`]. The per-message path (`turn`, `conn`, `outbox`) is the
//! same for both.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::buffer_pool::BufferPool;
use crate::key::ConnKey;
use crate::outbox::{Flushed, Outbox};
use crate::transport::{Stream, Transport};

mod mio_poll;
#[cfg(test)]
pub(crate) mod sim;
#[cfg(target_os = "linux")]
mod uring;

pub(crate) use mio_poll::{MioBackend, WAKER};
#[cfg(target_os = "linux")]
pub use uring::IoUringStats;
#[cfg(target_os = "linux")]
pub(crate) use uring::{probe, UringBackend};

/// What a backend reports from one wait.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ready<'a> {
    /// Input for a connection, or its peer gone (`peer_done`: no further edge will come).
    Input { key: ConnKey, peer_done: bool },
    /// Bytes a completion backend received for a connection, lent until the handling
    /// returns (in place: the protocol unmasks them there).
    Received { key: ConnKey, bytes: &'a mut [u8] },
    /// A completion backend's send for a connection is over: how many bytes of what its
    /// output queue lent went, or the error that ended it.
    Sent { key: ConnKey, written: Result<usize, i32> },
    /// A connection that flushed only part of its output can take more.
    Output(ConnKey),
    /// Listener `i` has connections waiting.
    Listener(usize),
    /// Another thread queued commands for this loop.
    Wake,
}

/// The platform side of one event loop; see the [module documentation](self).
pub(crate) trait Backend {
    /// Whether input comes as [`Ready::Received`] bytes (a completion backend).
    const COMPLETES_READS: bool = false;
    /// Waits at most `timeout` for I/O; what happened is kept for [`Backend::drain`].
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Hands what the last wait found to `f`, one report at a time and in order, straight
    /// from the backend's own list (no copy of it per turn).
    fn drain(&mut self, f: impl FnMut(Ready<'_>));
    /// The time now (read once per turn).
    fn now(&self) -> Instant;
    /// How many listeners this loop accepts from.
    fn listeners(&self) -> usize;
    /// One waiting connection of listener `index`, or `None` when none waits.
    fn accept(&mut self, index: usize) -> io::Result<Option<(Stream, SocketAddr)>>;
    /// Closes every listener.
    fn stop_listening(&mut self);
    /// Starts reporting `stream`'s input as connection `key`'s.
    fn register(&mut self, key: ConnKey, stream: &mut Stream) -> io::Result<()>;
    /// Writes queued output of connection `key`; see the module documentation. By default,
    /// as a readiness backend does: at once, through the transport ([`flush_through`]).
    fn flush(
        &mut self,
        key: ConnKey,
        stream: &mut Stream,
        out: &mut Outbox,
        pool: &mut BufferPool,
    ) -> io::Result<Flushed> {
        let _ = key;
        flush_through(stream, out, pool)
    }
    /// Reports writability of `stream` while `on`.
    fn watch_writable(&mut self, key: ConnKey, stream: &mut Stream, on: bool) -> io::Result<()>;
    /// Connection `key` is gone: closes `stream`, and returns its output queue when nothing
    /// of it is in flight (else keeps it until the kernel is done with it).
    fn retire(
        &mut self,
        key: ConnKey,
        stream: Stream,
        out: Option<Box<Outbox>>,
    ) -> Option<Box<Outbox>> {
        let _ = key;
        drop(stream);
        out
    }
    /// Connection `key` has output queued behind a write still in flight (a completion
    /// backend's send), or closes once that write is done: its completion is wanted
    /// promptly, not held back for a batch.
    fn output_waits(&mut self, key: ConnKey) {
        let _ = key;
    }
    /// Connection `key` reached the backpressure limit: stop receiving for it (a completion
    /// backend; a readiness backend is simply not read).
    fn pause_reading(&mut self, key: ConnKey) {
        let _ = key;
    }
    /// Connection `key` may receive again (a completion backend).
    fn resume_reading(&mut self, key: ConnKey) {
        let _ = key;
    }
}

/// A flush through the transport: what `out` holds is written at once (one `writev`), and
/// output the transport still holds itself (TLS records) counts as partial, so that
/// writability is watched for it too.
pub(crate) fn flush_through(
    stream: &mut Stream,
    out: &mut Outbox,
    pool: &mut BufferPool,
) -> io::Result<Flushed> {
    match out.write_to(stream, pool)? {
        // Records the transport still holds (TLS) go out with an empty write.
        Flushed::All if stream.wants_write() => match stream.write_vectored(&[], pool) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ if stream.wants_write() => Ok(Flushed::Partial),
            _ => Ok(Flushed::All),
        },
        flushed => Ok(flushed),
    }
}
