//! One event loop: a mio poll, its listeners, its connections, one read buffer.
//!
//! A loop turn: wait for readiness (the timeout comes from the timer wheel), read the clock
//! once, handle every event (one read per readable socket; more only while a read fills the
//! buffer), run due timers, then flush each connection that has output: one write (or
//! writev) per connection per turn. WRITABLE interest is registered only while a write is
//! partial.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use surge_proto::close::CloseCode;
use surge_proto::handshake::ServerHandshake;

use crate::backend::{Backend, Ready};
use crate::buffer_pool::BufferPool;
use crate::config::Config;
use crate::conn::{flag, ConnCore, ConnEntry, ConnIo, Phase, SendResult};
use crate::context::{LoopCtx, Shutdown, Ticks};
use crate::handle::{Command, ServerHandle, ShutdownReport};
use crate::handler::Handler;
use crate::key::ConnKey;
use crate::outbox::{Flushed, Outboxes, SharedFrame};
use crate::slab::Slab;
use crate::timer::{TimerEntry, TimerWheel};
use crate::transport::{Stream, Transport};
use crate::turn::{ReadEnd, Turn};
use crate::upgrade;

/// Connections accepted per listener event before others get a turn.
const MAX_ACCEPTS_PER_EVENT: usize = 256;
/// Flush passes per turn (a flush can run `on_drain`, which can queue more).
const FLUSH_PASSES: usize = 4;

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

/// One event loop.
pub(crate) struct EventLoop<H: Handler, B: Backend> {
    backend: B,
    /// What the backend reported in this turn's wait.
    ready: Vec<Ready>,
    commands: Receiver<Command>,
    reports: Sender<ShutdownReport>,
    conns: Slab<ConnEntry<H::State>>,
    read_buf: Box<[u8]>,
    /// The assembly buffer lent to connections that are not assembling.
    spare: Vec<u8>,
    handler: H,
    ctx: LoopCtx,
    /// Scratch lists, kept for their capacity.
    expired: Vec<TimerEntry>,
    scratch: Vec<ConnKey>,
    /// Whether this loop accepts for all (no `SO_REUSEPORT`), and its round-robin position.
    deal: bool,
    next_loop: usize,
    /// Accepting hit a resource limit (descriptors): retry on the next tick.
    accept_paused: bool,
    /// Accepting stopped at the per-event cap: go on next turn.
    accept_pending: bool,
    /// The tick accepting was paused at.
    paused_at: u64,
    /// Messages addressed to connections that were gone.
    stale: u64,
}

impl<H: Handler, B: Backend> EventLoop<H, B> {
    pub(crate) fn new(setup: LoopSetup, backend: B, handler: H) -> Self {
        let now = backend.now();
        let assembly_budget = (setup.config.assembly_budget() / setup.config.threads()).max(1);
        let wheel = TimerWheel::new(now, setup.config.timer_tick());
        let ticks = Ticks {
            handshake: wheel.ticks(setup.config.handshake_timeout()),
            close: wheel.ticks(setup.config.close_timeout()),
        };
        EventLoop {
            backend,
            ready: Vec::new(),
            commands: setup.commands,
            reports: setup.reports,
            conns: Slab::new(),
            read_buf: vec![0; setup.config.read_buffer_size()].into_boxed_slice(),
            spare: Vec::new(),
            handler,
            ctx: LoopCtx {
                index: setup.index,
                pool: BufferPool::new(setup.config.pool_budget()),
                outboxes: Outboxes::default(),
                config: setup.config,
                handle: setup.handle,
                wheel,
                dirty: Vec::new(),
                again: Vec::new(),
                assembly_bytes: 0,
                assembly_budget,
                now,
                tick: 0,
                ticks,
                shutdown: None,
                reply: Vec::with_capacity(512),
            },
            expired: Vec::new(),
            scratch: Vec::new(),
            deal: setup.deal,
            next_loop: 0,
            accept_paused: false,
            accept_pending: false,
            paused_at: 0,
            stale: 0,
        }
    }

