//! The per-message path: what one loop turn lends to the code between the stream and the
//! handler ([`Turn`]: the handler, the loop's state with its pools, timers and clock, and the
//! spare assembly buffer), and everything done with it: one read into the loop's buffer, the
//! opening handshake, the protocol's events, the handler's calls. What a send costs is in
//! `conn` and `outbox`.
//!
//! Every handler call goes through `panics::guarded`: a panic in `on_open`, `on_message`,
//! `on_drain` or `on_refused` closes that connection with 1011, one in `on_upgrade` answers
//! 500, one in `on_close` is logged; the loop goes on.

use std::net::SocketAddr;

use surge_proto::close::CloseCode;
use surge_proto::connection::Event;
use surge_proto::handshake::{HandshakeError, ServerHandshake, UpgradeRequest, EMPTY_HEADER};
use surge_proto::message::Message;

use crate::buffer_pool::MAX_POOLED_CAPACITY;
use crate::config::{RatePolicy, MAX_HEADERS};
use crate::conn::{flag, App, Conn, ConnCore, ConnEntry, Phase, SendResult, WsConnection};
use crate::context::LoopCtx;
use crate::handler::{Handler, Upgrade};
use crate::http;
use crate::key::ConnKey;
use crate::panics::guarded;
use crate::request::Request;
use crate::stats::{close_index, status_index, Limit, HANDLER_PANIC};
use crate::transport::{Stream, Transport};
use crate::upgrade;

/// Full reads of one stream per readiness event before others get a turn.
const MAX_READS_PER_EVENT: usize = 16;

/// How reading a stream ended.
pub(crate) enum ReadEnd {
    /// Drained, paused, or waiting for more.
    Done,
    /// The peer is gone (end of stream or error).
    Lost,
}

/// Whether a connection takes more input after [`Turn::receive`].
pub(crate) enum Intake {
    /// Go on.
    More,
    /// Paused at the backpressure limit: no more until the output drains.
    Paused,
    /// The stream ended or failed under the protocol (TLS: `close_notify`, a bad record):
    /// the connection goes.
    Lost,
}

/// Where reading a connection's request heads stopped.
enum Step<'a> {
    /// A valid upgrade request, to be answered.
    Upgrade(UpgradeRequest<'a, 'a>),
    /// Waiting for more input; keep what is unread.
    Keep,
    /// Nothing unread is left to keep (every request answered, or the connection closing).
    Spent,
}

/// What answering a plain HTTP request left.
enum Served {
    /// Answered; the connection is kept, and the next request starts this many bytes on.
    Next(usize),
    /// The body has not all come.
    Wait,
    /// Answered (or refused), and the connection closes.
    Closed,
}

/// How far feeding input to a connection went.
enum Fed {
    /// All of it was used.
    All,
    /// Stopped at the backpressure limit; the input from this offset on is unused.
    Paused(usize),
    /// The WebSocket ended (Close or error); the rest is ignored.
    Ended,
}

/// What a loop turn lends to the per-connection code.
pub(crate) struct Turn<'t, H: Handler> {
    pub(crate) handler: &'t mut H,
    pub(crate) ctx: &'t mut LoopCtx,
    /// The assembly buffer lent to a connection that is not assembling.
    pub(crate) spare: &'t mut Vec<u8>,
}

