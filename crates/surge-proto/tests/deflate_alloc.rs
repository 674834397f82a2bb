//! No heap allocation per message at steady state: compressing and inflating reuse the
//! backend state and the caller's buffers. A counting global allocator counts allocations
//! made by the test's own thread while it opts in.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use surge_proto::deflate::codec::{Compressor, CompressorConfig, Decompressor};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: allocations during thread teardown must not panic.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

/// The system allocator, counting allocations (not frees) on threads that opted in.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; counting touches only const thread-locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn steady_state_allocates_nothing_per_message() {
    let messages: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            format!("{{\"seq\":{i},\"text\":\"{}\"}}", "hello world ".repeat(1 + i as usize % 40))
                .into_bytes()
        })
        .collect();
    for (no_context_takeover, bits, mem_level) in
        [(true, 15, 8), (false, 15, 8), (false, 12, 5), (true, 9, 1)]
    {
        let config =
            CompressorConfig { window_bits: bits, mem_level, level: 6, no_context_takeover };
        let mut c = Compressor::new(config).unwrap();
        let mut own = Decompressor::new(bits).unwrap();
        let mut shared = Decompressor::shared();
        let (mut wire, mut out, mut out2) = (Vec::new(), Vec::new(), Vec::new());
        let mut round = |c: &mut Compressor, own: &mut Decompressor, shared: &mut Decompressor| {
            for m in &messages {
                wire.clear();
                out.clear();
                c.compress(m, &mut wire).unwrap();
                // Two fragments, as frames arrive.
                let half = wire.len() / 2;
                own.decompress(&wire[..half], false, &mut out, 1 << 20).unwrap();
                own.decompress(&wire[half..], true, &mut out, 1 << 20).unwrap();
                assert_eq!(&out, m);
                if no_context_takeover {
                    out2.clear();
                    shared.decompress_message(&wire, &mut out2, 1 << 20).unwrap();
                    assert_eq!(&out2, m);
                }
            }
        };
        // Warm-up: buffers reach their size, the inflate windows are allocated.
        round(&mut c, &mut own, &mut shared);
        let n = allocations(|| {
            for _ in 0..5 {
                round(&mut c, &mut own, &mut shared);
            }
        });
        assert_eq!(n, 0, "{config:?}: {n} allocations in {} messages", 5 * messages.len());
    }
}
