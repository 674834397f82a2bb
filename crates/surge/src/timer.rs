//! A hashed timer wheel: O(1) insert, lazy cancel, coarse ticks.
//!
//! Time is counted in ticks from the loop's start. An entry sits in the slot of its tick
//! modulo the wheel size; entries further out than one turn of the wheel wait their round.
//! Cancelling is lazy: each connection remembers the one tick its live entry is due at, and an
//! entry that no longer matches is dropped when its slot comes round. A connection re-arms
//! only when its entry fires, so activity between ticks costs one store, not a timer update.

use std::time::{Duration, Instant};

use crate::key::ConnKey;

/// Slots in the wheel (a power of two).
const SLOTS: usize = 1024;

/// A due time and the connection it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerEntry {
    /// The tick it is due at.
    pub(crate) at: u64,
    /// The connection.
    pub(crate) key: ConnKey,
}

/// The per-loop wheel.
#[derive(Debug)]
pub(crate) struct TimerWheel {
    slots: Box<[Vec<TimerEntry>]>,
    start: Instant,
    tick: Duration,
    /// The last tick whose slot was processed.
    current: u64,
    len: usize,
}

impl TimerWheel {
    pub(crate) fn new(start: Instant, tick: Duration) -> Self {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            start,
            tick,
            current: 0,
            len: 0,
        }
    }

    /// The tick `now` falls in.
    pub(crate) fn tick_of(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        (elapsed.as_nanos() / self.tick.as_nanos()) as u64
    }

    /// The first tick that starts at or after `at`: a deadline mapped to it never runs early.
    pub(crate) fn tick_at_or_after(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.start);
        elapsed.as_nanos().div_ceil(self.tick.as_nanos()) as u64
    }

    /// Adds an entry and returns the tick it will fire at: its own, or the next tick to be
    /// processed when that is already past.
    pub(crate) fn insert(&mut self, mut entry: TimerEntry) -> u64 {
        entry.at = entry.at.max(self.current + 1);
        self.slots[(entry.at % SLOTS as u64) as usize].push(entry);
        self.len += 1;
        entry.at
    }

    /// Moves every entry due at or before `now_tick` into `expired`.
    pub(crate) fn advance(&mut self, now_tick: u64, expired: &mut Vec<TimerEntry>) {
        if now_tick <= self.current {
            return;
        }
        // Past a whole turn every slot is due for a look; visit each once.
        let from = self.current + 1;
        let steps = (now_tick - self.current).min(SLOTS as u64);
        for tick in from..from + steps {
            let slot = &mut self.slots[(tick % SLOTS as u64) as usize];
            let before = expired.len();
            slot.retain(|entry| {
                if entry.at <= now_tick {
                    expired.push(*entry);
                    false
                } else {
                    true
                }
            });
            self.len -= expired.len() - before;
        }
        self.current = now_tick;
    }

    /// How long until the next tick boundary, or `None` when no entry waits.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let nanos = self.tick.as_nanos() * (u128::from(self.tick_of(now)) + 1);
        let next = self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        Some(next.saturating_duration_since(now))
    }

    /// Entries waiting (live or lazily cancelled).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: u64, slot: u32) -> TimerEntry {
        TimerEntry { at, key: ConnKey { slot, generation: 0 } }
    }

    #[test]
    fn entries_fire_at_their_tick_including_later_rounds() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start, Duration::from_millis(10));
        wheel.insert(entry(3, 1));
        wheel.insert(entry(3 + SLOTS as u64, 2));
        wheel.insert(entry(5, 3));
        let mut out = Vec::new();
        wheel.advance(2, &mut out);
        assert!(out.is_empty());
        wheel.advance(4, &mut out);
        assert_eq!(out, [entry(3, 1)]);
        out.clear();
        wheel.advance(SLOTS as u64, &mut out);
        assert_eq!(out, [entry(5, 3)]);
        out.clear();
        wheel.advance(10 * SLOTS as u64, &mut out);
        assert_eq!(out, [entry(3 + SLOTS as u64, 2)]);
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.timeout(start), None);
    }

    #[test]
    fn an_entry_in_the_past_fires_on_the_next_advance() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start, Duration::from_millis(10));
        let mut out = Vec::new();
        wheel.advance(7, &mut out);
        wheel.insert(entry(2, 9));
        assert!(wheel.timeout(start).is_some());
        wheel.advance(8, &mut out);
        assert_eq!(out, [entry(8, 9)]);
    }

    #[test]
    fn time_maps_to_ticks_rounded_down_and_deadlines_rounded_up() {
        let start = Instant::now();
        let wheel = TimerWheel::new(start, Duration::from_millis(100));
        assert_eq!(wheel.tick_of(start + Duration::from_millis(999)), 9);
        assert_eq!(wheel.tick_at_or_after(start + Duration::from_millis(900)), 9);
        assert_eq!(wheel.tick_at_or_after(start + Duration::from_millis(901)), 10);
        let timeout = {
            let mut w = wheel;
            w.insert(entry(1, 0));
            w.timeout(start + Duration::from_millis(30)).unwrap()
        };
        assert_eq!(timeout, Duration::from_millis(70));
    }
}