impl<H: Handler> Turn<'_, H> {
    /// Reads a readable stream into `read_buf`: once, and again only while a read fills it.
    ///
    /// With edge-triggered readiness a short read normally means the socket is drained and a
    /// new arrival raises a new event. That does not hold when the peer's FIN or RST came in
    /// with the last data (the event says read-closed, and no further edge follows), nor when
    /// reading resumes without a fresh edge (after a full buffer or a backpressure pause):
    /// then `until_would_block` keeps reading until the kernel says so, which is what finds
    /// the end of stream.
    pub(crate) fn read(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        read_buf: &mut [u8],
        until_would_block: bool,
    ) -> ReadEnd {
        if let Intake::Paused = self.feed_held(entry, key) {
            return ReadEnd::Done;
        }
        for _ in 0..MAX_READS_PER_EVENT {
            let io = &mut entry.core.io;
            if entry.core.phase.is_open() && io.buffered() >= self.ctx.config.backpressure_limit() {
                // Stop reading: TCP flow control holds the peer back until we drain.
                io.set(flag::READ_PAUSED);
                self.ctx.stats.limit(Limit::ReadPaused);
                return ReadEnd::Done;
            }
            let n = match io.stream.read(read_buf, &mut self.ctx.pool) {
                Ok(0) => return ReadEnd::Lost,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.offer_held_records(entry, key);
                    return ReadEnd::Done;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::debug!(id = %self.ctx.id(key), %error, "read failed");
                    return ReadEnd::Lost;
                }
            };
            if let Intake::Paused = self.receive(entry, key, &mut read_buf[..n]) {
                return ReadEnd::Done;
            }
            if !entry.core.io.stream.filled(n, read_buf.len()) && !until_would_block {
                // Records the transport left for the flush (session tickets) go then, even
                // when the plaintext brought no output of its own.
                self.offer_held_records(entry, key);
                return ReadEnd::Done;
            }
        }
        self.ctx.again.push(key);
        ReadEnd::Done
    }

    /// Feeds the input held back at the backpressure limit (it goes ahead of anything read
    /// after it); pauses again if it meets the limit again.
    pub(crate) fn feed_held(&mut self, entry: &mut ConnEntry<H::State>, key: ConnKey) -> Intake {
        if !entry.core.phase.is_open() {
            return Intake::More;
        }
        let Some(mut stash) = entry.core.io.take_stash() else { return Intake::More };
        match self.feed(entry, key, &mut stash) {
            Fed::Paused(used) => {
                stash.drain(..used);
                entry.core.io.put_stash(&mut self.ctx.pool, stash);
                entry.core.io.set(flag::READ_PAUSED);
                Intake::Paused
            }
            Fed::All | Fed::Ended => {
                self.ctx.pool.give(stash);
                entry.core.io.settle_held(&mut self.ctx.pool);
                Intake::More
            }
        }
    }

    /// Records the transport made while reading (a TLS handshake flight) that the socket did
    /// not take: an empty queue makes the flush offer them again.
    fn offer_held_records(&mut self, entry: &mut ConnEntry<H::State>, key: ConnKey) {
        let io = &mut entry.core.io;
        if io.stream.wants_write() && io.out.is_none() {
            io.queue(self.ctx, key, |_| ());
        }
    }

    /// Bytes a completion backend received from connection `key`'s socket: the protocol's
    /// bytes as they are ([`take`](Self::take)), or a transport's records (TLS), which it
    /// opens into `read_buf` through the same record processing as its reads, as much as the
    /// buffer has room for at a time; each part's plaintext is then taken so.
    pub(crate) fn take_received(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        received: &mut [u8],
        read_buf: &mut [u8],
    ) -> Intake {
        if !matches!(entry.core.io.stream, Stream::Tls(_)) {
            return self.take(entry, key, received);
        }
        let mut rest: &[u8] = received;
        let mut intake = Intake::More;
        while let Stream::Tls(tls) = &mut entry.core.io.stream {
            match tls.read_received(&mut rest, read_buf, &mut self.ctx.pool) {
                Ok(0) => return Intake::Lost,
                Ok(n) => {
                    if let Intake::Paused = self.take(entry, key, &mut read_buf[..n]) {
                        intake = Intake::Paused;
                    }
                }
                // Only the handshake moved (no plaintext): all of `rest` is taken.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => {
                    tracing::debug!(id = %self.ctx.id(key), %error, "received records failed");
                    return Intake::Lost;
                }
            }
            if rest.is_empty() {
                break;
            }
        }
        self.offer_held_records(entry, key);
        intake
    }

    /// Bytes a completion backend received for connection `key`: kept behind what is held
    /// back while reading is paused (the backend was asked to stop, and these were on their
    /// way), else received after it.
    pub(crate) fn take(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        input: &mut [u8],
    ) -> Intake {
        if !entry.core.io.has(flag::READ_PAUSED) {
            if let Intake::More = self.feed_held(entry, key) {
                return self.receive(entry, key, input);
            }
        }
        entry.core.io.hold_more(&mut self.ctx.pool, input);
        Intake::Paused
    }

    /// Bytes arrived for connection `key`: the backend seam's input, whatever read them (a
    /// readiness backend's read through the transport into the loop's buffer, as in
    /// [`read`](Self::read), or a completion backend's provided buffer). Handled by phase;
    /// what cannot be taken at the backpressure limit is held back.
    pub(crate) fn receive(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        input: &mut [u8],
    ) -> Intake {
        match &mut entry.core.phase {
            Phase::Handshake { .. } => {
                if self.handshake(entry, key, input) {
                    Intake::More
                } else {
                    Intake::Paused
                }
            }
            Phase::Open(ws) => {
                ws.handle_input(self.ctx.now);
                if let Fed::Paused(used) = self.feed(entry, key, input) {
                    entry.core.io.hold_back(&mut self.ctx.pool, &input[used..]);
                    return Intake::Paused;
                }
                Intake::More
            }
            // Closing or refused: what the peer sends now is dropped (read all the same, so
            // that closing our side does not reset the connection under data never read).
            Phase::Closing { .. } | Phase::Refused { .. } => Intake::More,
        }
    }

    /// Feeds input to an open connection, delivering each event; stops at the backpressure
    /// limit, or when the WebSocket ends.
    fn feed(&mut self, entry: &mut ConnEntry<H::State>, key: ConnKey, input: &mut [u8]) -> Fed {
        let limit = self.ctx.config.backpressure_limit();
        // A connection that is not assembling borrows the loop's spare buffer: a pooled one,
        // so that a message in pieces starts in a buffer of the pool's size (grown from
        // nothing, it would go back to the pool small and be regrown by whoever takes it).
        let (mut assembly, spared) = match entry.core.io.take_assembly() {
            Some(assembly) => (assembly, false),
            None if self.spare.capacity() == 0 => (self.ctx.pool.take(), true),
            None => (std::mem::take(self.spare), true),
        };
        let held_before = if spared { 0 } else { assembly.capacity() };
        let mut used = 0;
        let input_len = input.len();
        let mut fed = loop {
            if used < input.len()
                && (entry.core.io.buffered() >= limit || self.throttle(entry, key))
            {
                break Fed::Paused(used);
            }
            let Phase::Open(ws) = &mut entry.core.phase else { break Fed::Ended };
            let (n, event) = ws.read(&mut input[used..], &mut assembly);
            used += n;
            let Some(event) = event else { break Fed::All };
            match event {
                Event::Message(msg) => {
                    self.ctx.tally.message_in(&msg);
                    let last_of_read = used == input_len;
                    let len = msg.len();
                    self.call(entry, key, "on_message", last_of_read, |handler, conn, state| {
                        handler.on_message(conn, state, msg)
                    });
                    if self.over_rate_limit(entry, key, len) {
                        break Fed::Ended;
                    }
                }
                // The pong goes out in wire order, ahead of replies to later messages (while
                // output flows; when it is blocked only the latest pong is kept).
                Event::Ping(_) => entry.core.transmit(self.ctx, key),
                Event::Pong(_) => {}
                Event::Close(frame) => {
                    let code = frame.code().unwrap_or(CloseCode::NO_STATUS);
                    self.ctx.stats.closes_received.add(close_index(code), 1);
                    self.close_app(entry, key, code, frame.reason());
                    break Fed::Ended;
                }
                Event::Error(error) => {
                    self.ctx.stats.protocol_close(error.close_code());
                    tracing::debug!(id = %self.ctx.id(key), %error, "protocol violation");
                    self.close_app(entry, key, error.close_code(), "");
                    break Fed::Ended;
                }
            }
        };
        let ctx = &mut *self.ctx;
        let io = &mut entry.core.io;
        // Keep the assembly buffer only while a message is in pieces.
        let assembling = entry.core.phase.ws().is_some_and(WsConnection::is_assembling);
        let held_after = if assembling { assembly.capacity() } else { 0 };
        ctx.assembly_bytes = ctx.assembly_bytes + held_after - held_before;
        match (assembling, spared) {
            (true, true) => {
                io.put_assembly(&mut ctx.pool, assembly);
                *self.spare = ctx.pool.take();
            }
            (true, false) => io.put_assembly(&mut ctx.pool, assembly),
            (false, true) => {
                assembly.clear();
                if assembly.capacity() <= MAX_POOLED_CAPACITY {
                    *self.spare = assembly;
                }
            }
            (false, false) => {
                ctx.pool.give(assembly);
                io.settle_held(&mut ctx.pool);
            }
        }
        if held_after > 0 && ctx.assembly_bytes > ctx.assembly_budget && entry.core.phase.is_open()
        {
            tracing::warn!(id = %ctx.id(key), "partly received messages past the budget; closing with 1013");
            ctx.stats.limit(Limit::AssemblyBudget);
            // Fails only when our Close is already out.
            let _ = entry.core.start_close(self.ctx, key, CloseCode::TRY_AGAIN_LATER, "busy");
            self.close_app(entry, key, CloseCode::TRY_AGAIN_LATER, "busy");
            // Input is no longer read into the message: drop what it holds.
            let (ctx, io) = (&mut *self.ctx, &mut entry.core.io);
            if let Some(assembly) = io.take_assembly() {
                ctx.assembly_bytes -= assembly.capacity();
                ctx.pool.give(assembly);
                io.settle_held(&mut ctx.pool);
            }
            fed = Fed::Ended;
        }
        entry.core.transmit(self.ctx, key);
        fed
    }

    /// Charges a received message to the connection's allowance; past it under
    /// [`RatePolicy::Close1008`], closes it and returns true (the rest of the input is
    /// ignored). Under [`RatePolicy::Pause`] the next message waits (see [`throttle`]).
    ///
    /// [`throttle`]: Self::throttle
    fn over_rate_limit(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        len: usize,
    ) -> bool {
        let Some(limit) = self.ctx.config.rate_limit() else { return false };
        let Some(allowance) = entry.app.as_mut().and_then(|app| app.admission.allowance()) else {
            return false;
        };
        if !allowance.charge(limit, len, self.ctx.now) || limit.policy != RatePolicy::Close1008 {
            return false;
        }
        self.ctx.stats.limit(Limit::RateClosed);
        tracing::debug!(id = %self.ctx.id(key), "past the rate limit; closing with 1008");
        // Fails only when our Close is already out.
        let _ = entry.core.start_close(self.ctx, key, CloseCode::POLICY_VIOLATION, "rate limit");
        self.close_app(entry, key, CloseCode::POLICY_VIOLATION, "rate limit");
        true
    }

    /// Whether the connection has spent its allowance (the pause policy): it is listed to
    /// be resumed once the allowance refills, and reading stops here.
    fn throttle(&mut self, entry: &mut ConnEntry<H::State>, key: ConnKey) -> bool {
        let Some(limit) = self.ctx.config.rate_limit() else { return false };
        let Some(allowance) = entry.app.as_mut().and_then(|app| app.admission.allowance()) else {
            return false;
        };
        if !allowance.spent_at(limit, self.ctx.now) {
            return false;
        }
        let io = &mut entry.core.io;
        if !io.has(flag::THROTTLED) {
            io.set(flag::THROTTLED);
            self.ctx.throttled.push(key);
            self.ctx.stats.limit(Limit::RatePaused);
        }
        true
    }

    /// Handles new handshake bytes: parses the head (where it lies when it came in one read,
    /// gathered when in pieces), checks it, asks the handler, answers, and feeds the frames
    /// that came right behind it. Plain HTTP requests ahead of it are answered in order (see
    /// `http`). Returns whether to go on reading.
    fn handshake(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        input: &mut [u8],
    ) -> bool {
        let mut stash = entry.core.io.take_stash();
        let Phase::Handshake { peer, .. } = &entry.core.phase else { return true };
        let peer = *peer;
        if let Some(stash) = stash.as_mut() {
            stash.extend_from_slice(input);
        }
        let buf: &mut [u8] = match stash.as_mut() {
            Some(stash) => stash,
            None => input,
        };
        let mut headers = [EMPTY_HEADER; MAX_HEADERS];
        let id = self.ctx.id(key);
        // Where the request being read starts: past the plain HTTP requests answered.
        let mut start = 0;
        let step = loop {
            let core = &mut entry.core;
            let Phase::Handshake { parser, body_until, .. } = &mut core.phase else {
                break Step::Spent;
            };
            let pending = &buf[start..];
            if pending.is_empty() {
                break Step::Spent;
            }
            if pending.len() < *body_until {
                break Step::Keep;
            }
            match parser.parse(pending, &mut headers) {
                Ok(None) => break Step::Keep,
                Ok(Some(request)) => break Step::Upgrade(request),
                Err(error) => match self.plain(core, key, pending, peer, error) {
                    Served::Next(len) => start += len,
                    Served::Wait => break Step::Keep,
                    Served::Closed => break Step::Spent,
                },
            }
        };
        let request = match step {
            Step::Upgrade(request) => request,
            Step::Keep => {
                let io = &mut entry.core.io;
                match stash {
                    Some(mut stash) => {
                        stash.drain(..start);
                        io.put_stash(&mut self.ctx.pool, stash);
                    }
                    None => io.hold(&mut self.ctx.pool, &input[start..]),
                }
                return true;
            }
            Step::Spent => {
                if let Some(stash) = stash {
                    self.ctx.pool.give(stash);
                }
                entry.core.io.settle_held(&mut self.ctx.pool);
                return true;
            }
        };
        let core = &mut entry.core;
        let head_len = request.head_len();
        let view = Request::new(request, peer);
        let decision = upgrade::admit(self.ctx, &view).and_then(|admission| {
            let handler = &mut *self.handler;
            match guarded(id, "on_upgrade", || handler.on_upgrade(&view)) {
                Some(Upgrade::Accept { protocol, headers, state }) => {
                    Ok((protocol, headers, state, admission))
                }
                Some(Upgrade::Reject(status)) => Err(status),
                None => {
                    self.ctx.stats.panics.add(HANDLER_PANIC, 1);
                    Err(500)
                }
            }
        });
        let (protocol, headers, state, admission) = match decision {
            Ok(accepted) => accepted,
            Err(status) => {
                self.ctx.stats.refused.add(status_index(status), 1);
                self.refuse(core, key, status, stash);
                return true;
            }
        };
        let deflate = self.ctx.config.deflate().copied();
        let agreed = deflate.and_then(|deflate| Some((deflate, deflate.negotiate(&view)?)));
        let answer = agreed.map(|(_, params)| params.to_string());
        // Borrowed views of the handler's headers (no allocation when there are none).
        let mut extra: Vec<(&str, &[u8])> =
            headers.iter().map(|(name, value)| (*name, value.as_slice())).collect();
        if let Some(answer) = &answer {
            extra.push(("Sec-WebSocket-Extensions", answer.as_bytes()));
        }
        if let Err(error) =
            core.io.answer_now(self.ctx, key, |out| request.accept(protocol, &extra, out))
        {
            tracing::error!(%id, %error, "the handler's 101 cannot be sent");
            drop(admission);
            self.ctx.stats.refused.add(status_index(500), 1);
            self.refuse(core, key, 500, stash);
            return true;
        }
        let session = agreed.map(|(deflate, params)| {
            Box::new(deflate.session(self.ctx.deflate_codecs(deflate.threshold), &params))
        });
        let mut ws = WsConnection::server_with(*self.ctx.config.limits(), session);
        // The handshake was the connection's first input: silence counts from it.
        ws.handle_input(self.ctx.now);
        core.phase = Phase::Open(ws);
        core.io.clear(flag::KEPT_ALIVE);
        core.arm_timer(self.ctx, key);
        entry.app = Some(App { state, admission });
        self.ctx.stats.opened.inc();
        self.call(entry, key, "on_open", false, |handler, conn, state| {
            handler.on_open(conn, state)
        });
        // Frames the client sent right behind its request.
        let rest = &mut buf[start + head_len..];
        let go_on = match self.feed(entry, key, rest) {
            Fed::Paused(used) => {
                entry.core.io.hold_back(&mut self.ctx.pool, &rest[used..]);
                false
            }
            Fed::All | Fed::Ended => true,
        };
        if let Some(stash) = stash {
            self.ctx.pool.give(stash);
        }
        entry.core.io.settle_held(&mut self.ctx.pool);
        go_on
    }

    /// A request head the upgrade parser refused. An upgrade attempt gets the refusal it
    /// always got; a plain HTTP request is read (its body may still be coming) and answered
    /// by a built-in route or the handler's `on_http`, and the connection is kept for the
    /// next request unless the client or the answer ends it.
    fn plain(
        &mut self,
        core: &mut ConnCore,
        key: ConnKey,
        input: &[u8],
        peer: SocketAddr,
        error: HandshakeError,
    ) -> Served {
        let ctx = &mut *self.ctx;
        let mut headers = [EMPTY_HEADER; MAX_HEADERS];
        let parsed = match error {
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => {
                ctx.stats.limit(Limit::HeadSize);
                http::Parsed::Upgrade
            }
            HandshakeError::MalformedHttp => http::Parsed::Upgrade,
            _ => {
                let max = ctx.config.handshake_limits().max_headers;
                http::parse(input, &mut headers[..max], peer, ctx.config.http_body_limit())
            }
        };
        let mut reply = std::mem::take(&mut ctx.reply);
        reply.clear();
        let (status, close) = match parsed {
            http::Parsed::Upgrade => {
                tracing::debug!(id = %ctx.id(key), %error, "bad handshake");
                ctx.stats.failed.add(status_index(error.status()), 1);
                ctx.reply = reply;
                upgrade::refuse(core, ctx, key, error.status());
                return Served::Closed;
            }
            http::Parsed::Incomplete(total) => {
                ctx.reply = reply;
                if let Phase::Handshake { body_until, .. } = &mut core.phase {
                    *body_until = total;
                }
                return Served::Wait;
            }
            http::Parsed::Bad(status, limit) => {
                if let Some(limit) = limit {
                    ctx.stats.limit(limit);
                }
                (http::refuse(status, true, &mut reply), true)
            }
            http::Parsed::Request { request, len, keep_alive } => {
                // Draining: answer, then close.
                let close = !keep_alive || ctx.shutdown.is_some();
                let status = match http::builtin(ctx, &request, close, &mut reply) {
                    Some(status) => status,
                    None => {
                        let handler = &mut *self.handler;
                        match guarded(ctx.id(key), "on_http", || handler.on_http(&request)) {
                            Some(response) => {
                                let headers: Vec<(&str, &[u8])> =
                                    response.headers.iter().map(|(n, v)| (*n, &v[..])).collect();
                                let body = &response.body;
                                http::respond(
                                    &request,
                                    response.status,
                                    &headers,
                                    body,
                                    close,
                                    &mut reply,
                                )
                            }
                            None => {
                                ctx.stats.panics.add(HANDLER_PANIC, 1);
                                http::refuse(500, close, &mut reply)
                            }
                        }
                    }
                };
                if !close {
                    ctx.stats.http.add(status_index(status), 1);
                    core.io.write_now(ctx, key, &reply, &[]);
                    ctx.reply = reply;
                    core.io.set(flag::KEPT_ALIVE);
                    core.phase = Phase::Handshake {
                        parser: ServerHandshake::new(*ctx.config.handshake_limits()),
                        peer,
                        deadline: ctx.tick_after(ctx.config.handshake_timeout()),
                        body_until: 0,
                    };
                    // The wheel entry for the old deadline re-arms for the new one.
                    core.arm_timer(ctx, key);
                    return Served::Next(len);
                }
                (status, true)
            }
        };
        debug_assert!(close);
        ctx.stats.http.add(status_index(status), 1);
        core.io.write_now(ctx, key, &reply, &[]);
        ctx.reply = reply;
        upgrade::close_after_answer(core, ctx, key);
        Served::Closed
    }

    /// Refuses the handshake with `status`, returning the gathered head to the pool.
    fn refuse(&mut self, core: &mut ConnCore, key: ConnKey, status: u16, stash: Option<Vec<u8>>) {
        upgrade::refuse(core, self.ctx, key, status);
        if let Some(stash) = stash {
            self.ctx.pool.give(stash);
        }
    }

    /// Output that reached the low watermark again: `on_drain`, once per refused send, then
    /// `on_missed` with the count of publishes skipped meanwhile.
    pub(crate) fn drain(&mut self, entry: &mut ConnEntry<H::State>, key: ConnKey) {
        if entry.core.io.has(flag::BACKPRESSURED) {
            entry.core.io.clear(flag::BACKPRESSURED);
            self.call(entry, key, "on_drain", false, |handler, conn, state| {
                handler.on_drain(conn, state)
            });
            let missed = self.ctx.topics.take_missed(key);
            if missed > 0 {
                self.call(entry, key, "on_missed", false, |handler, conn, state| {
                    handler.on_missed(conn, state, missed)
                });
            }
        }
    }

    /// Sends a message from another thread; hands it to `on_refused` under backpressure.
    pub(crate) fn deliver(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        msg: Message<'_>,
    ) {
        if entry.core.send(self.ctx, key, msg, false) == SendResult::Backpressure {
            self.refused(entry, key, msg);
        }
    }

    /// A message from another thread found the connection at its backpressure limit.
    pub(crate) fn refused(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        msg: Message<'_>,
    ) {
        self.call(entry, key, "on_refused", false, |handler, conn, state| {
            handler.on_refused(conn, state, msg)
        });
    }

    /// Calls the handler about an open connection; a panic closes it with 1011.
    fn call(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        callback: &'static str,
        last_of_read: bool,
        f: impl FnOnce(&mut H, &mut Conn<'_>, &mut H::State),
    ) {
        let ConnEntry { core, app } = entry;
        let Some(app) = app.as_mut() else { return };
        let handler = &mut *self.handler;
        let mut conn = Conn { core: &mut *core, ctx: &mut *self.ctx, key, last_of_read };
        let id = conn.id();
        if guarded(id, callback, || f(handler, &mut conn, &mut app.state)).is_none() {
            self.ctx.stats.panics.add(HANDLER_PANIC, 1);
            // Fails only when our Close is already out, which is what we want anyway.
            let _ = core.start_close(self.ctx, key, CloseCode::INTERNAL_ERROR, "");
        }
    }

    /// The application's side of the connection is over: `on_close`, then the close
    /// handshake's deadline.
    pub(crate) fn close_app(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        code: CloseCode,
        reason: &str,
    ) {
        self.notify_close(entry, key, code, reason);
        let fallback = self.ctx.linger_deadline();
        entry.core.phase.leave_open(self.ctx, fallback);
        entry.core.io.clear(flag::BACKPRESSURED);
        // The protocol started the close handshake's deadline when the input came.
        entry.core.arm_timer(self.ctx, key);
        entry.core.io.mark_dirty(self.ctx, key);
    }

    /// Calls `on_close` once, if the application still holds the connection, giving its
    /// place under the connection cap back first.
    pub(crate) fn notify_close(
        &mut self,
        entry: &mut ConnEntry<H::State>,
        key: ConnKey,
        code: CloseCode,
        reason: &str,
    ) {
        let Some(App { state, admission }) = entry.app.take() else { return };
        drop(admission);
        self.ctx.stats.closed.inc();
        self.ctx.leave_topics(key);
        let id = self.ctx.id(key);
        let handler = &mut *self.handler;
        // A panic here is only logged and counted: the connection is going anyway.
        if guarded(id, "on_close", || handler.on_close(id, state, code, reason)).is_none() {
            self.ctx.stats.panics.add(HANDLER_PANIC, 1);
        }
    }
}
