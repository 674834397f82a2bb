//! What is sent and when: message sizes and contents, closed-loop and open-loop scheduling.
//!
//! Closed loop keeps `in_flight` messages outstanding on every connection and sends the next one
//! as soon as an echo arrives. Open loop (`--rate`) spreads a fixed total rate over the
//! connections: each client thread walks one schedule of slots, slot `j` falling due at
//! `t0 + j / thread_rate` and belonging to connection `j % conns`, so the connections' sends are
//! evenly staggered. A connection sends a due message when it has fewer than `in_flight`
//! outstanding; a message that had to wait keeps its scheduled time (coordinated-omission
//! correction, as in wrk2).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Largest message size accepted (16 MiB, the protocol's default message limit).
pub const MAX_SIZE: usize = 16 << 20;
/// Distinct payload offsets into the template: consecutive messages differ.
const OFFSETS: usize = 256;
/// JSON payloads: bytes of distinct records messages are cut from, at least.
const JSON_SPAN: usize = 1 << 20;

/// Message sizes: one size, a list to draw from, or a uniform range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum SizeSpec {
    /// Every message has this many bytes.
    Fixed(usize),
    /// Each message draws one of these sizes, uniformly.
    List(Vec<usize>),
    /// Each message draws a size uniformly from `lo..=hi`.
    Range(usize, usize),
}

impl SizeSpec {
    /// The smallest size a message may have.
    pub fn min(&self) -> usize {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::List(v) => v.iter().copied().min().unwrap_or(0),
            SizeSpec::Range(lo, _) => *lo,
        }
    }

    /// The largest size a message may have.
    pub fn max(&self) -> usize {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::List(v) => v.iter().copied().max().unwrap_or(0),
            SizeSpec::Range(_, hi) => *hi,
        }
    }
}

/// A message size the command line could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number of bytes, KiB (`k`) or MiB (`m`).
    #[error("bad size {0:?}")]
    Unreadable(String),
    /// Over [`MAX_SIZE`].
    #[error("size {0:?} is over the 16 MiB limit")]
    TooLarge(String),
    /// A range whose low end is above its high end.
    #[error("empty size range {0:?}")]
    EmptyRange(String),
}

fn parse_size(s: &str) -> Result<usize, SizeError> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let (digits, mult) = if let Some(d) = lower.strip_suffix("kib").or(lower.strip_suffix('k')) {
        (d, 1024)
    } else if let Some(d) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (d, 1 << 20)
    } else {
        (lower.as_str(), 1)
    };
    let n: usize = digits.trim().parse().map_err(|_| SizeError::Unreadable(s.to_owned()))?;
    match n.checked_mul(mult) {
        Some(n) if n <= MAX_SIZE => Ok(n),
        _ => Err(SizeError::TooLarge(s.to_owned())),
    }
}

impl FromStr for SizeSpec {
    type Err = SizeError;

    /// `64`, `1k`, `16,64,1024` (a list) or `64..4096` (a range).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((lo, hi)) = s.split_once("..") {
            let (lo, hi) = (parse_size(lo)?, parse_size(hi.trim_start_matches('='))?);
            if lo > hi {
                return Err(SizeError::EmptyRange(s.to_owned()));
            }
            Ok(if lo == hi { SizeSpec::Fixed(lo) } else { SizeSpec::Range(lo, hi) })
        } else if s.contains(',') {
            let v = s.split(',').map(parse_size).collect::<Result<Vec<_>, _>>()?;
            Ok(SizeSpec::List(v))
        } else {
            parse_size(s).map(SizeSpec::Fixed)
        }
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::Fixed(n) => write!(f, "{n}"),
            SizeSpec::List(v) => {
                let parts: Vec<String> = v.iter().map(|n| n.to_string()).collect();
                write!(f, "{}", parts.join(","))
            }
            SizeSpec::Range(lo, hi) => write!(f, "{lo}..{hi}"),
        }
    }
}

impl From<SizeSpec> for String {
    fn from(s: SizeSpec) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for SizeSpec {
    type Error = SizeError;
    fn try_from(s: String) -> Result<Self, SizeError> {
        s.parse()
    }
}

/// WebSocket message type of the payloads (raw mode ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// Binary messages of random bytes.
    Binary,
    /// Text messages of printable ASCII.
    Text,
    /// Text messages cut from a stream of JSON records.
    Json,
}

