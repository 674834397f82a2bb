//! The permessage-deflate backend as a measured choice: zlib-rs (what `surge-proto` ships,
//! through `surge_proto::deflate`) against C zlib (the system's libz through libz-sys, called
//! the same way: raw deflate, sync flush, tail stripped; inflate with the tail appended), in
//! the same run.
//!
//! First a table of state sizes: the heap bytes one stream holds, counted by a global
//! allocator that both libraries allocate through (zlib-rs uses Rust's allocator; C zlib is
//! given `zalloc`/`zfree` that call it), for window bits 9, 12, 15 and memLevel 1, 4, 8;
//! deflate after it is made, inflate after its first message (C zlib allocates its window on
//! first use). Then criterion: ns per message and MB/s of input for compressing and for
//! inflating a 137 B JSON-like text message and 16 KiB of text, window 15, memLevel 8,
//! level 6, no context takeover (each message from a fresh window: the default policy), and
//! for 137 B the same by window, memLevel and with context takeover. The figures and the
//! choice they led to are in the docs of `surge_proto::deflate`.
//!
//! ```text
//! cargo bench -p surge-benches --bench deflate
//! cargo bench -p surge-benches --bench deflate -- --state   # the table only
//! cargo bench -p surge-benches --bench deflate -- variants  # window, memLevel, takeover
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_int, c_uint, c_void};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput};
use surge_proto::deflate::codec::{Compressor, CompressorConfig, Decompressor, TAIL};

// ------------------------------------------------------------------ counting allocator

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, keeping the number of bytes live.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; counting touches only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

// ------------------------------------------------------------------ C zlib, the same calls

mod c_zlib {
    use super::*;
    use libz_sys as z;

    /// Bytes in front of each block: its total size, for `zfree`.
    const HEADER: usize = 16;

    /// `zalloc` through Rust's global allocator, so that the counting allocator sees it.
    unsafe extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
        let Some(total) =
            (items as usize).checked_mul(size as usize).and_then(|n| n.checked_add(HEADER))
        else {
            return std::ptr::null_mut();
        };
        let Ok(layout) = Layout::from_size_align(total, HEADER) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `layout` has a non-zero size (at least HEADER).
        let base = unsafe { std::alloc::alloc(layout) };
        if base.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: `base` is valid for `total >= HEADER` bytes and aligned to 16, so for a usize.
        unsafe { base.cast::<usize>().write(total) };
        // SAFETY: HEADER <= total: still inside the block.
        unsafe { base.add(HEADER).cast() }
    }

    /// `zfree` for blocks from [`zalloc`].
    unsafe extern "C" fn zfree(_opaque: *mut c_void, ptr: *mut c_void) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: `ptr` came from `zalloc`, HEADER bytes after the start of its block, where
        // the block's size is stored; the layout is the one it was allocated with.
        unsafe {
            let base = ptr.cast::<u8>().sub(HEADER);
            let total = base.cast::<usize>().read();
            std::alloc::dealloc(base, Layout::from_size_align_unchecked(total, HEADER));
        }
    }

    fn new_stream() -> Box<z::z_stream> {
        Box::new(z::z_stream {
            next_in: std::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: std::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        })
    }

    /// A raw deflate stream; boxed because zlib's state points back at it.
    pub struct Deflate(Box<z::z_stream>);

    impl Deflate {
        pub fn new(window_bits: u8, mem_level: u8, level: u8) -> Self {
            let mut strm = new_stream();
            // SAFETY: `strm` is a valid, boxed (never moved) z_stream with our allocator; the
            // version string and struct size are libz-sys's own.
            let rc = unsafe {
                z::deflateInit2_(
                    &mut *strm,
                    c_int::from(level),
                    z::Z_DEFLATED,
                    -c_int::from(window_bits),
                    c_int::from(mem_level),
                    z::Z_DEFAULT_STRATEGY,
                    z::zlibVersion(),
                    std::mem::size_of::<z::z_stream>() as c_int,
                )
            };
            assert_eq!(rc, z::Z_OK);
            Self(strm)
        }

        /// Appends the permessage-deflate payload of `message` to `out`, then resets (no
        /// context takeover) unless `keep`.
        pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
            self.compress_keep(message, out, false);
        }

        pub fn compress_keep(&mut self, message: &[u8], out: &mut Vec<u8>, keep: bool) {
            let start = out.len();
            out.resize(start + message.len() + message.len() / 1024 + 64, 0);
            let strm = &mut *self.0;
            strm.next_in = message.as_ptr().cast_mut();
            strm.avail_in = message.len() as c_uint;
            let mut done = start;
            loop {
                strm.next_out = out[done..].as_mut_ptr();
                strm.avail_out = (out.len() - done) as c_uint;
                // SAFETY: next_in/avail_in describe `message` and next_out/avail_out the
                // spare part of `out`, both alive for the call; zlib only reads the input.
                let rc = unsafe { z::deflate(strm, z::Z_SYNC_FLUSH) };
                assert!(rc == z::Z_OK || rc == z::Z_BUF_ERROR);
                done = out.len() - strm.avail_out as usize;
                if strm.avail_out != 0 {
                    break;
                }
                out.resize(out.len() * 2, 0);
            }
            out.truncate(done);
            assert!(out.ends_with(&TAIL));
            out.truncate(done - TAIL.len());
            if !keep {
                // SAFETY: a stream made by deflateInit2_.
                unsafe { z::deflateReset(strm) };
            }
        }
    }

    impl Drop for Deflate {
        fn drop(&mut self) {
            // SAFETY: a stream made by deflateInit2_, ended once.
            unsafe { z::deflateEnd(&mut *self.0) };
        }
    }

    /// A raw inflate stream.
    pub struct Inflate(Box<z::z_stream>);

    impl Inflate {
        pub fn new(window_bits: u8) -> Self {
            let mut strm = new_stream();
            // SAFETY: as in `Deflate::new`.
            let rc = unsafe {
                z::inflateInit2_(
                    &mut *strm,
                    -c_int::from(window_bits),
                    z::zlibVersion(),
                    std::mem::size_of::<z::z_stream>() as c_int,
                )
            };
            assert_eq!(rc, z::Z_OK);
            Self(strm)
        }

        /// Resets, then appends the inflated `payload` (tail appended) to `out`.
        pub fn decompress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
            let strm = &mut *self.0;
            // SAFETY: a stream made by inflateInit2_.
            unsafe { z::inflateReset(strm) };
            for input in [payload, &TAIL[..]] {
                strm.next_in = input.as_ptr().cast_mut();
                strm.avail_in = input.len() as c_uint;
                loop {
                    let len = out.len();
                    out.resize(len + 16 * 1024, 0);
                    strm.next_out = out[len..].as_mut_ptr();
                    strm.avail_out = (16 * 1024) as c_uint;
                    // SAFETY: as in `Deflate::compress`.
                    let rc = unsafe { z::inflate(strm, z::Z_SYNC_FLUSH) };
                    assert!(rc == z::Z_OK || rc == z::Z_BUF_ERROR, "inflate: {rc}");
                    let produced = 16 * 1024 - strm.avail_out as usize;
                    out.truncate(len + produced);
                    if strm.avail_out != 0 {
                        break;
                    }
                }
            }
        }
    }

    impl Drop for Inflate {
        fn drop(&mut self) {
            // SAFETY: a stream made by inflateInit2_, ended once.
            unsafe { z::inflateEnd(&mut *self.0) };
        }
    }

    pub fn version() -> String {
        // SAFETY: zlibVersion returns a static NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(z::zlibVersion()) }.to_string_lossy().into_owned()
    }
}

