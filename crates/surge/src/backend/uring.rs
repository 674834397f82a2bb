//! The io_uring backend (Linux): one ring per loop thread, set up single-issuer with
//! deferred, cooperative task work and its fd registered; multishot accept on the loop's
//! own listeners; multishot receive of every connection into one provided buffer ring per
//! loop; sends straight from the output queue's segments; and one `io_uring_enter` per
//! loop turn that submits what the turn queued and waits for the next completions, its
//! timeout the timer wheel's.
//!
//! TLS connections receive through the same ring: the loop hands their records to the TLS
//! transport, which decrypts them into the loop's read buffer (`Turn::take_received`).
//! Their output is encrypted, so it is flushed through the transport (`write` on the
//! non-blocking socket, as epoll's flush does) rather than lent to a send; when the socket
//! does not take it all, a one-shot `POLL_ADD` for `POLLOUT` reports the connection
//! writable ([`Ready::Output`]) and the flush goes on from there.
//!
//! The seam's side of it (received bytes, lent output, retiring a connection with I/O in
//! flight) is described in the [backend module](super). Everything the kernel may touch
//! after a submission (the provided buffers, a send's `msghdr`, its iovecs and the bytes
//! they point at) lives in memory this backend owns, and stays put until the completion
//! that ends the request, or until the ring is gone.
//!
//! Where the kernel cannot keep up with the demand, nothing is lost and nothing hangs:
//! - no provided buffer free (`ENOBUFS`): the bytes stay in the socket; the receive is
//!   armed again once the turn has handed its buffers back;
//! - a multishot that ends without `IORING_CQE_F_MORE` (the kernel's choice, or a full
//!   completion queue): armed again; the accept is armed again on the next accept;
//! - completion queue overflow: the kernel keeps the completions (`IORING_FEAT_NODROP`)
//!   and hands them over on the next enter, in order;
//! - a short send: the output queue keeps the rest, which the next flush sends.
//!
//! Each is counted in the loop's own stats (`/metrics`: `surge_io_uring_*{loop}`), summed
//! in [`IoUringStats`].
//!
//! The engine's `unsafe` code is here (the ring's memory and the system calls; beside it only
//! `tls::random`'s fork handler), each
//! block with its `SAFETY` argument; the tests in `tests` run under AddressSanitizer too
//! (`tests/run.sh`, the asan suite).
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll};

use super::{Backend, Ready};
use crate::buffer_pool::BufferPool;
use crate::key::ConnKey;
use crate::outbox::{Flushed, Outbox, MAX_IOV};
use crate::stats::LoopStats;
use crate::transport::Stream;

mod buffers;

use buffers::BufRing;

/// The buffer group of the loop's provided buffer ring.
const BUFFER_GROUP: u16 = 0;

/// How long a wait may hold back the completions of the sends it has just submitted, hoping
/// for one more event to handle with them in the same turn. Sends to a socket with room
/// complete during the submission itself; without this, every turn that sends would be
/// followed by a turn for those completions alone, and a second `io_uring_enter`. Only
/// while turns carry several events (see `UringBackend::crowded`).
const BATCH_WAIT: Duration = Duration::from_micros(100);

/// Connection slots a request's user data can name (the rest of its bits: the operation
/// and the slot's generation).
const MAX_SLOTS: u32 = 1 << 29;

/// What a request is, in the top bits of its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A connection's multishot receive.
    Recv,
    /// A connection's send.
    Send,
    /// A one-shot poll for writability of a connection flushed through its transport (TLS)
    /// whose socket did not take everything.
    Writable,
    /// A listener's multishot accept (the slot is the listener's index).
    Accept,
    /// The multishot poll of the waker's epoll instance.
    Wake,
    /// A cancellation: its own completion says nothing we need.
    Cancel,
}

const OPS: [Op; 6] = [Op::Recv, Op::Send, Op::Writable, Op::Accept, Op::Wake, Op::Cancel];

fn user_data(op: Op, slot: u32, generation: u32) -> u64 {
    (op as u64) << 61 | u64::from(slot) << 32 | u64::from(generation)
}

