//! Latency histograms (corrected for coordinated omission and not), error and close-code counts.
//!
//! Every latency is recorded in nanoseconds into an HdrHistogram covering 1 ns to one hour with
//! three significant digits. A message's *latency* runs from when it was scheduled to be sent to
//! when its echo was fully received; its *service time* runs from when it was actually queued on
//! the socket. In closed loop the two are the same. In open loop (`--rate`) a message that had to
//! wait (the connection was busy, the client stalled) still counts from its scheduled time, which
//! is how wrk2 corrects coordinated omission.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::IntervalLogWriterError;
use hdrhistogram::serialization::{
    DeserializeError, Deserializer, Serializer as _, V2DeflateSerializeError, V2DeflateSerializer,
};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A histogram that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    /// HdrHistogram's compressed encoder failed.
    #[error("histogram encoding: {0}")]
    Encode(#[from] V2DeflateSerializeError),
    /// The bytes are not an HdrHistogram encoding.
    #[error("histogram decoding: {0}")]
    Decode(#[from] DeserializeError),
    /// The text is not base64.
    #[error("histogram: not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// An interval log could not be written.
    #[error("interval log: {0}")]
    IntervalLog(#[from] IntervalLogWriterError<V2DeflateSerializeError>),
}

/// Highest latency a histogram tracks (larger ones are clamped to it): one hour, in ns.
pub const MAX_TRACKABLE_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits the histograms keep.
pub const SIGFIG: u8 = 3;

/// A fresh latency histogram (ns, 1 ns to one hour, three significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, SIGFIG).expect("static bounds are valid")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// The latency and service-time histograms of one interval, with its message and byte counts.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Scheduled-to-received latency (corrected for coordinated omission).
    pub latency: Histogram<u64>,
    /// Queued-to-received service time (uncorrected).
    pub service: Histogram<u64>,
    /// Messages whose echo arrived.
    pub messages: u64,
    /// Payload bytes echoed (one way).
    pub bytes: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { latency: new_histogram(), service: new_histogram(), messages: 0, bytes: 0 }
    }
}

impl Recorder {
    /// Records one echoed message of `len` payload bytes, scheduled at `scheduled`, queued at
    /// `sent`, whose echo completed at `now`.
    #[inline]
    pub fn record(&mut self, scheduled: Instant, sent: Instant, now: Instant, len: usize) {
        self.latency.saturating_record(nanos(now.saturating_duration_since(scheduled)));
        self.service.saturating_record(nanos(now.saturating_duration_since(sent)));
        self.messages += 1;
        self.bytes += len as u64;
    }

    /// Adds another recorder's counts into this one.
    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.messages += other.messages;
        self.bytes += other.bytes;
    }

    /// Empties the recorder, keeping its allocations.
    pub fn reset(&mut self) {
        self.latency.reset();
        self.service.reset();
        self.messages = 0;
        self.bytes = 0;
    }
}

/// The percentiles a summary shows, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// 99.99th percentile.
    pub p99_99: f64,
    /// Largest value.
    pub max: f64,
}

impl Percentiles {
    /// Reads the percentiles of a nanosecond histogram, converted to microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            p99_99: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// Encodes a histogram as base64 of HdrHistogram's compressed V2 format (as in `.hlog` files).
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, HistogramError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Decodes what [`encode_histogram`] produced.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    Ok(Deserializer::new().deserialize(&mut &bytes[..])?)
}

/// The kinds of failure a run counts (rather than stopping on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// connect(2) was refused.
    ConnectRefused,
    /// Connecting or the opening handshake took longer than the connect timeout.
    ConnectTimeout,
    /// Any other connect failure.
    ConnectOther,
    /// No descriptor left for a socket (EMFILE/ENFILE).
    DescriptorLimit,
    /// No local address/port left (EADDRNOTAVAIL).
    AddressExhausted,
    /// The server answered the opening handshake with something other than 101.
    HandshakeRejected,
    /// The server's 101 response was malformed or did not validate.
    HandshakeInvalid,
    /// The server broke the WebSocket protocol.
    Protocol,
    /// The connection was reset or a read/write failed.
    Io,
    /// The server closed the TCP connection (EOF) without a Close frame, or with data in flight.
    ClosedByServer,
    /// The server sent bytes or a message nobody asked for.
    Unsolicited,
}