// ------------------------------------------------------------------ payloads

/// A 137-byte JSON-like text message (a ticker update).
fn json_137() -> Vec<u8> {
    let m = br#"{"type":"trade","symbol":"BTC-USD","price":"43127.55","size":"0.0125","side":"buy","ts":1733043600123,"id":9182736450,"venue":"surge-01"}"#;
    assert_eq!(m.len(), 137);
    m.to_vec()
}

/// 16 KiB of JSON-lines text with varying numbers.
fn text_16k() -> Vec<u8> {
    let mut out = Vec::new();
    let mut x = 0x2545_f491u32;
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
    while out.len() < 16 * 1024 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let line = format!(
            "{{\"user\":\"{}{}\",\"msg\":\"{} {} {}\",\"n\":{}}}\n",
            words[(x % 8) as usize],
            x % 1000,
            words[(x >> 3) as usize % 8],
            words[(x >> 6) as usize % 8],
            words[(x >> 9) as usize % 8],
            x % 100_000
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(16 * 1024);
    out
}

// ------------------------------------------------------------------ state sizes

fn state_table() {
    let message = text_16k();
    println!("permessage-deflate state per stream, heap bytes (C zlib {})", c_zlib::version());
    println!(
        "{:>4} {:>8} | {:>14} {:>14} | {:>14} {:>14}",
        "bits", "memLevel", "zlib-rs defl", "C zlib defl", "zlib-rs infl", "C zlib infl"
    );
    for bits in [9u8, 12, 15] {
        for mem_level in [1u8, 4, 8] {
            let before = live();
            let rs = Compressor::new(CompressorConfig {
                window_bits: bits,
                mem_level,
                level: 6,
                no_context_takeover: true,
            })
            .unwrap();
            let rs_deflate = live() - before;
            let before = live();
            let c = c_zlib::Deflate::new(bits, mem_level, 6);
            let c_deflate = live() - before;

            // Inflate: after one message (C zlib allocates its window on first use).
            let mut wire = Vec::new();
            let mut rs_c = rs;
            rs_c.compress(&message, &mut wire).unwrap();
            let mut out = Vec::with_capacity(message.len() + 16 * 1024);
            let before = live();
            let mut rs_inflate = Decompressor::new(bits).unwrap();
            rs_inflate.decompress(&wire, true, &mut out, usize::MAX).unwrap();
            let rs_inflate_bytes = live() - before;
            out.clear();
            let before = live();
            let mut c_inflate = c_zlib::Inflate::new(bits);
            c_inflate.decompress(&wire, &mut out);
            let c_inflate_bytes = live() - before;
            assert_eq!(out, message);
            println!("{bits:>4} {mem_level:>8} | {rs_deflate:>14} {c_deflate:>14} | {rs_inflate_bytes:>14} {c_inflate_bytes:>14}");
            drop((rs_c, c, rs_inflate, c_inflate));
        }
    }
}

// ------------------------------------------------------------------ speed

fn speed(c: &mut Criterion) {
    for (name, message) in [("137B", json_137()), ("16KiB", text_16k())] {
        let mut wire = Vec::new();
        Compressor::new(CompressorConfig {
            no_context_takeover: true,
            ..CompressorConfig::default()
        })
        .unwrap()
        .compress(&message, &mut wire)
        .unwrap();
        println!(
            "{name}: compressed to {} bytes ({:.2}x)",
            wire.len(),
            message.len() as f64 / wire.len() as f64
        );

        let mut group = c.benchmark_group(format!("deflate-compress/{name}"));
        group.throughput(Throughput::Bytes(message.len() as u64));
        let mut rs = Compressor::new(CompressorConfig {
            no_context_takeover: true,
            ..CompressorConfig::default()
        })
        .unwrap();
        let mut out = Vec::with_capacity(2 * message.len() + 64);
        group.bench_function(BenchmarkId::from_parameter("zlib-rs"), |b| {
            b.iter(|| {
                out.clear();
                rs.compress(black_box(&message), &mut out).unwrap();
                black_box(out.len())
            })
        });
        let mut cz = c_zlib::Deflate::new(15, 8, 6);
        group.bench_function(BenchmarkId::from_parameter("c-zlib"), |b| {
            b.iter(|| {
                out.clear();
                cz.compress(black_box(&message), &mut out);
                black_box(out.len())
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("deflate-inflate/{name}"));
        group.throughput(Throughput::Bytes(message.len() as u64));
        let mut rs = Decompressor::shared();
        let mut out = Vec::with_capacity(message.len() + 32 * 1024);
        group.bench_function(BenchmarkId::from_parameter("zlib-rs"), |b| {
            b.iter(|| {
                out.clear();
                rs.decompress_message(black_box(&wire), &mut out, 1 << 20).unwrap();
                black_box(out.len())
            })
        });
        let mut ci = c_zlib::Inflate::new(15);
        group.bench_function(BenchmarkId::from_parameter("c-zlib"), |b| {
            b.iter(|| {
                out.clear();
                ci.decompress(black_box(&wire), &mut out);
                black_box(out.len())
            })
        });
        group.finish();
    }
}

/// What a 137 B message costs by window, memLevel and with context takeover (no reset):
/// without context takeover every message pays a reset first.
fn variants(c: &mut Criterion) {
    let message = json_137();
    let mut group = c.benchmark_group("deflate-compress-variants/137B");
    group.throughput(Throughput::Bytes(message.len() as u64));
    let mut out = Vec::with_capacity(1024);
    for (bits, mem_level) in [(9u8, 1u8), (9, 8), (15, 1), (15, 8)] {
        for keep in [false, true] {
            let label = if keep { "takeover" } else { "reset" };
            let config = CompressorConfig {
                window_bits: bits,
                mem_level,
                no_context_takeover: !keep,
                ..CompressorConfig::default()
            };
            let mut rs = Compressor::new(config).unwrap();
            let param = format!("w{bits}-m{mem_level}");
            group.bench_function(BenchmarkId::new(format!("zlib-rs-{label}"), &param), |b| {
                b.iter(|| {
                    out.clear();
                    rs.compress(black_box(&message), &mut out).unwrap();
                    black_box(out.len())
                })
            });
            let mut cz = c_zlib::Deflate::new(bits, mem_level, 6);
            group.bench_function(BenchmarkId::new(format!("c-zlib-{label}"), &param), |b| {
                b.iter(|| {
                    out.clear();
                    cz.compress_keep(black_box(&message), &mut out, keep);
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

// In a private module so the `pub fn` that `criterion_group!` generates needs no docs.
mod group {
    criterion::criterion_group! {
        name = variants;
        config = criterion::Criterion::default()
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(3))
            .sample_size(30);
        targets = super::variants
    }
    criterion::criterion_group! {
        name = benches;
        config = criterion::Criterion::default()
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(3))
            .sample_size(30);
        targets = super::speed
    }
}

fn main() {
    state_table();
    if std::env::args().any(|a| a == "--state") {
        return;
    }
    group::benches();
    group::variants();
    Criterion::default().configure_from_args().final_summary();
}