/// A small, fast, seeded generator (xorshift64*): payload bytes and size draws, not security.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value uniform in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// The bytes messages are cut from, and the size draws: a message is `template[offset..][..len]`,
/// so what was sent can be checked against the echo without keeping a copy.
#[derive(Debug, Clone)]
pub struct Payloads {
    template: Vec<u8>,
    kind: PayloadKind,
    sizes: SizeSpec,
    rng: Rng,
    /// Bytes between consecutive messages' offsets.
    stride: usize,
    /// Offsets run over `0..span`.
    span: usize,
    next_offset: usize,
}

impl Payloads {
    /// Payloads of `kind` with sizes drawn from `sizes`, seeded by `seed`.
    pub fn new(sizes: SizeSpec, kind: PayloadKind, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        // JSON: consecutive messages are whole messages apart (up to 64 KiB, past any
        // deflate window), so that each one is new records rather than the last one shifted
        // by a byte (which a compressor with context takeover sends as one back-reference).
        let stride = match kind {
            PayloadKind::Json => sizes.max().clamp(1, 64 << 10),
            PayloadKind::Binary | PayloadKind::Text => 1,
        };
        // JSON: and at least 1 MiB of distinct records, so that a connection's messages do not
        // come round again inside a 32 KiB window (a small message's offsets would otherwise
        // cycle through 256 x its size, a repeat a 15-bit window finds).
        let span = match kind {
            PayloadKind::Json => (OFFSETS * stride).max(JSON_SPAN).next_multiple_of(stride),
            PayloadKind::Binary | PayloadKind::Text => OFFSETS,
        };
        let len = sizes.max() + span;
        let template = match kind {
            PayloadKind::Json => json_records(len, &mut rng),
            PayloadKind::Binary | PayloadKind::Text => (0..len)
                .map(|_| {
                    let r = rng.next_u64() as u8;
                    if kind == PayloadKind::Text {
                        b' ' + r % 95
                    } else {
                        r
                    }
                })
                .collect(),
        };
        Payloads { template, kind, sizes, rng, stride, span, next_offset: 0 }
    }

    /// Whether messages go as text.
    pub fn is_text(&self) -> bool {
        self.kind != PayloadKind::Binary
    }

    /// The message type.
    pub fn kind(&self) -> PayloadKind {
        self.kind
    }

    /// Draws the next message: its offset and length in the template.
    #[inline]
    pub fn draw(&mut self) -> (u32, u32) {
        let len = match &self.sizes {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::List(v) => v[self.rng.below(v.len())],
            SizeSpec::Range(lo, hi) => lo + self.rng.below(hi - lo + 1),
        };
        let offset = self.next_offset;
        self.next_offset = (offset + self.stride) % self.span;
        (offset as u32, len as u32)
    }

    /// The bytes of the message at `offset` with `len` bytes.
    #[inline]
    pub fn bytes(&self, offset: u32, len: u32) -> &[u8] {
        &self.template[offset as usize..][..len as usize]
    }
}

