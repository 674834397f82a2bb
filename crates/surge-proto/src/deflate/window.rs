//! Short messages of a context-takeover stream, compressed in Rust against the stream's own
//! window: one block of DEFLATE's fixed Huffman codes per message (`fixed.rs`), with
//! matches into the earlier messages.
//!
//! Why not zlib for these: with context takeover a connection's zlib state is its own, 30
//! to 270 KiB, and by its next message it is cold in cache (each message of a hundred
//! connections in turn finds zlib's hash chains and window in memory, not cache: 22 % of a
//! server's samples in one profile), and zlib builds two dynamic Huffman trees for every
//! short message, which a block of a hundred symbols cannot repay. Here a stream keeps the
//! last `2^window_bits` bytes it compressed and hash chains over them (`u16` positions,
//! sized for the window), which is all the next message needs, and a search follows few
//! links ([`STREAM_MAX_CHAIN`]): each one is a load that misses the cache.
//!
//! Long messages still go to zlib (`Compressor`, for its dynamic codes); the two hand the
//! window over: zlib gets it as its dictionary (`deflateSetDictionary`, which raw deflate
//! allows after a sync-flushed block) before its first message after some of these, and a
//! message zlib compressed is appended here (its chains are made when the next short
//! message needs them).

use super::fixed::{compress_block, Chains};

/// The longest message of a context-takeover stream that [`Compressor`](super::Compressor)
/// compresses in Rust, with fixed Huffman codes, rather than with zlib.
///
/// Measured on `surge-loadgen --json-text` messages, one window 12, memLevel 4 stream, hot
/// (`cargo bench -p surge-benches --bench deflate -- deflate-cutoff`): fixed codes against
/// zlib take 1.42 against 4.73 µs at 137 B, the same size out (27.6 B against 27.7); 6.3
/// against 10.4 µs at 512 B, 2 % larger; 9.6 against 14.1 µs at 1 KiB, but 15 % larger, and
/// more above: from there zlib's dynamic codes pay for themselves.
pub const STREAM_FIXED_UP_TO: usize = 512;

/// Chain links a search of the window follows at most, whatever the level allows (zlib's
/// level 6 follows up to 128).
///
/// Why: a connection's window and chains are out of cache by its next message, so every
/// link is a load from memory: in a server's profile (100 streams of 137 B messages,
/// window 12, the server waiting on its load generator) the walk was 2/3 of the
/// compressor's samples, which ran at twice its bench time. The most recent occurrences
/// come first, and a feed's messages resemble the last ones: on `surge-loadgen
/// --json-text` messages (`deflate-policy`'s streams) 16 links cost 1.9 % in size over 100
/// streams of 40 messages and 4.3 % on one long stream (with the head table below), 8
/// links 3.9 % and 6.5 %.
pub(crate) const STREAM_MAX_CHAIN: usize = 16;

/// How many messages back (of the size of the one to compress) [`Window::prefetch`] asks
/// for: as many as a search follows links.
const PREFETCH_MESSAGES: usize = STREAM_MAX_CHAIN;

/// Hash chain heads of a window at most: one per position of a 512-byte message, so that
/// the table a message touches all over stays 1 KiB (16 cache lines) whatever the memLevel:
/// on the same messages 0.6 % larger than zlib's 2^(memLevel + 7) at memLevel 4.
const MAX_HEAD_BITS: u32 = 9;

/// The longest a window's room after it allows, at window bits 15 (positions are `u16`).
pub(crate) const MAX_FIXED_UP_TO: usize = (u16::MAX as usize) - (1 << 15);

/// A stream's window and hash chains; see the [module docs](self).
pub(crate) struct Window {
    /// The window (the last `size` bytes of the stream, at most, end at `end`) and room
    /// after it for what comes next; slid back to its start when that room runs out.
    buf: Box<[u8]>,
    end: usize,
    /// Every position before this one is in the chains; none after it is.
    indexed: usize,
    /// How far back the peer's inflater reaches: `2^window_bits`.
    size: usize,
    head: Box<[u16]>,
    /// One link per position of the window (by position modulo the window).
    prev: Box<[u16]>,
}

impl core::fmt::Debug for Window {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Window").field("size", &self.size).field("end", &self.end).finish()
    }
}

impl Window {
    /// An empty window of `2^window_bits` bytes (8..=15) for messages of up to `up_to`
    /// bytes (at most [`MAX_FIXED_UP_TO`]), with `2^(mem_level + 7)` hash chain heads (as
    /// zlib's memLevel) but no more than there are positions in the window, nor than
    /// [`MAX_HEAD_BITS`] allows.
    pub(crate) fn new(window_bits: u8, mem_level: u8, up_to: usize) -> Self {
        let size = 1usize << window_bits;
        // Positions are `u16` (plus one, 0 being none), so the buffer stays under 64 KiB.
        let room = size.max(up_to).min(usize::from(u16::MAX) - size);
        debug_assert!(up_to <= room && size - 1 <= room);
        let hash_bits = (u32::from(mem_level) + 7).min(u32::from(window_bits)).min(MAX_HEAD_BITS);
        Self {
            buf: vec![0; size + room].into_boxed_slice(),
            end: 0,
            indexed: 0,
            size,
            head: vec![0; 1 << hash_bits].into_boxed_slice(),
            prev: vec![0; size].into_boxed_slice(),
        }
    }

