//! Short messages without context takeover, compressed in one block with DEFLATE's fixed
//! Huffman codes (RFC 1951 §3.2.6), in Rust.
//!
//! Why not zlib for these: a 137-byte message costs zlib about 6 µs, and 60 % of it is
//! building, and then weighing, the dynamic Huffman trees of a block of a hundred symbols
//! (`build_tree`, `pqdownheap`, `send_tree`), work that a block this short cannot repay:
//! zlib's own `Z_FIXED` output is within 2 % of its dynamic one at these sizes. Here the
//! matches are found over the message alone (hash chains of 3-byte prefixes, as zlib's,
//! with one step of lazy evaluation from level 4) and written with the fixed codes; a
//! message that would come out longer than it went in is written as a stored block.
//!
//! The output is what a sync flush of a fresh raw DEFLATE stream ends with (the block, not
//! final, then the empty stored block's header and padding to a byte) without the
//! `00 00 ff ff` that RFC 7692 §7.2.1 has the sender remove: any inflater reads it, and it
//! refers to nothing before the message. Nothing is allocated but the room reserved in the
//! caller's `Vec`.

use super::codec::SMALL_MESSAGE;

/// The shortest and longest match DEFLATE encodes.
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;

/// Hash chains of 3-byte prefixes over a buffer of bytes, as zlib's: for each hash the last
/// position (plus one; 0 is none) whose prefix hashed to it, and for each position the
/// previous one with the same hash. Both tables have a power-of-two length; `prev` is
/// indexed by position modulo its length, which must be at least `window`, so that no link
/// a search follows has been written over by a newer position.
pub(crate) struct Chains<'a> {
    pub head: &'a mut [u16],
    pub prev: &'a mut [u16],
    /// How far back a match may reach: the peer's window.
    pub window: usize,
    /// Chain links a search follows at most, whatever the level allows.
    pub max_chain: usize,
}

/// Hash chain heads of the one-shot compressor: 3-byte prefixes hashed to 8 bits (a message
/// of at most [`SMALL_MESSAGE`] bytes has at most that many prefixes).
const HASH_BITS: u32 = 8;

/// Its links, one per position of a message, a power of two.
const ONE_SHOT_PREV: usize = SMALL_MESSAGE.next_power_of_two();

/// A compressor's scratch: the hash chains of one message, cleared for each.
#[derive(Debug, Clone)]
pub(crate) struct FixedHuffman {
    head: [u16; 1 << HASH_BITS],
    prev: [u16; ONE_SHOT_PREV],
}

impl Default for FixedHuffman {
    fn default() -> Self {
        Self { head: [0; 1 << HASH_BITS], prev: [0; ONE_SHOT_PREV] }
    }
}

/// How hard a level looks for matches: zlib's `configuration_table` (deflate.c), so that
/// a level means here what it means there.
#[derive(Debug, Clone, Copy)]
struct Effort {
    /// A match this long already: follow a quarter of the chain for a longer one.
    good: usize,
    /// A match this long is taken without looking one byte on for a longer one; `None`:
    /// never look (zlib's `deflate_fast`, levels 1 to 3).
    lazy: Option<usize>,
    /// A match this long ends the search.
    nice: usize,
    /// Chain links followed at most.
    chain: usize,
}

fn effort(level: u8) -> Effort {
    let (good, lazy, nice, chain) = match level {
        0 | 1 => (4, None, 8, 4),
        2 => (4, None, 16, 8),
        3 => (4, None, 32, 32),
        4 => (4, Some(4), 16, 16),
        5 => (8, Some(16), 32, 32),
        6 => (8, Some(16), 128, 128),
        7 => (8, Some(32), 128, 256),
        8 => (32, Some(128), 258, 1024),
        _ => (32, Some(258), 258, 4096),
    };
    Effort { good, lazy, nice, chain }
}

impl FixedHuffman {
    /// Appends `message` (1 to [`SMALL_MESSAGE`] bytes), compressed at `level` (1..=9), to
    /// `out`: the payload of a compressed message.
    pub(crate) fn compress(&mut self, message: &[u8], level: u8, out: &mut Vec<u8>) {
        // The caller's promise (`SharedCodecs` checks it); a longer message would not fit the
        // hash chains.
        debug_assert!(!message.is_empty() && message.len() <= SMALL_MESSAGE);
        self.head = [0; 1 << HASH_BITS];
        let mut chains = Chains {
            head: &mut self.head,
            prev: &mut self.prev,
            window: ONE_SHOT_PREV,
            max_chain: usize::MAX,
        };
        compress_block(message, 0, &mut chains, level, out);
    }
}

