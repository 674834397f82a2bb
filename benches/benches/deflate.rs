//! The permessage-deflate backend as a measured choice: C zlib (what `surge-proto` ships,
//! through `surge_proto::deflate`: Cloudflare's fork on x86-64) against zlib-rs (the
//! Rust port of zlib-ng, called the same way: raw deflate, sync flush, tail stripped;
//! inflate with the tail appended), in the same run.
//!
//! First a table of state sizes: the heap bytes one stream holds, counted by a global
//! allocator that both libraries allocate through (zlib-rs uses Rust's allocator; surge-proto
//! gives C zlib `zalloc`/`zfree` that call it), for window bits 9, 12, 15 and memLevel 1, 4, 8;
//! deflate after it is made, inflate after its first message (C zlib allocates its window on
//! first use). Then criterion: ns per message and MB/s of input for compressing and for
//! inflating a 137 B JSON-like text message and 16 KiB of text, window 15, memLevel 8,
//! level 6, no context takeover (each message from a fresh window: the default policy), and
//! for 137 B the same by window, memLevel and with context takeover. The figures and the
//! choice they led to are in the docs of `surge_proto::deflate`.
//!
//! Last, `deflate-policy`: the codec alone as the engine calls it under each memory policy
//! of `surge echo --deflate`, the budget of the end-to-end figures (the engine's CPU per
//! message may exceed the cleartext one by at most 1.1x these): the same payloads as
//! `surge-loadgen --json-text` sends (its generator: consecutive messages cut from JSON
//! records, not one message again and again, which a branch predictor learns), the
//! parameters the engine agrees with the load generator's default offer
//! (`permessage-deflate; client_max_window_bits`), and the same calls: `shared` compresses
//! with the loop's `SharedCodecs` (a fresh window per message, the compressor it picks for
//! the message's size) and inflates the client's messages (compressed without context
//! takeover, as the client must) with its shared decompressor; `stream-12-4` compresses
//! with a connection's own window 12, memLevel 4 `Compressor` (short messages in Rust
//! against its window, long ones by zlib; `-zlib`: every one by zlib, as before) and
//! inflates the client's window 12 stream with its own `Decompressor`, both with context
//! takeover, message after message; `-both` inflates each message on its stream and
//! compresses it back on the same connection's compressor, the two states of every stream
//! in turn, as an echo server touches them. Each prints the compression ratio of its
//! messages.
//! `deflate-cutoff` weighs fixed codes against zlib's by message size, one stream.
//!
//! ```text
//! cargo bench -p surge-benches --bench deflate
//! cargo bench -p surge-benches --bench deflate -- --state   # the table only
//! cargo bench -p surge-benches --bench deflate -- variants  # window, memLevel, takeover
//! cargo bench -p surge-benches --bench deflate -- deflate-policy   # the engine's budget
//! cargo bench -p surge-benches --bench deflate -- deflate-cutoff   # fixed codes or zlib
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use surge_loadgen::workload::{PayloadKind, Payloads, SizeSpec};
use surge_proto::deflate::codec::{
    Compressor, CompressorConfig, Decompressor, STREAM_FIXED_UP_TO, TAIL,
};
use surge_proto::deflate::{ClientOffer, Params, ServerPolicy, SharedCodecs};
use surge_proto::Role;

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

// ------------------------------------------------------------------ zlib-rs, the same calls

mod zlib_rs_direct {
    use super::*;
    use zlib_rs::{DeflateConfig, DeflateFlush, InflateFlush, Method, Strategy};

    /// A raw deflate stream of zlib-rs, called as surge-proto's backend called it before
    /// the switch to C zlib.
    pub struct Deflate(zlib_rs::Deflate);

    impl Deflate {
        pub fn new(window_bits: u8, mem_level: u8, level: u8) -> Self {
            Self(zlib_rs::Deflate::new_with_config(DeflateConfig {
                level: i32::from(level),
                method: Method::Deflated,
                window_bits: -i32::from(window_bits),
                mem_level: i32::from(mem_level),
                strategy: Strategy::Default,
            }))
        }

        /// Appends the permessage-deflate payload of `message` to `out`, then resets (no
        /// context takeover) unless `keep`.
        pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
            self.compress_keep(message, out, false);
        }

