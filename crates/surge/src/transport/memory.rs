//! An in-memory transport for the simulator: the server's end of a pipe whose other end a
//! test holds as a [`Peer`]. The server may write at most a window of unread bytes, so a
//! test that stops reading sees backpressure exactly as over TCP.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Transport;
use crate::buffer_pool::BufferPool;

/// What both ends of a pipe see.
#[derive(Debug)]
pub(crate) struct PipeState {
    /// Bytes the peer sent that the server has not read.
    pub(crate) to_server: Vec<u8>,
    /// Bytes the server wrote that the peer has not read.
    pub(crate) to_client: Vec<u8>,
    /// The most unread bytes `to_client` may hold: past it the server's writes block.
    pub(crate) window: usize,
    /// The peer ended its output.
    pub(crate) peer_shut: bool,
    /// The server shut its output.
    pub(crate) server_shut: bool,
    /// The server dropped its end: the connection is gone.
    pub(crate) server_gone: bool,
    /// New input (or the peer's end of stream) since the server was last told.
    pub(crate) input_edge: bool,
    /// Room in the window since the server was last told.
    pub(crate) output_edge: bool,
    /// Write calls the server made (for tests of how output is batched).
    pub(crate) writes: usize,
    /// Where the server's next call on this pipe panics, standing in for a bug in the
    /// engine's own work on the connection (for tests that the panic goes no further).
    pub(crate) fault: Option<Fault>,
}

/// A call on the server's end of a pipe that panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Read,
    Write,
}

/// The server's end of a pipe.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) state: Arc<Mutex<PipeState>>,
}

/// The test's end of a pipe.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) state: Arc<Mutex<PipeState>>,
}

/// A pipe whose server end may hold `window` unwritten-to-the-peer bytes.
pub(crate) fn pipe(window: usize) -> (Pipe, Peer) {
    let state = Arc::new(Mutex::new(PipeState {
        to_server: Vec::new(),
        to_client: Vec::new(),
        window,
        peer_shut: false,
        server_shut: false,
        server_gone: false,
        input_edge: false,
        output_edge: false,
        writes: 0,
        fault: None,
    }));
    (Pipe { state: Arc::clone(&state) }, Peer { state })
}

fn lock(state: &Mutex<PipeState>) -> MutexGuard<'_, PipeState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pipe {
    fn state(&self) -> MutexGuard<'_, PipeState> {
        lock(&self.state)
    }
}

impl Transport for Pipe {
    fn read(&mut self, buf: &mut [u8], _pool: &mut BufferPool) -> io::Result<usize> {
        let mut state = self.state();
        assert_ne!(state.fault, Some(Fault::Read), "a read that panics");
        if state.to_server.is_empty() {
            return if state.peer_shut { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(state.to_server.len());
        buf[..n].copy_from_slice(&state.to_server[..n]);
        state.to_server.drain(..n);
        Ok(n)
    }

    fn write_vectored(
        &mut self,
        bufs: &[IoSlice<'_>],
        _pool: &mut BufferPool,
    ) -> io::Result<usize> {
        let mut state = self.state();
        assert_ne!(state.fault, Some(Fault::Write), "a write that panics");
        state.writes += 1;
        let room = state.window.saturating_sub(state.to_client.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut written = 0;
        for buf in bufs {
            let take = buf.len().min(room - written);
            state.to_client.extend_from_slice(&buf[..take]);
            written += take;
        }
        Ok(written)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.state().server_shut = true;
        Ok(())
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from(([192, 0, 2, 1], 40000)))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.state().server_gone = true;
    }
}

impl Peer {
    pub(crate) fn state(&self) -> MutexGuard<'_, PipeState> {
        lock(&self.state)
    }

    /// Sends bytes to the server.
    pub(crate) fn write(&self, bytes: &[u8]) {
        let mut state = self.state();
        state.to_server.extend_from_slice(bytes);
        state.input_edge = true;
    }

    /// Takes every byte the server wrote, making room in the window.
    pub(crate) fn take(&self) -> Vec<u8> {
        let mut state = self.state();
        if !state.to_client.is_empty() {
            state.output_edge = true;
        }
        std::mem::take(&mut state.to_client)
    }

    /// Ends the peer's output (its FIN).
    pub(crate) fn shut(&self) {
        let mut state = self.state();
        state.peer_shut = true;
        state.input_edge = true;
    }

    /// Whether the server has dropped the connection.
    pub(crate) fn server_gone(&self) -> bool {
        self.state().server_gone
    }
}
