//! Starting the loops and waiting for them.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use crate::acceptor;
use crate::admission::Admissions;
#[cfg(target_os = "linux")]
use crate::backend::{IoUringStats, UringBackend};
use crate::backend::{MioBackend, WAKER};
use crate::broker::{self, Broker};
use crate::cluster::{BrokerCounters, BrokerLink};
use crate::config::{Backend, Config};
use crate::error::ServerError;
use crate::event_loop::{EventLoop, LoopSetup};
use crate::handle::{Command, LoopIndex, LoopRemote, ServerHandle, Shared, ShutdownReport};
use crate::handler::Handler;

/// A running server: its loops, their addresses, and a handle to reach them.
///
/// Dropping a `Server` leaves its loops running (like a detached thread); stop them with
/// [`Server::shutdown`] or [`ServerHandle::shutdown`].
///
/// ```no_run
/// use std::time::Duration;
/// use surge::{echo::EchoHandler, Config, Server};
///
/// let config = Config::builder().listen("127.0.0.1:9001".parse().unwrap()).build()?;
/// let server = Server::start(config, |_loop| EchoHandler)?;
/// println!("listening on {:?}", server.local_addrs());
/// // ... later, from any thread:
/// let report = server.shutdown(Duration::from_secs(5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Server {
    handle: ServerHandle,
    local_addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    backend: Backend,
    /// In a cluster: the broker's threads.
    broker: Option<Broker>,
}

impl Server {
    /// Binds the configured addresses, starts one loop per configured thread, and calls
    /// `factory` once on each loop's thread to make its handler. Returns once every loop is
    /// ready to accept.
    pub fn start<H, F>(config: Config, factory: F) -> Result<Server, ServerError>
    where
        H: Handler + 'static,
        F: Fn(LoopIndex) -> H + Send + Sync + 'static,
    {
        let config = Arc::new(config);
        let backend = choose_backend(config.backend())?;
        let listeners = acceptor::bind(&config)?;
        let local_addrs = listeners.local_addrs.clone();

        let mut polls = Vec::with_capacity(config.threads());
        let mut remotes = Vec::with_capacity(config.threads());
        let mut receivers = Vec::with_capacity(config.threads());
        for _ in 0..config.threads() {
            let poll = Poll::new().map_err(|source| ServerError::Poll { source })?;
            let waker = Waker::new(poll.registry(), WAKER)
                .map_err(|source| ServerError::Poll { source })?;
            let (commands, receiver) = crossbeam_channel::unbounded();
            remotes.push(LoopRemote { commands, waker, wake_pending: AtomicBool::new(false) });
            receivers.push(receiver);
            polls.push(poll);
        }
        let (report_tx, report_rx) = crossbeam_channel::unbounded();
        let (link, broker_ends) = match config.cluster() {
            Some(cluster) => {
                let (outgoing, outgoing_rx) = crossbeam_channel::bounded(cluster.queue());
                let (interest, interest_rx) = crossbeam_channel::unbounded();
                let counters = Arc::new(BrokerCounters::default());
                let link = BrokerLink { outgoing, interest, counters: Arc::clone(&counters) };
                (Some(link), Some((cluster, counters, outgoing_rx, interest_rx)))
            }
            None => (None, None),
        };
        let admissions = Admissions::new(&config);
        let handle = ServerHandle {
            shared: Arc::new(Shared::new(
                remotes,
                admissions,
                report_rx,
                link,
                config.tls_context().cloned(),
                backend == Backend::IoUring,
            )),
        };
        let broker = match broker_ends {
            Some((cluster, counters, outgoing, interest)) => {
                let shared = Arc::downgrade(&handle.shared);
                let id = broker::node_id();
                Some(
                    broker::start(cluster, id, counters, outgoing, interest, shared)
                        .map_err(|source| ServerError::Spawn { source })?,
                )
            }
            None => None,
        };

        let factory = Arc::new(factory);
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        let mut threads = Vec::with_capacity(config.threads());
        let deal = listeners.deal;
        let setups = polls.into_iter().zip(receivers).zip(listeners.per_loop).enumerate();
        for (index, ((poll, commands), listeners)) in setups {
            let setup = LoopSetup {
                // `Config::build` caps threads at u16::MAX.
                index: index as u16,
                deal,
                commands,
                reports: report_tx.clone(),
                config: Arc::clone(&config),
                handle: handle.clone(),
            };
            let factory = Arc::clone(&factory);
            let ready = ready_tx.clone();
            let core = (!config.pinning().is_empty())
                .then(|| config.pinning()[index % config.pinning().len()]);
            let io = LoopIo { backend, poll, listeners };
            let spawned = std::thread::Builder::new()
                .name(format!("surge-loop-{index}"))
                .spawn(move || run_loop(setup, io, &*factory, core, ready));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(source) => {
                    let server = Server { handle, local_addrs, threads, backend, broker };
                    server.abort();
                    return Err(ServerError::Spawn { source });
                }
            }
        }
        let server = Server { handle, local_addrs, threads, backend, broker };
        drop(ready_tx);
        for _ in 0..server.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    server.abort();
                    return Err(error);
                }
                Err(_) => {
                    server.abort();
                    return Err(ServerError::FactoryPanicked(0));
                }
            }
        }
        Ok(server)
    }

    /// The backend the loops run on: [`Backend::Epoll`] or [`Backend::IoUring`], never
    /// `Auto` (that one is resolved at start).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What the io_uring backend met so far, over all loops (all zero on epoll).
    #[cfg(target_os = "linux")]
    pub fn io_uring_stats(&self) -> IoUringStats {
        let metrics = &self.handle.shared.metrics;
        IoUringStats {
            no_buffers: metrics.uring_sum(|u| &u.no_buffers),
            rearmed: metrics.uring_sum(|u| &u.rearmed),
            cq_overflows: metrics.uring_sum(|u| &u.cq_overflows),
            short_sends: metrics.uring_sum(|u| &u.short_sends),
            early_submits: metrics.uring_sum(|u| &u.early_submits),
        }
    }

    /// A handle for sending, broadcasting and shutting down, from any thread.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The bound addresses, in the configured order, with ports resolved (port 0 becomes
    /// the port the system chose).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Waits until every loop has stopped (after a [`shutdown`](ServerHandle::shutdown)
    /// from any thread).
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a loop thread panicked");
            }
        }
        // The loops are gone: the broker's threads see the shutdown and stop.
        for thread in self.broker.into_iter().flat_map(|broker| broker.threads) {
            if thread.join().is_err() {
                tracing::error!("a broker thread panicked");
            }
        }
    }

    /// Shuts down gracefully (see [`ServerHandle::shutdown`]) and waits for the loops.
    pub fn shutdown(self, grace: Duration) -> ShutdownReport {
        let report = self.handle.shutdown(grace);
        self.join();
        report
    }

    /// Stops loops that started, when starting the rest failed.
    fn abort(self) {
        self.handle.shared.shutting_down.store(true, std::sync::atomic::Ordering::Release);
        for remote in &self.handle.shared.loops {
            let _ = remote.submit(Command::Shutdown { deadline: Instant::now() });
        }
        self.join();
    }
}

