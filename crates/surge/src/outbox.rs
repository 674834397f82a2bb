//! A connection's queued output: frames built in pooled buffers, and broadcast and published
//! frames shared by reference. Written with one `write`/`writev` per connection per loop turn.
//!
//! A frame that goes to many connections is encoded once, by [`SharedFrame::encode_into`]
//! (the one place such a frame is made: an extension that compresses shared frames hooks in
//! there), into a buffer of the loop's [`FramePool`] when a loop makes it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use surge_proto::message::Message;

use crate::buffer_pool::BufferPool;
use crate::transport::Transport;

/// Slices handed to one `writev` (or one submitted send).
pub(crate) const MAX_IOV: usize = 64;

/// Shared frames at most this long are copied into the connection's own buffer rather than
/// queued by reference: copying a few dozen bytes costs less than a reference (a count to
/// move and a slice more for `writev`), and a run of small frames then leaves one slice, so
/// however many arrive in a turn the flush stays one write.
const COPY_MAX: usize = 256;

/// Frames a [`FramePool`] keeps for reuse.
const POOLED_FRAMES: usize = 1024;

/// Pooled frames that grew past this are dropped rather than kept.
const MAX_POOLED_FRAME: usize = 64 * 1024;

/// Pooled frames looked at for a free one before a new one is made.
const FRAME_PROBES: usize = 4;

/// A server frame encoded once and shared by every connection it goes to.
#[derive(Debug, Clone)]
pub(crate) struct SharedFrame(Arc<Vec<u8>>);

impl SharedFrame {
    /// Encodes `msg` as one unmasked frame, in a buffer of its own (off the loops: a handle's
    /// broadcast or publish).
    pub(crate) fn encode(msg: Message<'_>) -> Self {
        let mut buf = Vec::with_capacity(surge_proto::frame::MAX_HEADER_LEN + msg.len());
        Self::encode_into(&mut buf, msg);
        SharedFrame(Arc::new(buf))
    }

    /// Writes the frame of `msg` that every receiver shares into the empty `buf`: the one
    /// function that makes shared frames.
    pub(crate) fn encode_into(buf: &mut Vec<u8>, msg: Message<'_>) {
        surge_proto::frame::encode_message(buf, msg);
    }

    /// The encoded frame.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A frame already encoded (a compressed broadcast's).
    pub(crate) fn from_frame(frame: &[u8]) -> Self {
        SharedFrame(Arc::new(frame.to_vec()))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The message this frame carries (for handing a refused broadcast back).
    pub(crate) fn message(&self) -> Message<'_> {
        let payload = self.0.get(self.header_len()..).unwrap_or_default();
        match std::str::from_utf8(payload) {
            Ok(text) if self.is_text() => Message::Text(text),
            _ => Message::Binary(payload),
        }
    }

    /// Whether the frame is a text message's.
    pub(crate) fn is_text(&self) -> bool {
        self.0.first().is_some_and(|b| b & 0x0F == 0x1)
    }

    /// The length of the message this frame carries.
    pub(crate) fn payload_len(&self) -> usize {
        self.len().saturating_sub(self.header_len())
    }

    fn header_len(&self) -> usize {
        match self.0.get(1).map(|b| b & 0x7F) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        }
    }
}

/// Shared frames of one loop, reused once every connection they went to has written them:
/// a steady stream of publishes allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct FramePool {
    frames: VecDeque<Arc<Vec<u8>>>,
}

impl FramePool {
    /// Encodes `msg` into a free pooled frame, or a new one when the first few are still in
    /// use.
    pub(crate) fn encode(&mut self, msg: Message<'_>) -> SharedFrame {
        for _ in 0..FRAME_PROBES.min(self.frames.len()) {
            let Some(mut frame) = self.frames.pop_front() else { break };
            if let Some(buf) = Arc::get_mut(&mut frame) {
                buf.clear();
                SharedFrame::encode_into(buf, msg);
                if buf.capacity() <= MAX_POOLED_FRAME {
                    self.frames.push_back(Arc::clone(&frame));
                }
                return SharedFrame(frame);
            }
            self.frames.push_back(frame);
        }
        let frame = SharedFrame::encode(msg);
        if self.frames.len() < POOLED_FRAMES && frame.0.capacity() <= MAX_POOLED_FRAME {
            self.frames.push_back(Arc::clone(&frame.0));
        }
        frame
    }
}