impl ErrorKind {
    /// Every kind, in display order.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::ConnectOther,
        ErrorKind::DescriptorLimit,
        ErrorKind::AddressExhausted,
        ErrorKind::HandshakeRejected,
        ErrorKind::HandshakeInvalid,
        ErrorKind::Protocol,
        ErrorKind::Io,
        ErrorKind::ClosedByServer,
        ErrorKind::Unsolicited,
    ];

    /// A short stable name, used in the summary and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::ConnectOther => "connect_failed",
            ErrorKind::DescriptorLimit => "descriptor_limit",
            ErrorKind::AddressExhausted => "address_exhausted",
            ErrorKind::HandshakeRejected => "handshake_rejected",
            ErrorKind::HandshakeInvalid => "handshake_invalid",
            ErrorKind::Protocol => "protocol_error",
            ErrorKind::Io => "io_error",
            ErrorKind::ClosedByServer => "closed_by_server",
            ErrorKind::Unsolicited => "unsolicited_data",
        }
    }

    /// Classifies a failed connect(2) or socket(2).
    pub fn of_connect(e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => ErrorKind::ConnectRefused,
            Some(libc::ETIMEDOUT) => ErrorKind::ConnectTimeout,
            Some(libc::EMFILE) | Some(libc::ENFILE) => ErrorKind::DescriptorLimit,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => ErrorKind::AddressExhausted,
            _ => ErrorKind::ConnectOther,
        }
    }
}

/// How many times each [`ErrorKind`] happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ErrorKind::ALL.len()]);

impl ErrorCounts {
    /// Counts one occurrence of `kind`.
    pub fn add(&mut self, kind: ErrorKind) {
        self.0[kind as usize] += 1;
    }

    /// How many times `kind` happened.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[kind as usize]
    }

    /// Adds another count into this one.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// All kinds that happened, with their counts, in display order.
    pub fn nonzero(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL.into_iter().map(|k| (k, self.get(k))).filter(|&(_, n)| n > 0)
    }

    /// Total failures.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// How many times each WebSocket close code was received (few distinct codes: a small list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseCodes(Vec<(u16, u64)>);

impl CloseCodes {
    /// Counts one Close frame with `code` (1005 when it carried none).
    pub fn add(&mut self, code: u16) {
        self.add_n(code, 1);
    }

    fn add_n(&mut self, code: u16, n: u64) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some((_, count)) => *count += n,
            None => {
                self.0.push((code, n));
                self.0.sort_unstable();
            }
        }
    }

    /// Adds another count into this one.
    pub fn merge(&mut self, other: &CloseCodes) {
        for &(code, n) in &other.0 {
            self.add_n(code, n);
        }
    }

    /// The codes seen, ascending, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_round_trips_through_base64() {
        let mut h = new_histogram();
        for v in [1_000u64, 2_000, 50_000, 1_000_000_000] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h).unwrap()).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }

    #[test]
    fn percentiles_are_in_microseconds() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn counts_merge() {
        let mut a = ErrorCounts::default();
        a.add(ErrorKind::Io);
        let mut b = ErrorCounts::default();
        b.add(ErrorKind::Io);
        b.add(ErrorKind::Protocol);
        a.merge(&b);
        assert_eq!(a.get(ErrorKind::Io), 2);
        assert_eq!(a.total(), 3);
        let mut c = CloseCodes::default();
        c.add(1001);
        c.add(1000);
        c.add(1001);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![(1000, 1), (1001, 2)]);
    }
}
