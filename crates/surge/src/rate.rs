//! A connection's allowance of messages and bytes per second ([`RateLimit`]): two token
//! buckets, each holding one second's worth, refilled from the loop's clock (read once per
//! turn) when a message is charged. Only connections of a server with a rate limit have one.

use std::time::Instant;

use crate::config::RateLimit;

/// What one connection may still receive now.
#[derive(Debug)]
pub(crate) struct Allowance {
    messages: f64,
    bytes: f64,
    refilled: Instant,
}

impl Allowance {
    /// A full allowance at `now`.
    pub(crate) fn new(limit: &RateLimit, now: Instant) -> Self {
        Allowance {
            messages: limit.messages_per_second.map_or(0.0, f64::from),
            bytes: limit.bytes_per_second.map_or(0.0, |b| b as f64),
            refilled: now,
        }
    }

    /// Charges one received message of `len` payload bytes; returns whether the connection
    /// is now past its allowance.
    pub(crate) fn charge(&mut self, limit: &RateLimit, len: usize, now: Instant) -> bool {
        self.refill(limit, now);
        if limit.messages_per_second.is_some() {
            self.messages -= 1.0;
        }
        if limit.bytes_per_second.is_some() {
            self.bytes -= len as f64;
        }
        self.is_spent()
    }

    /// Whether the connection is still past its allowance at `now`.
    pub(crate) fn spent_at(&mut self, limit: &RateLimit, now: Instant) -> bool {
        self.refill(limit, now);
        self.is_spent()
    }

    fn is_spent(&self) -> bool {
        self.messages < 0.0 || self.bytes < 0.0
    }

    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        if let Some(rate) = limit.messages_per_second.map(f64::from) {
            self.messages = (self.messages + elapsed * rate).min(rate);
        }
        if let Some(rate) = limit.bytes_per_second.map(|b| b as f64) {
            self.bytes = (self.bytes + elapsed * rate).min(rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::RatePolicy;

    #[test]
    fn a_second_of_messages_passes_then_the_allowance_refills_with_time() {
        let limit = RateLimit {
            messages_per_second: Some(10),
            bytes_per_second: None,
            policy: RatePolicy::Pause,
        };
        let start = Instant::now();
        let mut allowance = Allowance::new(&limit, start);
        for _ in 0..10 {
            assert!(!allowance.charge(&limit, 1 << 20, start), "bytes are not limited");
        }
        assert!(allowance.charge(&limit, 0, start), "the eleventh message in the same instant");
        assert!(allowance.spent_at(&limit, start + Duration::from_millis(50)));
        assert!(!allowance.spent_at(&limit, start + Duration::from_millis(150)));
    }

    #[test]
    fn bytes_are_charged_by_payload_length() {
        let limit = RateLimit {
            messages_per_second: None,
            bytes_per_second: Some(1000),
            policy: RatePolicy::Close1008,
        };
        let start = Instant::now();
        let mut allowance = Allowance::new(&limit, start);
        assert!(!allowance.charge(&limit, 1000, start));
        assert!(allowance.charge(&limit, 1, start));
        assert!(!allowance.spent_at(&limit, start + Duration::from_millis(2)));
    }
}