/// One piece of queued output.
#[derive(Debug)]
enum Segment {
    /// Frames encoded for this connection, in a pooled buffer.
    Owned(Vec<u8>),
    /// A frame shared with other connections.
    Shared(SharedFrame),
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Owned(buf) => buf,
            Segment::Shared(frame) => &frame.0,
        }
    }
}

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything queued went to the socket.
    All,
    /// The socket took less than offered: wait for WRITABLE.
    Partial,
}

/// Write queues not in use, kept for their deques' capacity.
#[derive(Debug, Default)]
pub(crate) struct Outboxes {
    #[allow(
        clippy::vec_box,
        reason = "connections hold their queue boxed (8 bytes when idle); the boxes are pooled"
    )]
    idle: Vec<Box<Outbox>>,
}

impl Outboxes {
    /// An empty write queue.
    pub(crate) fn take(&mut self) -> Box<Outbox> {
        self.idle.pop().unwrap_or_default()
    }

    /// Takes back a write queue, returning its segments' buffers to `pool`.
    pub(crate) fn give(&mut self, mut outbox: Box<Outbox>, pool: &mut BufferPool) {
        outbox.release(pool);
        if self.idle.len() < pool.holder_limit() {
            self.idle.push(outbox);
        }
    }
}

/// Queued output of one connection, taken from [`Outboxes`] on first use and returned empty.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    segments: VecDeque<Segment>,
    /// Bytes of the front segment already written.
    head: usize,
    /// Bytes queued and not yet written.
    len: usize,
    /// Front segments lent to a send in flight (a completion backend's): they are not
    /// appended to, and not released, until [`sent`](Self::sent) says how much went.
    lent: usize,
}

