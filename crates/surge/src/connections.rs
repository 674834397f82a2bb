//! The connections of one loop and everything done to them: the slab of records, the
//! handler, the loop state, the read buffer. The event loop (`event_loop`) calls in with
//! what its backend reported, in the seam's terms: input for connection X (read through
//! the transport into the loop's buffer, then the per-message path in `turn`), connection
//! X writable, flush what is queued (through [`Backend::flush`]), a timer due, a command.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use surge_proto::close::{CloseCode, CloseFrame};
use surge_proto::handshake::ServerHandshake;
use surge_proto::message::Message;

use crate::backend::Backend;
use crate::buffer_pool::BufferPool;
use crate::config::Config;
use crate::conn::{flag, ConnCore, ConnEntry, ConnIo, Phase, SendResult};
use crate::context::{LoopCtx, Shutdown};
use crate::deflate::CompressedBroadcast;
use crate::handle::{ConnectionId, ServerHandle, ShutdownReport};
use crate::handler::Handler;
use crate::key::ConnKey;
use crate::outbox::{Flushed, Outbox, Outboxes, SharedFrame};
use crate::panics;
use crate::slab::Slab;
use crate::stats::{status_index, Limit, Tally, ENGINE_PANIC};
use crate::timer::{TimerEntry, TimerWheel};
use crate::topics::{Outcome, Pending, TopicList};
use crate::transport::{Stream, Transport};
use crate::turn::{Intake, ReadEnd, Turn};
use crate::upgrade;

/// Flush passes per turn (a flush can run `on_drain`, which can queue more).
const FLUSH_PASSES: usize = 4;

/// The loop's read buffer: as configured, and for TLS at least a record behind the room its
/// plaintext is decrypted to (the TLS transport reads its ciphertext into this buffer).
fn read_buffer_len(config: &Config) -> usize {
    match config.tls_context() {
        Some(_) => config.read_buffer_size().max(crate::transport::tls::READ_BUFFER_MIN),
        None => config.read_buffer_size(),
    }
}

/// One loop's connections and what serves them.
pub(crate) struct Connections<H: Handler> {
    conns: Slab<ConnEntry<H::State>>,
    read_buf: Box<[u8]>,
    /// The assembly buffer lent to connections that are not assembling.
    spare: Vec<u8>,
    handler: H,
    pub(crate) ctx: LoopCtx,
    /// Scratch lists, kept for their capacity.
    expired: Vec<TimerEntry>,
    scratch: Vec<ConnKey>,
    /// Messages addressed to connections that were gone.
    stale: u64,
    /// Connections removed this turn, for the backend to retire (`bury`).
    retired: Vec<(ConnKey, Stream, Option<Box<Outbox>>)>,
    /// Scratch: the subscribers one publish reaches; the publishes being delivered.
    reached: Vec<ConnKey>,
    delivering: Vec<Pending>,
}

