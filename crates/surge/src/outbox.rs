//! A connection's queued output: frames built in pooled buffers, and broadcast frames shared
//! by reference. Written with one `write`/`writev` per connection per loop turn.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use surge_proto::message::Message;

use crate::buffer_pool::BufferPool;
use crate::transport::Transport;

/// Slices handed to one `writev` (or one submitted send).
pub(crate) const MAX_IOV: usize = 64;

/// A server frame encoded once and shared by every connection it goes to.
#[derive(Debug, Clone)]
pub(crate) struct SharedFrame(Arc<[u8]>);

impl SharedFrame {
    /// Encodes `msg` as one unmasked frame.
    pub(crate) fn encode(msg: Message<'_>) -> Self {
        let mut buf = Vec::with_capacity(surge_proto::frame::MAX_HEADER_LEN + msg.len());
        surge_proto::frame::encode_message(&mut buf, msg);
        SharedFrame(buf.into())
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The message this frame carries (for handing a refused broadcast back).
    pub(crate) fn message(&self) -> Message<'_> {
        let bytes = &self.0;
        let header_len = match bytes.get(1).map(|b| b & 0x7F) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        let payload = bytes.get(header_len..).unwrap_or_default();
        let is_text = bytes.first().is_some_and(|b| b & 0x0F == 0x1);
        match std::str::from_utf8(payload) {
            Ok(text) if is_text => Message::Text(text),
            _ => Message::Binary(payload),
        }
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

    /// Queues a shared frame by reference.
    pub(crate) fn push_shared(&mut self, frame: SharedFrame) {
        self.len += frame.len();
        self.segments.push_back(Segment::Shared(frame));
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
                1 => stream.write_vectored(&[IoSlice::new(&self.segments[0].bytes()[self.head..])]),
                _ => {
                    let mut slices = [IoSlice::new(&[]); MAX_IOV];
                    let mut count = 0;
                    for (slot, segment) in slices.iter_mut().zip(&self.segments) {
                        let bytes = segment.bytes();
                        *slot = IoSlice::new(if count == 0 { &bytes[self.head..] } else { bytes });
                        count += 1;
                    }
                    stream.write_vectored(&slices[..count])
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
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
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
        out.push_shared(SharedFrame::encode(Message::Text("hi")));
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
        let frame = SharedFrame::encode(Message::Binary(&[7; 3]));
        for _ in 0..(MAX_IOV * 2 + 3) {
            out.push_shared(frame.clone());
        }
        let mut socket = Trickle { got: Vec::new(), cap: usize::MAX, calls: 0 };
        assert_eq!(out.write_to(&mut socket, &mut pool).unwrap(), Flushed::All);
        assert_eq!(socket.got.len(), 5 * (MAX_IOV * 2 + 3));
        assert_eq!(socket.calls, 3);
    }

    #[test]
    fn lent_segments_stay_put_until_the_send_completes() {
        let mut pool = BufferPool::new(1 << 20);
        let mut out = Outbox::default();
        out.append(&mut pool, |buf| buf.extend_from_slice(b"abc"));
        out.push_shared(SharedFrame::encode(Message::Text("hi")));
        let mut lent = Vec::new();
        assert_eq!(out.lend(|slice| lent.push((slice.as_ptr(), slice.to_vec()))), 7);
        // Appending while lent starts a new buffer: the lent ones do not move or grow.
        out.append(&mut pool, |buf| buf.extend_from_slice(b"def"));
        assert_eq!(out.segments.len(), 3);
        assert_eq!(out.segments[0].bytes().as_ptr(), lent[0].0);
        out.sent(4, &mut pool);
        assert_eq!(out.len(), 6);
        // The short send: the rest goes next, from where it stopped.
        let mut again = Vec::new();
        assert_eq!(out.lend(|slice| again.extend_from_slice(slice)), 6);
        assert_eq!(again, b"\x02hidef");
        // Appending to an unlent tail reuses it.
        out.sent(6, &mut pool);
        assert_eq!(out.len(), 0);
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