fn decode(data: u64) -> (Op, u32, u32) {
    let op = OPS.get((data >> 61) as usize).copied().unwrap_or(Op::Cancel);
    (op, ((data >> 32) as u32) & (MAX_SLOTS - 1), data as u32)
}

/// What the io_uring backend met, summed over a server's loops
/// ([`Server::io_uring_stats`](crate::Server::io_uring_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IoUringStats {
    /// Receives that found no provided buffer free (`ENOBUFS`); their bytes waited in the
    /// socket for the next turn.
    pub no_buffers: u64,
    /// Multishot receives and accepts armed again after the kernel ended them.
    pub rearmed: u64,
    /// Waits that found completions the kernel had to hold back (completion queue full).
    pub cq_overflows: u64,
    /// Sends that took less than they were offered; the rest went with the next.
    pub short_sends: u64,
    /// Submissions made before the turn's end because the submission queue was full.
    pub early_submits: u64,
}

/// Whether this system gives a loop what the backend needs: the ring with its flags, the
/// opcodes, waits with a timeout argument, and a provided buffer ring. Refusals (an old
/// kernel, `kernel.io_uring_disabled`, a seccomp filter) come back as the error.
pub(crate) fn probe() -> io::Result<()> {
    let ring = new_ring(8)?;
    if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
        return Err(io::ErrorKind::Unsupported.into());
    }
    let mut ops = Probe::new();
    ring.submitter().register_probe(&mut ops)?;
    let needed = [
        opcode::RecvMulti::CODE,
        opcode::AcceptMulti::CODE,
        opcode::Send::CODE,
        opcode::SendMsg::CODE,
        opcode::PollAdd::CODE,
        opcode::AsyncCancel::CODE,
    ];
    if !needed.iter().all(|&op| ops.is_supported(op)) {
        return Err(io::ErrorKind::Unsupported.into());
    }
    let mut buffers = BufRing::new(&ring, 1, 64, BUFFER_GROUP)?;
    buffers.unregister(&ring);
    Ok(())
}

fn new_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_submit_all()
        .setup_cqsize(entries * 4)
        .build(entries)
}

/// A connection's receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Recv {
    /// None armed (never, or the multishot ended).
    #[default]
    Idle,
    /// A multishot is armed.
    Armed,
    /// A cancellation is on its way; the multishot's last completion has not come.
    Cancelling,
}

/// What the backend keeps for one connection slot.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    /// A connection holds the slot (registered, not retired).
    live: bool,
    fd: RawFd,
    recv: Recv,
    /// Receiving is paused at the backpressure limit: no re-arming until resumed.
    paused: bool,
    /// The send in flight.
    send: Option<Box<InFlight>>,
    /// Output waits behind the send in flight (counted in `UringBackend::backlogged`).
    backlog: bool,
    /// The stream writes through its transport (TLS encrypts before the socket sees a
    /// byte), not through the ring's sends.
    through_transport: bool,
    /// A poll for writability is armed (`Op::Writable`).
    polling_writable: bool,
}

/// A send in flight: the `msghdr` and iovecs the kernel reads (they point into the
/// connection's output queue, whose lent segments stay put until the completion).
struct InFlight {
    msg: libc::msghdr,
    iov: [libc::iovec; MAX_IOV],
    offered: usize,
    /// The output queue of a connection retired while this was in flight.
    orphan: Option<Box<Outbox>>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").field("offered", &self.offered).finish_non_exhaustive()
    }
}

impl InFlight {
    fn new() -> Box<Self> {
        // SAFETY: `msghdr` and `iovec` are plain C structs for which all zeroes (null
        // pointers, zero lengths) is a valid value.
        let (msg, iov) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        Box::new(InFlight { msg, iov, offered: 0, orphan: None })
    }
}

/// A listener's accepting.
#[derive(Debug, Default)]
struct Accepting {
    armed: bool,
    /// Accepted sockets not yet taken by the loop.
    ready: VecDeque<RawFd>,
    /// An accept failed (out of descriptors, say): the loop hears of it on its next accept.
    error: Option<io::Error>,
}

