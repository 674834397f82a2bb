//! Admission: the server-wide cap on open WebSocket connections, as a token.
//!
//! A connection is admitted before the handler is asked about its upgrade and holds its
//! [`Admission`] for as long as the application holds it open; dropping the token (a refusal,
//! `on_close`, the connection's removal) gives the place back. No path can forget the count
//! or give it back twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The count of open connections, shared by every loop and handle.
#[derive(Debug)]
pub(crate) struct Admissions {
    open: AtomicUsize,
    max: usize,
}

impl Admissions {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Admissions { open: AtomicUsize::new(0), max })
    }

    /// A place for one more connection, or `None` at the cap.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admission> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admission(Arc::clone(self)))
    }

    /// Connections holding a place now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One admitted connection's place under the cap; given back when dropped.
#[derive(Debug)]
#[must_use = "dropping an admission gives the place back at once"]
pub(crate) struct Admission(Arc<Admissions>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_come_back_when_tokens_drop() {
        let admissions = Admissions::new(2);
        let first = admissions.admit().unwrap();
        let second = admissions.admit().unwrap();
        assert!(admissions.admit().is_none(), "the cap holds");
        assert_eq!(admissions.open(), 2);
        drop(first);
        let third = admissions.admit().unwrap();
        drop((second, third));
        assert_eq!(admissions.open(), 0);
    }
}
