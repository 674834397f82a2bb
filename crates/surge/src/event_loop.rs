//! One event loop: a mio poll, its listeners, its connections, one read buffer.
//!
//! A loop turn: wait for readiness (the timeout comes from the timer wheel), read the clock
//! once, handle every event (one read per readable socket; more only while a read fills the
//! buffer), run due timers, then flush each connection that has output: one write (or
//! writev) per connection per turn. WRITABLE interest is registered only while a write is
//! partial.

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use surge_proto::close::CloseCode;
use surge_proto::handshake::ServerHandshake;
use surge_proto::message::Message;

use crate::buffer_pool::BufferPool;
use crate::config::Config;
use crate::conn::{flag, Conn, ConnCore, ConnEntry, Protocol};
use crate::handle::{Command, ConnectionId, ServerHandle, ShutdownReport};
use crate::handler::{Handler, SendResult};
use crate::inbound::{handler_panicked, notify_close, read_socket, transmit, ReadEnd};
use crate::outbox::{Flushed, SharedFrame};
use crate::slab::Slab;
use crate::timer::{TimerEntry, TimerWheel};
use crate::upgrade::refuse;

/// The waker's token.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`; connection tokens are far below.
const LISTENER_BASE: usize = usize::MAX - 1;
/// Listeners a loop may have (tokens reserved for them).
const MAX_LISTENERS: usize = 1 << 16;
/// Full reads of one socket per readiness event before others get a turn.
pub(crate) const MAX_READS_PER_EVENT: usize = 16;
/// Connections accepted per listener event before others get a turn.
const MAX_ACCEPTS_PER_EVENT: usize = 256;
/// Flush passes per turn (a flush can run `on_drain`, which can queue more).
const FLUSH_PASSES: usize = 4;

// Tokens carry a connection's generation in their upper half.
const _: () = assert!(usize::BITS >= 64, "surge needs a 64-bit target");

fn token(slot: u32, generation: u32) -> Token {
    Token((generation as usize) << 32 | slot as usize)
}

fn slot_of(token: Token) -> (u32, u32) {
    (token.0 as u32, (token.0 >> 32) as u32)
}

/// Timeouts of this loop in ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticks {
    pub(crate) handshake: u64,
    pub(crate) close: u64,
    /// Silence before the idle ping, and before the idle close; `None` when disabled.
    pub(crate) idle: Option<(u64, u64)>,
}

/// A graceful shutdown in progress.
#[derive(Debug)]
pub(crate) struct Shutdown {
    deadline: Instant,
    deadline_tick: u64,
    report: ShutdownReport,
}

/// The loop's state that connections and handlers reach through [`Conn`].
#[derive(Debug)]
pub(crate) struct LoopCtx {
    pub(crate) index: u16,
    pub(crate) config: Arc<Config>,
    pub(crate) handle: ServerHandle,
    pub(crate) pool: BufferPool,
    pub(crate) wheel: TimerWheel,
    /// Connections with output to flush at the end of this turn.
    pub(crate) dirty: Vec<(u32, u32)>,
    /// Connections to read again next turn (fairness, or resumed after backpressure).
    pub(crate) again: Vec<(u32, u32)>,
    /// Capacity of the assembly buffers connections of this loop hold.
    pub(crate) assembly_bytes: usize,
    /// This loop's share of the assembly budget.
    pub(crate) assembly_budget: usize,
    /// The clock, read once per turn.
    pub(crate) now: Instant,
    pub(crate) tick: u64,
    pub(crate) ticks: Ticks,
    pub(crate) shutdown: Option<Shutdown>,
    /// Where handshake answers are encoded before being written at once.
    pub(crate) reply: Vec<u8>,
    /// The message being delivered is the last of the input read: a large reply to it may be
    /// written at once (see `conn::WRITE_THROUGH_MIN`).
    pub(crate) write_through: bool,
}

impl LoopCtx {
    /// The tick by which a connection starting its close handshake now must be gone.
    pub(crate) fn close_deadline(&self) -> u64 {
        let at = self.tick + self.ticks.close;
        match &self.shutdown {
            Some(shutdown) => at.min(shutdown.deadline_tick),
            None => at,
        }
    }

    /// Makes sure `core` has a timer entry due no later than `at`.
    pub(crate) fn arm(&mut self, core: &mut ConnCore, id: ConnectionId, at: u64) {
        if core.timer_at == 0 || at < core.timer_at {
            core.timer_at =
                self.wheel.insert(TimerEntry { at, slot: id.slot, generation: id.generation });
        }
    }

