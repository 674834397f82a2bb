//! The simulator: a backend on a virtual clock over in-memory streams, and [`Sim`], which
//! drives one event loop with it the way quinn's tests drive a `Pair` of endpoints: the test
//! moves time, every turn happens at an exact instant, and nothing sleeps.
//!
//! Readiness is edge-like, as with mio: a pipe reports input once per batch of new bytes (or
//! the peer's end of stream) and writability once per read that made room after a partial
//! flush.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Backend, Ready};
use crate::config::Config;
use crate::event_loop::{EventLoop, LoopSetup};
use crate::handle::{Command, LoopRemote, ServerHandle, Shared, ShutdownReport};
use crate::handler::Handler;
use crate::key::ConnKey;
use crate::transport::memory::{pipe, Peer};
use crate::transport::Stream;

/// Turns at one instant before [`Sim::settle`] gives up on a loop that never goes quiet.
const MAX_TURNS_PER_INSTANT: usize = 10_000;

/// What the simulated world holds: the clock, connections waiting to be accepted, the pipes
/// of accepted ones.
#[derive(Debug)]
struct World {
    now: Instant,
    listening: bool,
    waiting: VecDeque<(Stream, SocketAddr)>,
    /// Accepted pipes: key, the test's end (to see edges), writability watched.
    pipes: Vec<(ConnKey, Peer, bool)>,
}

impl World {
    /// Whether a wait now would report anything.
    fn has_edges(&self) -> bool {
        (self.listening && !self.waiting.is_empty())
            || self.pipes.iter().any(|(_, peer, watched)| {
                let state = peer.state();
                !state.server_gone && (state.input_edge || (*watched && state.output_edge))
            })
    }
}

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The simulated backend of one loop.
#[derive(Debug)]
pub(crate) struct SimBackend {
    world: Arc<Mutex<World>>,
    handle: ServerHandle,
    /// What the last wait found.
    found: Vec<Ready<'static>>,
}

impl Backend for SimBackend {
    /// Never blocks: the simulated world changes only between turns.
    fn wait(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
        let ready = &mut self.found;
        ready.clear();
        if self.handle.shared.loops[0].wake_pending.load(Ordering::Acquire) {
            ready.push(Ready::Wake);
        }
        let mut world = lock(&self.world);
        if world.listening && !world.waiting.is_empty() {
            ready.push(Ready::Listener(0));
        }
        world.pipes.retain(|(_, peer, _)| !peer.server_gone());
        for (key, peer, watched) in &world.pipes {
            let mut state = peer.state();
            if std::mem::take(&mut state.input_edge) {
                ready.push(Ready::Input { key: *key, peer_done: state.peer_shut });
            }
            if *watched && std::mem::take(&mut state.output_edge) {
                ready.push(Ready::Output(*key));
            }
        }
        Ok(())
    }

    fn drain(&mut self, f: impl FnMut(Ready<'_>)) {
        self.found.drain(..).for_each(f);
    }

    fn now(&self) -> Instant {
        lock(&self.world).now
    }

    fn listeners(&self) -> usize {
        1
    }

    fn accept(&mut self, _index: usize) -> io::Result<Option<(Stream, SocketAddr)>> {
        let mut world = lock(&self.world);
        Ok(if world.listening { world.waiting.pop_front() } else { None })
    }

    fn stop_listening(&mut self) {
        let mut world = lock(&self.world);
        world.listening = false;
        world.waiting.clear();
    }

    fn register(&mut self, key: ConnKey, stream: &mut Stream) -> io::Result<()> {
        let Stream::Memory(pipe) = stream else { return Err(io::ErrorKind::Unsupported.into()) };
        let peer = Peer { state: Arc::clone(&pipe.state) };
        {
            // Bytes sent before the accept are reported, as epoll does on registration.
            let mut state = peer.state();
            state.input_edge |= !state.to_server.is_empty() || state.peer_shut;
        }
        lock(&self.world).pipes.push((key, peer, false));
        Ok(())
    }

    fn watch_writable(&mut self, key: ConnKey, _stream: &mut Stream, on: bool) -> io::Result<()> {
        let mut world = lock(&self.world);
        if let Some((_, peer, watched)) = world.pipes.iter_mut().find(|(k, ..)| *k == key) {
            *watched = on;
            // A stream with room is reported writable at once, as on registration.
            let mut state = peer.state();
            state.output_edge = on && state.to_client.len() < state.window;
        }
        Ok(())
    }
}

/// One event loop on the simulator, and the test's side of the world.
pub(crate) struct Sim<H: Handler> {
    event_loop: EventLoop<H, SimBackend>,
    world: Arc<Mutex<World>>,
    pub(crate) handle: ServerHandle,
    start: Instant,
    /// The poll the handle's waker belongs to; never polled (the simulator looks at the wake
    /// flag instead), only kept alive.
    _waker_poll: mio::Poll,
}

impl<H: Handler> Sim<H> {
    /// A loop with `config` (its listen addresses and threads unused) and `handler`, at
    /// virtual time zero.
    pub(crate) fn new(config: Config, handler: H) -> Self {
        let config = Arc::new(config);
        let waker_poll = mio::Poll::new().expect("a poll for the waker");
        let waker = mio::Waker::new(waker_poll.registry(), super::WAKER).expect("a waker");
        let (commands, receiver) = crossbeam_channel::unbounded();
        let (reports, report_rx) = crossbeam_channel::unbounded();
        let handle = ServerHandle {
            shared: Arc::new(Shared::new(
                vec![LoopRemote { commands, waker, wake_pending: AtomicBool::new(false) }],
                crate::admission::Admissions::new(&config),
                report_rx,
                None,
                None,
            )),
        };
        let start = Instant::now();
        let world = Arc::new(Mutex::new(World {
            now: start,
            listening: true,
            waiting: VecDeque::new(),
            pipes: Vec::new(),
        }));
        let backend =
            SimBackend { world: Arc::clone(&world), handle: handle.clone(), found: Vec::new() };
        let setup = LoopSetup {
            index: 0,
            deal: false,
            commands: receiver,
            reports,
            config,
            handle: handle.clone(),
        };
        let event_loop = EventLoop::new(setup, backend, handler);
        Sim { event_loop, world, handle, start, _waker_poll: waker_poll }
    }

