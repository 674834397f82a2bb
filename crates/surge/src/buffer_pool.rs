//! Per-loop pools of byte buffers and of the holders of a connection's input.
//!
//! A connection borrows a buffer only while it has something in flight (a partial message, a
//! partial handshake, unflushed output) and gives it back the moment it is empty, so an idle
//! connection holds none. Buffers keep their capacity in the pool; the pool keeps at most a
//! byte budget of idle capacity and frees what is past it, and frees any single buffer that
//! grew larger than [`MAX_POOLED_CAPACITY`] (one 16 MiB message must not pin 16 MiB).

/// The capacity a fresh buffer starts with.
pub(crate) const INITIAL_CAPACITY: usize = 16 * 1024;

/// Buffers that grew past this are freed, not pooled.
pub(crate) const MAX_POOLED_CAPACITY: usize = 1024 * 1024;

/// Input a connection keeps between reads, taken from the pool while it has any.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Received bytes not yet processed: a partial handshake head, or input held back at the
    /// backpressure limit. Empty when there are none.
    pub(crate) stash: Vec<u8>,
    /// The first part of a message that arrived in pieces. No capacity when there is none.
    pub(crate) assembly: Vec<u8>,
}

/// Byte buffers and input holders, owned by one event loop.
#[derive(Debug)]
pub(crate) struct BufferPool {
    buffers: Vec<Vec<u8>>,
    #[allow(
        clippy::vec_box,
        reason = "connections hold their input boxed (8 bytes when idle); the boxes are pooled"
    )]
    helds: Vec<Box<Held>>,
    /// Capacity held by `buffers`.
    pooled_bytes: usize,
    /// The most idle capacity `buffers` may hold.
    budget: usize,
}

impl BufferPool {
    pub(crate) fn new(budget: usize) -> Self {
        BufferPool { buffers: Vec::new(), helds: Vec::new(), pooled_bytes: 0, budget }
    }

    /// An empty buffer with some capacity: a pooled one, or a fresh one when the pool is dry.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        match self.buffers.pop() {
            Some(buf) => {
                self.pooled_bytes -= buf.capacity();
                buf
            }
            None => Vec::with_capacity(INITIAL_CAPACITY),
        }
    }

    /// Takes `buf` back, emptied; frees it instead when it is too large or the pool is full,
    /// or smaller than the pool's own (whoever took it next would grow it again, allocating
    /// on the path the pool is there to keep free of allocation).
    pub(crate) fn give(&mut self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if !(INITIAL_CAPACITY..=MAX_POOLED_CAPACITY).contains(&capacity)
            || self.pooled_bytes + capacity > self.budget
        {
            return;
        }
        buf.clear();
        self.pooled_bytes += capacity;
        self.buffers.push(buf);
    }

    /// How many small holders (input holders, write queues) to keep: as many as there were
    /// connections using one at once, bounded by the byte budget's order of magnitude.
    pub(crate) fn holder_limit(&self) -> usize {
        self.budget / INITIAL_CAPACITY
    }

    /// An empty holder for a connection's input.
    pub(crate) fn take_held(&mut self) -> Box<Held> {
        self.helds.pop().unwrap_or_default()
    }

    /// Takes back a holder, returning its buffers to the pool.
    pub(crate) fn give_held(&mut self, mut held: Box<Held>) {
        self.give(std::mem::take(&mut held.stash));
        self.give(std::mem::take(&mut held.assembly));
        if self.helds.len() < self.holder_limit() {
            self.helds.push(held);
        }
    }

    /// Idle capacity held, in bytes.
    #[cfg(test)]
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.pooled_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_with_their_capacity() {
        let mut pool = BufferPool::new(1 << 20);
        let mut buf = pool.take();
        buf.extend_from_slice(b"hello");
        let ptr = buf.as_ptr();
        pool.give(buf);
        assert_eq!(pool.pooled_bytes(), INITIAL_CAPACITY);
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation is reused");
        assert_eq!(pool.pooled_bytes(), 0);
    }

    #[test]
    fn the_budget_and_the_size_cap_hold() {
        let mut pool = BufferPool::new(2 * INITIAL_CAPACITY);
        for _ in 0..3 {
            pool.give(Vec::with_capacity(INITIAL_CAPACITY));
        }
        assert_eq!(pool.pooled_bytes(), 2 * INITIAL_CAPACITY);
        let mut big = BufferPool::new(usize::MAX);
        big.give(Vec::with_capacity(MAX_POOLED_CAPACITY + 1));
        assert_eq!(big.pooled_bytes(), 0);
        big.give(Vec::with_capacity(64));
        assert_eq!(big.pooled_bytes(), 0, "a small buffer would be regrown by its next taker");
    }
}
