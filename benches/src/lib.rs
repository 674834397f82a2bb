//! Criterion benchmarks of the Surge crates; the benchmarks themselves are in `benches/`.