/// Appends `data[start..]` (at least one byte), compressed at `level` (1..=9), to `out` as
/// one block of fixed codes (or a stored block, if that is shorter) ending as a sync flush
/// does, without `00 00 ff ff`. Matches may reach into `data[..start]`, the bytes the peer
/// inflated before, no further back than `chains.window`; the chains must hold every
/// position before `start - 2` that they are to find, and hold all before `data.len() - 2`
/// afterwards.
pub(crate) fn compress_block(
    data: &[u8],
    start: usize,
    chains: &mut Chains<'_>,
    level: u8,
    out: &mut Vec<u8>,
) {
    debug_assert!(start < data.len() && data.len() <= usize::from(u16::MAX));
    debug_assert!(chains.head.len().is_power_of_two() && chains.prev.len().is_power_of_two());
    debug_assert!(chains.window <= chains.prev.len());
    let message = &data[start..];
    let begin = out.len();
    // 9 bits a byte at most (a match never costs more than the literals it replaces), the
    // block's header and end, the flush's header, and a word's slack.
    out.reserve(message.len() + message.len() / 8 + 16);
    let mut bits = BitWriter { out, acc: 0, count: 0 };
    // BFINAL 0, BTYPE 01 (fixed codes).
    bits.put(0b010, 3);
    // Positions `start - 2` and `start - 1` have a prefix only now.
    for p in start.saturating_sub(2)..start {
        chains.insert(data, p);
    }
    chains.encode(data, start, effort(level), &mut bits);
    // End of block, then the sync flush: an empty stored block's header, to a byte.
    bits.literal(256);
    bits.put(0, 3);
    bits.finish();
    if out.len() - begin > stored_len(message) {
        out.truncate(begin);
        write_stored(message, out);
    }
}

impl Chains<'_> {
    /// `data[start..]`'s literals and matches, in fixed codes.
    fn encode(&mut self, data: &[u8], start: usize, effort: Effort, bits: &mut BitWriter<'_>) {
        let mut pos = start;
        // A match found at `pos - 1` that waits to see whether `pos` has a longer one.
        let mut held: Option<(usize, usize)> = None;
        while pos < data.len() {
            let found = match held {
                // Long enough: taken as it is, `pos` only indexed.
                Some((len, _)) if effort.lazy.is_some_and(|lazy| len >= lazy) => {
                    self.insert(data, pos);
                    None
                }
                _ => self.insert_and_match(data, pos, effort, held.map_or(0, |(len, _)| len)),
            };
            match held.take() {
                Some((len, dist)) if found.is_none_or(|(next, _)| next <= len) => {
                    bits.length(len, dist);
                    // The held match covers `pos - 1 .. pos - 1 + len`: index the rest.
                    let end = pos - 1 + len;
                    for p in pos + 1..end {
                        self.insert(data, p);
                    }
                    pos = end;
                    continue;
                }
                Some(_) => bits.literal(u16::from(data[pos - 1])),
                None => {}
            }
            match found {
                Some(m) if effort.lazy.is_some() && m.0 < MAX_MATCH => held = Some(m),
                Some((len, dist)) => {
                    bits.length(len, dist);
                    for p in pos + 1..pos + len {
                        self.insert(data, p);
                    }
                    pos += len;
                    continue;
                }
                None => bits.literal(u16::from(data[pos])),
            }
            pos += 1;
        }
        // A held match has at least two bytes after its start, so the loop always took it.
        debug_assert!(held.is_none());
    }

    /// The chain a 3-byte prefix at `pos` belongs to; `None` within two bytes of the end.
    fn hash(&self, data: &[u8], pos: usize) -> Option<usize> {
        let prefix = data.get(pos..pos + MIN_MATCH)?;
        let word = u32::from(prefix[0]) << 16 | u32::from(prefix[1]) << 8 | u32::from(prefix[2]);
        let bits = self.head.len().trailing_zeros();
        Some((word.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize)
    }

    /// Adds the prefix at `pos` to its chain (nothing within two bytes of the end).
    pub(crate) fn insert(&mut self, data: &[u8], pos: usize) {
        if let Some(h) = self.hash(data, pos) {
            self.link(h, pos);
        }
    }

    fn link(&mut self, h: usize, pos: usize) {
        let mask = self.prev.len() - 1;
        self.prev[pos & mask] = self.head[h];
        self.head[h] = pos as u16 + 1;
    }

    /// The longest match for `pos` among earlier positions within the window, longer than
    /// `beat` (a held match's length), as `(length, distance)`; then adds `pos` to its chain.
    fn insert_and_match(
        &mut self,
        data: &[u8],
        pos: usize,
        effort: Effort,
        beat: usize,
    ) -> Option<(usize, usize)> {
        let h = self.hash(data, pos)?;
        let limit = (data.len() - pos).min(MAX_MATCH);
        let nice = effort.nice.min(limit);
        // Nothing here can be longer than the held match: just indexed.
        let most = effort.chain.min(self.max_chain);
        let mut chain = match beat {
            _ if beat >= limit => 0,
            _ if beat >= effort.good => most / 4,
            _ => most,
        };
        let oldest = pos.saturating_sub(self.window);
        let mask = self.prev.len() - 1;
        let mut best: Option<(usize, usize)> = None;
        let mut best_len = beat.max(MIN_MATCH - 1);
        let mut candidate = self.head[h];
        while let (Some(at), true) = ((candidate as usize).checked_sub(1), chain > 0) {
            // Links only go back in time; one out of the window ends the chain.
            if at < oldest || at >= pos {
                break;
            }
            chain -= 1;
            // Only a candidate that agrees at the byte that would make it longer counts.
            // (`best_len < limit` here: `at + best_len < pos + limit`, within the data.)
            if data[at + best_len] == data[pos + best_len] {
                let len = common_prefix(&data[at..], &data[pos..pos + limit]);
                if len > best_len {
                    best = Some((len, pos - at));
                    best_len = len;
                    if len >= nice {
                        break;
                    }
                }
            }
            candidate = self.prev[at & mask];
        }
        self.link(h, pos);
        best
    }
}