    fn id(&self, slot: u32, generation: u32) -> ConnectionId {
        ConnectionId { loop_index: self.index, slot, generation }
    }
}

/// What a loop is given at start.
pub(crate) struct LoopSetup {
    pub(crate) index: u16,
    pub(crate) poll: Poll,
    pub(crate) listeners: Vec<TcpListener>,
    /// This loop accepts for all and deals sockets round-robin.
    pub(crate) deal: bool,
    pub(crate) commands: Receiver<Command>,
    pub(crate) reports: Sender<ShutdownReport>,
    pub(crate) config: Arc<Config>,
    pub(crate) handle: ServerHandle,
}

/// One event loop.
pub(crate) struct EventLoop<H: Handler> {
    poll: Poll,
    listeners: Vec<TcpListener>,
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
    scratch: Vec<(u32, u32)>,
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

impl<H: Handler> EventLoop<H> {
    pub(crate) fn new(setup: LoopSetup, handler: H) -> Self {
        let now = Instant::now();
        let assembly_budget = (setup.config.assembly_budget() / setup.config.threads()).max(1);
        let wheel = TimerWheel::new(now, setup.config.timer_tick());
        // Instants are stamped with the tick they fall in, so two stamps n ticks apart may be
        // as little as n - 1 ticks of real time apart: one tick more than the duration covers
        // keeps every timeout from firing before its configured time (late by a tick at most).
        let span = |duration| wheel.ticks(duration) + 1;
        let ticks = Ticks {
            handshake: span(setup.config.handshake_timeout()),
            close: span(setup.config.close_timeout()),
            idle: setup.config.idle_timeout().map(|idle| (span(idle / 2), span(idle))),
        };
        EventLoop {
            poll: setup.poll,
            listeners: setup.listeners,
            commands: setup.commands,
            reports: setup.reports,
            conns: Slab::new(),
            read_buf: vec![0; setup.config.read_buffer_size()].into_boxed_slice(),
            spare: Vec::new(),
            handler,
            ctx: LoopCtx {
                index: setup.index,
                pool: BufferPool::new(setup.config.pool_budget()),
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
                write_through: false,
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

    /// Registers the listeners; fails when the poller refuses them.
    pub(crate) fn register_listeners(&mut self) -> io::Result<()> {
        assert!(self.listeners.len() <= MAX_LISTENERS, "listeners past the token space");
        for (i, listener) in self.listeners.iter_mut().enumerate() {
            self.poll.registry().register(
                listener,
                Token(LISTENER_BASE - i),
                Interest::READABLE,
            )?;
        }
        Ok(())
    }

    /// Runs until a shutdown completes, then sends this loop's report.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(loop_index = self.ctx.index, %error, "poll failed; loop stops");
                break;
            }
            self.ctx.now = Instant::now();
            self.ctx.tick = self.ctx.wheel.tick_of(self.ctx.now);

            for event in events.iter() {
                match event.token() {
                    WAKER => self.drain_commands(),
                    Token(t) if t > LISTENER_BASE - MAX_LISTENERS => self.accept(LISTENER_BASE - t),
                    t => {
                        let (slot, generation) = slot_of(t);
                        let peer_done = event.is_read_closed() || event.is_error();
                        if event.is_readable() || peer_done {
                            self.on_readable(slot, generation, peer_done);
                        }
                        if event.is_writable() {
                            self.on_writable(slot, generation);
                        }
                    }
                }
            }
            self.read_again();
            self.fire_timers();
            self.flush_dirty();

            if let Some(shutdown) = &self.ctx.shutdown {
                if self.conns.is_empty() {
                    break;
                }
                if self.ctx.now >= shutdown.deadline {
                    self.drop_all();
                    break;
                }
            }
        }
        let report = self.ctx.shutdown.as_ref().map(|s| s.report).unwrap_or_default();
        if self.stale > 0 {
            tracing::debug!(
                loop_index = self.ctx.index,
                stale = self.stale,
                "messages for closed connections"
            );
        }
        // Nobody may be waiting (no shutdown was asked for): then the report has no reader.
        let _ = self.reports.send(report);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ctx.again.is_empty() || !self.ctx.dirty.is_empty() || self.accept_pending {
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
            let Some(listener) = self.listeners.get(index) else { return };
            match listener.accept() {
                Ok((stream, peer)) => self.distribute(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
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
    fn distribute(&mut self, stream: TcpStream, peer: SocketAddr) {
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

    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.ctx.shutdown.is_some() {
            return;
        }
        if self.ctx.config.nodelay() {
            // Best effort: a socket that refuses still works.
            let _ = stream.set_nodelay(true);
        }
        let core = ConnCore {
            socket: stream,
            out: None,
            held: None,
            last_active: self.ctx.tick,
            timer_at: 0,
            deadline: self.ctx.tick + self.ctx.ticks.handshake,
            flags: 0,
            proto: Protocol::Handshake {
                parser: ServerHandshake::new(*self.ctx.config.handshake_limits()),
                peer,
            },
        };
        let Some((slot, generation)) = self.conns.insert(ConnEntry { core, state: None }) else {
            return;
        };
        let id = self.ctx.id(slot, generation);
        let Some(entry) = self.conns.get_mut(slot, generation) else { return };
        let registered = self.poll.registry().register(
            &mut entry.core.socket,
            token(slot, generation),
            Interest::READABLE,
        );
        if let Err(error) = registered {
            tracing::warn!(%error, "cannot register a connection");
            self.conns.remove(slot, generation);
            return;
        }
        let deadline = entry.core.deadline;
        self.ctx.arm(&mut entry.core, id, deadline);
    }

    // ---- reading ---------------------------------------------------------------------

    fn read_again(&mut self) {
        if self.ctx.again.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.scratch);
        std::mem::swap(&mut list, &mut self.ctx.again);
        for &(slot, generation) in &list {
            // No fresh readiness edge comes for these: read until the kernel has nothing.
            self.on_readable(slot, generation, true);
        }
        list.clear();
        self.scratch = list;
    }

    fn on_readable(&mut self, slot: u32, generation: u32, until_would_block: bool) {
        let EventLoop { conns, read_buf, spare, handler, ctx, .. } = self;
        let Some(entry) = conns.get_mut(slot, generation) else { return };
        let id = ctx.id(slot, generation);
        if let ReadEnd::Lost =
            read_socket(entry, handler, ctx, read_buf, spare, id, until_would_block)
        {
            self.remove(slot, generation);
        }
    }

    fn on_writable(&mut self, slot: u32, generation: u32) {
        let Some(entry) = self.conns.get_mut(slot, generation) else { return };
        if entry.core.has(flag::WRITE_BLOCKED) {
            self.flush_one(slot, generation);
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
            for &(slot, generation) in &list {
                let Some(entry) = self.conns.get_mut(slot, generation) else { continue };
                entry.core.clear(flag::DIRTY);
                if !entry.core.has(flag::WRITE_BLOCKED) {
                    self.flush_one(slot, generation);
                }
            }
            list.clear();
            self.scratch = list;
        }
    }

    /// Writes a connection's output once, then settles what follows from it: WRITABLE
    /// interest, owed control frames, drain notifications, closing the socket.
    fn flush_one(&mut self, slot: u32, generation: u32) {
        let EventLoop { conns, handler, ctx, poll, .. } = self;
        let Some(entry) = conns.get_mut(slot, generation) else { return };
        let id = ctx.id(slot, generation);
        let core = &mut entry.core;
        if let Some(out) = core.out.as_mut() {
            match out.write_to(&mut core.socket, &mut ctx.pool) {
                Ok(Flushed::All) => {
                    if let Some(out) = core.out.take() {
                        ctx.pool.give_outbox(out);
                    }
                    if core.has(flag::WRITE_BLOCKED) {
                        core.clear(flag::WRITE_BLOCKED);
                        let tok = token(slot, generation);
                        if reregister(poll.registry(), core, tok, Interest::READABLE).is_err() {
                            self.remove(slot, generation);
                            return;
                        }
                    }
                }
                Ok(Flushed::Partial) => {
                    if !core.has(flag::WRITE_BLOCKED) {
                        core.set(flag::WRITE_BLOCKED);
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        let tok = token(slot, generation);
                        if reregister(poll.registry(), core, tok, interest).is_err() {
                            self.remove(slot, generation);
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%id, %error, "write failed");
                    self.remove(slot, generation);
                    return;
                }
            }
        }
        if core.has(flag::WRITE_BLOCKED) {
            return;
        }
        transmit(core, ctx, id);
        if core.buffered() <= ctx.config.low_watermark() {
            if core.has(flag::READ_PAUSED) {
                core.clear(flag::READ_PAUSED);
                ctx.again.push((slot, generation));
            }
            if core.has(flag::BACKPRESSURED) {
                core.clear(flag::BACKPRESSURED);
                if let Some(state) = entry.state.as_mut() {
                    let mut conn = Conn { core: &mut entry.core, ctx: &mut *ctx, id };
                    let result =
                        catch_unwind(AssertUnwindSafe(|| handler.on_drain(&mut conn, state)));
                    if let Err(panic) = result {
                        handler_panicked(&mut entry.core, ctx, id, "on_drain", &*panic);
                    }
                }
            }
        }
        let core = &mut entry.core;
        if core.out.is_some() {
            return;
        }
        match &core.proto {
            Protocol::Ws(ws) if ws.is_closed() => self.remove(slot, generation),
            Protocol::Refused if !core.has(flag::WRITE_SHUT) => {
                // Lingering close: stop sending and wait for the client's end of stream (or
                // the deadline), so unread request bytes do not turn our FIN into a reset
                // that could destroy the answer.
                let _ = core.socket.shutdown(std::net::Shutdown::Write);
                core.set(flag::WRITE_SHUT);
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
            for index in 0..self.listeners.len() {
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

    fn on_timer(&mut self, timer: TimerEntry) {
        let EventLoop { conns, ctx, .. } = self;
        let Some(entry) = conns.get_mut(timer.slot, timer.generation) else { return };
        if entry.core.timer_at != timer.at {
            return; // superseded by an earlier entry
        }
        entry.core.timer_at = 0;
        let id = ctx.id(timer.slot, timer.generation);
        let tick = ctx.tick;
        let core = &mut entry.core;
        if core.deadline != 0 && tick >= core.deadline {
            if matches!(core.proto, Protocol::Handshake { .. }) {
                tracing::debug!(%id, "handshake timed out");
            } else {
                tracing::debug!(%id, "close handshake timed out");
            }
            self.remove(timer.slot, timer.generation);
            return;
        }
        let mut next = core.deadline;
        if let (Some((ping, idle)), Some(_)) = (ctx.ticks.idle, entry.state.as_ref()) {
            let silent = tick.saturating_sub(core.last_active);
            if silent >= idle {
                tracing::debug!(%id, "idle timeout");
                // Cannot fail while the application holds the connection open.
                let _ = core.start_close(ctx, id, CloseCode::GOING_AWAY, "idle timeout");
                next = core.deadline;
            } else {
                if silent >= ping && !core.has(flag::PINGED) {
                    if let Protocol::Ws(ws) = &mut core.proto {
                        let out = core.out.get_or_insert_with(|| ctx.pool.take_outbox());
                        if out.append(&mut ctx.pool, |buf| ws.ping(&[], buf)).is_ok() {
                            core.set(flag::PINGED);
                            core.mark_dirty(ctx, id);
                        }
                    }
                }
                let wait = if core.has(flag::PINGED) { idle } else { ping };
                let idle_at = core.last_active + wait;
                next = if next == 0 { idle_at } else { next.min(idle_at) };
            }
        }
        if next != 0 {
            ctx.arm(core, id, next);
        }
    }

    // ---- commands from other threads ---------------------------------------------------

    fn drain_commands(&mut self) {
        self.ctx.handle.shared.loops[usize::from(self.ctx.index)].rearm();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Send { id, msg } => self.deliver(id, msg.as_message()),
                Command::Broadcast(frame) => self.broadcast(&frame),
                Command::Close { id, frame } => {
                    let EventLoop { conns, ctx, .. } = self;
                    match conns.get_mut(id.slot, id.generation) {
                        Some(entry) if entry.state.is_some() && id.loop_index == ctx.index => {
                            let code = frame.code().unwrap_or(CloseCode::NORMAL);
                            let _ = entry.core.start_close(ctx, id, code, frame.reason());
                        }
                        _ => self.stale += 1,
                    }
                }
                Command::Adopt(stream, peer) => self.adopt(stream, peer),
                Command::Shutdown { deadline } => self.begin_shutdown(deadline),
            }
        }
    }

    /// Delivers one message from another thread, handing it to the handler if refused.
    fn deliver(&mut self, id: ConnectionId, msg: Message<'_>) {
        let EventLoop { conns, handler, ctx, .. } = self;
        let entry = match conns.get_mut(id.slot, id.generation) {
            Some(entry) if id.loop_index == ctx.index => entry,
            _ => {
                self.stale += 1;
                return;
            }
        };
        let Some(state) = entry.state.as_mut() else {
            self.stale += 1;
            return;
        };
        if entry.core.send(ctx, id, msg) == SendResult::Backpressure {
            let mut conn = Conn { core: &mut entry.core, ctx: &mut *ctx, id };
            let result =
                catch_unwind(AssertUnwindSafe(|| handler.on_refused(&mut conn, state, msg)));
            if let Err(panic) = result {
                handler_panicked(&mut entry.core, ctx, id, "on_refused", &*panic);
            }
        }
    }

    fn broadcast(&mut self, frame: &SharedFrame) {
        let EventLoop { conns, handler, ctx, .. } = self;
        for (slot, generation, entry) in conns.iter_mut() {
            let Some(state) = entry.state.as_mut() else { continue };
            let id = ctx.id(slot, generation);
            if entry.core.send_shared(ctx, id, frame) != SendResult::Backpressure {
                continue;
            }
            let mut conn = Conn { core: &mut entry.core, ctx: &mut *ctx, id };
            let result = catch_unwind(AssertUnwindSafe(|| {
                handler.on_refused(&mut conn, state, frame.message())
            }));
            if let Err(panic) = result {
                handler_panicked(&mut entry.core, ctx, id, "on_refused", &*panic);
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
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let mut keys = std::mem::take(&mut self.scratch);
        self.conns.keys_into(&mut keys);
        for &(slot, generation) in &keys {
            let EventLoop { conns, ctx, .. } = self;
            let Some(entry) = conns.get_mut(slot, generation) else { continue };
            let id = ctx.id(slot, generation);
            let core = &mut entry.core;
            match core.proto {
                Protocol::Handshake { .. } => refuse(core, ctx, id, 503),
                Protocol::Ws(_) if entry.state.is_some() => {
                    // Fails only when our Close is already out; the deadline still tightens.
                    let _ =
                        core.start_close(ctx, id, CloseCode::GOING_AWAY, "server shutting down");
                    core.arm_close_deadline(ctx, id);
                }
                _ => core.arm_close_deadline(ctx, id),
            }
        }
        keys.clear();
        self.scratch = keys;
    }

    fn drop_all(&mut self) {
        let mut keys = std::mem::take(&mut self.scratch);
        self.conns.keys_into(&mut keys);
        for &(slot, generation) in &keys {
            self.remove(slot, generation);
        }
        keys.clear();
        self.scratch = keys;
    }

    // ---- the end of a connection -------------------------------------------------------

    /// Closes the socket and returns the buffers; tells the application if it still held
    /// the connection open (1006: no close handshake).
    fn remove(&mut self, slot: u32, generation: u32) {
        let Some(entry) = self.conns.remove(slot, generation) else { return };
        let ConnEntry { mut core, mut state } = entry;
        let id = self.ctx.id(slot, generation);
        notify_close(
            &mut self.handler,
            &mut core,
            &mut state,
            &mut self.ctx,
            id,
            CloseCode::ABNORMAL,
            "",
        );
        if let (Some(shutdown), Protocol::Ws(ws)) = (&mut self.ctx.shutdown, &core.proto) {
            if ws.is_closed() && ws.close_received() {
                shutdown.report.closed_cleanly += 1;
            } else {
                shutdown.report.forced += 1;
            }
        }
        let pool = &mut self.ctx.pool;
        if let Some(out) = core.out.take() {
            pool.give_outbox(out);
        }
        if let Some(held) = core.held.take() {
            self.ctx.assembly_bytes -= held.assembly.capacity();
            self.ctx.pool.give_held(held);
        }
        // Dropping the socket closes it, which also takes it out of the poll set.
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

fn reregister(
    registry: &Registry,
    core: &mut ConnCore,
    tok: Token,
    interest: Interest,
) -> io::Result<()> {
    registry.reregister(&mut core.socket, tok, interest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_clear_of_reserved_ones() {
        for (slot, generation) in [(0, 0), (1, 2), (u32::MAX - MAX_LISTENERS as u32 - 2, u32::MAX)]
        {
            let tok = token(slot, generation);
            assert_eq!(slot_of(tok), (slot, generation));
            assert!(tok.0 <= LISTENER_BASE - MAX_LISTENERS);
        }
    }
}