    /// The heap it holds, in bytes.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.len() + 2 * (self.head.len() + self.prev.len())
    }

    /// Appends `message` (1 to `up_to` bytes, as made), compressed at `level` (1..=9)
    /// against the window, to `out`, and adds it to the window.
    pub(crate) fn compress(&mut self, message: &[u8], level: u8, out: &mut Vec<u8>) {
        debug_assert!(!message.is_empty() && message.len() <= self.buf.len() - self.size);
        self.prefetch(message.len());
        self.make_room(message.len());
        let start = self.end;
        self.end += message.len();
        self.buf[start..self.end].copy_from_slice(message);
        let data = &self.buf[..self.end];
        let mut chains = Chains {
            head: &mut self.head,
            prev: &mut self.prev,
            window: self.size,
            max_chain: STREAM_MAX_CHAIN,
        };
        // What a message zlib compressed brought, as far back as a match can reach.
        for p in self.indexed.max(start.saturating_sub(self.size))..start.saturating_sub(2) {
            chains.insert(data, p);
        }
        compress_block(data, start, &mut chains, level, out);
        self.indexed = self.end.saturating_sub(2);
    }

    /// Asks for what a search for the next `len` bytes will read (the head table, the last
    /// messages' bytes and their links) in one go, rather than one miss per chain link.
    fn prefetch(&self, len: usize) {
        let span = (PREFETCH_MESSAGES * len).min(self.size).min(self.end);
        super::prefetch::prefetch(&self.head);
        super::prefetch::prefetch(&self.buf[self.end - span..self.end]);
        let from = (self.end - span) % self.size;
        let to = self.end % self.size;
        if from < to || span == 0 {
            super::prefetch::prefetch(&self.prev[from..to]);
        } else {
            super::prefetch::prefetch(&self.prev[from..]);
            super::prefetch::prefetch(&self.prev[..to]);
        }
    }

    /// Adds a message that zlib compressed to the window; its positions join the chains
    /// when the next message compressed here needs them.
    pub(crate) fn append(&mut self, message: &[u8]) {
        let tail = if message.len() >= self.size {
            // It fills the window alone.
            self.clear();
            &message[message.len() - self.size..]
        } else {
            self.make_room(message.len());
            message
        };
        self.buf[self.end..self.end + tail.len()].copy_from_slice(tail);
        self.end += tail.len();
    }

    /// The window: the last bytes of the stream, as many as a match may reach back.
    pub(crate) fn recent(&self) -> &[u8] {
        &self.buf[self.end.saturating_sub(self.size)..self.end]
    }

    /// Forgets the stream: the next message refers to nothing before it.
    pub(crate) fn clear(&mut self) {
        self.head.fill(0);
        self.end = 0;
        self.indexed = 0;
    }

    /// Makes room for `len` (< the window) more bytes after the window: when the buffer
    /// would overflow, the window moves to its start and the chains with it.
    fn make_room(&mut self, len: usize) {
        if self.end + len <= self.buf.len() {
            return;
        }
        // `end > size` here: the room after a full window is at least `len`.
        let offset = self.end - self.size;
        self.buf.copy_within(offset..self.end, 0);
        self.end = self.size;
        self.indexed = self.indexed.saturating_sub(offset);
        // A position's link lives at its position modulo the window: move them with it.
        self.prev.rotate_left(offset % self.size);
        // Positions before `offset` drop out (to 0, none); `offset` < 64 Ki.
        let offset = offset as u16;
        for link in self.head.iter_mut().chain(self.prev.iter_mut()) {
            *link = link.saturating_sub(offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::deflate::backend::{Inflate, Until};
    use crate::deflate::codec::{Compressor, CompressorConfig, TAIL};
    use crate::deflate::fixed::decode_block;

    /// The peer: zlib's raw inflate with exactly the agreed window (8 included, which the
    /// crate's `Decompressor` opens as 9), so that a distance beyond the window fails.
    struct Peer(Inflate);

    impl Peer {
        fn new(bits: u8) -> Self {
            Self(Inflate::new(bits))
        }

        fn inflate(&mut self, payload: &[u8], expected: &[u8]) {
            let mut input = payload.to_vec();
            input.extend_from_slice(&TAIL);
            let mut out = Vec::with_capacity(expected.len() + 1);
            let progress = self
                .0
                .inflate(&input, &mut out, expected.len() + 1, Until::Sync)
                .expect("inflates within the window");
            assert_eq!(progress.consumed, input.len());
            assert!(!progress.stream_end, "no final block");
            assert!(out == expected, "{} bytes back, {} sent", out.len(), expected.len());
        }
    }

    /// JSON trade records, distinct but alike, as a feed sends them.
    fn json(seed: u64, len: usize) -> Vec<u8> {
        let mut text = Vec::with_capacity(len + 200);
        let mut n = seed;
        while text.len() < len {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let record = format!(
                r#"{{"e":"trade","E":{},"s":"BTCUSDT","t":{},"p":"{}.{:02}","q":"0.{:03}","m":{}}}"#,
                1_700_000_000_000 + (n >> 40),
                n >> 44,
                40_000 + (n >> 52),
                (n >> 20) % 100,
                (n >> 30) % 1000,
                n & 1 == 0
            );
            text.extend_from_slice(record.as_bytes());
        }
        text.truncate(len);
        text
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut n = seed | 1;
        (0..len)
            .map(|_| {
                n ^= n << 13;
                n ^= n >> 7;
                n ^= n << 17;
                n as u8
            })
            .collect()
    }

    fn message(kind: u8, seed: u64, len: usize) -> Vec<u8> {
        match kind % 4 {
            0 | 1 => json(seed, len),
            2 => noise(seed, len),
            // A few distinct bytes: long matches, at every distance.
            _ => noise(seed, len).iter().map(|b| b"ab{"[usize::from(b % 3)]).collect(),
        }
    }

    fn stream(bits: u8, mem_level: u8, level: u8, messages: &[Vec<u8>]) {
        let config =
            CompressorConfig { window_bits: bits, mem_level, level, no_context_takeover: false };
        let mut compressor = Compressor::new(config).unwrap();
        let mut peer = Peer::new(bits);
        let (mut wire, mut history) = (Vec::new(), Vec::new());
        for (i, m) in messages.iter().enumerate() {
            wire.clear();
            compressor.compress(m, &mut wire).unwrap();
            if m.is_empty() {
                assert_eq!(wire, [0]);
                continue;
            }
            peer.inflate(&wire, m);
            if level > 0 && m.len() <= STREAM_FIXED_UP_TO {
                assert!(wire.len() <= m.len() + 6, "message {i}: longer than stored");
                // zlib lets a match reach the window and what this call inflated: check the
                // window alone bounds every distance.
                let (back, farthest) = decode_block(&history, &wire).expect("one block");
                assert!(back == *m, "message {i}: decodes to another");
                assert!(farthest <= 1 << bits, "message {i}: reaches {farthest} back");
            }
            history.extend_from_slice(m);
        }
    }

    #[test]
    fn a_long_stream_inflates_message_after_message_at_every_window_and_level() {
        // Several windows' worth of short and long messages, so the buffer slides many
        // times and zlib takes the window over and hands it back.
        let sizes = [137, 1, 2, 3, 250, 900, STREAM_FIXED_UP_TO, STREAM_FIXED_UP_TO + 1, 40, 5000];
        let mut messages = Vec::new();
        for i in 0..300u64 {
            let len = sizes[i as usize % sizes.len()];
            messages.push(message((i % 7) as u8, i, len));
        }
        messages.push(json(1, 40_000));
        messages.extend((0..50).map(|i| json(i, 137)));
        for bits in 8..=15 {
            for level in 1..=9 {
                stream(bits, 1 + level % 9, level, &messages);
            }
        }
    }

    #[test]
    fn repeated_json_refers_back_into_the_window() {
        let config = CompressorConfig {
            window_bits: 12,
            mem_level: 4,
            level: 6,
            no_context_takeover: false,
        };
        let mut compressor = Compressor::new(config).unwrap();
        let record = json(7, 137);
        let (mut first, mut again) = (Vec::new(), Vec::new());
        compressor.compress(&record, &mut first).unwrap();
        compressor.compress(&record, &mut again).unwrap();
        // One match of 137 at distance 137: header, the match, the end, the flush.
        assert!(again.len() <= 5, "{} bytes", again.len());
        let mut peer = Peer::new(12);
        peer.inflate(&first, &record);
        peer.inflate(&again, &record);
    }

    #[test]
    fn memory_is_the_window_twice_and_the_chains() {
        let up_to = STREAM_FIXED_UP_TO;
        assert_eq!(Window::new(12, 4, up_to).heap_bytes(), 8192 + 2 * (512 + 4096));
        assert_eq!(Window::new(15, 8, up_to).heap_bytes(), 65535 + 2 * (512 + 32768));
        assert_eq!(Window::new(9, 1, up_to).heap_bytes(), 512 + up_to + 2 * (256 + 512));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any mix of short and long messages, JSON, noise or few bytes, at any window,
        /// memory level and level, inflates back message after message in a peer whose
        /// window is exactly the agreed one.
        #[test]
        fn any_stream_inflates_back(
            bits in 8u8..=15,
            mem_level in 1u8..=9,
            level in 0u8..=9,
            messages in prop::collection::vec(
                (any::<u8>(), any::<u64>(), prop_oneof![
                    8 => 0usize..=STREAM_FIXED_UP_TO,
                    1 => STREAM_FIXED_UP_TO..8 * STREAM_FIXED_UP_TO,
                ]),
                1..120,
            ),
        ) {
            let messages: Vec<Vec<u8>> =
                messages.iter().map(|&(kind, seed, len)| message(kind, seed, len)).collect();
            stream(bits, mem_level, level, &messages);
        }
    }
}