/// How many leading bytes `a` and `b` share (at most `b.len()`), eight at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut len = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = u64::from_le_bytes(x.try_into().unwrap_or_default())
            ^ u64::from_le_bytes(y.try_into().unwrap_or_default());
        if diff != 0 {
            return len + (diff.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    len + a[len..].iter().zip(&b[len..]).take_while(|(x, y)| x == y).count()
}

/// What [`write_stored`] appends for `message`: 5 bytes of header, 1 of flush.
fn stored_len(message: &[u8]) -> usize {
    message.len() + 6
}

/// `message` as a stored block, then the sync flush's empty stored block's header.
fn write_stored(message: &[u8], out: &mut Vec<u8>) {
    let len = message.len() as u16;
    // BFINAL 0, BTYPE 00, padded to the byte; LEN and its complement, little-endian.
    out.push(0);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(message);
    out.push(0);
}

/// Bits appended to a `Vec`, least significant first, as DEFLATE packs them, four bytes at a
/// time (the caller reserves the room).
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    count: u32,
}

impl BitWriter<'_> {
    /// The low `count` bits of `value` (at most 16).
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.count;
        self.count += count;
        if self.count >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.count -= 32;
        }
    }

    /// Literal/length symbol `symbol` (0..=285) in its fixed code.
    fn literal(&mut self, symbol: u16) {
        let (code, len) = LITERAL_CODES[symbol as usize];
        self.put(u32::from(code), u32::from(len));
    }

    /// A match: its length's symbol and extra bits, its distance's.
    fn length(&mut self, len: usize, dist: usize) {
        let code = LENGTH_CODE[len];
        let (base, extra) = LENGTH_BASE[code as usize];
        self.literal(257 + u16::from(code));
        self.put((len - base as usize) as u32, u32::from(extra));
        let code = distance_code(dist);
        let (base, extra) = DISTANCE_BASE[code];
        self.put(u32::from(DISTANCE_CODES[code]), 5);
        self.put((dist - base as usize) as u32, u32::from(extra));
    }

    /// The bits left, the last byte padded with zeros.
    fn finish(&mut self) {
        let tail = self.count.div_ceil(8) as usize;
        self.out.extend_from_slice(&(self.acc as u32).to_le_bytes()[..tail]);
        self.count = 0;
    }
}

/// `code`'s low `len` bits in reverse order: Huffman codes are packed from their most
/// significant bit, into a stream filled from the least significant.
const fn reverse(code: u16, len: u8) -> u16 {
    let mut out = 0;
    let mut i = 0;
    while i < len {
        out |= ((code >> i) & 1) << (len - 1 - i);
        i += 1;
    }
    out
}