/// At least `len` bytes of JSON records, one per line, like a trading or chat feed's: a few
/// keys that repeat, values drawn from `rng`.
fn json_records(len: usize, rng: &mut Rng) -> Vec<u8> {
    const USERS: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
    const SYMBOLS: [&str; 6] = ["BTC-USD", "ETH-USD", "SOL-USD", "AAPL", "MSFT", "EUR-USD"];
    const SIDES: [&str; 2] = ["buy", "sell"];
    let mut out = Vec::with_capacity(len + 200);
    let mut id = 1_000_000 + rng.below(1_000_000) as u64;
    let mut ts = 1_733_050_000_000u64;
    while out.len() < len {
        id += 1 + rng.below(3) as u64;
        ts += rng.below(50) as u64;
        let price = 100 + rng.below(90_000);
        let line = format!(
            "{{\"type\":\"trade\",\"id\":{id},\"user\":\"{}\",\"symbol\":\"{}\",\
             \"side\":\"{}\",\"price\":{}.{:02},\"qty\":{},\"ts\":{ts}}}\n",
            USERS[rng.below(USERS.len())],
            SYMBOLS[rng.below(SYMBOLS.len())],
            SIDES[rng.below(SIDES.len())],
            price / 100,
            price % 100,
            1 + rng.below(500),
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// One message on its way: when it was scheduled and sent, and which bytes it carries.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    /// When it was due (open loop) or sent (closed loop).
    pub scheduled: Instant,
    /// When it was queued on the socket.
    pub sent: Instant,
    /// Offset of its payload in the template.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
}

/// The open-loop schedule of one client thread (see the module docs).
#[derive(Debug, Clone)]
pub struct OpenLoopClock {
    t0: Instant,
    period_ns: f64,
    conns: u64,
    next_slot: u64,
}

impl OpenLoopClock {
    /// A schedule from `t0` at `rate` messages per second over `conns` connections.
    pub fn new(t0: Instant, rate: f64, conns: usize) -> Self {
        OpenLoopClock { t0, period_ns: 1e9 / rate, conns: conns.max(1) as u64, next_slot: 0 }
    }

    /// When slot `slot` falls due.
    #[inline]
    pub fn slot_time(&self, slot: u64) -> Instant {
        self.t0 + Duration::from_nanos((slot as f64 * self.period_ns) as u64)
    }

    /// When the next slot falls due.
    pub fn next_due(&self) -> Instant {
        self.slot_time(self.next_slot)
    }

    /// The connection whose slot has come due by `now`, and the slot's time, if any; advances
    /// past it.
    #[inline]
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant)> {
        let at = self.next_due();
        if at > now {
            return None;
        }
        let conn = (self.next_slot % self.conns) as usize;
        self.next_slot += 1;
        Some((conn, at))
    }

    /// When the `k`-th message (from 0) of connection `conn` is due.
    #[inline]
    pub fn message_time(&self, conn: usize, k: u64) -> Instant {
        self.slot_time(conn as u64 + k * self.conns)
    }
}

/// One connection's outstanding messages and, in open loop, its due count.
#[derive(Debug)]
pub struct Flow {
    pending: VecDeque<InFlight>,
    cap: usize,
    due: u64,
    sent: u64,
}

impl Flow {
    /// A flow with at most `in_flight` messages outstanding (allocated once, here).
    pub fn new(in_flight: usize) -> Self {
        let cap = in_flight.max(1);
        Flow { pending: VecDeque::with_capacity(cap), cap, due: 0, sent: 0 }
    }

    /// Open loop: one more of this connection's slots has come due.
    #[inline]
    pub fn mark_due(&mut self) {
        self.due += 1;
    }

    /// If a message may go now, the time it counts from: `now` in closed loop (`open` is
    /// `None`), its slot's time in open loop (`open` is the thread's clock and this connection's
    /// index in it).
    #[inline]
    pub fn sendable(&self, now: Instant, open: Option<(&OpenLoopClock, usize)>) -> Option<Instant> {
        if self.pending.len() >= self.cap {
            return None;
        }
        match open {
            None => Some(now),
            Some((clock, conn)) => {
                (self.sent < self.due).then(|| clock.message_time(conn, self.sent))
            }
        }
    }

    /// Notes that `msg` was queued on the socket.
    #[inline]
    pub fn push(&mut self, msg: InFlight) {
        debug_assert!(self.pending.len() < self.cap);
        self.pending.push_back(msg);
        self.sent += 1;
    }

    /// The oldest outstanding message.
    #[inline]
    pub fn front(&self) -> Option<&InFlight> {
        self.pending.front()
    }

    /// Removes the oldest outstanding message (its echo arrived).
    #[inline]
    pub fn pop(&mut self) -> Option<InFlight> {
        self.pending.pop_front()
    }

    /// Whether another message could go out now (in-flight cap not reached).
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.cap
    }

    /// Messages sent whose echo has not arrived.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Open loop: messages due but not yet sent.
    pub fn backlog(&self) -> u64 {
        self.due.saturating_sub(self.sent)
    }

    /// Outstanding messages whose scheduled time `counts`.
    pub fn in_flight_where(&self, counts: impl Fn(Instant) -> bool) -> u64 {
        self.pending.iter().filter(|m| counts(m.scheduled)).count() as u64
    }

    /// Open loop: due-but-unsent messages whose slot time (on `clock`, as connection `conn`)
    /// `counts`.
    pub fn backlog_where(
        &self,
        clock: &OpenLoopClock,
        conn: usize,
        counts: impl Fn(Instant) -> bool,
    ) -> u64 {
        (self.sent..self.due).filter(|&k| counts(clock.message_time(conn, k))).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;

    #[test]
    fn sizes_parse() {
        assert_eq!("64".parse::<SizeSpec>().unwrap(), SizeSpec::Fixed(64));
        assert_eq!("1k".parse::<SizeSpec>().unwrap(), SizeSpec::Fixed(1024));
        assert_eq!("16,64".parse::<SizeSpec>().unwrap(), SizeSpec::List(vec![16, 64]));
        assert_eq!("8..4k".parse::<SizeSpec>().unwrap(), SizeSpec::Range(8, 4096));
        assert!("9..8".parse::<SizeSpec>().is_err());
        assert!("17m".parse::<SizeSpec>().is_err());
        assert!("x".parse::<SizeSpec>().is_err());
        for s in ["64", "16,64", "8..4096"] {
            assert_eq!(s.parse::<SizeSpec>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn payloads_stay_in_range_and_text_is_ascii() {
        let mut p = Payloads::new(SizeSpec::Range(1, 100), PayloadKind::Text, 7);
        for _ in 0..10_000 {
            let (off, len) = p.draw();
            assert!((1..=100).contains(&len));
            assert!(p.bytes(off, len).iter().all(|b| (b' '..=b'~').contains(b)));
        }
    }

    #[test]
    fn open_loop_slots_are_staggered_round_robin() {
        let t0 = Instant::now();
        let mut clock = OpenLoopClock::new(t0, 1000.0, 4);
        let now = t0 + Duration::from_micros(3_500);
        let due: Vec<usize> = std::iter::from_fn(|| clock.pop_due(now).map(|d| d.0)).collect();
        assert_eq!(due, vec![0, 1, 2, 3]);
        assert_eq!(clock.message_time(1, 2), t0 + Duration::from_millis(9));
    }

    /// A server that stalls once for a second: the corrected latency shows the stall in every
    /// message that was due during it, while the service time stays small for all but one.
    #[test]
    fn stall_shows_in_corrected_latency_not_in_service_time() {
        let t0 = Instant::now();
        let rate = 1000.0; // one connection, one message per ms, one in flight
        let mut clock = OpenLoopClock::new(t0, rate, 1);
        let mut flow = Flow::new(1);
        let mut rec = Recorder::default();
        let service = Duration::from_micros(50);
        let stall_at = t0 + Duration::from_secs(2);
        let stall = Duration::from_secs(1);
        let mut now = t0;
        let end = t0 + Duration::from_secs(10);
        // Time of the pending echo's arrival.
        let mut echo_at: Option<Instant> = None;
        let mut stalled = false;
        while now < end {
            while let Some((c, _)) = clock.pop_due(now) {
                assert_eq!(c, 0);
                flow.mark_due();
            }
            if let Some(at) = echo_at.filter(|&at| at <= now) {
                let m = flow.pop().unwrap();
                rec.record(m.scheduled, m.sent, at, m.len as usize);
                now = at;
                echo_at = None;
            }
            if let Some(scheduled) = flow.sendable(now, Some((&clock, 0))) {
                flow.push(InFlight { scheduled, sent: now, offset: 0, len: 8 });
                let mut reply = now + service;
                if !stalled && now >= stall_at {
                    stalled = true;
                    reply += stall;
                }
                echo_at = Some(reply);
            }
            // Advance simulated time to the next event.
            let next = [echo_at, Some(clock.next_due())].into_iter().flatten().min().unwrap();
            now = next.max(now);
        }
        let us = |q: f64, h: &hdrhistogram::Histogram<u64>| h.value_at_quantile(q) / 1000;
        // About 1,000 of ~10,000 messages were due during the stall: p99 shows it.
        assert!(us(0.99, &rec.latency) > 500_000, "corrected p99 {}", us(0.99, &rec.latency));
        assert!(us(0.99, &rec.service) < 100, "service p99 {}", us(0.99, &rec.service));
        assert!(rec.service.max() / 1000 >= 1_000_000, "the stalled message itself");
        assert!(rec.messages > 9_000);
    }
}
