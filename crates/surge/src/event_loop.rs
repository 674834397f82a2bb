//! One event loop: a backend (`backend`: what waits for I/O) and the connections it serves
//! (`connections`), and the turn that joins them.
//!
//! A loop turn: wait for I/O (at most until the timer wheel's next tick), read the clock
//! once, then at that `now`: handle what the backend reported (input: one read per readable
//! stream, more only while a read fills the buffer; writability; new connections; commands
//! from other threads), read again what asked for it, run due timers, then flush each
//! connection that has output: one write (or writev) per connection per turn. WRITABLE
//! interest is asked for only while a write is partial. Accepting (its per-event cap, its
//! retry after a resource limit, dealing sockets to other loops) is here too.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::backend::{Backend, Ready};
use crate::config::Config;
use crate::connections::Connections;
use crate::handle::{Command, ServerHandle, ShutdownReport};
use crate::handler::Handler;
use crate::key::ConnKey;
use crate::transport::Stream;

/// Connections accepted per listener event before others get a turn.
const MAX_ACCEPTS_PER_EVENT: usize = 256;

/// What a loop is given at start.
pub(crate) struct LoopSetup {
    pub(crate) index: u16,
    /// This loop accepts for all and deals sockets round-robin.
    pub(crate) deal: bool,
    pub(crate) commands: Receiver<Command>,
    pub(crate) reports: Sender<ShutdownReport>,
    pub(crate) config: Arc<Config>,
    pub(crate) handle: ServerHandle,
}

/// One event loop: a backend and the connections it serves.
pub(crate) struct EventLoop<H: Handler, B: Backend> {
    backend: B,
    /// Reports of this turn's wait handled after the reads (they need the backend, which is
    /// busy handing out the reports): writable connections, listeners with connections.
    writable: Vec<ConnKey>,
    listening: Vec<usize>,
    /// Connections a completion backend is to stop receiving for (backpressure).
    paused: Vec<ConnKey>,
    commands: Receiver<Command>,
    reports: Sender<ShutdownReport>,
    conns: Connections<H>,
    /// Whether this loop accepts for all (no `SO_REUSEPORT`), and its round-robin position.
    deal: bool,
    next_loop: usize,
    /// Accepting hit a resource limit (descriptors): retry on the next tick.
    accept_paused: bool,
    /// Accepting stopped at the per-event cap: go on next turn.
    accept_pending: bool,
    /// The tick accepting was paused at.
    paused_at: u64,
}

impl<H: Handler, B: Backend> EventLoop<H, B> {
    pub(crate) fn new(setup: LoopSetup, backend: B, handler: H) -> Self {
        let now = backend.now();
        EventLoop {
            conns: Connections::new(setup.index, setup.config, setup.handle, handler, now),
            backend,
            writable: Vec::new(),
            listening: Vec::new(),
            paused: Vec::new(),
            commands: setup.commands,
            reports: setup.reports,
            deal: setup.deal,
            next_loop: 0,
            accept_paused: false,
            accept_pending: false,
            paused_at: 0,
        }
    }

