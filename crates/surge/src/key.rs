//! [`ConnKey`]: the name of one connection inside its loop.

use std::fmt;

/// A slab slot and the generation of its tenant: names one connection of a loop for ever (a
/// slot's generation moves on when its tenant leaves, so a stale key never reaches the next
/// one). Timer entries, readiness tokens, dirty lists and [`ConnectionId`](crate::ConnectionId)
/// all carry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnKey {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl ConnKey {
    /// The key as one number, generation in the upper half (a readiness token, say).
    pub(crate) fn to_u64(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.slot)
    }

    /// The key [`to_u64`](Self::to_u64) made `bits` from.
    pub(crate) fn from_u64(bits: u64) -> Self {
        ConnKey { slot: bits as u32, generation: (bits >> 32) as u32 }
    }
}

impl fmt::Display for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.slot, self.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_one_number() {
        for (slot, generation) in [(0, 0), (1, 2), (u32::MAX, u32::MAX)] {
            let key = ConnKey { slot, generation };
            assert_eq!(ConnKey::from_u64(key.to_u64()), key);
        }
    }
}