impl Outbox {
    /// Bytes queued and not yet written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Lets `encode` append to the tail buffer (a pooled one, started when the tail is shared
    /// or there is none), counting what it appended.
    pub(crate) fn append<R>(
        &mut self,
        pool: &mut BufferPool,
        encode: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> R {
        if self.segments.len() == self.lent
            || !matches!(self.segments.back(), Some(Segment::Owned(_)))
        {
            self.segments.push_back(Segment::Owned(pool.take()));
        }
        let Some(Segment::Owned(buf)) = self.segments.back_mut() else {
            unreachable!("an owned tail was just ensured")
        };
        let before = buf.len();
        let result = encode(buf);
        self.len += buf.len() - before;
        result
    }

    /// Queues a shared frame: by reference, or, when it is small, as a copy in the tail
    /// buffer (see [`COPY_MAX`]).
    pub(crate) fn push_shared(&mut self, pool: &mut BufferPool, frame: &SharedFrame) {
        if frame.len() <= COPY_MAX {
            return self.append(pool, |buf| buf.extend_from_slice(frame.bytes()));
        }
        self.len += frame.len();
        self.segments.push_back(Segment::Shared(frame.clone()));
    }

    /// Writes queued bytes until all are written or the socket takes less than offered.
    /// Written segments are released as they finish.
    pub(crate) fn write_to(
        &mut self,
        stream: &mut impl Transport,
        pool: &mut BufferPool,
    ) -> io::Result<Flushed> {
        while self.len > 0 {
            let result = match self.segments.len() {
                // The common case, without filling a slice array for one slice.
                1 => {
                    let bufs = [IoSlice::new(&self.segments[0].bytes()[self.head..])];
                    stream.write_vectored(&bufs, pool)
                }
                _ => {
                    let mut slices = [IoSlice::new(&[]); MAX_IOV];
                    let mut count = 0;
                    for (slot, segment) in slices.iter_mut().zip(&self.segments) {
                        let bytes = segment.bytes();
                        *slot = IoSlice::new(if count == 0 { &bytes[self.head..] } else { bytes });
                        count += 1;
                    }
                    stream.write_vectored(&slices[..count], pool)
                }
            };
            let offered = self.offered();
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.consume(written, pool);
                    if written < offered {
                        return Ok(Flushed::Partial);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Partial),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flushed::All)
    }

    /// Lends the queued bytes from the front (at most [`MAX_IOV`] slices) to a send that
    /// completes later, handing each slice to `lend`; returns how many bytes were lent.
    /// The segments stay put, unchanged, until [`sent`](Self::sent).
    pub(crate) fn lend(&mut self, mut lend: impl FnMut(&[u8])) -> usize {
        debug_assert_eq!(self.lent, 0, "one send in flight at a time");
        let mut bytes = 0;
        for (i, segment) in self.segments.iter().take(MAX_IOV).enumerate() {
            let slice = if i == 0 { &segment.bytes()[self.head..] } else { segment.bytes() };
            lend(slice);
            bytes += slice.len();
            self.lent = i + 1;
        }
        bytes
    }

    /// Whether bytes wait behind the send in flight (queued after it was lent, or past the
    /// slices one send takes), or, with none in flight, whether any are queued at all.
    pub(crate) fn waits_behind_send(&self) -> bool {
        self.segments.len() > self.lent
    }

    /// The lent send is over, `written` bytes of it taken: those are released, the rest is
    /// queued as before.
    pub(crate) fn sent(&mut self, written: usize, pool: &mut BufferPool) {
        self.lent = 0;
        self.consume(written, pool);
    }

    /// Bytes one write call offers: the first `MAX_IOV` segments less what is written.
    fn offered(&self) -> usize {
        self.segments.iter().take(MAX_IOV).map(|s| s.bytes().len()).sum::<usize>() - self.head
    }

    /// Drops `written` bytes from the front, releasing finished segments.
    fn consume(&mut self, mut written: usize, pool: &mut BufferPool) {
        self.len -= written;
        while written > 0 {
            let Some(front) = self.segments.front() else { break };
            let left = front.bytes().len() - self.head;
            if written < left {
                self.head += written;
                return;
            }
            written -= left;
            self.head = 0;
            if let Some(Segment::Owned(buf)) = self.segments.pop_front() {
                pool.give(buf);
            }
        }
    }

    /// Returns every segment's buffer to the pool and empties the queue.
    fn release(&mut self, pool: &mut BufferPool) {
        for segment in self.segments.drain(..) {
            if let Segment::Owned(buf) = segment {
                pool.give(buf);
            }
        }
        self.head = 0;
        self.len = 0;
        self.lent = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `cap` bytes per call and records what it got.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Transport for Trickle {
        fn read(&mut self, _: &mut [u8], _: &mut BufferPool) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn write_vectored(
            &mut self,
            bufs: &[IoSlice<'_>],
            _: &mut BufferPool,
        ) -> io::Result<usize> {
            self.calls += 1;
            if self.cap == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.cap - n);
                self.got.extend_from_slice(&buf[..take]);
                n += take;
            }
            Ok(n)
        }
        fn shutdown_write(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
            Err(io::ErrorKind::NotConnected.into())
        }
    }

    #[test]
    fn owned_and_shared_segments_go_out_in_order_across_partial_writes() {
        let mut pool = BufferPool::new(1 << 20);
        let mut out = Outbox::default();
        out.append(&mut pool, |buf| buf.extend_from_slice(b"abc"));
        out.push_shared(&mut pool, &SharedFrame::encode(Message::Text("hi")));
        out.append(&mut pool, |buf| buf.extend_from_slice(b"def"));
        out.append(&mut pool, |buf| buf.extend_from_slice(b"g"));
        assert_eq!(out.len(), 3 + 4 + 4);

        let mut socket = Trickle { got: Vec::new(), cap: 5, calls: 0 };
        assert_eq!(out.write_to(&mut socket, &mut pool).unwrap(), Flushed::Partial);
        assert_eq!(out.len(), 6);
        socket.cap = 100;
        assert_eq!(out.write_to(&mut socket, &mut pool).unwrap(), Flushed::All);
        assert_eq!(socket.got, b"abc\x81\x02hidefg");
        assert_eq!(out.len(), 0);
        assert_eq!(socket.calls, 2, "one call per flush when the socket keeps up");
    }

    #[test]
    fn a_blocked_socket_keeps_everything() {
        let mut pool = BufferPool::new(1 << 20);
        let mut out = Outbox::default();
        out.append(&mut pool, |buf| buf.extend_from_slice(b"abc"));
        let mut socket = Trickle { got: Vec::new(), cap: 0, calls: 0 };
        assert_eq!(out.write_to(&mut socket, &mut pool).unwrap(), Flushed::Partial);
        assert_eq!(out.len(), 3);
        let mut outboxes = Outboxes::default();
        outboxes.give(Box::new(out), &mut pool);
        assert_eq!(outboxes.take().len(), 0, "a queue comes back empty");
    }

    #[test]
    fn more_segments_than_one_writev_takes() {
        let mut pool = BufferPool::new(1 << 20);
        let mut out = Outbox::default();
        let frame = SharedFrame::encode(Message::Binary(&[7; COPY_MAX]));
        for _ in 0..(MAX_IOV * 2 + 3) {
            out.push_shared(&mut pool, &frame);
        }
        let mut socket = Trickle { got: Vec::new(), cap: usize::MAX, calls: 0 };
        assert_eq!(out.write_to(&mut socket, &mut pool).unwrap(), Flushed::All);
        assert_eq!(socket.got.len(), frame.len() * (MAX_IOV * 2 + 3));
        assert_eq!(socket.calls, 3);
    }

    #[test]
    fn lent_segments_stay_put_until_the_send_completes() {
        let mut pool = BufferPool::new(1 << 20);
        let mut out = Outbox::default();
        out.append(&mut pool, |buf| buf.extend_from_slice(b"abc"));
        let long = SharedFrame::encode(Message::Binary(&[5; COPY_MAX + 1]));
        out.push_shared(&mut pool, &long);
        let mut lent = Vec::new();
        assert!(out.waits_behind_send());
        assert_eq!(out.lend(|slice| lent.push(slice.as_ptr())), 3 + long.len());
        assert!(!out.waits_behind_send(), "all of it is in the send");
        // Appending while lent starts a new buffer (a small shared frame too): the lent ones
        // do not move or grow.
        out.append(&mut pool, |buf| buf.extend_from_slice(b"def"));
        out.push_shared(&mut pool, &SharedFrame::encode(Message::Text("hi")));
        assert_eq!(out.segments.len(), 3);
        assert!(out.waits_behind_send());
        assert_eq!(out.segments[0].bytes().as_ptr(), lent[0]);
        assert_eq!(out.segments[0].bytes(), b"abc");
        out.sent(4, &mut pool);
        assert_eq!(out.len(), long.len() - 1 + 3 + 4);
        // The short send: the rest goes next, from where it stopped.
        let mut again = Vec::new();
        assert_eq!(out.lend(|slice| again.extend_from_slice(slice)), long.len() - 1 + 7);
        assert_eq!(&again[long.len() - 1..], b"def\x81\x02hi");
        out.sent(again.len(), &mut pool);
        assert_eq!(out.len(), 0);
    }

    #[test]
    fn small_shared_frames_are_copied_into_one_slice() {
        let mut pool = BufferPool::new(1 << 20);
        let mut out = Outbox::default();
        let frame = SharedFrame::encode(Message::Text("twenty bytes of text"));
        for _ in 0..(MAX_IOV * 3) {
            out.push_shared(&mut pool, &frame);
        }
        assert_eq!(Arc::strong_count(&frame.0), 1, "no reference kept");
        let mut socket = Trickle { got: Vec::new(), cap: usize::MAX, calls: 0 };
        assert_eq!(out.write_to(&mut socket, &mut pool).unwrap(), Flushed::All);
        assert_eq!(socket.got.len(), 22 * MAX_IOV * 3);
        assert_eq!(socket.calls, 1, "one write however many frames");
    }

    #[test]
    fn pooled_frames_are_reused_once_released() {
        let mut frames = FramePool::default();
        let first = frames.encode(Message::Text("a"));
        let held = frames.encode(Message::Text("b"));
        let first_ptr = Arc::as_ptr(&first.0);
        drop(first);
        let again = frames.encode(Message::Binary(&[1, 2]));
        assert_eq!(Arc::as_ptr(&again.0), first_ptr, "the released frame is reused");
        assert_eq!(again.message(), Message::Binary(&[1, 2]));
        assert_eq!(held.message(), Message::Text("b"), "a frame in use is left alone");
    }

    #[test]
    fn shared_frames_give_their_message_back() {
        for msg in [Message::Text("héllo"), Message::Binary(&[1, 2]), Message::Text("")] {
            assert_eq!(SharedFrame::encode(msg).message(), msg);
        }
        let long = "x".repeat(70_000);
        assert_eq!(SharedFrame::encode(Message::Text(&long)).message(), Message::Text(&long));
    }
}