/// Resolves `Auto`: io_uring where the probe passes, else epoll (with one log line); an
/// explicit io_uring the system refuses fails the start. TLS runs on either.
fn choose_backend(asked: Backend) -> Result<Backend, ServerError> {
    #[cfg(target_os = "linux")]
    match asked {
        Backend::Epoll => Ok(Backend::Epoll),
        Backend::IoUring => match crate::backend::probe() {
            Ok(()) => Ok(Backend::IoUring),
            Err(source) => Err(ServerError::IoUring { source }),
        },
        Backend::Auto => match crate::backend::probe() {
            Ok(()) => Ok(Backend::IoUring),
            Err(error) => {
                tracing::info!(%error, "io_uring unavailable; using epoll");
                Ok(Backend::Epoll)
            }
        },
    }
    #[cfg(not(target_os = "linux"))]
    match asked {
        Backend::IoUring => {
            Err(ServerError::IoUring { source: std::io::ErrorKind::Unsupported.into() })
        }
        Backend::Auto | Backend::Epoll => Ok(Backend::Epoll),
    }
}

/// What a loop thread waits for I/O with.
struct LoopIo {
    backend: Backend,
    poll: Poll,
    listeners: Vec<mio::net::TcpListener>,
}

/// A loop thread: pin, make the handler, set up the backend, report ready, run.
fn run_loop<H, F>(
    setup: LoopSetup,
    io: LoopIo,
    factory: &F,
    core: Option<usize>,
    ready: crossbeam_channel::Sender<Result<(), ServerError>>,
) where
    H: Handler,
    F: Fn(LoopIndex) -> H,
{
    let index = setup.index;
    crate::handle::ON_LOOP_THREAD.with(|on_loop| on_loop.set(true));
    if let Some(id) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            tracing::warn!(loop_index = index, core = id, "could not pin the loop");
        }
    }
    let handler = match catch_unwind(AssertUnwindSafe(|| factory(LoopIndex(index)))) {
        Ok(handler) => handler,
        Err(_) => {
            let _ = ready.send(Err(ServerError::FactoryPanicked(usize::from(index))));
            return;
        }
    };
    let LoopIo { backend, poll, listeners } = io;
    let config = Arc::clone(&setup.config);
    #[cfg(target_os = "linux")]
    if backend == Backend::IoUring {
        // Built here: the ring is single-issuer, and this thread is its issuer.
        let buffers = config.io_uring_buffers();
        let stats = setup.handle.shared.metrics.loop_stats(index);
        match UringBackend::new(poll, listeners, buffers, stats) {
            Ok(backend) => start(setup, backend, handler, ready),
            Err(source) => {
                let _ = ready.send(Err(ServerError::IoUring { source }));
            }
        }
        return;
    }
    match MioBackend::new(poll, listeners, config.nodelay()) {
        Ok(backend) => start(setup, backend, handler, ready),
        Err(source) => {
            let _ = ready.send(Err(ServerError::Poll { source }));
        }
    }
}

/// Reports the loop ready and runs it.
fn start<H: Handler, B: crate::backend::Backend>(
    setup: LoopSetup,
    backend: B,
    handler: H,
    ready: crossbeam_channel::Sender<Result<(), ServerError>>,
) {
    let event_loop = EventLoop::new(setup, backend, handler);
    let _ = ready.send(Ok(()));
    drop(ready);
    event_loop.run();
}
