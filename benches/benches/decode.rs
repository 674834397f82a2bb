//! Nanoseconds per small masked message decoded, unmasked and UTF-8 validated at a server:
//! surge-proto's `Connection::read` against tungstenite reading the same bytes.
//!
//! Both sides pay the copy of the received bytes into their read buffer (tungstenite reads
//! from an in-memory stream; surge copies 64 KiB at a time into the buffer a socket read
//! would fill, as the engine does).

use std::hint::black_box;
use std::io::{self, Read, Write};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use surge_proto::connection::{Connection, Event, Limits};
use surge_proto::frame::{encode_frame, OpCode};

const BATCH: usize = 1024;
const READ_BUF: usize = 64 * 1024;

fn masked_batch(payload_len: usize) -> Vec<u8> {
    let text: String = "surge websocket ".chars().cycle().take(payload_len).collect();
    let mut wire = Vec::new();
    for i in 0..BATCH {
        let key = (i as u32).wrapping_mul(0x9E37_79B9).to_ne_bytes();
        encode_frame(&mut wire, OpCode::TEXT, true, Some(key), text.as_bytes());
    }
    wire
}

/// An endless in-memory socket that replays the same bytes and swallows writes.
struct Replay {
    bytes: Vec<u8>,
    pos: usize,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.bytes.len() {
            self.pos = 0;
        }
        let n = buf.len().min(self.bytes.len() - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_masked_text");
    for payload_len in [20usize, 1024] {
        let wire = masked_batch(payload_len);
        group.throughput(Throughput::Elements(BATCH as u64));

        group.bench_with_input(BenchmarkId::new("surge", payload_len), &wire, |b, wire| {
            let mut conn = Connection::server(Limits::default());
            // As the engine reads: into one 64 KiB buffer, frames split at its edges.
            let mut read_buf = vec![0u8; READ_BUF];
            let mut assembly = Vec::new();
            b.iter(|| {
                let mut messages = 0;
                for chunk in wire.chunks(READ_BUF) {
                    let input = &mut read_buf[..chunk.len()];
                    input.copy_from_slice(chunk);
                    let mut rest = input;
                    loop {
                        let (used, event) = conn.read(&mut *rest, &mut assembly);
                        match event {
                            Some(Event::Message(msg)) => {
                                black_box(msg);
                                messages += 1;
                            }
                            Some(other) => panic!("unexpected {other:?}"),
                            None => break,
                        }
                        rest = &mut rest[used..];
                    }
                }
                assert_eq!(messages, BATCH);
            });
        });

        group.bench_with_input(BenchmarkId::new("tungstenite", payload_len), &wire, |b, wire| {
            let stream = Replay { bytes: wire.clone(), pos: 0 };
            let mut ws = tungstenite::WebSocket::from_raw_socket(
                stream,
                tungstenite::protocol::Role::Server,
                None,
            );
            b.iter(|| {
                for _ in 0..BATCH {
                    match ws.read() {
                        Ok(tungstenite::Message::Text(text)) => {
                            black_box(text);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            });
        });
    }
    group.finish();
}

// criterion_group! makes an undocumented pub fn; a private module keeps missing_docs quiet.
mod groups {
    criterion::criterion_group!(benches, super::decode);
}

criterion_main!(groups::benches);