/// The fixed literal/length codes (§3.2.6), reversed for packing, with their lengths.
const LITERAL_CODES: [(u16, u8); 288] = {
    let mut table = [(0, 0); 288];
    let mut symbol = 0;
    while symbol < 288 {
        let (code, len) = match symbol {
            0..=143 => (0x30 + symbol, 8),
            144..=255 => (0x190 + symbol - 144, 9),
            256..=279 => (symbol - 256, 7),
            _ => (0xc0 + symbol - 280, 8),
        };
        table[symbol as usize] = (reverse(code, len), len);
        symbol += 1;
    }
    table
};

/// Each length code's (base length, extra bits), codes 257..=285 (§3.2.5).
const LENGTH_BASE: [(u16, u8); 29] = [
    (3, 0),
    (4, 0),
    (5, 0),
    (6, 0),
    (7, 0),
    (8, 0),
    (9, 0),
    (10, 0),
    (11, 1),
    (13, 1),
    (15, 1),
    (17, 1),
    (19, 2),
    (23, 2),
    (27, 2),
    (31, 2),
    (35, 3),
    (43, 3),
    (51, 3),
    (59, 3),
    (67, 4),
    (83, 4),
    (99, 4),
    (115, 4),
    (131, 5),
    (163, 5),
    (195, 5),
    (227, 5),
    (258, 0),
];

/// The length code (less 257) of every match length 0..=258 (0..=2 unused).
const LENGTH_CODE: [u8; MAX_MATCH + 1] = {
    let mut table = [0; MAX_MATCH + 1];
    let mut code = 0;
    while code < 29 {
        let (base, extra) = LENGTH_BASE[code];
        let mut len = base as usize;
        // Code 284's range would reach 258, which is code 285's alone.
        let end = if code == 27 { 258 } else { base as usize + (1 << extra) };
        while len < end {
            table[len] = code as u8;
            len += 1;
        }
        code += 1;
    }
    table
};

/// Each distance code's (base distance, extra bits), codes 0..=29 (§3.2.5).
const DISTANCE_BASE: [(u16, u8); 30] = [
    (1, 0),
    (2, 0),
    (3, 0),
    (4, 0),
    (5, 1),
    (7, 1),
    (9, 2),
    (13, 2),
    (17, 3),
    (25, 3),
    (33, 4),
    (49, 4),
    (65, 5),
    (97, 5),
    (129, 6),
    (193, 6),
    (257, 7),
    (385, 7),
    (513, 8),
    (769, 8),
    (1025, 9),
    (1537, 9),
    (2049, 10),
    (3073, 10),
    (4097, 11),
    (6145, 11),
    (8193, 12),
    (12289, 12),
    (16385, 13),
    (24577, 13),
];

/// The fixed 5-bit distance codes, reversed for packing.
const DISTANCE_CODES: [u16; 30] = {
    let mut table = [0; 30];
    let mut code = 0;
    while code < 30 {
        table[code] = reverse(code as u16, 5);
        code += 1;
    }
    table
};

/// The distance code of `dist` (1..=32768).
fn distance_code(dist: usize) -> usize {
    DISTANCE_BASE.partition_point(|&(base, _)| base as usize <= dist) - 1
}