    /// Virtual time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        lock(&self.world).now - self.start
    }

    /// A new connection whose server end may hold `window` unread bytes; accepted at the
    /// next turn, or refused at once (the server end dropped) once the listeners are closed.
    pub(crate) fn connect(&mut self, window: usize) -> Peer {
        let (pipe, peer) = pipe(window);
        let addr = SocketAddr::from(([192, 0, 2, 1], 40000));
        let mut world = lock(&self.world);
        if world.listening {
            world.waiting.push_back((Stream::Memory(pipe), addr));
        }
        peer
    }

    /// Runs turns at the current instant until the loop is quiet: nothing reported, nothing
    /// to read again or flush.
    pub(crate) fn settle(&mut self) {
        for _ in 0..MAX_TURNS_PER_INSTANT {
            let quiet = !self.event_loop.busy()
                && !lock(&self.world).has_edges()
                && !self.handle.shared.loops[0].wake_pending.load(Ordering::Acquire);
            if quiet || self.event_loop.finished() {
                return;
            }
            self.event_loop.step(Some(Duration::ZERO)).expect("a simulated wait");
        }
        panic!("the loop is still busy after {MAX_TURNS_PER_INSTANT} turns at one instant");
    }

    /// Moves the clock on by `by`, with a turn at every instant the loop asked to be woken
    /// at on the way (its timer ticks, a shutdown deadline), settling at each.
    pub(crate) fn advance(&mut self, by: Duration) {
        let target = lock(&self.world).now + by;
        loop {
            self.settle();
            let now = lock(&self.world).now;
            let next = match self.event_loop.poll_timeout() {
                Some(wait) if now + wait <= target && !self.event_loop.finished() => now + wait,
                _ => target,
            };
            lock(&self.world).now = next;
            self.event_loop.step(Some(Duration::ZERO)).expect("a simulated wait");
            if next == target {
                self.settle();
                return;
            }
        }
    }

    /// Queues a command for the loop, as another thread's handle would.
    pub(crate) fn command(&self, command: Command) {
        self.handle.shared.loops[0].submit(command).expect("the loop's queue");
    }

    /// The handle other threads would hold.
    pub(crate) fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Slots the loop's topic table keeps.
    pub(crate) fn topic_slots(&self) -> usize {
        self.event_loop.topics().slots()
    }

    /// The virtual instant `after` from the start.
    pub(crate) fn at(&self, after: Duration) -> Instant {
        self.start + after
    }

    /// The loop's metrics, as `/metrics` answers them.
    pub(crate) fn metrics_text(&self) -> String {
        self.handle.metrics_text()
    }

    /// What permessage-deflate did on the loop.
    pub(crate) fn deflate_stats(&self) -> surge_proto::deflate::DeflateStats {
        self.event_loop.deflate_stats()
    }

    /// What the shutdown achieved so far.
    pub(crate) fn report(&self) -> ShutdownReport {
        self.event_loop.report()
    }

    /// Whether a shutdown has finished.
    pub(crate) fn finished(&self) -> bool {
        self.event_loop.finished()
    }
}
