//! What each loop counts, for `/metrics`: plain counters that only the loop's own thread
//! writes and that a scrape reads from any thread.
//!
//! A count is an `AtomicU64` written with a relaxed load and store (one writer, so no
//! read-modify-write instruction and no lock: on x86 two plain `mov`s), in a block of its own
//! per loop aligned to keep loops off each other's cache lines. A scrape reads relaxed
//! values; it may see one counter a message ahead of another, never a torn value. The
//! per-message counts go into a [`Tally`] of plain integers first, added once per turn. Nothing
//! here allocates or reads a clock: the loop times its turn with one more clock read at the
//! turn's end (none per message).
//!
//! Adding a family: a field on [`LoopStats`] (a [`Counter`], a [`Counters`] over a label
//! table, or a [`Histogram`]), a call where the event happens, and one line in
//! `metrics` (`Gather::encode`) naming it; a new label table is a `const` and an index
//! function here.

use std::sync::atomic::{AtomicU64, Ordering};

use surge_proto::close::CloseCode;
use surge_proto::deflate::DeflateStats;
use surge_proto::message::Message;

/// A monotonic count written by one thread.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning loop's thread calls this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Sets a total the loop keeps elsewhere (a codec's counters).
    pub(crate) fn set(&self, total: u64) {
        self.0.store(total, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts under one label whose values come from a fixed table (`labels`), the last entry
/// standing for every value the table does not name.
#[derive(Debug)]
pub(crate) struct Counters<const N: usize> {
    pub(crate) labels: &'static [&'static str; N],
    pub(crate) counts: [Counter; N],
}

impl<const N: usize> Counters<N> {
    fn new(labels: &'static [&'static str; N]) -> Self {
        Counters { labels, counts: std::array::from_fn(|_| Counter::default()) }
    }

    #[inline]
    pub(crate) fn add(&self, index: usize, n: u64) {
        self.counts[index.min(N - 1)].add(n);
    }

    /// `(label value, count)` for each entry.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.labels.iter().zip(&self.counts).map(|(label, count)| (*label, count.get()))
    }
}

/// A histogram with fixed upper bounds (in the unit recorded), the last bucket unbounded.
#[derive(Debug)]
pub(crate) struct Histogram<const N: usize> {
    /// Upper bounds, inclusive, ascending; `N - 1` of them (the last bucket is +Inf).
    pub(crate) bounds: &'static [u64],
    /// Observations per bucket (not cumulative).
    pub(crate) buckets: [Counter; N],
    pub(crate) sum: Counter,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [u64]) -> Self {
        debug_assert_eq!(bounds.len() + 1, N);
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| Counter::default()),
            sum: Counter::default(),
        }
    }

    #[inline]
    pub(crate) fn record(&self, value: u64) {
        let bucket = self.bounds.iter().position(|&bound| value <= bound).unwrap_or(N - 1);
        self.buckets[bucket].inc();
        self.sum.add(value);
    }
}

/// Statuses the HTTP families name; anything else is `other`.
pub(crate) const STATUSES: &[&str; 20] = &[
    "200", "204", "400", "401", "403", "404", "405", "408", "411", "413", "426", "429", "431",
    "500", "501", "502", "503", "504", "505", "other",
];

/// The index of `status` in [`STATUSES`].
pub(crate) fn status_index(status: u16) -> usize {
    let index = match status {
        200 => 0,
        204 => 1,
        400 => 2,
        401 => 3,
        403 => 4,
        404 => 5,
        405 => 6,
        408 => 7,
        411 => 8,
        413 => 9,
        426 => 10,
        429 => 11,
        431 => 12,
        500..=505 => 13 + usize::from(status - 500),
        _ => 19,
    };
    index.min(STATUSES.len() - 1)
}

/// Close codes the close families name: RFC 6455's, then the application range, then the
/// rest.
pub(crate) const CLOSE_CODES: &[&str; 16] = &[
    "1000",
    "1001",
    "1002",
    "1003",
    "1005",
    "1006",
    "1007",
    "1008",
    "1009",
    "1010",
    "1011",
    "1012",
    "1013",
    "1014",
    "3000-4999",
    "other",
];