    /// Runs until a shutdown completes, then sends this loop's report.
    pub(crate) fn run(mut self) {
        while !self.finished() {
            match self.step(self.poll_timeout()) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::error!(loop_index = self.ctx.index, %error, "wait failed; loop stops");
                    break;
                }
                Ok(()) => {}
            }
        }
        if self.stale > 0 {
            tracing::debug!(
                loop_index = self.ctx.index,
                stale = self.stale,
                "messages for closed connections"
            );
        }
        // Nobody may be waiting (no shutdown was asked for): then the report has no reader.
        let _ = self.reports.send(self.report());
    }

    /// Waits at most `timeout` for I/O, then runs the turn at the backend's time.
    pub(crate) fn step(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        let waited = self.backend.wait(timeout, &mut ready);
        if waited.is_ok() {
            let now = self.backend.now();
            self.turn(now, &mut ready);
        }
        ready.clear();
        self.ready = ready;
        waited
    }

    /// One loop turn at `now`: handle what the backend reported (`ready`, emptied), read what
    /// must be read again, run due timers, flush every connection with output.
    pub(crate) fn turn(&mut self, now: Instant, ready: &mut Vec<Ready>) {
        self.ctx.now = now;
        self.ctx.tick = self.ctx.wheel.tick_of(now);
        for event in ready.drain(..) {
            match event {
                Ready::Wake => self.drain_commands(),
                Ready::Listener(index) => self.accept(index),
                Ready::Input { key, peer_done } => self.on_readable(key, peer_done),
                Ready::Output(key) => self.on_writable(key),
            }
        }
        self.read_again();
        self.fire_timers();
        self.flush_dirty();
        if let Some(shutdown) = &self.ctx.shutdown {
            if !self.conns.is_empty() && self.ctx.now >= shutdown.deadline {
                self.drop_all();
            }
        }
    }

    /// Whether a shutdown has finished: no connection is left.
    pub(crate) fn finished(&self) -> bool {
        self.ctx.shutdown.is_some() && self.conns.is_empty()
    }

    /// What the shutdown achieved so far (empty when none was asked for).
    pub(crate) fn report(&self) -> ShutdownReport {
        self.ctx.shutdown.as_ref().map(|s| s.report).unwrap_or_default()
    }

    /// Whether the loop has work it can do without waiting: connections to read again or to
    /// flush, listeners with connections left.
    pub(crate) fn busy(&self) -> bool {
        !self.ctx.again.is_empty() || !self.ctx.dirty.is_empty() || self.accept_pending
    }

    /// How long the backend may wait before the next turn is due.
    pub(crate) fn poll_timeout(&self) -> Option<Duration> {
        if self.busy() {
            return Some(Duration::ZERO);
        }
        let now = self.ctx.now;
        let mut timeout = self.ctx.wheel.timeout(now);
        if self.accept_paused {
            timeout = Some(self.ctx.config.timer_tick());
        }
        if let Some(shutdown) = &self.ctx.shutdown {
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
                    tracing::warn!(loop_index = self.ctx.index, %error, "accept failed; retrying");
                    self.accept_paused = true;
                    self.paused_at = self.ctx.tick;
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
            return self.adopt(stream, peer);
        }
        let loops = &self.ctx.handle.shared.loops;
        let target = self.next_loop % loops.len();
        self.next_loop = self.next_loop.wrapping_add(1);
        if target == usize::from(self.ctx.index) {
            self.adopt(stream, peer);
        } else if let Err(error) = loops[target].submit(Command::Adopt(stream, peer)) {
            tracing::warn!(%error, "could not hand a connection to loop {target}");
        }
    }

    fn adopt(&mut self, stream: Stream, peer: SocketAddr) {
        if self.ctx.shutdown.is_some() {
            return;
        }
        let core = ConnCore {
            io: ConnIo::new(stream),
            phase: Phase::Handshake {
                parser: ServerHandshake::new(*self.ctx.config.handshake_limits()),
                peer,
                deadline: self.ctx.tick + self.ctx.ticks.handshake,
            },
        };
        let Some(key) = self.conns.insert(ConnEntry { core, app: None }) else { return };
        let Some(entry) = self.conns.get_mut(key) else { return };
        if let Err(error) = self.backend.register(key, &mut entry.core.io.stream) {
            tracing::warn!(%error, "cannot register a connection");
            self.conns.remove(key);
            return;
        }
        entry.core.arm_timer(&mut self.ctx, key);
    }

    // ---- reading ---------------------------------------------------------------------

    fn read_again(&mut self) {
        if self.ctx.again.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.scratch);
        std::mem::swap(&mut list, &mut self.ctx.again);
        for &key in &list {
            // No fresh readiness edge comes for these: read until the kernel has nothing.
            self.on_readable(key, true);
        }
        list.clear();
        self.scratch = list;
    }

    fn on_readable(&mut self, key: ConnKey, until_would_block: bool) {
        let EventLoop { conns, read_buf, spare, handler, ctx, .. } = self;
        let Some(entry) = conns.get_mut(key) else { return };
        let mut turn = Turn { handler, ctx, spare };
        if let ReadEnd::Lost = turn.read(entry, key, read_buf, until_would_block) {
            self.remove(key);
        }
    }

    fn on_writable(&mut self, key: ConnKey) {
        let Some(entry) = self.conns.get_mut(key) else { return };
        if entry.core.io.has(flag::WRITE_BLOCKED) {
            self.flush_one(key);
        }
    }

    // ---- writing ---------------------------------------------------------------------

    fn flush_dirty(&mut self) {
        for _ in 0..FLUSH_PASSES {
            if self.ctx.dirty.is_empty() {
                return;
            }
            let mut list = std::mem::take(&mut self.scratch);
            std::mem::swap(&mut list, &mut self.ctx.dirty);
            for &key in &list {
                let Some(entry) = self.conns.get_mut(key) else { continue };
                entry.core.io.clear(flag::DIRTY);
                if !entry.core.io.has(flag::WRITE_BLOCKED) {
                    self.flush_one(key);
                }
            }
            list.clear();
            self.scratch = list;
        }
    }

    /// Writes a connection's output once, then settles what follows from it: WRITABLE
    /// interest, owed control frames, drain notifications, closing the stream.
    fn flush_one(&mut self, key: ConnKey) {
        let EventLoop { conns, handler, ctx, backend, spare, .. } = self;
        let Some(entry) = conns.get_mut(key) else { return };
        let io = &mut entry.core.io;
        if let Some(out) = io.out.as_mut() {
            let blocked = match backend.flush(key, &mut io.stream, out, &mut ctx.pool) {
                Ok(Flushed::All) => {
                    if let Some(out) = io.out.take() {
                        ctx.outboxes.give(out, &mut ctx.pool);
                    }
                    false
                }
                Ok(Flushed::Partial) => true,
                Err(error) => {
                    tracing::debug!(id = %ctx.id(key), %error, "write failed");
                    self.remove(key);
                    return;
                }
            };
            if blocked != io.has(flag::WRITE_BLOCKED) {
                if blocked {
                    io.set(flag::WRITE_BLOCKED);
                } else {
                    io.clear(flag::WRITE_BLOCKED);
                }
                if backend.watch_writable(key, &mut io.stream, blocked).is_err() {
                    self.remove(key);
                    return;
                }
            }
        }
        if entry.core.io.has(flag::WRITE_BLOCKED) {
            return;
        }
        entry.core.transmit(ctx, key);
        if entry.core.io.buffered() <= ctx.config.low_watermark() {
            if entry.core.io.has(flag::READ_PAUSED) {
                entry.core.io.clear(flag::READ_PAUSED);
                ctx.again.push(key);
            }
            Turn { handler, ctx, spare }.drain(entry, key);
        }
        let core = &mut entry.core;
        if core.io.out.is_some() {
            return;
        }
        if core.phase.ws().is_some_and(|ws| ws.is_closed()) {
            self.remove(key);
            return;
        }
        match &mut core.phase {
            Phase::Refused { write_shut, .. } if !*write_shut => {
                // Lingering close: stop sending and wait for the client's end of stream (or
                // the deadline), so unread request bytes do not turn our FIN into a reset
                // that could destroy the answer.
                let _ = core.io.stream.shutdown_write();
                *write_shut = true;
            }
            _ => {}
        }
    }

    // ---- timers ----------------------------------------------------------------------

    fn fire_timers(&mut self) {
        let retry = (self.accept_paused && self.ctx.tick > self.paused_at) || self.accept_pending;
        if retry {
            self.accept_paused = false;
            self.accept_pending = false;
            for index in 0..self.backend.listeners() {
                self.accept(index);
            }
        }
        let mut expired = std::mem::take(&mut self.expired);
        self.ctx.wheel.advance(self.ctx.tick, &mut expired);
        for entry in expired.drain(..) {
            self.on_timer(entry);
        }
        self.expired = expired;
    }

    /// A connection's timer entry is due: the handshake or refusal deadline, or whatever the
    /// protocol has due (it decides; the loop sends what it owes and drops the connection
    /// once its close handshake has timed out).
    fn on_timer(&mut self, timer: TimerEntry) {
        let EventLoop { conns, ctx, .. } = self;
        let key = timer.key;
        let Some(entry) = conns.get_mut(key) else { return };
        let core = &mut entry.core;
        if core.io.timer_at != timer.at {
            return; // superseded by an earlier entry
        }
        core.io.timer_at = 0;
        let expired = match &mut core.phase {
            Phase::Handshake { deadline, .. } | Phase::Refused { deadline, .. } => {
                ctx.tick >= *deadline
            }
            Phase::Closing { linger, .. } => ctx.tick >= *linger,
            Phase::Open(ws) => {
                ws.handle_timeout(ctx.now);
                // Open and closed: only the close handshake's timeout does that (the peer's
                // Close or a violation would have moved it to Closing).
                ws.is_closed()
            }
        };
        if expired {
            tracing::debug!(id = %ctx.id(key), "timed out");
            self.remove(key);
            return;
        }
        // An idle ping or the idle Close, owed since the protocol's timeout.
        core.transmit(ctx, key);
        core.arm_timer(ctx, key);
    }

    // ---- commands from other threads ---------------------------------------------------

    fn drain_commands(&mut self) {
        self.ctx.handle.shared.loops[usize::from(self.ctx.index)].rearm();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Send { id, msg } => {
                    let EventLoop { conns, handler, ctx, spare, .. } = self;
                    match conns.get_mut(id.key) {
                        Some(entry) if id.loop_index == ctx.index && entry.core.phase.is_open() => {
                            Turn { handler, ctx, spare }.deliver(entry, id.key, msg.as_message())
                        }
                        _ => self.stale += 1,
                    }
                }
                Command::Broadcast(frame) => self.broadcast(&frame),
                Command::Close { id, frame } => {
                    let EventLoop { conns, ctx, .. } = self;
                    match conns.get_mut(id.key) {
                        Some(entry) if id.loop_index == ctx.index && entry.core.phase.is_open() => {
                            let code = frame.code().unwrap_or(CloseCode::NORMAL);
                            let _ = entry.core.start_close(ctx, id.key, code, frame.reason());
                        }
                        _ => self.stale += 1,
                    }
                }
                Command::Adopt(stream, peer) => self.adopt(stream, peer),
                Command::Shutdown { deadline } => self.begin_shutdown(deadline),
            }
        }
    }

    fn broadcast(&mut self, frame: &SharedFrame) {
        let EventLoop { conns, handler, ctx, spare, .. } = self;
        let mut turn = Turn { handler, ctx, spare };
        for (key, entry) in conns.iter_mut() {
            if !entry.core.phase.is_open() {
                continue;
            }
            if entry.core.send_shared(turn.ctx, key, frame) == SendResult::Backpressure {
                turn.refused(entry, key, frame.message());
            }
        }
    }

    // ---- shutdown --------------------------------------------------------------------

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.ctx.shutdown.is_some() {
            return;
        }
        // Rounded up: no connection is dropped before the deadline.
        let deadline_tick = self.ctx.wheel.tick_of(deadline) + 1;
        self.ctx.shutdown =
            Some(Shutdown { deadline, deadline_tick, report: ShutdownReport::default() });
        self.backend.stop_listening();
        let mut keys = std::mem::take(&mut self.scratch);
        self.conns.keys_into(&mut keys);
        for &key in &keys {
            let EventLoop { conns, ctx, .. } = self;
            let Some(entry) = conns.get_mut(key) else { continue };
            let core = &mut entry.core;
            match core.phase {
                Phase::Handshake { .. } => upgrade::refuse(core, ctx, key, 503),
                // Fails only when our Close is already out. Whatever is left at the deadline
                // is dropped then (see `turn`).
                Phase::Open(_) => {
                    let _ =
                        core.start_close(ctx, key, CloseCode::GOING_AWAY, "server shutting down");
                }
                Phase::Closing { .. } | Phase::Refused { .. } => {}
            }
        }
        keys.clear();
        self.scratch = keys;
    }

    fn drop_all(&mut self) {
        let mut keys = std::mem::take(&mut self.scratch);
        self.conns.keys_into(&mut keys);
        for &key in &keys {
            self.remove(key);
        }
        keys.clear();
        self.scratch = keys;
    }

    // ---- the end of a connection -------------------------------------------------------

    /// Closes the stream and returns the buffers; tells the application if it still held
    /// the connection open (1006: no close handshake).
    fn remove(&mut self, key: ConnKey) {
        let Some(mut entry) = self.conns.remove(key) else { return };
        let EventLoop { handler, ctx, spare, .. } = self;
        Turn { handler, ctx, spare }.notify_close(&mut entry, key, CloseCode::ABNORMAL, "");
        let ConnEntry { core, .. } = entry;
        if let (Some(shutdown), Some(ws)) = (&mut self.ctx.shutdown, core.phase.ws()) {
            if ws.is_closed() && ws.close_received() {
                shutdown.report.closed_cleanly += 1;
            } else {
                shutdown.report.forced += 1;
            }
        }
        let ConnIo { out, held, .. } = core.io;
        if let Some(out) = out {
            self.ctx.outboxes.give(out, &mut self.ctx.pool);
        }
        if let Some(held) = held {
            self.ctx.assembly_bytes -= held.assembly.capacity();
            self.ctx.pool.give_held(held);
        }
        // Dropping the stream closes it, which also takes it out of the backend's set.
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