/// One loop's ring, its buffers and what is in flight on it.
pub(crate) struct UringBackend {
    ring: IoUring,
    /// The ring's index among this thread's registered ring fds.
    ring_index: Option<u32>,
    buffers: BufRing,
    /// The waker's epoll instance (the waker lives in it): polled from the ring.
    poll: Poll,
    events: Events,
    listeners: Vec<TcpListener>,
    accepting: Vec<Accepting>,
    slots: Vec<Slot>,
    /// Sends of retired connections still in flight, by user data.
    orphans: Vec<(u64, Box<InFlight>)>,
    #[allow(
        clippy::vec_box,
        reason = "the kernel holds pointers into a send's record: it must not move, so it is boxed"
    )]
    spare_sends: Vec<Box<InFlight>>,
    /// Sends queued since the last wait.
    fresh_sends: u32,
    /// Connections with output waiting behind their send in flight.
    backlogged: usize,
    /// The last wait found two events or more besides sends' completions. Then another is
    /// likely to come while this turn's sends complete, and holding them back for it
    /// (`BATCH_WAIT`) saves an enter; a lone connection's next message rarely comes that
    /// soon, and the wait's short timer (armed, then cancelled or fired) cost it more CPU
    /// per echo than the second enter it saved (1.3x, measured at one connection).
    crowded: bool,
    /// Connections whose receive ended and is to be armed again after this drain.
    rearm: Vec<ConnKey>,
    /// The last wait's completions (copied out, so the queue is free while they are
    /// handled).
    completions: Vec<cqueue::Entry>,
    /// This loop's counts (only this thread writes them).
    stats: Arc<LoopStats>,
}

impl UringBackend {
    /// A ring for this thread (the one that will submit to it), the buffer ring, the
    /// multishot accepts and the waker's poll.
    pub(crate) fn new(
        poll: Poll,
        listeners: Vec<TcpListener>,
        (count, size): (u16, usize),
        stats: Arc<LoopStats>,
    ) -> io::Result<Self> {
        // Room for a turn's submissions (a send and now and then a receive re-armed per
        // connection served; more go in an early submit, counted), and four times that in
        // the completion queue; rings with few buffers (a test's) get small queues too.
        let entries = (u32::from(count) * 16).clamp(64, 2048);
        let ring = new_ring(entries)?;
        let buffers = BufRing::new(&ring, count, size, BUFFER_GROUP)?;
        let mut backend = UringBackend {
            ring,
            ring_index: None,
            buffers,
            poll,
            events: Events::with_capacity(16),
            accepting: listeners.iter().map(|_| Accepting::default()).collect(),
            listeners,
            slots: Vec::new(),
            orphans: Vec::new(),
            spare_sends: Vec::new(),
            fresh_sends: 0,
            backlogged: 0,
            crowded: false,
            rearm: Vec::new(),
            completions: Vec::with_capacity(entries as usize * 4),
            stats,
        };
        backend.ring_index = backend.register_ring_fd();
        for index in 0..backend.listeners.len() {
            backend.arm_accept(index);
        }
        backend.arm_wake();
        Ok(backend)
    }

