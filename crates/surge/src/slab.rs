//! A slab with generation counters: the per-loop table of connections.
//!
//! A slot's generation moves on every removal, so a `(slot, generation)` pair names one tenant
//! of a slot for ever: a stale [`ConnectionId`](crate::ConnectionId) or a readiness event for
//! a socket that is gone finds a newer generation and is refused, never delivered to the next
//! tenant.

/// One slot: its current generation and maybe a value.
#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Values addressed by `(slot, generation)`; insert, remove and lookup are O(1).
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

    /// Stores `value` and returns its `(slot, generation)`, or `None` once `u32::MAX` slots
    /// are taken.
    pub(crate) fn insert(&mut self, value: T) -> Option<(u32, u32)> {
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
        Some((slot, entry.generation))
    }

    /// The value in `slot` if its generation is `generation`.
    pub(crate) fn get_mut(&mut self, slot: u32, generation: u32) -> Option<&mut T> {
        let entry = self.entries.get_mut(slot as usize)?;
        if entry.generation != generation {
            return None;
        }
        entry.value.as_mut()
    }

    /// Removes the value in `slot` if its generation is `generation`; the slot's generation
    /// moves on, so the pair is never valid again (until the counter wraps after 2^32 reuses
    /// of that one slot).
    pub(crate) fn remove(&mut self, slot: u32, generation: u32) -> Option<T> {
        let entry = self.entries.get_mut(slot as usize)?;
        if entry.generation != generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        self.len -= 1;
        Some(value)
    }

    /// Every stored value with its `(slot, generation)`.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u32, u32, &mut T)> {
        self.entries.iter_mut().enumerate().filter_map(|(slot, entry)| {
            let generation = entry.generation;
            entry.value.as_mut().map(|value| (slot as u32, generation, value))
        })
    }

    /// The `(slot, generation)` of every stored value, appended to `out`.
    pub(crate) fn keys_into(&self, out: &mut Vec<(u32, u32)>) {
        for (slot, entry) in self.entries.iter().enumerate() {
            if entry.value.is_some() {
                out.push((slot as u32, entry.generation));
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
        let (slot, old) = slab.insert("first").unwrap();
        assert_eq!(slab.remove(slot, old), Some("first"));
        let (again, new) = slab.insert("second").unwrap();
        assert_eq!(again, slot, "the slot is reused");
        assert_ne!(new, old);
        assert_eq!(slab.get_mut(slot, old), None);
        assert_eq!(slab.remove(slot, old), None);
        assert_eq!(slab.get_mut(slot, new), Some(&mut "second"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn keys_and_iteration_see_every_value() {
        let mut slab = Slab::new();
        let keys: Vec<_> = (0..5).map(|i| slab.insert(i).unwrap()).collect();
        slab.remove(keys[2].0, keys[2].1);
        let mut seen = Vec::new();
        slab.keys_into(&mut seen);
        assert_eq!(seen, [keys[0], keys[1], keys[3], keys[4]]);
        assert_eq!(slab.iter_mut().map(|(_, _, v)| *v).sum::<i32>(), 8);
        assert!(!slab.is_empty());
    }
}
