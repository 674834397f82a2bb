//! Masking throughput: Surge's dispatcher and each of its kernels, against the byte loop and
//! fastwebsockets' `unmask`, at frame sizes from tiny control frames to 1 MiB payloads.
//!
//! "bytewise" is `apply_mask_bytewise`, the loop as usually written; LLVM compiles it to a
//! scalar byte loop (unrolled twice), not to vector code. Each iteration masks the same buffer
//! again, so small sizes measure how fast the bytes just stored can be loaded back as much as
//! the masking itself.

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use surge_proto::mask::{apply_mask, apply_mask_bytewise, Kernel};

const SIZES: [usize; 5] = [16, 125, 1024, 16 * 1024, 1024 * 1024];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn mask(c: &mut Criterion) {
    for size in SIZES {
        let mut group = c.benchmark_group(format!("mask/{size}"));
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size];

        group.bench_function("surge", |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(0)))
        });
        group.bench_function("bytewise", |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), black_box(KEY), black_box(0)))
        });
        group.bench_function("fastwebsockets", |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), black_box(KEY)))
        });
        // Each kernel on its own, to show what the dispatcher's thresholds are chosen from.
        for kernel in Kernel::available() {
            group.bench_function(BenchmarkId::new("kernel", format!("{kernel:?}")), |b| {
                b.iter(|| kernel.apply(black_box(&mut buf), black_box(KEY), black_box(0)))
            });
        }
        group.finish();
    }
}

// In a private module so the `pub fn` that `criterion_group!` generates needs no docs.
mod group {
    criterion::criterion_group!(benches, super::mask);
}
criterion_main!(group::benches);