    /// Registers the ring's fd with this thread, so that each enter skips the fd lookup;
    /// `None` (plain enters) where the kernel refuses.
    fn register_ring_fd(&self) -> Option<u32> {
        let mut update = libc_rsrc_update { offset: u32::MAX, resv: 0, data: 0 };
        update.data = self.ring.as_raw_fd() as u64;
        // SAFETY: IORING_REGISTER_RING_FDS reads and writes one `io_uring_rsrc_update`,
        // which lives on this stack frame for the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                IORING_REGISTER_RING_FDS,
                &mut update as *mut libc_rsrc_update,
                1,
            )
        };
        (ret == 1).then_some(update.offset)
    }

    /// How many completions the next enter waits for, and how long at most, given the
    /// turn's `timeout`.
    fn completions_to_wait_for(&self, timeout: Option<Duration>) -> (u32, Option<Duration>) {
        match timeout {
            Some(Duration::ZERO) => (0, timeout),
            // Nothing waits for this turn's sends (no output queued behind one, no connection
            // closing once one is done) and more events are likely: wait for them and one
            // more event, briefly.
            _ if self.fresh_sends > 0 && self.backlogged == 0 && self.crowded => (
                self.fresh_sends.saturating_add(1),
                Some(timeout.map_or(BATCH_WAIT, |t| t.min(BATCH_WAIT))),
            ),
            _ => (1, timeout),
        }
    }

    /// Submits what is queued and waits for at least `want` completions, at most
    /// `timeout`.
    fn enter(&mut self, want: u32, timeout: Option<Duration>) -> io::Result<()> {
        let to_submit = self.ring.submission().len() as u32;
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let arg = GeteventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            min_wait_usec: 0,
            ts: ts.as_ref().map_or(0, |ts| ts as *const libc::timespec as u64),
        };
        let mut flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
        let fd = match self.ring_index {
            Some(index) => {
                flags |= IORING_ENTER_REGISTERED_RING;
                index as libc::c_long
            }
            None => self.ring.as_raw_fd() as libc::c_long,
        };
        // SAFETY: io_uring_enter reads `arg` (and the timespec it points at), both alive on
        // this frame for the call; the entries it submits carry pointers into memory this
        // backend keeps until their completions (see `push`).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit,
                want,
                flags,
                &arg as *const GeteventsArg,
                std::mem::size_of::<GeteventsArg>(),
            )
        };
        if ret >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            // The timeout passed, a signal came, or completions wait in the overflow list:
            // the turn goes on with what there is.
            Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
            _ => Err(error),
        }
    }

    /// Queues `entry`; when the submission queue is full, submits what it holds first.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry queued here points only at memory that outlives its
            // request: a send's `InFlight` box (kept in its slot or among the orphans until
            // the send's completion) and the output segments it lent (which the output
            // queue keeps unchanged until `Outbox::sent`), the provided buffer ring (owned by
            // `self.buffers` and unregistered before it is freed), or nothing at all.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            self.stats.uring.early_submits.inc();
            if self.enter(0, None).is_err() {
                // The kernel takes nothing now; make room by waiting for it.
                let _ = self.enter(1, Some(Duration::from_millis(1)));
            }
            self.collect();
        }
    }

    /// Moves the posted completions to `completions`.
    fn collect(&mut self) {
        if self.ring.submission().cq_overflow() {
            self.stats.uring.cq_overflows.inc();
        }
        let cq = self.ring.completion();
        self.completions.extend(cq);
    }

    fn arm_recv(&mut self, key: ConnKey) {
        let Some(slot) = self.slots.get_mut(key.slot as usize) else { return };
        slot.recv = Recv::Armed;
        let entry = opcode::RecvMulti::new(Fd(slot.fd), BUFFER_GROUP).build().user_data(user_data(
            Op::Recv,
            key.slot,
            key.generation,
        ));
        self.push(entry);
    }

    /// Asks for connection `key`'s socket to be reported writable once (`Ready::Output`).
    fn arm_writable(&mut self, key: ConnKey) {
        let Some(slot) = self.live(key) else { return };
        if slot.polling_writable {
            return;
        }
        slot.polling_writable = true;
        let entry = opcode::PollAdd::new(Fd(slot.fd), libc::POLLOUT as u32)
            .build()
            .user_data(user_data(Op::Writable, key.slot, key.generation));
        self.push(entry);
    }

    fn arm_accept(&mut self, index: usize) {
        let Some(listener) = self.listeners.get(index) else { return };
        let entry = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(Op::Accept, index as u32, 0));
        self.accepting[index].armed = true;
        self.push(entry);
    }

    fn arm_wake(&mut self) {
        let entry = opcode::PollAdd::new(Fd(self.poll.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(Op::Wake, 0, 0));
        self.push(entry);
    }

    fn cancel(&mut self, target: u64) {
        let entry = opcode::AsyncCancel::new(target).build().user_data(user_data(Op::Cancel, 0, 0));
        self.push(entry);
    }

    /// The slot of live connection `key`.
    fn live(&mut self, key: ConnKey) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.slot as usize)
            .filter(|slot| slot.live && slot.generation == key.generation)
    }

    /// A receive completion of connection `key`.
    fn on_recv(&mut self, key: ConnKey, result: i32, flags: u32, f: &mut impl FnMut(Ready<'_>)) {
        let buffer = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let Some(slot) = self.live(key) else {
            // The connection is gone; only its buffer matters.
            if let Some(id) = buffer {
                let len = usize::try_from(result).unwrap_or(0);
                self.buffers.give_back(id, len, cqueue::buffer_more(flags));
            }
            return;
        };
        if !more {
            slot.recv = Recv::Idle;
        }
        let go_on = !more && !slot.paused;
        if let (Some(id), true) = (buffer, result <= 0) {
            // A buffer with no bytes in it (not what the kernel does today): just back.
            self.buffers.give_back(id, 0, cqueue::buffer_more(flags));
        }
        match result {
            len if len > 0 => {
                let Some(id) = buffer else {
                    // Bytes without a buffer: not what we asked for; read them the usual way.
                    f(Ready::Input { key, peer_done: true });
                    return;
                };
                let len = len as usize;
                f(Ready::Received { key, bytes: self.buffers.get(id, len) });
                self.buffers.give_back(id, len, cqueue::buffer_more(flags));
                if go_on {
                    self.stats.uring.rearmed.inc();
                    self.rearm.push(key);
                }
            }
            // The end of the stream: the loop's read confirms it.
            0 => f(Ready::Input { key, peer_done: true }),
            err if err == -libc::ENOBUFS => {
                self.stats.uring.no_buffers.inc();
                if go_on {
                    self.stats.uring.rearmed.inc();
                    self.rearm.push(key);
                }
            }
            err if err == -libc::ECANCELED => {
                if go_on {
                    self.rearm.push(key);
                }
            }
            // An error: the loop's read meets it too, and ends the connection.
            _ => f(Ready::Input { key, peer_done: true }),
        }
    }

    /// A send completion: the connection's, or an orphan's.
    fn on_send(&mut self, data: u64, key: ConnKey, result: i32, f: &mut impl FnMut(Ready<'_>)) {
        let mut backlog = false;
        let own = self.live(key).and_then(|slot| {
            backlog = std::mem::take(&mut slot.backlog);
            slot.send.take()
        });
        if backlog {
            self.backlogged -= 1;
        }
        let Some(mut sent) = own else {
            if let Some(i) = self.orphans.iter().position(|(d, _)| *d == data) {
                let (_, mut sent) = self.orphans.swap_remove(i);
                // The kernel is done with the retired connection's output: free it.
                sent.orphan = None;
                self.spare_sends.push(sent);
            }
            return;
        };
        let written = match result {
            n if n >= 0 => {
                if (n as usize) < sent.offered {
                    self.stats.uring.short_sends.inc();
                }
                Ok(n as usize)
            }
            // Nothing went; the flush offers it again (the kernel waits for room itself,
            // so this is rare).
            err if err == -libc::EAGAIN || err == -libc::EINTR => Ok(0),
            err => Err(-err),
        };
        sent.orphan = None;
        self.spare_sends.push(sent);
        f(Ready::Sent { key, written });
    }

    /// An accept completion of listener `index`.
    fn on_accept(&mut self, index: usize, result: i32, flags: u32, f: &mut impl FnMut(Ready<'_>)) {
        let Some(accepting) = self.accepting.get_mut(index) else {
            if result >= 0 {
                // SAFETY: a completed accept's descriptor is ours alone; the listener is
                // gone, so it is closed at once.
                drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(result) });
            }
            return;
        };
        if !cqueue::more(flags) {
            accepting.armed = false;
        }
        if result >= 0 {
            accepting.ready.push_back(result);
        } else {
            accepting.error = Some(io::Error::from_raw_os_error(-result));
        }
        f(Ready::Listener(index));
    }
}

