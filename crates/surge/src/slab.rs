//! A slab with generation counters: the per-loop table of connections.
//!
//! A slot's generation moves on every removal, so a [`ConnKey`] names one tenant of a slot
//! for ever: a stale [`ConnectionId`](crate::ConnectionId) or a readiness event for
//! a socket that is gone finds a newer generation and is refused, never delivered to the next
//! tenant.

use crate::key::ConnKey;

/// One slot: its current generation and maybe a value.
#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Values addressed by [`ConnKey`]; insert, remove and lookup are O(1).
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Vacant slots, reused last-in first-out (the most recently used memory is warmest).
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { entries: Vec::new(), free: Vec::new(), len: 0 }
    }

    /// How many values are stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` and returns its key, or `None` once `u32::MAX` slots are taken.
    pub(crate) fn insert(&mut self, value: T) -> Option<ConnKey> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.entries.len()).ok()?;
                self.entries.push(Entry { generation: 0, value: None });
                slot
            }
        };
        let entry = &mut self.entries[slot as usize];
        entry.value = Some(value);
        self.len += 1;
        Some(ConnKey { slot, generation: entry.generation })
    }

    /// The value of `key`, if it is still there.
    pub(crate) fn get_mut(&mut self, key: ConnKey) -> Option<&mut T> {
        let entry = self.entries.get_mut(key.slot as usize)?;
        if entry.generation != key.generation {
            return None;
        }
        entry.value.as_mut()
    }

    /// Removes the value of `key`; the slot's generation moves on, so the key is never valid
    /// again (until the counter wraps after 2^32 reuses of that one slot).
    pub(crate) fn remove(&mut self, key: ConnKey) -> Option<T> {
        let entry = self.entries.get_mut(key.slot as usize)?;
        if entry.generation != key.generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(key.slot);
        self.len -= 1;
        Some(value)
    }

    /// Every stored value with its key.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (ConnKey, &mut T)> {
        self.entries.iter_mut().enumerate().filter_map(|(slot, entry)| {
            let key = ConnKey { slot: slot as u32, generation: entry.generation };
            entry.value.as_mut().map(|value| (key, value))
        })
    }

    /// The key of every stored value, appended to `out`.
    pub(crate) fn keys_into(&self, out: &mut Vec<ConnKey>) {
        for (slot, entry) in self.entries.iter().enumerate() {
            if entry.value.is_some() {
                out.push(ConnKey { slot: slot as u32, generation: entry.generation });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_never_reaches_the_next_tenant() {
        let mut slab = Slab::new();
        let old = slab.insert("first").unwrap();
        assert_eq!(slab.remove(old), Some("first"));
        let new = slab.insert("second").unwrap();
        assert_eq!(new.slot, old.slot, "the slot is reused");
        assert_ne!(new, old);
        assert_eq!(slab.get_mut(old), None);
        assert_eq!(slab.remove(old), None);
        assert_eq!(slab.get_mut(new), Some(&mut "second"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn keys_and_iteration_see_every_value() {
        let mut slab = Slab::new();
        let keys: Vec<_> = (0..5).map(|i| slab.insert(i).unwrap()).collect();
        slab.remove(keys[2]);
        let mut seen = Vec::new();
        slab.keys_into(&mut seen);
        assert_eq!(seen, [keys[0], keys[1], keys[3], keys[4]]);
        assert_eq!(slab.iter_mut().map(|(_, v)| *v).sum::<i32>(), 8);
        assert!(!slab.is_empty());
    }
}
