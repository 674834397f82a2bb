//! The provided buffer ring of one loop: `count` buffers of `size` bytes the kernel picks
//! from for every multishot receive, each handed back to it (`give_back`) as soon as the
//! loop has handled the bytes it carried.
//!
//! Where the kernel has it (6.12, `IOU_PBUF_RING_INC`), buffers are consumed incrementally:
//! a receive takes only what it fills, and the next one goes on in the same buffer (the
//! completion says so with `IORING_CQE_F_BUF_MORE`), so that a 20-byte message does not
//! take a whole buffer, and a few large buffers serve many connections; a buffer goes back
//! once the kernel has moved past it.

use std::alloc::{self, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The ring of buffer descriptors must be page aligned.
const PAGE: usize = 4096;

/// `IOU_PBUF_RING_INC`: buffers consumed incrementally.
const INCREMENTAL: u16 = 2;

/// The buffers and the ring of their descriptors, registered with one io_uring.
pub(super) struct BufRing {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    memory: NonNull<u8>,
    memory_layout: Layout,
    count: u16,
    size: usize,
    /// Our tail: descriptors published to the kernel so far (wrapping).
    tail: u16,
    group: u16,
    /// The kernel still has the ring (unregistering failed): leak it rather than free
    /// memory the kernel may write.
    kernel_holds: bool,
    /// Per buffer, the bytes of it completions have filled so far (incremental mode).
    filled: Box<[u32]>,
    /// The kernel consumes buffers incrementally.
    pub(super) incremental: bool,
}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `size` bytes, touches them (their
    /// memory is resident from the start, not as the kernel first writes each), registers
    /// them as buffer group `group` of `ring` and hands all to the kernel.
    pub(super) fn new(ring: &IoUring, count: u16, size: usize, group: u16) -> io::Result<Self> {
        assert!(count.is_power_of_two() && size > 0);
        let invalid = |_| io::Error::from(io::ErrorKind::InvalidInput);
        let entries_layout =
            Layout::from_size_align(usize::from(count) * size_of::<BufRingEntry>(), PAGE)
                .map_err(invalid)?;
        let memory_size =
            usize::from(count).checked_mul(size).ok_or(io::ErrorKind::InvalidInput)?;
        let memory_layout = Layout::from_size_align(memory_size, 64).map_err(invalid)?;
        // SAFETY: both layouts have a non-zero size (count and size are positive).
        let (entries, memory) =
            unsafe { (alloc::alloc_zeroed(entries_layout), alloc::alloc(memory_layout)) };
        let (Some(entries), Some(memory)) = (NonNull::new(entries), NonNull::new(memory)) else {
            alloc::handle_alloc_error(entries_layout)
        };
        let mut ring_buffers = BufRing {
            entries: entries.cast(),
            entries_layout,
            memory,
            memory_layout,
            count,
            size,
            tail: 0,
            group,
            kernel_holds: false,
            filled: vec![0; usize::from(count)].into_boxed_slice(),
            incremental: false,
        };
        // SAFETY: `memory` is `memory_size` bytes we own.
        unsafe { memory.as_ptr().write_bytes(0, memory_size) };
        // SAFETY: the descriptor ring is page aligned, `count` entries long, and stays
        // allocated until `Drop`, which frees it only once the kernel has let go of it
        // (`unregister`, or the ring's end).
        let register = |flags| unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                group,
                flags,
            )
        };
        // Incremental where the kernel has it, whole buffers where not.
        ring_buffers.incremental = register(INCREMENTAL).is_ok();
        if !ring_buffers.incremental {
            register(0)?;
        }
        ring_buffers.kernel_holds = true;
        for id in 0..count {
            ring_buffers.put(id);
        }
        ring_buffers.publish();
        Ok(ring_buffers)
    }

    /// The `len` bytes a completion just filled in buffer `id` (after what earlier
    /// completions filled of it, in incremental mode).
    pub(super) fn get(&mut self, id: u16, len: usize) -> &mut [u8] {
        let at = self.filled.get(usize::from(id)).map_or(usize::MAX, |&at| at as usize);
        assert!(
            id < self.count && at.checked_add(len).is_some_and(|end| end <= self.size),
            "a completion names bytes of a buffer we gave"
        );
        // SAFETY: bytes `at..at + len` of buffer `id` lie inside `memory` (checked above),
        // the kernel is done writing them (their completion was posted) and writes nothing
        // before `at + len` of this buffer again until it is handed back, which takes
        // `&mut self` and so waits for this borrow to end.
        unsafe {
            let start = self.memory.as_ptr().add(usize::from(id) * self.size + at);
            std::slice::from_raw_parts_mut(start, len)
        }
    }

    /// The `len` bytes of buffer `id` that `get` lent are handled: the buffer goes back to
    /// the kernel, unless it is still filling it (`kernel_keeps`: the completion had
    /// `IORING_CQE_F_BUF_MORE`).
    pub(super) fn give_back(&mut self, id: u16, len: usize, kernel_keeps: bool) {
        let Some(filled) = self.filled.get_mut(usize::from(id)) else { return };
        if kernel_keeps {
            *filled += len as u32;
        } else {
            *filled = 0;
            self.put(id);
            self.publish();
        }
    }

    /// Writes the descriptor of buffer `id` at our tail.
    fn put(&mut self, id: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index` is below `count`, inside the descriptor ring; the kernel reads
        // only descriptors below the published tail, and this one is past it until
        // `publish`.
        let entry = unsafe { &mut *self.entries.as_ptr().add(index) };
        // SAFETY: buffer `id` lies inside `memory`.
        let addr = unsafe { self.memory.as_ptr().add(usize::from(id) * self.size) };
        entry.set_addr(addr as u64);
        entry.set_len(u32::try_from(self.size).unwrap_or(u32::MAX));
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes our tail: the kernel may take every descriptor written before it.
    fn publish(&self) {
        // SAFETY: the tail shares the first descriptor's reserved field (the kernel's
        // layout), which `put` never writes; it is only ever accessed atomically, by us
        // (store) and the kernel (load), and the ring outlives this borrow.
        let tail =
            unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries.as_ptr()) as *mut u16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Takes the ring back from the kernel (before its memory is freed).
    pub(super) fn unregister(&mut self, ring: &IoUring) {
        if self.kernel_holds && ring.submitter().unregister_buf_ring(self.group).is_ok() {
            self.kernel_holds = false;
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.kernel_holds {
            // The ring's owner drops the ring first, which ends the kernel's use; but if
            // it could not be unregistered we cannot be sure: leak.
            return;
        }
        // SAFETY: allocated in `new` with these layouts; the kernel no longer has them.
        unsafe {
            alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            alloc::dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}