impl Backend for UringBackend {
    const COMPLETES_READS: bool = true;

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let (want, timeout) = self.completions_to_wait_for(timeout);
        self.fresh_sends = 0;
        self.enter(want, timeout)?;
        self.collect();
        let events = self.completions.iter().filter(|c| decode(c.user_data()).0 != Op::Send);
        self.crowded = events.take(2).count() == 2;
        Ok(())
    }

    fn drain(&mut self, mut f: impl FnMut(Ready<'_>)) {
        let mut completions = std::mem::take(&mut self.completions);
        for cqe in completions.drain(..) {
            let data = cqe.user_data();
            let (op, slot, generation) = decode(data);
            let key = ConnKey { slot, generation };
            match op {
                Op::Recv => self.on_recv(key, cqe.result(), cqe.flags(), &mut f),
                Op::Send => self.on_send(data, key, cqe.result(), &mut f),
                Op::Writable => {
                    // Whatever the poll says (writable, an error, cancelled for a live
                    // connection), the flush it leads to finds out.
                    if let Some(slot) = self.live(key) {
                        slot.polling_writable = false;
                        f(Ready::Output(key));
                    }
                }
                Op::Accept => self.on_accept(slot as usize, cqe.result(), cqe.flags(), &mut f),
                Op::Wake => {
                    // Take the waker's event out of its epoll instance, so that the next
                    // wake is a new edge for the poll.
                    let _ = self.poll.poll(&mut self.events, Some(Duration::ZERO));
                    if !cqueue::more(cqe.flags()) {
                        self.arm_wake();
                    }
                    f(Ready::Wake);
                }
                Op::Cancel => {}
            }
        }
        self.completions = completions;
        let mut rearm = std::mem::take(&mut self.rearm);
        for key in rearm.drain(..) {
            if self.live(key).is_some_and(|slot| slot.recv == Recv::Idle && !slot.paused) {
                self.arm_recv(key);
            }
        }
        self.rearm = rearm;
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn listeners(&self) -> usize {
        self.listeners.len()
    }

    fn accept(&mut self, index: usize) -> io::Result<Option<(Stream, SocketAddr)>> {
        let Some(accepting) = self.accepting.get_mut(index) else { return Ok(None) };
        while let Some(fd) = accepting.ready.pop_front() {
            // TCP_NODELAY comes with the socket: Linux gives an accepted socket its
            // listener's, which the acceptor set as configured.
            // SAFETY: a completed accept's descriptor is ours alone, and non-blocking
            // (SOCK_NONBLOCK); the stream takes it over.
            let stream = TcpStream::from_std(unsafe { std::net::TcpStream::from_raw_fd(fd) });
            // A peer already gone has no address: its socket is closed here.
            if let Ok(peer) = stream.peer_addr() {
                return Ok(Some((Stream::Tcp(stream), peer)));
            }
        }
        if let Some(error) = accepting.error.take() {
            return Err(error);
        }
        if !accepting.armed {
            self.stats.uring.rearmed.inc();
            self.arm_accept(index);
        }
        Ok(None)
    }

    fn stop_listening(&mut self) {
        for index in 0..self.listeners.len() {
            if self.accepting[index].armed {
                self.cancel(user_data(Op::Accept, index as u32, 0));
            }
        }
        for accepting in self.accepting.drain(..) {
            for fd in accepting.ready {
                // SAFETY: accepted and never handed out: ours alone to close.
                drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
            }
        }
        // Closed by us; the kernel lets go of them as the cancellations complete.
        self.listeners.clear();
    }

    fn register(&mut self, key: ConnKey, stream: &mut Stream) -> io::Result<()> {
        let (fd, through_transport) = match stream {
            Stream::Tcp(tcp) => (tcp.as_raw_fd(), false),
            // Its records are received through the ring and opened by the loop
            // (`Turn::take_received`); its output is encrypted and written by the transport.
            Stream::Tls(tls) => (tls.socket().as_raw_fd(), true),
            // The simulator's pipes have no descriptor; they run on its own backend.
            #[cfg(test)]
            Stream::Memory(_) => return Err(io::ErrorKind::Unsupported.into()),
        };
        if key.slot >= MAX_SLOTS {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let index = key.slot as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        self.slots[index] = Slot {
            generation: key.generation,
            live: true,
            fd,
            recv: Recv::Idle,
            paused: false,
            send: None,
            backlog: false,
            through_transport,
            polling_writable: false,
        };
        self.arm_recv(key);
        Ok(())
    }

    fn flush(
        &mut self,
        key: ConnKey,
        stream: &mut Stream,
        out: &mut Outbox,
        pool: &mut BufferPool,
    ) -> io::Result<Flushed> {
        let Some(slot) = self.live(key) else { return Err(io::ErrorKind::NotConnected.into()) };
        if slot.through_transport {
            // Encrypted and written now, on the non-blocking socket; what it did not take
            // (queued, or records the transport holds) goes when the poll says it may.
            let flushed = super::flush_through(stream, out, pool)?;
            if flushed == Flushed::Partial {
                self.arm_writable(key);
            }
            return Ok(flushed);
        }
        if slot.send.is_some() {
            return Ok(Flushed::Partial);
        }
        if out.len() == 0 {
            return Ok(Flushed::All);
        }
        let fd = slot.fd;
        let mut sent = self.spare_sends.pop().unwrap_or_else(InFlight::new);
        let mut count = 0;
        let iov = &mut sent.iov;
        sent.offered = out.lend(|bytes| {
            iov[count] =
                libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
            count += 1;
        });
        let data = user_data(Op::Send, key.slot, key.generation);
        let entry = if count == 1 {
            opcode::Send::new(Fd(fd), sent.iov[0].iov_base as *const u8, sent.offered as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            sent.msg.msg_iov = sent.iov.as_mut_ptr();
            sent.msg.msg_iovlen = count;
            opcode::SendMsg::new(Fd(fd), &sent.msg).flags(libc::MSG_NOSIGNAL as u32).build()
        };
        if let Some(slot) = self.live(key) {
            slot.send = Some(sent);
        }
        self.fresh_sends += 1;
        self.push(entry.user_data(data));
        Ok(Flushed::Partial)
    }

    fn output_waits(&mut self, key: ConnKey) {
        let Some(slot) = self.live(key) else { return };
        if slot.send.is_some() && !slot.backlog {
            slot.backlog = true;
            self.backlogged += 1;
        }
    }

    fn watch_writable(&mut self, _: ConnKey, _: &mut Stream, _: bool) -> io::Result<()> {
        // The send's completion says when it is over.
        Ok(())
    }

    fn retire(
        &mut self,
        key: ConnKey,
        stream: Stream,
        out: Option<Box<Outbox>>,
    ) -> Option<Box<Outbox>> {
        let Some(slot) = self.live(key) else { return out };
        slot.live = false;
        let backlog = std::mem::take(&mut slot.backlog);
        let receiving = slot.recv != Recv::Idle;
        let polling = std::mem::take(&mut slot.polling_writable);
        let sending = slot.send.take();
        if backlog {
            self.backlogged -= 1;
        }
        if receiving {
            self.cancel(user_data(Op::Recv, key.slot, key.generation));
        }
        if polling {
            self.cancel(user_data(Op::Writable, key.slot, key.generation));
        }
        // Closing our descriptor leaves the kernel's references to the socket: it closes
        // once the cancelled requests complete.
        drop(stream);
        let Some(mut sent) = sending else { return out };
        let data = user_data(Op::Send, key.slot, key.generation);
        self.cancel(data);
        sent.orphan = out;
        self.orphans.push((data, sent));
        None
    }

    fn pause_reading(&mut self, key: ConnKey) {
        let Some(slot) = self.live(key) else { return };
        slot.paused = true;
        if slot.recv == Recv::Armed {
            slot.recv = Recv::Cancelling;
            self.cancel(user_data(Op::Recv, key.slot, key.generation));
        }
    }

    fn resume_reading(&mut self, key: ConnKey) {
        let Some(slot) = self.live(key) else { return };
        slot.paused = false;
        // Cancelling: the multishot's last completion arms it again.
        if slot.recv == Recv::Idle {
            self.arm_recv(key);
        }
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // Cancel everything in flight and give the kernel a moment to finish, so that no
        // request reads a send's memory after it is freed; then take the buffer ring from the
        // kernel before its memory goes.
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(user_data(
            Op::Cancel,
            0,
            0,
        ));
        // SAFETY: a cancellation points at no memory.
        if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
            let _ = self.enter(1, Some(Duration::from_millis(100)));
        }
        self.buffers.unregister(&self.ring);
    }
}

/// `struct io_uring_getevents_arg` (IORING_ENTER_EXT_ARG).
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// `struct io_uring_rsrc_update` (IORING_REGISTER_RING_FDS).
#[repr(C)]
#[allow(non_camel_case_types, reason = "the kernel's struct")]
struct libc_rsrc_update {
    offset: u32,
    resv: u32,
    data: u64,
}

const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
const IORING_REGISTER_RING_FDS: libc::c_uint = 20;

#[cfg(test)]
mod tests;