impl<H: Handler> Connections<H> {
    /// No connections yet; the clock starts at `now`.
    pub(crate) fn new(
        index: u16,
        config: Arc<Config>,
        handle: ServerHandle,
        handler: H,
        now: Instant,
    ) -> Self {
        let assembly_budget = (config.assembly_budget() / config.threads()).max(1);
        let wheel = TimerWheel::new(now, config.timer_tick());
        let stats = handle.shared.metrics.loop_stats(index);
        Connections {
            conns: Slab::new(),
            read_buf: vec![0; read_buffer_len(&config)].into_boxed_slice(),
            spare: Vec::new(),
            handler,
            ctx: LoopCtx {
                index,
                pool: BufferPool::new(config.pool_budget()),
                outboxes: Outboxes::default(),
                config,
                handle,
                wheel,
                dirty: Vec::new(),
                again: Vec::new(),
                throttled: Vec::new(),
                assembly_bytes: 0,
                assembly_budget,
                now,
                tick: 0,
                shutdown: None,
                reply: Vec::with_capacity(512),
                stats,
                tally: Tally::default(),
                topics: Default::default(),
                frames: Default::default(),
                publishes: Vec::new(),
                deflate: None,
            },
            expired: Vec::new(),
            scratch: Vec::new(),
            stale: 0,
            retired: Vec::new(),
            reached: Vec::new(),
            delivering: Vec::new(),
        }
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Messages that found their connection gone.
    pub(crate) fn stale(&self) -> u64 {
        self.stale
    }

    /// Takes a new connection in: its record, its registration, its handshake deadline.
    pub(crate) fn adopt(&mut self, backend: &mut impl Backend, stream: Stream, peer: SocketAddr) {
        if self.ctx.shutdown.is_some() {
            return;
        }
        let tls = self.ctx.config.tls_context().map(|tls| &**tls);
        let stream = match stream.secured(tls, &self.ctx.stats) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot start TLS on a connection");
                return;
            }
        };
        let core = ConnCore {
            io: ConnIo::new(stream),
            phase: Phase::Handshake {
                parser: ServerHandshake::new(*self.ctx.config.handshake_limits()),
                peer,
                deadline: self.ctx.tick_after(self.ctx.config.handshake_timeout()),
                body_until: 0,
            },
        };
        self.ctx.stats.accepted.inc();
        let Some(key) = self.conns.insert(ConnEntry { core, app: None }) else { return };
        let Some(entry) = self.conns.get_mut(key) else { return };
        if let Err(error) = backend.register(key, &mut entry.core.io.stream) {
            tracing::warn!(%error, "cannot register a connection");
            self.conns.remove(key);
            return;
        }
        entry.core.arm_timer(&mut self.ctx, key);
    }

    // ---- reading ---------------------------------------------------------------------

    /// Reads the connections that asked to be read again (no readiness edge comes for
    /// them); with a completion backend, feeds what they hold and has them receive again.
    pub(crate) fn read_again<B: Backend>(&mut self, backend: &mut B) {
        if self.ctx.again.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.scratch);
        std::mem::swap(&mut list, &mut self.ctx.again);
        for &key in &list {
            if B::COMPLETES_READS {
                self.resume(backend, key);
            } else {
                // No fresh readiness edge comes for these: read until the kernel has nothing.
                self.on_readable(key, true);
            }
        }
        list.clear();
        self.scratch = list;
    }

    /// A completion backend's connection out of its backpressure pause: what it held back
    /// goes first; then it receives again, unless that paused it once more.
    fn resume(&mut self, backend: &mut impl Backend, key: ConnKey) {
        let intake = self.contained(key, |this| {
            let Connections { conns, handler, ctx, spare, .. } = this;
            let entry = conns.get_mut(key)?;
            Some((Turn { handler, ctx, spare }).feed_held(entry, key))
        });
        if let Some(Some(Intake::More)) = intake {
            backend.resume_reading(key);
        }
    }

    /// Bytes a completion backend received for connection `key` (TLS records are opened into
    /// the read buffer first); returns whether the connection paused at the backpressure
    /// limit (the backend is to stop receiving). A stream that ended or failed under its
    /// transport (TLS) removes the connection.
    pub(crate) fn on_received(&mut self, key: ConnKey, bytes: &mut [u8]) -> bool {
        let intake = self.contained(key, |this| {
            let Connections { conns, handler, ctx, spare, read_buf, .. } = this;
            let entry = conns.get_mut(key)?;
            Some((Turn { handler, ctx, spare }).take_received(entry, key, bytes, read_buf))
        });
        match intake.flatten() {
            None | Some(Intake::More) => false,
            Some(Intake::Paused) => true,
            Some(Intake::Lost) => {
                self.remove(key);
                false
            }
        }
    }

    /// A completion backend's send for connection `key` ended: the lent output is released
    /// as far as it went (the flush that follows sends the rest); an error ends the
    /// connection.
    pub(crate) fn on_sent(&mut self, key: ConnKey, written: Result<usize, i32>) {
        let Some(entry) = self.conns.get_mut(key) else { return };
        let io = &mut entry.core.io;
        match (written, io.out.as_mut()) {
            (Ok(written), Some(out)) => {
                out.sent(written, &mut self.ctx.pool);
                // All of it went and nothing is queued behind: the queue goes back now, not
                // after this drain's receives have taken queues of their own (held so, the
                // queues in use would peak at two turns' worth of connections, and each new
                // peak allocates). The flush that follows finds no queue and unblocks.
                if out.len() == 0 {
                    if let Some(out) = io.out.take() {
                        self.ctx.outboxes.give(out, &mut self.ctx.pool);
                    }
                }
            }
            (Ok(_), None) => {}
            (Err(errno), _) => {
                let error = std::io::Error::from_raw_os_error(errno);
                tracing::debug!(id = %self.ctx.id(key), %error, "send failed");
                self.remove(key);
            }
        }
    }

    /// Hands the connections removed this turn to the backend, which closes their streams
    /// (and keeps output the kernel still reads from).
    pub(crate) fn bury(&mut self, backend: &mut impl Backend) {
        for (key, stream, out) in self.retired.drain(..) {
            if let Some(out) = backend.retire(key, stream, out) {
                self.ctx.outboxes.give(out, &mut self.ctx.pool);
            }
        }
    }

    /// Input for connection `key` (`until_would_block`: no further edge will say so).
    pub(crate) fn on_readable(&mut self, key: ConnKey, until_would_block: bool) {
        let end = self.contained(key, |this| {
            let Connections { conns, read_buf, spare, handler, ctx, .. } = this;
            let entry = conns.get_mut(key)?;
            Some(Turn { handler, ctx, spare }.read(entry, key, read_buf, until_would_block))
        });
        if let Some(Some(ReadEnd::Lost)) = end {
            self.remove(key);
        }
        self.publish_pending();
    }

    /// Connection `key` can take more output after a partial flush.
    pub(crate) fn on_writable(&mut self, backend: &mut impl Backend, key: ConnKey) {
        let Some(entry) = self.conns.get_mut(key) else { return };
        if entry.core.io.has(flag::WRITE_BLOCKED) {
            self.flush_one(backend, key);
        }
        self.publish_pending();
    }

    // ---- writing ---------------------------------------------------------------------

    /// The end of a turn: one flush for each connection with output.
    pub(crate) fn flush_dirty(&mut self, backend: &mut impl Backend) {
        for _ in 0..FLUSH_PASSES {
            // What `on_drain` and `on_missed` published in the last pass.
            self.publish_pending();
            if self.ctx.dirty.is_empty() {
                return;
            }
            let mut list = std::mem::take(&mut self.scratch);
            std::mem::swap(&mut list, &mut self.ctx.dirty);
            for &key in &list {
                let Some(entry) = self.conns.get_mut(key) else { continue };
                entry.core.io.clear(flag::DIRTY);
                let io = &entry.core.io;
                if !io.has(flag::WRITE_BLOCKED) {
                    self.flush_one(backend, key);
                } else if io.out.as_ref().is_some_and(|out| out.waits_behind_send())
                    || entry.core.phase.ws().is_some_and(|ws| ws.wants_transmit())
                {
                    // Queued bytes or owed control frames (a pong, which a later ping would
                    // replace) wait for the send in flight. Not when this turn's earlier
                    // flush, after a completed send, already lent all there was: then
                    // nothing waits, and the send may join a batch.
                    backend.output_waits(key);
                }
            }
            list.clear();
            self.scratch = list;
        }
    }

    /// Writes a connection's output once, then settles what follows from it: WRITABLE
    /// interest, owed control frames, drain notifications, closing the stream.
    fn flush_one(&mut self, backend: &mut impl Backend, key: ConnKey) {
        self.contained(key, |this| this.write_once(backend, key));
    }

    /// [`Connections::flush_one`], uncontained.
    fn write_once(&mut self, backend: &mut impl Backend, key: ConnKey) {
        let Connections { conns, handler, ctx, spare, .. } = self;
        let Some(entry) = conns.get_mut(key) else { return };
        let io = &mut entry.core.io;
        let ending = entry.core.phase.ws().is_some_and(|ws| ws.is_closed() && !ws.wants_transmit());
        if ending {
            // The stream goes once this is written (below): its end (TLS: `close_notify`)
            // can go in the same write.
            io.stream.ending();
        }
        let blocked = match io.out.as_mut() {
            Some(out) => match backend.flush(key, &mut io.stream, out, &mut ctx.pool) {
                Ok(Flushed::All) => {
                    if let Some(out) = io.out.take() {
                        ctx.outboxes.give(out, &mut ctx.pool);
                    }
                    false
                }
                Ok(Flushed::Partial) => {
                    if ending {
                        // The connection closes (and its peer sees the end of the stream)
                        // only once this write completes: not to be held back for a batch.
                        backend.output_waits(key);
                    }
                    true
                }
                Err(error) => {
                    tracing::debug!(id = %ctx.id(key), %error, "write failed");
                    self.remove(key);
                    return;
                }
            },
            // Nothing queued: none ever was, or a completed send gave the queue back
            // (`on_sent`).
            None => false,
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

    /// Resumes reading the connections paused past their rate limit whose allowance has
    /// come back.
    pub(crate) fn resume_throttled(&mut self) {
        let Some(limit) = self.ctx.config.rate_limit().copied() else { return };
        let Connections { conns, ctx, .. } = self;
        let now = ctx.now;
        let mut list = std::mem::take(&mut ctx.throttled);
        list.retain(|&key| {
            let Some(entry) = conns.get_mut(key) else { return false };
            let spent = entry.app.as_mut().and_then(|app| app.admission.allowance());
            if spent.is_some_and(|allowance| allowance.spent_at(&limit, now)) {
                return true;
            }
            let io = &mut entry.core.io;
            io.clear(flag::THROTTLED);
            if io.buffered() < ctx.config.backpressure_limit() {
                // Past the backpressure limit the flush resumes it once the output drains.
                io.clear(flag::READ_PAUSED);
                ctx.again.push(key);
            }
            false
        });
        ctx.throttled = list;
    }

    // ---- timers ----------------------------------------------------------------------

    /// Runs every timer entry due by this turn's tick.
    pub(crate) fn fire_timers(&mut self) {
        let mut expired = std::mem::take(&mut self.expired);
        self.ctx.wheel.advance(self.ctx.tick, &mut expired);
        for entry in expired.drain(..) {
            self.contained(entry.key, |this| this.on_timer(entry));
        }
        self.expired = expired;
    }

    /// A connection's timer entry is due: the handshake or refusal deadline, or whatever the
    /// protocol has due (it decides; the loop sends what it owes and drops the connection
    /// once its close handshake has timed out).
    fn on_timer(&mut self, timer: TimerEntry) {
        let Connections { conns, ctx, .. } = self;
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
            let between_requests = core.io.has(flag::KEPT_ALIVE) && core.io.held.is_none();
            if matches!(core.phase, Phase::Handshake { .. }) && !between_requests {
                ctx.stats.limit(Limit::HandshakeTimeout);
            }
            self.remove(key);
            return;
        }
        // An idle ping or the idle Close, owed since the protocol's timeout.
        core.transmit(ctx, key);
        core.arm_timer(ctx, key);
    }

    // ---- commands from other threads ---------------------------------------------------

    /// A message from another thread for connection `id`; refused ones go to `on_refused`.
    pub(crate) fn deliver(&mut self, id: ConnectionId, msg: Message<'_>) {
        let Connections { conns, handler, ctx, spare, .. } = self;
        match conns.get_mut(id.key) {
            Some(entry) if id.loop_index == ctx.index && entry.core.phase.is_open() => {
                Turn { handler, ctx, spare }.deliver(entry, id.key, msg)
            }
            _ => self.stale += 1,
        }
        self.publish_pending();
    }

    /// Starts the close handshake of connection `id`, asked from another thread.
    pub(crate) fn close(&mut self, id: ConnectionId, frame: &CloseFrame) {
        let Connections { conns, ctx, .. } = self;
        match conns.get_mut(id.key) {
            Some(entry) if id.loop_index == ctx.index && entry.core.phase.is_open() => {
                let code = frame.code().unwrap_or(CloseCode::NORMAL);
                let _ = entry.core.start_close(ctx, id.key, code, frame.reason());
            }
            _ => self.stale += 1,
        }
    }

    /// A broadcast frame for every open connection; refusals go to `on_refused`. A
    /// connection with permessage-deflate gets the frame compressed: once per distinct
    /// compressor configuration and shared, or by its own compressor (context takeover).
    pub(crate) fn broadcast(&mut self, frame: &SharedFrame) {
        let Connections { conns, handler, ctx, spare, .. } = self;
        let mut turn = Turn { handler, ctx, spare };
        let msg = frame.message();
        let mut compressed = CompressedBroadcast::default();
        for (key, entry) in conns.iter_mut() {
            if !entry.core.phase.is_open() {
                continue;
            }
            let sent = send_shared_to(&mut entry.core, turn.ctx, key, frame, &mut compressed);
            if sent == SendResult::Backpressure {
                turn.refused(entry, key, msg);
            }
        }
        self.publish_pending();
    }

    // ---- topics ----------------------------------------------------------------------

    /// Subscribes connection `id` to `topic`, asked from another thread.
    pub(crate) fn subscribe(&mut self, id: ConnectionId, topic: &str, on: bool) {
        let Connections { conns, ctx, .. } = self;
        match conns.get_mut(id.key) {
            Some(entry) if id.loop_index == ctx.index && entry.core.phase.is_open() => {
                if on {
                    ctx.subscribe(id.key, topic);
                } else {
                    ctx.unsubscribe(id.key, topic);
                }
            }
            _ => self.stale += 1,
        }
    }

    /// Delivers a publish to this loop's subscribers of `topics`, each once. `via`: it came
    /// from another node on the channel of `topics[via]`, and goes only to the subscribers
    /// of that topic who are in none of the topics listed before it (they have a copy from
    /// an earlier channel).
    pub(crate) fn publish(&mut self, topics: &TopicList, frame: &SharedFrame, via: Option<usize>) {
        let outcome = self.reach(topics, frame, None, via);
        self.count(outcome);
    }

    /// Delivers what handlers published since the last call to the loop's other
    /// subscribers, in publish order.
    pub(crate) fn publish_pending(&mut self) {
        while !self.ctx.publishes.is_empty() {
            let mut delivering = std::mem::take(&mut self.delivering);
            std::mem::swap(&mut delivering, &mut self.ctx.publishes);
            for pending in delivering.drain(..) {
                let mut outcome = pending.served;
                outcome +=
                    self.reach(&pending.topics, &pending.frame, Some(pending.publisher), None);
                self.count(outcome);
            }
            self.delivering = delivering;
        }
    }

    fn reach(
        &mut self,
        topics: &TopicList,
        frame: &SharedFrame,
        except: Option<ConnKey>,
        via: Option<usize>,
    ) -> Outcome {
        let mut reached = std::mem::take(&mut self.reached);
        self.ctx.topics.reach(topics, except, via, &mut reached);
        let Connections { conns, ctx, .. } = self;
        let mut outcome = Outcome::default();
        let mut compressed = CompressedBroadcast::default();
        for &key in &reached {
            if let Some(entry) = conns.get_mut(key) {
                outcome += entry.core.deliver_published(ctx, key, |core, ctx| {
                    send_shared_to(core, ctx, key, frame, &mut compressed)
                });
            }
        }
        reached.clear();
        self.reached = reached;
        outcome
    }

    fn count(&self, outcome: Outcome) {
        self.ctx.handle.shared.topic_counters[usize::from(self.ctx.index)].count(outcome);
    }

    // ---- shutdown --------------------------------------------------------------------

    /// A graceful shutdown starts: 503 to handshakes, Close 1001 to open connections; what
    /// is left at `deadline` is dropped then.
    pub(crate) fn begin_shutdown(&mut self, deadline: Instant) {
        // Rounded up: no connection is dropped before the deadline.
        let deadline_tick = self.ctx.wheel.tick_of(deadline) + 1;
        self.ctx.shutdown =
            Some(Shutdown { deadline, deadline_tick, report: ShutdownReport::default() });
        let mut keys = std::mem::take(&mut self.scratch);
        self.conns.keys_into(&mut keys);
        for &key in &keys {
            let Connections { conns, ctx, .. } = self;
            let Some(entry) = conns.get_mut(key) else { continue };
            let core = &mut entry.core;
            match core.phase {
                // A keep-alive HTTP connection between requests stays for its next one (a
                // load balancer's `/readyz` then hears 503) until its timeout or the deadline.
                Phase::Handshake { .. }
                    if core.io.has(flag::KEPT_ALIVE) && core.io.held.is_none() => {}
                Phase::Handshake { .. } => {
                    ctx.stats.refused.add(status_index(503), 1);
                    upgrade::refuse(core, ctx, key, 503);
                }
                // Fails only when our Close is already out. Whatever is left at the deadline
                // is dropped then (see `EventLoop::turn`).
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

    /// Drops every connection (a shutdown's deadline).
    pub(crate) fn drop_all(&mut self) {
        let mut keys = std::mem::take(&mut self.scratch);
        self.conns.keys_into(&mut keys);
        for &key in &keys {
            self.remove(key);
        }
        keys.clear();
        self.scratch = keys;
    }

    // ---- the end of a connection -------------------------------------------------------

    /// Runs the engine's `work` on connection `key`; if it panics (a bug in the engine: the
    /// handler's panics are caught closer in), that connection alone is dropped, since its
    /// state can no longer be trusted, and the loop goes on. `None` when it panicked.
    fn contained<R>(&mut self, key: ConnKey, work: impl FnOnce(&mut Self) -> R) -> Option<R> {
        let done = panics::contained(self.ctx.id(key), || work(self));
        if done.is_none() {
            self.ctx.stats.panics.add(ENGINE_PANIC, 1);
            self.remove(key);
        }
        done
    }

    /// Closes the stream and returns the buffers; tells the application if it still held
    /// the connection open (1006: no close handshake).
    fn remove(&mut self, key: ConnKey) {
        let Some(mut entry) = self.conns.remove(key) else { return };
        let Connections { handler, ctx, spare, .. } = self;
        Turn { handler, ctx, spare }.notify_close(&mut entry, key, CloseCode::ABNORMAL, "");
        let ConnEntry { core, .. } = entry;
        if let (Some(shutdown), Some(ws)) = (&mut self.ctx.shutdown, core.phase.ws()) {
            if ws.is_closed() && ws.close_received() {
                shutdown.report.closed_cleanly += 1;
            } else {
                shutdown.report.forced += 1;
            }
        }
        let ConnIo { out, held, stream, .. } = core.io;
        if let Some(held) = held {
            self.ctx.assembly_bytes -= held.assembly.capacity();
            self.ctx.pool.give_held(held);
        }
        // The backend closes the stream at the end of the turn (`bury`), and gives the
        // output queue back once nothing of it is in flight.
        self.retired.push((key, stream, out));
    }
}

/// Queues a frame many connections get (a broadcast's, a publish's) for the open connection
/// `core`: as it is, or, with permessage-deflate, compressed once per distinct compressor
/// configuration among the connections `compressed` has served (shared), or by its own
/// compressor (context takeover).
fn send_shared_to(
    core: &mut ConnCore,
    ctx: &mut LoopCtx,
    key: ConnKey,
    frame: &SharedFrame,
    compressed: &mut CompressedBroadcast,
) -> SendResult {
    let msg = frame.message();
    let Phase::Open(ws) = &core.phase else { return SendResult::Closed };
    let deflate = ws.extension().as_ref().filter(|session| session.compresses(msg.len()));
    let how = deflate.map(|session| (session.shares_compressor(), session.send_config()));
    match (how, &ctx.deflate) {
        (Some((true, config)), Some(codecs)) => match compressed.frame(codecs, config, msg) {
            Some(frame) => core.send_shared(ctx, key, &frame),
            None => core.send(ctx, key, msg, false),
        },
        // Context takeover: its own compressor, through the connection.
        (Some(_), _) => core.send(ctx, key, msg, false),
        (None, _) => core.send_shared(ctx, key, frame),
    }
}