    /// Runs until a shutdown completes, then sends this loop's report.
    pub(crate) fn run(mut self) {
        while !self.finished() {
            match self.step(self.poll_timeout()) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let loop_index = self.conns.ctx.index;
                    tracing::error!(loop_index, %error, "wait failed; loop stops");
                    break;
                }
                Ok(()) => {}
            }
        }
        if self.conns.stale() > 0 {
            tracing::debug!(
                loop_index = self.conns.ctx.index,
                stale = self.conns.stale(),
                "messages for closed connections"
            );
        }
        // Nobody may be waiting (no shutdown was asked for): then the report has no reader.
        let _ = self.reports.send(self.report());
    }

    /// Waits at most `timeout` for I/O, then runs the turn at the backend's time.
    pub(crate) fn step(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.backend.wait(timeout)?;
        let now = self.backend.now();
        self.turn(now);
        Ok(())
    }

    /// One loop turn at `now`: handle what the backend's wait found (input at once, in
    /// order; then writability, commands, new connections), read what must be read again,
    /// run due timers, flush every connection with output.
    pub(crate) fn turn(&mut self, now: Instant) {
        let ctx = &mut self.conns.ctx;
        ctx.now = now;
        ctx.tick = ctx.wheel.tick_of(now);
        let EventLoop { backend, conns, writable, listening, paused, .. } = self;
        let mut woken = false;
        let mut events = 0;
        backend.drain(|ready| {
            events += 1;
            match ready {
                Ready::Input { key, peer_done } => conns.on_readable(key, peer_done),
                Ready::Received { key, bytes } => {
                    if conns.on_received(key, bytes) {
                        paused.push(key);
                    }
                }
                Ready::Sent { key, written } => {
                    conns.on_sent(key, written);
                    writable.push(key);
                }
                Ready::Output(key) => writable.push(key),
                Ready::Listener(index) => listening.push(index),
                Ready::Wake => woken = true,
            }
        });
        for key in self.paused.drain(..) {
            self.backend.pause_reading(key);
        }
        for key in self.writable.drain(..) {
            self.conns.on_writable(&mut self.backend, key);
        }
        if woken {
            self.drain_commands();
        }
        let mut listening = std::mem::take(&mut self.listening);
        for index in listening.drain(..) {
            self.accept(index);
        }
        self.listening = listening;
        self.conns.resume_throttled();
        self.conns.read_again(&mut self.backend);
        self.retry_accepts();
        self.conns.fire_timers();
        self.conns.flush_dirty(&mut self.backend);
        let ctx = &mut self.conns.ctx;
        ctx.stats.publish(&mut ctx.tally);
        if let Some(codecs) = &ctx.deflate {
            ctx.stats.deflate(&codecs.borrow().stats());
        }
        // The turn's one more clock read: its length, for the histogram.
        let stats = &ctx.stats;
        stats.events.record(events);
        let took = self.backend.now().saturating_duration_since(now);
        stats.turn_nanos.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        if let Some(shutdown) = &self.conns.ctx.shutdown {
            if !self.conns.is_empty() && now >= shutdown.deadline {
                self.conns.drop_all();
            }
        }
        self.conns.bury(&mut self.backend);
    }

    /// The loop's topic table.
    #[cfg(test)]
    pub(crate) fn topics(&self) -> &crate::topics::TopicTable {
        &self.conns.ctx.topics
    }

    /// Whether a shutdown has finished: no connection is left.
    pub(crate) fn finished(&self) -> bool {
        self.conns.ctx.shutdown.is_some() && self.conns.is_empty()
    }

    /// What permessage-deflate did on this loop: messages compressed and inflated, bytes
    /// before and after (the counters a metrics export reads).
    #[cfg(test)]
    pub(crate) fn deflate_stats(&self) -> surge_proto::deflate::DeflateStats {
        self.conns.ctx.deflate.as_ref().map(|codecs| codecs.borrow().stats()).unwrap_or_default()
    }

    /// What the shutdown achieved so far (empty when none was asked for).
    pub(crate) fn report(&self) -> ShutdownReport {
        self.conns.ctx.shutdown.as_ref().map(|s| s.report).unwrap_or_default()
    }

    /// Whether the loop has work it can do without waiting: connections to read again or to
    /// flush, listeners with connections left.
    pub(crate) fn busy(&self) -> bool {
        let ctx = &self.conns.ctx;
        !ctx.again.is_empty() || !ctx.dirty.is_empty() || self.accept_pending
    }

    /// How long the backend may wait before the next turn is due.
    pub(crate) fn poll_timeout(&self) -> Option<Duration> {
        if self.busy() {
            return Some(Duration::ZERO);
        }
        let ctx = &self.conns.ctx;
        let now = ctx.now;
        let mut timeout = ctx.wheel.timeout(now);
        if self.accept_paused || !ctx.throttled.is_empty() {
            timeout = Some(ctx.config.timer_tick());
        }
        if let Some(shutdown) = &ctx.shutdown {
            let left = shutdown.deadline.saturating_duration_since(now);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        timeout
    }

    // ---- accepting -------------------------------------------------------------------

    fn accept(&mut self, index: usize) {
        for _ in 0..MAX_ACCEPTS_PER_EVENT {
            match self.backend.accept(index) {
                Ok(Some((stream, peer))) => self.distribute(stream, peer),
                Ok(None) => return,
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(error) => {
                    // Out of descriptors or memory: the connection waits in the backlog; try
                    // again next tick rather than spin.
                    let loop_index = self.conns.ctx.index;
                    tracing::warn!(loop_index, %error, "accept failed; retrying");
                    self.accept_paused = true;
                    self.paused_at = self.conns.ctx.tick;
                    return;
                }
            }
        }
        // More may wait; the edge will not fire again for them, so come back next turn.
        self.accept_pending = true;
    }

    /// Keeps an accepted socket, or hands it to the next loop in turn when this loop
    /// accepts for all.
    fn distribute(&mut self, stream: Stream, peer: SocketAddr) {
        if !self.deal {
            return self.conns.adopt(&mut self.backend, stream, peer);
        }
        let loops = &self.conns.ctx.handle.shared.loops;
        let target = self.next_loop % loops.len();
        self.next_loop = self.next_loop.wrapping_add(1);
        if target == usize::from(self.conns.ctx.index) {
            self.conns.adopt(&mut self.backend, stream, peer);
        } else if let Err(error) = loops[target].submit(Command::Adopt(stream, peer)) {
            tracing::warn!(%error, "could not hand a connection to loop {target}");
        }
    }

    /// Accepting again: after a resource limit, from the next tick on; after the per-event
    /// cap, at once.
    fn retry_accepts(&mut self) {
        let retry =
            (self.accept_paused && self.conns.ctx.tick > self.paused_at) || self.accept_pending;
        if retry {
            self.accept_paused = false;
            self.accept_pending = false;
            for index in 0..self.backend.listeners() {
                self.accept(index);
            }
        }
    }

    // ---- commands from other threads ---------------------------------------------------

    fn drain_commands(&mut self) {
        let ctx = &self.conns.ctx;
        ctx.handle.shared.loops[usize::from(ctx.index)].rearm();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Send { id, msg } => self.conns.deliver(id, msg.as_message()),
                Command::Broadcast(frame) => self.conns.broadcast(&frame),
                Command::Subscribe { id, topic } => self.conns.subscribe(id, &topic, true),
                Command::Unsubscribe { id, topic } => self.conns.subscribe(id, &topic, false),
                Command::Publish { topics, frame } => self.conns.publish(&topics, &frame, None),
                Command::Remote { topics, via, frame } => {
                    self.conns.publish(&topics, &frame, Some(via))
                }
                Command::Close { id, frame } => self.conns.close(id, &frame),
                Command::Adopt(stream, peer) => self.conns.adopt(&mut self.backend, stream, peer),
                Command::Shutdown { deadline } => {
                    if self.conns.ctx.shutdown.is_none() {
                        self.backend.stop_listening();
                        self.conns.begin_shutdown(deadline);
                    }
                }
            }
        }
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::PermissionDenied
    )
}