/// The index of `code` in [`CLOSE_CODES`].
pub(crate) fn close_index(code: CloseCode) -> usize {
    match code.as_u16() {
        code @ 1000..=1003 => usize::from(code - 1000),
        code @ 1005..=1014 => usize::from(code - 1001),
        3000..=4999 => 14,
        _ => 15,
    }
}

/// Data message kinds.
pub(crate) const KINDS: &[&str; 2] = &["text", "binary"];

/// The index of a message's kind in [`KINDS`].
#[inline]
pub(crate) fn kind_index(msg: &Message<'_>) -> usize {
    match msg {
        Message::Text(_) => 0,
        Message::Binary(_) => 1,
    }
}

/// The limits whose hits are counted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// A message or frame over the message size (closed with 1009).
    MessageSize = 0,
    /// Partly received messages over the loop's assembly budget (closed with 1013).
    AssemblyBudget,
    /// A handshake at the connection cap (503).
    Connections,
    /// A request head over the byte or header-count limit (431).
    HeadSize,
    /// A request not complete by the handshake timeout (dropped).
    HandshakeTimeout,
    /// A request body over the HTTP body limit (413).
    BodySize,
    /// Reading paused at the backpressure limit.
    ReadPaused,
    /// A handshake at the per-address connection cap (503).
    AddressConnections,
    /// A handshake past the per-address handshake rate (429).
    AddressHandshakeRate,
    /// Reading paused past the connection's message or byte rate.
    RatePaused,
    /// A connection closed with 1008 past its message or byte rate.
    RateClosed,
}

/// Label values of [`Limit`], in its order.
pub(crate) const LIMITS: &[&str; 11] = &[
    "message_size",
    "assembly_budget",
    "connections",
    "head_size",
    "handshake_timeout",
    "body_size",
    "read_paused",
    "address_connections",
    "address_handshake_rate",
    "rate_paused",
    "rate_closed",
];

/// Completed TLS handshakes: a full one, or a resumed session (ticket or session id).
pub(crate) const TLS_HANDSHAKES: &[&str; 2] = &["full", "resumed"];

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TlsFailure {
    /// The client sent an alert (it refused the certificate, say).
    AlertReceived = 0,
    /// No version, cipher suite, group or ALPN protocol in common.
    Incompatible,
    /// Not TLS, or records or messages that do not parse (a decode alert).
    Malformed,
    /// Well-formed messages out of order or against the protocol.
    Misbehaved,
    /// The stream ended, failed or was cut at the handshake timeout before the handshake
    /// finished.
    Abandoned,
    /// Anything else rustls reports.
    Other,
}

/// Label values of [`TlsFailure`], in its order.
pub(crate) const TLS_FAILURES: &[&str; 6] =
    &["alert_received", "incompatible", "malformed", "misbehaved", "abandoned", "other"];

/// permessage-deflate's message counts: compressed (sent), inflated (received).
pub(crate) const DEFLATE_MESSAGES: &[&str; 2] = &["compressed", "inflated"];

/// permessage-deflate's byte counts: before and after compressing, before and after inflating.
pub(crate) const DEFLATE_BYTES: &[&str; 4] =
    &["compress_before", "compress_after", "inflate_before", "inflate_after"];

/// Where a panic was caught: in a handler callback (its connection closes with 1011), or in
/// the engine's own work on one connection (a bug; that connection is dropped).
pub(crate) const PANICS: &[&str; 2] = &["handler", "engine"];
pub(crate) const HANDLER_PANIC: usize = 0;
pub(crate) const ENGINE_PANIC: usize = 1;

/// What backpressure did to a send.
pub(crate) const BACKPRESSURE: &[&str; 2] = &["handed_back", "closed"];

/// Turn duration bounds, in nanoseconds (10 µs to 100 ms).
const TURN_NANOS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
];