/// A decoder of what [`compress_block`] writes, independent of zlib, for tests: the message
/// that `payload` (one block of fixed codes or a stored one, then the sync flush's empty
/// stored block's header, without `00 00 ff ff`) inflates to after `history`, and the
/// farthest back any of its matches reached. `None` for anything else.
#[cfg(test)]
pub(crate) fn decode_block(history: &[u8], payload: &[u8]) -> Option<(Vec<u8>, usize)> {
    struct Bits<'a>(&'a [u8], usize);
    impl Bits<'_> {
        fn take(&mut self, count: u32) -> Option<u32> {
            let mut value = 0;
            for i in 0..count {
                let byte = self.0.get(self.1 / 8)?;
                value |= u32::from(byte >> (self.1 % 8) & 1) << i;
                self.1 += 1;
            }
            Some(value)
        }
        /// A Huffman code of `count` bits, most significant first.
        fn code(&mut self, count: u32) -> Option<u32> {
            (0..count).try_fold(0, |code, _| Some(code << 1 | self.take(1)?))
        }
        fn align(&mut self) {
            self.1 = self.1.next_multiple_of(8);
        }
    }
    let mut bits = Bits(payload, 0);
    let mut out = history.to_vec();
    let mut farthest = 0;
    match bits.take(3)? {
        0b010 => loop {
            let mut code = bits.code(7)?;
            let symbol = if code <= 0b001_0111 {
                256 + code
            } else {
                code = code << 1 | bits.take(1)?;
                match code {
                    0x30..=0xbf => code - 0x30,
                    0xc0..=0xc7 => 280 + code - 0xc0,
                    _ => 144 + (code << 1 | bits.take(1)?) - 0x190,
                }
            };
            match symbol {
                0..=255 => out.push(symbol as u8),
                256 => break,
                257..=285 => {
                    let (base, extra) = LENGTH_BASE[symbol as usize - 257];
                    let len = usize::from(base) + bits.take(u32::from(extra))? as usize;
                    let (base, extra) = *DISTANCE_BASE.get(bits.code(5)? as usize)?;
                    let dist = usize::from(base) + bits.take(u32::from(extra))? as usize;
                    let from = out.len().checked_sub(dist)?;
                    farthest = farthest.max(dist);
                    for i in 0..len {
                        out.push(out[from + i]);
                    }
                }
                _ => return None,
            }
        },
        0b000 => {
            bits.align();
            let len = bits.take(16)?;
            (bits.take(16)? == !len & 0xffff).then_some(())?;
            let start = bits.1 / 8;
            out.extend_from_slice(payload.get(start..start + len as usize)?);
            bits.1 += 8 * len as usize;
        }
        _ => return None,
    }
    // The sync flush: an empty stored block's header, padded to the byte, and nothing after.
    (bits.take(3)? == 0).then_some(())?;
    bits.align();
    (bits.1 == 8 * payload.len()).then_some(())?;
    Some((out.split_off(history.len()), farthest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::codec::Decompressor;

    fn inflate(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // A 9-bit window (zlib's smallest for raw streams): every distance is within it.
        let mut decompressor = Decompressor::new(9).unwrap();
        decompressor.decompress(payload, true, &mut out, 1 << 20).unwrap();
        out
    }

    fn round_trip(message: &[u8], level: u8) -> usize {
        let mut out = vec![0xaa];
        FixedHuffman::default().compress(message, level, &mut out);
        assert_eq!(out[0], 0xaa, "appends");
        assert_eq!(inflate(&out[1..]), message, "level {level}, {} bytes", message.len());
        out.len() - 1
    }

    #[test]
    fn every_length_and_level_inflates_to_the_message() {
        let json = br#"{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":123456789,"p":"43210.12","q":"0.015","b":88,"a":50,"T":1700000000120,"m":true,"M":true,"x":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut noise = [0u8; SMALL_MESSAGE];
        for byte in &mut noise {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
        let few = noise.map(|b| b"ab"[usize::from(b & 1)]);
        for source in [&json[..SMALL_MESSAGE.min(json.len())], &noise[..], &few[..]] {
            for len in 1..=source.len() {
                for level in 1..=9 {
                    round_trip(&source[..len], level);
                }
            }
        }
    }

    #[test]
    fn a_run_uses_the_longest_matches_and_noise_goes_stored() {
        // One literal, then matches of up to 247 bytes at distance 1.
        assert!(round_trip(&[b'x'; SMALL_MESSAGE], 6) < 8);
        let mut seed = 7u32;
        let noise: Vec<u8> = (0..SMALL_MESSAGE)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        let mut out = Vec::new();
        FixedHuffman::default().compress(&noise, 6, &mut out);
        assert_eq!(out.len(), noise.len() + 6, "stored: 5 bytes of header, 1 of flush");
        assert_eq!(inflate(&out), noise);
    }

    #[test]
    fn json_compresses_about_as_well_as_zlib_does() {
        let message = br#"{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":123456789,"p":"43210.12","q":"0.015","b":88,"a":50,"T":1700000000120,"m":true,"M":true}"#;
        let fixed = round_trip(message, 6);
        let config = crate::deflate::codec::CompressorConfig {
            no_context_takeover: true,
            ..Default::default()
        };
        let mut zlib = Vec::new();
        crate::deflate::codec::Compressor::new(config)
            .unwrap()
            .compress(message, &mut zlib)
            .unwrap();
        assert!(fixed <= zlib.len() + zlib.len() / 20, "fixed {fixed} B, zlib {} B", zlib.len());
    }

    #[test]
    fn the_length_and_distance_tables_cover_their_ranges() {
        for len in MIN_MATCH..=MAX_MATCH {
            let (base, extra) = LENGTH_BASE[LENGTH_CODE[len] as usize];
            assert!(len >= base as usize && len - (base as usize) < 1 << extra || len == 258);
        }
        assert_eq!(LENGTH_CODE[258], 28);
        assert_eq!(LENGTH_CODE[257], 27);
        for dist in 1..=32768 {
            let (base, extra) = DISTANCE_BASE[distance_code(dist)];
            assert!(dist >= base as usize && dist - (base as usize) < 1 << extra);
        }
    }
}