        pub fn compress_keep(&mut self, message: &[u8], out: &mut Vec<u8>, keep: bool) {
            let start = out.len();
            let mut input = message;
            let mut room = message.len() + message.len() / 1024 + 64;
            loop {
                let len = out.len();
                out.resize(len + room, 0);
                let (in0, out0) = (self.0.total_in(), self.0.total_out());
                self.0.compress(input, &mut out[len..], DeflateFlush::SyncFlush).unwrap();
                let produced = (self.0.total_out() - out0) as usize;
                input = &input[(self.0.total_in() - in0) as usize..];
                out.truncate(len + produced);
                if input.is_empty() && produced < room {
                    break;
                }
                room *= 2;
            }
            assert!(out[start..].ends_with(&TAIL));
            out.truncate(out.len() - TAIL.len());
            if !keep {
                self.0.reset();
            }
        }
    }

    /// A raw inflate stream of zlib-rs.
    pub struct Inflate(zlib_rs::Inflate);

    impl Inflate {
        pub fn new(window_bits: u8) -> Self {
            Self(zlib_rs::Inflate::new(false, window_bits))
        }

        /// Resets, then appends the inflated `payload` (tail appended) to `out`.
        pub fn decompress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
            self.0.reset(false);
            for mut input in [payload, &TAIL[..]] {
                loop {
                    let len = out.len();
                    out.resize(len + 16 * 1024, 0);
                    let (in0, out0) = (self.0.total_in(), self.0.total_out());
                    self.0.decompress(input, &mut out[len..], InflateFlush::SyncFlush).unwrap();
                    let produced = (self.0.total_out() - out0) as usize;
                    input = &input[(self.0.total_in() - in0) as usize..];
                    out.truncate(len + produced);
                    if produced < 16 * 1024 {
                        break;
                    }
                }
            }
        }
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
    println!("permessage-deflate state per stream, heap bytes (C zlib through surge-proto)");
    println!(
        "{:>4} {:>8} | {:>14} {:>14} | {:>14} {:>14}",
        "bits", "memLevel", "zlib-rs defl", "C zlib defl", "zlib-rs infl", "C zlib infl"
    );
    for bits in [9u8, 12, 15] {
        for mem_level in [1u8, 4, 8] {
            let before = live();
            let mut c = Compressor::new(CompressorConfig {
                window_bits: bits,
                mem_level,
                level: 6,
                no_context_takeover: true,
            })
            .unwrap();
            let c_deflate = live() - before;
            let before = live();
            let rs = zlib_rs_direct::Deflate::new(bits, mem_level, 6);
            let rs_deflate = live() - before;

            // Inflate: after one message (C zlib allocates its window on first use).
            let mut wire = Vec::new();
            c.compress(&message, &mut wire).unwrap();
            let mut out = Vec::with_capacity(message.len() + 16 * 1024);
            let before = live();
            let mut c_inflate = Decompressor::new(bits).unwrap();
            c_inflate.decompress(&wire, true, &mut out, usize::MAX).unwrap();
            let c_inflate_bytes = live() - before;
            out.clear();
            let before = live();
            let mut rs_inflate = zlib_rs_direct::Inflate::new(bits);
            rs_inflate.decompress(&wire, &mut out);
            let rs_inflate_bytes = live() - before;
            assert_eq!(out, message);
            println!("{bits:>4} {mem_level:>8} | {rs_deflate:>14} {c_deflate:>14} | {rs_inflate_bytes:>14} {c_inflate_bytes:>14}");
            drop((c, rs, c_inflate, rs_inflate));
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
        let mut rs = zlib_rs_direct::Deflate::new(15, 8, 6);
        let mut out = Vec::with_capacity(2 * message.len() + 64);
        group.bench_function(BenchmarkId::from_parameter("zlib-rs"), |b| {
            b.iter(|| {
                out.clear();
                rs.compress(black_box(&message), &mut out);
                black_box(out.len())
            })
        });
        let mut cz = Compressor::new(CompressorConfig {
            no_context_takeover: true,
            ..CompressorConfig::default()
        })
        .unwrap();
        group.bench_function(BenchmarkId::from_parameter("c-zlib"), |b| {
            b.iter(|| {
                out.clear();
                cz.compress(black_box(&message), &mut out).unwrap();
                black_box(out.len())
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("deflate-inflate/{name}"));
        group.throughput(Throughput::Bytes(message.len() as u64));
        let mut rs = zlib_rs_direct::Inflate::new(15);
        let mut out = Vec::with_capacity(message.len() + 32 * 1024);
        group.bench_function(BenchmarkId::from_parameter("zlib-rs"), |b| {
            b.iter(|| {
                out.clear();
                rs.decompress(black_box(&wire), &mut out);
                black_box(out.len())
            })
        });
        let mut ci = Decompressor::shared();
        group.bench_function(BenchmarkId::from_parameter("c-zlib"), |b| {
            b.iter(|| {
                out.clear();
                ci.decompress_message(black_box(&wire), &mut out, 1 << 20).unwrap();
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
            // zlib for every message, context takeover or not: the backend's own figures.
            let mut cz = Compressor::with_fixed_up_to(config, 0).unwrap();
            let param = format!("w{bits}-m{mem_level}");
            let mut rs = zlib_rs_direct::Deflate::new(bits, mem_level, 6);
            group.bench_function(BenchmarkId::new(format!("zlib-rs-{label}"), &param), |b| {
                b.iter(|| {
                    out.clear();
                    rs.compress_keep(black_box(&message), &mut out, keep);
                    black_box(out.len())
                })
            });
            group.bench_function(BenchmarkId::new(format!("c-zlib-{label}"), &param), |b| {
                b.iter(|| {
                    out.clear();
                    cz.compress(black_box(&message), &mut out).unwrap();
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

/// `count` messages of `size` bytes, in the order `surge-loadgen --json-text` sends them.
fn loadgen_json(size: usize, count: usize) -> Vec<Vec<u8>> {
    let mut payloads = Payloads::new(SizeSpec::Fixed(size), PayloadKind::Json, 1);
    (0..count)
        .map(|_| {
            let (offset, len) = payloads.draw();
            payloads.bytes(offset, len).to_vec()
        })
        .collect()
}

/// What `policy` agrees to with the load generator's default offer.
fn agreed(policy: &ServerPolicy) -> Params {
    let offer = ClientOffer::default().to_string();
    policy.negotiate([offer.as_bytes()]).expect("the default offer is accepted")
}

/// The engine's message cap (`Config`'s default `max_message_size`), which inflation obeys.
const MAX_MESSAGE: usize = 16 << 20;

/// Compressed size over input size of `wire` against `messages`, as "N.NNx".
fn ratio(messages: &[Vec<u8>], wire: &[Vec<u8>]) -> String {
    let (before, after) =
        messages.iter().zip(wire).fold((0, 0), |(b, a), (m, w)| (b + m.len(), a + w.len()));
    format!(
        "{:.3}x ({} B -> {:.1} B per message)",
        before as f64 / after as f64,
        before / messages.len(),
        after as f64 / messages.len() as f64
    )
}

/// The codec as the engine calls it under each memory policy (see the crate docs).
fn policies(c: &mut Criterion) {
    // `surge::DeflateConfig`'s compressor before the agreement narrows it: shared 15/8,
    // stream:12:4 12/4; level 6 both. The client's is `CompressorConfig::default()`.
    let shared_base =
        CompressorConfig { window_bits: 15, mem_level: 8, ..CompressorConfig::default() };
    let stream_base =
        CompressorConfig { window_bits: 12, mem_level: 4, ..CompressorConfig::default() };
    let shared_params = agreed(&ServerPolicy::default());
    let stream_params = agreed(&ServerPolicy {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 12,
        client_max_window_bits: 12,
        ..ServerPolicy::default()
    });
    // The scenarios of `benches/compare.sh --deflate`: json137 (100 connections) and json16k
    // (200); as many messages as it takes for every stream to get several.
    for (name, size, connections, count) in
        [("137B", 137, 100, 4000), ("16KiB", 16 * 1024, 200, 800)]
    {
        let messages = loadgen_json(size, count);
        let mut group = c.benchmark_group(format!("deflate-policy/{name}"));
        group.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(2 * size + 64 * 1024);

        // shared: the loop's codecs, a fresh window for every message, both ways.
        let send = shared_base.for_direction(shared_params.sent_by(Role::Server));
        let client = CompressorConfig::default().for_direction(shared_params.sent_by(Role::Client));
        assert!(send.no_context_takeover && client.no_context_takeover);
        let mut codecs = SharedCodecs::new(0);
        let mut client_codecs = SharedCodecs::new(0);
        let compress_all = |codecs: &mut SharedCodecs, config: CompressorConfig| -> Vec<Vec<u8>> {
            messages
                .iter()
                .map(|m| {
                    let mut wire = Vec::new();
                    codecs.compress(config, m, &mut wire).unwrap();
                    wire
                })
                .collect()
        };
        let sent = compress_all(&mut codecs, send);
        let zlib_sent: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| {
                let mut wire = Vec::new();
                Compressor::new(send).unwrap().compress(m, &mut wire).unwrap();
                wire
            })
            .collect();
        let received = compress_all(&mut client_codecs, client);
        println!(
            "{name} shared: server sends {} (zlib alone: {}), client sends {}",
            ratio(&messages, &sent),
            ratio(&messages, &zlib_sent),
            ratio(&messages, &received)
        );
        let mut i = 0;
        group.bench_function("shared-compress", |b| {
            b.iter(|| {
                out.clear();
                codecs.compress(send, black_box(&messages[i]), &mut out).unwrap();
                i = (i + 1) % count;
                black_box(out.len())
            })
        });
        // The same with zlib at the agreed window and memLevel for every message, what the
        // shared compressor did before short messages got fixed Huffman codes.
        let mut full_size = Compressor::new(send).unwrap();
        let mut i = 0;
        group.bench_function("shared-compress-full-size", |b| {
            b.iter(|| {
                out.clear();
                full_size.compress(black_box(&messages[i]), &mut out).unwrap();
                i = (i + 1) % count;
                black_box(out.len())
            })
        });
        let mut i = 0;
        group.bench_function("shared-inflate", |b| {
            b.iter(|| {
                out.clear();
                codecs.inflate(black_box(&received[i]), &mut out, MAX_MESSAGE).unwrap();
                i = (i + 1) % count;
                black_box(out.len())
            })
        });

        // stream:12:4: a connection's own streams, context takeover, message after message.
        let send = stream_base.for_direction(stream_params.sent_by(Role::Server));
        let client = CompressorConfig::default().for_direction(stream_params.sent_by(Role::Client));
        let receive = stream_params.sent_by(Role::Client);
        assert!(!send.no_context_takeover && !client.no_context_takeover);
        assert_eq!((send.window_bits, send.mem_level, client.window_bits), (12, 4, 12));
        // One stream, and as many as the end-to-end scenario has connections, taking the
        // messages in turn as the engine's connections do (each connection's state is cold
        // again by its next message: 100 x 42 KiB is more than a core's L2).
        for streams in [1, connections] {
            let label = if streams == 1 { String::new() } else { format!("-x{streams}") };
            // Message j belongs to stream j % streams; each stream has its own compressor,
            // compressing messages up to `fixed_up_to` bytes with fixed codes (0: zlib for all).
            let stream_all = |config: CompressorConfig, fixed_up_to: usize| -> Vec<Vec<u8>> {
                let mut compressors: Vec<_> = (0..streams)
                    .map(|_| Compressor::with_fixed_up_to(config, fixed_up_to).unwrap())
                    .collect();
                messages
                    .iter()
                    .enumerate()
                    .map(|(j, m)| {
                        let mut wire = Vec::new();
                        compressors[j % streams].compress(m, &mut wire).unwrap();
                        wire
                    })
                    .collect()
            };
            let (sent, received) =
                (stream_all(send, STREAM_FIXED_UP_TO), stream_all(client, STREAM_FIXED_UP_TO));
            println!(
                "{name} stream-12-4{label}: server sends {}, client sends {}",
                ratio(&messages, &sent),
                ratio(&messages, &received)
            );
            // The same streams with zlib for every message, as before short ones got fixed
            // codes against the window.
            println!(
                "{name} stream-12-4{label}: zlib alone sends {}",
                ratio(&messages, &stream_all(send, 0))
            );
            for (suffix, fixed_up_to) in [("", STREAM_FIXED_UP_TO), ("-zlib", 0)] {
                let mut compressors: Vec<_> = (0..streams)
                    .map(|_| Compressor::with_fixed_up_to(send, fixed_up_to).unwrap())
                    .collect();
                let mut i = 0;
                group.bench_function(format!("stream-12-4{label}-compress{suffix}"), |b| {
                    b.iter(|| {
                        out.clear();
                        let message = black_box(&messages[i]);
                        compressors[i % streams].compress(message, &mut out).unwrap();
                        i = (i + 1) % count;
                        black_box(out.len())
                    })
                });
            }
            let mut decompressors: Vec<_> =
                (0..streams).map(|_| Decompressor::new(receive.window_bits).unwrap()).collect();
            let mut i = 0;
            group.bench_function(format!("stream-12-4{label}-inflate"), |b| {
                b.iter_custom(|iters| {
                    in_turn(iters, &mut i, count, &mut decompressors, |decompressor, j| {
                        out.clear();
                        decompressor
                            .decompress(black_box(&received[j]), true, &mut out, MAX_MESSAGE)
                            .unwrap();
                    })
                })
            });
            // Both, as an echo server does it: each message inflated on its stream, then
            // compressed back on that stream's compressor. Apart, each set of streams has
            // the cache to itself; together, as in the engine, a hundred connections' two
            // states are more than a core's L2, and this is what the codec costs there.
            let mut compressors: Vec<_> = (0..streams)
                .map(|_| Compressor::with_fixed_up_to(send, STREAM_FIXED_UP_TO).unwrap())
                .collect();
            let mut inflated = Vec::with_capacity(2 * size);
            let mut i = 0;
            group.bench_function(format!("stream-12-4{label}-both"), |b| {
                b.iter_custom(|iters| {
                    in_turn(iters, &mut i, count, &mut decompressors, |decompressor, j| {
                        inflated.clear();
                        decompressor
                            .decompress(black_box(&received[j]), true, &mut inflated, MAX_MESSAGE)
                            .unwrap();
                        out.clear();
                        compressors[j % streams].compress(&inflated, &mut out).unwrap();
                    })
                })
            });
        }
        group.finish();
    }
}

/// `iters` messages of the clients' streams from message `*i` on, `step(its stream's
/// decompressor, message)` for each, message `j` on stream `j % decompressors.len()`; timed
/// between the resets that start every stream again after the last of `count` messages.
fn in_turn(
    iters: u64,
    i: &mut usize,
    count: usize,
    decompressors: &mut [Decompressor],
    mut step: impl FnMut(&mut Decompressor, usize),
) -> Duration {
    let streams = decompressors.len();
    let (mut timed, mut left) = (Duration::ZERO, iters);
    while left > 0 {
        if *i == 0 {
            decompressors.iter_mut().for_each(Decompressor::reset);
        }
        let run = left.min((count - *i) as u64) as usize;
        let t0 = Instant::now();
        for j in *i..*i + run {
            step(&mut decompressors[j % streams], j);
        }
        timed += t0.elapsed();
        *i = (*i + run) % count;
        left -= run as u64;
    }
    timed
}

/// Where fixed codes against the window stop paying under context takeover: one window 12,
/// memLevel 4 stream of `surge-loadgen --json-text` messages of each size, every message
/// compressed in Rust (fixed codes) or every one by zlib (dynamic codes), time per message
/// and the compression ratio of each. [`STREAM_FIXED_UP_TO`] comes from these figures.
fn cutoff(c: &mut Criterion) {
    let config = CompressorConfig { window_bits: 12, mem_level: 4, ..CompressorConfig::default() };
    let mut group = c.benchmark_group("deflate-cutoff");
    for size in [137, 512, 1024, 2048, 4096, 16 * 1024] {
        let count = (1 << 20) / size;
        let messages = loadgen_json(size, count);
        group.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(2 * size + 64);
        for (label, fixed_up_to) in [("fixed", 32 * 1024), ("zlib", 0)] {
            let mut stream = Compressor::with_fixed_up_to(config, fixed_up_to).unwrap();
            let wire: Vec<Vec<u8>> = messages
                .iter()
                .map(|m| {
                    let mut wire = Vec::new();
                    stream.compress(m, &mut wire).unwrap();
                    wire
                })
                .collect();
            println!("cutoff {size} B {label}: {}", ratio(&messages, &wire));
            let mut i = 0;
            group.bench_function(BenchmarkId::new(label, size), |b| {
                b.iter(|| {
                    out.clear();
                    stream.compress(black_box(&messages[i]), &mut out).unwrap();
                    i = (i + 1) % count;
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
    criterion::criterion_group! {
        name = policies;
        config = criterion::Criterion::default()
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(3))
            .sample_size(30);
        targets = super::policies
    }
    criterion::criterion_group! {
        name = cutoffs;
        config = criterion::Criterion::default()
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(2))
            .sample_size(20);
        targets = super::cutoff
    }
}

fn main() {
    state_table();
    if std::env::args().any(|a| a == "--state") {
        return;
    }
    group::benches();
    group::variants();
    group::policies();
    group::cutoffs();
    Criterion::default().configure_from_args().final_summary();
}