/// Events-per-turn bounds.
const EVENTS: &[u64] = &[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// One loop's counts.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct LoopStats {
    /// TCP connections taken in.
    pub(crate) accepted: Counter,
    /// WebSocket connections opened (101 sent), and those whose application part ended.
    pub(crate) opened: Counter,
    pub(crate) closed: Counter,
    /// Valid upgrade requests refused (by the server or the handler), by status.
    pub(crate) refused: Counters<20>,
    /// Invalid upgrade requests, by the status they got.
    pub(crate) failed: Counters<20>,
    /// Plain HTTP requests answered, by status.
    pub(crate) http: Counters<20>,
    pub(crate) messages_in: Counters<2>,
    pub(crate) bytes_in: Counters<2>,
    pub(crate) messages_out: Counters<2>,
    pub(crate) bytes_out: Counters<2>,
    /// Close codes the server started a close handshake with (its own or a violation's).
    pub(crate) closes_sent: Counters<16>,
    /// Close codes in the peers' Close frames (1005 for none).
    pub(crate) closes_received: Counters<16>,
    pub(crate) backpressure: Counters<2>,
    pub(crate) limits: Counters<11>,
    /// Panics caught, by where (see [`PANICS`]).
    pub(crate) panics: Counters<2>,
    /// TLS handshakes completed, by kind, and failed, by reason.
    pub(crate) tls_handshakes: Counters<2>,
    pub(crate) tls_failures: Counters<6>,
    /// What the io_uring backend met (all zero on epoll).
    pub(crate) uring: UringCounts,
    /// Turn duration in nanoseconds, from the loop's clock read to the end of the flush.
    pub(crate) turn_nanos: Histogram<13>,
    /// Backend reports handled per turn.
    pub(crate) events: Histogram<13>,
    /// The loop's permessage-deflate totals, copied from its shared codecs each turn.
    pub(crate) deflate_messages: Counters<2>,
    pub(crate) deflate_bytes: Counters<4>,
}

impl Default for LoopStats {
    fn default() -> Self {
        LoopStats {
            accepted: Counter::default(),
            opened: Counter::default(),
            closed: Counter::default(),
            refused: Counters::new(STATUSES),
            failed: Counters::new(STATUSES),
            http: Counters::new(STATUSES),
            messages_in: Counters::new(KINDS),
            bytes_in: Counters::new(KINDS),
            messages_out: Counters::new(KINDS),
            bytes_out: Counters::new(KINDS),
            closes_sent: Counters::new(CLOSE_CODES),
            closes_received: Counters::new(CLOSE_CODES),
            backpressure: Counters::new(BACKPRESSURE),
            limits: Counters::new(LIMITS),
            panics: Counters::new(PANICS),
            tls_handshakes: Counters::new(TLS_HANDSHAKES),
            tls_failures: Counters::new(TLS_FAILURES),
            uring: UringCounts::default(),
            turn_nanos: Histogram::new(TURN_NANOS),
            events: Histogram::new(EVENTS),
            deflate_messages: Counters::new(DEFLATE_MESSAGES),
            deflate_bytes: Counters::new(DEFLATE_BYTES),
        }
    }
}

/// The moments the io_uring backend's kernel side could not keep up with the demand (see
/// `backend::uring`): each loop's ring counts its own.
#[derive(Debug, Default)]
pub(crate) struct UringCounts {
    /// Receives that found no provided buffer free (`ENOBUFS`).
    pub(crate) no_buffers: Counter,
    /// Multishot receives and accepts armed again after the kernel ended them.
    pub(crate) rearmed: Counter,
    /// Waits that found completions the kernel held back (completion queue full).
    pub(crate) cq_overflows: Counter,
    /// Sends that took less than they were offered.
    pub(crate) short_sends: Counter,
    /// Submissions made before the turn's end because the submission queue was full.
    pub(crate) early_submits: Counter,
}

/// The per-message counts of the turn in progress: plain integers in the loop's own state,
/// added to its [`LoopStats`] once at the end of the turn, so that a message costs a few
/// increments of memory no other thread reads.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    messages_in: [u64; 2],
    bytes_in: [u64; 2],
    messages_out: [u64; 2],
    bytes_out: [u64; 2],
}

impl Tally {
    /// A data message received.
    #[inline]
    pub(crate) fn message_in(&mut self, msg: &Message<'_>) {
        let kind = kind_index(msg);
        self.messages_in[kind] += 1;
        self.bytes_in[kind] += msg.len() as u64;
    }

    /// A data message queued to one connection; `kind` indexes [`KINDS`].
    #[inline]
    pub(crate) fn message_out(&mut self, kind: usize, len: usize) {
        let kind = kind.min(1);
        self.messages_out[kind] += 1;
        self.bytes_out[kind] += len as u64;
    }
}

impl LoopStats {
    /// Copies the loop's permessage-deflate totals.
    pub(crate) fn deflate(&self, totals: &DeflateStats) {
        self.deflate_messages.counts[0].set(totals.messages_compressed);
        self.deflate_messages.counts[1].set(totals.messages_inflated);
        let bytes =
            [totals.bytes_before, totals.bytes_after, totals.inflated_from, totals.inflated_to];
        for (counter, total) in self.deflate_bytes.counts.iter().zip(bytes) {
            counter.set(total);
        }
    }

    /// Adds the turn's tally and clears it.
    pub(crate) fn publish(&self, tally: &mut Tally) {
        let families = [
            (&self.messages_in, &mut tally.messages_in),
            (&self.bytes_in, &mut tally.bytes_in),
            (&self.messages_out, &mut tally.messages_out),
            (&self.bytes_out, &mut tally.bytes_out),
        ];
        for (counters, counts) in families {
            for (kind, count) in counts.iter_mut().enumerate() {
                if *count > 0 {
                    counters.add(kind, std::mem::take(count));
                }
            }
        }
    }

    /// A protocol violation the server closes for with `code`.
    pub(crate) fn protocol_close(&self, code: CloseCode) {
        self.closes_sent.add(close_index(code), 1);
        if code == CloseCode::MESSAGE_TOO_BIG {
            self.limit(Limit::MessageSize);
        }
    }

    pub(crate) fn limit(&self, limit: Limit) {
        self.limits.add(limit as usize, 1);
    }

    /// A TLS handshake completed; `resumed`: a session resumed.
    pub(crate) fn tls_handshake(&self, resumed: bool) {
        self.tls_handshakes.add(usize::from(resumed), 1);
    }

    pub(crate) fn tls_failure(&self, failure: TlsFailure) {
        self.tls_failures.add(failure as usize, 1);
    }

    /// How often `limit` was hit on this loop.
    pub(crate) fn limit_hits(&self, limit: Limit) -> u64 {
        self.limits.counts[limit as usize].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_index_names_its_value() {
        for status in [200, 204, 400, 404, 405, 413, 431, 500, 503, 505] {
            assert_eq!(STATUSES[status_index(status)], status.to_string());
        }
        assert_eq!(STATUSES[status_index(418)], "other");
        assert_eq!(STATUSES[status_index(599)], "other");
        for code in [1000, 1001, 1002, 1003, 1005, 1006, 1007, 1011, 1013, 1014] {
            assert_eq!(CLOSE_CODES[close_index(CloseCode::from(code))], code.to_string());
        }
        assert_eq!(CLOSE_CODES[close_index(CloseCode::from(4000))], "3000-4999");
        assert_eq!(CLOSE_CODES[close_index(CloseCode::from(1004))], "other");
        assert_eq!(LIMITS[Limit::ReadPaused as usize], "read_paused");
        assert_eq!(LIMITS[Limit::RateClosed as usize], "rate_closed");
        assert_eq!(TLS_FAILURES[TlsFailure::Other as usize], "other");
    }

    #[test]
    fn a_histogram_puts_each_value_in_the_first_bucket_that_holds_it() {
        let histogram = Histogram::<13>::new(EVENTS);
        for value in [0, 1, 3, 1024, 1025, 5000] {
            histogram.record(value);
        }
        let counts: Vec<u64> = histogram.buckets.iter().map(Counter::get).collect();
        assert_eq!(counts, [1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(histogram.sum.get(), 1 + 3 + 1024 + 1025 + 5000);
    }
}
